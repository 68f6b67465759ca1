"""Turn what a user typed into a TuneRequest.

Inline syntax (Slack ``/tune``, and anything else typed as one line)::

    rainy night lo-fi genre:jazz mood:calm,dreamy instruments:piano bpm:80 30s takes:2 seed:7

Option names: ``genre`` / ``genres``, ``mood`` / ``moods``, ``instrument(s)`` / ``inst``,
``tempo`` (slow, medium, fast, 느린, 보통, 빠른, or a bpm), ``bpm``, ``duration`` / ``length``
(``30``, ``30s``, ``0:30``), ``takes``, ``seed``, ``loop`` (yes/no; ``루프``, ``반복``),
``format`` (mp3, flac, wav; ``형식``, ``포맷``). A bare ``20s`` (or ``20초``) sets the duration,
however large, so a length out of range is refused with the range instead of joining the
prompt; a decade such as ``1990s`` stays in the prompt. Values
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
    "loop": "loop", "루프": "loop", "반복": "loop",
    "format": "format", "형식": "format", "포맷": "format",
}
_YES = {"yes", "y", "true", "on", "1", "예", "네", "응"}
_NO = {"no", "n", "false", "off", "0", "아니오", "아니요", "아니"}
_UNIT = r"\s*(?:s|sec|secs|seconds|초)"
_BARE_DURATION = re.compile(rf"(\d+(?:\.\d+)?){_UNIT}", re.IGNORECASE)
_DURATION = re.compile(rf"(-?\d+(?:\.\d+)?)(?:{_UNIT})?", re.IGNORECASE)
_DECADE = re.compile(r"(?:1\d|20)\d0s", re.IGNORECASE)  # 1990s, 2010s: a decade, not a length


def split_list(value: str) -> list[str]:
    """'piano, cello ,' -> ['piano', 'cello']; underscores stand for spaces."""
    return [part.strip().replace("_", " ") for part in re.split(r"[,，、]", value) if part.strip()]


def parse_duration(value: str, limits: Limits = Limits()) -> float:
    """``30``, ``30s``, ``30초`` or ``0:30`` -> seconds (not checked against the limits yet)."""
    text = value.strip().lower()
    match = re.fullmatch(r"(\d+):(\d{1,2})", text)
    if match:
        return int(match.group(1)) * 60 + int(match.group(2))
    match = _DURATION.fullmatch(text)
    if not match:
        raise InvalidRequest(f"Duration '{value}' isn't a length; it must be between {limits.min_duration:g} and "
                             f"{limits.max_duration:g} seconds (like `20s` or `0:30`).")
    return float(match.group(1))


def _is_length(token: str) -> bool:
    return _BARE_DURATION.fullmatch(token) is not None and _DECADE.fullmatch(token) is None


def parse_int(name: str, value: str) -> int:
    try:
        return int(value.strip())
    except ValueError:
        raise InvalidRequest(f"{name} must be a whole number (got '{value}').") from None


def parse_yes_no(name: str, value: str) -> bool:
    word = value.strip().casefold()
    if word in _YES or word in _NO:
        return word in _YES
    raise InvalidRequest(f"{name} must be yes or no (got '{value}').")


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
            if _is_length(token):
                request.duration = parse_duration(token, limits)
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
            request.duration = parse_duration(value, limits)
        elif field == "takes":
            request.takes = parse_int("Takes", value)
        elif field == "seed":
            request.seed = parse_int("Seed", value)
        elif field == "loop":
            request.loop = parse_yes_no("Loop", value)
        elif field == "format":
            request.format = value.strip().casefold()
    request.prompt = " ".join(free)
    return request


_EXAMPLES = {
    "genres": "jazz", "moods": "calm", "instruments": "piano,cello", "tempo": "slow",
    "bpm": "80", "duration": "20s", "takes": "2", "seed": "42", "loop": "yes", "format": "flac",
}
