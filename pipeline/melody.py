"""Melody clips: what a user uploads to have the music follow its tune.

A frontend turns the upload into a clip with :func:`prepare_clip` before it queues the job
(so a bad file is refused at once, with the reason), and the worker reads it back with
:func:`read_clip`. A clip is the first ``MAX_CLIP_S`` seconds, mono, at the model's 32 kHz,
stored as FLAC: at most a few hundred KB in Redis.
"""

from __future__ import annotations

import io

import numpy as np
import soundfile as sf

from pipeline.audio_io import UnreadableAudio, read_audio

MAX_UPLOAD_BYTES = 10 * 1024 * 1024
MAX_CLIP_S = 30.0
MIN_CLIP_S = 1.0
CLIP_RATE = 32_000


class BadMelody(ValueError):
    """An upload that can't be a melody clip; ``str(error)`` is the reply for the user."""


def check_size(size: int, *, filename: str = "the file") -> None:
    """Refuse an upload by its size: a frontend calls it with the size the chat service
    declares, before downloading the file."""
    if size == 0:
        raise BadMelody(f"{filename} is empty. Attach a WAV, FLAC, OGG or MP3 of the tune (up to 10 MB).")
    if size > MAX_UPLOAD_BYTES:
        raise BadMelody(f"{filename} is {size / 1024 / 1024:.1f} MB; a melody clip can be at most 10 MB. "
                        "Send a shorter clip (the first 30 s are used).")


def prepare_clip(data: bytes, *, filename: str = "the file") -> bytes:
    """Check and shorten an uploaded WAV/FLAC/OGG/MP3: mono 32 kHz FLAC of its first 30 s."""
    check_size(len(data), filename=filename)
    try:
        samples, rate = read_audio(data)
    except UnreadableAudio:
        raise BadMelody(f"{filename} isn't audio I can read. Attach a WAV, FLAC, OGG or MP3 of the tune.") from None
    mono = samples if samples.ndim == 1 else samples.mean(axis=1)
    mono = mono[: int(MAX_CLIP_S * rate)]
    if len(mono) < MIN_CLIP_S * rate:
        raise BadMelody(f"{filename} is shorter than {MIN_CLIP_S:g} s; hum or play at least a few seconds of the tune.")
    if not np.isfinite(mono).all() or np.abs(mono).max() < 1e-4:
        raise BadMelody(f"{filename} is silent; there is no tune in it to follow.")
    clip = resample(mono.astype(np.float32), rate, CLIP_RATE)
    out = io.BytesIO()
    sf.write(out, np.clip(clip, -1.0, 1.0), CLIP_RATE, format="FLAC", subtype="PCM_16")
    return out.getvalue()


def read_clip(data: bytes) -> tuple[np.ndarray, int]:
    """A stored clip back as float32 mono samples and its rate."""
    samples, rate = read_audio(data)
    return (samples if samples.ndim == 1 else samples.mean(axis=1)), rate


def resample(samples: np.ndarray, rate: int, target: int) -> np.ndarray:
    """Band-limited resampling (polyphase, scipy) of mono float samples."""
    if rate == target:
        return samples
    from math import gcd

    from scipy.signal import resample_poly

    divisor = gcd(rate, target)
    return resample_poly(samples, target // divisor, rate // divisor).astype(np.float32)
