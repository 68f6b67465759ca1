"""Rebuild ``data/vectors.npz``: the sentence vectors of the texts the analyser always needs.

    python -m pipeline.analysis.vectors

These are the profile descriptions (moods, genres, instruments) and the tone bank. Encoding
them at every start would take several seconds on one core, so they ship precomputed; run
this after editing profiles.tsv or bank.tsv (a test checks that none is missing). It also
writes ``data/lexicon_bias.tsv``, the lexicons' average reading of the bank (rerun it after
editing a lexicon too; a test checks that it is current).
"""

from __future__ import annotations

from pathlib import Path

from . import lexicon
from .embedder import VECTORS_FILE, Embedder, save_vectors
from .profiles import profiles
from .text import sentences
from .tone import bank


def fixed_texts() -> list[str]:
    texts = [p.description for p in profiles()] + [row.text for row in bank()]
    return list(dict.fromkeys(texts))


def lexicon_bias() -> dict[str, tuple[float, float]]:
    """The lexicons' average evidence over the bank's situations, per language (see lexicon.bank_bias)."""
    evidence: dict[str, list[tuple[float, float]]] = {}
    for row in bank():
        total = lexicon.resolve(lexicon.score_sentences(sentences(row.text) or [row.text]))
        evidence.setdefault(row.lang, []).append((total.share * total.valence, total.share * total.arousal))
    return {lang: (sum(v for v, _ in pairs) / len(pairs), sum(a for _, a in pairs) / len(pairs))
            for lang, pairs in sorted(evidence.items())}


def write_lexicon_bias(path: Path) -> None:
    lines = ["# The lexicons' average evidence (share x valence, share x arousal) over the tone bank's situations,",
             "# per language: taken off every text's lexicon evidence. Written by python -m pipeline.analysis.vectors.",
             "# lang\tvalence\tarousal"]
    lines += [f"{lang}\t{v:.4f}\t{a:.4f}" for lang, (v, a) in lexicon_bias().items()]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def main() -> int:
    texts = fixed_texts()
    embedder = Embedder.load(threads=0)
    data = Path(__file__).resolve().parent / "data"
    save_vectors(data / VECTORS_FILE, texts, embedder.encode(texts))
    print(f"wrote {len(texts)} vectors to {data / VECTORS_FILE}")
    write_lexicon_bias(data / lexicon.BIAS_FILE)
    print(f"wrote the lexicons' bias over the bank to {data / lexicon.BIAS_FILE}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
