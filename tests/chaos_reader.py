"""The event reader of the chaos test: a frontend as a real process, posting to a file.

    python -m tests.chaos_reader PLATFORM POSTS_FILE

It runs the real ``bot.service.EventPump`` with the real posting record (``bot/posting.py``),
configured from the environment like a bot (``REDIS_URL``, ``TEXTUNES_POST_LEASE_S``…), and
a ``ChatOutput`` whose "chat" is ``POSTS_FILE``: one JSON line per post or status edit, with
the time it was made. ``find_take`` reads the file back, as the bots look in a thread for a
take an earlier (killed) process may have posted. A line is written with one ``write`` on a
file opened for appending, so a SIGKILL leaves whole lines only. SIGTERM stops it like a bot.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import sys
import time
from pathlib import Path
from typing import Any

from bot import replies
from bot.runner import run_until_signalled
from bot.uploads import TakePost
from bot.service import EventPump
from worker.queue import Event, JobQueue, Take
from worker.settings import Settings

CONSUMER = "chaos-reader"  # stable, like a bot's: a restarted reader re-reads what it had not acknowledged


class FileChat:
    """A chat whose every thread is in one append-only file of JSON lines."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.count = 0

    def _write(self, kind: str, event: Event, **fields: Any) -> str:
        self.count += 1
        ref = f"{os.getpid()}-{self.count}"
        line = json.dumps({"kind": kind, "job": event.job_id, "ref": ref, "at": time.time(), **fields})
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, (line + "\n").encode())
        finally:
            os.close(fd)
        return ref

    async def update_status(self, event: Event, text: str) -> None:
        self._write("status", event, text=text)

    async def post_text(self, event: Event, text: str) -> str | None:
        return self._write("text", event, text=text)

    def upload_limit(self, event: Event) -> int:
        """A file takes any size."""
        return 1 << 30

    async def post_take(self, event: Event, post: TakePost) -> str | None:
        """Record one take."""
        return self._write("take", event, take=post.shown.take, file=post.audio.name, text=post.text,
                           bytes=len(post.audio.data))

    async def find_take(self, event: Event, take: Take, filename: str) -> str | None:
        for post in read_posts(self.path):
            if (post["kind"] == "take" and post["job"] == event.job_id and post["file"] == filename
                    and replies.shows_take(post["text"], take)):
                return post["ref"]
        return None


def read_posts(path: Path) -> list[dict[str, Any]]:
    """Every post and status edit in the file, in order (none while it doesn't exist)."""
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


async def serve(platform: str, posts: Path) -> int:
    settings = Settings.from_env(dotenv=False)
    queue = JobQueue.from_settings(settings)
    pump = EventPump(queue, platform, CONSUMER, FileChat(posts), progress_interval_s=settings.progress_interval_s,
                     block_ms=200, lease_s=settings.post_lease_s)

    async def main(stop: asyncio.Event) -> int:
        pump.start()
        print(f"reading {platform} events as {CONSUMER} (pid {os.getpid()})", flush=True)
        await stop.wait()
        await pump.stop(settings.shutdown_grace_s)
        return 0

    try:
        return await run_until_signalled(main, grace_s=settings.shutdown_grace_s)
    finally:
        queue.close()


def main(argv: list[str]) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    return asyncio.run(serve(argv[0], Path(argv[1])))


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
