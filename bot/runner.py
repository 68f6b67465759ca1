"""How both bots run until signalled: SIGINT or SIGTERM asks a bot to stop; it stops taking
requests, gives the uploads in hand up to ``TEXTUNES_SHUTDOWN_GRACE_S`` to finish, and returns.
What is still unfinished then is posted by the next process. A second signal stops at once.

Kubernetes sends SIGTERM and kills ``terminationGracePeriodSeconds`` (30 s by default) later:
keep the grace period a few seconds under it (25 s by default).

While a bot runs, ``serving_health`` serves its metrics and health on ``TEXTUNES_METRICS_PORT``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import Awaitable, Callable, Iterator

from worker import metrics
from worker.queue import JobQueue
from worker.redis_check import log_redis_warnings
from worker.settings import Settings

log = logging.getLogger("textunes.bot")

SIGNALS = (signal.SIGINT, signal.SIGTERM)


async def run_until_signalled(main: Callable[[asyncio.Event], Awaitable[int]], *, grace_s: float,
                              stop: asyncio.Event | None = None) -> int:
    """Run ``main(stop)`` with SIGINT/SIGTERM setting ``stop``; ``main`` returns the exit code.
    A second signal cancels ``main`` (exit code 1)."""
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    task = asyncio.current_task()
    assert task is not None

    def on_signal(signum: int) -> None:
        if stop.is_set():
            log.warning("second signal: stopping now; unfinished posts are left to the next process")
            task.cancel()
            return
        log.info("%s: stopping; uploads in hand get up to %g s to finish", signal.Signals(signum).name, grace_s)
        stop.set()

    installed = []
    for signum in SIGNALS:
        try:
            loop.add_signal_handler(signum, on_signal, signum)
            installed.append(signum)
        except (RuntimeError, ValueError, NotImplementedError):  # not the main thread (tests), or no signals
            pass
    try:
        return await main(stop)
    except asyncio.CancelledError:
        if not stop.is_set():
            raise
        task.uncancel()
        return 1
    finally:
        for signum in installed:
            loop.remove_signal_handler(signum)


@contextlib.contextmanager
def serving_health(settings: Settings, queue: JobQueue, health: metrics.Health, connected_check: str,
                   connected: Callable[[], bool], logger: logging.Logger) -> Iterator[None]:
    """At a bot's start: warn about a Redis that can lose jobs, then serve ``/metrics``,
    ``/healthz`` (``health`` beats from the event pump) and ``/readyz`` (Redis answers, and
    ``connected``: the bot's connection to its platform) until the block ends."""
    log_redis_warnings(queue.redis, logger)
    health.add_check("redis reachable", metrics.redis_reachable(settings.redis_url))
    health.add_check(connected_check, connected)
    server = metrics.serve(health, settings)
    try:
        yield
    finally:
        if server is not None:
            server.close()
