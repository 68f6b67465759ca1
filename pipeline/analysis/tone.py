"""The tone head: valence and arousal read from a sentence vector.

A ridge regression fitted, when the analyser loads, on the situations in ``data/bank.tsv``
(English and Korean, each with a valence and an arousal). Because the bank describes
situations (a comeback win, a whispered threat, a rant, a loss) and the sentence model reads
both languages, the head scores what happens in a text, not only its feeling words.
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


@dataclass(frozen=True)
class ToneHead:
    weights: np.ndarray  # (dimension + 1, 2): valence and arousal, bias last

    @classmethod
    def fit(cls, vectors: np.ndarray, targets: np.ndarray, ridge: float = 0.3) -> "ToneHead":
        x = np.hstack([vectors, np.ones((len(vectors), 1))])
        penalty = ridge * np.eye(x.shape[1])
        penalty[-1, -1] = 0.0  # the bias is not shrunk
        return cls(np.linalg.solve(x.T @ x + penalty, x.T @ targets))

    def predict(self, vectors: np.ndarray) -> np.ndarray:
        """(n, 2): valence and arousal, about -1..+1, for each unit vector."""
        return np.hstack([vectors, np.ones((len(vectors), 1))]) @ self.weights
