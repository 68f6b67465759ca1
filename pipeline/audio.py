"""Audio mastering: loudness to a target, a peak ceiling without clipping, fades.

Every generated take goes through :func:`master` before :func:`encode_mp3`, so tracks
from different prompts play back at the same loudness (MusicGen outputs of one batch
differ by 15 dB) and none clips in a player or after MP3 decoding.

The order matters and is iterated rather than done once::

    DC and subsonic removal (high-pass) ──►
    gain ──► look-ahead peak limiter (ceiling) ──► fades ──► measure ──┐
      ▲                                                                 │
      └──────────── correct the gain by what limiting and fades cost ◄──┘

The high-pass comes first: a DC offset (a take whose samples sit around +0.68) or
subsonic rumble counts toward the peak but not toward the loudness, so left in, it
makes the limiter hold the music down below the target.

Limiting and fades only ever lower the level, so the measured loudness after them is
below what the plain gain predicts; a few rounds of correction (2 on each seed take) land the
*finished* signal on the target, and the ceiling holds by construction in every round.

Encoding lives in :mod:`pipeline.audio_mp3`, reading in :mod:`pipeline.audio_io`; both are
re-exported here so callers only import ``pipeline.audio``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import pyloudnorm
from scipy import signal

from pipeline.audio_io import UnreadableAudio, as_frames, check_rate, read_audio
from pipeline.audio_limiter import limit_peaks
from pipeline.audio_mp3 import EncodedAudio, TooLargeForLimit, encode_mp3, fit_mp3

__all__ = [
    "EncodedAudio",
    "Mastering",
    "TooLargeForLimit",
    "UnreadableAudio",
    "encode_mp3",
    "master",
    "fit_mp3",
    "loudness_lufs",
    "read_audio",
    "remove_subsonic",
]

BLOCK_S = 0.4  # BS.1770 gating block; shorter clips are measured by plain RMS
ABSOLUTE_GATE_LUFS = -70.0  # BS.1770 absolute gate: anything quieter counts as silence
MAX_GAIN_DB = 40.0  # never lift a near-silent take (noise floor) by more than this
TOLERANCE_LU = 0.05  # stop correcting once the finished loudness is this close
MAX_ROUNDS = 8


@dataclass(frozen=True)
class Mastering:
    """How a take is mastered. Defaults follow streaming-platform loudness (-14 LUFS)."""

    target_lufs: float = -14.0
    ceiling_dbfs: float = -1.0
    fade_in_s: float = 0.5
    fade_out_s: float = 1.5
    highpass_hz: float = 20.0  # DC and subsonic content go before loudness is measured; 0 keeps them


def loudness_lufs(samples: np.ndarray, sample_rate: int) -> float:
    """Integrated loudness (ITU-R BS.1770 via pyloudnorm) in LUFS; ``-inf`` for silence.

    Clips shorter than the 0.4 s gating block (or with more than 5 channels, which
    pyloudnorm doesn't weight) are measured as ungated RMS: for music that lands within
    about 1 LU of the K-weighted figure, which is all a 0.3 s clip needs.
    """
    frames = as_frames(samples)
    return _loudness(frames, check_rate(sample_rate))


def master(samples: np.ndarray, sample_rate: int, mastering: Mastering = Mastering()) -> np.ndarray:
    """Loudness-normalise, peak-limit and fade a take; returns float32 in the input's shape.

    Silence (or anything under the -70 LUFS gate) is not amplified, only faded. Raises
    ``ValueError`` for NaN/inf samples or a shape other than ``(n,)``/``(n, channels)``.
    """
    rate = check_rate(sample_rate)
    _check_mastering(mastering)
    frames = as_frames(samples)
    shape = np.shape(samples)
    if frames.shape[0] == 0:
        return np.zeros(shape, dtype=np.float32)

    frames = remove_subsonic(frames, rate, mastering.highpass_hz)
    ceiling = 10.0 ** (mastering.ceiling_dbfs / 20.0)
    fades = _fade_curve(frames.shape[0], rate, mastering.fade_in_s, mastering.fade_out_s)
    start = _loudness(frames, rate)
    if not math.isfinite(start):
        # Silence or inaudible noise: nothing to normalise, only keep it under the ceiling.
        out = limit_peaks(frames, rate, ceiling) * fades[:, np.newaxis]
        return _to_output(out, ceiling, shape)

    gain_db = min(mastering.target_lufs - start, MAX_GAIN_DB)
    best: tuple[float, np.ndarray] | None = None
    for _ in range(MAX_ROUNDS):
        out = limit_peaks(frames * 10.0 ** (gain_db / 20.0), rate, ceiling) * fades[:, np.newaxis]
        error = mastering.target_lufs - _loudness(out, rate)
        if not math.isfinite(error):
            break  # the fades ate a tiny clip entirely: nothing left to measure
        if best is None or abs(error) < abs(best[0]):
            best = (error, out)
        if abs(error) <= TOLERANCE_LU or gain_db >= MAX_GAIN_DB:
            break
        gain_db = min(gain_db + error, MAX_GAIN_DB)
    return _to_output(best[1] if best is not None else out, ceiling, shape)


def remove_subsonic(frames: np.ndarray, rate: int, cutoff_hz: float = 20.0) -> np.ndarray:
    """``(n, channels)`` frames without their DC offset (each channel's mean) and with a
    gentle zero-phase high-pass at ``cutoff_hz``: a 2nd-order Butterworth run forwards and
    backwards, so nothing moves in time; -6 dB at the cutoff, about -0.5 dB an octave above
    it, -48 dB two octaves below. The edges are padded by 0.1 s of point-reflected signal,
    so the filter's settling doesn't colour the first and last moments."""
    if cutoff_hz <= 0:
        return frames
    centred = frames - np.mean(frames, axis=0, keepdims=True)
    if centred.shape[0] < 16:  # a few samples: nothing for a filter to work on
        return centred
    sos = signal.butter(2, cutoff_hz, btype="highpass", fs=rate, output="sos")
    return signal.sosfiltfilt(sos, centred, axis=0, padtype="odd", padlen=min(rate // 10, centred.shape[0] - 1))


def _check_mastering(mastering: Mastering) -> None:
    if not mastering.ceiling_dbfs <= 0.0:
        raise ValueError(f"The ceiling must be at or below 0 dBFS, got {mastering.ceiling_dbfs}.")
    if mastering.fade_in_s < 0 or mastering.fade_out_s < 0:
        raise ValueError("Fade lengths can't be negative.")
    if not 0.0 <= mastering.highpass_hz < 200.0:
        raise ValueError(f"The high-pass must be 0 (off) or below 200 Hz, got {mastering.highpass_hz}.")
    if not math.isfinite(mastering.target_lufs):
        raise ValueError("The loudness target must be a number of LUFS.")


def _loudness(frames: np.ndarray, rate: int) -> float:
    """Loudness of ``(n, channels)`` float64 frames; ``-inf`` under the absolute gate."""
    if frames.shape[0] < math.ceil(BLOCK_S * rate) or frames.shape[1] > 5:
        mean_square = float(np.sum(np.mean(np.square(frames), axis=0)))
        value = 10.0 * math.log10(mean_square) if mean_square > 0 else -math.inf
    else:
        data = frames[:, 0] if frames.shape[1] == 1 else frames
        value = float(_meter(rate).integrated_loudness(data))
    return value if value >= ABSOLUTE_GATE_LUFS else -math.inf


@lru_cache(maxsize=8)
def _meter(rate: int) -> pyloudnorm.Meter:
    return pyloudnorm.Meter(rate)


def _fade_curve(n: int, rate: int, fade_in_s: float, fade_out_s: float) -> np.ndarray:
    """Raised-cosine fade-in and fade-out gains, shrunk proportionally on clips too short for both."""
    fade_in = int(round(fade_in_s * rate))
    fade_out = int(round(fade_out_s * rate))
    if fade_in + fade_out > n:
        scale = n / (fade_in + fade_out)
        fade_in, fade_out = int(fade_in * scale), int(fade_out * scale)
    curve = np.ones(n, dtype=np.float64)
    if fade_in:
        curve[:fade_in] = _raised_cosine(fade_in)
    if fade_out:
        curve[n - fade_out :] *= _raised_cosine(fade_out)[::-1]
    return curve


def _raised_cosine(length: int) -> np.ndarray:
    """``length`` gains rising from exactly 0 towards 1 (the next sample would be 1)."""
    return 0.5 - 0.5 * np.cos(np.pi * np.arange(length) / length)


def _to_output(frames: np.ndarray, ceiling: float, shape: tuple[int, ...]) -> np.ndarray:
    out = frames.astype(np.float32)
    peak = float(np.max(np.abs(out))) if out.size else 0.0
    if peak > ceiling:
        # float32 rounding only (the limiter keeps a margin): scale, never clip.
        out *= np.float32(ceiling / peak * (1 - 1e-6))
    return out.reshape(shape)
