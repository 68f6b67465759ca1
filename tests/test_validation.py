"""Every validation rule, with the message a user sees."""

from __future__ import annotations

import pytest

from pipeline.inline import parse_inline
from pipeline.models import Brief, SchemaMismatch, TuneRequest
from pipeline.validation import InvalidRequest, Limits, parse_tempo, validate


def message(request: TuneRequest, limits: Limits = Limits()) -> str:
    with pytest.raises(InvalidRequest) as error:
        validate(request, limits)
    return str(error.value)


def test_prompt_over_1000_characters_after_trimming_is_refused_with_the_limit() -> None:
    assert validate(TuneRequest(prompt="  " + "a" * 1000 + "  ")).prompt == "a" * 1000
    assert "1,001 characters; the limit is 1,000" in message(TuneRequest(prompt="a" * 1001))


def test_text_mode_allows_20000_characters() -> None:
    assert validate(TuneRequest(text="b" * 20_000)).mode == "text"
    assert "20,001 characters; the limit is 20,000" in message(TuneRequest(text="b" * 20_001))


def test_nothing_to_play_gives_an_example() -> None:
    text = message(TuneRequest(prompt="   "))
    assert "Tell me what to play" in text and "for example" in text


@pytest.mark.parametrize("duration", [4.9, 180.5, 0, -3])
def test_duration_outside_5_to_180_seconds_names_the_range(duration: float) -> None:
    assert f"between 5 and 180 seconds (got {duration:g})" in message(TuneRequest(prompt="x", duration=duration))


def test_maximum_duration_is_configurable() -> None:
    assert validate(TuneRequest(prompt="x", duration=60), Limits(max_duration=60)).duration == 60
    assert "between 5 and 60 seconds" in message(TuneRequest(prompt="x", duration=61), Limits(max_duration=60))


@pytest.mark.parametrize("bpm", [39, 221])
def test_bpm_outside_40_to_220_names_the_range(bpm: int) -> None:
    assert f"between 40 and 220 bpm (got {bpm})" in message(TuneRequest(prompt="x", bpm=bpm))


def test_tempo_words_and_bpm_parse_and_anything_else_is_explained() -> None:
    assert parse_tempo("Slow") == ("slow", None)
    assert parse_tempo("빠른") == ("fast", None)
    assert parse_tempo("80bpm") == (None, 80)
    with pytest.raises(InvalidRequest, match="slow, medium or fast, or a bpm from 40 to 220"):
        parse_tempo("speedy")
    with pytest.raises(InvalidRequest, match=r"between 40 and 220 bpm \(got 300\)"):
        parse_tempo("300")
    assert "slow, medium or fast" in message(TuneRequest(prompt="x", tempo="warp"))


@pytest.mark.parametrize("takes", [0, 5])
def test_takes_outside_1_to_4(takes: int) -> None:
    assert f"between 1 and 4 (got {takes})" in message(TuneRequest(prompt="x", takes=takes))


def test_seed_must_fit_32_bits() -> None:
    assert "Seed must be a whole number from 0 to 4294967295" in message(TuneRequest(prompt="x", seed=-1))


@pytest.mark.parametrize(("field", "label", "suggestion"), [
    ("genres", "jaz", "Jazz"), ("moods", "hapy", "Happy"), ("instruments", "pianno", "Piano"),
    ("genres", "재지", "Jazz"),
])
def test_unknown_catalog_name_lists_the_closest_valid_names(field: str, label: str, suggestion: str) -> None:
    kind = field.removesuffix("s")
    text = message(TuneRequest(**{field: [label]}))
    assert text.startswith(f"Unknown {kind} '{label}'.") and "Did you mean" in text and suggestion in text


def test_catalog_names_are_canonicalised_from_either_language() -> None:
    request = validate(TuneRequest(genres=["로파이", "LO-FI"], moods=["차분한"], instruments=["피아노", "cello"]))
    assert request.genres == ["Lofi"] and request.moods == ["Calm"] and request.instruments == ["Piano", "Cello"]


def test_inline_options_build_a_request() -> None:
    request = parse_inline("rainy night lo-fi genre:jazz mood:calm,dreamy instruments:piano bpm:80 30s takes:2 seed:7")
    assert request.prompt == "rainy night lo-fi"
    assert (request.genres, request.moods, request.instruments) == (["jazz"], ["calm", "dreamy"], ["piano"])
    assert (request.bpm, request.duration, request.takes, request.seed) == (80, 30.0, 2, 7)
    assert parse_inline('genre:"hip hop" 0:20').genres == ["hip hop"]
    assert parse_inline("genre:hip_hop").genres == ["hip hop"]


def test_inline_option_without_a_value_or_with_a_bad_number_is_explained() -> None:
    with pytest.raises(InvalidRequest, match="`genre:` needs a value"):
        parse_inline("genre: calm")
    with pytest.raises(InvalidRequest, match="Takes must be a whole number"):
        parse_inline("takes:two")
    with pytest.raises(InvalidRequest, match="isn't a length"):
        parse_inline("duration:long")


@pytest.mark.parametrize("text", [
    "jazz 9999s", "jazz duration:9999", "jazz 길이:9999", "jazz length:9999s", "jazz 9999초", "jazz 2.5s",
    "jazz duration:10:00", "jazz duration:-5", "jazz duration:forever", "jazz 길이:아주길게",
])
def test_a_length_outside_the_limits_is_refused_with_the_range_in_every_syntax(text: str) -> None:
    with pytest.raises(InvalidRequest, match=r"between 5 and 180 seconds"):
        validate(parse_inline(text))


def test_a_length_token_never_stays_in_the_prompt_but_a_decade_does() -> None:
    assert (parse_inline("jazz 9999s").prompt, parse_inline("jazz 9999s").duration) == ("jazz", 9999)
    request = parse_inline("1990s hip hop 20s")
    assert (request.prompt, request.duration) == ("1990s hip hop", 20)


@pytest.mark.parametrize("text", ["🎵🎶🔥", "  ✨ 🌧️ ☕  ", "!!! ... 123", "<@U123> 🎉 <https://example.com>"])
def test_text_with_no_words_to_analyse_is_refused_before_queueing(text: str) -> None:
    assert "no words to analyse" in message(TuneRequest(text=text))


def test_request_and_brief_round_trip_as_json_with_a_schema_version() -> None:
    request = TuneRequest(prompt="비 오는 밤", genres=["Jazz"], duration=12.5, takes=2, seed=3)
    assert TuneRequest.from_json(request.to_json()) == request
    assert '"schema": 1' in request.to_json()
    brief = Brief(moods=["Calm"], caption="calm music")
    assert Brief.from_dict(brief.to_dict()) == brief
    with pytest.raises(SchemaMismatch, match="schema 2"):
        TuneRequest.from_dict({**request.to_dict(), "schema": 2})


def test_loop_and_format_in_the_inline_syntax_english_and_korean() -> None:
    request = validate(parse_inline("calm piano loop:yes format:WAV 20s"))
    assert request.loop is True and request.format == "wav" and request.audio_format == "wav"
    korean = validate(parse_inline("잔잔한 피아노 반복:예 형식:flac"))
    assert korean.loop and korean.format == "flac"
    assert validate(parse_inline("calm loop:yes")).audio_format == "flac"  # loops default to lossless
    assert validate(parse_inline("calm")).audio_format == "mp3"
    with pytest.raises(InvalidRequest, match="Loop must be yes or no"):
        parse_inline("calm loop:maybe")
    with pytest.raises(InvalidRequest, match="Format must be mp3, flac, wav"):
        validate(parse_inline("calm format:ogg"))
