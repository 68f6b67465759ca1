"""Optional stronger models chosen by config: an emotion classifier, a summariser, a zero-shot NLI model.

Each is a Hugging Face hub id or a local directory, loaded once with plain transformers
(transformers 5 has no summarisation pipeline, and this keeps the three alike). A model
that is configured but cannot be loaded stops the worker at start with a clear message
rather than silently degrading. Each model returns plain numbers (or text); the analyser
decides how much they count.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

from .config import AnalysisConfig

log = logging.getLogger(__name__)

# Valence/arousal of the labels common emotion models use (Ekman, GoEmotions, dair-ai/emotion).
EMOTION_VA: dict[str, tuple[float, float]] = {
    "joy": (0.85, 0.5), "happiness": (0.85, 0.4), "happy": (0.85, 0.4), "love": (0.8, 0.2),
    "amusement": (0.7, 0.5), "excitement": (0.7, 0.8), "gratitude": (0.8, 0.0), "optimism": (0.7, 0.3),
    "admiration": (0.7, 0.2), "approval": (0.5, 0.0), "caring": (0.6, -0.2), "pride": (0.7, 0.4),
    "relief": (0.6, -0.4), "desire": (0.4, 0.5), "surprise": (0.2, 0.7), "realization": (0.1, 0.2),
    "curiosity": (0.3, 0.3), "neutral": (0.0, 0.0), "confusion": (-0.3, 0.3),
    "sadness": (-0.8, -0.4), "sad": (-0.8, -0.4), "grief": (-0.9, -0.3), "remorse": (-0.7, -0.2),
    "disappointment": (-0.6, -0.2), "embarrassment": (-0.5, 0.3), "nervousness": (-0.5, 0.6),
    "fear": (-0.8, 0.7), "anger": (-0.8, 0.8), "annoyance": (-0.5, 0.5), "disapproval": (-0.5, 0.2),
    "disgust": (-0.7, 0.4),
}


class ModelLoadError(RuntimeError):
    """A configured optional model could not be loaded (message names the variable)."""


def _load(source: str, variable: str, kind: str, device: str):  # type: ignore[no-untyped-def]
    import transformers
    from transformers import AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(source)
        model = getattr(transformers, kind).from_pretrained(source).to(device).eval()
    except Exception as error:  # noqa: BLE001 - any loading failure is a config problem
        raise ModelLoadError(f"{variable}='{source}' could not be loaded as a {kind} model: {error}") from error
    return tokenizer, model


@dataclass
class EmotionModel:
    tokenizer: object
    model: object
    labels: list[str]
    device: str = "cpu"

    @classmethod
    def load(cls, source: str, device: str = "cpu") -> "EmotionModel":
        tokenizer, model = _load(source, "TEXTUNES_EMOTION_MODEL", "AutoModelForSequenceClassification", device)
        raw = [str(model.config.id2label[i]) for i in range(model.config.num_labels)]
        labels = [label.casefold() for label in raw]
        if not any(label in EMOTION_VA for label in labels):
            raise ModelLoadError(
                f"TEXTUNES_EMOTION_MODEL='{source}' has labels {raw}; none is an emotion this analyser "
                f"knows ({', '.join(sorted(EMOTION_VA))})."
            )
        return cls(tokenizer, model, labels, device)

    def valence_arousal(self, text: str) -> tuple[float, float, float]:
        """(valence, arousal, weight) from the label probabilities; weight = share of known labels."""
        import torch

        with torch.inference_mode():
            batch = self.tokenizer(text, truncation=True, max_length=256, return_tensors="pt").to(self.device)  # type: ignore[operator]
            logits = self.model(**batch).logits[0].float()  # type: ignore[operator]
            multi = getattr(self.model.config, "problem_type", None) == "multi_label_classification"  # type: ignore[attr-defined]
            probs = (torch.sigmoid(logits) if multi else torch.softmax(logits, -1)).cpu().numpy()
        known = [(p, EMOTION_VA[label]) for p, label in zip(probs, self.labels) if label in EMOTION_VA]
        weight = float(sum(p for p, _ in known))
        if weight <= 0:
            return 0.0, 0.0, 0.0
        v = sum(p * va[0] for p, va in known) / weight
        a = sum(p * va[1] for p, va in known) / weight
        return float(v), float(a), min(1.0, weight)


@dataclass
class Summariser:
    tokenizer: object
    model: object
    device: str = "cpu"

    @classmethod
    def load(cls, source: str, device: str = "cpu") -> "Summariser":
        tokenizer, model = _load(source, "TEXTUNES_SUMMARY_MODEL", "AutoModelForSeq2SeqLM", device)
        return cls(tokenizer, model, device)

    def summarise(self, text: str, max_words: int) -> str:
        import torch

        with torch.inference_mode():
            batch = self.tokenizer(text, truncation=True, max_length=512, return_tensors="pt").to(self.device)  # type: ignore[operator]
            batch.pop("token_type_ids", None)
            out = self.model.generate(**batch, max_new_tokens=48, num_beams=1, do_sample=False)  # type: ignore[attr-defined]
        summary = self.tokenizer.decode(out[0], skip_special_tokens=True)  # type: ignore[attr-defined]
        words = " ".join(summary.split()).split(" ")
        return " ".join(words[:max_words]).strip()


@dataclass
class ZeroShotMoods:
    tokenizer: object
    model: object
    entailment: int
    device: str = "cpu"
    candidates: int = 8

    @classmethod
    def load(cls, source: str, device: str = "cpu") -> "ZeroShotMoods":
        tokenizer, model = _load(source, "TEXTUNES_NLI_MODEL", "AutoModelForSequenceClassification", device)
        index = [i for label, i in model.config.label2id.items() if str(label).casefold().startswith("entail")]
        if not index:
            raise ModelLoadError(
                f"TEXTUNES_NLI_MODEL='{source}' has no 'entailment' label ({list(model.config.label2id)}); "
                "use an NLI model such as facebook/bart-large-mnli."
            )
        return cls(tokenizer, model, int(index[0]), device)

    def probabilities(self, text: str, moods: list[str]) -> np.ndarray:
        import torch

        hypotheses = [f"The mood of this text is {m.lower()}." for m in moods]
        with torch.inference_mode():
            batch = self.tokenizer([text] * len(moods), hypotheses, truncation="only_first", max_length=256,  # type: ignore[operator]
                                   padding=True, return_tensors="pt").to(self.device)
            logits = self.model(**batch).logits[:, self.entailment].float()  # type: ignore[operator]
            return torch.softmax(logits, -1).cpu().numpy()


@dataclass
class OptionalModels:
    emotion: EmotionModel | None = None
    summariser: Summariser | None = None
    nli: ZeroShotMoods | None = None

    @classmethod
    def load(cls, config: AnalysisConfig) -> "OptionalModels | None":
        if not (config.emotion_model or config.summary_model or config.nli_model):
            return None
        return cls(
            emotion=EmotionModel.load(config.emotion_model, config.device) if config.emotion_model else None,
            summariser=Summariser.load(config.summary_model, config.device) if config.summary_model else None,
            nli=ZeroShotMoods.load(config.nli_model, config.device) if config.nli_model else None,
        )
