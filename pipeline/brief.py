"""The brief for a tags request (no text to analyse): the user's words, as given."""

from __future__ import annotations

from pipeline.caption import build_caption
from pipeline.catalog import catalog
from pipeline.models import Brief, TuneRequest

DEFAULT_BPM = 100


def request_bpm(request: TuneRequest) -> int | None:
    """The bpm the user asked for, directly or as slow/medium/fast."""
    if request.bpm is not None:
        return request.bpm
    if request.tempo:
        tempo = catalog().tempo(request.tempo)
        return tempo.bpm if tempo else None
    return None


def brief_from_tags(request: TuneRequest) -> Brief:
    caption = build_caption(
        moods=request.moods, genres=request.genres, instruments=request.instruments,
        bpm=request.bpm, tempo=request.tempo, free_words=request.prompt,
    )
    return Brief(
        moods=list(request.moods), genres=list(request.genres), instruments=list(request.instruments),
        bpm=request_bpm(request) or DEFAULT_BPM, theme=request.prompt[:200], caption=caption,
        explanation=caption,
    )
