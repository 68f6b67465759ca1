"""``textunes``: generate locally, run a worker, submit a job, analyse text, run the bots,
run the whole stack on one machine (``up``), look after the queue (``admin``).

Every option defaults to its environment variable (see ``worker/settings.py`` and the
README's settings table), so a deployment is configured by environment alone.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import signal
import sys
import threading
import time
from pathlib import Path
from typing import NoReturn

from pipeline.env import redacted_url
from worker.settings import Settings, env_name

log = logging.getLogger("textunes")


def _env(name: str) -> str:
    return f"(env {env_name(name)})"


class OneLineParser(argparse.ArgumentParser):
    """A bad flag or value gets one line on stderr (and exit status 2), not the usage block."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see '{self.prog} --help')\n")


def build_parser(settings: Settings, command: str | None = None) -> argparse.ArgumentParser:
    """The CLI. Commands with a module of their own (analyze, discord, slack, up, admin) load
    it, and its options, only when ``command`` names them: ``--help`` stays fast and a bot
    host without torch can still run everything it has installed."""
    parser = OneLineParser(
        prog="textunes",
        description="TexTuneS: background music from a chat message. MusicGen on a GPU worker, "
                    "Discord and Slack frontends, Redis in between.",
        epilog="Prompts accept inline options: 'rainy night genre:jazz mood:calm bpm:80 20s takes:2'. "
               "Run 'textunes COMMAND --help' for each command's options.",
    )
    parser.add_argument("--log-level", default=settings.log_level, help=f"DEBUG, INFO, WARNING… {_env('log_level')}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    gen = sub.add_parser("generate", help="make music in this process (no Redis) and write audio files",
                         description="Run the whole pipeline here: caption, MusicGen, loudness, the file. "
                                     "With --takes N the files are OUT-1.mp3 … OUT-N.mp3; a loop's name says -loop.")
    gen.add_argument("prompt", help="words, optionally with inline options (genre:jazz mood:calm bpm:80 20s)")
    gen.add_argument("-o", "--output", help="output path; its extension picks the format (default: textunes.mp3)")
    gen.add_argument("--text", action="store_true", help="treat PROMPT as text to analyse (text mode; '-' reads stdin)")
    _add_model_options(gen, settings)
    _add_request_options(gen)

    work = sub.add_parser("worker", help="run a GPU worker that takes jobs from Redis",
                          description="Claim jobs from Redis and make them with the decode engine: every "
                                      "take in flight is decoded together, one step at a time, and a new "
                                      "job joins as soon as a slot is free. SIGTERM stops claiming, hands "
                                      "back jobs not yet started, finishes the takes in hand and exits; a "
                                      "second SIGTERM exits at once and the jobs it held are re-claimed by "
                                      "another worker after the visibility timeout.")
    _add_model_options(work, settings)
    work.add_argument("--redis-url", default=settings.redis_url, help=f"{_env('redis_url')} default: {redacted_url(settings.redis_url)}")

    submit = sub.add_parser("submit", help="queue a job through Redis, optionally wait for the MP3s",
                            description="Enqueue a job as the 'cli' platform: how an operator checks a "
                                        "deployment without a chat. With --wait, prints progress and writes "
                                        "the MP3(s) when done (OUT-1.mp3 … for several takes).")
    submit.add_argument("prompt", nargs="?", default="", help="words, optionally with inline options")
    submit.add_argument("--redis-url", default=settings.redis_url, help=f"{_env('redis_url')} default: {redacted_url(settings.redis_url)}")
    submit.add_argument("--wait", action="store_true", help="wait for the result and write it")
    submit.add_argument("-o", "--output", help="output path with --wait; its extension picks the format "
                        "(default: textunes.mp3)")
    submit.add_argument("--extend", metavar="JOB:TAKE", help="continue that take (its start stays as it was) by "
                        "--duration more seconds (default 30)")
    submit.add_argument("--timeout", type=float, default=600.0, help="seconds to wait with --wait (default: %(default)s)")
    submit.add_argument("--text", action="store_true", help="treat PROMPT as text to analyse (text mode)")
    _add_request_options(submit)

    for name, module, help_text in (
        ("analyze", "pipeline.analysis.cli", "print the musical brief the analyser derives from a text"),
        ("discord", "bot.discord_bot", "run the Discord bot (needs DISCORD_TOKEN)"),
        ("slack", "bot.slack_app", "run the Slack app (needs SLACK_BOT_TOKEN and an app token or signing secret)"),
        ("up", "worker.stack", "run Redis, a worker and each bot whose token is set, on this machine"),
        ("admin", "worker.admin", "queue status, dead letters, requeue, cancel, purge stored audio"),
    ):
        lazy = sub.add_parser(name, help=help_text, description=help_text)
        lazy.set_defaults(module=module)
        if name != command:
            continue
        try:
            importlib.import_module(module).configure_parser(lazy)
        except ImportError as error:
            lazy.set_defaults(missing=str(error))
    return parser


def _add_model_options(parser: argparse.ArgumentParser, settings: Settings) -> None:
    parser.add_argument("--model", default=settings.model,
                        help=f"hub id or local directory {_env('model')} default: %(default)s")
    parser.add_argument("--device", default=settings.device,
                        help=f"auto (cuda, then mps, then cpu), cuda, cuda:1, cpu… {_env('device')} default: %(default)s")
    parser.add_argument("--engine", choices=("continuous", "hf"), default=settings.engine,
                        help="continuous: our decode engine (slots, long tracks, CUDA graphs); hf: transformers' "
                             f"generate, one batch run to its end, 30 s at most {_env('engine')} default: %(default)s")
    parser.add_argument("--melody-model", default=settings.melody_model,
                        help=f"a MusicGen-melody hub id or directory, for --melody clips {_env('melody_model')} "
                             "default: none")
    parser.add_argument("--max-batch", type=int, default=settings.max_batch,
                        help=f"takes decoded at once (slots); 0 = 8 on CPU, 16 on CUDA {_env('max_batch')} "
                             "default: %(default)s")


def _add_request_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--duration", type=float, help="seconds of music (default 10; inline '20s' works too)")
    parser.add_argument("--takes", type=int, help="how many different takes, 1-4 (default 1)")
    parser.add_argument("--seed", type=int, help="seed of the first take, for a repeatable result")
    parser.add_argument("--loop", action="store_true", help="a seamless loop: 2, 4 or 8 bars at the tempo, "
                        "end joined to start, no fades (FLAC unless --format says otherwise; inline 'loop:yes')")
    parser.add_argument("--format", choices=("mp3", "flac", "wav"),
                        help="file format (default: from -o's extension, else mp3; flac for a loop)")
    parser.add_argument("--melody", metavar="FILE", help="a WAV/FLAC/OGG/MP3 clip (up to 10 MB) whose tune the music "
                        "follows (first 30 s); needs a melody model (TEXTUNES_MELODY_MODEL)")


def _request(args: argparse.Namespace, settings: Settings):  # type: ignore[no-untyped-def]
    from pipeline.inline import parse_inline
    from pipeline.models import TuneRequest
    from pipeline.validation import validate

    if getattr(args, "text", False):
        request = TuneRequest(text=sys.stdin.read() if args.prompt == "-" else args.prompt)
    else:
        request = parse_inline(args.prompt)
    if args.duration is not None:
        request.duration = args.duration
    if args.takes is not None:
        request.takes = args.takes
    if args.seed is not None:
        request.seed = args.seed
    request.loop = request.loop or args.loop
    request.format = args.format or request.format or _output_format(args)
    return validate(request, settings.limits)


def _output_format(args: argparse.Namespace) -> str:
    """The format -o's extension names ("" when it names none)."""
    suffix = Path(args.output).suffix.lstrip(".").lower() if args.output else ""
    return suffix if suffix in ("mp3", "flac", "wav") else ""


def _melody_clip(args: argparse.Namespace) -> bytes | None:
    """The --melody file as a clip (raises BadMelody with the reason)."""
    from pipeline.melody import BadMelody, prepare_clip

    if not args.melody:
        return None
    path = Path(args.melody)
    if not path.is_file():
        raise BadMelody(f"No file at {args.melody}.")
    return prepare_clip(path.read_bytes(), filename=path.name)


def take_paths(output: str | None, formats: list[str], *, loop: bool = False) -> list[Path]:
    """``out.mp3`` for one take; ``out-1.mp3 … out-N.mp3`` for several. The extension is each
    file's format; a loop's name says ``-loop``."""
    path = Path(output or "textunes.mp3")
    stem = path.stem if path.suffix.lower() in (".mp3", ".flac", ".wav") else path.name
    if loop and not stem.endswith("-loop"):
        stem += "-loop"
    if len(formats) == 1:
        return [path.with_name(f"{stem}.{formats[0]}")]
    return [path.with_name(f"{stem}-{n}.{fmt}") for n, fmt in enumerate(formats, start=1)]


def cmd_generate(args: argparse.Namespace, settings: Settings) -> int:
    import numpy as np
    from tqdm import tqdm

    from pipeline.brief import brief_from_tags
    from pipeline.melody import read_clip
    from worker.engine import TakeRequest, make
    from worker.loop import generation_seconds, render_take

    request = _request(args, settings)
    clip = _melody_clip(args)
    if clip is not None and not args.melody_model:
        print("error: --melody needs a melody model: set TEXTUNES_MELODY_MODEL (or --melody-model), "
              "for example facebook/musicgen-melody", file=sys.stderr)
        return 2
    if request.mode == "text":
        analyser = _load_analyser()
        if analyser is None:
            return 2
        brief = analyser.analyse(request)
        print(f"analysis: {brief.explanation}")
    else:
        brief = brief_from_tags(request)
    print(f"caption: {brief.caption}")
    musicgen = _load_model(args, melody=clip is not None)
    if musicgen is None:
        return 2
    engine = _build_engine(musicgen, args, settings, slots=request.takes)
    seeds = [request.seed + i if request.seed is not None else int(np.random.randint(2**31)) for i in range(request.takes)]
    frames = musicgen.frames_for(generation_seconds(request, brief.bpm))
    melody = read_clip(clip)[0] if clip is not None else None
    takes = [TakeRequest(index, brief.caption, seed, frames, melody=melody) for index, seed in enumerate(seeds)]
    with tqdm(total=100, unit="%", desc="generating", disable=None) as bar:
        def progress() -> None:
            done = sum(engine.progress(take.key) for take in takes) / len(takes)
            bar.update(int(done * 100) - bar.n)
        engine.on_step = progress
        finished = make(engine, takes)
    failed = [(seed, take.error) for seed, take in zip(seeds, finished) if take.error]
    if failed:
        print(f"error: the take with seed {failed[0][0]} failed: {failed[0][1]}", file=sys.stderr)
        return 1
    rendered = [render_take(musicgen, take, request, brief.bpm, max_bytes=settings.max_upload_bytes) for take in finished]
    for path, seed, take in zip(take_paths(args.output, [r.file.format for r in rendered], loop=request.loop),
                                seeds, rendered):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(take.file.data)
        kind = f"{take.file.bitrate_kbps} kbps" if take.file.bitrate_kbps else take.file.format.upper()
        print(f"wrote {path} ({take.file.duration_s:.1f} s, seed {seed}, {kind})" + (f" - {take.file.note}" if take.file.note else ""))
    return 0


def _load_model(args: argparse.Namespace, *, melody: bool = False):  # type: ignore[no-untyped-def]
    """The MusicGen of --model, or with ``melody`` the melody model of --melody-model; None
    (after one line on stderr) when it can't be loaded."""
    from worker.musicgen import ModelLoadError, MusicGen

    try:
        if melody:
            from worker.melody import MelodyGen

            return MelodyGen.load(args.melody_model, device=args.device)
        return MusicGen.load(args.model, device=args.device)
    except ModelLoadError as error:
        print(f"error: {error}", file=sys.stderr)
        return None


def _build_engine(musicgen, args: argparse.Namespace, settings: Settings, *, slots: int | None = None):  # type: ignore[no-untyped-def]
    """The engine ``--engine`` names, with ``--max-batch`` slots (or ``slots``, for ``generate``)."""
    from worker.engine import DecodeEngine, EngineOptions, ReferenceEngine

    from worker.melody import MelodyGen

    default = 16 if musicgen.device.startswith("cuda") else 8
    options = EngineOptions(slots=slots or args.max_batch or default, guidance_scale=settings.guidance_scale,
                            top_k=settings.top_k, max_duration_s=settings.max_duration,
                            cuda_graphs=settings.cuda_graphs)
    reference = args.engine == "hf" or isinstance(musicgen, MelodyGen)  # melody models run on generate
    return (ReferenceEngine if reference else DecodeEngine)(musicgen, options)


def _load_analyser():  # type: ignore[no-untyped-def]
    """Load the text analyser at start, so a misconfigured model stops the worker at once."""
    from pipeline.analysis import Analyser, AnalysisConfig, ConfigError, ModelLoadError

    try:
        return Analyser.load(AnalysisConfig.from_env())
    except (ConfigError, ModelLoadError) as error:
        print(f"error: {error}", file=sys.stderr)
        return None


def cmd_worker(args: argparse.Namespace, settings: Settings) -> int:
    from worker import metrics
    from worker.loop import SharedAnalyser, Worker, WorkerOptions
    from worker.queue import MELODY_LANE, JobQueue
    from worker.redis_check import log_redis_warnings

    health = metrics.Health()
    loaded = threading.Event()
    health.add_check("model loaded", loaded.is_set)
    health.add_check("redis reachable", metrics.redis_reachable(args.redis_url))
    server = metrics.serve(health, settings)  # /healthz answers "starting" while the model loads
    try:
        musicgen = _load_model(args)
        melody = _load_model(args, melody=True) if args.melody_model else None
        if musicgen is None or (args.melody_model and melody is None):
            return 2
        analyser = _load_analyser()
        if analyser is None:
            return 2
        options = WorkerOptions(max_upload_bytes=settings.max_upload_bytes)
        queue = JobQueue.from_settings(settings, url=args.redis_url)
        workers = [Worker(queue, musicgen, _build_engine(musicgen, args, settings), options,
                          analyser=SharedAnalyser(analyser), health=health)]
        if melody is not None:  # a second worker in this process reads the melody lane
            melody_options = WorkerOptions(max_upload_bytes=settings.max_upload_bytes,
                                           consumer=f"{options.consumer}-{MELODY_LANE}")
            workers.append(Worker(JobQueue.from_settings(settings, url=args.redis_url, lane=MELODY_LANE), melody,
                                  _build_engine(melody, args, settings), melody_options,
                                  analyser=workers[0].analyser, health=health))
        loaded.set()
        log_redis_warnings(queue.redis, log)
        stop = threading.Event()

        def on_signal(signum: int, frame: object) -> None:
            if stop.is_set():
                log.warning("second signal: exiting now; held jobs return to the queue after the visibility timeout")
                raise SystemExit(1)
            log.info("signal %d: finishing the takes in hand, then exiting", signum)
            stop.set()

        signal.signal(signal.SIGTERM, on_signal)
        signal.signal(signal.SIGINT, on_signal)
        others = [threading.Thread(target=w.run, args=(stop,), name="textunes-melody", daemon=True) for w in workers[1:]]
        for thread in others:
            thread.start()
        try:
            workers[0].run(stop)
        finally:
            stop.set()
            for thread in others:
                thread.join()
            for worker in workers:
                worker.queue.close()
        return 0
    finally:
        if server is not None:
            server.close()


def cmd_submit(args: argparse.Namespace, settings: Settings) -> int:
    from pipeline.validation import validate
    from worker.extend import extension
    from worker.queue import JobQueue, ReplyTo, TakeRef

    if bool(args.prompt) == bool(args.extend):
        print("error: give a PROMPT, or --extend JOB:TAKE to continue a take", file=sys.stderr)
        return 2
    with JobQueue.from_settings(settings, url=args.redis_url) as queue:
        ref = None
        if args.extend:
            try:
                ref = TakeRef.parse(args.extend)
            except ValueError as error:
                print(f"error: --extend: {error}", file=sys.stderr)
                return 2
            request = extension(queue, ref, args.duration, settings.limits)
            request.format = args.format or _output_format(args) or request.format
            request.seed = args.seed
            request = validate(request, settings.limits)
        else:
            request = _request(args, settings)
        clip = _melody_clip(args)
        if clip is not None and not queue.melody_workers():
            print("error: no worker follows melodies right now (start one with TEXTUNES_MELODY_MODEL set)",
                  file=sys.stderr)
            return 2
        stream = queue.events_stream("cli")
        last = queue.redis.xrevrange(stream, count=1)
        since = last[0][0] if last else "0-0"
        job = queue.submit(request, ReplyTo(platform="cli"), extend=ref, melody=clip)
        print(f"queued job {job.job_id} (#{queue.position(job.job_id)} in line)")
        if not args.wait:
            return 0
        return _wait(queue, stream, since, job.job_id, args, loop=request.loop)


def _wait(queue, stream: str, since: bytes | str, job_id: str, args: argparse.Namespace, *,  # type: ignore[no-untyped-def]
          loop: bool = False) -> int:
    from worker.queue import Event, Take

    deadline = time.monotonic() + args.timeout
    takes: dict[int, Take] = {}
    while time.monotonic() < deadline:
        read = queue.redis.xread({stream: since}, block=1000, count=100)
        for _, entries in read or []:
            for entry_id, fields in entries:
                since = entry_id
                event = Event.from_json(fields[b"event"])
                if event.job_id != job_id:
                    continue
                if event.type == "started":
                    print(f"caption: {event.caption}")
                elif event.type == "progress":
                    print(f"progress: {event.progress:.0%}")
                elif event.type in ("failed", "cancelled"):
                    print(f"{event.type}: {event.error}", file=sys.stderr)
                    return 1
                elif event.type == "done":
                    if event.take is not None:
                        takes[event.take.index] = event.take
                    if len(takes) < event.take_count:
                        continue
                    ordered = [takes[i] for i in sorted(takes)]
                    paths = take_paths(args.output, [take.format for take in ordered], loop=loop)
                    for path, take in zip(paths, ordered):
                        data = queue.load_audio(take.audio_key)
                        if data is None:
                            print(f"take {take.index} expired before it was fetched", file=sys.stderr)
                            return 1
                        path.write_bytes(data)
                        note = f" - {take.note}" if take.note else ""
                        print(f"wrote {path} ({take.duration:.1f} s, seed {take.seed}){note}")
                    return 0
    print(f"no result for job {job_id} within {args.timeout:g} s; is a worker running?", file=sys.stderr)
    return 1


def main(argv: list[str] | None = None) -> int:
    settings = Settings.from_env()
    argv = sys.argv[1:] if argv is None else argv
    command = next((word for word in argv if not word.startswith("-")), None)
    parser = build_parser(settings, command)
    args = parser.parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    from pipeline.analysis import AnalysisError
    from pipeline.melody import BadMelody
    from pipeline.validation import InvalidRequest

    try:
        if args.command == "generate":
            return cmd_generate(args, settings)
        if args.command == "worker":
            return cmd_worker(args, settings)
        if args.command == "submit":
            return cmd_submit(args, settings)
        if getattr(args, "missing", None):
            extra = _EXTRAS.get(args.command)
            print(f"textunes {args.command} needs packages that are not installed ({args.missing}). "
                  f"Install with: pip install '{f'textunes[{extra}]' if extra else 'textunes'}'", file=sys.stderr)
            return 2
        module = importlib.import_module(args.module)
        if args.command == "analyze":
            return module.run(args)
        return module.run(args, settings)
    except (InvalidRequest, AnalysisError, BadMelody) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2


_EXTRAS = {"analyze": "worker", "discord": "discord", "slack": "slack"}  # the others need only the core


if __name__ == "__main__":
    sys.exit(main())
