"""A take made to fit a chat's upload limit: WAV -> FLAC (the same samples) -> MP3, and MP3 at a
lower bitrate; the file a user gets is still the same length of the same music."""

from __future__ import annotations

import io

import numpy as np
import pytest
import soundfile as sf

from pipeline.audio import encode_mp3
from pipeline.audio_files import TooLargeForLimit, fit_audio

RATE = 32_000


def music(seconds: float = 4.0, channels: int = 2) -> np.ndarray:
    t = np.arange(int(seconds * RATE)) / RATE
    rng = np.random.default_rng(1)
    tone = 0.3 * np.sin(2 * np.pi * 220 * t) + 0.05 * rng.standard_normal(t.size)  # noise: FLAC can't shrink it much
    return np.stack([tone, 0.8 * tone], axis=1)[:, :channels].astype(np.float32)


def file_of(samples: np.ndarray, fmt: str, subtype: str) -> bytes:
    out = io.BytesIO()
    sf.write(out, samples, RATE, format=fmt, subtype=subtype)
    return out.getvalue()


def decoded(data: bytes, dtype: str = "float32") -> np.ndarray:
    samples, rate = sf.read(io.BytesIO(data), dtype=dtype, always_2d=True)
    assert rate == RATE
    return samples


def test_a_file_that_fits_is_sent_unchanged() -> None:
    wav = file_of(music(), "WAV", "PCM_16")
    fitted = fit_audio(wav, "wav", len(wav))
    assert fitted.data is wav and fitted.format == "wav" and not fitted.changed_from("wav")


@pytest.mark.parametrize("subtype", ["PCM_16", "PCM_24"])
def test_a_wav_over_the_limit_becomes_a_flac_of_the_very_same_samples(subtype: str) -> None:
    wav = file_of(music(), "WAV", subtype)
    fitted = fit_audio(wav, "wav", len(wav) - 1)
    assert fitted.format == "flac" and fitted.changed_from("wav") and len(fitted.data) < len(wav)
    assert sf.info(io.BytesIO(fitted.data)).subtype == subtype
    assert np.array_equal(decoded(fitted.data, "int32"), decoded(wav, "int32"))  # lossless, bit for bit


@pytest.mark.parametrize("fmt, subtype", [("WAV", "PCM_16"), ("FLAC", "PCM_16")])
def test_what_does_not_fit_even_lossless_becomes_an_mp3_within_the_limit(fmt: str, subtype: str) -> None:
    source = file_of(music(), fmt, subtype)
    limit = 100_000  # a FLAC of this noisy tone is ~400 kB; an MP3 at 192 kbps ~100 kB
    fitted = fit_audio(source, fmt.lower(), limit)
    assert fitted.format == "mp3" and fitted.bitrate_kbps > 0 and len(fitted.data) <= limit
    assert abs(len(decoded(fitted.data)) / RATE - 4.0) < 0.1


def test_an_mp3_over_the_limit_is_reencoded_at_a_lower_bitrate() -> None:
    mp3 = encode_mp3(music(), RATE, bitrates=(320,)).data
    fitted = fit_audio(mp3, "mp3", len(mp3) // 2)
    assert fitted.format == "mp3" and fitted.bitrate_kbps < 320 and len(fitted.data) <= len(mp3) // 2


def test_a_limit_not_even_the_smallest_mp3_fits_is_refused() -> None:
    with pytest.raises(TooLargeForLimit):
        fit_audio(file_of(music(), "FLAC", "PCM_16"), "flac", 3_000)
