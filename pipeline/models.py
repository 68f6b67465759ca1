"""Data that crosses process boundaries: requests and briefs, serialised as JSON.

Every payload carries ``schema`` so a worker and a frontend of different releases can
tell when they disagree instead of silently misreading each other.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields
from typing import Any, Literal

SCHEMA_VERSION = 1

RequestMode = Literal["tags", "text"]
AUDIO_FORMATS = ("mp3", "flac", "wav")


class SchemaMismatch(ValueError):
    """A payload written by an incompatible release."""


@dataclass
class TuneRequest:
    """What the user asked for. ``text`` set means text mode (analyse, then generate)."""

    prompt: str = ""
    text: str = ""
    genres: list[str] = field(default_factory=list)
    moods: list[str] = field(default_factory=list)
    instruments: list[str] = field(default_factory=list)
    tempo: str | None = None  # "slow" | "medium" | "fast"
    bpm: int | None = None
    duration: float = 10.0  # seconds; for an extension, the seconds to add
    takes: int = 1
    seed: int | None = None
    loop: bool = False  # a seamless loop: whole bars at the brief's tempo, its end joined to its start
    format: str = ""  # "mp3", "flac" or "wav"; empty: mp3, or flac for a loop

    @property
    def mode(self) -> RequestMode:
        return "text" if self.text else "tags"

    @property
    def audio_format(self) -> str:
        """The file format the user gets (before any fallback to fit an upload limit)."""
        return self.format or ("flac" if self.loop else "mp3")

    def to_dict(self) -> dict[str, Any]:
        return {"schema": SCHEMA_VERSION, **asdict(self)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "TuneRequest":
        return cls(**_known_fields(cls, data))

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), ensure_ascii=False)

    @classmethod
    def from_json(cls, payload: str | bytes) -> "TuneRequest":
        return cls.from_dict(json.loads(payload))


@dataclass
class Brief:
    """The musical decision derived from a request."""

    valence: float = 0.0
    arousal: float = 0.0
    moods: list[str] = field(default_factory=list)
    genres: list[str] = field(default_factory=list)
    instruments: list[str] = field(default_factory=list)
    bpm: int = 100
    mode: Literal["major", "minor"] = "major"
    theme: str = ""
    confidence: float = 1.0
    caption: str = ""
    explanation: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {"schema": SCHEMA_VERSION, **asdict(self)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Brief":
        return cls(**_known_fields(cls, data))


def _known_fields(cls: type, data: dict[str, Any]) -> dict[str, Any]:
    schema = data.get("schema", SCHEMA_VERSION)
    if schema != SCHEMA_VERSION:
        raise SchemaMismatch(f"payload has schema {schema}, this release reads {SCHEMA_VERSION}")
    names = {f.name for f in fields(cls)}
    return {k: v for k, v in data.items() if k in names}
