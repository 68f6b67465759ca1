"""Which job, and which take of it, a chat message shows, so a 🔁, ➕ or button on a posted
message finds its request.

``P:msg:<platform>:<message>`` -> ``Shown.encode()`` (``<job>:<take>``), kept as long as the
job record (the audio TTL). The message key is whatever the platform module uses to
name a message (a Discord message id; on Slack ``<channel>:<ts>`` or ``file:<file id>``).
A link written by an older release holds the job id alone: it reads as the job's status.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from worker.queue import Job, JobQueue

_SHOWN = re.compile(r"([0-9A-Za-z_-]{1,64})(?::(\d{1,3}))?")


@dataclass(frozen=True)
class Shown:
    """What a message shows: a job, and one take of it (``take`` 0: the job's status message)."""

    job_id: str
    take: int = 0

    def encode(self) -> str:
        return f"{self.job_id}:{self.take}"

    @classmethod
    def decode(cls, text: str) -> "Shown | None":
        """The inverse of ``encode`` (a bare job id too); None for anything else."""
        match = _SHOWN.fullmatch(text.strip())
        if match is None:
            return None
        job_id, take = match.groups()
        return cls(job_id, int(take or 0))


class MessageLinks:
    def __init__(self, queue: JobQueue) -> None:
        self.queue = queue

    def _key(self, platform: str, message_id: str) -> str:
        return f"{self.queue.prefix}:msg:{platform}:{message_id}"

    def link(self, platform: str, message_id: str, shown: Shown) -> None:
        """Remember what a chat message shows."""
        self.queue.redis.set(self._key(platform, message_id), shown.encode(), ex=self.queue.audio_ttl_s)

    def shown(self, platform: str, message_id: str) -> Shown | None:
        value = self.queue.redis.get(self._key(platform, message_id))
        return Shown.decode(value.decode()) if value else None

    def job_for_message(self, platform: str, message_id: str) -> Job | None:
        shown = self.shown(platform, message_id)
        return self.queue.get_job(shown.job_id) if shown else None
