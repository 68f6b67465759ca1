"""Per-language (and per-case) accuracy of the analyser on the labelled texts in tests/data.

    python -m pipeline.analysis.evaluate [--data tests/data/tone_dev.jsonl] [--verbose] [--as-shipped]

A development set the tone head learns from is measured with a head fitted without it (leave
one set out), unless ``--as-shipped``.

A text counts as right on valence (arousal) when the sign of the brief's value equals the
label's; on mood when at least one chosen mood is in the label's acceptable set. Rows that
carry a ``case`` (the harder kinds: tense-quiet, rant, negation, ...) are also tallied per case,
and every case other than ``plain`` together as ``harder``.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import dataclass, field
from pathlib import Path

DEFAULT_DATA = [
    Path("tests/data/texts.jsonl"),
    Path("tests/data/heldout.jsonl"),
    Path("tests/data/fresh.jsonl"),
    Path("tests/data/unseen_en.jsonl"),
    Path("tests/data/unseen_ko.jsonl"),
    Path("tests/data/tone_dev.jsonl"),
    Path("tests/data/tone_dev_long.jsonl"),
    Path("tests/data/tone_unseen.jsonl"),
    Path("tests/data/tone_unseen2.jsonl"),
    Path("tests/data/tone_unseen3.jsonl"),
    Path("tests/data/tone_dev5a.jsonl"),
    Path("tests/data/tone_dev5b.jsonl"),
    Path("tests/data/tone_unseen4.jsonl"),
    Path("tests/data/tone_unseen5.jsonl"),
    Path("tests/data/tone_unseen6.jsonl"),
]
LANGUAGES = {"en": "English", "ko": "Korean"}


@dataclass
class Tally:
    n: int = 0
    valence: int = 0
    arousal: int = 0
    both: int = 0
    mood: int = 0
    misses: list[str] = field(default_factory=list)

    def row(self, name: str) -> str:
        if not self.n:
            return f"{name:<30} {0:>4}"
        pct = lambda k: f"{100 * k / self.n:5.1f} %"  # noqa: E731
        return (f"{name:<30} {self.n:>4}  {pct(self.valence):>9}  {pct(self.arousal):>9}  "
                f"{pct(self.both):>9}  {pct(self.mood):>9}")


def load_rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def _keys(row: dict) -> list[str]:
    lang = row["lang"]
    keys = [lang, "all"]
    case = row.get("case")
    if case:
        keys.append(f"{lang}/{case}")
        if case != "plain":
            keys.append(f"{lang}/harder")
    return keys


def evaluate(analyser, rows: list[dict]) -> dict[str, Tally]:  # type: ignore[no-untyped-def]
    """Tallies keyed by language ("en", "ko"), "all", and "LANG/CASE" / "LANG/harder" where rows have cases."""
    tallies: dict[str, Tally] = {}
    for row in rows:
        brief = analyser.analyse_text(row["text"])
        ok_v = (brief.valence > 0) == (row["valence"] > 0)
        ok_a = (brief.arousal > 0) == (row["arousal"] > 0)
        ok_m = bool(set(brief.moods) & set(row["moods"]))
        for key in _keys(row):
            t = tallies.setdefault(key, Tally())
            t.n += 1
            t.valence += ok_v
            t.arousal += ok_a
            t.both += ok_v and ok_a
            t.mood += ok_m
            if key == "all" and not (ok_v and ok_a and ok_m):
                t.misses.append(
                    f"{row['id']}: v {brief.valence:+.2f} (want {row['valence']:+d}) a {brief.arousal:+.2f} "
                    f"(want {row['arousal']:+d}) moods {brief.moods}"
                )
    return tallies


def report(tallies: dict[str, Tally]) -> list[str]:
    lines = [f"{'':<30} {'n':>4}  {'valence':>9}  {'arousal':>9}  {'both':>9}  {'mood':>9}"]
    for lang, name in LANGUAGES.items():
        if lang not in tallies:
            continue
        lines.append(tallies[lang].row(name))
        if f"{lang}/harder" in tallies:
            lines.append(tallies[f"{lang}/harder"].row("  harder cases"))
        cases = sorted(k for k in tallies if k.startswith(f"{lang}/") and k != f"{lang}/harder")
        lines += [tallies[k].row("    " + k.split("/", 1)[1]) for k in cases]
    lines.append(tallies["all"].row("all"))
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, action="append", help="JSONL file(s) of labelled texts")
    parser.add_argument("--verbose", action="store_true", help="list the texts with a wrong answer")
    parser.add_argument("--as-shipped", action="store_true",
                        help="measure the tone head's own development sets with the shipped head too "
                             "(default: leave the measured set out of the head)")
    args = parser.parse_args(argv)
    from . import Analyser
    from .vectors import EXAMPLE_SETS

    analyser = Analyser.load()
    for path in args.data or [p for p in DEFAULT_DATA if p.exists()]:
        rows = load_rows(path)
        reader, note = analyser, ""
        if path.name in EXAMPLE_SETS and not args.as_shipped:
            reader = analyser.without_examples({r["id"] for r in rows})
            note = "  (a development set: measured with a tone head fitted without it; --as-shipped for the shipped head)"
        tallies = evaluate(reader, rows)
        print(f"\n{path}{note}")
        print("\n".join(report(tallies)))
        if args.verbose:
            print("\n".join("  " + m for m in tallies["all"].misses))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
