"""Audio files in the format the user asked for (MP3, FLAC or WAV), sized to an upload limit.

Editors want lossless audio and loops need it (an MP3's encoder delay and padding break a
seamless loop), so FLAC and WAV are offered beside MP3. When a file would be over the
limit, the next smaller format is used - WAV, then FLAC, then MP3 at the highest bitrate
that fits - and ``note`` says so, for the message beside the file.
"""

from __future__ import annotations

import io
from dataclasses import dataclass

import numpy as np
import soundfile as sf

from pipeline.audio_io import as_frames, check_rate, read_audio
from pipeline.audio_mp3 import TooLargeForLimit, encode_mp3, fit_mp3

FORMATS = ("mp3", "flac", "wav")
CONTENT_TYPES = {"mp3": "audio/mpeg", "flac": "audio/flac", "wav": "audio/wav"}
_SMALLER = {"wav": "flac", "flac": "mp3"}
_NAMES = {"mp3": "MP3", "flac": "FLAC", "wav": "WAV"}


@dataclass(frozen=True)
class AudioFile:
    data: bytes
    format: str  # what ``data`` is: mp3, flac or wav
    duration_s: float
    bitrate_kbps: int  # MP3's bitrate; 0 for lossless files
    note: str = ""  # why the format differs from the one asked for ("" when it doesn't)


def encode_audio(samples: np.ndarray, sample_rate: int, audio_format: str = "mp3", *,
                 max_bytes: int = 10 * 1024 * 1024, loop: bool = False) -> AudioFile:
    """Float samples as ``audio_format``, falling back to smaller formats to fit ``max_bytes``.

    Raises :class:`TooLargeForLimit` when not even the lowest MP3 bitrate fits."""
    if audio_format not in FORMATS:
        raise ValueError(f"format must be one of {', '.join(FORMATS)}, got {audio_format!r}")
    rate = check_rate(sample_rate)
    wanted = current = audio_format
    while True:
        if current == "mp3":
            mp3 = encode_mp3(samples, rate, max_bytes=max_bytes)
            result = AudioFile(mp3.data, "mp3", mp3.duration_s, mp3.bitrate_kbps)
            break
        data = _lossless(samples, rate, current)
        if len(data) <= max_bytes:
            result = AudioFile(data, current, as_frames(samples).shape[0] / rate, 0)
            break
        current = _SMALLER[current]
    if result.format == wanted:
        return result
    return AudioFile(result.data, result.format, result.duration_s, result.bitrate_kbps,
                     note=fallback_note(wanted, result.format, max_bytes, loop=loop))


def fit_audio(data: bytes, audio_format: str, max_bytes: int, *, loop: bool = False) -> AudioFile:
    """A stored file made to fit a (smaller) channel limit: returned as it is when it fits,
    else encoded again in the next smaller format that fits (an MP3 at a lower bitrate)."""
    if audio_format not in FORMATS:
        raise ValueError(f"format must be one of {', '.join(FORMATS)}, got {audio_format!r}")
    if audio_format == "mp3":
        fitted = fit_mp3(data, max_bytes=max_bytes)
        return AudioFile(fitted.data, "mp3", fitted.duration_s, fitted.bitrate_kbps)
    if len(data) <= max_bytes:
        info = sf.info(io.BytesIO(data))
        return AudioFile(data, audio_format, info.frames / info.samplerate, 0)
    samples, rate = read_audio(data)
    smaller = encode_audio(samples, rate, _SMALLER[audio_format], max_bytes=max_bytes, loop=loop)
    return AudioFile(smaller.data, smaller.format, smaller.duration_s, smaller.bitrate_kbps,
                     note=fallback_note(audio_format, smaller.format, max_bytes, loop=loop))


def fallback_note(wanted: str, got: str, max_bytes: int, *, loop: bool = False) -> str:
    note = (f"The {_NAMES[wanted]} file would be over the {max_bytes / 1024 / 1024:.0f} MB upload limit, "
            f"so this is {'an' if got == 'mp3' else 'a'} {_NAMES[got]}.")
    if loop and got == "mp3":
        note += " MP3 adds a short gap when it repeats: ask for a shorter loop to get FLAC."
    return note


def _lossless(samples: np.ndarray, rate: int, audio_format: str) -> bytes:
    out = io.BytesIO()
    frames = np.clip(as_frames(samples), -1.0, 1.0)
    sf.write(out, frames, rate, format=audio_format.upper(), subtype="PCM_16")
    return out.getvalue()


__all__ = ["AudioFile", "CONTENT_TYPES", "FORMATS", "TooLargeForLimit", "encode_audio", "fit_audio", "fallback_note"]
