from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from tests.redis_server import RedisServer
from worker.queue import JobQueue

SEED_DIR = Path(os.environ.get("TEXTUNES_SEED_DIR", Path(__file__).resolve().parents[2] / "shared" / "seed"))


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    """One redis-server on a free port for the whole session (flushed per test by ``redis_url``)."""
    server = RedisServer()
    server.start()
    yield server
    server.cleanup()


@pytest.fixture
def redis_url(redis_server: RedisServer) -> Iterator[str]:
    client = redis.Redis.from_url(redis_server.url)
    client.flushall()
    client.close()
    yield redis_server.url


@pytest.fixture
def queue(redis_url: str) -> Iterator[JobQueue]:
    with JobQueue.from_url(redis_url, visibility_timeout_s=1.0) as q:
        yield q
