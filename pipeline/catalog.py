"""Genres, moods, instruments and tempos with English and Korean labels.

Built from the original web service's taxonomy (``../shared/seed/categories_ko_en.json``)
with its wrong pairs fixed; the fixed copy ships as ``pipeline/catalog.json``.
Lookup works in either language, ignoring case, spaces, hyphens and punctuation.
"""

from __future__ import annotations

import difflib
import json
import re
import unicodedata
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from typing import Literal

Kind = Literal["genre", "mood", "instrument"]
KINDS: tuple[Kind, ...] = ("genre", "mood", "instrument")
_JSON_KEYS = {"genre": "genres", "mood": "moods", "instrument": "instruments"}


@dataclass(frozen=True)
class Entry:
    kind: Kind
    en: str
    ko: str
    popular: bool

    @property
    def name(self) -> str:
        """The canonical name used in requests, briefs and captions."""
        return self.en


@dataclass(frozen=True)
class Tempo:
    en: str
    ko: str
    bpm: int


def normalise(label: str) -> str:
    """Case-, width- and space-insensitive form of a label: 'Lo-Fi ' -> 'lofi'."""
    text = unicodedata.normalize("NFKC", label).casefold()
    return re.sub(r"[\s\-_.,'`&/]+", "", text)


class Catalog:
    def __init__(self, entries: list[Entry], tempos: list[Tempo]) -> None:
        self.tempos = tempos
        self._by_kind: dict[str, list[Entry]] = {k: [] for k in KINDS}
        self._index: dict[str, dict[str, Entry]] = {k: {} for k in KINDS}
        for entry in entries:
            self._by_kind[entry.kind].append(entry)
            for label in (entry.en, entry.ko):
                self._index[entry.kind].setdefault(normalise(label), entry)
        for kind, aliases in _ALIASES.items():
            for alias, target in aliases.items():
                self._index[kind].setdefault(normalise(alias), self._index[kind][normalise(target)])

    def entries(self, kind: Kind) -> list[Entry]:
        return list(self._by_kind[kind])

    def lookup(self, kind: Kind, label: str) -> Entry | None:
        return self._index[kind].get(normalise(label))

    def closest(self, kind: Kind, label: str, n: int = 3) -> list[str]:
        """Up to ``n`` canonical names closest to ``label`` (English or Korean spelling)."""
        keys = difflib.get_close_matches(normalise(label), self._index[kind].keys(), n=n * 3, cutoff=0.5)
        names: list[str] = []
        for key in keys:
            name = self._index[kind][key].name
            if name not in names:
                names.append(name)
        return names[:n]

    def tempo(self, label: str) -> Tempo | None:
        key = normalise(label)
        for tempo in self.tempos:
            if key in (normalise(tempo.en), normalise(tempo.ko)):
                return tempo
        return None

    def complete(self, kind: Kind, prefix: str, limit: int = 25) -> list[Entry]:
        """Entries whose English or Korean label contains ``prefix`` (popular ones first)."""
        key = normalise(prefix)
        hits = [
            e for e in self._by_kind[kind]
            if not key or key in normalise(e.en) or key in normalise(e.ko)
        ]
        hits.sort(key=lambda e: (not e.popular, not normalise(e.en).startswith(key), e.en))
        return hits[:limit]


# Common spellings users type that are not labels of their own.
_ALIASES: dict[str, dict[str, str]] = {
    "genre": {
        "lo-fi": "Lofi", "lo fi hip hop": "Lofi", "lofi hip hop": "Lofi", "hiphop": "Hip hop",
        "classic": "Classical", "electronic": "Electronic music", "orchestra": "Orchestral",
        "drum and bass": "DnB", "kpop": "Pop", "k-pop": "Pop", "metal music": "Metal",
        "soundtrack": "Cinematic", "film score": "Cinematic", "game music": "Video game music",
    },
    "mood": {"relaxed": "Relaxing", "scary": "Scary", "tense": "Suspenseful", "sadness": "Sad",
             "joyful": "Happy", "chill out": "Chill"},
    "instrument": {"drums": "Drum", "guitar": "Guitars", "synth": "Synthesizer",
                   "keys": "Keyboard", "string": "Strings", "sax": "Saxophone",
                   "acoustic guitar": "Acoustic Guitar"},
}


@lru_cache(maxsize=1)
def catalog() -> Catalog:
    """The shipped catalog (loaded once)."""
    data = json.loads(resources.files("pipeline").joinpath("catalog.json").read_text(encoding="utf-8"))
    entries = [
        Entry(kind=kind, en=row["en"], ko=row["ko"], popular=row["popular"])
        for kind in KINDS
        for row in data[_JSON_KEYS[kind]]
    ]
    tempos = [Tempo(en=t["en"], ko=t["ko"], bpm=t["bpm"]) for t in data["tempos"]]
    return Catalog(entries, tempos)
