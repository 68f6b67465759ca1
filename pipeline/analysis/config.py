"""Settings of the text analyser, read from environment variables."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass


class ConfigError(ValueError):
    """An environment variable holds a value the analyser cannot use."""


@dataclass(frozen=True)
class AnalysisConfig:
    """Which optional models to load and how much text to read.

    Every model field takes a Hugging Face hub id or a local directory; empty = not used.
    The embedded default (packaged sentence model + lexicons) needs none of them.
    """

    emotion_model: str = ""
    summary_model: str = ""
    nli_model: str = ""
    llm_url: str = ""
    llm_model: str = ""
    llm_api_key: str = ""
    llm_timeout: float = 10.0
    max_analysis_chars: int = 20_000
    max_sentences: int = 16  # sentences embedded per text (the speed bound)
    device: str = "cpu"
    threads: int = 1  # torch CPU threads while the sentence model encodes (0 = torch's default); restored after

    @classmethod
    def from_env(cls, env: Mapping[str, str] = os.environ) -> "AnalysisConfig":
        def text(name: str) -> str:
            return env.get(name, "").strip()

        def number(name: str, default: float, kind: type) -> float:
            raw = text(name)
            if not raw:
                return default
            try:
                value = kind(raw)
            except ValueError:
                raise ConfigError(f"{name} must be a number (got '{raw}').") from None
            if value <= 0:
                raise ConfigError(f"{name} must be greater than 0 (got '{raw}').")
            return value

        return cls(
            emotion_model=text("TEXTUNES_EMOTION_MODEL"),
            summary_model=text("TEXTUNES_SUMMARY_MODEL"),
            nli_model=text("TEXTUNES_NLI_MODEL"),
            llm_url=text("TEXTUNES_LLM_URL"),
            llm_model=text("TEXTUNES_LLM_MODEL"),
            llm_api_key=text("TEXTUNES_LLM_API_KEY"),
            llm_timeout=float(number("TEXTUNES_LLM_TIMEOUT", 10.0, float)),
            max_analysis_chars=int(number("TEXTUNES_MAX_ANALYSIS_CHARS", 20_000, int)),
            max_sentences=int(number("TEXTUNES_ANALYSIS_MAX_SENTENCES", 16, int)),
            device=text("TEXTUNES_ANALYSIS_DEVICE") or "cpu",
            threads=0 if text("TEXTUNES_ANALYSIS_THREADS") == "0" else int(number("TEXTUNES_ANALYSIS_THREADS", 1, int)),
        )
