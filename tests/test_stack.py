"""``textunes up`` with real processes: a real redis-server, stand-in children that start in
milliseconds (tests/stack_child.py), and one run with the real worker on the tiny model."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import redis

from worker.local_redis import RedisServer, free_port

REPO = Path(__file__).resolve().parents[1]
CHILD = f"{sys.executable} {REPO / 'tests' / 'stack_child.py'}"


def wait_for(condition: Callable[[], object], timeout_s: float = 30.0, what: str = "") -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what or condition}")
        time.sleep(0.05)


class Up:
    """``textunes up`` in a subprocess, its output collected line by line."""

    def __init__(self, args: list[str], env: dict[str, str]) -> None:
        self.process = subprocess.Popen([sys.executable, "-m", "worker.cli", "up", *args], cwd=REPO, env=env,
                                        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.append(line)

    @property
    def output(self) -> str:
        return "".join(self.lines)

    def stop(self, signum: int = signal.SIGINT, timeout_s: float = 60.0) -> int:
        self.process.send_signal(signum)
        code = self.process.wait(timeout=timeout_s)
        self._reader.join(timeout=10)
        return code

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()


@pytest.fixture
def base_env() -> Iterator[dict[str, str]]:
    env = {k: v for k, v in os.environ.items()
           if k not in ("REDIS_URL", "DISCORD_TOKEN", "SLACK_BOT_TOKEN", "TEXTUNES_METRICS_PORT")}
    env["OMP_NUM_THREADS"] = "1"
    yield env


def pids(client: redis.Redis, name: str) -> list[int]:
    return [json.loads(item)["pid"] for item in client.lrange(f"stack:{name}", 0, -1)]


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_up_starts_redis_with_aof_a_worker_and_the_bots_with_tokens_restarts_them_and_stops_cleanly(
        tmp_path: Path, base_env: dict[str, str]) -> None:
    port, data = free_port(), tmp_path / "redis"
    env = {**base_env, "DISCORD_TOKEN": "discord-token", "TEXTUNES_METRICS_PORT": "19100"}
    up = Up(["--redis-port", str(port), "--data-dir", str(data), "--grace", "20",
             "--worker-command", f"{CHILD} worker {tmp_path}", "--discord-command", f"{CHILD} discord {tmp_path}",
             "--slack-command", f"{CHILD} slack {tmp_path}"], env)
    client = redis.Redis(port=port)
    try:
        wait_for(lambda: "worker ready" in up.output and "discord ready" in up.output, what=f"children:\n{up.output}")
        assert client.config_get("appendonly") == {"appendonly": "yes"}
        assert client.config_get("appendfsync") == {"appendfsync": "everysec"}
        assert client.config_get("maxmemory-policy") == {"maxmemory-policy": "noeviction"}
        assert client.config_get("dir") == {"dir": str(data.resolve())}
        assert not client.exists("stack:slack") and "not starting the slack bot: its token is not set" in up.output
        ports = {name: json.loads(client.lindex(f"stack:{name}", 0))["metrics_port"] for name in ("worker", "discord")}
        assert ports == {"worker": "19100", "discord": "19101"}  # one metrics port each
        assert "worker  | worker ready" in up.output

        client.set("survives", "a redis-server restart")
        os.kill(int(client.info("server")["process_id"]), signal.SIGKILL)
        wait_for(lambda: "redis-server is back" in up.output, what=f"redis back:\n{up.output}")
        assert client.get("survives") == b"a redis-server restart"  # AOF reloaded from the data dir

        [first_worker] = pids(client, "worker")
        os.kill(first_worker, signal.SIGKILL)
        wait_for(lambda: len(pids(client, "worker")) == 2, what=f"the worker's restart:\n{up.output}")
        assert "worker exited with code -9" in up.output and "restarting in 1 s (restart 1)" in up.output
        second_worker, [discord] = pids(client, "worker")[1], pids(client, "discord")

        assert up.stop(signal.SIGINT) == 0, up.output
    finally:
        up.kill()
        client.close()
    assert sorted(p.name for p in tmp_path.glob("*.term")) == sorted([f"worker-{second_worker}.term",
                                                                      f"discord-{discord}.term"])
    assert not alive(second_worker) and not alive(discord)
    assert "redis-server stopped" in up.output
    with pytest.raises(redis.ConnectionError):
        redis.Redis(port=port).ping()
    assert list((data / "appendonlydir").glob("*.aof")), "the AOF lives in the data dir"


def test_up_uses_redis_url_and_kills_a_child_that_ignores_sigterm_after_the_grace(
        redis_url: str, tmp_path: Path, base_env: dict[str, str]) -> None:
    up = Up(["--grace", "1", "--worker-command", f"{CHILD} worker {tmp_path} --ignore-term"],
            {**base_env, "REDIS_URL": redis_url})
    client = redis.Redis.from_url(redis_url)
    try:
        wait_for(lambda: client.exists("stack:worker"), what=f"the worker:\n{up.output}")
        [worker] = pids(client, "worker")
        assert f"using Redis at {redis_url}" in up.output and "redis-server" not in up.output
        assert up.stop(signal.SIGTERM) == 0
    finally:
        up.kill()
        client.close()
    assert (tmp_path / f"worker-{worker}.term").exists()  # it got SIGTERM first
    assert "worker did not stop within 1 s; killing it" in up.output
    assert not alive(worker)


def test_a_busy_redis_port_is_one_line_and_exit_1(redis_server: RedisServer, base_env: dict[str, str]) -> None:
    result = subprocess.run([sys.executable, "-m", "worker.cli", "up", "--redis-port", str(redis_server.port),
                             "--data-dir", "/nonexistent-textunes-test/redis"], cwd=REPO, env=base_env,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        f"error: redis-server did not start on port {redis_server.port} (is the port in use?); "
        "pass --redis-port or set REDIS_URL"]


@pytest.mark.slow
def test_up_runs_the_real_worker_and_a_submitted_job_comes_back(
        redis_url: str, tiny_model_dir: Path, tmp_path: Path, base_env: dict[str, str], capsys) -> None:  # type: ignore[no-untyped-def]
    from worker.cli import main

    up = Up(["--grace", "60"], {**base_env, "REDIS_URL": redis_url, "TEXTUNES_MODEL": str(tiny_model_dir),
                                "TEXTUNES_DEVICE": "cpu"})
    try:
        out = tmp_path / "check.mp3"
        code = main(["submit", "calm piano 5s", "--redis-url", redis_url, "--wait", "--timeout", "240", "-o", str(out)])
        assert code == 0, up.output + capsys.readouterr().err
        assert out.stat().st_size > 1000
        assert up.stop(signal.SIGINT, timeout_s=120) == 0, up.output
    finally:
        up.kill()
    assert "worker stopped (exit code 0)" in up.output


def test_a_child_command_that_does_not_exist_is_one_line_and_exit_2(redis_url: str, base_env: dict[str, str]) -> None:
    result = subprocess.run([sys.executable, "-m", "worker.cli", "up", "--worker-command", "no-such-textunes-binary x"],
                            cwd=REPO, env={**base_env, "REDIS_URL": redis_url}, capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert [line for line in result.stderr.splitlines() if "error" in line.lower()] == [
        "error: cannot run the worker command 'no-such-textunes-binary': not found"]
