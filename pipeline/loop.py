"""Seamless loops: a take cut to a whole number of bars at its tempo, starting on a
downbeat found in the audio, with its end joined to its start.

The join is the classic loop crossfade: the audio that follows the loop's last sample in
the take (the "tail") fades into the loop's first samples (the "head"). Played on repeat,
the last sample is followed by the tail's first sample - its true continuation - so there
is no click, and by the end of the fade the loop is back on its own head. The fade keeps
the power constant for the measured correlation of tail and head, so the level doesn't
dip or bump at the seam. Nothing else changes: a loop has no fade-in or fade-out.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

BARS = (2, 4, 8)  # a loop is 2, 4 or 8 bars of 4/4, whichever is closest to the asked length
CROSSFADE_S = 0.12
LEAD_IN_S = 0.5  # MusicGen often takes a moment to settle: never start the loop before this
HOP = 256  # onset envelope hop, samples
WINDOW = 1024  # onset envelope window, samples: a frame stands for its window's centre


@dataclass(frozen=True)
class Loop:
    samples: np.ndarray
    bars: int
    bpm: float
    start_s: float  # where in the take the loop starts (a downbeat)

    @property
    def seconds(self) -> float:
        return self.bars * 240.0 / self.bpm


def plan(seconds: float, bpm: float) -> tuple[int, float]:
    """The number of bars (2, 4 or 8 of 4/4) closest to ``seconds`` at ``bpm``, and their length."""
    bar = 240.0 / bpm
    bars = min(BARS, key=lambda b: (abs(b * bar - seconds), b))
    return bars, bars * bar


def source_seconds(seconds: float, bpm: float) -> float:
    """How much audio to make for a loop of about ``seconds``: the loop, one bar to find a
    downbeat in, the crossfade's tail and the lead-in."""
    return plan(seconds, bpm)[1] + 240.0 / bpm + CROSSFADE_S + LEAD_IN_S


def make_loop(samples: np.ndarray, rate: int, bpm: float, seconds: float) -> Loop:
    """Cut ``samples`` (mono float) into a seamless loop of 2, 4 or 8 bars at ``bpm``."""
    samples = np.asarray(samples, dtype=np.float32)
    bars, length_s = plan(seconds, bpm)
    length = int(round(length_s * rate))
    fade = int(CROSSFADE_S * rate)
    lead_in = int(LEAD_IN_S * rate)
    if len(samples) < length + fade + lead_in:
        raise ValueError(f"{len(samples) / rate:.1f} s of audio is too short for a {bars}-bar loop at {bpm:g} bpm")
    last_start = len(samples) - length - fade
    starts = [s for s in downbeats(samples, rate, bpm) if lead_in <= s <= last_start] or [lead_in]
    start = max(starts, key=lambda s: _seam_match(samples, s, length, fade))
    loop = samples[start: start + length].copy()
    head, tail = samples[start: start + fade], samples[start + length: start + length + fade]
    fade_in, fade_out = _constant_power(head, tail)
    loop[:fade] = tail * fade_out + head * fade_in
    return Loop(loop, bars, float(bpm), start / rate)


def downbeats(samples: np.ndarray, rate: int, bpm: float) -> list[int]:
    """Sample positions of the bar starts: the beat grid at ``bpm`` best aligned with the
    onsets, and of its four phases the one whose beats are strongest."""
    envelope = onset_envelope(samples, rate)
    if len(envelope) == 0:
        return []
    beat = 60.0 / bpm * rate / HOP  # frames per beat
    phases = np.arange(0.0, beat, 0.5)
    grid = np.arange(0.0, len(envelope), beat)
    strength = [_sample(envelope, phase + grid) for phase in phases]
    phase = float(phases[int(np.argmax([s.sum() for s in strength]))])
    beats = _sample(envelope, phase + grid)
    accent = [beats[offset::4].mean() if len(beats[offset::4]) else 0.0 for offset in range(4)]
    first = phase + int(np.argmax(accent)) * beat
    return [int(round(frame * HOP)) + WINDOW // 2 for frame in np.arange(first, len(envelope), 4 * beat)]


def onset_envelope(samples: np.ndarray, rate: int) -> np.ndarray:
    """Spectral flux of the log magnitude spectrum, one value per ``HOP`` samples."""
    if len(samples) < WINDOW:
        return np.zeros(0)
    frames = np.lib.stride_tricks.sliding_window_view(samples, WINDOW)[::HOP] * np.hanning(WINDOW)
    magnitude = np.log1p(100.0 * np.abs(np.fft.rfft(frames, axis=1)))
    flux = np.maximum(np.diff(magnitude, axis=0), 0.0).sum(axis=1)
    return np.concatenate([[0.0], flux - np.median(flux)]).clip(min=0.0)


def _sample(envelope: np.ndarray, positions: np.ndarray) -> np.ndarray:
    positions = positions[positions < len(envelope) - 1]
    return np.interp(positions, np.arange(len(envelope)), envelope)


def _seam_match(samples: np.ndarray, start: int, length: int, fade: int) -> float:
    """How alike the head and the tail are (correlation, less a level mismatch)."""
    head, tail = samples[start: start + fade], samples[start + length: start + length + fade]
    level = abs(math.log10((_rms(head) + 1e-9) / (_rms(tail) + 1e-9)))
    return _correlation(head, tail) - level


def _constant_power(head: np.ndarray, tail: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Gains for a crossfade of two signals with correlation r that keeps their power steady:
    a sine/cosine pair divided by sqrt(1 + 2 r sin cos)."""
    r = float(np.clip(_correlation(head, tail), -0.9, 1.0))
    angle = np.linspace(0.0, np.pi / 2, len(head), dtype=np.float64)
    fade_in, fade_out = np.sin(angle), np.cos(angle)
    norm = np.sqrt(1.0 + 2.0 * r * fade_in * fade_out)
    return (fade_in / norm).astype(np.float32), (fade_out / norm).astype(np.float32)


def _correlation(a: np.ndarray, b: np.ndarray) -> float:
    denominator = float(np.sqrt(np.dot(a, a) * np.dot(b, b)))
    return float(np.dot(a, b)) / denominator if denominator > 0 else 0.0


def _rms(x: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.square(x, dtype=np.float64)))) if len(x) else 0.0


def level(samples: np.ndarray, rate: int, target_lufs: float, ceiling_dbfs: float) -> np.ndarray:
    """One gain for the whole loop (so the seam stays seamless): the target loudness measured
    as the loop plays on repeat, or less if that would put a peak over the ceiling."""
    from pipeline.audio import loudness_lufs

    loudness = loudness_lufs(np.tile(samples, 2), rate)
    if not math.isfinite(loudness):
        return samples
    peak = float(np.abs(samples).max())
    gain_db = target_lufs - loudness
    if peak > 0:
        gain_db = min(gain_db, ceiling_dbfs - 20 * math.log10(peak))
    return (samples * 10 ** (gain_db / 20)).astype(np.float32)
