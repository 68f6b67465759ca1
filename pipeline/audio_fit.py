"""A finished take made to fit a chat's upload limit, lossless first.

A take is stored in the format the user asked for (MP3, FLAC or WAV). When its file is over
a channel's limit: a WAV becomes a FLAC (the same samples, about half the size); what still
doesn't fit becomes an MP3 at the highest bitrate that fits; an MP3 is re-encoded at a lower
bitrate. Nothing else changes: same length, same samples where the format is lossless.
"""

from __future__ import annotations

import io
from dataclasses import dataclass

import numpy as np
import soundfile as sf

from pipeline.audio_io import UnreadableAudio, read_audio
from pipeline.audio_mp3 import TooLargeForLimit, encode_mp3, fit_mp3

__all__ = ["FittedAudio", "TooLargeForLimit", "fit_upload"]


@dataclass(frozen=True)
class FittedAudio:
    """The file to upload: ``format`` is what it is now (``mp3``, ``flac`` or ``wav``)."""

    data: bytes
    format: str
    bitrate_kbps: int = 0  # of an MP3 re-encoded here; 0 when the file was kept or is lossless

    def changed_from(self, audio_format: str) -> bool:
        return self.format != audio_format or self.bitrate_kbps > 0


def fit_upload(data: bytes, audio_format: str, max_bytes: int) -> FittedAudio:
    """``data`` (a file in ``audio_format``) within ``max_bytes``: unchanged when it fits, else
    FLAC (from a WAV), else MP3. Raises :class:`TooLargeForLimit` when even the lowest MP3
    bitrate is over, and :class:`UnreadableAudio` when ``data`` isn't audio."""
    if len(data) <= max_bytes:
        return FittedAudio(data, audio_format)
    if audio_format == "mp3":
        encoded = fit_mp3(data, max_bytes)
        return FittedAudio(encoded.data, "mp3", encoded.bitrate_kbps)
    if audio_format == "wav":
        flac = _wav_to_flac(data)
        if len(flac) <= max_bytes:
            return FittedAudio(flac, "flac")
    samples, rate = read_audio(data)
    encoded = encode_mp3(samples, rate, max_bytes=max_bytes)
    return FittedAudio(encoded.data, "mp3", encoded.bitrate_kbps)


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
