from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from tests.workers import start_worker
from worker.local_redis import RedisServer
from worker.queue import JobQueue

# Nothing in the tests may reach the Hugging Face hub.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

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


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A random MusicGen of a few hundred thousand parameters, saved with save_pretrained."""
    from worker.random_model import build_random_musicgen

    return build_random_musicgen(tmp_path_factory.mktemp("tiny-musicgen"), "tiny")


@pytest.fixture(scope="session")
def tiny_model(tiny_model_dir: Path):
    """The tiny model loaded through the production loader (by local path)."""
    from worker.musicgen import MusicGen

    return MusicGen.load(str(tiny_model_dir), device="cpu")


@pytest.fixture(scope="session")
def tiny_engine(tiny_model):
    """The decode engine on the tiny model (8 slots). Shared: tests leave it idle."""
    from worker.engine import DecodeEngine, EngineOptions

    return DecodeEngine(tiny_model, EngineOptions(slots=8))


@pytest.fixture
def real_worker(redis_url: str, tiny_model, tiny_engine):
    """The real worker on the tiny model, in a thread, for end-to-end tests."""
    queue = JobQueue.from_url(redis_url, visibility_timeout_s=30.0)
    worker, stop, thread = start_worker(queue, tiny_model, tiny_engine, consumer="test-worker")
    yield worker
    stop.set()
    thread.join(timeout=60)
    queue.close()


@pytest.fixture(scope="session")
def tiny_melody_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random MusicGen-melody, saved with save_pretrained."""
    from worker.random_model import build_random_melody

    return build_random_melody(tmp_path_factory.mktemp("tiny-melody"))
