"""The status message of a job: first the queue position, then whatever events say.

Shared by the platform outputs. A fast worker can start (or finish) a job before the
handler that queued it gets to show the queue position; the position must then not
overwrite the newer text, so both edits go through one lock per message.
"""

from __future__ import annotations

import asyncio

from worker.queue import Event, ReplyTo


class StatusMessages:
    """Base for a platform's ChatOutput: implements ``update_status`` and ``initial_status``
    on top of the platform's ``_edit``."""

    def __init__(self) -> None:
        self._locks: dict[str, asyncio.Lock] = {}
        self._updated: set[str] = set()  # status messages an event has already edited

    async def _edit(self, reply_to: ReplyTo, text: str) -> None:
        raise NotImplementedError

    async def update_status(self, event: Event, text: str) -> None:
        reply_to = event.reply_to
        if not reply_to.message_id:
            return
        async with self._lock(reply_to.message_id):
            self._updated.add(reply_to.message_id)
            await self._edit(reply_to, text)

    async def initial_status(self, reply_to: ReplyTo, text: str) -> None:
        """Show the queue position, unless an event got there first."""
        if not reply_to.message_id:
            return
        async with self._lock(reply_to.message_id):
            if reply_to.message_id in self._updated:
                return
            await self._edit(reply_to, text)

    def _lock(self, message_id: str) -> asyncio.Lock:
        if len(self._locks) > 10_000:  # forget old jobs; a lock only matters for seconds
            self._locks.clear()
            self._updated.clear()
        return self._locks.setdefault(message_id, asyncio.Lock())
