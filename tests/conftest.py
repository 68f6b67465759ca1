from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

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
def tiny_engine(tiny_model_dir: Path):
    """The tiny model loaded through the production loader (by local path)."""
    from worker.musicgen import MusicGen

    return MusicGen.load(str(tiny_model_dir), device="cpu")


@pytest.fixture
def real_worker(redis_url: str, tiny_engine):
    """The real batching worker on the tiny model, in a thread, for end-to-end tests."""
    import threading

    from worker.loop import Worker, WorkerOptions

    queue = JobQueue.from_url(redis_url, visibility_timeout_s=30.0)
    worker = Worker(queue, tiny_engine, WorkerOptions(batch_size=8, block_ms=100, consumer="test-worker"))
    stop = threading.Event()
    thread = threading.Thread(target=worker.run, args=(stop,), daemon=True)
    thread.start()
    yield worker
    stop.set()
    thread.join(timeout=60)
    queue.close()
