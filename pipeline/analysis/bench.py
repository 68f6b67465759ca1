"""Speed of the embedded analyser: load time, ms per 2,000-word text, ms per sentence.

    python -m pipeline.analysis.bench [--repeats 5]

The 2,000-word texts are built by cycling the labelled texts in tests/data (English and
Korean separately), so they read like real prose rather than one repeated sentence.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

from .config import AnalysisConfig

DATA = Path(__file__).resolve().parents[2] / "tests" / "data" / "texts.jsonl"


def _texts(lang: str) -> list[str]:
    rows = [json.loads(line) for line in DATA.read_text(encoding="utf-8").splitlines() if line.strip()]
    return [r["text"] for r in rows if r["lang"] == lang]


def long_text(lang: str, words: int = 2_000) -> str:
    pool, out, count, i = _texts(lang), [], 0, 0
    while count < words:
        text = pool[i % len(pool)]
        out.append(text)
        count += len(text.split())
        i += 1
    return "\n".join(out)


def _time(fn, repeats: int) -> float:  # type: ignore[no-untyped-def]
    fn()  # warm-up
    samples = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - start) * 1000)
    return statistics.median(samples)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1,
                        help="BLAS threads of the sentence model (0 = the BLAS default: all cores)")
    parser.add_argument("--max-tokens", type=int, default=AnalysisConfig().max_tokens,
                        help="tokens the sentence model reads per text")
    args = parser.parse_args(argv)

    start = time.perf_counter()
    from . import Analyser

    analyser = Analyser.load(AnalysisConfig(threads=args.threads, max_tokens=args.max_tokens))
    load_s = time.perf_counter() - start
    print(f"sentence model threads: {args.threads or 'BLAS default'}, tokens read per text: {args.max_tokens}")
    print(f"load (imports, sentence model, kiwi, tone head, shipped vectors): {load_s:.2f} s")
    for lang in ("en", "ko"):
        text = long_text(lang)
        ms = _time(lambda: analyser.analyse_text(text), args.repeats)
        print(f"{lang}: 2,000-word text ({len(text):,} chars): {ms:.0f} ms (median of {args.repeats})")
        sentence = _texts(lang)[0].split(". ")[0]
        ms = _time(lambda: analyser.analyse_text(sentence), args.repeats)
        print(f"{lang}: one sentence: {ms:.1f} ms")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
