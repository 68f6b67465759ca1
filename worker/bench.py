"""Benchmark: does dynamic batching through Redis keep the model's batching speed-up?

    python -m worker.bench                 # musicgen-small-sized random model, 2 s of audio
    python -m worker.bench --size tiny     # seconds, for a smoke run

Prints, all measured in the same run:
- bare ``generate``: N requests one call each vs one call with N rows (the ceiling);
- end to end through Redis and the batching worker: N requests one at a time (each waits
  for its MP3) vs N submitted together — the throughput ratio users get;
- the queue's own overhead in the batched run (submit -> claim, generate-end -> ``done``
  seen by a frontend, less audio finishing) as a share of the total.
Random weights make noise, not music, but cost exactly what trained ones cost.
"""

from __future__ import annotations

import argparse
import os
import threading
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from pipeline.models import TuneRequest  # noqa: E402
from worker.local_redis import RedisServer  # noqa: E402
from worker.loop import Worker, WorkerOptions  # noqa: E402
from worker.musicgen import MusicGen, Row  # noqa: E402
from worker.queue import Event, JobQueue, ReplyTo  # noqa: E402
from worker.random_model import random_musicgen  # noqa: E402

CAPTIONS = [
    "calm lo-fi hip hop with piano", "epic orchestral with strings and drums", "sad cello, minor key",
    "happy pop with guitar, 120 bpm", "dark ambient electronic", "jazz with saxophone and upright bass",
    "peaceful ukulele, hawaiian", "energetic rock with electric guitar",
]


def _engine(size: str, device: str) -> MusicGen:
    import torch

    from worker.musicgen import pick_device, pick_dtype

    started = time.perf_counter()
    model, processor = random_musicgen(size)  # type: ignore[arg-type]
    params = sum(p.numel() for p in model.parameters())
    print(f"model: random musicgen-{size} shape, {params / 1e6:.0f} M parameters, built in "
          f"{time.perf_counter() - started:.1f} s; torch {torch.__version__}, {torch.get_num_threads()} threads")
    device = pick_device(device)
    model.to(device, dtype=pick_dtype(device))
    print(f"device: {device}, {str(pick_dtype(device)).removeprefix('torch.')}")
    return MusicGen(model, processor, device, f"random-{size}")


def mixed_lengths(engine: MusicGen, short: float, long: float, n: int) -> tuple[float, float]:
    """Half the rows short, half long: one padded call (trim after) vs one call per length."""
    rows = [Row(CAPTIONS[i % len(CAPTIONS)], i, short if i < n // 2 else long) for i in range(n)]
    started = time.perf_counter()
    engine.generate(rows)
    padded = time.perf_counter() - started
    started = time.perf_counter()
    engine.generate(rows[: n // 2])
    engine.generate(rows[n // 2:])
    grouped = time.perf_counter() - started
    return padded, grouped


def bare(engine: MusicGen, n: int, duration: float) -> tuple[float, float]:
    rows = [Row(CAPTIONS[i % len(CAPTIONS)], i, duration) for i in range(n)]
    started = time.perf_counter()
    for row in rows:
        engine.generate([row])
    one_by_one = time.perf_counter() - started
    started = time.perf_counter()
    engine.generate(rows)
    batched = time.perf_counter() - started
    return one_by_one, batched


class DoneWatcher:
    def __init__(self, queue: JobQueue, platform: str) -> None:
        self.queue, self.stream = queue, queue.events_stream(platform)
        last = queue.redis.xrevrange(self.stream, count=1)
        self.since = last[0][0] if last else "0-0"
        self.seen: dict[str, float] = {}

    def wait(self, job_ids: set[str], timeout: float = 1800.0) -> None:
        deadline = time.monotonic() + timeout
        while not job_ids <= self.seen.keys():
            if time.monotonic() > deadline:
                raise TimeoutError("jobs did not finish; is the worker running?")
            for _, entries in self.queue.redis.xread({self.stream: self.since}, block=1000) or []:
                for entry_id, fields in entries:
                    self.since = entry_id
                    event = Event.from_json(fields[b"event"])
                    if event.type in ("done", "failed"):
                        if event.type == "failed":
                            raise RuntimeError(event.error)
                        self.seen[event.job_id] = time.time()


def through_redis(engine: MusicGen, url: str, n: int, duration: float) -> dict[str, float]:
    queue = JobQueue.from_url(url, prefix=f"bench{os.getpid()}")
    worker = Worker(queue, engine, WorkerOptions(batch_size=n, block_ms=200, consumer="bench"))
    stop = threading.Event()
    thread = threading.Thread(target=worker.run, args=(stop,), daemon=True)
    thread.start()
    watcher = DoneWatcher(queue, "bench")

    def request(i: int) -> TuneRequest:
        return TuneRequest(prompt=CAPTIONS[i % len(CAPTIONS)], duration=duration, seed=i)

    try:
        started = time.perf_counter()
        for i in range(n):
            job = queue.submit(request(i), ReplyTo(platform="bench"))
            watcher.wait({job.job_id})
        one_by_one = time.perf_counter() - started

        first = len(worker.batches) + 1  # the last sequential batch may still be logging its report
        started_wall, started = time.time(), time.perf_counter()
        jobs = [queue.submit(request(i), ReplyTo(platform="bench")) for i in range(n)]
        submitted_at = time.time()
        watcher.wait({j.job_id for j in jobs})
        together = time.perf_counter() - started
    finally:
        stop.set()
        thread.join(60)
        queue.close()
    batches = [b for b in worker.batches[first - 1:] if b.claimed_at >= started_wall]
    batch = batches[0]
    done_seen = max(watcher.seen[j.job_id] for j in jobs)
    submit_to_claim = max(0.0, batch.claimed_at - submitted_at) + (submitted_at - started_wall)
    end_to_done = done_seen - batch.generate_ended_at - batch.finishing_s
    return {
        "one_by_one": one_by_one, "together": together, "batches": len(batches),
        "rows_first_batch": batch.rows, "submit_to_claim": submit_to_claim, "end_to_done": end_to_done,
        "finishing": batch.finishing_s, "model": sum(b.model_seconds for b in batches),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", choices=["small", "tiny"], default="small", help="model shape (default: %(default)s)")
    parser.add_argument("--duration", type=float, default=2.0, help="seconds of audio per request (default: %(default)s)")
    parser.add_argument("--requests", type=int, default=8, help="concurrent requests (default: %(default)s)")
    parser.add_argument("--device", default="cpu", help="cpu, cuda, auto… (default: %(default)s)")
    parser.add_argument("--mixed", action="store_true",
                        help="instead: compare padding mixed lengths into one call with one call per length")
    parser.add_argument("--redis-url", help="use this Redis (default: start a throwaway redis-server)")
    args = parser.parse_args(argv)
    # The queue validates durations of 5 s and up; the benchmark goes below on purpose.
    engine = _engine(args.size, args.device)
    engine.generate([Row("warm up", 0, 0.5)])
    n, duration = args.requests, args.duration
    if args.mixed:
        short, long = duration / 2, duration * 1.5
        padded, grouped = mixed_lengths(engine, short, long, n)
        print(f"\n{n // 2} rows of {short:g} s + {n - n // 2} rows of {long:g} s:")
        print(f"  one call, padded to {long:g} s and trimmed  {padded:8.2f} s   baseline")
        print(f"  one call per length                 {grouped:8.2f} s   {padded / grouped:.2f}x the padded throughput")
        return 0

    seq, bat = bare(engine, n, duration)
    print(f"\nbare generate, {n} requests of {duration:g} s:")
    print(f"  one call each     {seq:8.2f} s  {n / seq:6.3f} req/s")
    print(f"  one call, {n} rows  {bat:8.2f} s  {n / bat:6.3f} req/s   ratio {seq / bat:.2f}x")

    server = None
    url = args.redis_url
    if url is None:
        server = RedisServer()
        server.start()
        url = server.url
    try:
        r = through_redis(engine, url, n, duration)
    finally:
        if server:
            server.cleanup()
    print(f"\nthrough Redis + batching worker, {n} requests of {duration:g} s (MP3s in Redis, done events read):")
    print(f"  one at a time     {r['one_by_one']:8.2f} s  {n / r['one_by_one']:6.3f} req/s")
    print(f"  all together      {r['together']:8.2f} s  {n / r['together']:6.3f} req/s   ratio "
          f"{r['one_by_one'] / r['together']:.2f}x  ({r['batches']:.0f} batch(es), {r['rows_first_batch']:.0f} rows in the first)")
    overhead = r["submit_to_claim"] + r["end_to_done"]
    print("\nqueue overhead in the batched run:")
    print(f"  submit -> claim           {r['submit_to_claim'] * 1000:8.1f} ms  (the batch window waits up to {WorkerOptions().batch_window_ms} ms for more jobs)")
    print(f"  generate end -> done seen {r['end_to_done'] * 1000:8.1f} ms  (without {r['finishing'] * 1000:.0f} ms of loudness + MP3)")
    print(f"  share of total            {overhead / r['together'] * 100:8.2f} %")
    print(f"  end-to-end vs bare batched: {bat / r['together']:.2f} of the bare throughput")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
