"""Prometheus metrics and health endpoints, for workers and bots alike (imports without torch).

Each process serves, on ``TEXTUNES_METRICS_PORT`` (0 = off):

- ``/metrics``: the metrics below, in Prometheus' text format (plus the client's process_* ones);
- ``/healthz``: 200 while the process's main loop turned within its deadline (``Health.beat``),
  503 when it stalled. Before the first beat (loading a model) it answers 200 "starting";
- ``/readyz``: 200 when every readiness check passes (``Health.add_check``: model loaded,
  Redis reachable…), else 503 naming the failing checks.

The functions below are the API the worker and the bots call; label values outside the
documented sets are counted as ``other`` so a typo can't explode the series count.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any

import redis
from prometheus_client import (CONTENT_TYPE_LATEST, REGISTRY, CollectorRegistry, Counter, Gauge, Histogram,
                               disable_created_metrics, generate_latest)

if TYPE_CHECKING:
    from worker.settings import Settings

log = logging.getLogger("textunes.metrics")

disable_created_metrics()  # no *_created series: half the output, and nothing here reads them

KINDS = ("tags", "text", "regenerate", "extend")
OUTCOMES = ("queued", "refused", "rate_limited", "invalid", "done", "failed", "cancelled")

_LONG_WAITS = (0.1, 0.5, 1, 2, 5, 10, 20, 30, 60, 120, 300, 600, 1800)

REQUESTS = Counter("textunes_requests", "Requests by platform, kind (tags, text, regenerate, extend) and outcome "
                   "(queued, refused, rate_limited, invalid, done, failed, cancelled).", ["platform", "kind", "outcome"])
QUEUE_WAIT = Histogram("textunes_queue_wait_seconds", "From submit to a worker starting the job.", ["platform"],
                       buckets=_LONG_WAITS)
TIME_TO_RESULT = Histogram("textunes_time_to_result_seconds", "From submit to the result: the last take stored "
                           "(worker) or posted (bot).", ["platform"], buckets=_LONG_WAITS)
GENERATION_SECONDS = Counter("textunes_generation_seconds", "Seconds spent generating music (model time).")
AUDIO_SECONDS = Counter("textunes_audio_seconds", "Seconds of music made.")
BATCH_SLOTS = Gauge("textunes_batch_slots", "Decode slots this worker has.")
BATCH_SLOTS_IN_USE = Gauge("textunes_batch_slots_in_use", "Decode slots holding a take right now.")
DECODE_STEPS = Counter("textunes_decode_steps", "Decode steps run; rate() gives decode steps per second.")
RETRIES = Counter("textunes_job_retries", "Jobs put back in line after a failure.")
DEAD_LETTERS = Counter("textunes_dead_letters", "Jobs given up after too many failures.")
QUEUE_DEPTH = Gauge("textunes_queue_depth", "Jobs waiting or running, as this process last saw it.")
UPLOADS = Counter("textunes_uploads", "Takes posted to a chat.", ["platform"])
UPLOAD_FAILURES = Counter("textunes_upload_failures", "Attempts to post a take that failed.", ["platform"])
EVENT_LAG = Histogram("textunes_event_lag_seconds", "From a worker publishing an event to a bot handling it.",
                      ["platform"], buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 300))


# ---- the API workers and bots call --------------------------------------------------------
def count_request(platform: str, kind: str, outcome: str) -> None:
    REQUESTS.labels(platform, _known(kind, KINDS), _known(outcome, OUTCOMES)).inc()


def observe_queue_wait(platform: str, seconds: float) -> None:
    QUEUE_WAIT.labels(platform).observe(max(0.0, seconds))


def observe_time_to_result(platform: str, seconds: float) -> None:
    TIME_TO_RESULT.labels(platform).observe(max(0.0, seconds))


def record_generation(model_seconds: float, audio_seconds: float) -> None:
    GENERATION_SECONDS.inc(max(0.0, model_seconds))
    AUDIO_SECONDS.inc(max(0.0, audio_seconds))


def set_batch_slots(in_use: int, total: int) -> None:
    BATCH_SLOTS_IN_USE.set(in_use)
    BATCH_SLOTS.set(total)


def count_decode_steps(steps: int = 1) -> None:
    DECODE_STEPS.inc(steps)


def count_retry() -> None:
    RETRIES.inc()


def count_dead_letter() -> None:
    DEAD_LETTERS.inc()


def set_queue_depth(jobs: int) -> None:
    QUEUE_DEPTH.set(jobs)


def count_upload(platform: str, *, ok: bool) -> None:
    (UPLOADS if ok else UPLOAD_FAILURES).labels(platform).inc()


def observe_event_lag(platform: str, seconds: float) -> None:
    EVENT_LAG.labels(platform).observe(max(0.0, seconds))


def _known(value: str, allowed: tuple[str, ...]) -> str:
    if value in allowed:
        return value
    log.debug("metric label %r is not one of %s; counted as 'other'", value, allowed)
    return "other"


# ---- health ---------------------------------------------------------------------------------
class Health:
    """Liveness from a heartbeat the main loop calls, readiness from named checks."""

    def __init__(self, deadline_s: float = 60.0, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.deadline_s = deadline_s
        self._clock = clock
        self._last_beat: float | None = None
        self._checks: dict[str, Callable[[], bool]] = {}

    def beat(self) -> None:
        """The main loop turned. Call it every iteration (it is one clock read)."""
        self._last_beat = self._clock()

    def add_check(self, name: str, check: Callable[[], bool]) -> None:
        """A readiness condition: True when ready; False or an exception when not."""
        self._checks[name] = check

    def liveness(self) -> tuple[bool, dict[str, Any]]:
        if self._last_beat is None:
            return True, {"status": "starting"}
        age = self._clock() - self._last_beat
        alive = age <= self.deadline_s
        return alive, {"status": "ok" if alive else "stalled", "last_beat_s": round(age, 3), "deadline_s": self.deadline_s}

    def readiness(self) -> tuple[bool, dict[str, Any]]:
        checks: dict[str, bool] = {}
        errors: dict[str, str] = {}
        for name, check in self._checks.items():
            try:
                checks[name] = bool(check())
            except Exception as error:  # a failing check means "not ready", never a crash
                checks[name], errors[name] = False, f"{type(error).__name__}: {error}"
        ready = all(checks.values())
        return ready, {"ready": ready, "checks": checks, **({"errors": errors} if errors else {})}


def redis_reachable(url: str, timeout_s: float = 1.0) -> Callable[[], bool]:
    """A readiness check that pings Redis with its own short timeouts (a probe must not hang)."""
    client = redis.Redis.from_url(url, socket_timeout=timeout_s, socket_connect_timeout=timeout_s)
    return lambda: bool(client.ping())


# ---- the HTTP endpoint ----------------------------------------------------------------------
class MetricsServer:
    """``/metrics``, ``/healthz`` and ``/readyz`` on a background thread."""

    def __init__(self, health: Health, port: int, *, host: str = "0.0.0.0",
                 registry: CollectorRegistry = REGISTRY) -> None:
        handler = _handler(health, registry)
        self._server = ThreadingHTTPServer((host, port), handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, name="textunes-metrics", daemon=True)

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    def start(self) -> "MetricsServer":
        self._thread.start()
        return self

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)


def serve(health: Health, settings: "Settings") -> MetricsServer | None:
    """Start the endpoint on ``TEXTUNES_METRICS_PORT``; None when it is 0 (off)."""
    if not settings.metrics_port:
        return None
    server = MetricsServer(health, settings.metrics_port).start()
    log.info("metrics on :%d/metrics, health on /healthz and /readyz", server.port)
    return server


def _handler(health: Health, registry: CollectorRegistry) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 (http.server's name)
            path = self.path.split("?", 1)[0]
            if path == "/metrics":
                self._send(200, generate_latest(registry), CONTENT_TYPE_LATEST)
            elif path in ("/healthz", "/readyz"):
                ok, body = health.liveness() if path == "/healthz" else health.readiness()
                self._send(200 if ok else 503, json.dumps(body).encode(), "application/json")
            else:
                self._send(404, b'{"error": "not found: try /metrics, /healthz or /readyz"}', "application/json")

        def _send(self, status: int, body: bytes, content_type: str) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:  # probes every few seconds: not INFO
            log.debug("%s " + format, self.address_string(), *args)

    return Handler
