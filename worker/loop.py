"""The worker loop: claim a batch, brief each job, generate all takes in one call, finish
and encode the audio, publish the results.

A request with N takes is N rows of the batch. When the batched call fails, each job is run
alone so that one poison job can't sink the others; a job that fails alone is retried, then
dead-lettered with a ``failed`` event the user sees.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from dataclasses import dataclass, field
from typing import Protocol

from pipeline.analysis import AnalysisError
from pipeline.audio import Mastering, encode_mp3, master
from pipeline.brief import brief_from_tags
from pipeline.models import Brief, TuneRequest
from worker.musicgen import Generated, MusicGen, Row
from worker.queue import Delivery, Event, JobQueue, Take

log = logging.getLogger("textunes.worker")

PROGRESS_STEP = 0.1  # publish progress at least every 10 % of decoding steps


class Analyser(Protocol):
    def analyse(self, request: TuneRequest) -> Brief: ...


class UserError(ValueError):
    """A request that can never succeed (bad text): fails at once, no retry."""


@dataclass
class WorkerOptions:
    batch_size: int = 8
    guidance_scale: float = 3.0
    top_k: int = 250
    max_upload_bytes: int = 10 * 1024 * 1024
    block_ms: int = 2000
    batch_window_ms: int = 50  # after the first job arrives, wait this long for more to batch
    mastering: Mastering = field(default_factory=Mastering)
    consumer: str = field(default_factory=lambda: f"worker-{socket.gethostname()}-{os.getpid()}")


@dataclass
class BatchReport:
    """What one batch did, with wall-clock marks (time.time()) for the benchmark."""

    jobs: int
    rows: int
    model_seconds: float
    failed: list[str]
    claimed_at: float = 0.0
    generate_ended_at: float = 0.0
    finishing_s: float = 0.0  # loudness, fades and MP3 encoding, all takes
    published_at: float = 0.0


class Worker:
    def __init__(self, queue: JobQueue, engine: MusicGen, options: WorkerOptions = WorkerOptions(),
                 analyser: Analyser | None = None) -> None:
        self.queue = queue
        self.engine = engine
        self.options = options
        self._analyser = analyser
        self.batches: list[BatchReport] = []
        self._timing = BatchReport(0, 0, 0.0, [])

    @property
    def analyser(self) -> Analyser:
        """The analyser given, or the embedded one, loaded on the first text job."""
        if self._analyser is None:
            from pipeline.analysis import Analyser as Embedded, AnalysisConfig

            self._analyser = Embedded.load(AnalysisConfig.from_env())
        return self._analyser

    def run(self, stop: threading.Event) -> None:
        """Claim and run batches until ``stop`` is set; the batch in hand is always finished."""
        log.info("worker %s waiting for jobs (batch size %d)", self.options.consumer, self.options.batch_size)
        while not stop.is_set():
            try:
                deliveries = self._claim_batch()
            except Exception:
                log.exception("claiming jobs failed; retrying in 1 s")
                stop.wait(1.0)
                continue
            if not deliveries:
                continue
            try:
                self.run_batch(deliveries)
            except Exception:  # Redis went away mid-batch: the jobs stay pending and are re-claimed
                log.exception("batch of jobs %s broke off; they will be retried after the visibility timeout",
                              ", ".join(d.job.job_id for d in deliveries))
                stop.wait(1.0)
        log.info("worker %s stopped", self.options.consumer)

    def _claim_batch(self) -> list[Delivery]:
        """Block for the first job, then gather what else arrives within the batch window."""
        size = self.options.batch_size
        deliveries = self.queue.claim(self.options.consumer, size, block_ms=self.options.block_ms)
        deadline = time.monotonic() + self.options.batch_window_ms / 1000
        while deliveries and len(deliveries) < size:
            remaining_ms = int((deadline - time.monotonic()) * 1000)
            if remaining_ms <= 0:
                break
            more = self.queue.claim(self.options.consumer, size - len(deliveries), block_ms=remaining_ms)
            if not more:
                break
            deliveries += more
        return deliveries

    def run_batch(self, deliveries: list[Delivery]) -> BatchReport:
        self._timing = BatchReport(len(deliveries), 0, 0.0, [], claimed_at=time.time())
        briefed: list[tuple[Delivery, Brief]] = []
        failed: list[str] = []
        for delivery in deliveries:
            try:
                brief = self._brief(delivery.job.request)
            except UserError as error:
                self._fail_now(delivery, str(error))
                failed.append(delivery.job.job_id)
                continue
            except Exception as error:
                log.exception("job %s: analysis failed", delivery.job.job_id)
                self._retry(delivery, f"analysis failed: {type(error).__name__}")
                failed.append(delivery.job.job_id)
                continue
            self.queue.publish(Event(
                type="started", job_id=delivery.job.job_id, reply_to=delivery.job.reply_to,
                caption=brief.caption, brief=brief.to_dict() if delivery.job.request.mode == "text" else None,
            ))
            briefed.append((delivery, brief))
        generated = None
        if briefed:
            more_failed, generated = self._generate_and_publish(briefed)
            failed += more_failed
        report = self._timing
        report.failed = failed
        report.published_at = time.time()
        if generated is not None:
            report.rows, report.model_seconds = len(generated.audio), generated.model_seconds
        self.batches.append(report)
        return report

    def _generate_and_publish(self, briefed: list[tuple[Delivery, Brief]]) -> tuple[list[str], Generated | None]:
        """Returns the ids of jobs that failed, and the batch's output if the batched call worked."""
        try:
            generated = self._generate(briefed)
        except Exception:
            if len(briefed) > 1:
                log.exception("batch of %d jobs failed; running each alone to find the cause", len(briefed))
                return [job_id for pair in briefed for job_id in self._generate_and_publish([pair])[0]], None
            delivery = briefed[0][0]
            log.exception("job %s: generation failed", delivery.job.job_id)
            self._retry(delivery, "generation failed")
            return [delivery.job.job_id], None
        return self._publish_results(briefed, generated), generated

    # ---- steps ------------------------------------------------------------------------
    def _brief(self, request: TuneRequest) -> Brief:
        if request.mode != "text":
            return brief_from_tags(request)
        try:
            return self.analyser.analyse(request)
        except AnalysisError as error:
            raise UserError(str(error)) from error

    def _generate(self, briefed: list[tuple[Delivery, Brief]]) -> Generated:
        rows = [
            Row(caption=brief.caption, seed=seed, duration_s=delivery.job.request.duration)
            for delivery, brief in briefed
            for seed in delivery.job.seeds
        ]
        next_report = [PROGRESS_STEP]

        def progress(fraction: float) -> None:
            if fraction + 1e-9 < next_report[0]:
                return
            next_report[0] = (int(fraction / PROGRESS_STEP) + 1) * PROGRESS_STEP
            for delivery, brief in briefed:
                self.queue.publish(Event(type="progress", job_id=delivery.job.job_id,
                                         reply_to=delivery.job.reply_to, caption=brief.caption,
                                         progress=round(min(fraction, 1.0), 3)))

        generated = self.engine.generate(rows, guidance_scale=self.options.guidance_scale,
                                         top_k=self.options.top_k, progress=progress)
        self._timing.generate_ended_at = time.time()
        return generated

    def _publish_results(self, briefed: list[tuple[Delivery, Brief]], generated: Generated) -> list[str]:
        failed: list[str] = []
        batch_rows = len(generated.audio)
        first_row = 0
        for delivery, brief in briefed:
            job = delivery.job
            takes: list[Take] = []
            rows = generated.audio[first_row: first_row + len(job.seeds)]
            first_row += len(job.seeds)
            try:
                for index, (seed, samples) in enumerate(zip(job.seeds, rows), start=1):
                    started = time.perf_counter()
                    audio = master(samples, generated.sample_rate, self.options.mastering)
                    encoded = encode_mp3(audio, generated.sample_rate, max_bytes=self.options.max_upload_bytes)
                    self._timing.finishing_s += time.perf_counter() - started
                    key = self.queue.store_audio(job.job_id, index, encoded.data)
                    takes.append(Take(index=index, seed=seed, duration=round(encoded.duration_s, 3), audio_key=key,
                                      bitrate_kbps=encoded.bitrate_kbps, size_bytes=len(encoded.data)))
            except Exception as error:
                log.exception("job %s: finishing audio failed", job.job_id)
                self._retry(delivery, f"audio post-processing failed: {type(error).__name__}")
                failed.append(job.job_id)
                continue
            first = self.queue.complete(delivery, *(
                Event(type="done", job_id=job.job_id, reply_to=job.reply_to, caption=brief.caption, take=take,
                      take_count=len(takes), brief=brief.to_dict() if job.request.mode == "text" else None)
                for take in takes
            ))
            log.info(
                "job %s platform=%s duration=%.1fs takes=%d batch=%d rows model=%.2fs waited=%.2fs%s",
                job.job_id, job.reply_to.platform, job.request.duration, len(takes), batch_rows,
                generated.model_seconds, time.time() - job.created_at, "" if first else " (already done elsewhere)",
            )
        return failed

    def _retry(self, delivery: Delivery, reason: str) -> None:
        if self.queue.retry_or_fail(delivery, reason):
            log.error("job %s: dead-lettered after %d attempts: %s", delivery.job.job_id, self.queue.max_deliveries, reason)

    def _fail_now(self, delivery: Delivery, message: str) -> None:
        log.info("job %s: refused: %s", delivery.job.job_id, message)
        self.queue.complete(delivery, Event(type="failed", job_id=delivery.job.job_id,
                                          reply_to=delivery.job.reply_to, error=message))
