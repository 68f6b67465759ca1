"""Benchmark audio mastering and MP3 encoding on the seed takes.

    python -m pipeline.audio_bench [FILE ...] [--repeat N] [--max-bytes BYTES]

Without files it uses ``$TEXTUNES_SEED_DIR/audio`` (or ``../shared/seed/audio`` beside
the repository). For each take it prints the loudness before and after, the peak, the
chosen bitrate and size, and for ``master`` and ``encode_mp3`` the median wall time per
30 s of audio and the speed as a multiple of real time.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from pipeline.audio import encode_mp3, master, loudness_lufs, read_audio


def default_seed_files() -> list[Path]:
    configured = os.environ.get("TEXTUNES_SEED_DIR")
    root = Path(configured) if configured else Path(__file__).resolve().parents[2] / "shared" / "seed"
    folder = root / "audio" if (root / "audio").is_dir() else root
    return sorted(folder.glob("*.wav"))


def median_seconds(call: Callable[[], object], repeat: int) -> float:
    timings = []
    for _ in range(repeat):
        start = time.perf_counter()
        call()
        timings.append(time.perf_counter() - start)
    return statistics.median(timings)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("files", nargs="*", type=Path)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--max-bytes", type=int, default=10 * 1024 * 1024)
    args = parser.parse_args(argv)
    files = args.files or default_seed_files()
    if not files:
        parser.error("no audio files given and no seed takes found (set TEXTUNES_SEED_DIR)")

    print(f"{'take':34} {'in LUFS':>8} {'out LUFS':>8} {'peak dBFS':>9} "
          f"{'master s/30s':>12} {'x realtime':>10} {'mp3 s/30s':>9} {'x realtime':>10} {'kbps':>5} {'bytes':>9}")
    totals = {"audio": 0.0, "master": 0.0, "encode": 0.0}
    for path in files:
        samples, rate = read_audio(path)
        seconds = len(samples) / rate
        finished = master(samples, rate)
        encoded = encode_mp3(finished, rate, max_bytes=args.max_bytes)
        t_finish = median_seconds(lambda: master(samples, rate), args.repeat)
        t_encode = median_seconds(lambda: encode_mp3(finished, rate, max_bytes=args.max_bytes), args.repeat)
        totals["audio"] += seconds
        totals["master"] += t_finish
        totals["encode"] += t_encode
        peak = 20 * np.log10(max(float(np.max(np.abs(finished))), 1e-12))
        print(f"{path.stem[:34]:34} {loudness_lufs(samples, rate):8.2f} {loudness_lufs(finished, rate):8.2f} "
              f"{peak:9.2f} {t_finish * 30 / seconds:12.3f} {seconds / t_finish:10.0f} "
              f"{t_encode * 30 / seconds:9.3f} {seconds / t_encode:10.0f} {encoded.bitrate_kbps:5d} "
              f"{len(encoded.data):9d}")
    audio = totals["audio"]
    print(f"{'all':34} {'':8} {'':8} {'':9} {totals['master'] * 30 / audio:12.3f} "
          f"{audio / totals['master']:10.0f} {totals['encode'] * 30 / audio:9.3f} {audio / totals['encode']:10.0f}")
    print(f"median of {args.repeat} runs each; {os.cpu_count()} CPUs visible")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
