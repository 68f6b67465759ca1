"""MusicGen-melody: music that follows a hummed or played clip (``TEXTUNES_MELODY_MODEL``).

The melody model conditions on the clip's chroma (see ``worker.chroma``) as well as the
caption, through transformers' ``MusicgenMelodyForConditionalGeneration``. Its decoder has
no cross-attention (the conditioning is a prefix), so it runs on transformers' own
``generate`` (the reference engine), one batch at a time, at most one 30 s window.
"""

from __future__ import annotations

import torch
from transformers import AutoTokenizer, MusicgenMelodyForConditionalGeneration

from worker.chroma import chroma
from worker.musicgen import MusicGen, Row


class MelodyGen(MusicGen):
    """A loaded MusicGen-melody checkpoint (hub id such as ``facebook/musicgen-melody``, or a directory)."""

    network_class = MusicgenMelodyForConditionalGeneration
    setting = "TEXTUNES_MELODY_MODEL"

    def _conditioning(self, rows: list[Row]) -> dict[str, torch.Tensor]:
        missing = [row for row in rows if row.melody is None]
        if missing:
            raise ValueError("every take of a melody model needs a melody clip")
        features = chroma([row.melody for row in rows], sample_rate=self.sample_rate)  # type: ignore[misc]
        return {"input_features": features.to(self.device, self.dtype)}

    @classmethod
    def _from_pretrained(cls, model: str, dtype: torch.dtype, *, local_files_only: bool):  # type: ignore[no-untyped-def]
        # The melody processor's feature extractor needs torchaudio; only its tokenizer is used.
        tokenizer = AutoTokenizer.from_pretrained(model, local_files_only=local_files_only)
        network = cls.network_class.from_pretrained(model, dtype=dtype, local_files_only=local_files_only)
        return tokenizer, network
