"""MusicGen through ``transformers``: model id or local directory in, waveforms out.

Rows of one batch may ask for different lengths (the batch is generated to the longest and
each row trimmed) and each row has its own seed: sampling is done per row with its own
generator, so a take depends on its caption and seed, not on what it was batched with.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from transformers import AutoProcessor, LogitsProcessor, LogitsProcessorList, MusicgenForConditionalGeneration

log = logging.getLogger("textunes.musicgen")

DEFAULT_MODEL = "facebook/musicgen-small"
DELAY_FRAMES = 3  # the codebook delay pattern eats this many frames at the end


class ModelLoadError(RuntimeError):
    """The model could not be loaded; the message says what to set."""


@dataclass(frozen=True)
class Row:
    caption: str
    seed: int
    duration_s: float


@dataclass
class Generated:
    audio: list[np.ndarray]  # float32 mono per row, trimmed to its duration
    sample_rate: int
    model_seconds: float
    steps: int


def pick_device(requested: str = "auto") -> str:
    if requested != "auto":
        return requested
    if torch.cuda.is_available():
        return "cuda"
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return "mps"
    return "cpu"


def pick_dtype(device: str) -> torch.dtype:
    if device.startswith("cuda"):
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    if device == "mps":
        return torch.float16
    return torch.float32


class _SeededSampling(LogitsProcessor):
    """Classifier-free guidance, then top-k sampling with one torch.Generator per row.

    MusicGen's generate appends its own guidance step after the processors it is given, so
    this one hands it logits that survive it unchanged in argmax: the conditional half holds 0
    at the sampled token and a large negative number elsewhere, the unconditional half zeros.
    Greedy decoding then picks exactly the sampled token. Reports progress once per step.
    """

    _NOT_CHOSEN = -1e4

    def __init__(self, seeds: list[int], num_codebooks: int, guidance_scale: float, top_k: int,
                 temperature: float, on_step: Callable[[int], None]) -> None:
        self.guidance_scale = guidance_scale
        self.generators = []
        for seed in seeds:
            for codebook in range(num_codebooks):
                gen = torch.Generator(device="cpu")
                gen.manual_seed((seed * 1_000_003 + codebook) % 2**63)
                self.generators.append(gen)
        self.top_k = top_k
        self.temperature = temperature
        self.on_step = on_step
        self.step = 0

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        guided = scores.shape[0] == 2 * input_ids.shape[0]
        logits = scores.float()
        if guided:
            cond, uncond = logits.chunk(2, dim=0)
            logits = uncond + (cond - uncond) * self.guidance_scale
        logits = logits.cpu() / max(self.temperature, 1e-5)
        if 0 < self.top_k < logits.shape[-1]:
            kth = torch.topk(logits, self.top_k, dim=-1).values[..., -1:]
            logits = logits.masked_fill(logits < kth, float("-inf"))
        probs = torch.softmax(logits, dim=-1)
        chosen = torch.stack([
            torch.multinomial(probs[row], 1, generator=self.generators[row])
            for row in range(probs.shape[0])
        ]).to(scores.device)
        choice = torch.full((chosen.shape[0], scores.shape[1]), self._NOT_CHOSEN, dtype=scores.dtype, device=scores.device)
        choice.scatter_(1, chosen, 0.0)
        out = torch.cat([choice, torch.zeros_like(choice)]) if guided else choice
        self.step += 1
        self.on_step(self.step)
        return out


class MusicGen:
    """A loaded MusicGen checkpoint."""

    def __init__(self, model: MusicgenForConditionalGeneration, processor, device: str, name: str) -> None:  # type: ignore[no-untyped-def]
        self.model = model
        self.processor = processor
        self.device = device
        self.name = name
        self.sample_rate: int = int(model.config.audio_encoder.sampling_rate)
        self.frame_rate: float = float(model.config.audio_encoder.frame_rate)
        self.num_codebooks: int = int(model.decoder.config.num_codebooks)

    @classmethod
    def load(cls, model: str = DEFAULT_MODEL, *, device: str = "auto") -> "MusicGen":
        """Load from a hub id or a local directory (made with ``save_pretrained``)."""
        device = pick_device(device)
        dtype = pick_dtype(device)
        started = time.perf_counter()
        try:
            processor = AutoProcessor.from_pretrained(model)
            network = MusicgenForConditionalGeneration.from_pretrained(model, dtype=dtype)
        except (OSError, ValueError) as error:
            first_line = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
            raise ModelLoadError(
                f"Could not load the MusicGen model '{model}' ({first_line[:200]}). Set TEXTUNES_MODEL "
                "(or --model) to a local directory holding a saved model, or to a hub id on a machine "
                "that can reach the Hugging Face hub."
            ) from error
        network.to(device).eval()
        log.info("loaded %s on %s (%s) in %.1f s", model, device, str(dtype).removeprefix("torch."),
                 time.perf_counter() - started)
        return cls(network, processor, device, model)

    def tokens_for(self, duration_s: float) -> int:
        return int(round(self.frame_rate * duration_s)) + DELAY_FRAMES

    @torch.inference_mode()
    def generate(
        self,
        rows: list[Row],
        *,
        guidance_scale: float = 3.0,
        top_k: int = 250,
        temperature: float = 1.0,
        progress: Callable[[float], None] | None = None,
    ) -> Generated:
        """One ``generate`` call for all rows; ``progress`` gets the decoded fraction per step."""
        if not rows:
            return Generated([], self.sample_rate, 0.0, 0)
        max_new_tokens = max(self.tokens_for(r.duration_s) for r in rows)
        inputs = self.processor(text=[r.caption for r in rows], padding=True, return_tensors="pt").to(self.device)
        report = progress or (lambda fraction: None)
        sampling = _SeededSampling(
            [r.seed for r in rows], self.num_codebooks, guidance_scale, top_k, temperature,
            on_step=lambda step: report(min(1.0, step / max_new_tokens)),
        )
        started = time.perf_counter()
        waves = self.model.generate(
            **inputs, do_sample=False, guidance_scale=guidance_scale, max_new_tokens=max_new_tokens,
            logits_processor=LogitsProcessorList([sampling]),
        )
        if self.device.startswith("cuda"):
            torch.cuda.synchronize()
        elapsed = time.perf_counter() - started
        audio = waves[:, 0, :].float().cpu().numpy()
        trimmed = [audio[i, : int(round(r.duration_s * self.sample_rate))].copy() for i, r in enumerate(rows)]
        return Generated(trimmed, self.sample_rate, elapsed, sampling.step)
