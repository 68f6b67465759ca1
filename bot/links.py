"""Which job a chat message shows, so a 🔁 on a posted message finds its request.

``P:msg:<platform>:<message>`` -> job id, kept as long as the job record (the audio TTL).
The message key is whatever the platform module uses to name a message (a Discord message
id; on Slack ``<channel>:<ts>`` or ``file:<file id>``).
"""

from __future__ import annotations

from worker.queue import Job, JobQueue


class MessageLinks:
    def __init__(self, queue: JobQueue) -> None:
        self.queue = queue

    def _key(self, platform: str, message_id: str) -> str:
        return f"{self.queue.prefix}:msg:{platform}:{message_id}"

    def link(self, platform: str, message_id: str, job_id: str) -> None:
        """Remember that a chat message shows ``job_id``."""
        self.queue.redis.set(self._key(platform, message_id), job_id, ex=self.queue.audio_ttl_s)

    def job_for_message(self, platform: str, message_id: str) -> Job | None:
        job_id = self.queue.redis.get(self._key(platform, message_id))
        return self.queue.get_job(job_id.decode()) if job_id else None
