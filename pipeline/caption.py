"""Brief or tags -> the natural-language caption MusicGen is conditioned on."""

from __future__ import annotations

from pipeline.catalog import catalog

# How a catalog name reads best inside a MusicGen caption.
_CAPTION_WORDS = {
    "Lofi": "lo-fi hip hop", "DnB": "drum and bass", "EDM": "EDM", "Hip hop": "hip hop",
    "Electronic music": "electronic", "Pop music": "pop", "Folk music": "folk",
    "R&B": "R&B", "Alt R&B": "alternative R&B", "Sci-Fi": "sci-fi",
    "Korean traditional music": "Korean traditional", "Video game music": "video game",
    "Music for children": "children's", "Drum": "drums", "Guitars": "guitar",
}


def caption_word(name: str) -> str:
    if name in _CAPTION_WORDS:
        return _CAPTION_WORDS[name]
    return name if name.isupper() else name.lower()


def _join(words: list[str]) -> str:
    if len(words) <= 1:
        return "".join(words)
    return ", ".join(words[:-1]) + " and " + words[-1]


def build_caption(
    *,
    moods: list[str] = (),  # type: ignore[assignment]
    genres: list[str] = (),  # type: ignore[assignment]
    instruments: list[str] = (),  # type: ignore[assignment]
    bpm: int | None = None,
    tempo: str | None = None,
    free_words: str = "",
    mode: str | None = None,
) -> str:
    """'calm, dreamy lo-fi hip hop with piano and soft drums, 80 bpm' — deterministic.

    Order: moods, genres ("music" when none), "with" instruments, free words, key, tempo.
    """
    head = ", ".join(caption_word(m) for m in moods)
    genre = " ".join(caption_word(g) for g in genres) or ("music" if not free_words or moods else "")
    parts = [f"{head} {genre}".strip()] if head or genre else []
    if instruments:
        inst = _join([caption_word(i) for i in instruments])
        if parts:
            parts[0] += f" with {inst}"
        else:
            parts.append(f"music with {inst}")
    free = " ".join(free_words.split())
    if free:
        parts.append(free)
    if mode in ("major", "minor"):
        parts.append(f"in a {mode} key")
    if bpm:
        parts.append(f"{bpm} bpm")
    elif tempo:
        t = catalog().tempo(tempo)
        parts.append(f"{tempo.lower()} tempo" if t is None else f"{t.en.lower()} tempo, around {t.bpm} bpm")
    return ", ".join(p for p in parts if p)
