"""MP3 encoding with lameenc (LAME as a wheel), sized to fit a chat upload limit.

Constant bitrate makes the size predictable: ``frames x frame bytes``. We predict the
size of each candidate bitrate from the duration, encode the highest one predicted to
fit, and check the real size (moving one bitrate down if the prediction was short).
"""

from __future__ import annotations

import io
import math
from dataclasses import dataclass

import lameenc
import numpy as np
import soundfile as sf

from pipeline.audio_io import as_frames, check_rate, read_audio

DEFAULT_BITRATES: tuple[int, ...] = (320, 256, 192, 160, 128, 96, 64)
LAME_QUALITY = 2  # 0 best/slowest .. 9 worst/fastest; 2 is LAME's "near best" preset

MPEG1_RATES = (32000, 44100, 48000)
MPEG2_RATES = (16000, 22050, 24000)
MPEG25_RATES = (8000, 11025, 12000)
MPEG1_BITRATES = (32, 40, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320)
MPEG2_BITRATES = (8, 16, 24, 32, 40, 48, 56, 64, 80, 96, 112, 128, 144, 160)
ENCODER_DELAY = 576 + 529  # LAME's leading delay plus decoder delay, in samples


@dataclass(frozen=True)
class EncodedAudio:
    """An MP3 ready to upload. ``duration_s`` is the audio's length before encoding."""

    data: bytes
    bitrate_kbps: int
    duration_s: float
    sample_rate: int


class TooLargeForLimit(ValueError):
    """Even the lowest allowed bitrate makes a file larger than the upload limit."""

    def __init__(self, max_bytes: int, smallest_bytes: int, bitrate_kbps: int) -> None:
        self.max_bytes = max_bytes
        self.smallest_bytes = smallest_bytes
        self.bitrate_kbps = bitrate_kbps
        super().__init__(
            f"The track doesn't fit the {_size(max_bytes)} upload limit: even at "
            f"{bitrate_kbps} kbps the MP3 is {_size(smallest_bytes)}. "
            "Ask for a shorter duration, or raise the channel's upload limit."
        )

    def __reduce__(self) -> tuple[type, tuple[int, int, int]]:
        return (type(self), (self.max_bytes, self.smallest_bytes, self.bitrate_kbps))


def encode_mp3(
    samples: np.ndarray,
    sample_rate: int,
    *,
    max_bytes: int = 10 * 1024 * 1024,
    bitrates: tuple[int, ...] = DEFAULT_BITRATES,
) -> EncodedAudio:
    """Encode float samples (mono ``(n,)`` or ``(n, 1|2)``) as CBR MP3 at the highest bitrate that fits.

    Rates MP3 can't carry are resampled by LAME to the next valid one. Raises
    :class:`TooLargeForLimit` when the lowest bitrate is still over ``max_bytes``.
    """
    rate = check_rate(sample_rate)
    frames = as_frames(samples)
    if frames.shape[0] == 0:
        raise ValueError("There is no audio to encode.")
    if frames.shape[1] > 2:
        raise ValueError(f"MP3 carries mono or stereo, got {frames.shape[1]} channels.")
    if max_bytes <= 0:
        raise ValueError(f"The size limit must be positive, got {max_bytes}.")
    out_rate = mp3_sample_rate(rate)
    candidates = _valid_bitrates(bitrates, out_rate)
    pcm = _to_int16(frames)
    out_samples = math.ceil(frames.shape[0] * out_rate / rate)
    duration_s = frames.shape[0] / rate

    smallest: tuple[int, int] | None = None  # (bytes, kbps) of the last real encode
    for kbps in candidates:
        if predict_mp3_bytes(out_samples, out_rate, kbps) > max_bytes and kbps != candidates[-1]:
            continue
        data = _lame(pcm, rate, out_rate, frames.shape[1], kbps)
        if len(data) <= max_bytes:
            return EncodedAudio(data, kbps, duration_s, out_rate)
        smallest = (len(data), kbps)
    assert smallest is not None  # the lowest candidate is always encoded
    raise TooLargeForLimit(max_bytes, smallest[0], smallest[1])


def fit_mp3(mp3: bytes, max_bytes: int) -> EncodedAudio:
    """Return ``mp3`` unchanged if it fits ``max_bytes``, else re-encode it at a lower bitrate.

    Only bitrates below the file's own are tried (a higher one can't be smaller).
    Raises :class:`TooLargeForLimit` when even the lowest doesn't fit, and
    :class:`~pipeline.audio_io.UnreadableAudio` when the bytes aren't audio.
    """
    header = parse_mp3_header(mp3)
    if header is not None and len(mp3) <= max_bytes:
        info = sf.info(io.BytesIO(mp3))
        return EncodedAudio(bytes(mp3), header[0], float(info.frames / info.samplerate), header[1])
    samples, rate = read_audio(mp3)
    lower = tuple(b for b in DEFAULT_BITRATES if header is None or b < header[0])
    if not lower:
        raise TooLargeForLimit(max_bytes, len(mp3), header[0] if header else 0)
    return encode_mp3(samples, rate, max_bytes=max_bytes, bitrates=lower)


def mp3_sample_rate(rate: int) -> int:
    """The rate the MP3 will have: ``rate`` itself if MP3 supports it, else the next one up."""
    valid = sorted(MPEG1_RATES + MPEG2_RATES + MPEG25_RATES)
    if rate in valid:
        return rate
    return next((r for r in valid if r >= rate), valid[-1])


def predict_mp3_bytes(samples: int, rate: int, kbps: int) -> int:
    """Size of a CBR LAME encode of ``samples`` at ``rate`` (an MP3 rate), without a tag."""
    per_frame = 1152 if rate in MPEG1_RATES else 576
    frames = math.ceil((samples + ENCODER_DELAY) / per_frame)
    return math.ceil(frames * per_frame / 8 * kbps * 1000 / rate)


def parse_mp3_header(data: bytes) -> tuple[int, int] | None:
    """``(bitrate_kbps, sample_rate)`` of the first MPEG audio layer III frame, or ``None``."""
    start = 0
    if data[:3] == b"ID3" and len(data) >= 10:  # skip an ID3v2 tag (syncsafe size)
        size = (data[6] << 21) | (data[7] << 14) | (data[8] << 7) | data[9]
        start = 10 + size + (10 if data[5] & 0x10 else 0)
    for i in range(start, min(len(data) - 3, start + 64 * 1024)):
        if data[i] != 0xFF or (data[i + 1] & 0xE0) != 0xE0:
            continue
        header = _decode_header(data[i : i + 4])
        if header is None:
            continue
        kbps, rate, length = header
        follow = data[i + length : i + length + 4]
        if len(follow) < 4 or _decode_header(follow) is not None:  # next frame lines up too
            return kbps, rate
    return None


def _decode_header(raw: bytes) -> tuple[int, int, int] | None:
    version = (raw[1] >> 3) & 0b11  # 0: MPEG 2.5, 2: MPEG 2, 3: MPEG 1
    layer = (raw[1] >> 1) & 0b11  # 1: layer III
    bitrate_index = raw[2] >> 4
    rate_index = (raw[2] >> 2) & 0b11
    if version == 1 or layer != 1 or bitrate_index in (0, 15) or rate_index == 3:
        return None
    table = MPEG1_RATES if version == 3 else MPEG2_RATES if version == 2 else MPEG25_RATES
    rate = (44100, 48000, 32000)[rate_index] if version == 3 else table[(1, 2, 0)[rate_index]]
    kbps = (MPEG1_BITRATES if version == 3 else MPEG2_BITRATES)[bitrate_index - 1]
    padding = (raw[2] >> 1) & 1
    length = (144 if version == 3 else 72) * kbps * 1000 // rate + padding
    return kbps, rate, length


def _valid_bitrates(bitrates: tuple[int, ...], out_rate: int) -> list[int]:
    allowed = MPEG1_BITRATES if out_rate in MPEG1_RATES else MPEG2_BITRATES
    if out_rate in MPEG25_RATES:
        allowed = tuple(b for b in allowed if b <= 64)
    valid = sorted({b for b in bitrates if b in allowed}, reverse=True)
    if not valid:
        raise ValueError(
            f"None of the bitrates {list(bitrates)} kbps exists for MP3 at {out_rate} Hz "
            f"(allowed: {list(allowed)})."
        )
    return valid


def _to_int16(frames: np.ndarray) -> np.ndarray:
    """Scale to int16 with rounding, clipping anything past full scale instead of wrapping."""
    return np.clip(np.rint(frames * 32767.0), -32768, 32767).astype(np.int16)


def _lame(pcm: np.ndarray, in_rate: int, out_rate: int, channels: int, kbps: int) -> bytes:
    encoder = lameenc.Encoder()
    encoder.set_bit_rate(kbps)
    encoder.set_in_sample_rate(in_rate)
    encoder.set_out_sample_rate(out_rate)
    encoder.set_channels(channels)
    encoder.set_quality(LAME_QUALITY)
    data = encoder.encode(np.ascontiguousarray(pcm).tobytes())
    data += encoder.flush()
    return bytes(data)


def _size(n: int) -> str:
    if n >= 1024 * 1024:
        return f"{n / (1024 * 1024):.1f} MiB ({n:,} bytes)"
    if n >= 1024:
        return f"{n / 1024:.1f} KiB ({n:,} bytes)"
    return f"{n:,} bytes"
