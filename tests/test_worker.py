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
from tests.workers import start_worker
from worker.engine import DecodeEngine, EngineOptions
from worker.loop import Worker, WorkerOptions
from worker.musicgen import MusicGen
from worker.queue import Event, JobQueue, ReplyTo
from worker.tokens import codes_from_bytes

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


def test_three_jobs_decode_together_and_each_take_arrives_at_its_length(queue: JobQueue, tiny_model: MusicGen) -> None:
    requests = [TuneRequest(prompt="calm piano", duration=5), TuneRequest(prompt="sad cello", duration=6, takes=2),
                TuneRequest(genres=["Jazz"], moods=["Happy"], duration=5)]
    jobs = [queue.submit(r, ReplyTo(platform="cli")) for r in requests]
    log = EventLog(queue)
    worker, stop, thread = start_worker(queue, tiny_model, DecodeEngine(tiny_model, EngineOptions(slots=8)))
    try:
        wait_for(lambda: len(log.of("done")) == 4, what="4 done events, one per take")
    finally:
        stop.set(); thread.join(30)
    assert worker.engine.stats.busiest == 4  # all four takes were in the engine's slots at once
    assert worker.stats.jobs_done == 3 and worker.stats.takes_done == 4
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
            assert codes_from_bytes(queue.load_tokens(take.tokens_key)).shape == (4, 50 * request.duration)
    assert "jazz" in log.of("done", jobs[2].job_id)[0].caption


def test_a_short_job_submitted_during_a_long_one_is_done_first(queue: JobQueue, tiny_model: MusicGen, tiny_engine: DecodeEngine) -> None:
    log = EventLog(queue)
    _, stop, thread = start_worker(queue, tiny_model, tiny_engine)
    try:
        long = queue.submit(TuneRequest(prompt="slow ambient", duration=30), ReplyTo(platform="cli"))
        wait_for(lambda: log.of("progress", long.job_id), what="the long job to be decoding")
        short = queue.submit(TuneRequest(prompt="fast drums", duration=5), ReplyTo(platform="cli"))
        wait_for(lambda: log.of("done", long.job_id), timeout=120, what="the long job")
    finally:
        stop.set(); thread.join(30)
    order = [e.job_id for e in log.poll() if e.type == "done"]
    assert order == [short.job_id, long.job_id]


def test_progress_is_published_at_least_every_tenth_of_decoding(queue: JobQueue, tiny_model: MusicGen, tiny_engine: DecodeEngine) -> None:
    job = queue.submit(TuneRequest(prompt="calm", duration=5), ReplyTo(platform="cli"))
    log = EventLog(queue)
    _, stop, thread = start_worker(queue, tiny_model, tiny_engine)
    try:
        wait_for(lambda: log.of("done", job.job_id), what="done")
    finally:
        stop.set(); thread.join(30)
    marks = [0.0] + [e.progress for e in log.of("progress", job.job_id)] + [1.0]
    assert len(marks) >= 11
    assert max(b - a for a, b in zip(marks, marks[1:])) <= 0.1 + 0.01


class Poisoned(DecodeEngine):
    """Any decode step with a 'poison' caption in a slot raises, as a CUDA assert would."""

    def _decode_step(self, n: int, length: int, text_length: int) -> None:
        if any(s is not None and "poison" in s.take.caption for s in self._slots):
            raise RuntimeError("CUDA error: device-side assert triggered")
        super()._decode_step(n, length, text_length)


def test_poison_job_is_dead_lettered_and_the_jobs_decoding_beside_it_complete(queue: JobQueue, tiny_model: MusicGen) -> None:
    good = [queue.submit(TuneRequest(prompt=f"calm {i}", duration=5), ReplyTo(platform="discord")) for i in range(2)]
    bad = queue.submit(TuneRequest(prompt="poison", duration=5), ReplyTo(platform="discord"))
    log = EventLog(queue, "discord")
    _, stop, thread = start_worker(queue, tiny_model, Poisoned(tiny_model, EngineOptions(slots=4)))
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


def test_text_that_cannot_be_analysed_fails_at_once_with_the_reason(queue: JobQueue, tiny_model: MusicGen, tiny_engine: DecodeEngine) -> None:
    class Refusing:
        def analyse(self, request: TuneRequest):  # type: ignore[no-untyped-def]
            from worker.loop import UserError
            raise UserError("There are no words to read in that text.")

    job = queue.submit(TuneRequest(text="🙂🙂🙂", duration=5), ReplyTo(platform="cli"))
    log = EventLog(queue)
    worker = Worker(queue, tiny_model, tiny_engine, WorkerOptions(block_ms=100), analyser=Refusing())
    stop = threading.Event()
    thread = threading.Thread(target=worker.run, args=(stop,), daemon=True)
    thread.start()
    try:
        [failed] = wait_for(lambda: log.of("failed", job.job_id), what="the refusal")
    finally:
        stop.set(); thread.join(30)
    assert failed.error == "There are no words to read in that text."
    assert queue.dead_letters() == [] and queue.depth() == 0


def test_a_job_longer_than_the_visibility_timeout_is_not_taken_over_while_its_worker_lives(redis_url: str, tiny_model: MusicGen, tiny_engine: DecodeEngine) -> None:
    queue = JobQueue.from_url(redis_url, visibility_timeout_s=0.5)
    job = queue.submit(TuneRequest(prompt="a long piece", duration=20), ReplyTo(platform="cli"))
    log = EventLog(queue)
    _, stop, thread = start_worker(queue, tiny_model, tiny_engine, consumer="slow")
    other = JobQueue.from_url(redis_url, visibility_timeout_s=0.5)
    stolen = []
    try:
        wait_for(lambda: log.of("progress", job.job_id), what="decoding to start")
        while not log.of("done", job.job_id):  # another worker keeps trying to take over idle jobs
            stolen += other.claim("thief", 8, block_ms=50)
            time.sleep(0.1)
    finally:
        stop.set(); thread.join(30)
        other.close()
    assert stolen == []
    assert len(log.of("started", job.job_id)) == 1 and len(log.of("done", job.job_id)) == 1
    queue.close()


def test_a_job_finished_elsewhere_stops_decoding_here(queue: JobQueue, tiny_model: MusicGen, tiny_engine: DecodeEngine) -> None:
    job = queue.submit(TuneRequest(prompt="a long piece", duration=30), ReplyTo(platform="cli"))
    log = EventLog(queue)
    worker, stop, thread = start_worker(queue, tiny_model, tiny_engine)
    try:
        wait_for(lambda: log.of("progress", job.job_id), what="decoding to start")
        queue.redis.set(f"{queue.prefix}:done:{job.job_id}", "cancelled")  # what an operator's cancel writes
        wait_for(lambda: not tiny_engine.busy and not worker._jobs, timeout=30, what="the takes to stop")
    finally:
        stop.set(); thread.join(30)
    assert not log.of("done", job.job_id) and queue.depth() == 0


def _worker_process(redis_url: str, model_dir: Path, visibility_s: float = 60.0, **env_vars: str) -> subprocess.Popen[bytes]:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TEXTUNES_VISIBILITY_TIMEOUT_S": str(visibility_s),
           "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1", **env_vars}
    return subprocess.Popen(
        [sys.executable, "-m", "worker.cli", "worker", "--model", str(model_dir), "--redis-url", redis_url, "--device", "cpu"],
        env=env, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )


def test_jobs_of_a_killed_worker_are_finished_by_another_exactly_once(redis_url: str, tiny_model_dir: Path, tiny_model: MusicGen, tiny_engine: DecodeEngine) -> None:
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
    _, stop, thread = start_worker(queue, tiny_model, tiny_engine, consumer="rescuer")
    try:
        wait_for(lambda: all(log.of("done", j.job_id) for j in jobs), timeout=120, what="the rescued jobs")
    finally:
        stop.set(); thread.join(60)
    assert [len(log.of("done", j.job_id)) for j in jobs] == [1, 1]
    queue.close()


def test_sigterm_finishes_the_takes_in_hand_then_exits(redis_url: str, tiny_model_dir: Path) -> None:
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
    assert f"job {job.job_id} platform=cli duration=30.0s takes=1" in text
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


def test_an_uncached_hub_model_on_a_machine_without_the_hub_fails_fast_with_the_message(tmp_path: Path) -> None:
    import socket

    silent = socket.socket()  # accepts connections and never answers, like a firewall that drops packets
    silent.bind(("127.0.0.1", 0))
    silent.listen(16)
    env = {**os.environ, "PYTHONPATH": str(REPO), "HF_HOME": str(tmp_path / "hf"),
           "HF_ENDPOINT": f"http://127.0.0.1:{silent.getsockname()[1]}", "OMP_NUM_THREADS": "1"}
    env.pop("HF_HUB_OFFLINE", None)
    env.pop("TRANSFORMERS_OFFLINE", None)
    try:
        result = subprocess.run(
            [sys.executable, "-m", "worker.cli", "generate", "calm piano", "--model", "facebook/musicgen-small"],
            cwd=REPO, env=env, capture_output=True, text=True, timeout=90,  # minutes of retries would overrun this
        )
    finally:
        silent.close()
    assert result.returncode == 2
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "TEXTUNES_MODEL" in errors[0] and "did not answer" in errors[0]


def test_a_running_worker_serves_health_and_metrics_beats_and_warns_about_redis(redis_url: str, tiny_model_dir: Path) -> None:
    import urllib.request

    from worker.local_redis import free_port

    port = free_port()
    queue = JobQueue.from_url(redis_url)
    job = queue.submit(TuneRequest(prompt="calm", duration=5), ReplyTo(platform="cli"))
    log = EventLog(queue)
    process = _worker_process(redis_url, tiny_model_dir, TEXTUNES_METRICS_PORT=str(port))

    def get(path: str) -> tuple[int, str]:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as response:
                return response.status, response.read().decode()
        except urllib.error.HTTPError as error:
            return error.code, error.read().decode()
        except OSError:
            return 0, ""

    try:
        wait_for(lambda: log.of("done", job.job_id), timeout=120, what="the job")
        assert get("/healthz")[0] == 200 and get("/readyz")[0] == 200
        body = get("/metrics")[1]
        steps = next(float(line.split()[1]) for line in body.splitlines() if line.startswith("textunes_decode_steps_total"))
        assert steps >= 253  # 5 s of frames plus the delay pattern
        assert 'textunes_requests_total{kind="tags",outcome="done",platform="cli"} 1.0' in body
        [seen] = queue.workers()
        assert seen.info["lanes"] == ["text"] and seen.info["slots"] == 8
    finally:
        process.send_signal(signal.SIGTERM)
        output, _ = process.communicate(timeout=60)
        queue.close()
    assert "keeps nothing on disk" in output.decode()  # the test Redis has no persistence
