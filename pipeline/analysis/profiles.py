"""Catalog entries the analyser can choose, each with a valence/arousal point and a description."""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

from pipeline.catalog import Kind, catalog

from .tables import read_table


@dataclass(frozen=True)
class Profile:
    kind: Kind
    name: str
    valence: float
    arousal: float
    description: str


@lru_cache(maxsize=1)
def profiles() -> tuple[Profile, ...]:
    rows: list[Profile] = []
    for kind, name, v, a, description in read_table("profiles.tsv"):
        entry = catalog().lookup(kind, name)  # type: ignore[arg-type]
        if entry is None or entry.name != name:
            raise ValueError(f"profiles.tsv names {kind} '{name}', which is not in the catalog")
        rows.append(Profile(kind, name, float(v), float(a), description))  # type: ignore[arg-type]
    return tuple(rows)


def of_kind(kind: Kind) -> list[Profile]:
    return [p for p in profiles() if p.kind == kind]
