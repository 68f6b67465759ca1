"""Settings of the text analyser, read from environment variables through :mod:`pipeline.env`."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from pipeline.env import SettingError, read, setting

ConfigError = SettingError  # an environment variable holds a value the analyser cannot use


@dataclass(frozen=True)
class AnalysisConfig:
    """Which optional models to load and how much text to read.

    Every model field takes a Hugging Face hub id or a local directory; empty = not used.
    The embedded default (packaged sentence model + lexicons) needs none of them.
    """

    emotion_model: str = setting("TEXTUNES_EMOTION_MODEL", "")
    summary_model: str = setting("TEXTUNES_SUMMARY_MODEL", "")
    nli_model: str = setting("TEXTUNES_NLI_MODEL", "")
    llm_url: str = setting("TEXTUNES_LLM_URL", "")
    llm_model: str = setting("TEXTUNES_LLM_MODEL", "")
    llm_api_key: str = setting("TEXTUNES_LLM_API_KEY", "", secret=True)
    llm_timeout: float = setting("TEXTUNES_LLM_TIMEOUT", 10.0, minimum=0.001)
    max_analysis_chars: int = setting("TEXTUNES_MAX_ANALYSIS_CHARS", 20_000, minimum=1)
    # tokens of a text the sentence model reads (the speed bound); the lexicons read all of it
    max_tokens: int = setting("TEXTUNES_ANALYSIS_MAX_TOKENS", 128, minimum=8)
    device: str = setting("TEXTUNES_ANALYSIS_DEVICE", "cpu")  # where the optional models run
    # BLAS threads of the sentence model while it encodes (0 = the BLAS default); numpy's OpenBLAS, not torch's
    threads: int = setting("TEXTUNES_ANALYSIS_THREADS", 1, minimum=0)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> "AnalysisConfig":
        return read(cls, env)
