"""Rebuild ``data/vectors.npz``: the sentence vectors of the texts the analyser always needs.

    python -m pipeline.analysis.vectors

These are the profile descriptions (moods, genres, instruments) and the tone bank. Encoding
them at every start would take several seconds on one core, so they ship precomputed; run
this after editing profiles.tsv or bank.tsv (a test checks that none is missing).
"""

from __future__ import annotations

from pathlib import Path

from .embedder import VECTORS_FILE, Embedder, save_vectors
from .profiles import profiles
from .tone import bank


def fixed_texts() -> list[str]:
    texts = [p.description for p in profiles()] + [row.text for row in bank()]
    return list(dict.fromkeys(texts))


def main() -> int:
    texts = fixed_texts()
    embedder = Embedder.load(threads=0)
    path = Path(__file__).resolve().parent / "data" / VECTORS_FILE
    save_vectors(path, texts, embedder.encode(texts))
    print(f"wrote {len(texts)} vectors to {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
