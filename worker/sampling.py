"""Seeded sampling on the device: classifier-free guidance, top-k, temperature, Gumbel-max.

The noise comes from a counter-based hash of (seed, step, codebook, token), not from a random
generator with state, so a take's tokens depend only on its logits, its seed and its own step
count - never on which other takes share the batch or when it joined. Everything is tensor
arithmetic on the logits' device (no Python loop per row, no host sync), so a decode step
that ends in sampling can be captured in a CUDA graph.

The hash is a 32-bit integer mixer (xor-shift-multiply, constants below 2**31 so every
product fits in int64 without overflow) applied by chaining: mix(mix(mix(seed) ^ step) ^ index).
"""

from __future__ import annotations

import torch

_MASK = 0xFFFFFFFF
_C1 = 0x21F0AAAD
_C2 = 0x735A2D97


def mix32(x: torch.Tensor) -> torch.Tensor:
    """A bijective 32-bit mixer on int64 tensors holding values in [0, 2**32)."""
    x = x ^ (x >> 16)
    x = (x * _C1) & _MASK
    x = x ^ (x >> 15)
    x = (x * _C2) & _MASK
    return x ^ (x >> 15)


def seed_key(seeds: torch.Tensor) -> torch.Tensor:
    """Per-take keys from 32-bit seeds (int64 tensor)."""
    return mix32(seeds & _MASK)


def uniform(keys: torch.Tensor, steps: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """Uniform noise in (0, 1) shaped like ``index`` (S, N), for takes with ``keys`` and ``steps`` (S,)."""
    per_step = mix32(keys ^ (steps & _MASK)).view(-1, 1)
    bits = mix32(per_step ^ index)
    return ((bits >> 8).to(torch.float32) + 0.5) * (1.0 / (1 << 24))


def guide(logits: torch.Tensor, guidance_scale: float) -> torch.Tensor:
    """Classifier-free guidance over rows laid out (slots, 2, ...): conditional first."""
    if logits.shape[1] == 1:
        return logits[:, 0]
    cond, uncond = logits[:, 0], logits[:, 1]
    return uncond + (cond - uncond) * guidance_scale


def sample(logits: torch.Tensor, keys: torch.Tensor, steps: torch.Tensor, *, top_k: int, temperature: float) -> torch.Tensor:
    """Tokens (S, K) from logits (S, K, V): top-k, then Gumbel-max with hashed noise.

    ``top_k == 1`` (or a temperature of 0) is greedy decoding. The noise of a candidate
    depends on its vocabulary index, not its rank, so restricting to the top k first gives
    the same token as noising the whole vocabulary with the others masked out.
    """
    slots, books, vocab = logits.shape
    logits = logits.float()
    if top_k == 1 or temperature <= 0:
        return logits.argmax(dim=-1)
    logits = logits / temperature
    book_offset = torch.arange(books, device=logits.device).view(1, books, 1) * vocab
    if 0 < top_k < vocab:
        values, tokens = torch.topk(logits, top_k, dim=-1)
        noise = _gumbel(uniform(keys, steps, (tokens + book_offset).view(slots, -1)).view(slots, books, top_k))
        choice = (values + noise).argmax(dim=-1, keepdim=True)
        return tokens.gather(-1, choice).squeeze(-1)
    index = (torch.arange(vocab, device=logits.device).view(1, 1, vocab) + book_offset).expand(slots, books, vocab)
    noise = _gumbel(uniform(keys, steps, index.reshape(slots, -1)).view(slots, books, vocab))
    return (logits + noise).argmax(dim=-1)


def _gumbel(u: torch.Tensor) -> torch.Tensor:
    return -torch.log(-torch.log(u))
