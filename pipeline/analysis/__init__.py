"""Text -> musical brief (issue 5): offline embedded analyser, optional stronger models."""

from .analyser import Analyser
from .config import AnalysisConfig, ConfigError
from .extras import ModelLoadError
from .text import AnalysisError

__all__ = ["Analyser", "AnalysisConfig", "AnalysisError", "ConfigError", "ModelLoadError"]
