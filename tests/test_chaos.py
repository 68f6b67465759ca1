"""Chaos: 200 jobs through 3 real worker processes and a real frontend process, while the test
SIGKILLs a worker twice (starting a new one each time), SIGKILLs Redis once (AOF with
``appendfsync always``, restarted on its data) and SIGKILLs the event reader once (restarted).

Afterwards every job has exactly one ``done`` and its take is posted exactly once, with a final
✅ status; none is lost, none posted twice, nothing is left in the queue, every worker started
came up, and everything still running stops cleanly on SIGTERM. The figures are printed
(``pytest -s tests/test_chaos.py``) and quoted in the README.

The workers are ``textunes worker`` on the tiny random checkpoint (5 s takes, 8 slots each); the
frontend is ``tests/chaos_reader.py``: the real ``EventPump`` and posting record, posting to a
file. Faults strike at points of progress (jobs finished, takes posted), not at times, and the
worker killed is always the one holding the most jobs at that moment.
"""

from __future__ import annotations

import os
import signal
import statistics
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import pytest
import redis

from pipeline.models import TuneRequest
from tests.chaos_reader import read_posts
from tests.events import events_settled
from worker.local_redis import RedisServer
from worker.queue import WORKER_GROUP, Event, Job, JobQueue, ReplyTo

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]

ROOT = Path(__file__).resolve().parents[1]
PLATFORM = "chaos"
JOBS = 200
WORKERS = 3
SUBMIT_PER_S = 5.0  # a little under what 3 workers make on 2 CPU cores
VISIBILITY_S = 5.0  # a killed worker's jobs are taken over within seconds (a live one renews every 1.7 s)
KILL_WORKER_AT = (30, 110)  # jobs finished
RESTART_REDIS_AT = 70  # jobs finished
REDIS_DOWN_S = 1.0  # how long Redis stays down: inside the queue's retries (REDIS_RETRY_S)
RESTART_READER_AT = 150  # takes posted
START_TIMEOUT_S = 150.0  # for processes to come up (the worker loads the model and the analyser)
RUN_TIMEOUT_S = 300.0  # from the first submission until every take is posted; about a minute here
T = TypeVar("T")


@dataclass
class Child:
    name: str
    process: subprocess.Popen[bytes]
    log: Path

    def tail(self, lines: int = 30) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])


@dataclass
class Rig:
    """Redis, the workers and the reader of one chaos run; ``close`` kills whatever still runs."""

    folder: Path
    model_dir: Path
    redis: RedisServer
    env: dict[str, str]
    workers: list[Child] = field(default_factory=list)  # running
    reader: Child | None = None
    started: list[Child] = field(default_factory=list)  # every process ever started

    @property
    def posts(self) -> Path:
        return self.folder / "posts.jsonl"

    @property
    def running(self) -> list[Child]:
        return [*self.workers, *([self.reader] if self.reader else [])]

    def _start(self, name: str, command: list[str]) -> Child:
        log = self.folder / f"{name}-{len(self.started) + 1}.log"
        with log.open("wb") as out:
            process = subprocess.Popen(command, cwd=ROOT, env=self.env, stdout=out, stderr=subprocess.STDOUT)
        child = Child(name, process, log)
        self.started.append(child)
        return child

    def start_worker(self) -> Child:
        child = self._start("worker", [sys.executable, "-m", "worker.cli", "worker", "--model", str(self.model_dir),
                                       "--device", "cpu"])
        self.workers.append(child)
        return child

    def start_reader(self) -> Child:
        self.reader = self._start("reader", [sys.executable, "-m", "tests.chaos_reader", PLATFORM, str(self.posts)])
        return self.reader

    def kill(self, child: Child) -> None:
        child.process.send_signal(signal.SIGKILL)
        child.process.wait(10)
        if child in self.workers:
            self.workers.remove(child)

    def crash_redis(self) -> None:
        """SIGKILL, down for ``REDIS_DOWN_S``, then up again on the same port and data (the AOF)."""
        assert self.redis.process is not None
        self.redis.process.send_signal(signal.SIGKILL)
        self.redis.process.wait(10)
        self.redis.process = None
        time.sleep(REDIS_DOWN_S)  # the outage itself, not a wait for anything
        self.redis.start()

    def assert_alive(self) -> None:
        for child in self.running:
            assert child.process.poll() is None, f"{child.name} exited on its own:\n{child.tail()}"

    def close(self) -> None:
        for child in self.started:
            if child.process.poll() is None:
                child.process.kill()
                child.process.wait(10)
        self.redis.cleanup()


@pytest.fixture
def rig(tmp_path: Path, tiny_model_dir: Path) -> Iterator[Rig]:
    server = RedisServer(appendonly=True, extra_args=["--appendfsync", "always", "--logfile", str(tmp_path / "redis.log")])
    server.start()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DISCORD_", "SLACK_", "TEXTUNES_"))}
    env.update(REDIS_URL=server.url, PYTHONPATH=str(ROOT), PYTHONUNBUFFERED="1", OMP_NUM_THREADS="1",
               HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", TEXTUNES_LOG_LEVEL="INFO",
               TEXTUNES_VISIBILITY_TIMEOUT_S=str(VISIBILITY_S), TEXTUNES_POST_LEASE_S="2",
               TEXTUNES_PROGRESS_INTERVAL_S="1", TEXTUNES_SHUTDOWN_GRACE_S="10")
    running = Rig(tmp_path, tiny_model_dir, server, env)
    try:
        yield running
    finally:
        running.close()


class Events:
    """Every event of the platform, read without a consumer group (reading changes nothing)."""

    def __init__(self, queue: JobQueue) -> None:
        self.queue, self.stream, self.since = queue, queue.events_stream(PLATFORM), "0-0"
        self.all: list[Event] = []

    def poll(self) -> None:
        for _, entries in self.queue.redis.xread({self.stream: self.since}, count=5000) or []:
            for entry_id, fields in entries:
                self.since = entry_id
                self.all.append(Event.from_json(fields[b"event"]))

    def finished(self) -> set[str]:
        return {e.job_id for e in self.all if e.type in ("done", "failed", "cancelled")}


@dataclass
class Run:
    """What the test did."""

    jobs: dict[str, Job] = field(default_factory=dict)
    worker_kills: int = 0
    redis_restarts: int = 0
    reader_restarts: int = 0
    submissions_retried: int = 0
    faults: list[str] = field(default_factory=list)
    seconds: float = 0.0


def _unless_redis_is_away(call: Callable[[], T], default: T) -> T:
    """``call()``, or ``default`` while the test's own client finds Redis away (it is restarting)."""
    try:
        return call()
    except redis.ConnectionError:
        return default


def _busiest_worker(queue: JobQueue, workers: list[Child]) -> tuple[Child, int] | None:
    """The running worker holding the most claimed, unfinished jobs, and how many it holds
    (None while none holds any)."""
    pending = queue.redis.xpending(queue.jobs_stream, WORKER_GROUP)
    held = {_pid(c["name"].decode()): int(c["pending"]) for c in pending.get("consumers") or []}
    holding = [(w, held[w.process.pid]) for w in workers if held.get(w.process.pid, 0) > 0]
    return max(holding, key=lambda pair: pair[1]) if holding else None


def _pid(consumer: str) -> int:
    """``worker-<host>-<pid>``: the worker's process id."""
    tail = consumer.rpartition("-")[2]
    return int(tail) if tail.isdigit() else -1


def _beating(queue: JobQueue, workers: list[Child]) -> bool:
    """Every running worker has loaded its model and beats (it is in ``textunes admin status``)."""
    seen = {_pid(w.consumer) for w in queue.workers()}
    return all(w.process.pid in seen for w in workers)


def _wait(condition: Callable[[], bool], rig: Rig, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not _unless_redis_is_away(condition, False):
        rig.assert_alive()
        assert time.monotonic() < deadline, f"timed out after {timeout_s:g} s waiting for {what}"
        time.sleep(0.1)


def drive(rig: Rig, queue: JobQueue, events: Events) -> Run:
    """Submit the jobs at ``SUBMIT_PER_S`` and strike each fault at its point, until every take
    is posted and the reader has acknowledged every event (or ``RUN_TIMEOUT_S``)."""
    run = Run()
    ids = [f"chaos{n:04d}" for n in range(JOBS)]
    started = time.monotonic()

    def submit(job_id: str) -> Job:
        request = TuneRequest(prompt=f"calm piano {job_id}", duration=5)
        return queue.submit(request, ReplyTo(platform=PLATFORM, channel_id="c", thread_id=job_id,
                                             message_id=f"status-{job_id}"), job_id=job_id)

    def all_posted() -> bool:
        posted = {p["job"] for p in read_posts(rig.posts) if p["kind"] in ("take", "text")}
        return (len(run.jobs) == JOBS and events.finished() >= set(run.jobs) and posted >= set(run.jobs)
                and events_settled(rig.redis.url, PLATFORM))

    while time.monotonic() - started < RUN_TIMEOUT_S:
        at = time.monotonic() - started
        while len(run.jobs) < JOBS and at >= len(run.jobs) / SUBMIT_PER_S:
            job_id = ids[len(run.jobs)]
            try:  # one that fails is sent again with the same id, as a frontend would
                run.jobs[job_id] = submit(job_id)
            except redis.ConnectionError:
                run.submissions_retried += 1
                break
        if not _unless_redis_is_away(lambda: events.poll() or True, False):
            continue
        finished = len(events.finished())
        if run.worker_kills < len(KILL_WORKER_AT) and finished >= KILL_WORKER_AT[run.worker_kills]:
            busiest = _busiest_worker(queue, rig.workers)
            if busiest is not None:
                victim, held = busiest
                rig.kill(victim)
                rig.start_worker()
                run.worker_kills += 1
                run.faults.append(f"{at:5.1f} s: SIGKILL the worker holding {held} jobs, a new one started "
                                  f"({finished} jobs finished)")
        if not run.redis_restarts and finished >= RESTART_REDIS_AT:
            rig.crash_redis()
            run.redis_restarts += 1
            run.faults.append(f"{at:5.1f} s: SIGKILL redis-server, up again {time.monotonic() - started - at:.1f} s "
                              f"later ({finished} jobs finished)")
        if not run.reader_restarts:
            posted = sum(p["kind"] == "take" for p in read_posts(rig.posts))
            if posted >= RESTART_READER_AT:
                rig.kill(rig.reader)  # type: ignore[arg-type]
                rig.start_reader()
                run.reader_restarts += 1
                run.faults.append(f"{at:5.1f} s: SIGKILL the event reader, restarted ({posted} takes posted)")
        if run.reader_restarts and run.worker_kills == len(KILL_WORKER_AT) and _unless_redis_is_away(all_posted, False):
            break
        rig.assert_alive()
        time.sleep(0.1)
    run.seconds = time.monotonic() - started
    return run


def _percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(fraction * len(ordered)) - 1))] if ordered else float("nan")


@dataclass
class Outcome:
    """What users would have seen, from the events and the posts."""

    lost: list[str]  # no done/failed, or done and never posted
    finished_twice: list[Any]
    posted_twice: list[Any]
    failed: list[str]
    no_final_status: list[str]  # the job's status message never ended on ✅
    taken_over: int  # jobs started by more than one worker
    times: list[float]  # submitted -> posted, seconds

    @classmethod
    def of(cls, jobs: dict[str, Job], events: list[Event], posts: list[dict[str, Any]]) -> "Outcome":
        done = Counter((e.job_id, e.take.index) for e in events if e.type == "done" and e.take)
        failed = Counter(e.job_id for e in events if e.type == "failed")
        starts = Counter(e.job_id for e in events if e.type == "started")
        posted = Counter((p["job"], p["take"]) for p in posts if p["kind"] == "take")
        post_time = {p["job"]: p["at"] for p in posts if p["kind"] == "take"}
        last_status = {p["job"]: p["text"] for p in posts if p["kind"] == "status"}
        return cls(
            lost=[j for j in jobs if not (done[(j, 1)] or failed[j]) or (done[(j, 1)] and not posted[(j, 1)])],
            finished_twice=[k for k, n in done.items() if n > 1] + [j for j, n in failed.items() if n > 1 or done[(j, 1)]],
            posted_twice=[k for k, n in posted.items() if n > 1],
            failed=list(failed),
            no_final_status=[j for j in jobs if not last_status.get(j, "").startswith("✅")],
            taken_over=sum(n > 1 for n in starts.values()),
            times=[post_time[j] - job.created_at for j, job in jobs.items() if j in post_time],
        )


def test_jobs_survive_killed_workers_a_crashed_redis_and_a_restarted_reader(rig: Rig) -> None:
    queue = JobQueue.from_url(rig.redis.url, visibility_timeout_s=VISIBILITY_S)
    events = Events(queue)
    try:
        for _ in range(WORKERS):
            rig.start_worker()
        rig.start_reader()
        _wait(lambda: _beating(queue, rig.workers) and "reading" in rig.reader.log.read_text(),  # type: ignore[union-attr]
              rig, START_TIMEOUT_S, "the workers and the reader to start")
        run = drive(rig, queue, events)
        _wait(lambda: _beating(queue, rig.workers), rig, START_TIMEOUT_S, "the last worker started to come up")
        stopping = rig.running
        for child in stopping:  # as an operator stops them
            child.process.send_signal(signal.SIGTERM)
        for child in stopping:
            child.process.wait(60)
        events.poll()
        waiting = queue.depth()
        audio_left = sum(1 for _ in queue.redis.scan_iter(match=f"{queue.prefix}:audio:*"))
    finally:
        queue.close()

    seen = Outcome.of(run.jobs, events.all, read_posts(rig.posts))
    figures = "\n".join([
        f"chaos: {len(run.jobs)} jobs (one 5 s take each) through {WORKERS} worker processes in {run.seconds:.0f} s; "
        f"{run.worker_kills} workers SIGKILLed (new ones started), Redis SIGKILLed and restarted {run.redis_restarts}x "
        f"(AOF, appendfsync always), the event reader SIGKILLed and restarted {run.reader_restarts}x",
        f"chaos: lost {len(seen.lost)}, finished twice {len(seen.finished_twice)}, posted twice {len(seen.posted_twice)}, "
        f"failed {len(seen.failed)}, without a final status {len(seen.no_final_status)}; "
        f"jobs taken over {seen.taken_over}, submissions retried {run.submissions_retried}, "
        f"left in the queue {waiting}, MP3s left in Redis {audio_left}",
        f"chaos: time to result (submitted -> posted): p50 {statistics.median(seen.times or [0]):.1f} s, "
        f"p95 {_percentile(seen.times, 0.95):.1f} s, max {max(seen.times or [0]):.1f} s",
        *(f"chaos: {fault}" for fault in run.faults),
    ])
    print("\n" + figures)
    assert (run.worker_kills, run.redis_restarts, run.reader_restarts) == (len(KILL_WORKER_AT), 1, 1), figures
    assert not seen.lost, f"lost: {seen.lost[:10]}\n{figures}"
    assert not seen.finished_twice and not seen.posted_twice, f"{seen.finished_twice[:5]} {seen.posted_twice[:5]}\n{figures}"
    assert not seen.failed, f"failed: {seen.failed[:5]}\n{figures}"  # nothing here fails 3 times
    assert not seen.no_final_status, f"no ✅: {seen.no_final_status[:5]}\n{figures}"
    assert waiting == 0, figures
    for child in stopping:
        assert child.process.returncode == 0, f"{child.name} exited with {child.process.returncode}:\n{child.tail()}"


# ---- what the chaos run found in the worker (worker/loop.py, left to its owner) ----------------
def _refuse_once(queue: JobQueue, method: str, when: Callable[..., bool]) -> list[Any]:
    """The first call of ``queue.method`` for which ``when(*args)`` holds finds Redis away, as
    after an outage longer than the queue's retries; returns the refused calls' arguments."""
    real, refused = getattr(queue, method), []

    def call(*args: Any) -> Any:
        if not refused and when(*args):
            refused.append(args)
            raise redis.ConnectionError("Error 111 connecting to 127.0.0.1:6379. Connection refused.")
        return real(*args)

    setattr(queue, method, call)
    return refused


def test_a_worker_finishes_its_jobs_after_redis_refused_it_once_in_each_thread(queue: JobQueue, tiny_model) -> None:  # type: ignore[no-untyped-def]
    """Redis away past the queue's retries (a restart longer than ``REDIS_RETRY_S``) once in each
    of the worker's threads: publishing ``started`` (intake), publishing progress (decode),
    storing a take and completing a job (output). Each job must still be done, once."""
    from tests.workers import start_worker
    from worker.engine import DecodeEngine, EngineOptions

    refused = [
        _refuse_once(queue, "publish", lambda event: event.type == "started"),
        _refuse_once(queue, "publish", lambda event: event.type == "progress"),
        _refuse_once(queue, "store_audio", lambda *args: True),
        _refuse_once(queue, "complete", lambda delivery, *events: True),
    ]
    jobs = {queue.submit(TuneRequest(prompt=f"calm {n}", duration=5), ReplyTo(platform="cli")).job_id for n in range(4)}
    events = Events(queue)
    events.stream = queue.events_stream("cli")
    _, stop, thread = start_worker(queue, tiny_model, DecodeEngine(tiny_model, EngineOptions(slots=8)))
    deadline = time.monotonic() + 20  # about 2 s when nothing goes wrong
    try:
        while not events.finished() >= jobs and time.monotonic() < deadline:
            time.sleep(0.1)
            events.poll()
    finally:
        stop.set()
        thread.join(60)
    assert all(refused)
    assert Counter(e.job_id for e in events.all if e.type == "done") == Counter(jobs)


def test_a_job_whose_audio_failed_once_is_made_again_and_done(queue: JobQueue, tiny_model,  # type: ignore[no-untyped-def]
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    """Making a take's MP3 fails once (an encoder error, or Redis away while it is stored): the
    job goes back in line, this worker claims it again at once, and must finish it."""
    import worker.loop
    from tests.workers import start_worker
    from worker.engine import DecodeEngine, EngineOptions

    render, failures = worker.loop.render_take, []

    def fails_once(*args: Any, **kwargs: Any) -> Any:
        if not failures:
            failures.append(1)
            raise RuntimeError("the MP3 encoder failed")
        return render(*args, **kwargs)

    monkeypatch.setattr(worker.loop, "render_take", fails_once)
    job = queue.submit(TuneRequest(prompt="calm", duration=5), ReplyTo(platform="cli"))
    events = Events(queue)
    events.stream = queue.events_stream("cli")
    _, stop, thread = start_worker(queue, tiny_model, DecodeEngine(tiny_model, EngineOptions(slots=8)))
    deadline = time.monotonic() + 15  # about 3 s when it works
    try:
        while job.job_id not in events.finished() and time.monotonic() < deadline:
            time.sleep(0.1)
            events.poll()
    finally:
        stop.set()
        thread.join(60)
    assert failures and [e.type for e in events.all if e.type in ("started", "done")] == ["started", "started", "done"]
