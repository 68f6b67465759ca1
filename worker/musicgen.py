"""MusicGen through ``transformers``: model id or local directory in; text encodings, audio from
tokens, and the reference ``generate`` path out.

``transformers`` loads the checkpoint and runs the T5 text encoder and EnCodec; the decode loop
is ours (``worker.engine``). ``MusicGen.generate_reference`` keeps transformers' own
``generate`` selectable (``--engine hf``) so the benchmark can compare the two.
"""

from __future__ import annotations

import logging
import os
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from transformers import AutoProcessor, MusicgenForConditionalGeneration, StoppingCriteria, StoppingCriteriaList

log = logging.getLogger("textunes.musicgen")

DEFAULT_MODEL = "facebook/musicgen-small"
HUB_PROBE_TIMEOUT_S = 5.0
DECODE_CHUNK_FRAMES = 1500  # EnCodec decodes at most 30 s at once; longer takes go in overlapping chunks
DECODE_CONTEXT_FRAMES = 50  # 1 s of codes decoded on each side of a chunk and thrown away


class ModelLoadError(RuntimeError):
    """The model could not be loaded; the message says what to set."""


@dataclass(frozen=True)
class Row:
    """One take for the reference path: caption, seed, length and (melody models) a clip."""

    caption: str
    seed: int
    duration_s: float
    melody: np.ndarray | None = None  # mono float samples at the model's rate


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


class MusicGen:
    """A loaded MusicGen checkpoint."""

    network_class: type = MusicgenForConditionalGeneration
    setting = "TEXTUNES_MODEL"

    def __init__(self, model: MusicgenForConditionalGeneration, processor, device: str, name: str,  # type: ignore[no-untyped-def]
                 max_text_tokens: int = 256) -> None:
        self.model = model
        self.processor = processor
        self.device = device
        self.name = name
        self.max_text_tokens = max_text_tokens
        self.sample_rate: int = int(model.config.audio_encoder.sampling_rate)
        self.frame_rate: float = float(model.config.audio_encoder.frame_rate)
        self.num_codebooks: int = int(model.decoder.config.num_codebooks)
        self.audio_channels: int = int(getattr(model.decoder.config, "audio_channels", 1))
        self.pad_token: int = int(model.decoder.config.pad_token_id)

    @property
    def dtype(self) -> torch.dtype:
        return next(self.model.parameters()).dtype

    @classmethod
    def load(cls, model: str = DEFAULT_MODEL, *, device: str = "auto") -> "MusicGen":
        """Load from a hub id or a local directory (made with ``save_pretrained``).

        A hub id is read from the local cache first; only if it is not cached is the hub
        asked, after a quick check that it answers at all, so an offline machine fails in
        seconds with a message instead of retrying for minutes."""
        device = pick_device(device)
        dtype = pick_dtype(device)
        started = time.perf_counter()
        try:
            processor, network = cls._from_pretrained(model, dtype, local_files_only=True)
        except (OSError, ValueError) as cached_error:
            if Path(model).exists() or _hub_offline():
                raise cls._load_error(model, cached_error) from cached_error
            unreachable = _hub_unreachable(model)
            if unreachable:
                raise cls._load_error(model, OSError(f"not in the local cache, and the hub {unreachable}")) from cached_error
            try:
                processor, network = cls._from_pretrained(model, dtype, local_files_only=False)
            except (OSError, ValueError) as error:
                raise cls._load_error(model, error) from error
        network.to(device).eval()
        log.info("loaded %s on %s (%s) in %.1f s", model, device, str(dtype).removeprefix("torch."),
                 time.perf_counter() - started)
        return cls(network, processor, device, model)

    def frames_for(self, duration_s: float) -> int:
        """Audio frames (token positions per codebook) for ``duration_s`` seconds."""
        return int(round(self.frame_rate * duration_s))

    def tokens_for(self, duration_s: float) -> int:
        """Decode steps of one window: the frames plus the codebook delay pattern."""
        return self.frames_for(duration_s) + self.num_codebooks - 1

    # ---- text in ---------------------------------------------------------------------
    @torch.inference_mode()
    def encode_text(self, caption: str) -> torch.Tensor:
        """The caption's T5 encoding projected to the decoder's width: ``(tokens, width)``.

        Encoded alone (no padding beside other captions), so a take's conditioning never
        depends on what it is batched with. Captions longer than ``max_text_tokens`` are cut."""
        inputs = self.processor(text=[caption], return_tensors="pt", truncation=True,
                                max_length=self.max_text_tokens).to(self.device)
        hidden = self.model.text_encoder(**inputs).last_hidden_state
        projection = getattr(self.model, "enc_to_dec_proj", None)
        if projection is not None:
            hidden = projection(hidden)
        return hidden[0]

    # ---- audio out -------------------------------------------------------------------
    @torch.inference_mode()
    def decode_audio(self, codes: torch.Tensor, *, chunk_frames: int = DECODE_CHUNK_FRAMES,
                     context_frames: int = DECODE_CONTEXT_FRAMES) -> np.ndarray:
        """Float32 mono audio for codes ``(codebooks, frames)``; ``frames / frame_rate`` seconds.

        Takes longer than ``chunk_frames`` are decoded in chunks that overlap by
        ``context_frames`` on each side (EnCodec's LSTM settles within them); each chunk keeps
        its middle, and neighbours are cross-faded over a few milliseconds at the seam."""
        if self.audio_channels != 1:
            raise ValueError("only mono MusicGen checkpoints are supported")
        codes = codes.to(self.device, torch.long)
        frames = codes.shape[-1]
        per_frame = int(round(self.sample_rate / self.frame_rate))
        if frames <= chunk_frames:
            return self._decode(codes)[: frames * per_frame]
        fade = min(per_frame * context_frames, int(0.02 * self.sample_rate))
        ramp = np.linspace(0.0, 1.0, fade, dtype=np.float32)
        out = np.zeros(frames * per_frame, dtype=np.float32)
        for start in range(0, frames, chunk_frames):
            end = min(start + chunk_frames, frames)
            lo = max(0, start - context_frames)
            audio = self._decode(codes[:, lo: min(frames, end + context_frames)])
            offset, first, last = lo * per_frame, start * per_frame, end * per_frame
            if start > 0:  # cross-fade from the previous chunk into this one just before the seam
                out[first - fade: first] = (out[first - fade: first] * (1.0 - ramp)
                                            + audio[first - fade - offset: first - offset] * ramp)
            out[first:last] = audio[first - offset: last - offset]
        return out

    def _decode(self, codes: torch.Tensor) -> np.ndarray:
        audio = self.model.audio_encoder.decode(codes[None, None], [None]).audio_values
        return audio[0, 0].float().cpu().numpy()

    # ---- the reference path: transformers' generate -----------------------------------
    @torch.inference_mode()
    def generate_reference(
        self,
        rows: list[Row],
        *,
        guidance_scale: float = 3.0,
        top_k: int = 250,
        temperature: float = 1.0,
        greedy: bool = False,
        progress: Callable[[float], None] | None = None,
    ) -> list[np.ndarray]:
        """One ``generate`` call for all rows, padded to the longest and trimmed.

        transformers samples with one random state for the whole call (seeded from the
        first row's seed), so here a take depends on its batch; the engine's takes don't."""
        if not rows:
            return []
        steps = max(self.tokens_for(r.duration_s) for r in rows)
        if steps - self.num_codebooks + 1 > int(self.model.decoder.config.max_position_embeddings):
            raise ValueError("transformers' generate makes at most one window (30 s); use the engine for longer takes")
        inputs = self.processor(text=[r.caption for r in rows], padding=True, return_tensors="pt").to(self.device)
        torch.manual_seed(rows[0].seed)
        report = _StepReport(steps, progress or (lambda fraction: None))
        waves = self.model.generate(
            **inputs, **self._conditioning(rows), do_sample=not greedy, guidance_scale=guidance_scale,
            max_new_tokens=steps, top_k=top_k, temperature=temperature, stopping_criteria=StoppingCriteriaList([report]),
        )
        audio = waves[:, 0, :].float().cpu().numpy()
        return [audio[i, : int(round(r.duration_s * self.sample_rate))].copy() for i, r in enumerate(rows)]


    def _conditioning(self, rows: list[Row]) -> dict[str, torch.Tensor]:
        """What ``generate`` needs beside the text (a melody model's chroma)."""
        if any(row.melody is not None for row in rows):
            raise ValueError(f"{self.name} is not a melody model")
        return {}

    @classmethod
    def _from_pretrained(cls, model: str, dtype: torch.dtype, *, local_files_only: bool):  # type: ignore[no-untyped-def]
        processor = AutoProcessor.from_pretrained(model, local_files_only=local_files_only)
        network = cls.network_class.from_pretrained(model, dtype=dtype, local_files_only=local_files_only)
        return processor, network

    @classmethod
    def _load_error(cls, model: str, error: BaseException) -> ModelLoadError:
        first_line = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        return ModelLoadError(
            f"Could not load the MusicGen model '{model}' ({first_line[:200]}). Set {cls.setting} (or --model) "
            "to a local directory holding a saved model, or to a hub id on a machine "
            "that can reach the Hugging Face hub."
        )


class _StepReport(StoppingCriteria):
    """Never stops generation; reports the decoded fraction once per step."""

    def __init__(self, steps: int, report: Callable[[float], None]) -> None:
        self.steps, self.report, self.done = steps, report, 0

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor, **kwargs: object) -> torch.BoolTensor:
        self.done += 1
        self.report(min(1.0, self.done / self.steps))
        return torch.zeros(input_ids.shape[0], dtype=torch.bool, device=input_ids.device)


def _hub_offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in {"1", "true", "yes", "on"}


def _hub_unreachable(model: str) -> str:
    """'' when the hub answers within a few seconds; otherwise why not."""
    endpoint = os.environ.get("HF_ENDPOINT", "https://huggingface.co").rstrip("/")
    try:
        with urllib.request.urlopen(urllib.request.Request(f"{endpoint}/api/models/{model}", method="HEAD"),
                                    timeout=HUB_PROBE_TIMEOUT_S):
            return ""
    except urllib.error.HTTPError:
        return ""  # it answered (401/404 are for from_pretrained to explain)
    except (OSError, ValueError) as error:
        reason = getattr(error, "reason", error)
        return f"at {endpoint} did not answer within {HUB_PROBE_TIMEOUT_S:g} s ({reason})"

