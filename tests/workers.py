"""The real worker in a thread, for tests."""

from __future__ import annotations

import threading

from worker.queue import JobQueue


def start_worker(queue: JobQueue, model, engine, **options):  # type: ignore[no-untyped-def]
    """The real worker in a thread; returns (worker, stop, thread)."""
    from worker.loop import Worker, WorkerOptions

    worker = Worker(queue, model, engine, WorkerOptions(block_ms=100, consumer=options.pop("consumer", "w"), **options))
    stop = threading.Event()
    thread = threading.Thread(target=worker.run, args=(stop,), daemon=True)
    thread.start()
    return worker, stop, thread
