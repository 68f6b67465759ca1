"""What goes out with a take: its audio file (fitted to the channel's upload limit, lossless
first), its waveform picture, its line, and the take its buttons act on.

Platform-neutral: the event pump prepares a ``TakePost``; the platform's output uploads it.
"""

from __future__ import annotations

from dataclasses import dataclass

from bot import replies
from bot.followups import Action, buttons
from bot.links import Shown
from pipeline.audio_files import CONTENT_TYPES as AUDIO_TYPES, fit_audio
from worker.queue import Take

CONTENT_TYPES = {**AUDIO_TYPES, "png": "image/png"}


@dataclass(frozen=True)
class Upload:
    name: str
    data: bytes

    @property
    def content_type(self) -> str:
        return CONTENT_TYPES.get(self.name.rpartition(".")[2], "application/octet-stream")


@dataclass(frozen=True)
class TakePost:
    """One take as a message: ``text`` (the take's line and any notes), the audio, the
    waveform picture (None when the worker made none or it expired), and what its buttons
    act on."""

    text: str
    number: int  # the take's number in its thread
    audio: Upload
    preview: Upload | None
    shown: Shown
    loop: bool

    @property
    def files(self) -> list[Upload]:
        return [self.audio, *([self.preview] if self.preview else [])]

    @property
    def buttons(self) -> list[Action]:
        return buttons(self.loop)


def take_post(take: Take, *, job_id: str, caption: str, number: int, extends: int, audio: bytes,
              preview: bytes | None, limit_bytes: int) -> TakePost:
    """The message for ``take``. Raises ``TooLargeForLimit`` when the audio doesn't fit
    ``limit_bytes`` (with the picture) even as the smallest MP3. CPU-bound when the audio
    must be re-encoded: run it off the event loop."""
    if preview and len(preview) > limit_bytes // 10:  # a picture must not cost the audio its quality
        preview = None
    room = limit_bytes - len(preview or b"")
    fitted = fit_audio(audio, take.format, room)
    notes = [take.note]
    if fitted.changed_from(take.format):
        notes.append(replies.fit_note(take.format, fitted.format, fitted.bitrate_kbps, limit_bytes, loop=take.loop))
    name = replies.filename(caption, number, fitted.format, loop=take.loop)
    return TakePost(
        text=replies.take_line(take, number, extends=extends, notes=tuple(notes)),
        number=number,
        audio=Upload(name, fitted.data),
        preview=Upload(replies.preview_name(name), preview) if preview else None,
        shown=Shown(job_id, take.index),
        loop=take.loop,
    )
