"""Benchmark the decode engine against transformers' ``generate`` and static batching.

    python -m worker.bench                            # every CPU part, musicgen-small's shape (~95 min on 2 cores)
    python -m worker.bench --part steps               # one part: steps, long or arrivals
    python -m worker.bench --size tiny                # a smoke run in a minute or two
    python -m worker.bench --device cuda --part gpu   # on a GPU host: bf16, CUDA graphs on and off

Every ratio is measured in the same run, on the same random model (random weights cost what
trained ones cost):

- **steps**: milliseconds per decode step at batch 1, 4 and 8 (1 and 16 on CUDA), the engine
  vs transformers' ``generate`` (EnCodec left out of both);
- **long**: wall time per second of audio for a 30 s and a 120 s take (windows of 30 s, each
  next one prompted with 12 s of the last), EnCodec included;
- **arrivals**: requests of mixed lengths arriving as a Poisson process at about 80 % of what
  static batching can serve, through Redis and the real worker: today's policy (claim a batch,
  run it to its end with ``generate``), the same policy on our decoder, and the engine's
  continuous batching; throughput and p50/p95 time from submit to the last ``done``;
- **gpu**: step cost at batch 1 and 16 and 30 s takes: CUDA graphs on and off, ``generate``,
  the kernels one step launches (and where their time goes), and (with
  ``--baseline-decoder FILE``) another version of the decoder in the same run.

``--json PATH`` also writes the figures as JSON.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import json
import os
import random
import statistics
import threading
import time
from collections.abc import Callable, Iterator

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402

from pipeline.models import TuneRequest  # noqa: E402
from worker import engine as engine_module  # noqa: E402
from worker.engine import DecodeEngine, EngineOptions, ReferenceEngine, TakeRequest, make  # noqa: E402
from worker.local_redis import RedisServer  # noqa: E402
from worker.loop import Worker, WorkerOptions  # noqa: E402
from worker.musicgen import MusicGen, Row, pick_device, pick_dtype  # noqa: E402
from worker.queue import Event, JobQueue, ReplyTo  # noqa: E402
from worker.random_model import random_musicgen  # noqa: E402

CAPTIONS = [
    "calm lo-fi hip hop with piano", "epic orchestral with strings and drums", "sad cello, minor key",
    "happy pop with guitar, 120 bpm", "dark ambient electronic", "jazz with saxophone and upright bass",
    "peaceful ukulele, hawaiian", "energetic rock with electric guitar",
]


def load(size: str, device: str) -> MusicGen:
    started = time.perf_counter()
    model, processor = random_musicgen(size)  # type: ignore[arg-type]
    device = pick_device(device)
    model.to(device, dtype=pick_dtype(device))
    params = sum(p.numel() for p in model.parameters())
    print(f"model: random musicgen-{size} shape, {params / 1e6:.0f} M parameters, built in "
          f"{time.perf_counter() - started:.1f} s; torch {torch.__version__}, {torch.get_num_threads()} threads; "
          f"device {device} ({_device_name(device)}), {str(pick_dtype(device)).removeprefix('torch.')}")
    return MusicGen(model, processor, device, f"random-{size}")


def _device_name(device: str) -> str:
    return torch.cuda.get_device_name(device) if device.startswith("cuda") else "CPU"


def _sync(musicgen: MusicGen) -> None:
    if musicgen.device.startswith("cuda"):
        torch.cuda.synchronize()


# ---- steps ---------------------------------------------------------------------------------
def engine_step_ms(musicgen: MusicGen, batch: int, steps: int, *, graphs: bool = True) -> float:
    engine = DecodeEngine(musicgen, EngineOptions(slots=batch, cuda_graphs=graphs, max_duration_s=60))
    for i in range(batch):
        engine.add(TakeRequest(i, CAPTIONS[i % len(CAPTIONS)], i, musicgen.frames_for(30)))
    for _ in range(5):  # admit, and warm up
        engine.step()
    _sync(musicgen)
    started = time.perf_counter()
    for _ in range(steps):
        engine.step()
    _sync(musicgen)
    return (time.perf_counter() - started) / steps * 1000


def generate_step_ms(musicgen: MusicGen, batch: int, steps: int) -> float:
    """transformers' generate for ``steps`` steps, EnCodec stubbed out, minus a 1-step call
    (text encoding and set-up)."""
    encodec = musicgen.model.audio_encoder
    real = encodec.decode
    encodec.decode = lambda codes, *a, **k: type("Out", (), {"audio_values": torch.zeros(codes.shape[1], 1, 640)})()
    rows = [Row(CAPTIONS[i % len(CAPTIONS)], i, 0.0) for i in range(batch)]
    try:
        def run(n: int) -> float:
            inputs = musicgen.processor(text=[r.caption for r in rows], padding=True, return_tensors="pt").to(musicgen.device)
            _sync(musicgen)
            started = time.perf_counter()
            with torch.inference_mode():
                musicgen.model.generate(**inputs, do_sample=True, guidance_scale=3.0, top_k=250, max_new_tokens=n)
            _sync(musicgen)
            return time.perf_counter() - started

        run(5)
        return (run(steps + 1) - run(1)) / steps * 1000
    finally:
        encodec.decode = real


def part_steps(musicgen: MusicGen, batches: tuple[int, ...], steps: int, rounds: int = 3) -> dict[str, object]:
    """Each batch size measured ``rounds`` times, generate and engine taking turns, so that a
    passing load on the machine touches both; the medians are compared."""
    print(f"\nms per decode step ({steps} steps, median of {rounds} rounds taking turns, EnCodec excluded):")
    print(f"  {'batch':>5} {'generate':>10} {'engine':>10} {'engine/generate':>16}")
    rows = {}
    for batch in batches:
        hf: list[float] = []
        ours: list[float] = []
        for _ in range(rounds):
            hf.append(generate_step_ms(musicgen, batch, steps))
            ours.append(engine_step_ms(musicgen, batch, steps))
        a, b = statistics.median(hf), statistics.median(ours)
        rows[batch] = {"generate_ms": round(a, 2), "engine_ms": round(b, 2), "ratio": round(b / a, 3),
                       "generate_rounds_ms": [round(x, 2) for x in hf], "engine_rounds_ms": [round(x, 2) for x in ours]}
        print(f"  {batch:>5} {a:>10.1f} {b:>10.1f} {b / a:>15.2f}x   "
              f"(rounds: generate {', '.join(f'{x:.1f}' for x in hf)}; engine {', '.join(f'{x:.1f}' for x in ours)})")
    return {"steps": steps, "rounds": rounds, "by_batch": rows}


# ---- long tracks ----------------------------------------------------------------------------
def take_seconds(musicgen: MusicGen, seconds: float, *, graphs: bool = True) -> float:
    engine = DecodeEngine(musicgen, EngineOptions(slots=1, cuda_graphs=graphs, max_duration_s=max(seconds, 30)))
    make(engine, [TakeRequest("warm", CAPTIONS[0], 0, musicgen.frames_for(1))])
    _sync(musicgen)
    started = time.perf_counter()
    [take] = make(engine, [TakeRequest("take", CAPTIONS[0], 1, musicgen.frames_for(seconds))])
    musicgen.decode_audio(take.codes)
    _sync(musicgen)
    return time.perf_counter() - started


def part_long(musicgen: MusicGen, short: float, long: float) -> dict[str, object]:
    a, b = take_seconds(musicgen, short), take_seconds(musicgen, long)
    print(f"\none take at batch 1, EnCodec included:")
    print(f"  {short:>5g} s take  {a:8.1f} s wall  {a / short:6.3f} s per s of audio")
    print(f"  {long:>5g} s take  {b:8.1f} s wall  {b / long:6.3f} s per s of audio   "
          f"costs {b / a:.2f}x the {short:g} s take for {long / short:g}x the audio")
    return {"short_s": short, "short_wall_s": round(a, 2), "long_s": long, "long_wall_s": round(b, 2),
            "cost_ratio": round(b / a, 3)}


# ---- arrivals -------------------------------------------------------------------------------
class Arrivals:
    """Submits requests at Poisson times and records when each job's last ``done`` is seen."""

    def __init__(self, queue: JobQueue, platform: str) -> None:
        self.queue, self.stream = queue, queue.events_stream(platform)
        self.platform = platform
        self.submitted: dict[str, float] = {}
        self.done: dict[str, float] = {}

    def run(self, lengths: list[float], gaps: list[float], timeout_s: float) -> None:
        last = self.queue.redis.xrevrange(self.stream, count=1)
        since = last[0][0] if last else "0-0"
        watcher = threading.Thread(target=self._watch, args=(since, len(lengths), timeout_s), daemon=True)
        watcher.start()
        for i, (length, gap) in enumerate(zip(lengths, gaps)):
            time.sleep(gap)
            job = self.queue.submit(TuneRequest(prompt=CAPTIONS[i % len(CAPTIONS)], duration=length, seed=i),
                                    ReplyTo(platform=self.platform))
            self.submitted[job.job_id] = time.time()
        watcher.join(timeout_s)
        if len(self.done) < len(lengths):
            raise TimeoutError("the worker did not finish every request in time")

    def _watch(self, since: object, count: int, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        takes_seen: dict[str, int] = {}
        while len(self.done) < count and time.monotonic() < deadline:
            for _, entries in self.queue.redis.xread({self.stream: since}, block=500) or []:
                for entry_id, fields in entries:
                    since = entry_id
                    event = Event.from_json(fields[b"event"])
                    if event.type == "failed":
                        raise RuntimeError(event.error)
                    if event.type == "done":
                        takes_seen[event.job_id] = takes_seen.get(event.job_id, 0) + 1
                        if takes_seen[event.job_id] == event.take_count:
                            self.done[event.job_id] = time.time()

    def summary(self) -> dict[str, float]:
        latencies = sorted(self.done[j] - self.submitted[j] for j in self.done)
        span = max(self.done.values()) - min(self.submitted.values())
        return {"requests": len(latencies), "throughput_rps": round(len(latencies) / span, 4),
                "p50_s": round(statistics.median(latencies), 2), "p95_s": round(_percentile(latencies, 0.95), 2),
                "span_s": round(span, 1)}


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    position = q * (len(ordered) - 1)
    low = int(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def run_policy(musicgen: MusicGen, url: str, engine_factory: Callable[[], object], lengths: list[float],
               gaps: list[float], tag: str) -> dict[str, float]:
    queue = JobQueue.from_url(url, prefix=f"bench-{tag}-{os.getpid()}")
    worker = Worker(queue, musicgen, engine_factory(), WorkerOptions(block_ms=200, consumer=f"bench-{tag}"))  # type: ignore[arg-type]
    stop = threading.Event()
    thread = threading.Thread(target=worker.run, args=(stop,), daemon=True)
    thread.start()
    try:
        arrivals = Arrivals(queue, "bench")
        arrivals.run(lengths, gaps, timeout_s=sum(gaps) + 3600)
        return arrivals.summary()
    finally:
        stop.set()
        thread.join(300)
        queue.close()


def part_arrivals(musicgen: MusicGen, url: str, slots: int, lengths_choice: tuple[float, ...], requests: int,
                  load: float, policies: list[str]) -> dict[str, object]:
    options = EngineOptions(slots=slots, max_duration_s=max(lengths_choice) + 1)
    factories: dict[str, Callable[[], object]] = {
        "static-generate": lambda: ReferenceEngine(musicgen, options),
        "static-engine": lambda: DecodeEngine(musicgen, EngineOptions(**{**options.__dict__, "static": True})),
        "continuous": lambda: DecodeEngine(musicgen, options),
    }
    rng = random.Random(7)
    lengths = [rng.choice(lengths_choice) for _ in range(requests)]
    # What static batching serves: one full batch of `slots` mixed requests, run to its longest.
    batch = [TakeRequest(i, CAPTIONS[i % len(CAPTIONS)], i, musicgen.frames_for(lengths_choice[i % len(lengths_choice)]))
             for i in range(slots)]
    started = time.perf_counter()
    make(ReferenceEngine(musicgen, options), batch)
    capacity = slots / (time.perf_counter() - started)
    rate = load * capacity
    gaps = [rng.expovariate(rate) for _ in range(requests)]
    gaps[0] = 0.0
    print(f"\narrivals: {requests} requests of {'/'.join(f'{x:g}' for x in lengths_choice)} s, Poisson at "
          f"{rate:.4f} req/s = {load:.0%} of static batching's {capacity:.4f} req/s ({slots} slots), through Redis:")
    print(f"  {'policy':16} {'throughput':>12} {'p50':>9} {'p95':>9}")
    results: dict[str, object] = {"capacity_rps": round(capacity, 4), "rate_rps": round(rate, 4), "slots": slots,
                                  "lengths": lengths}
    server = None
    if not url:
        server = RedisServer()
        server.start()
        url = server.url
    try:
        for policy in policies:
            summary = run_policy(musicgen, url, factories[policy], lengths, gaps, policy)
            results[policy] = summary
            print(f"  {policy:16} {summary['throughput_rps']:>8.4f}/s {summary['p50_s']:>8.1f}s {summary['p95_s']:>8.1f}s")
    finally:
        if server:
            server.cleanup()
    if "continuous" in results and "static-generate" in results:
        ours, base = results["continuous"], results["static-generate"]
        print(f"  continuous vs static-generate: p95 {ours['p95_s'] / base['p95_s']:.2f}x, "  # type: ignore[index]
              f"throughput {ours['throughput_rps'] / base['throughput_rps']:.2f}x")  # type: ignore[index]
    return results


# ---- gpu ----------------------------------------------------------------------------------
def load_decoder(path: str) -> type:
    """The ``SlotDecoder`` class of another version of worker/decoder.py (say, from
    ``git show REV:worker/decoder.py``), to measure against in the same run."""
    spec = importlib.util.spec_from_file_location("baseline_decoder", path)
    if not os.path.isfile(path) or spec is None or spec.loader is None:
        raise SystemExit(f"error: --baseline-decoder: {path} is not a Python file")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    if not isinstance(getattr(module, "SlotDecoder", None), type):
        raise SystemExit(f"error: --baseline-decoder: {path} defines no SlotDecoder class")
    return module.SlotDecoder


@contextlib.contextmanager
def decoder_class(cls: type | None) -> Iterator[None]:
    """Engines built inside use ``cls`` as their decoder (None: the current one)."""
    if cls is None:
        yield
        return
    current = engine_module.SlotDecoder
    engine_module.SlotDecoder = cls  # type: ignore[misc]
    try:
        yield
    finally:
        engine_module.SlotDecoder = current  # type: ignore[misc]


def step_kernels(musicgen: MusicGen) -> dict[str, object]:
    """Kernels launched by one decode step at batch 1 (30 s window, run eagerly) and their GPU
    time (CUDA only; elsewhere an empty dict)."""
    from torch.profiler import ProfilerActivity, profile

    if not musicgen.device.startswith("cuda"):
        return {}
    engine = DecodeEngine(musicgen, EngineOptions(slots=1, cuda_graphs=False, max_duration_s=30))
    engine.add(TakeRequest(0, CAPTIONS[0], 0, musicgen.frames_for(30)))
    for _ in range(3):
        engine.step()
    _sync(musicgen)
    length = engine.decoder.max_positions
    with torch.inference_mode(), profile(activities=[ProfilerActivity.CUDA]) as prof:
        engine._step_tensors(1, length, musicgen.max_text_tokens)
        _sync(musicgen)
    kernels = [e for e in prof.events() if e.device_type == torch.autograd.DeviceType.CUDA]
    by_name: dict[str, list[float]] = {}
    for event in kernels:
        entry = by_name.setdefault(event.name[:100], [0, 0.0])
        entry[0] += 1
        entry[1] += event.device_time
    top = sorted(by_name.items(), key=lambda item: -item[1][1])[:12]
    return {"kernels": len(kernels), "kernel_ms": round(sum(e.device_time for e in kernels) / 1000, 3),
            "top": [{"name": name, "count": int(n), "us": round(us, 1)} for name, (n, us) in top]}


def part_gpu(musicgen: MusicGen, steps: int, baseline: type | None, save: Callable[[dict[str, object]], None]) -> dict[str, object]:
    """Step cost at batch 1 and 16 and 30 s takes, the figures the goal is about first; ``save``
    is called after every figure."""
    out: dict[str, object] = {"steps": steps}
    label = "baseline decoder"

    def note(key: str, value: object, line: str) -> None:
        out[key] = value
        save(out)
        print(f"  {line}", flush=True)

    print(f"\nGPU ({_device_name(musicgen.device)}), ms per decode step ({steps} steps) and 30 s takes:")
    for batch in (1, 16):
        ms = engine_step_ms(musicgen, batch, steps)
        note(f"step_ms_batch{batch}_graphs", round(ms, 3), f"step, batch {batch:>2}, CUDA graphs:          {ms:.3f} ms")
        if baseline is not None:
            with decoder_class(baseline):
                ms = engine_step_ms(musicgen, batch, steps)
            note(f"step_ms_batch{batch}_graphs_baseline", round(ms, 3), f"step, batch {batch:>2}, graphs, {label}: {ms:.3f} ms")
    take = take_seconds(musicgen, 30.0)
    note("take30_s_graphs", round(take, 3), f"30 s take, batch 1, graphs: {take:.2f} s ({30 / take:.1f} s of audio per s)")
    if baseline is not None:
        with decoder_class(baseline):
            take = take_seconds(musicgen, 30.0)
        note("take30_s_graphs_baseline", round(take, 3), f"30 s take, batch 1, graphs, {label}: {take:.2f} s")
    kernels = step_kernels(musicgen)
    note("step_kernels_eager", kernels, "one step, batch 1, launched kernel by kernel: "
         f"{kernels.get('kernels')} kernels, {kernels.get('kernel_ms')} ms of GPU time")
    for batch in (1, 16):
        ms = engine_step_ms(musicgen, batch, steps, graphs=False)
        note(f"step_ms_batch{batch}_eager", round(ms, 3), f"step, batch {batch:>2}, no graphs:           {ms:.3f} ms")
        ms = generate_step_ms(musicgen, batch, steps)
        note(f"step_ms_batch{batch}_generate", round(ms, 3), f"step, batch {batch:>2}, transformers generate: {ms:.3f} ms")
    engine = DecodeEngine(musicgen, EngineOptions(slots=16))
    started = time.perf_counter()
    make(engine, [TakeRequest(i, CAPTIONS[i % 8], i, musicgen.frames_for(30)) for i in range(16)])
    _sync(musicgen)
    wall = time.perf_counter() - started
    note("take30_batch16_s_graphs", round(wall, 2), f"16 takes of 30 s at once, graphs (no EnCodec): {wall:.2f} s")
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", choices=["small", "tiny"], default="small", help="model shape (default: %(default)s)")
    parser.add_argument("--device", default="cpu", help="cpu, cuda, auto… (default: %(default)s)")
    parser.add_argument("--part", action="append", choices=["steps", "long", "arrivals", "gpu"],
                        help="run only these parts (repeatable; default: steps, long, arrivals; gpu on CUDA)")
    parser.add_argument("--requests", type=int, default=24, help="arrivals: how many requests (default: %(default)s)")
    parser.add_argument("--load", type=float, default=0.8, help="arrivals: share of static capacity (default: %(default)s)")
    parser.add_argument("--policies", default="static-generate,static-engine,continuous",
                        help="arrivals: which policies, comma-separated (default: %(default)s)")
    parser.add_argument("--redis-url", default="", help="arrivals: use this Redis (default: start a throwaway one)")
    parser.add_argument("--json", help="also write the figures to this file")
    parser.add_argument("--baseline-decoder", metavar="FILE",
                        help="gpu: also measure this version of worker/decoder.py, e.g. "
                             "'git show REV:worker/decoder.py > old.py' (default: none)")
    args = parser.parse_args(argv)
    cuda = pick_device(args.device).startswith("cuda")
    parts = args.part or (["gpu", "arrivals"] if cuda else ["steps", "long", "arrivals"])
    baseline = load_decoder(args.baseline_decoder) if args.baseline_decoder else None  # before the model loads
    musicgen = load(args.size, args.device)
    figures: dict[str, object] = {"size": args.size, "device": _device_name(musicgen.device),
                                  "dtype": str(musicgen.dtype).removeprefix("torch."), "threads": torch.get_num_threads()}
    def save() -> None:
        if args.json:
            with open(args.json, "w") as out:
                json.dump(figures, out, indent=2)

    if "steps" in parts:
        figures["steps"] = part_steps(musicgen, (1, 16) if cuda else (1, 4, 8), 200 if cuda else 30)
        save()
    if "long" in parts:
        figures["long"] = part_long(musicgen, 30.0, 120.0)
        save()
    if "gpu" in parts:
        def save_gpu(gpu: dict[str, object]) -> None:
            figures["gpu"] = gpu
            save()

        part_gpu(musicgen, 200, baseline, save_gpu)
    if "arrivals" in parts:
        lengths = (10.0, 20.0, 30.0) if cuda else (2.0, 4.0, 6.0)
        figures["arrivals"] = part_arrivals(musicgen, args.redis_url, 16 if cuda else 8, lengths, args.requests,
                                            args.load, args.policies.split(","))
    save()
    if args.json:
        print(f"\nwrote {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
