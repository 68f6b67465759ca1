"""The platform-neutral delivery of events to a chat, exactly once."""

from __future__ import annotations

from bot.service import EventPump
from worker.queue import Event, JobQueue, ReplyTo, Take


class Recorder:
    def __init__(self, fail_posts: int = 0) -> None:
        self.statuses: list[str] = []
        self.texts: list[str] = []
        self.takes: list[tuple[int, str, bytes]] = []
        self.fail_posts = fail_posts

    async def update_status(self, event: Event, text: str) -> None:
        self.statuses.append(text)

    async def post_text(self, event: Event, text: str) -> str | None:
        self.texts.append(text)
        return None

    async def post_take(self, event: Event, take: Take, audio: bytes, filename: str, text: str) -> str | None:
        if self.fail_posts:
            self.fail_posts -= 1
            raise ConnectionError("chat service unavailable")
        self.takes.append((take.index, filename, audio))
        return f"msg-{take.index}"


def done_events(queue: JobQueue, job_id: str, count: int) -> list[Event]:
    reply_to = ReplyTo(platform="chat", message_id="status-1")
    return [
        Event(type="done", job_id=job_id, reply_to=reply_to, caption="calm piano", take_count=count,
              take=Take(n, n, 5.0, queue.store_audio(job_id, n, b"mp3-%d" % n), 128, 5))
        for n in range(1, count + 1)
    ]


async def test_final_status_comes_with_the_last_take_and_each_take_is_posted_once(queue: JobQueue) -> None:
    out = Recorder()
    pump = EventPump(queue, "chat", "c1", out, progress_interval_s=0)
    first, second = done_events(queue, "job1", 2)
    await pump.handle(first)
    assert [t[0] for t in out.takes] == [1] and not any("ready" in s for s in out.statuses)
    await pump.handle(second)
    await pump.handle(second)  # redelivered
    assert [(i, name) for i, name, _ in out.takes] == [(1, "textunes-calm-piano-1.mp3"), (2, "textunes-calm-piano-2.mp3")]
    assert [s for s in out.statuses if "ready" in s] == ["✅ calm piano — 2 takes ready. React 🔁 for another."]
    assert queue.redis.get(f"{queue.prefix}:msg:chat:msg-2") == b"job1"


async def test_a_failed_post_is_retried_and_then_posted_once(queue: JobQueue) -> None:
    out = Recorder(fail_posts=1)
    pump = EventPump(queue, "chat", "c1", out, progress_interval_s=0)
    [event] = done_events(queue, "job2", 1)
    await pump.handle(event)  # fails: left unacknowledged, post claim given back
    assert out.takes == []
    await pump.handle(event)
    await pump.handle(event)
    assert [t[0] for t in out.takes] == [1]


async def test_progress_edits_are_throttled(queue: JobQueue) -> None:
    out = Recorder()
    pump = EventPump(queue, "chat", "c1", out, progress_interval_s=60)
    reply_to = ReplyTo(platform="chat", message_id="status-1")
    for fraction in (0.1, 0.2, 0.3):
        await pump.handle(Event(type="progress", job_id="job3", reply_to=reply_to, caption="calm", progress=fraction))
    assert out.statuses == ["🎼 calm — generating 10 %"]
