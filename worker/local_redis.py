"""A redis-server of our own: throwaway ones for tests and benchmarks (own port, no
persistence, can be killed and restarted) and the persistent one ``textunes up`` runs."""

from __future__ import annotations

import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import redis


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class RedisServer:
    """``redis-server`` on 127.0.0.1. Without ``data_dir`` it lives in a temporary directory
    that ``cleanup`` removes; ``appendonly`` turns on AOF (``appendfsync everysec``), else
    nothing is persisted. ``extra_args`` go last on its command line (they win)."""

    def __init__(self, port: int | None = None, *, data_dir: str | Path | None = None, appendonly: bool = False,
                 extra_args: Sequence[str] = ()) -> None:
        self.binary = shutil.which("redis-server")
        if self.binary is None:
            raise RuntimeError("redis-server is not installed (apt-get install redis-server)")
        self.port = port or free_port()
        self._own_dir = data_dir is None
        self.dir = tempfile.mkdtemp(prefix="textunes-redis-") if data_dir is None else str(Path(data_dir).resolve())
        self.appendonly = appendonly
        self.extra_args = list(extra_args)
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, timeout_s: float = 10.0) -> None:
        Path(self.dir).mkdir(parents=True, exist_ok=True)
        persistence = (["--appendonly", "yes", "--appendfsync", "everysec"] if self.appendonly
                       else ["--save", "", "--appendonly", "no"])
        self.process = subprocess.Popen(
            [self.binary, "--port", str(self.port), "--bind", "127.0.0.1", *persistence,
             "--dir", self.dir, "--protected-mode", "no", *self.extra_args],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        client = redis.Redis(port=self.port)
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                if int(client.info("server")["process_id"]) == self.process.pid:
                    break  # ours, not another server that already had the port
            except (redis.AuthenticationError, redis.ResponseError):  # answering, but wants a password: up
                break
            except redis.ConnectionError:
                pass
            if time.monotonic() > deadline or self.process.poll() is not None:
                self.stop()
                client.close()
                raise RuntimeError(f"redis-server did not start on port {self.port} (is the port in use?)")
            time.sleep(0.02)
        client.close()

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=30)
        self.process = None

    def cleanup(self) -> None:
        self.stop()
        if self._own_dir:
            shutil.rmtree(self.dir, ignore_errors=True)
