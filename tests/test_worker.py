"""The batching worker on a real (tiny, random) MusicGen, with a real Redis."""

from __future__ import annotations

import io
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from pipeline.models import TuneRequest
from worker.loop import Worker, WorkerOptions
from worker.musicgen import MusicGen, Row
from worker.queue import Event, JobQueue, ReplyTo

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parents[1]


def wait_for(condition: Callable[[], object], timeout: float = 60.0, what: str = "condition") -> object:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")


class EventLog:
    """Collects every event of one platform (reads the stream without a group)."""

    def __init__(self, queue: JobQueue, platform: str = "cli") -> None:
        self.queue, self.stream, self.since, self.events = queue, queue.events_stream(platform), "0-0", []

    def poll(self) -> list[Event]:
        for _, entries in self.queue.redis.xread({self.stream: self.since}, count=1000) or []:
            for entry_id, fields in entries:
                self.since = entry_id
                self.events.append(Event.from_json(fields[b"event"]))
        return self.events

    def of(self, kind: str, job_id: str | None = None) -> list[Event]:
        return [e for e in self.poll() if e.type == kind and (job_id is None or e.job_id == job_id)]


def decode(data: bytes) -> tuple[np.ndarray, int]:
    audio, rate = sf.read(io.BytesIO(data), dtype="float32")
    return audio, rate


def run_worker(queue: JobQueue, engine, **options) -> tuple[Worker, threading.Event, threading.Thread]:  # type: ignore[no-untyped-def]
    worker = Worker(queue, engine, WorkerOptions(block_ms=100, consumer=options.pop("consumer", "w"), **options))
    stop = threading.Event()
    thread = threading.Thread(target=worker.run, args=(stop,), daemon=True)
    thread.start()
    return worker, stop, thread


def test_new_tokens_cover_the_duration_plus_the_delay_pattern(tiny_engine: MusicGen) -> None:
    assert tiny_engine.tokens_for(10) == 503
    assert tiny_engine.tokens_for(30) == 1503


def test_a_take_depends_on_its_seed_not_on_its_batch(tiny_engine: MusicGen) -> None:
    alone = tiny_engine.generate([Row("calm piano", 7, 1.0)]).audio[0]
    batch = tiny_engine.generate([Row("epic drums", 1, 2.0), Row("calm piano", 7, 1.0)]).audio
    other_seed = tiny_engine.generate([Row("calm piano", 8, 1.0)]).audio[0]
    assert np.abs(alone - batch[1]).max() < 1e-4
    assert np.abs(alone - other_seed).max() > 1e-3
    assert [len(a) for a in batch] == [64_000, 32_000]  # each row trimmed to its own length


def test_three_jobs_run_as_one_batch_and_each_take_arrives_at_its_length(queue: JobQueue, tiny_engine: MusicGen) -> None:
    requests = [TuneRequest(prompt="calm piano", duration=5), TuneRequest(prompt="sad cello", duration=6, takes=2),
                TuneRequest(genres=["Jazz"], moods=["Happy"], duration=5)]
    jobs = [queue.submit(r, ReplyTo(platform="cli")) for r in requests]
    log = EventLog(queue)
    worker, stop, thread = run_worker(queue, tiny_engine)
    try:
        wait_for(lambda: len(log.of("done")) == 4, what="4 done events, one per take")
    finally:
        stop.set(); thread.join(30)
    assert len(worker.batches) == 1 and worker.batches[0].jobs == 3 and worker.batches[0].rows == 4
    for job, request in zip(jobs, requests):
        done = log.of("done", job.job_id)
        takes = [event.take for event in done]
        assert [e.take_count for e in done] == [request.takes] * request.takes
        assert [t.index for t in takes] == list(range(1, request.takes + 1))
        assert [t.seed for t in takes] == job.seeds
        for take in takes:
            audio, rate = decode(queue.load_audio(take.audio_key))
            assert abs(len(audio) / rate - request.duration) <= 0.1
            assert np.abs(audio).max() <= 10 ** (-1 / 20) + 0.02  # the -1 dBFS ceiling, after MP3
    assert "jazz" in log.of("done", jobs[2].job_id)[0].caption


def test_progress_is_published_at_least_every_tenth_of_decoding(queue: JobQueue, tiny_engine: MusicGen) -> None:
    job = queue.submit(TuneRequest(prompt="calm", duration=5), ReplyTo(platform="cli"))
    log = EventLog(queue)
    _, stop, thread = run_worker(queue, tiny_engine)
    try:
        wait_for(lambda: log.of("done", job.job_id), what="done")
    finally:
        stop.set(); thread.join(30)
    marks = [0.0] + [e.progress for e in log.of("progress", job.job_id)] + [1.0]
    assert len(marks) >= 11
    assert max(b - a for a, b in zip(marks, marks[1:])) <= 0.1 + 0.01


class PoisonEngine:
    """The tiny engine, except that any batch containing a 'poison' caption raises."""

    def __init__(self, engine: MusicGen) -> None:
        self.engine = engine

    def generate(self, rows: list[Row], **kwargs):  # type: ignore[no-untyped-def]
        if any("poison" in row.caption for row in rows):
            raise RuntimeError("CUDA error: device-side assert triggered")
        return self.engine.generate(rows, **kwargs)


def test_poison_job_is_dead_lettered_and_the_rest_of_its_batch_completes(queue: JobQueue, tiny_engine: MusicGen) -> None:
    good = [queue.submit(TuneRequest(prompt=f"calm {i}", duration=5), ReplyTo(platform="discord")) for i in range(2)]
    bad = queue.submit(TuneRequest(prompt="poison", duration=5), ReplyTo(platform="discord"))
    log = EventLog(queue, "discord")
    _, stop, thread = run_worker(queue, PoisonEngine(tiny_engine))  # type: ignore[arg-type]
    try:
        wait_for(lambda: log.of("failed", bad.job_id), what="failed event for the poison job")
        wait_for(lambda: all(log.of("done", j.job_id) for j in good), what="the good jobs")
    finally:
        stop.set(); thread.join(30)
    [failed] = log.of("failed", bad.job_id)
    assert bad.job_id in failed.error and "could not be made" in failed.error
    assert "Traceback" not in failed.error and "CUDA" not in failed.error
    assert [j.job_id for j, _ in queue.dead_letters()] == [bad.job_id]
    assert all(len(log.of("done", j.job_id)) == 1 for j in good)
    assert queue.depth() == 0


def test_text_that_cannot_be_analysed_fails_at_once_with_the_reason(queue: JobQueue, tiny_engine: MusicGen) -> None:
    class Refusing:
        def analyse(self, request: TuneRequest):  # type: ignore[no-untyped-def]
            from worker.loop import UserError
            raise UserError("There are no words to read in that text.")

    job = queue.submit(TuneRequest(text="🙂🙂🙂", duration=5), ReplyTo(platform="cli"))
    log = EventLog(queue)
    worker = Worker(queue, tiny_engine, WorkerOptions(block_ms=100), analyser=Refusing())
    worker.run_batch(queue.claim("w", 8, block_ms=100))
    [failed] = log.of("failed", job.job_id)
    assert failed.error == "There are no words to read in that text."
    assert queue.dead_letters() == [] and queue.depth() == 0


def _worker_process(redis_url: str, model_dir: Path, visibility_s: float = 60.0) -> subprocess.Popen[bytes]:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TEXTUNES_VISIBILITY_TIMEOUT_S": str(visibility_s),
           "PYTHONPATH": str(REPO)}
    return subprocess.Popen(
        [sys.executable, "-m", "worker.cli", "worker", "--model", str(model_dir), "--redis-url", redis_url, "--device", "cpu"],
        env=env, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )


def test_jobs_of_a_killed_worker_are_finished_by_another_exactly_once(redis_url: str, tiny_model_dir: Path, tiny_engine: MusicGen) -> None:
    queue = JobQueue.from_url(redis_url, visibility_timeout_s=1.0)
    jobs = [queue.submit(TuneRequest(prompt=f"long piece {i}", duration=30), ReplyTo(platform="cli")) for i in range(2)]
    log = EventLog(queue)
    doomed = _worker_process(redis_url, tiny_model_dir)
    try:
        wait_for(lambda: len(log.of("progress")) >= 2, timeout=120, what="the first worker to be generating")
        assert not log.of("done")
        doomed.send_signal(signal.SIGKILL)
        doomed.wait(10)
    finally:
        doomed.kill()
    _, stop, thread = run_worker(queue, tiny_engine, consumer="rescuer")
    try:
        wait_for(lambda: all(log.of("done", j.job_id) for j in jobs), timeout=120, what="the rescued jobs")
    finally:
        stop.set(); thread.join(60)
    assert [len(log.of("done", j.job_id)) for j in jobs] == [1, 1]
    queue.close()


def test_sigterm_finishes_the_batch_in_hand_then_exits(redis_url: str, tiny_model_dir: Path) -> None:
    queue = JobQueue.from_url(redis_url)
    job = queue.submit(TuneRequest(prompt="finish me", duration=30), ReplyTo(platform="cli"))
    log = EventLog(queue)
    process = _worker_process(redis_url, tiny_model_dir)
    try:
        wait_for(lambda: log.of("progress", job.job_id), timeout=120, what="generation to start")
        process.send_signal(signal.SIGTERM)
        output, _ = process.communicate(timeout=120)
    finally:
        process.kill()
    assert process.returncode == 0, output.decode()
    assert len(log.of("done", job.job_id)) == 1
    assert queue.depth() == 0
    text = output.decode()
    assert f"job {job.job_id} platform=cli duration=30.0s" in text and "batch=1 rows" in text
    queue.close()


def test_unloadable_model_says_what_to_set_in_one_line(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "worker.cli", "generate", "calm piano", "--model", str(tmp_path / "missing")],
        cwd=REPO, env={**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(REPO)}, capture_output=True, text=True,
    )
    assert result.returncode == 2
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "TEXTUNES_MODEL" in errors[0]


def test_worker_with_a_misconfigured_analysis_model_stops_at_start(redis_url: str, tiny_model_dir: Path, tmp_path: Path) -> None:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(REPO), "TEXTUNES_EMOTION_MODEL": str(tmp_path / "nope")}
    result = subprocess.run(
        [sys.executable, "-m", "worker.cli", "worker", "--model", str(tiny_model_dir), "--redis-url", redis_url],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 2
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "TEXTUNES_EMOTION_MODEL" in errors[0]
