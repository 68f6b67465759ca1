"""A small PNG of a take's waveform, shown inline beside the file in chat.

For a loop, a second panel shows the seam as the listener hears it on repeat: the loop's
last quarter second followed by its first, with the join marked. Drawn with numpy and
Pillow only.
"""

from __future__ import annotations

import io

import numpy as np
from PIL import Image, ImageDraw

WIDTH, HEIGHT = 800, 140
SEAM_WIDTH = 200
SEAM_S = 0.25
BACKGROUND = (24, 26, 33)
WAVE = (120, 180, 255)
SEAM = (255, 110, 110)
TEXT = (170, 175, 190)


def waveform_png(samples: np.ndarray, rate: int, *, loop: bool = False) -> bytes:
    """The waveform of mono (or ``(n, channels)``) float samples as a PNG."""
    mono = np.asarray(samples, dtype=np.float32)
    if mono.ndim == 2:
        mono = mono.mean(axis=1)
    width = WIDTH + (SEAM_WIDTH if loop else 0)
    image = Image.new("RGB", (width, HEIGHT), BACKGROUND)
    draw = ImageDraw.Draw(image)
    _wave(draw, mono, 0, WIDTH, WAVE)
    seconds = len(mono) / rate
    step = next(s for s in (1, 5, 10, 30, 60, 120) if seconds / s <= 12)
    for tick in np.arange(step, seconds, step):
        x = int(tick / seconds * WIDTH)
        draw.line([(x, HEIGHT - 6), (x, HEIGHT)], fill=TEXT)
        draw.text((x + 2, HEIGHT - 14), f"{int(tick // 60)}:{int(tick % 60):02d}", fill=TEXT)
    if loop:
        edge = int(SEAM_S * rate)
        seam = np.concatenate([mono[-edge:], mono[:edge]])
        _wave(draw, seam, WIDTH, SEAM_WIDTH, WAVE)
        middle = WIDTH + SEAM_WIDTH // 2
        draw.line([(WIDTH, 0), (WIDTH, HEIGHT)], fill=TEXT)
        draw.line([(middle, 0), (middle, HEIGHT)], fill=SEAM)
        draw.text((WIDTH + 4, 2), "seam", fill=SEAM)
    out = io.BytesIO()
    image.save(out, format="PNG", optimize=True)
    return out.getvalue()


def _wave(draw: ImageDraw.ImageDraw, samples: np.ndarray, left: int, width: int, colour: tuple[int, int, int]) -> None:
    """Min/max of each pixel column, scaled to the panel's height."""
    middle = HEIGHT // 2
    if len(samples) == 0:
        draw.line([(left, middle), (left + width, middle)], fill=colour)
        return
    edges = np.linspace(0, len(samples), width + 1).astype(int)
    peak = max(float(np.abs(samples).max()), 1e-6)
    for column in range(width):
        chunk = samples[edges[column]: max(edges[column + 1], edges[column] + 1)]
        top = middle - int(float(chunk.max()) / peak * (middle - 4))
        bottom = middle - int(float(chunk.min()) / peak * (middle - 4))
        draw.line([(left + column, top), (left + column, bottom)], fill=colour)
