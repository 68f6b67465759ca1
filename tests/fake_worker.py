"""A stand-in worker for frontend tests: claims jobs through the real queue protocol and
answers with real (sine-tone) MP3s in milliseconds, so bot tests need no model."""

from __future__ import annotations

import threading

import lameenc
import numpy as np

from pipeline.brief import brief_from_tags
from pipeline.models import Brief
from worker.queue import Event, JobQueue, Take


def sine_mp3(seconds: float, sample_rate: int = 32_000, freq: float = 440.0) -> bytes:
    t = np.arange(int(seconds * sample_rate)) / sample_rate
    pcm = (0.3 * np.sin(2 * np.pi * freq * t) * 32767).astype(np.int16)
    encoder = lameenc.Encoder()
    encoder.set_bit_rate(64)
    encoder.set_in_sample_rate(sample_rate)
    encoder.set_channels(1)
    encoder.set_quality(7)
    return bytes(encoder.encode(pcm.tobytes()) + encoder.flush())


class FakeWorker:
    """Run with ``with FakeWorker(queue_url): ...``. ``fail_prompts``: prompts that fail."""

    def __init__(self, redis_url: str, *, fail_prompts: tuple[str, ...] = (), hold: threading.Event | None = None) -> None:
        self.queue = JobQueue.from_url(redis_url)
        self.fail_prompts = fail_prompts
        self.hold = hold  # while set, claimed jobs wait (to test restarts mid-job)
        self.stop = threading.Event()
        self.handled: list[str] = []
        self.thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> "FakeWorker":
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join(timeout=10)
        self.queue.close()

    def _run(self) -> None:
        while not self.stop.is_set():
            for delivery in self.queue.claim("fake-worker", 8, block_ms=100):
                while self.hold is not None and self.hold.is_set() and not self.stop.is_set():
                    self.stop.wait(0.02)
                self._answer(delivery)

    def _answer(self, delivery) -> None:  # type: ignore[no-untyped-def]
        job = delivery.job
        request = job.request
        if request.mode == "text":
            brief = Brief(moods=["Melancholic"], genres=["Cinematic"], instruments=["Piano"], bpm=70,
                          valence=-0.6, arousal=-0.3, mode="minor",
                          caption="melancholic cinematic with piano, in a minor key, 70 bpm",
                          explanation="melancholic (valence −0.6, arousal −0.3) → slow piano, 70 bpm, minor")
        else:
            brief = brief_from_tags(request)
        started = Event(type="started", job_id=job.job_id, reply_to=job.reply_to, caption=brief.caption,
                        brief=brief.to_dict() if request.mode == "text" else None)
        self.queue.publish(started)
        if any(p and p in request.prompt for p in self.fail_prompts):
            self.queue.dead_letter(delivery, "generation failed")
            self.handled.append(job.job_id)
            return
        self.queue.publish(Event(type="progress", job_id=job.job_id, reply_to=job.reply_to,
                                 caption=brief.caption, progress=0.5))
        takes = []
        for index, seed in enumerate(job.seeds, start=1):
            data = sine_mp3(min(request.duration, 2.0))
            key = self.queue.store_audio(job.job_id, index, data)
            takes.append(Take(index=index, seed=seed, duration=request.duration, audio_key=key,
                              bitrate_kbps=64, size_bytes=len(data)))
        self.queue.complete(delivery, *(
            Event(type="done", job_id=job.job_id, reply_to=job.reply_to, caption=brief.caption, take=take,
                  take_count=len(takes), brief=brief.to_dict() if request.mode == "text" else None)
            for take in takes
        ))
        self.handled.append(job.job_id)
