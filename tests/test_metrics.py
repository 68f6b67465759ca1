"""Metrics and health endpoints over real HTTP, and the Grafana dashboard's queries."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client.metrics import MetricWrapperBase

from tests.endpoints import get as get_from
from tests.endpoints import sample
from worker import metrics
from worker.local_redis import free_port
from worker.metrics import Health, MetricsServer, redis_reachable
from worker.settings import Settings

REPO = Path(__file__).resolve().parents[1]


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def get(server: MetricsServer, path: str) -> tuple[int, str]:
    return get_from(server.port, path)


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def health(clock: Clock) -> Health:
    return Health(deadline_s=30, clock=clock)


@pytest.fixture
def server(health: Health) -> Iterator[MetricsServer]:
    started = MetricsServer(health, 0, host="127.0.0.1").start()
    yield started
    started.close()


def test_metrics_endpoint_exposes_what_workers_and_bots_record(server: MetricsServer) -> None:
    _, before = get(server, "/metrics")
    metrics.count_request("discord", "text", "queued")
    metrics.count_request("discord", "text", "made-up-outcome")
    metrics.observe_queue_wait("discord", 3.0)
    metrics.observe_time_to_result("discord", 42.0)
    metrics.record_generation(model_seconds=2.5, audio_seconds=10.0)
    metrics.set_batch_slots(3, 8)
    metrics.count_decode_steps(50)
    metrics.count_retry()
    metrics.count_dead_letter()
    metrics.set_queue_depth(7)
    metrics.count_upload("slack", ok=True)
    metrics.count_upload("slack", ok=False)
    metrics.observe_event_lag("slack", 0.2)
    status, after = get(server, "/metrics")
    assert status == 200

    def grew(name: str, **labels: str) -> float:
        return sample(after, name, **labels) - sample(before, name, **labels)

    assert grew("textunes_requests_total", platform="discord", kind="text", outcome="queued") == 1
    assert grew("textunes_requests_total", platform="discord", kind="text", outcome="other") == 1
    assert grew("textunes_queue_wait_seconds_count", platform="discord") == 1
    assert grew("textunes_queue_wait_seconds_bucket", platform="discord", le="5.0") == 1
    assert grew("textunes_queue_wait_seconds_bucket", platform="discord", le="2.0") == 0
    assert grew("textunes_time_to_result_seconds_sum", platform="discord") == 42
    assert grew("textunes_generation_seconds_total") == 2.5 and grew("textunes_audio_seconds_total") == 10
    assert sample(after, "textunes_batch_slots_in_use") == 3 and sample(after, "textunes_batch_slots") == 8
    assert grew("textunes_decode_steps_total") == 50
    assert grew("textunes_job_retries_total") == 1 and grew("textunes_dead_letters_total") == 1
    assert sample(after, "textunes_queue_depth") == 7
    assert grew("textunes_uploads_total", platform="slack") == 1
    assert grew("textunes_upload_failures_total", platform="slack") == 1
    assert grew("textunes_event_lag_seconds_count", platform="slack") == 1
    assert "process_cpu_seconds_total" in after or "python_info" in after


def test_healthz_follows_the_main_loop_heartbeat(server: MetricsServer, health: Health, clock: Clock) -> None:
    status, body = get(server, "/healthz")
    assert (status, json.loads(body)) == (200, {"status": "starting"})  # loading a model: not stalled
    health.beat()
    clock.now += 29
    status, body = get(server, "/healthz")
    assert status == 200 and json.loads(body)["status"] == "ok"
    clock.now += 2  # 31 s without a turn of the loop, deadline 30 s
    status, body = get(server, "/healthz")
    assert status == 503 and json.loads(body) == {"status": "stalled", "last_beat_s": 31.0, "deadline_s": 30}
    health.beat()
    assert get(server, "/healthz")[0] == 200


def test_readyz_needs_every_check(server: MetricsServer, health: Health, redis_url: str) -> None:
    model_loaded = False
    health.add_check("model", lambda: model_loaded)
    health.add_check("redis", redis_reachable(redis_url))
    status, body = get(server, "/readyz")
    assert status == 503 and json.loads(body) == {"ready": False, "checks": {"model": False, "redis": True}}
    model_loaded = True
    status, body = get(server, "/readyz")
    assert status == 200 and json.loads(body) == {"ready": True, "checks": {"model": True, "redis": True}}


def test_readyz_reports_an_unreachable_redis_instead_of_failing(server: MetricsServer, health: Health) -> None:
    health.add_check("redis", redis_reachable(f"redis://127.0.0.1:{free_port()}/0"))
    status, body = get(server, "/readyz")
    answer = json.loads(body)
    assert status == 503 and answer["checks"] == {"redis": False}
    assert answer["errors"]["redis"].startswith("ConnectionError")


def test_unknown_paths_are_404(server: MetricsServer) -> None:
    assert get(server, "/")[0] == 404 and get(server, "/metrics/../etc")[0] == 404


def test_serve_is_off_at_port_0_and_on_at_the_configured_port(health: Health) -> None:
    assert metrics.serve(health, Settings.from_env({})) is None
    port = free_port()
    server = metrics.serve(health, Settings.from_env({"TEXTUNES_METRICS_PORT": str(port)}))
    assert server is not None
    try:
        assert server.port == port and get(server, "/healthz")[0] == 200
    finally:
        server.close()


def test_operator_modules_import_without_torch() -> None:
    code = ("import worker.metrics, worker.admin, worker.stack, worker.redis_check, sys; "
            "heavy = {'torch', 'transformers'} & set(sys.modules); assert not heavy, heavy")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=REPO)


def _exposed_names() -> dict[str, str]:
    """Every series name the module's metrics expose, mapped to its metric."""
    names: dict[str, str] = {}
    for metric in (v for v in vars(metrics).values() if isinstance(v, MetricWrapperBase)):
        [family] = metric.describe()
        suffixes = {"counter": ["_total"], "gauge": [""], "histogram": ["_bucket", "_sum", "_count"]}[family.type]
        names.update({family.name + suffix: family.name for suffix in suffixes})
    return names


def test_every_metric_the_dashboard_queries_exists_and_every_metric_is_on_it() -> None:
    dashboard = json.loads((REPO / "deploy" / "grafana-dashboard.json").read_text())
    exprs = [target["expr"] for panel in dashboard["panels"] for target in panel.get("targets", [])]
    assert exprs
    queried = {name for expr in exprs for name in re.findall(r"\btextunes_[a-z_]+", expr)}
    exposed = _exposed_names()
    assert queried - set(exposed) == set(), "the dashboard queries metrics that do not exist"
    assert {exposed[name] for name in queried} == set(exposed.values()), "metrics missing from the dashboard"
    for panel in dashboard["panels"]:
        assert panel["title"] and panel["datasource"]["uid"] == "${DS_PROMETHEUS}"
