"""Rebuild ``data/vectors.npz``: the sentence vectors of the texts the analyser always needs.

    python -m pipeline.analysis.vectors

These are the profile descriptions (moods, genres, instruments), the tone bank and the tone
examples. Encoding them at every start would take several seconds on one core, so they ship
precomputed; run this after editing profiles.tsv or bank.tsv, or a development set (a test checks
that none is missing). First it writes ``data/examples.tsv``: the labelled development sets'
texts (EXAMPLE_SETS in tests/data) as the sentence model reads them, the examples the tone head
learns from besides the bank. It also writes ``data/lexicon_bias.tsv``, the lexicons' average
reading of the bank (rerun it after editing a lexicon too; a test checks that it is current).
"""

from __future__ import annotations

from pathlib import Path

import json

from . import lexicon
from .analyser import passage
from .config import AnalysisConfig
from .embedder import VECTORS_FILE, Embedder, save_vectors
from .profiles import profiles
from .text import clean, sentences
from .tone import EXAMPLES_FILE, bank, examples

# The labelled sets the tone head learns from (development data). The unseen sets that measure the
# analyser (tone_unseen5.jsonl, tone_unseen6.jsonl) and the older check sets stay out: a test checks this.
EXAMPLE_SETS = ("tone_dev.jsonl", "tone_dev_long.jsonl", "tone_unseen.jsonl", "tone_unseen2.jsonl",
                "tone_unseen3.jsonl", "tone_dev5a.jsonl", "tone_dev5b.jsonl", "tone_unseen4.jsonl")
EXAMPLE_TONE = 0.7  # a label's sign (+-1) becomes this valence or arousal
DATA_DIR = Path(__file__).resolve().parents[2] / "tests" / "data"


def fixed_texts() -> list[str]:
    texts = [p.description for p in profiles()] + [row.text for row in bank()] + [row.text for row in examples()]
    return list(dict.fromkeys(texts))


def example_rows(embedder: Embedder, budget: int | None = None) -> list[tuple[str, float, float, str, str]]:
    """(lang, valence, arousal, id, passage) for every text of EXAMPLE_SETS: the passage is what the
    sentence model reads of it (the whole text, or its final sentences within the token budget)."""
    config = AnalysisConfig()
    budget = budget or config.max_tokens
    rows = []
    for name in EXAMPLE_SETS:
        for line in (DATA_DIR / name).read_text(encoding="utf-8").splitlines():
            if not line.strip():
                continue
            row = json.loads(line)
            cleaned = clean(row["text"], config.max_analysis_chars).text
            read, _ = passage(sentences(cleaned) or [cleaned], embedder, budget)
            read = " ".join(read.split())  # one line, no tabs
            rows.append((row["lang"], EXAMPLE_TONE * row["valence"], EXAMPLE_TONE * row["arousal"], row["id"], read))
    return rows


def write_examples(path: Path, embedder: Embedder) -> int:
    lines = ["# The tone head's examples besides the bank: the labelled development sets' texts (tests/data:",
             "# " + ", ".join(EXAMPLE_SETS) + "), as the sentence model reads them, with",
             f"# their labels' signs at +-{EXAMPLE_TONE}. Written by python -m pipeline.analysis.vectors; do not edit.",
             "# lang\tvalence\tarousal\tid\ttext"]
    rows = example_rows(embedder)
    lines += [f"{lang}\t{v:+.1f}\t{a:+.1f}\t{id_}\t{text}" for lang, v, a, id_, text in rows]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    examples.cache_clear()
    return len(rows)


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
    embedder = Embedder.load(threads=0)
    data = Path(__file__).resolve().parent / "data"
    print(f"wrote {write_examples(data / EXAMPLES_FILE, embedder)} examples to {data / EXAMPLES_FILE}")
    texts = fixed_texts()
    save_vectors(data / VECTORS_FILE, texts, embedder.encode(texts))
    print(f"wrote {len(texts)} vectors to {data / VECTORS_FILE}")
    write_lexicon_bias(data / lexicon.BIAS_FILE)
    print(f"wrote the lexicons' bias over the bank to {data / lexicon.BIAS_FILE}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
