"""The worker: jobs from Redis in, takes through the decode engine, MP3s and events out.

Three threads, each with one job:

- **intake** claims jobs while the engine has room, briefs them (text analysis runs here,
  never between decode steps), publishes ``started`` and hands them to the decode loop. It
  also keeps the lease of every job the worker holds fresh, so a long track is never taken
  over by another worker while this one is alive, and notices jobs finished elsewhere
  (cancelled by an operator, or done by a worker that took over) so their takes stop.
- **decode** (the caller's thread) admits takes and runs the engine one step at a time;
  a take that finishes is handed on at once while the other slots keep decoding.
- **output** turns a take's tokens into audio (EnCodec), masters and encodes it, stores it
  and, once a job's last take is stored, publishes its ``done`` events and acknowledges it.

A job whose take fails is retried (then dead-lettered) alone; the rest keep going. Redis going
away never strands a job on a live worker: what must be written (a take, a job's completion,
its retry) is tried again until Redis answers, by the intake and output threads, while the
decode thread never waits on Redis (a progress event it can't publish is skipped).
"""

from __future__ import annotations

import logging
import os
import queue as queues
import socket
import threading
import time
from dataclasses import dataclass, field, replace
from collections.abc import Callable
from typing import Protocol, TypeVar

import numpy as np
import redis
import torch

from pipeline.analysis import AnalysisError
from pipeline.audio import Mastering, master
from pipeline.audio_files import AudioFile, encode_audio
from pipeline.brief import brief_from_tags
from pipeline.loop import level, make_loop, source_seconds
from pipeline.melody import read_clip
from pipeline.models import Brief, TuneRequest
from pipeline.preview import waveform_png
from worker import metrics
from worker.engine import DecodeEngine, FinishedTake, ReferenceEngine, TakeRequest
from worker.musicgen import MusicGen
from worker.queue import Delivery, Event, Job, JobQueue, Take
from worker.tokens import BadTokens, codes_from_bytes, codes_to_bytes

log = logging.getLogger("textunes.worker")
T = TypeVar("T")

PROGRESS_STEP = 0.1  # publish progress at least every 10 % of a job's decoding


class Analyser(Protocol):
    def analyse(self, request: TuneRequest) -> Brief: ...


class SharedAnalyser:
    """An analyser several workers' intake threads may call at once: one text at a time."""

    def __init__(self, analyser: Analyser) -> None:
        self._analyser = analyser
        self._lock = threading.Lock()

    def analyse(self, request: TuneRequest) -> Brief:
        with self._lock:
            return self._analyser.analyse(request)


class UserError(ValueError):
    """A request that can never succeed (bad text): fails at once, no retry."""


@dataclass
class WorkerOptions:
    max_upload_bytes: int = 10 * 1024 * 1024
    block_ms: int = 1000  # how long an idle worker blocks waiting for a job
    mastering: Mastering = field(default_factory=Mastering)
    consumer: str = field(default_factory=lambda: f"worker-{socket.gethostname()}-{os.getpid()}")


@dataclass
class WorkerStats:
    """Running totals, for the log, the benchmark and metrics."""

    jobs_done: int = 0
    jobs_failed: int = 0
    takes_done: int = 0
    audio_seconds: float = 0.0
    output_seconds: float = 0.0  # EnCodec, mastering, MP3 encoding and storing


@dataclass
class _Job:
    delivery: Delivery
    brief: Brief
    takes: list[TakeRequest] = field(default_factory=list)
    stored: dict[int, Take] = field(default_factory=dict)
    failed: bool = False
    started_at: float = field(default_factory=time.time)  # briefed and handed to the engine
    reported: float = 0.0  # the last progress published

    @property
    def job_id(self) -> str:
        return self.delivery.job.job_id

    def keys(self) -> list[tuple[str, str, int]]:
        """The engine keys of this delivery's takes (a retried job's next delivery has others)."""
        return [(self.job_id, self.delivery.entry_id, index) for index in range(1, len(self.delivery.job.seeds) + 1)]


def generation_seconds(request: TuneRequest, bpm: int) -> float:
    """How much music to make for ``request``: its length, or for a loop enough to cut one from."""
    return source_seconds(request.duration, bpm) if request.loop else request.duration


@dataclass(frozen=True)
class Rendered:
    file: AudioFile
    preview: bytes  # PNG of the waveform (and the seam, for a loop)


def render_take(musicgen: MusicGen, finished: FinishedTake, request: TuneRequest, bpm: int,
                mastering: Mastering = Mastering(), *, max_bytes: int) -> Rendered:
    """A finished take as the file the user asked for (mastered; cut to a seamless loop when
    asked), fitting ``max_bytes``, and its preview."""
    audio = finished.audio if finished.codes is None else musicgen.decode_audio(finished.codes)
    audio = np.asarray(audio, dtype=np.float32)
    rate = musicgen.sample_rate
    if request.loop:
        whole = master(audio, rate, replace(mastering, fade_in_s=0.0, fade_out_s=0.0))
        samples = level(make_loop(whole, rate, bpm, request.duration).samples, rate,
                        mastering.target_lufs, mastering.ceiling_dbfs)
    else:
        samples = master(audio, rate, mastering)
    file = encode_audio(samples, rate, request.audio_format, max_bytes=max_bytes, loop=request.loop)
    return Rendered(file, waveform_png(samples, rate, loop=request.loop))


class Worker:
    def __init__(self, queue: JobQueue, musicgen: MusicGen, engine: DecodeEngine | ReferenceEngine,
                 options: WorkerOptions = WorkerOptions(), analyser: Analyser | None = None,
                 health: metrics.Health | None = None) -> None:
        self.queue = queue
        self.health = health or metrics.Health()
        self.musicgen = musicgen
        self.engine = engine
        self.options = options
        self._analyser = analyser
        self.stats = WorkerStats()
        self._jobs: dict[str, _Job] = {}  # held: claimed and not yet completed or failed
        self._lock = threading.Lock()
        self._briefed: queues.Queue[_Job] = queues.Queue()
        self._outbox: queues.Queue[Callable[[], None] | None] = queues.Queue()  # work for the output thread
        self._stopping = threading.Event()
        self._to_discard: queues.Queue[_Job] = queues.Queue()  # jobs whose takes the engine must drop
        self._room = engine.slots

    @property
    def analyser(self) -> Analyser:
        """The analyser given, or the embedded one, loaded on the first text job."""
        if self._analyser is None:
            from pipeline.analysis import Analyser as Embedded, AnalysisConfig

            self._analyser = Embedded.load(AnalysisConfig.from_env())
        return self._analyser

    # ---- the decode thread -------------------------------------------------------------
    def run(self, stop: threading.Event) -> None:
        """Work until ``stop`` is set, then finish the takes in the engine, hand back jobs
        not yet started, and return."""
        log.info("worker %s waiting for jobs (%d slots, %s)", self.options.consumer, self.engine.slots,
                 type(self.engine).__name__)
        intake = threading.Thread(target=self._intake, args=(stop,), name="textunes-intake", daemon=True)
        output = threading.Thread(target=self._output, name="textunes-output", daemon=True)
        intake.start()
        output.start()
        self.engine.on_step = self._report_progress
        try:
            while not (stop.is_set() and not self.engine.busy):
                if stop.is_set():
                    self._stopping.set()
                self.health.beat()
                self._admit(accept=not stop.is_set())
                self._discard_dropped()
                if self.engine.busy:
                    steps = self.engine.stats.steps
                    for finished in self.engine.step():
                        self._take_done(finished)
                    metrics.count_decode_steps(self.engine.stats.steps - steps)
                    metrics.set_batch_slots(self.engine.running, self.engine.slots)
                else:
                    metrics.set_batch_slots(0, self.engine.slots)
                    self._wait_for_work(stop)
                self._room = max(0, self.engine.room() - self._briefed.qsize())
        finally:
            self._stopping.set()
            self.engine.on_step = lambda: None
            intake.join(timeout=30)
            self._release_unstarted()
            self._outbox.put(None)
            output.join()
        log.info("worker %s stopped", self.options.consumer)

    def _admit(self, *, accept: bool) -> None:
        while True:
            try:
                job = self._briefed.get_nowait()
            except queues.Empty:
                return
            if not accept:
                self._briefed.put(job)
                return
            self._start(job)

    def _start(self, job: _Job) -> None:
        metrics.observe_queue_wait(job.delivery.job.reply_to.platform, time.time() - job.delivery.job.created_at)
        try:
            for take in job.takes:
                self.engine.add(take)
        except ValueError as error:
            self.engine.discard(job.keys())
            self._abandon(job)
            message = f"This worker can't make that track: {error}."
            self._outbox.put(lambda: self._until_redis_works(lambda: self._fail_now(job.delivery, message), job.job_id))

    def _wait_for_work(self, stop: threading.Event) -> None:
        try:
            job = self._briefed.get(timeout=0.2)
        except queues.Empty:
            return
        if stop.is_set():
            self._briefed.put(job)
        else:
            self._start(job)

    def _take_done(self, finished: FinishedTake) -> None:
        job_id, entry_id, index = finished.key  # type: ignore[misc]
        job = self._jobs.get(job_id)
        if job is None or job.failed or job.delivery.entry_id != entry_id:
            return
        if finished.error:
            log.error("job %s: take %d failed: %s", job_id, index, finished.error)
            self.engine.discard(job.keys())
            self._abandon(job)
            self._outbox.put(lambda: self._until_redis_works(lambda: self._retry(job.delivery, finished.error), job_id))
            return
        self._outbox.put(lambda: self._make_file(job, index, finished))

    def _report_progress(self) -> None:
        try:
            self._publish_progress()
        except redis.RedisError as error:  # the decode thread never waits on Redis: skip this report
            log.warning("could not publish progress (%s); decoding goes on", error)

    def _publish_progress(self) -> None:
        for job in list(self._jobs.values()):
            keys = job.keys()
            fraction = sum(self.engine.progress(key) for key in keys) / len(keys)
            if fraction >= job.reported + PROGRESS_STEP - 1e-9 and fraction < 1.0:
                job.reported = fraction
                self.queue.publish(Event(type="progress", job_id=job.job_id, reply_to=job.delivery.job.reply_to,
                                         caption=job.brief.caption, progress=round(fraction, 3)))

    def _discard_dropped(self) -> None:
        while True:
            try:
                job = self._to_discard.get_nowait()
            except queues.Empty:
                return
            self.engine.discard(job.keys())

    def _release_unstarted(self) -> None:
        unstarted = []
        while True:
            try:
                unstarted.append(self._briefed.get_nowait())
            except queues.Empty:
                break
        if unstarted:
            for job in unstarted:
                self._abandon(job)
            try:
                self.queue.release([job.delivery for job in unstarted])
                log.info("handed %d job(s) not yet started back to the queue", len(unstarted))
            except redis.RedisError as error:
                log.warning("could not hand %d job(s) back (%s); they return after the visibility timeout",
                            len(unstarted), error)

    # ---- the intake thread ---------------------------------------------------------------
    def _intake(self, stop: threading.Event) -> None:
        keep_alive_every = max(0.2, min(self.queue.visibility_timeout_s / 3, 10.0))
        next_keep_alive = time.monotonic()
        while not stop.is_set():
            try:
                if time.monotonic() >= next_keep_alive:
                    self._keep_alive()
                    self._beat()
                    next_keep_alive = time.monotonic() + keep_alive_every
                room = self._room
                if room <= 0:
                    stop.wait(0.05)
                    continue
                block = self.options.block_ms if not self.engine.busy else min(self.options.block_ms, 200)
                for delivery in self.queue.claim(self.options.consumer, room, block_ms=block):
                    self._brief_and_hand_over(delivery)
            except Exception:
                log.exception("claiming jobs failed; retrying in 1 s")
                stop.wait(1.0)

    def _brief_and_hand_over(self, delivery: Delivery) -> None:
        job_id = delivery.job.job_id
        try:
            brief = self._until_redis_works(lambda: self._brief(delivery.job), job_id)
            takes = self._until_redis_works(lambda: self._takes(delivery, brief), job_id)
        except UserError as error:
            self._until_redis_works(lambda: self._fail_now(delivery, str(error)), job_id)
            return
        except Exception as error:
            log.exception("job %s: preparing it failed", job_id)
            self._until_redis_works(lambda: self._retry(delivery, f"analysis failed: {type(error).__name__}"), job_id)
            return
        job = _Job(delivery, brief, takes)
        with self._lock:
            self._jobs[job_id] = job
        self._until_redis_works(lambda: self.queue.publish(Event(
            type="started", job_id=job_id, reply_to=delivery.job.reply_to, caption=brief.caption,
            brief=brief.to_dict() if delivery.job.request.mode == "text" else None,
        )), job_id)
        self._briefed.put(job)
        self._room -= 1

    def _beat(self) -> None:
        """Tell operators (``textunes admin status``) and frontends that this worker is alive."""
        self.queue.beat(self.options.consumer, {
            "lanes": [self.queue.lane or "text"], "model": self.musicgen.name, "slots": self.engine.slots,
            "running": self.engine.running, "waiting": self.engine.waiting, "engine": type(self.engine).__name__,
        })

    def _keep_alive(self) -> None:
        with self._lock:
            held = list(self._jobs.values())
        if not held:
            return
        lost = set(self.queue.keep_alive(self.options.consumer, [job.delivery for job in held]))
        finished = self.queue.completed([job.job_id for job in held])
        for job in held:
            if job.job_id in finished or job.delivery.entry_id in lost:
                log.info("job %s: %s; stopping its takes", job.job_id,
                         "finished elsewhere (cancelled, or done by a worker that took it over)"
                         if job.job_id in finished else "taken over by another worker")
                if job.job_id in finished and job.delivery.entry_id not in lost:
                    self.queue.acknowledge(job.delivery)
                self._abandon(job)
                self._to_discard.put(job)

    def _brief(self, job: Job) -> Brief:
        """The job's musical brief; an extension keeps the brief its take was made from."""
        if job.extend is not None:
            stored = self.queue.load_brief(job.extend.job_id)
            if stored is not None:
                return Brief.from_dict(stored)
        request = job.request
        if request.mode != "text":
            return brief_from_tags(request)
        try:
            return self.analyser.analyse(request)
        except AnalysisError as error:
            raise UserError(str(error)) from error

    def _takes(self, delivery: Delivery, brief: Brief) -> list[TakeRequest]:
        """What the engine makes for a job: one take per seed, continuing a stored take for an
        extension, with room to cut a loop from, following the job's melody clip if it has one."""
        job = delivery.job
        request = job.request
        frames = self.musicgen.frames_for(generation_seconds(request, brief.bpm))
        prompt = melody = None
        if job.extend is not None:
            data = self.queue.load_tokens(self.queue.tokens_key(job.extend.job_id, job.extend.take))
            if data is None:
                raise UserError("That take is too old to extend: its music is kept for "
                                f"{self.queue.audio_ttl_s // 3600} h. Make a new one and extend that.")
            try:
                prompt = torch.from_numpy(codes_from_bytes(data))
            except BadTokens as error:
                raise UserError("That take can't be extended (its stored tokens are damaged).") from error
            frames += prompt.shape[-1]
        if job.melody_key:
            clip = self.queue.load_melody(job.melody_key)
            if clip is None:
                raise UserError("The melody clip of this request expired before it could be used. Send it again.")
            melody = read_clip(clip)[0]
        return [TakeRequest((job.job_id, delivery.entry_id, index), brief.caption, seed, frames, prompt, melody)
                for index, seed in enumerate(job.seeds, start=1)]

    # ---- the output thread ---------------------------------------------------------------
    def _output(self) -> None:
        while (work := self._outbox.get()) is not None:
            try:
                work()
            except Exception:
                log.exception("the output thread's work failed")

    def _make_file(self, job: _Job, index: int, finished: FinishedTake) -> None:
        """Render a finished take, store it, and complete its job when it was the last take.
        Any failure but Redis being away (which is waited out) sends the job back in line."""
        if job.failed:
            return
        started = time.perf_counter()
        try:
            rendered = render_take(self.musicgen, finished, job.delivery.job.request, job.brief.bpm,
                                   self.options.mastering, max_bytes=self.options.max_upload_bytes)
            self.stats.output_seconds += time.perf_counter() - started
            self._until_redis_works(lambda: self._store(job, index, finished, rendered.file, rendered.preview),
                                    job.job_id)
            if len(job.stored) == len(job.delivery.job.seeds) and not job.failed:
                self._until_redis_works(lambda: self._complete(job), job.job_id)
        except Exception as error:
            log.exception("job %s: making the audio of take %d failed", job.job_id, index)
            self._abandon(job)
            self._to_discard.put(job)
            reason = f"audio post-processing failed: {type(error).__name__}"
            try:
                self._until_redis_works(lambda: self._retry(job.delivery, reason), job.job_id)
            except redis.RedisError:
                log.error("job %s: Redis stayed away; it returns to the queue after the visibility timeout", job.job_id)

    def _until_redis_works(self, action: Callable[[], T], job_id: str) -> T:
        """``action()``, tried again every second while Redis is away (a restart, a failover).
        Once the worker is stopping it gives up after 30 s: the job then returns to the queue
        after the visibility timeout."""
        waited = 0
        while True:
            try:
                return action()
            except redis.RedisError as error:
                if waited % 10 == 0:
                    log.warning("job %s: Redis did not answer (%s); trying again", job_id, error)
                if self._stopping.is_set() and waited >= 30:
                    raise
                time.sleep(1.0)
                waited += 1

    def _store(self, job: _Job, index: int, finished: FinishedTake, file: AudioFile, preview: bytes) -> None:
        job_id, seed = job.job_id, job.delivery.job.seeds[index - 1]
        key = self.queue.store_audio(job_id, index, file.data)
        tokens_key = self.queue.store_tokens(job_id, index, codes_to_bytes(finished.codes)) if finished.codes is not None else ""
        seconds = round(file.duration_s, 3)
        job.stored[index] = Take(
            index=index, seed=seed, duration=seconds, audio_key=key, bitrate_kbps=file.bitrate_kbps,
            size_bytes=len(file.data), tokens_key=tokens_key, format=file.format, loop=job.delivery.job.request.loop,
            preview_key=self.queue.store_preview(job_id, index, preview), note=file.note,
            length=seconds if job.delivery.job.extend is not None else 0.0)

    def _complete(self, job: _Job) -> None:
        delivery, brief = job.delivery, job.brief
        takes = [job.stored[i] for i in sorted(job.stored)]
        self.queue.store_brief(job.job_id, brief.to_dict())
        first = self.queue.complete(delivery, *(
            Event(type="done", job_id=job.job_id, reply_to=delivery.job.reply_to, caption=brief.caption, take=take,
                  take_count=len(takes), brief=brief.to_dict() if delivery.job.request.mode == "text" else None)
            for take in takes
        ))
        self._abandon(job, done=True)
        self.stats.jobs_done += 1
        self.stats.takes_done += len(takes)
        self.stats.audio_seconds += sum(t.duration for t in takes)
        platform = delivery.job.reply_to.platform
        metrics.count_request(platform, delivery.job.kind, "done")
        metrics.observe_time_to_result(platform, time.time() - delivery.job.created_at)
        metrics.record_generation(time.time() - job.started_at, sum(t.duration for t in takes))
        request = delivery.job.request
        log.info("job %s platform=%s duration=%.1fs takes=%d slots=%d/%d waited=%.2fs%s",
                 job.job_id, delivery.job.reply_to.platform, request.duration, len(takes), self.engine.running,
                 self.engine.slots, time.time() - delivery.job.created_at, "" if first else " (already done elsewhere)")

    # ---- failing ------------------------------------------------------------------------
    def _abandon(self, job: _Job, *, done: bool = False) -> None:
        """Stop holding ``job``: later results for it are ignored (unless it is ``done``)."""
        job.failed = not done
        with self._lock:
            self._jobs.pop(job.job_id, None)

    def _retry(self, delivery: Delivery, reason: str) -> None:
        self.stats.jobs_failed += 1
        if self.queue.retry_or_fail(delivery, reason):
            log.error("job %s: dead-lettered after %d attempts: %s", delivery.job.job_id, self.queue.max_deliveries, reason)
            metrics.count_dead_letter()
            metrics.count_request(delivery.job.reply_to.platform, delivery.job.kind, "failed")
        else:
            metrics.count_retry()

    def _fail_now(self, delivery: Delivery, message: str) -> None:
        log.info("job %s: refused: %s", delivery.job.job_id, message)
        self.stats.jobs_failed += 1
        metrics.count_request(delivery.job.reply_to.platform, delivery.job.kind, "failed")
        self.queue.complete(delivery, Event(type="failed", job_id=delivery.job.job_id,
                                            reply_to=delivery.job.reply_to, error=message))
