"""Melody clips: an upload becomes a short mono 32 kHz FLAC, or a clear refusal."""

from __future__ import annotations

import io

import numpy as np
import pytest
import soundfile as sf

from pipeline.melody import CLIP_RATE, BadMelody, prepare_clip, read_clip


def audio_file(seconds: float, rate: int = 44_100, fmt: str = "WAV", channels: int = 2) -> bytes:
    t = np.arange(int(seconds * rate)) / rate
    tone = 0.3 * np.sin(2 * np.pi * 440 * t)
    data = np.stack([tone] * channels, axis=1) if channels > 1 else tone
    out = io.BytesIO()
    sf.write(out, data, rate, format=fmt)
    return out.getvalue()


@pytest.mark.parametrize("fmt", ["WAV", "FLAC", "OGG", "MP3"])
def test_a_long_stereo_upload_becomes_its_first_30_seconds_mono_at_32_khz(fmt: str) -> None:
    clip = prepare_clip(audio_file(40.0, fmt=fmt))
    samples, rate = read_clip(clip)
    assert rate == CLIP_RATE and samples.ndim == 1
    assert abs(len(samples) / rate - 30.0) < 0.1
    spectrum = np.abs(np.fft.rfft(samples[: rate]))
    assert abs(np.argmax(spectrum) - 440) <= 2  # still the same tune


@pytest.mark.parametrize("data, reason", [
    (b"", "is empty"),
    (b"this is a text file, not a song" * 10, "isn't audio"),
    (b"\0" * (10 * 1024 * 1024 + 1), "at most 10 MB"),
])
def test_what_is_not_a_usable_clip_is_refused_with_the_reason(data: bytes, reason: str) -> None:
    with pytest.raises(BadMelody, match=reason):
        prepare_clip(data, filename="hum.wav")


def test_silence_and_a_blip_are_refused() -> None:
    silent = io.BytesIO()
    sf.write(silent, np.zeros(32_000 * 3), 32_000, format="WAV")
    with pytest.raises(BadMelody, match="silent"):
        prepare_clip(silent.getvalue())
    with pytest.raises(BadMelody, match="shorter than 1 s"):
        prepare_clip(audio_file(0.3))
