"""The /tune options: what they turn into, and what autocomplete offers (no Discord needed)."""

from __future__ import annotations

import pytest

from bot.discord_commands import (TuneOptions, complete_list, complete_tempo, duration_choices,
                                  request_from_options)
from pipeline.validation import InvalidRequest, Limits, validate


def test_options_become_a_request_with_lists_tempo_and_takes() -> None:
    request = request_from_options(TuneOptions(prompt=" rainy night ", genre="Lofi, jazz", mood="차분한",
                                               instruments="piano,첼로", tempo="80 bpm", duration=20.0,
                                               takes=2, seed=42), Limits())
    assert (request.prompt, request.genres, request.instruments) == ("rainy night", ["Lofi", "jazz"], ["piano", "첼로"])
    assert (request.bpm, request.tempo, request.duration, request.takes, request.seed) == (80, None, 20.0, 2, 42)
    cleaned = validate(request)
    assert (cleaned.moods, cleaned.instruments) == (["Calm"], ["Piano", "Cello"])


def test_tempo_words_and_bad_tempos() -> None:
    assert request_from_options(TuneOptions(genre="Jazz", tempo="Slow"), Limits()).tempo == "slow"
    with pytest.raises(InvalidRequest, match="slow, medium or fast"):
        request_from_options(TuneOptions(genre="Jazz", tempo="quick-ish"), Limits())
    with pytest.raises(InvalidRequest, match="between 40 and 220"):
        request_from_options(TuneOptions(genre="Jazz", tempo="500"), Limits())


def test_default_duration_respects_a_small_maximum() -> None:
    assert request_from_options(TuneOptions(genre="Jazz"), Limits(max_duration=8)).duration == 8


def test_duration_choices_stop_at_the_configured_maximum() -> None:
    assert [c.value for c in duration_choices(30)] == [5, 10, 15, 20, 30]
    assert [c.value for c in duration_choices(50)][-2:] == [45, 50]


def test_list_autocomplete_completes_the_last_item_and_skips_chosen_ones() -> None:
    values = [c.value for c in complete_list("instrument", "Piano, 첼")]
    assert values[0] == "Piano, Cello"
    assert all(v.startswith("Piano, ") for v in values)
    assert "Piano, Piano" not in [c.value for c in complete_list("instrument", "Piano, pi")]
    first = complete_list("genre", "")
    assert 0 < len(first) <= 25 and all(len(c.name) <= 100 and len(c.value) <= 100 for c in first)
    assert any("로파이" in c.name for c in complete_list("genre", "lo"))


def test_tempo_autocomplete() -> None:
    assert [c.value for c in complete_tempo("")] == ["slow", "medium", "fast"]
    assert [c.value for c in complete_tempo("빠")] == ["fast"]
    assert [c.value for c in complete_tempo("92")] == ["92"]
