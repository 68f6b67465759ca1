"""Catalog entries the analyser can choose, each with a valence/arousal point and a description."""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from importlib import resources

from pipeline.catalog import Kind, catalog


@dataclass(frozen=True)
class Profile:
    kind: Kind
    name: str
    valence: float
    arousal: float
    description: str


@lru_cache(maxsize=1)
def profiles() -> tuple[Profile, ...]:
    raw = resources.files("pipeline.analysis").joinpath("data", "profiles.tsv").read_text(encoding="utf-8")
    rows: list[Profile] = []
    for line in raw.splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        kind, name, v, a, description = line.split("\t")
        entry = catalog().lookup(kind, name)  # type: ignore[arg-type]
        if entry is None or entry.name != name:
            raise ValueError(f"profiles.tsv names {kind} '{name}', which is not in the catalog")
        rows.append(Profile(kind, name, float(v), float(a), description))  # type: ignore[arg-type]
    return tuple(rows)


def of_kind(kind: Kind) -> list[Profile]:
    return [p for p in profiles() if p.kind == kind]
