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

from pipeline.audio_io import UnreadableAudio, as_frames, check_rate, read_audio
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
    bitrate_kbps: int  # of an MP3 encoded here; 0 for lossless files and files kept as they were
    note: str = ""  # why the format differs from the one asked for ("" when it doesn't)

    def changed_from(self, audio_format: str) -> bool:
        """Whether fitting changed a file that was in ``audio_format`` (format or bitrate)."""
        return self.format != audio_format or self.bitrate_kbps > 0


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


def fit_audio(data: bytes, audio_format: str, max_bytes: int) -> AudioFile:
    """A stored file (in ``audio_format``) within ``max_bytes``: the same object when it fits;
    else a WAV becomes a FLAC of the very same samples; what still doesn't fit becomes an MP3
    at the highest bitrate that fits (an MP3, one at a lower bitrate). Raises
    :class:`TooLargeForLimit` when even the lowest MP3 bitrate is over, and
    :class:`~pipeline.audio_io.UnreadableAudio` when ``data`` isn't audio."""
    if audio_format not in FORMATS:
        raise ValueError(f"format must be one of {', '.join(FORMATS)}, got {audio_format!r}")
    if len(data) <= max_bytes:  # passed on as it is, unread (duration_s 0: not measured)
        return AudioFile(data, audio_format, 0.0, 0)
    if audio_format == "mp3":
        fitted = fit_mp3(data, max_bytes=max_bytes)
        return AudioFile(fitted.data, "mp3", fitted.duration_s, fitted.bitrate_kbps)
    if audio_format == "wav":
        flac = _wav_to_flac(data)
        if len(flac) <= max_bytes:
            return AudioFile(flac, "flac", sf.info(io.BytesIO(flac)).duration, 0)
    samples, rate = read_audio(data)
    mp3 = encode_mp3(samples, rate, max_bytes=max_bytes)
    return AudioFile(mp3.data, "mp3", mp3.duration_s, mp3.bitrate_kbps)


def fallback_note(wanted: str, got: str, max_bytes: int, *, loop: bool = False) -> str:
    note = (f"The {_NAMES[wanted]} file would be over the {max_bytes / 1024 / 1024:.0f} MB upload limit, "
            f"so this is {'an' if got == 'mp3' else 'a'} {_NAMES[got]}.")
    if loop and got == "mp3":
        note += " MP3 adds a short gap when it repeats: ask for a shorter loop to get FLAC."
    return note


def _wav_to_flac(data: bytes) -> bytes:
    """The WAV's samples as FLAC, bit for bit for 16- and 24-bit PCM (FLAC carries up to 24
    bits: a 32-bit or float WAV becomes 24-bit)."""
    try:
        info = sf.info(io.BytesIO(data))
    except (sf.SoundFileError, RuntimeError) as error:
        raise UnreadableAudio(f"Couldn't read the take as WAV: {error}") from error
    exact = info.subtype in ("PCM_16", "PCM_24")
    samples, rate = sf.read(io.BytesIO(data), dtype="int32" if exact else "float32", always_2d=True)
    if not exact:
        samples = np.clip(samples, -1.0, 1.0)
    out = io.BytesIO()
    sf.write(out, samples, rate, format="FLAC", subtype="PCM_16" if info.subtype == "PCM_16" else "PCM_24")
    return out.getvalue()


def _lossless(samples: np.ndarray, rate: int, audio_format: str) -> bytes:
    out = io.BytesIO()
    frames = np.clip(as_frames(samples), -1.0, 1.0)
    sf.write(out, frames, rate, format=audio_format.upper(), subtype="PCM_16")
    return out.getvalue()


__all__ = ["AudioFile", "CONTENT_TYPES", "FORMATS", "TooLargeForLimit", "encode_audio", "fallback_note", "fit_audio"]
