"""Checks on a request, each failing with a message a chat user can act on."""

from __future__ import annotations

from dataclasses import dataclass, replace

from pipeline.catalog import Kind, catalog
from pipeline.models import AUDIO_FORMATS, TuneRequest

TEMPO_WORDS = ("slow", "medium", "fast")


class InvalidRequest(ValueError):
    """A mistake the user made; ``str(error)`` is the reply to show them."""


@dataclass(frozen=True)
class Limits:
    max_prompt_chars: int = 1_000
    max_text_chars: int = 20_000
    min_duration: float = 5.0
    max_duration: float = 180.0
    min_bpm: int = 40
    max_bpm: int = 220
    max_takes: int = 4


def validate(request: TuneRequest, limits: Limits = Limits()) -> TuneRequest:
    """Return a cleaned copy of ``request`` (trimmed text, canonical catalog names)."""
    prompt = request.prompt.strip()
    text = request.text.strip()
    if len(prompt) > limits.max_prompt_chars:
        raise InvalidRequest(
            f"The prompt is {len(prompt):,} characters; the limit is {limits.max_prompt_chars:,}. "
            "Shorten it, or mention the bot with the text to analyse it instead."
        )
    if len(text) > limits.max_text_chars:
        raise InvalidRequest(
            f"The text is {len(text):,} characters; the limit is {limits.max_text_chars:,}. "
            "Send the part that sets the scene."
        )
    if text:
        _check_words(text, limits)
    genres = _canonical("genre", request.genres)
    moods = _canonical("mood", request.moods)
    instruments = _canonical("instrument", request.instruments)
    if not (prompt or text or genres or moods or instruments):
        raise InvalidRequest(
            "Tell me what to play: a few words, a genre, a mood or instruments "
            "(for example `rainy night lo-fi, calm piano`)."
        )
    if not limits.min_duration <= request.duration <= limits.max_duration:
        raise InvalidRequest(
            f"Duration must be between {limits.min_duration:g} and {limits.max_duration:g} seconds "
            f"(got {request.duration:g})."
        )
    if not 1 <= request.takes <= limits.max_takes:
        raise InvalidRequest(f"Takes must be between 1 and {limits.max_takes} (got {request.takes}).")
    tempo = request.tempo.strip().casefold() if request.tempo else None
    if tempo is not None and catalog().tempo(tempo) is None:
        raise InvalidRequest(f"Tempo must be slow, medium or fast, or a bpm from {limits.min_bpm} to {limits.max_bpm} (got '{request.tempo}').")
    if tempo is not None:
        tempo = catalog().tempo(tempo).en.casefold()  # type: ignore[union-attr]
    if request.bpm is not None and not limits.min_bpm <= request.bpm <= limits.max_bpm:
        raise InvalidRequest(f"Tempo must be between {limits.min_bpm} and {limits.max_bpm} bpm (got {request.bpm}).")
    if request.seed is not None and not 0 <= request.seed < 2**32:
        raise InvalidRequest(f"Seed must be a whole number from 0 to {2**32 - 1} (got {request.seed}).")
    audio_format = request.format.strip().casefold()
    if audio_format and audio_format not in AUDIO_FORMATS:
        raise InvalidRequest(f"Format must be {', '.join(AUDIO_FORMATS)} (got '{request.format}').")
    return replace(request, prompt=prompt, text=text, genres=genres, moods=moods,
                   instruments=instruments, tempo=tempo, format=audio_format)


def _check_words(text: str, limits: Limits) -> None:
    """Refuse a text the analyser would find no words in (only emoji, numbers, punctuation,
    links or mentions), before it is queued: the same cleaning the analyser does."""
    from pipeline.analysis.text import AnalysisError, clean  # no model: cleaning only

    try:
        clean(text, limits.max_text_chars)
    except AnalysisError as error:
        raise InvalidRequest(str(error)) from None


def parse_tempo(value: str, limits: Limits = Limits()) -> tuple[str | None, int | None]:
    """'slow' -> ('slow', None); '80' or '80bpm' -> (None, 80); anything else is an error."""
    word = value.strip().casefold()
    if word.endswith("bpm"):
        word = word[:-3].strip()
    if word.isdigit():
        bpm = int(word)
        if not limits.min_bpm <= bpm <= limits.max_bpm:
            raise InvalidRequest(f"Tempo must be between {limits.min_bpm} and {limits.max_bpm} bpm (got {bpm}).")
        return None, bpm
    tempo = catalog().tempo(word)
    if tempo is None:
        raise InvalidRequest(
            f"Tempo must be slow, medium or fast, or a bpm from {limits.min_bpm} to {limits.max_bpm} (got '{value}')."
        )
    return tempo.en.casefold(), None


def _canonical(kind: Kind, labels: list[str]) -> list[str]:
    names: list[str] = []
    for label in labels:
        if not label.strip():
            continue
        entry = catalog().lookup(kind, label)
        if entry is None:
            suggestions = catalog().closest(kind, label)
            hint = f" Did you mean {', '.join(suggestions)}?" if suggestions else ""
            raise InvalidRequest(f"Unknown {kind} '{label.strip()}'.{hint}")
        if entry.name not in names:
            names.append(entry.name)
    return names
