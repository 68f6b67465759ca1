"""Turn what a user typed into a TuneRequest.

Inline syntax (Slack ``/tune``, and anything else typed as one line)::

    rainy night lo-fi genre:jazz mood:calm,dreamy instruments:piano bpm:80 30s takes:2 seed:7

Option names: ``genre`` / ``genres``, ``mood`` / ``moods``, ``instrument(s)`` / ``inst``,
``tempo`` (slow, medium, fast, 느린, 보통, 빠른, or a bpm), ``bpm``, ``duration`` / ``length``
(``30``, ``30s``, ``0:30``), ``takes``, ``seed``. A bare ``20s`` sets the duration. Values
with spaces: quote them (``genre:"hip hop"``) or join words with ``_``. Catalog names work
in English or Korean; everything that is not an option is the free prompt.
"""

from __future__ import annotations

import re
import shlex

from pipeline.models import TuneRequest
from pipeline.validation import InvalidRequest, Limits, parse_tempo

_KEYS = {
    "genre": "genres", "genres": "genres", "장르": "genres",
    "mood": "moods", "moods": "moods", "분위기": "moods",
    "instrument": "instruments", "instruments": "instruments", "inst": "instruments", "악기": "instruments",
    "tempo": "tempo", "템포": "tempo", "bpm": "bpm",
    "duration": "duration", "length": "duration", "길이": "duration",
    "takes": "takes", "take": "takes", "seed": "seed",
}
_BARE_DURATION = re.compile(r"^(\d{1,3}(?:\.\d+)?)\s*(?:s|sec|secs|seconds|초)$", re.IGNORECASE)


def split_list(value: str) -> list[str]:
    """'piano, cello ,' -> ['piano', 'cello']; underscores stand for spaces."""
    return [part.strip().replace("_", " ") for part in re.split(r"[,，、]", value) if part.strip()]


def parse_duration(value: str) -> float:
    text = value.strip().lower()
    match = re.fullmatch(r"(\d+):(\d{1,2})", text)
    if match:
        return int(match.group(1)) * 60 + int(match.group(2))
    match = _BARE_DURATION.match(text) or re.fullmatch(r"(\d{1,3}(?:\.\d+)?)", text)
    if not match:
        raise InvalidRequest(f"Duration '{value}' isn't a number of seconds (try `20s` or `0:30`).")
    return float(match.group(1))


def parse_int(name: str, value: str) -> int:
    try:
        return int(value.strip())
    except ValueError:
        raise InvalidRequest(f"{name} must be a whole number (got '{value}').") from None


def parse_inline(text: str, *, default_duration: float = 10.0, limits: Limits = Limits()) -> TuneRequest:
    """Parse the inline syntax into a (not yet validated) request."""
    try:
        tokens = shlex.split(text)
    except ValueError:
        tokens = text.split()
    request = TuneRequest(duration=default_duration)
    free: list[str] = []
    for token in tokens:
        key, sep, value = token.partition(":")
        field = _KEYS.get(key.strip().lower()) if sep else None
        if field is None:
            if _BARE_DURATION.match(token):
                request.duration = parse_duration(token)
            else:
                free.append(token)
            continue
        if not value.strip():
            raise InvalidRequest(f"`{key}:` needs a value, for example `{key}:{_EXAMPLES[field]}`.")
        if field in ("genres", "moods", "instruments"):
            getattr(request, field).extend(split_list(value))
        elif field == "tempo":
            request.tempo, bpm = parse_tempo(value, limits)
            request.bpm = bpm if bpm is not None else request.bpm
        elif field == "bpm":
            request.tempo, request.bpm = parse_tempo(value, limits)
        elif field == "duration":
            request.duration = parse_duration(value)
        elif field == "takes":
            request.takes = parse_int("Takes", value)
        elif field == "seed":
            request.seed = parse_int("Seed", value)
    request.prompt = " ".join(free)
    return request


_EXAMPLES = {
    "genres": "jazz", "moods": "calm", "instruments": "piano,cello", "tempo": "slow",
    "bpm": "80", "duration": "20s", "takes": "2", "seed": "42",
}
