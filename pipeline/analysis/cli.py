"""``textunes analyze TEXT [--json]``: print the musical brief the analyser makes of a text."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

JSON_KEYS = ("valence", "arousal", "moods", "genres", "instruments", "bpm", "mode", "theme",
             "confidence", "caption", "explanation")


def configure_parser(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("text", nargs="?", help="the text to analyse, or - to read standard input")
    parser.add_argument("--file", type=Path, help="read the text from this file (UTF-8)")
    parser.add_argument("--json", action="store_true", help="print the brief as JSON")


def _read_text(args: argparse.Namespace) -> str:
    if args.file is not None:
        if args.text is not None:
            raise ValueError("Give the text or --file PATH, not both.")
        try:
            return args.file.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as error:
            raise ValueError(f"Cannot read {args.file}: {error}") from None
    if args.text is None:
        raise ValueError("Give the text to analyse, - for standard input, or --file PATH.")
    if args.text == "-":
        return sys.stdin.read()
    return args.text


def run(args: argparse.Namespace, analyser=None) -> int:  # type: ignore[no-untyped-def]
    """Exit status 0 on success, 2 for bad input or settings, 1 when a configured model won't load."""
    from . import Analyser, AnalysisConfig, AnalysisError, ModelLoadError

    try:
        text = _read_text(args)
        analyser = analyser or Analyser.load(AnalysisConfig.from_env())
        brief = analyser.analyse_text(text)
    except (AnalysisError, ValueError) as error:  # the text or a setting: the user can fix it
        print(f"error: {error}", file=sys.stderr)
        return 2
    except ModelLoadError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    if args.json:
        data = brief.to_dict()
        print(json.dumps({k: data[k] for k in JSON_KEYS}, ensure_ascii=False, indent=2))
    else:
        print(brief.explanation)
        print(f"moods: {', '.join(brief.moods)} | genres: {', '.join(brief.genres)} | "
              f"instruments: {', '.join(brief.instruments)}")
        print(f"theme: {brief.theme}")
        print(f"confidence: {brief.confidence:.2f}")
        print(f"caption: {brief.caption}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="textunes analyze", description=__doc__)
    configure_parser(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    raise SystemExit(main())
