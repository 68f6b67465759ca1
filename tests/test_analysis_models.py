"""Optional models by config (emotion classifier, summariser, zero-shot NLI), exercised on tiny
random checkpoints saved with ``save_pretrained`` into a temp dir: the same loading code a
deployment uses with a hub id or a local directory, without the network."""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from pipeline.analysis import Analyser, AnalysisConfig  # noqa: E402
from pipeline.analysis.extras import ModelLoadError, OptionalModels  # noqa: E402
from pipeline.catalog import catalog  # noqa: E402

WORDS = ("the a rain night sea storm happy sad calm quiet loud joy tears music piano song light dark "
         "dance slow fast we she he ran cried laughed home sky wind fire old new love lost").split()


def _tokenizer(directory: Path) -> transformers.PreTrainedTokenizerBase:
    directory.mkdir(parents=True, exist_ok=True)
    tokens = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", ".", ",", "mood", "of", "this", "text", "is", *WORDS]
    return transformers.BertTokenizerFast(vocab={token: i for i, token in enumerate(tokens)})


def _classifier(directory: Path, labels: list[str]) -> Path:
    torch.manual_seed(0)
    tokenizer = _tokenizer(directory)
    config = transformers.BertConfig(
        vocab_size=tokenizer.vocab_size, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
        intermediate_size=32, max_position_embeddings=512,
        id2label=dict(enumerate(labels)), label2id={label: i for i, label in enumerate(labels)},
    )
    transformers.BertForSequenceClassification(config).save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return directory


def _summariser(directory: Path) -> Path:
    torch.manual_seed(0)
    tokenizer = _tokenizer(directory)
    config = transformers.BartConfig(
        vocab_size=tokenizer.vocab_size, d_model=16, encoder_layers=1, decoder_layers=1,
        encoder_attention_heads=2, decoder_attention_heads=2, encoder_ffn_dim=32, decoder_ffn_dim=32,
        max_position_embeddings=600, pad_token_id=0, bos_token_id=2, eos_token_id=3,
        decoder_start_token_id=2, forced_eos_token_id=None,
    )
    transformers.BartForConditionalGeneration(config).save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return directory


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("tiny")
    return {
        "emotion": _classifier(root / "emotion", ["joy", "sadness", "anger", "fear", "neutral"]),
        "nli": _classifier(root / "nli", ["contradiction", "neutral", "entailment"]),
        "summary": _summariser(root / "summary"),
        "sentiment": _classifier(root / "sentiment", ["LABEL_0", "LABEL_1"]),
    }


@pytest.fixture(scope="module")
def full(checkpoints: dict[str, Path]) -> Analyser:
    """Analyser.load with all three optional models, as the worker does at start."""
    return Analyser.load(AnalysisConfig(emotion_model=str(checkpoints["emotion"]),
                                        summary_model=str(checkpoints["summary"]),
                                        nli_model=str(checkpoints["nli"])))


def test_no_optional_model_configured_loads_nothing() -> None:
    assert OptionalModels.load(AnalysisConfig()) is None


def test_analyser_with_all_optional_models_still_makes_a_valid_brief(full: Analyser) -> None:
    assert full.extras is not None and full.extras.emotion and full.extras.summariser and full.extras.nli
    for text in ("The storm came at night and she cried for the lost ship.", "비가 오는 밤, 혼자 음악을 들었다."):
        brief = full.analyse_text(text)
        assert -1 <= brief.valence <= 1 and -1 <= brief.arousal <= 1
        assert brief.moods and all(catalog().lookup("mood", m) for m in brief.moods)
        assert 0 < len(brief.theme.split()) <= 25


def test_emotion_model_moves_valence_toward_its_reading(checkpoints: dict[str, Path], full: Analyser) -> None:
    extras = OptionalModels.load(AnalysisConfig(emotion_model=str(checkpoints["emotion"])))
    assert extras is not None and extras.emotion is not None
    text = "we laughed and danced in the light"
    v, a, weight = extras.emotion.valence_arousal(text)  # plain numbers; the analyser mixes them
    assert -1 <= v <= 1 and -1 <= a <= 1 and weight == pytest.approx(1.0)
    plain = copy.copy(full)
    plain.extras = None
    with_emotion = copy.copy(full)
    with_emotion.extras = extras
    base, mixed = plain.analyse_text(text), with_emotion.analyse_text(text)
    assert mixed.valence == pytest.approx(0.5 * base.valence + 0.5 * v, abs=0.011)  # half built-in, half model
    assert mixed.arousal == pytest.approx(0.5 * base.arousal + 0.5 * a, abs=0.011)


@dataclass
class _FakeNLI:
    """Stands in for ZeroShotMoods: records what it is asked and prefers one mood (or none)."""

    prefer: str | None = None
    candidates: int = 8
    asked: list[list[str]] = field(default_factory=list)

    def probabilities(self, text: str, moods: list[str]) -> np.ndarray:
        self.asked.append(list(moods))
        if self.prefer not in moods:
            return np.full(len(moods), 1 / len(moods))
        return np.array([1.0 if m == self.prefer else 0.0 for m in moods])


def test_nli_model_reranks_the_analysers_best_moods(checkpoints: dict[str, Path], full: Analyser) -> None:
    extras = OptionalModels.load(AnalysisConfig(nli_model=str(checkpoints["nli"])))
    assert extras is not None and extras.nli is not None
    names = WORDS[2:22]  # words the tiny vocabulary knows, so hypotheses differ
    assert sum(extras.nli.probabilities("the sea", names[:3])) == pytest.approx(1.0, abs=1e-5)

    text = "The storm came at night and she cried for the lost ship."
    analyser = copy.copy(full)
    analyser.extras = OptionalModels(nli=_FakeNLI())  # type: ignore[arg-type]
    indifferent = analyser.analyse_text(text)
    asked = analyser.extras.nli.asked[-1]  # type: ignore[union-attr]
    assert len(asked) == 8 and set(indifferent.moods) <= set(asked)  # it only ranks the analyser's 8 best
    analyser.extras = OptionalModels(nli=_FakeNLI(prefer=asked[-1]))  # type: ignore[arg-type]
    analyser.nli_weight = 50.0
    assert analyser.analyse_text(text).moods[0] == asked[-1]  # a confident model moves its mood to the top


def test_summariser_theme_is_capped(checkpoints: dict[str, Path]) -> None:
    extras = OptionalModels.load(AnalysisConfig(summary_model=str(checkpoints["summary"])))
    assert extras is not None and extras.summariser is not None
    summary = extras.summariser.summarise("the rain fell on the old home and she cried " * 20, max_words=5)
    assert len(summary.split()) <= 5


def test_emotion_model_with_unknown_labels_is_refused_clearly(checkpoints: dict[str, Path]) -> None:
    with pytest.raises(ModelLoadError, match="TEXTUNES_EMOTION_MODEL.*LABEL_0"):
        OptionalModels.load(AnalysisConfig(emotion_model=str(checkpoints["sentiment"])))


def test_nli_model_without_entailment_label_is_refused_clearly(checkpoints: dict[str, Path]) -> None:
    with pytest.raises(ModelLoadError, match="TEXTUNES_NLI_MODEL.*entailment"):
        OptionalModels.load(AnalysisConfig(nli_model=str(checkpoints["emotion"])))


def test_missing_model_directory_names_the_variable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ModelLoadError, match="TEXTUNES_SUMMARY_MODEL='.*nothing-here'"):
        OptionalModels.load(AnalysisConfig(summary_model=str(tmp_path / "nothing-here")))


def test_cli_reports_a_model_that_will_not_load(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    import argparse

    from pipeline.analysis import cli

    monkeypatch.setenv("TEXTUNES_NLI_MODEL", str(tmp_path / "nope"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    parser = argparse.ArgumentParser()
    cli.configure_parser(parser)
    assert cli.run(parser.parse_args(["a calm sea"])) == 1
    assert "TEXTUNES_NLI_MODEL" in capsys.readouterr().err
