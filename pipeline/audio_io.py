"""Reading audio (WAV/FLAC/OGG/MP3) into float32 arrays, in-process through libsndfile.

Also the small shape checks shared by finishing and encoding: samples are float32 mono
``(n,)`` or multichannel ``(n, channels)``.
"""

from __future__ import annotations

import io
import os

import numpy as np
import soundfile as sf


MAX_CHANNELS = 8


class UnreadableAudio(ValueError):
    """Bytes or a file that libsndfile can't decode (not audio, truncated, unknown format)."""


def read_audio(source: str | os.PathLike[str] | bytes) -> tuple[np.ndarray, int]:
    """Decode WAV/FLAC/OGG/MP3 from a path or from bytes into ``(float32 samples, rate)``.

    Mono comes back as ``(n,)``, anything else as ``(n, channels)``.
    Raises :class:`UnreadableAudio` with a readable reason when the input isn't audio.
    """
    if isinstance(source, (bytes, bytearray, memoryview)):
        if len(source) == 0:
            raise UnreadableAudio("The audio file is empty.")
        target: object = io.BytesIO(bytes(source))
        label = "the uploaded audio"
    else:
        path = os.fspath(source)
        if not os.path.isfile(path):
            raise UnreadableAudio(f"No audio file at {path!r}.")
        target = path
        label = os.path.basename(path)
    try:
        samples, rate = sf.read(target, dtype="float32", always_2d=False)
    except (sf.SoundFileError, RuntimeError, TypeError) as exc:
        raise UnreadableAudio(
            f"Couldn't read {label} as audio (WAV, FLAC, OGG or MP3 expected): {_reason(exc)}"
        ) from exc
    if samples.ndim == 2 and samples.shape[1] == 1:
        samples = samples[:, 0]
    return np.ascontiguousarray(samples, dtype=np.float32), int(rate)


def as_frames(samples: np.ndarray) -> np.ndarray:
    """View ``samples`` as ``(n, channels)`` float64, rejecting shapes and values we can't process."""
    array = np.asarray(samples)
    if array.ndim == 1:
        array = array[:, np.newaxis]
    elif array.ndim != 2:
        raise ValueError(f"Audio must be shaped (n,) or (n, channels), got {array.shape}.")
    if array.shape[1] == 0:
        raise ValueError("Audio has no channels.")
    if array.shape[1] > MAX_CHANNELS:
        raise ValueError(
            f"Audio shaped {array.shape} would have {array.shape[1]} channels; samples go "
            "(n,) or (n, channels): transpose a (channels, n) array such as MusicGen's output."
        )
    if not np.issubdtype(array.dtype, np.floating):
        raise ValueError(f"Audio samples must be floating point, got {array.dtype}.")
    frames = array.astype(np.float64)
    if not np.all(np.isfinite(frames)):
        raise ValueError("Audio contains NaN or infinite samples; the generator output is broken.")
    return frames


def check_rate(sample_rate: int) -> int:
    rate = int(sample_rate)
    if rate <= 0 or rate != sample_rate:
        raise ValueError(f"Sample rate must be a positive whole number of Hz, got {sample_rate!r}.")
    return rate


def _reason(exc: BaseException) -> str:
    text = str(exc)
    # libsndfile says "Error opening <_io.BytesIO object at 0x...>: Format not recognised."
    return text.rsplit(": ", 1)[-1] if ": " in text else text
