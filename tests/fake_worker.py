"""A stand-in worker for frontend tests: claims jobs through the real queue protocol and
answers with real (sine-tone) audio in milliseconds, so bot tests need no model.

It keeps the real worker's protocol: takes in the format the request asks for (MP3, FLAC or
WAV), a waveform PNG under ``preview_key``, the take's tokens (``worker.tokens``) so it can be
extended, ``loop`` and ``note`` on the take; an extension continues a take whose tokens are
still kept (its ``length`` is the old length plus the request's duration) and fails with a
clear message when they are gone. With ``melody=True`` it also reads the melody lane and beats
as a worker that follows melodies.
"""

from __future__ import annotations

import io
import struct
import threading
import zlib

import lameenc
import numpy as np
import soundfile as sf

from pipeline.brief import brief_from_tags
from pipeline.models import Brief
from worker.queue import MELODY_LANE, Delivery, Event, JobQueue, Take
from worker.tokens import FRAME_RATE, codes_from_bytes, codes_to_bytes

SAMPLE_RATE = 32_000
TOKENS_EXPIRED = "This take can no longer be extended: its tokens are no longer kept."


def sine(seconds: float, freq: float = 440.0) -> np.ndarray:
    t = np.arange(int(seconds * SAMPLE_RATE)) / SAMPLE_RATE
    return (0.3 * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def sine_mp3(seconds: float, sample_rate: int = SAMPLE_RATE, freq: float = 440.0) -> bytes:
    pcm = (sine(seconds, freq) * 32767).astype(np.int16)
    encoder = lameenc.Encoder()
    encoder.set_bit_rate(64)
    encoder.set_in_sample_rate(sample_rate)
    encoder.set_channels(1)
    encoder.set_quality(7)
    return bytes(encoder.encode(pcm.tobytes()) + encoder.flush())


def sine_file(seconds: float, audio_format: str) -> bytes:
    """A sine tone as an MP3, FLAC or WAV file."""
    if audio_format == "mp3":
        return sine_mp3(seconds)
    out = io.BytesIO()
    sf.write(out, sine(seconds), SAMPLE_RATE, format=audio_format.upper(), subtype="PCM_16")
    return out.getvalue()


def tiny_png(width: int = 8, height: int = 4) -> bytes:
    """A valid grey PNG, written with the standard library."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    rows = b"".join(b"\0" + bytes([128] * width) for _ in range(height))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b""))


class FakeWorker:
    """Run with ``with FakeWorker(queue_url): ...``. ``fail_prompts``: prompts that fail;
    ``note``: a note every take carries; ``previews``: store a waveform PNG per take."""

    def __init__(self, redis_url: str, *, fail_prompts: tuple[str, ...] = (), hold: threading.Event | None = None,
                 melody: bool = False, note: str = "", previews: bool = True) -> None:
        self.queue = JobQueue.from_url(redis_url)
        self.melody_queue = JobQueue.from_url(redis_url, lane=MELODY_LANE) if melody else None
        self.fail_prompts = fail_prompts
        self.hold = hold  # while set, claimed jobs wait (to test restarts mid-job)
        self.note = note
        self.previews = previews
        self.stop = threading.Event()
        self.handled: list[str] = []
        self.melodies: dict[str, bytes] = {}  # job id -> the clip it followed
        self.thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> "FakeWorker":
        if self.melody_queue is not None:
            self.melody_queue.beat("fake-worker", {"lanes": [MELODY_LANE]})
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join(timeout=10)
        self.queue.close()
        if self.melody_queue is not None:
            self.melody_queue.redis.delete(self.melody_queue._worker_key("fake-worker"))
            self.melody_queue.close()

    def _run(self) -> None:
        queues = [q for q in (self.melody_queue, self.queue) if q is not None]
        while not self.stop.is_set():
            for queue in queues:
                for delivery in queue.claim("fake-worker", 8, block_ms=100 // len(queues)):
                    while self.hold is not None and self.hold.is_set() and not self.stop.is_set():
                        self.stop.wait(0.02)
                    self._answer(queue, delivery)

    def _answer(self, queue: JobQueue, delivery: Delivery) -> None:
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
        queue.publish(started)
        if job.melody_key:
            self.melodies[job.job_id] = queue.load_melody(job.melody_key) or b""
        if any(p and p in request.prompt for p in self.fail_prompts):
            queue.dead_letter(delivery, "generation failed")
            self.handled.append(job.job_id)
            return
        before = 0.0
        if job.extend is not None:
            tokens = queue.load_tokens(queue.tokens_key(job.extend.job_id, job.extend.take))
            if tokens is None:
                queue.complete(delivery, Event(type="failed", job_id=job.job_id, reply_to=job.reply_to,
                                               error=TOKENS_EXPIRED))
                self.handled.append(job.job_id)
                return
            before = codes_from_bytes(tokens).shape[1] / FRAME_RATE
        queue.publish(Event(type="progress", job_id=job.job_id, reply_to=job.reply_to,
                            caption=brief.caption, progress=0.5))
        takes = []
        length = before + request.duration
        for index, seed in enumerate(job.seeds, start=1):
            data = sine_file(min(length, 2.0), request.audio_format)
            key = queue.store_audio(job.job_id, index, data)
            tokens_key = queue.store_tokens(job.job_id, index, codes_to_bytes(
                np.zeros((4, int(round(length * FRAME_RATE))), dtype=np.int64)))
            preview_key = queue.store_preview(job.job_id, index, tiny_png()) if self.previews else ""
            takes.append(Take(index=index, seed=seed, duration=length, audio_key=key, bitrate_kbps=64,
                              size_bytes=len(data), tokens_key=tokens_key, format=request.audio_format,
                              loop=request.loop, preview_key=preview_key, note=self.note,
                              length=length if job.extend else 0.0))
        queue.complete(delivery, *(
            Event(type="done", job_id=job.job_id, reply_to=job.reply_to, caption=brief.caption, take=take,
                  take_count=len(takes), brief=brief.to_dict() if request.mode == "text" else None)
            for take in takes
        ))
        self.handled.append(job.job_id)
