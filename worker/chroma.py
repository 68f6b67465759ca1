"""Chroma features of a melody clip, as MusicGen-melody was trained on them.

transformers' ``MusicgenMelodyFeatureExtractor`` needs torchaudio, and no torchaudio build
matches our torch, so this computes the same thing with ``torch.stft``: a power
spectrogram (16384-point Hann window, hop 4096, centred with reflection, normalised by the
window's L2 norm, as torchaudio's ``Spectrogram(normalized=True)``), projected onto 12
pitch classes with librosa's chroma filter bank, scaled so each frame's loudest class is 1,
then one-hot on that class. ``tests/test_melody.py`` checks it against the extractor itself.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
import torch
from transformers.audio_utils import chroma_filter_bank

SAMPLE_RATE = 32_000
N_FFT = 16_384
HOP = 4_096
NUM_CHROMA = 12
CHUNK_S = 30


@lru_cache(maxsize=4)
def _filters(sample_rate: int, n_fft: int, num_chroma: int) -> torch.Tensor:
    return torch.from_numpy(chroma_filter_bank(sampling_rate=sample_rate, num_frequency_bins=n_fft, tuning=0,
                                               num_chroma=num_chroma)).float()


def chroma(clips: list[np.ndarray], *, sample_rate: int = SAMPLE_RATE, n_fft: int = N_FFT, hop: int = HOP,
           num_chroma: int = NUM_CHROMA) -> torch.Tensor:
    """One-hot chroma ``(clips, frames, num_chroma)`` of mono clips at ``sample_rate``, each cut
    to 30 s and zero-padded to the longest, as the extractor batches them."""
    longest = min(max(len(c) for c in clips), CHUNK_S * sample_rate)
    batch = torch.zeros((len(clips), longest), dtype=torch.float32)
    for row, clip in enumerate(clips):
        clip = torch.as_tensor(np.asarray(clip, dtype=np.float32)[:longest])
        batch[row, : len(clip)] = clip
    if longest < n_fft:
        pad = n_fft - longest
        batch = torch.nn.functional.pad(batch, (pad // 2, pad // 2 + pad % 2))
    window = torch.hann_window(n_fft)
    spectrum = torch.stft(batch, n_fft, hop_length=hop, win_length=n_fft, window=window, center=True,
                          pad_mode="reflect", normalized=False, onesided=True, return_complex=True)
    power = (spectrum / window.pow(2.0).sum().sqrt()).abs().pow(2.0)
    raw = torch.einsum("cf,bft->bct", _filters(sample_rate, n_fft, num_chroma), power)
    normalised = torch.nn.functional.normalize(raw, p=float("inf"), dim=-2, eps=1e-6).transpose(1, 2)
    one_hot = torch.zeros_like(normalised)
    return one_hot.scatter_(-1, normalised.argmax(-1, keepdim=True), 1.0)
