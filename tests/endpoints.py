"""Reading a process's ``/metrics``, ``/healthz`` and ``/readyz`` over HTTP, for the tests."""

from __future__ import annotations

import json
import urllib.error
import urllib.request


def get(port: int, path: str) -> tuple[int, str]:
    """(status, body) of a GET on 127.0.0.1:``port``."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=10) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


def sample(text: str, name: str, **labels: str) -> float:
    """The value of one series in Prometheus text format (0 when absent)."""
    wanted = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    for line in text.splitlines():
        if line.startswith(f"{name}{{{wanted}}} " if labels else f"{name} "):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def check_bot_served(platform: str, before: str, after: str, health: tuple[int, str], ready: tuple[int, str]) -> None:
    """What a bot's endpoints say after one /tune was posted and one refused as invalid, between
    the ``before`` and ``after`` reads of ``/metrics``."""
    def grew(name: str, **labels: str) -> float:
        return sample(after, name, **labels) - sample(before, name, **labels)

    assert health[0] == 200 and json.loads(health[1])["status"] == "ok"  # the event pump's loop beats
    assert ready[0] == 200 and json.loads(ready[1])["checks"] == {"redis reachable": True,
                                                                   f"{platform} connected": True}
    for outcome in ("queued", "invalid", "done"):
        assert grew("textunes_requests_total", platform=platform, kind="tags", outcome=outcome) == 1, outcome
    assert grew("textunes_uploads_total", platform=platform) == 1
    assert grew("textunes_time_to_result_seconds_count", platform=platform) == 1
    assert grew("textunes_event_lag_seconds_count", platform=platform) >= 3  # queued, started, progress, done
    assert "textunes_queue_depth " in after
