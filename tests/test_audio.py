"""Audio mastering and MP3 encoding, on the real MusicGen takes in shared/seed/audio.

The four seed takes differ by ~15 dB in loudness and one peaks above full scale; after
finishing they must all sit at -14 LUFS under a -1 dBFS ceiling, without clipping.
"""

from __future__ import annotations

import io
import math
import os
from functools import cache
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from pipeline.audio import (
    EncodedAudio,
    Mastering,
    TooLargeForLimit,
    UnreadableAudio,
    encode_mp3,
    master,
    fit_mp3,
    loudness_lufs,
    read_audio,
    remove_subsonic,
)


def _seed_audio_dir() -> Path:
    configured = os.environ.get("TEXTUNES_SEED_DIR")
    if configured:  # the seed root (as in conftest.py) or its audio folder directly
        root = Path(configured)
        return root / "audio" if (root / "audio").is_dir() else root
    return Path(__file__).resolve().parents[2] / "shared" / "seed" / "audio"


SEED_AUDIO = _seed_audio_dir()
SEED_FILES = sorted(SEED_AUDIO.glob("*.wav")) if SEED_AUDIO.is_dir() else []
needs_seed = pytest.mark.skipif(
    not SEED_FILES,
    reason=f"no seed takes in {SEED_AUDIO} (clone shared/ beside the repo or set TEXTUNES_SEED_DIR)",
)
seed_params = pytest.mark.parametrize("path", SEED_FILES, ids=lambda p: p.stem[:32])

DEFAULTS = Mastering()
CEILING = 10.0 ** (DEFAULTS.ceiling_dbfs / 20.0)
RATE = 32000


@cache
def _seed(path: Path) -> tuple[np.ndarray, int]:
    return read_audio(path)


@cache
def _finished(path: Path) -> np.ndarray:
    samples, rate = _seed(path)
    return master(samples, rate)


@cache
def _finished_mp3(path: Path) -> EncodedAudio:
    return encode_mp3(_finished(path), _seed(path)[1])


def _tone(seconds: float, amplitude: float = 0.1, hz: float = 500.0, rate: int = RATE) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    return (amplitude * np.sin(2 * np.pi * hz * t)).astype(np.float32)


def _window_rms(samples: np.ndarray, start_s: float, stop_s: float, rate: int = RATE) -> float:
    part = samples[int(start_s * rate) : int(stop_s * rate)]
    return float(np.sqrt(np.mean(np.square(part, dtype=np.float64))))


def _longest_run(mask: np.ndarray) -> int:
    edges = np.flatnonzero(np.diff(np.concatenate([[0], mask.astype(np.int8), [0]])))
    return int((edges[1::2] - edges[::2]).max()) if edges.size else 0


# --- mastering the real takes -------------------------------------------------------------


@needs_seed
def test_seed_takes_really_differ_in_level() -> None:
    levels = [loudness_lufs(*_seed(path)) for path in SEED_FILES]
    assert max(levels) - min(levels) > 10  # the mastering below has real work to do
    assert max(float(np.max(np.abs(_seed(path)[0]))) for path in SEED_FILES) > 1.0


@needs_seed
@seed_params
def test_finished_take_is_at_target_loudness_under_the_ceiling(path: Path) -> None:
    samples, rate = _seed(path)
    out = _finished(path)

    assert out.dtype == np.float32 and out.shape == samples.shape
    assert loudness_lufs(out, rate) == pytest.approx(DEFAULTS.target_lufs, abs=0.5)
    assert float(np.max(np.abs(out))) <= CEILING


@needs_seed
@seed_params
def test_limiting_lowers_the_envelope_instead_of_clipping(path: Path) -> None:
    samples, rate = _seed(path)
    out = _finished(path)
    middle = slice(rate, len(samples) - 2 * rate)  # away from the fades
    filtered = remove_subsonic(samples.reshape(len(samples), -1).astype(np.float64), rate).reshape(samples.shape)
    src, res = filtered[middle], out[middle].astype(np.float64)  # the limiter's gain, after the high-pass
    loud = np.abs(src) > 0.05 * np.max(np.abs(src))
    gain_db = 20 * np.log10(np.abs(res[loud]) / np.abs(src[loud]))
    neighbours = np.diff(np.flatnonzero(loud)) == 1

    # A hard clip at this loudness jumps 0.4-0.9 dB between neighbouring samples.
    assert np.max(np.abs(np.diff(gain_db))[neighbours]) < 0.1
    # and leaves flat tops of 8-57 samples at the ceiling; the waveform keeps its peaks.
    assert _longest_run(np.abs(out) >= CEILING * 0.999) <= 4


@needs_seed
def test_finished_take_fades_in_and_out() -> None:
    out = _finished(SEED_FILES[0])
    rate = _seed(SEED_FILES[0])[1]
    end = len(out) / rate

    assert np.max(np.abs(out[: int(0.005 * rate)])) < 0.01
    assert np.max(np.abs(out[-int(0.005 * rate) :])) < 0.001
    assert _window_rms(out, 0.0, 0.1, rate) < 0.2 * _window_rms(out, 0.5, 1.5, rate)
    assert _window_rms(out, end - 0.2, end, rate) < 0.1 * _window_rms(out, end - 3.0, end - 1.5, rate)


def test_fades_follow_the_configured_lengths() -> None:
    tone = _tone(4.0)  # a steady level, so the window levels read the fade curve directly
    out = master(tone, RATE, Mastering(fade_in_s=0.5, fade_out_s=1.5))
    steady = _window_rms(out, 1.0, 2.0)
    fade_in = [_window_rms(out, t, t + 0.05) for t in np.arange(0.0, 0.5, 0.05)]
    fade_out = [_window_rms(out, t, t + 0.05) for t in np.arange(2.5, 4.0, 0.05)]

    assert fade_in[0] < 0.05 * steady and fade_out[-1] < 0.05 * steady
    assert all(b > a for a, b in zip(fade_in, fade_in[1:]))
    assert all(b < a for a, b in zip(fade_out, fade_out[1:]))
    assert _window_rms(out, 0.5, 0.6) == pytest.approx(steady, rel=0.01)
    assert _window_rms(out, 2.4, 2.5) == pytest.approx(steady, rel=0.01)


def test_fades_can_be_turned_off() -> None:
    out = master(_tone(2.0), RATE, Mastering(fade_in_s=0.0, fade_out_s=0.0))
    assert _window_rms(out, 0.0, 0.05) == pytest.approx(_window_rms(out, 1.0, 1.05), rel=0.01)


def test_other_targets_and_ceilings_are_honoured() -> None:
    noise = np.random.default_rng(7).normal(0.0, 0.3, (RATE * 5, 2)).astype(np.float32)
    settings = Mastering(target_lufs=-20.0, ceiling_dbfs=-3.0)
    out = master(noise, RATE, settings)

    assert out.shape == noise.shape
    assert loudness_lufs(out, RATE) == pytest.approx(-20.0, abs=0.5)
    assert float(np.max(np.abs(out))) <= 10 ** (-3.0 / 20)



def test_a_dc_offset_is_removed_before_the_loudness_is_measured() -> None:
    # a take whose samples sit around +0.68: the offset counts toward the peak, not the loudness
    offset = _tone(5.0, amplitude=0.25) + np.float32(0.68)
    out = master(offset, RATE)

    assert loudness_lufs(out, RATE) == pytest.approx(-14.0, abs=0.1)
    assert abs(float(np.mean(out))) < 1e-3
    assert float(np.max(np.abs(out))) <= CEILING


def test_subsonic_content_is_filtered_out_and_the_music_kept() -> None:
    rumble = _tone(6.0, amplitude=0.3, hz=5.0)  # 5 Hz: inaudible, but it eats headroom
    music = _tone(6.0, amplitude=0.1, hz=440.0)
    out = master(rumble + music, RATE)

    def level(samples: np.ndarray, hz: float) -> float:  # amplitude of one frequency, middle 4 s
        part = samples[RATE : 5 * RATE].astype(np.float64)
        t = np.arange(len(part)) / RATE
        return float(2 * abs(np.mean(part * np.exp(-2j * np.pi * hz * t))))

    assert level(out, 5.0) < 0.05 * level(out, 440.0)  # the rumble was 3x the music going in
    assert loudness_lufs(out, RATE) == pytest.approx(-14.0, abs=0.1)


# --- edge cases a generator can produce ----------------------------------------------------


@pytest.mark.parametrize("shape", [(RATE * 3,), (RATE * 3, 2), (RATE // 10,)], ids=["mono", "stereo", "short"])
def test_silence_stays_silence(shape: tuple[int, ...]) -> None:
    out = master(np.zeros(shape, dtype=np.float32), RATE)
    assert out.shape == shape
    assert np.all(out == 0.0)
    assert math.isinf(loudness_lufs(out, RATE))


def test_a_clip_shorter_than_the_loudness_block_is_finished() -> None:
    clip = _tone(0.2, amplitude=0.01)
    out = master(clip, RATE)

    assert out.shape == clip.shape and np.all(np.isfinite(out))
    assert float(np.max(np.abs(out))) <= CEILING
    assert float(np.max(np.abs(out))) > 0.1  # brought up from -40 dBFS, not left alone
    assert abs(out[0]) < 1e-3 and abs(out[-1]) < 1e-3


def test_nan_from_a_broken_generation_is_refused() -> None:
    broken = _tone(1.0)
    broken[100] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        master(broken, RATE)


def test_a_channels_first_array_is_refused_with_a_hint() -> None:
    channels_first = _tone(1.0)[np.newaxis, :]  # MusicGen's (channels, samples) layout
    with pytest.raises(ValueError, match="transpose"):
        master(channels_first, RATE)


# --- MP3 -----------------------------------------------------------------------------------


@needs_seed
def test_mp3_decodes_to_the_same_duration() -> None:
    encoded = _finished_mp3(SEED_FILES[0])
    decoded, rate = read_audio(encoded.data)

    assert encoded.bitrate_kbps == 320  # 30 s at 320 kbps is 1.2 MB, far under 10 MiB
    assert rate == encoded.sample_rate == _seed(SEED_FILES[0])[1]
    assert decoded.ndim == 1
    assert len(decoded) / rate == pytest.approx(encoded.duration_s, abs=0.1)
    assert encoded.duration_s == pytest.approx(30.0, abs=0.01)


def test_stereo_stays_stereo_and_odd_rates_are_resampled() -> None:
    stereo = np.stack([_tone(2.0), _tone(2.0, hz=300.0)], axis=1)
    encoded = encode_mp3(stereo, 22050 + 50)  # not an MP3 rate: LAME resamples
    decoded, rate = read_audio(encoded.data)

    assert decoded.shape[1] == 2
    assert rate == encoded.sample_rate == 24000
    assert encoded.bitrate_kbps == 160  # the highest MPEG-2 bitrate in the default list
    assert len(decoded) / rate == pytest.approx(len(stereo) / 22100, abs=0.1)


@needs_seed
def test_a_smaller_limit_picks_the_best_bitrate_that_fits() -> None:
    samples = _finished(SEED_FILES[0])
    encoded = encode_mp3(samples, RATE, max_bytes=600_000)  # 30 s: 160 kbps is 601,200 bytes

    assert len(encoded.data) <= 600_000
    assert encoded.bitrate_kbps == 128
    assert len(read_audio(encoded.data)[0]) / RATE == pytest.approx(30.0, abs=0.1)


def test_an_impossible_limit_says_the_limit_and_the_smallest_size() -> None:
    with pytest.raises(TooLargeForLimit) as raised:
        encode_mp3(_tone(10.0), RATE, max_bytes=1000)

    error = raised.value
    assert isinstance(error, ValueError)
    assert error.max_bytes == 1000 and error.bitrate_kbps == 64
    assert error.smallest_bytes > 1000
    assert "1,000 bytes" in str(error) and "64 kbps" in str(error)
    assert f"{error.smallest_bytes:,} bytes" in str(error)


def test_int16_conversion_clips_instead_of_wrapping_around() -> None:
    hot = _tone(2.0, amplitude=1.5, hz=200.0)  # past full scale, as an unfinished take can be
    decoded, _ = read_audio(encode_mp3(hot, RATE).data)
    power = np.abs(np.fft.rfft(decoded[RATE // 2 : RATE // 2 + RATE].astype(np.float64))) ** 2

    # Clipped, it is still mostly a 200 Hz tone (0.98); wrapped to negative, 0.19.
    assert power[200] / power.sum() > 0.8


@needs_seed
def test_fit_mp3_shrinks_a_320_kbps_file_under_a_smaller_limit() -> None:
    original = _finished_mp3(SEED_FILES[0])
    fitted = fit_mp3(original.data, 500_000)

    assert len(original.data) > 1_000_000
    assert len(fitted.data) <= 500_000
    assert fitted.bitrate_kbps < original.bitrate_kbps
    decoded, rate = read_audio(fitted.data)
    assert len(decoded) / rate == pytest.approx(30.0, abs=0.2)  # each generation adds ~0.06 s
    # LAME's low-pass at 128 kbps takes ~0.45 LU of K-weighted treble; the level stays put.
    assert loudness_lufs(decoded, rate) == pytest.approx(DEFAULTS.target_lufs, abs=1.0)


@needs_seed
def test_fit_mp3_leaves_a_file_that_already_fits_untouched() -> None:
    original = _finished_mp3(SEED_FILES[0])
    fitted = fit_mp3(original.data, 8 * 1024 * 1024)
    assert fitted.data == original.data
    assert fitted.bitrate_kbps == 320 and fitted.sample_rate == RATE


def test_fit_mp3_refuses_an_impossible_limit() -> None:
    mp3 = encode_mp3(_tone(10.0), RATE).data
    with pytest.raises(TooLargeForLimit, match="2,000 bytes"):
        fit_mp3(mp3, 2000)


# --- reading -------------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", ["WAV", "FLAC", "OGG"])
def test_read_audio_reads_common_formats_from_bytes(fmt: str) -> None:
    buffer = io.BytesIO()
    sf.write(buffer, _tone(1.0), RATE, format=fmt)
    samples, rate = read_audio(buffer.getvalue())
    assert rate == RATE and samples.dtype == np.float32
    assert samples.shape == (RATE,)


def test_read_audio_explains_what_it_could_not_read(tmp_path: Path) -> None:
    with pytest.raises(UnreadableAudio, match="WAV, FLAC, OGG or MP3"):
        read_audio(b"this is a text file, not a song" * 10)
    with pytest.raises(UnreadableAudio, match="empty"):
        read_audio(b"")
    with pytest.raises(UnreadableAudio, match="No audio file"):
        read_audio(tmp_path / "missing.wav")
