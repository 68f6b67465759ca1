"""The tone head: valence and arousal read from a sentence vector.

A ridge regression fitted, when the analyser loads, on the situations in ``data/bank.tsv``
(English and Korean, each with a valence and an arousal) and on the labelled development texts in
``data/examples.tsv``, blended with the text's nearest situations and examples. Because the bank describes situations (a comeback win, a whispered
threat, a rant, a loss) and the sentence model reads both languages, the head scores what
happens in a text, not only its feeling words.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
import numpy as np

from .tables import read_table


@dataclass(frozen=True)
class BankRow:
    lang: str
    valence: float
    arousal: float
    text: str


@lru_cache(maxsize=1)
def bank() -> tuple[BankRow, ...]:
    return tuple(BankRow(lang, float(v), float(a), text) for lang, v, a, text in read_table("bank.tsv"))


EXAMPLES_FILE = "examples.tsv"


@lru_cache(maxsize=1)
def examples() -> tuple[BankRow, ...]:
    """The development sets' texts, as the sentence model reads them (their final 64 tokens at most),
    with their labelled signs at +-0.7 (``python -m pipeline.analysis.vectors`` rebuilds the file)."""
    return tuple(BankRow(lang, float(v), float(a), text) for lang, v, a, _id, text in read_table(EXAMPLES_FILE))


@lru_cache(maxsize=1)
def example_ids() -> tuple[str, ...]:
    """The id of each of ``examples()``, in order (the labelled row it was made from)."""
    return tuple(row[3] for row in read_table(EXAMPLES_FILE))


@dataclass(frozen=True)
class ToneHead:
    """A ridge regression over the whole bank, blended with the bank's nearest situations.

    The regression carries the directions that hold across the bank (loss, celebration,
    danger); the nearest situations carry what a linear reading averages away (a threat told
    in soft words sits near the bank's quiet threats, not near its calm evenings).
    """

    weights: np.ndarray  # (dimension + 1, 2): valence and arousal, bias last
    vectors: np.ndarray | None = None  # (n, dimension): the bank's unit vectors, for the neighbours
    targets: np.ndarray | None = None  # (n, 2)
    neighbours: int = 5
    neighbour_share: float = 0.3
    temperature: float = 0.02  # softmax over the neighbours' cosine similarities

    @classmethod
    def fit(cls, vectors: np.ndarray, targets: np.ndarray, ridge: float = 0.3, neighbour_share: float = 0.3,
            neighbours: int = 5) -> "ToneHead":
        x = np.hstack([vectors, np.ones((len(vectors), 1))])
        penalty = ridge * np.eye(x.shape[1])
        penalty[-1, -1] = 0.0  # the bias is not shrunk
        weights = np.linalg.solve(x.T @ x + penalty, x.T @ targets)
        return cls(weights, np.asarray(vectors, dtype=np.float32), np.asarray(targets, dtype=np.float32),
                   min(neighbours, len(vectors)), neighbour_share)

    def predict(self, vectors: np.ndarray) -> np.ndarray:
        """(n, 2): valence and arousal, about -1..+1, for each unit vector."""
        linear = np.hstack([vectors, np.ones((len(vectors), 1))]) @ self.weights
        if self.vectors is None or self.targets is None or not self.neighbour_share:
            return linear
        sims = vectors @ self.vectors.T
        nearest = np.argpartition(-sims, self.neighbours - 1, axis=1)[:, : self.neighbours]
        near_sims = np.take_along_axis(sims, nearest, axis=1)
        w = np.exp((near_sims - near_sims.max(axis=1, keepdims=True)) / self.temperature)
        local = np.einsum("nk,nkj->nj", w / w.sum(axis=1, keepdims=True), self.targets[nearest])
        return (1 - self.neighbour_share) * linear + self.neighbour_share * local
