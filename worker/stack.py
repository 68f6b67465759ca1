"""``textunes up``: the whole stack on one machine, with one command.

It uses the Redis named by ``--redis-url`` / ``REDIS_URL``, or starts a local
``redis-server`` with AOF on (data in ``--data-dir``); then one worker and each bot whose
token is set, as child processes whose output it prints with their name in front. A child
that dies is started again after a pause that doubles while it keeps dying (1 s … 30 s).
Ctrl-C or SIGTERM stops everything: SIGTERM to each child, up to ``--grace`` seconds to
finish (a worker completes the batch in hand), then SIGKILL; the local Redis stops last.
A second Ctrl-C kills the children at once.
"""

from __future__ import annotations

import argparse
import ctypes
import logging
import os
import shlex
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import IO

from pipeline.env import redacted_url
from worker.local_redis import RedisServer
from worker.settings import Settings, env_name

log = logging.getLogger("textunes.up")

FIRST_BACKOFF_S = 1.0
MAX_BACKOFF_S = 30.0
STABLE_AFTER_S = 30.0  # a child that ran this long before dying starts over at the first pause
_TICK_S = 0.2


def configure_parser(parser: argparse.ArgumentParser) -> None:
    parser.description = (
        "Run TexTuneS on this machine: Redis (REDIS_URL, or a local redis-server with AOF on), one "
        "worker, and the Discord and Slack bots whose tokens are set. A child that dies is restarted; "
        "Ctrl-C stops everything cleanly (twice: at once).")
    parser.add_argument("--redis-url", help=f"use this Redis instead of starting one (default: env {env_name('redis_url')}, "
                                            "if set)")
    parser.add_argument("--redis-port", type=int,
                        help=f"port of the local redis-server (env {env_name('local_redis_port')}, default 6379)")
    parser.add_argument("--data-dir",
                        help=f"where the local redis-server keeps its AOF (env {env_name('local_redis_dir')}, "
                             "default .textunes/redis)")
    parser.add_argument("--grace", type=float, default=60.0,
                        help="seconds a child may take to stop after SIGTERM before it is killed (default: %(default)s)")
    for name, default in (("worker", "textunes worker"), ("discord", "textunes discord"), ("slack", "textunes slack")):
        parser.add_argument(f"--{name}-command", metavar="CMD",
                            help=f"command line for the {name} (default: {default})")


@dataclass
class ChildSpec:
    name: str
    argv: list[str]
    env: dict[str, str]


@dataclass
class Child:
    """One supervised process: started again with a growing pause whenever it dies."""

    spec: ChildSpec
    output: Callable[[str, str], None]
    process: subprocess.Popen[str] | None = None
    started_at: float = 0.0
    next_start: float = 0.0
    quick_deaths: int = 0  # deaths in a row, each within STABLE_AFTER_S of its start
    restarts: int = 0
    _pump: threading.Thread | None = field(default=None, repr=False)

    def start(self) -> None:
        self.process = subprocess.Popen(
            self.spec.argv, env=self.spec.env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT, text=True, errors="replace", bufsize=1,
            start_new_session=True,  # Ctrl-C reaches only `up`, which then stops each child once
            preexec_fn=_die_with_parent,
        )
        self.started_at = time.monotonic()
        log.info("started %s (pid %d): %s", self.spec.name, self.process.pid, shlex.join(self.spec.argv))
        self._pump = threading.Thread(target=self._copy_output, args=(self.process.stdout,), daemon=True)
        self._pump.start()

    def _copy_output(self, stream: IO[str]) -> None:
        for line in stream:
            self.output(self.spec.name, line)

    def check(self, now: float) -> None:
        """Notice a death (schedule the restart) or start it when its pause is over."""
        if self.process is not None:
            code = self.process.poll()
            if code is None:
                return
            ran = now - self.started_at
            self.quick_deaths = self.quick_deaths + 1 if ran < STABLE_AFTER_S else 1
            pause = min(FIRST_BACKOFF_S * 2 ** (self.quick_deaths - 1), MAX_BACKOFF_S)
            self.restarts += 1
            log.warning("%s exited with code %s after %.0f s; restarting in %.0f s (restart %d)",
                        self.spec.name, code, ran, pause, self.restarts)
            self.process = None
            self.next_start = now + pause
        if now >= self.next_start:
            self.start()

    def signal(self, signum: int) -> None:
        if self.process is not None and self.process.poll() is None:
            try:
                os.killpg(self.process.pid, signum)
            except ProcessLookupError:
                pass

    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def join_output(self) -> None:
        if self._pump is not None:
            self._pump.join(timeout=5)


def run(args: argparse.Namespace, settings: Settings) -> int:
    url = args.redis_url or os.environ.get("REDIS_URL")
    redis_server = None
    if url:
        log.info("using Redis at %s", redacted_url(url))
    else:
        port = args.redis_port or settings.local_redis_port
        data_dir = args.data_dir or settings.local_redis_dir
        try:
            redis_server = RedisServer(port, data_dir=data_dir, appendonly=True,
                                       extra_args=["--maxmemory-policy", "noeviction"])
            redis_server.start(timeout_s=60)
        except RuntimeError as error:
            print(f"error: {error}; pass --redis-port or set REDIS_URL", file=sys.stderr)
            return 1
        url = redis_server.url
        log.info("started redis-server on port %d (AOF on, data in %s)", port, redis_server.dir)
    try:
        specs = child_specs(args, settings, url)
        missing = [spec for spec in specs if shutil.which(spec.argv[0]) is None]
        if missing:
            print(f"error: cannot run the {missing[0].name} command '{missing[0].argv[0]}': not found", file=sys.stderr)
            return 2
        return supervise([Child(spec, _print_prefixed) for spec in specs], redis_server, grace_s=args.grace)
    finally:
        if redis_server is not None:
            redis_server.stop()
            log.info("redis-server stopped")


def child_specs(args: argparse.Namespace, settings: Settings, redis_url: str) -> list[ChildSpec]:
    """The worker, and each bot whose token is set. Each gets REDIS_URL and, when
    TEXTUNES_METRICS_PORT is set, a port of its own from there upwards."""
    wanted = [("worker", args.worker_command, True),
              ("discord", args.discord_command, bool(settings.discord_token)),
              ("slack", args.slack_command, bool(settings.slack_bot_token))]
    specs = []
    for name, command, enabled in wanted:
        if not enabled:
            log.info("not starting the %s bot: its token is not set", name)
            continue
        env = {**os.environ, "REDIS_URL": redis_url, "TEXTUNES_LOG_LEVEL": args.log_level}
        if settings.metrics_port:
            env["TEXTUNES_METRICS_PORT"] = str(settings.metrics_port + len(specs))
            log.info("%s: metrics and health on port %s", name, env["TEXTUNES_METRICS_PORT"])
        argv = shlex.split(command) if command else [sys.executable, "-m", "worker.cli", name]
        specs.append(ChildSpec(name, argv, env))
    return specs


def supervise(children: list[Child], redis_server: RedisServer | None, *, grace_s: float) -> int:
    """Keep the children (and a local Redis) running until SIGINT/SIGTERM, then stop them."""
    stop, force = threading.Event(), threading.Event()

    def on_signal(signum: int, frame: object) -> None:
        if stop.is_set():
            log.warning("signal %d again: killing the children now", signum)
            force.set()
        else:
            log.info("signal %d: stopping %s", signum, ", ".join(c.spec.name for c in children))
            stop.set()

    previous = {signum: signal.signal(signum, on_signal) for signum in (signal.SIGINT, signal.SIGTERM)}
    try:
        while not stop.is_set():
            if redis_server is not None:
                _keep_redis_up(redis_server)
            now = time.monotonic()
            for child in children:
                child.check(now)
            stop.wait(_TICK_S)
        _stop_all(children, grace_s, force)
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    return 0


def _keep_redis_up(server: RedisServer) -> None:
    """Start the local redis-server again if it died (it reloads its AOF)."""
    if server.process is not None and server.process.poll() is None:
        return
    if server.process is not None:
        log.warning("redis-server exited with code %s; starting it again", server.process.returncode)
    try:
        server.start(timeout_s=60)
        log.info("redis-server is back on port %d", server.port)
    except RuntimeError as error:
        log.error("%s; trying again in %g s", error, MAX_BACKOFF_S / 6)
        time.sleep(MAX_BACKOFF_S / 6)


def _stop_all(children: list[Child], grace_s: float, force: threading.Event) -> None:
    for child in children:
        child.signal(signal.SIGTERM)
    deadline = time.monotonic() + grace_s
    while any(child.running() for child in children) and time.monotonic() < deadline and not force.is_set():
        force.wait(_TICK_S)
    for child in children:
        if child.running():
            log.warning("%s did not stop within %g s; killing it", child.spec.name, grace_s)
            child.signal(signal.SIGKILL)
    for child in children:
        if child.process is not None:
            child.process.wait()
            log.info("%s stopped (exit code %s)", child.spec.name, child.process.returncode)
        child.join_output()


_output_lock = threading.Lock()


def _print_prefixed(name: str, line: str) -> None:
    text = line if line.endswith("\n") else line + "\n"
    with _output_lock:
        sys.stdout.write(f"{name:<8}| {text}")
        sys.stdout.flush()


def _prctl() -> Callable[[int, int], int] | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        return ctypes.CDLL(None, use_errno=True).prctl  # type: ignore[no-any-return]
    except (OSError, AttributeError):
        return None


_PRCTL = _prctl()
_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    """In the child, before exec: get SIGTERM if ``up`` itself dies (even by SIGKILL)."""
    if _PRCTL is not None:
        _PRCTL(_PR_SET_PDEATHSIG, signal.SIGTERM)
