"""A take's tokens as bytes, to keep beside its audio (for extending it later).

Small: 4 codebooks x 50 frames per second x 2 bytes = 400 bytes per second of music. The
format is a 4-byte magic, the codebook count, then int16 little-endian codes row by row.
No torch here: the frontends and the queue handle these bytes too.
"""

from __future__ import annotations

import numpy as np

MAGIC = b"TTK1"


class BadTokens(ValueError):
    """Bytes that are not a take's tokens."""


def codes_to_bytes(codes) -> bytes:  # type: ignore[no-untyped-def]
    """``(codebooks, frames)`` integer codes (numpy or torch) -> bytes."""
    array = np.asarray(codes.cpu() if hasattr(codes, "cpu") else codes)
    if array.ndim != 2 or not 0 < array.shape[0] < 256:
        raise BadTokens(f"codes must be (codebooks, frames), got shape {array.shape}")
    if array.size and (array.min() < 0 or array.max() > np.iinfo(np.int16).max):
        raise BadTokens("codes out of range")
    return MAGIC + bytes([array.shape[0]]) + array.astype("<i2").tobytes()


def codes_from_bytes(data: bytes) -> np.ndarray:
    """Bytes from :func:`codes_to_bytes` -> int64 ``(codebooks, frames)``."""
    if not data.startswith(MAGIC) or len(data) < 5:
        raise BadTokens("not TexTuneS tokens")
    books = data[4]
    body = data[5:]
    if books == 0 or len(body) % (2 * books):
        raise BadTokens("truncated tokens")
    return np.frombuffer(body, dtype="<i2").reshape(books, -1).astype(np.int64)


FRAME_RATE = 50  # MusicGen's 32 kHz EnCodec: 50 frames per second


def frames_in(data: bytes) -> int:
    """How many frames the tokens in ``data`` hold, without decoding them."""
    if not data.startswith(MAGIC) or len(data) < 5 or data[4] == 0:
        raise BadTokens("not TexTuneS tokens")
    return (len(data) - 5) // (2 * data[4])
