"""The analyser's tab-separated data files in ``pipeline/analysis/data`` (``#`` lines are comments)."""

from __future__ import annotations

from importlib import resources


def read_table(name: str) -> list[list[str]]:
    raw = resources.files("pipeline.analysis").joinpath("data", name).read_text(encoding="utf-8")
    return [line.split("\t") for line in raw.splitlines() if line.strip() and not line.startswith("#")]
