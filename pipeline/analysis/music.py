"""Musical rules that turn a feeling into concrete choices: instrument kits, bpm, key."""

from __future__ import annotations

# Instruments that suit each inferable genre (first = most typical).
GENRE_KITS: dict[str, tuple[str, ...]] = {
    "Acoustic": ("Acoustic Guitar", "Piano", "Cello"),
    "Ambient": ("Pads", "Synthesizer", "Piano", "Chimes"),
    "Ballad": ("Piano", "Strings", "Cello", "Acoustic Guitar"),
    "Blues": ("Electric Guitar", "Harmonica", "Bass", "Piano"),
    "Chill Out": ("Electric piano", "Pads", "Bass", "Drum machine"),
    "Cinematic": ("Strings", "Piano", "French horn", "Timpani", "Cello"),
    "Classical": ("Piano", "Strings", "Violin", "Cello", "Flute"),
    "Country": ("Acoustic Guitar", "Banjo", "Harmonica", "Bass"),
    "Dance": ("Synthesizer", "Drum machine", "Synth bass", "Handclaps"),
    "Disco": ("Bass", "Strings", "Drum", "Electric Guitar"),
    "Downtempo": ("Electric piano", "Pads", "Bass", "Drum machine"),
    "Dream Pop": ("Synthesizer", "Electric Guitar", "Pads"),
    "EDM": ("Synthesizer", "Synth bass", "Drum machine"),
    "Electronic music": ("Synthesizer", "Synth bass", "Drum machine"),
    "Epic": ("Orchestra", "Brass", "Taiko drums", "Strings"),
    "Fantasy": ("Harp", "Flute", "Celesta", "Strings", "Glockenspiel"),
    "Folk": ("Acoustic Guitar", "Violin", "Accordion", "Harmonica"),
    "Funk": ("Bass", "Electric Guitar", "Brass", "Drum"),
    "Hip hop": ("Drum machine", "Bass", "Piano", "808"),
    "Horror": ("Strings", "Piano", "Music box", "Pads"),
    "House": ("Synthesizer", "Drum machine", "Electric piano", "Synth bass"),
    "Human Drama": ("Piano", "Strings", "Cello"),
    "Indie Folk": ("Acoustic Guitar", "Piano", "Whistle"),
    "Indie Pop": ("Electric Guitar", "Synthesizer", "Drum", "Handclaps"),
    "Indie Rock": ("Electric Guitar", "Bass", "Drum"),
    "Jazz": ("Saxophone", "Piano", "Double bass", "Drum"),
    "Korean traditional music": ("Zither", "Ethnic flute", "Ethnic percussion"),
    "Lofi": ("Electric piano", "Drum machine", "Bass", "Piano"),
    "Lullaby": ("Music box", "Harp", "Celesta", "Piano"),
    "Metal": ("Electric Guitar", "Drum", "Bass"),
    "Modern Classical": ("Piano", "Cello", "Strings"),
    "Music for children": ("Ukulele", "Xylophone", "Glockenspiel", "Handclaps"),
    "New Age": ("Pads", "Piano", "Flute", "Harp", "Chimes"),
    "Orchestral": ("Orchestra", "Strings", "French horn", "Timpani"),
    "Pop": ("Synthesizer", "Drum", "Bass", "Piano"),
    "Post Rock": ("Electric Guitar", "Drum", "Strings"),
    "R&B": ("Electric piano", "Bass", "Drum machine"),
    "Reggae": ("Electric Guitar", "Bass", "Drum"),
    "Rock": ("Electric Guitar", "Drum", "Bass"),
    "Smooth Jazz": ("Saxophone", "Electric piano", "Bass"),
    "Soul": ("Electric piano", "Bass", "Brass", "Drum"),
    "Synth Pop": ("Synthesizer", "Drum machine", "Synth bass"),
    "Techno": ("Synthesizer", "Drum machine", "Synth bass"),
    "Trailer": ("Orchestra", "Brass", "Timpani", "Synthesizer"),
    "Trap": ("808", "Drum machine", "Synthesizer"),
    "Trip Hop": ("Drum machine", "Bass", "Piano", "Strings"),
    "Video game music": ("Synthesizer", "Drum", "Bass"),
    "Battle": ("Taiko drums", "Brass", "Strings", "Timpani"),
    "Action": ("Strings", "Brass", "Drum", "Synthesizer"),
    "Christmas": ("Bell", "Glockenspiel", "Piano", "Strings"),
    "Halloween": ("Organ", "Pizzicato strings", "Music box"),
    "Motivational": ("Piano", "Strings", "Drum", "Synthesizer"),
    "Latin": ("Acoustic Guitar", "Trumpet", "Percussion"),
}

# Typical bpm of a genre where it is characteristic.
GENRE_BPM: dict[str, int] = {
    "Lofi": 80, "Hip hop": 90, "EDM": 126, "House": 124, "Techno": 130, "Dance": 124, "Disco": 118,
    "Ballad": 68, "Lullaby": 62, "Ambient": 68, "New Age": 66, "Chill Out": 90, "Downtempo": 85,
    "Trap": 140, "Metal": 150, "Rock": 125, "Reggae": 82, "Smooth Jazz": 88, "Trip Hop": 86,
    "Battle": 140, "Action": 140, "Trailer": 120, "Funk": 108, "Synth Pop": 118, "Pop": 112,
}


def bpm_for(arousal: float, genres: list[str]) -> int:
    """Tempo from arousal (-1 -> ~62 bpm, +1 -> ~142 bpm), pulled toward the genre's own."""
    bpm = 102 + 40 * max(-1.0, min(1.0, arousal))
    hints = [GENRE_BPM[g] for g in genres if g in GENRE_BPM]
    if hints:
        bpm = 0.5 * bpm + 0.5 * hints[0]
    return int(round(bpm / 2) * 2)


def key_mode(valence: float, arousal: float) -> str:
    return "minor" if valence < -0.05 or (valence < 0.15 and arousal < -0.3) else "major"


def tempo_word(bpm: int) -> str:
    return "slow" if bpm < 85 else "mid-tempo" if bpm < 115 else "fast"
