"""The platform-neutral delivery of events to a chat: every take posted once, none lost.

A recording chat stands in for Discord and Slack; the crash cases that need a real process
(SIGKILL, SIGTERM) are in ``tests/test_posting_crashes.py``.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import pytest
import redis

from bot import replies
from bot.links import MessageLinks, Shown
from bot.posting import Busy, PostingRecord, Unpostable, take_number
from bot.service import EventPump
from bot.uploads import TakePost
from worker.queue import Event, JobQueue, ReplyTo, Take

REPLY_TO = ReplyTo(platform="chat", channel_id="channel-1", thread_id="thread-1", message_id="status-1")


class Chat:
    """A chat that records what it was asked to post; it can fail, lose its answers or stall."""

    def __init__(self, *, fail_posts: int = 0, lose_answers: int = 0) -> None:
        self.statuses: list[str] = []
        self.texts: list[str] = []
        self.posted: list[tuple[int, str, bytes, str]] = []  # (take index, file name, audio, ref)
        self.lines: dict[str, str] = {}  # ref -> the text posted with the take
        self.lookups = 0
        self.fail_posts = fail_posts  # the next posts fail before anything lands
        self.lose_answers = lose_answers  # the next posts land, but the answer never comes back
        self.gate: asyncio.Event | None = None  # while set to an unset event, uploads wait on it
        self.uploading = asyncio.Event()
        self.limit = 10 * 1024 * 1024

    async def update_status(self, event: Event, text: str) -> None:
        self.statuses.append(text)

    async def post_text(self, event: Event, text: str) -> str | None:
        self.texts.append(text)
        return f"text-{len(self.texts)}"

    def upload_limit(self, event: Event) -> int:
        return self.limit

    async def post_take(self, event: Event, post: TakePost) -> str | None:
        self.uploading.set()
        if self.gate is not None:
            await self.gate.wait()
        if self.fail_posts:
            self.fail_posts -= 1
            raise ConnectionError("chat service unavailable")
        ref = f"msg-{len(self.posted) + 1}"
        self.posted.append((post.shown.take, post.audio.name, post.audio.data, ref))
        self.lines[ref] = post.text
        if self.lose_answers:
            self.lose_answers -= 1
            raise TimeoutError("the post landed but its answer was lost")
        return ref

    async def find_take(self, event: Event, take: Take, filename: str) -> str | None:
        self.lookups += 1
        return next((ref for _, name, _, ref in self.posted
                     if replies.is_take_file(name, filename) and replies.shows_take(self.lines[ref], take)), None)

    def names(self) -> list[str]:
        return [name for _, name, _, _ in self.posted]


def done_events(queue: JobQueue, job_id: str, count: int, reply_to: ReplyTo = REPLY_TO) -> list[Event]:
    return [
        Event(type="done", job_id=job_id, reply_to=reply_to, caption="calm piano", take_count=count,
              take=Take(n, n, 5.0, queue.store_audio(job_id, n, b"mp3-%d" % n), 128, 5))
        for n in range(1, count + 1)
    ]


def final(chat: Chat) -> list[str]:
    return [s for s in chat.statuses if not s.startswith("🎼")]


async def eventually(condition: Callable[[], object], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.01)


async def test_final_status_comes_with_the_last_take_and_each_take_is_posted_once(queue: JobQueue) -> None:
    chat = Chat()
    pump = EventPump(queue, "chat", "c1", chat, progress_interval_s=0)
    first, second = done_events(queue, "job1", 2)
    await pump.handle(first)
    assert [t[0] for t in chat.posted] == [1] and final(chat) == []
    await pump.handle(second)
    await pump.handle(second)  # redelivered
    assert chat.names() == ["textunes-calm-piano-1.mp3", "textunes-calm-piano-2.mp3"]
    assert final(chat) == ["✅ calm piano — 2 takes ready. React 🔁 for another."]
    assert MessageLinks(queue).shown("chat", "msg-2") == Shown("job1", 2)  # 🔁, ➕ on it find take 2


async def test_a_posted_take_leaves_redis_but_the_job_record_stays(queue: JobQueue) -> None:
    chat = Chat()
    job = queue.submit(*_request())
    [event] = done_events(queue, job.job_id, 1)
    await EventPump(queue, "chat", "c1", chat).handle(event)
    assert queue.load_audio(event.take.audio_key) is None  # type: ignore[union-attr]
    assert queue.get_job(job.job_id) is not None  # 🔁 still finds the request
    await EventPump(queue, "chat", "c2", chat).handle(event)  # redelivered: audio gone because posted
    assert len(chat.posted) == 1 and chat.texts == []


async def test_a_take_whose_audio_expired_is_explained_and_the_status_says_so(queue: JobQueue) -> None:
    chat = Chat()
    [event] = done_events(queue, "job-exp", 1)
    queue.redis.delete(event.take.audio_key)  # type: ignore[union-attr]
    pump = EventPump(queue, "chat", "c1", chat)
    await pump.handle(event)
    await pump.handle(event)
    assert chat.posted == [] and chat.texts == ["⚠️ Take 1 expired before it could be posted. Job id: job-exp."]
    assert final(chat) == ["⚠️ calm piano — 0 of 1 takes could be posted (job job-exp)."]


async def test_a_failed_post_is_retried_and_then_posted_once(queue: JobQueue) -> None:
    chat = Chat(fail_posts=1)
    pump = EventPump(queue, "chat", "c1", chat, progress_interval_s=0)
    [event] = done_events(queue, "job2", 1)
    await pump.handle(event)  # fails: left unacknowledged, the lease given back
    assert chat.posted == [] and final(chat) == []
    assert not queue.redis.exists(f"{queue.prefix}:lease:job2:take-1")
    await pump.handle(event)
    await pump.handle(event)
    assert [t[0] for t in chat.posted] == [1] and len(final(chat)) == 1


async def test_a_post_that_landed_although_its_answer_was_lost_is_found_not_posted_again(queue: JobQueue) -> None:
    chat = Chat(lose_answers=1)
    pump = EventPump(queue, "chat", "c1", chat)
    [event] = done_events(queue, "job3", 1)
    await pump.handle(event)  # the post lands; the pump never hears so
    assert len(chat.posted) == 1 and final(chat) == []
    await pump.handle(event)
    assert len(chat.posted) == 1 and chat.lookups == 1
    assert final(chat) == ["✅ calm piano — 1 take ready. React 🔁 for another."]
    assert MessageLinks(queue).shown("chat", "msg-1") == Shown("job3", 1)


async def test_a_same_named_file_of_another_take_is_not_taken_for_this_one(queue: JobQueue) -> None:
    chat = Chat()
    chat.posted.append((1, "textunes-calm-piano-1.mp3", b"older", "old"))  # a day-old job, numbering restarted
    chat.lines["old"] = "Take 1 · seed 99 · 5.0 s"
    [event] = done_events(queue, "job11", 1)
    PostingRecord(queue.redis, prefix=queue.prefix).trying("job11", "take-1")  # an attempt that never landed
    await EventPump(queue, "chat", "c1", chat).handle(event)
    assert chat.lookups == 1 and [ref for *_, ref in chat.posted] == ["old", "msg-2"]


async def test_when_the_thread_cannot_be_read_the_take_is_posted_rather_than_lost(queue: JobQueue) -> None:
    class Blind(Chat):
        async def find_take(self, event: Event, take: Take, filename: str) -> str | None:
            raise PermissionError("403: Missing Access (no Read Message History)")

    chat = Blind(fail_posts=1)
    pump = EventPump(queue, "chat", "c1", chat)
    [event] = done_events(queue, "job10", 1)
    await pump.handle(event)  # the first attempt fails
    await pump.handle(event)  # the second can't look in the thread: it posts
    assert [t[0] for t in chat.posted] == [1] and len(final(chat)) == 1


async def test_a_post_of_a_killed_process_waits_for_its_lease_then_is_looked_for_and_posted(queue: JobQueue) -> None:
    first, second = done_events(queue, "job4", 2)
    # A process was killed while uploading take 1: its lease is still on, its attempt recorded.
    killed = PostingRecord(queue.redis, prefix=queue.prefix, lease_s=0.3, holder="killed")
    killed.lease("job4", "take-1")
    killed.trying("job4", "take-1")
    chat = Chat()
    pump = EventPump(queue, "chat", "c1", chat)
    await pump.handle(first)  # not now: someone holds the lease
    assert chat.posted == [] and "job4" not in str(chat.statuses)
    await pump.handle(second)
    assert [t[0] for t in chat.posted] == [2] and final(chat) == []  # no ✅ while take 1 is missing
    await eventually(lambda: not queue.redis.exists(f"{queue.prefix}:lease:job4:take-1"))
    await pump.handle(first)
    assert [t[0] for t in chat.posted] == [2, 1] and chat.lookups == 1  # looked in the thread first
    assert final(chat) == ["✅ calm piano — 2 takes ready. React 🔁 for another."]


async def test_a_take_too_large_for_the_platform_is_settled_and_the_status_says_so(queue: JobQueue) -> None:
    class Refusing(Chat):
        async def post_take(self, event: Event, post: TakePost) -> str | None:
            raise Unpostable("over the upload limit")

    chat = Refusing()
    first, second = done_events(queue, "job5", 2)
    pump = EventPump(queue, "chat", "c1", chat)
    await pump.handle(first)
    await pump.handle(second)
    assert final(chat) == ["⚠️ calm piano — 0 of 2 takes could be posted (job job5)."]


async def test_progress_edits_are_throttled(queue: JobQueue) -> None:
    chat = Chat()
    pump = EventPump(queue, "chat", "c1", chat, progress_interval_s=60)
    for fraction in (0.1, 0.2, 0.3):
        await pump.handle(Event(type="progress", job_id="job6", reply_to=REPLY_TO, caption="calm", progress=fraction))
    assert chat.statuses == ["🎼 calm — generating 10 %"]


async def test_a_cancelled_job_says_so_and_posts_no_later_take(queue: JobQueue) -> None:
    chat = Chat()
    pump = EventPump(queue, "chat", "c1", chat, progress_interval_s=0)
    first, second = done_events(queue, "job7", 2)
    await pump.handle(first)
    await pump.handle(Event(type="cancelled", job_id="job7", reply_to=REPLY_TO, error="Cancelled by an operator."))
    await pump.handle(Event(type="progress", job_id="job7", reply_to=REPLY_TO, caption="calm piano", progress=0.9))
    await pump.handle(second)
    assert [t[0] for t in chat.posted] == [1]
    assert chat.statuses == ["🚫 Cancelled by an operator."]


async def next_process(queue: JobQueue) -> Chat:
    """A pump started again as the same consumer, run until it has shown a final status."""
    chat = Chat()
    pump = EventPump(queue, "chat", "c1", chat, block_ms=20)
    pump.start()
    await eventually(lambda: final(chat))
    await pump.stop()
    return chat


async def test_stopping_waits_for_the_upload_in_hand_within_the_grace_period(queue: JobQueue) -> None:
    chat = Chat()
    chat.gate = asyncio.Event()
    for event in done_events(queue, "job8", 2):
        queue.publish(event)
    pump = EventPump(queue, "chat", "c1", chat, block_ms=20)
    pump.start()
    await asyncio.wait_for(chat.uploading.wait(), 5)
    stopping = asyncio.create_task(pump.stop(grace_s=30))
    await asyncio.sleep(0)
    chat.gate.set()  # the slow upload finishes during the grace period
    await asyncio.wait_for(stopping, 10)
    assert [t[0] for t in chat.posted] == [1]  # take 1 finished; take 2 was left for the next process
    restarted = await next_process(queue)
    assert [t[0] for t in restarted.posted] == [2] and restarted.lookups == 0
    assert final(restarted) == ["✅ calm piano — 2 takes ready. React 🔁 for another."]


async def test_an_upload_past_the_grace_period_is_left_to_the_next_process(queue: JobQueue) -> None:
    chat = Chat()
    chat.gate = asyncio.Event()  # never opens: a 429 with a long retry_after, say
    [event] = done_events(queue, "job9", 1)
    queue.publish(event)
    pump = EventPump(queue, "chat", "c1", chat, block_ms=20)
    pump.start()
    await asyncio.wait_for(chat.uploading.wait(), 5)
    await asyncio.wait_for(pump.stop(grace_s=0.2), 10)
    assert chat.posted == [] and not queue.redis.exists(f"{queue.prefix}:lease:job9:take-1")  # lease given back
    restarted = await next_process(queue)
    assert [t[0] for t in restarted.posted] == [1] and restarted.lookups == 1
    assert final(restarted) == ["✅ calm piano — 1 take ready. React 🔁 for another."]


async def test_an_acknowledgement_redis_refuses_leaves_the_pump_reading(queue: JobQueue) -> None:
    """Redis away for longer than the queue's retries just as an event is acknowledged: the
    pump goes on (the event, already settled, is acknowledged when it is read again)."""
    acknowledge, refused = queue.ack_event, []

    def ack_once_refused(platform: str, event_id: str) -> None:
        if not refused:
            refused.append(event_id)
            raise redis.ConnectionError("Error 111 connecting to 127.0.0.1:6379. Connection refused.")
        acknowledge(platform, event_id)

    queue.ack_event = ack_once_refused  # type: ignore[method-assign]
    chat = Chat()
    for job_id in ("job12", "job13"):
        for event in done_events(queue, job_id, 1):
            queue.publish(event)
    pump = EventPump(queue, "chat", "c1", chat, block_ms=20)
    pump.start()
    try:
        await eventually(lambda: len(final(chat)) == 2)
    finally:
        await pump.stop()
    assert refused and [t[0] for t in chat.posted] == [1, 1]


# ---- the posting record --------------------------------------------------------------------
def test_a_lease_is_exclusive_until_it_expires_or_is_released(queue: JobQueue) -> None:
    one = PostingRecord(queue.redis, lease_s=0.5, holder="one")
    two = PostingRecord(queue.redis, lease_s=0.5, holder="two")
    one.lease("j", "take-1")
    one.lease("j", "take-1")  # a holder may take its own lease again
    with pytest.raises(Busy) as busy:
        two.lease("j", "take-1")
    assert 0 < busy.value.retry_in_s <= 0.5
    two.release("j", "take-1")  # not two's to release
    assert not two.renew("j", "take-1") and one.renew("j", "take-1")
    one.release("j", "take-1")
    two.lease("j", "take-1")


def test_confirming_the_last_two_takes_from_two_processes_settles_the_job_once(queue: JobQueue) -> None:
    one = PostingRecord(queue.redis, holder="one")
    two = PostingRecord(queue.redis, holder="two")
    assert not one.confirm("j", "take-1", "m1").settled(2)
    assert two.confirm("j", "take-2", "m2").settled(2)
    assert one.posted("j", "take-1") == "m1" and one.posted("j", "take-3") is None
    assert one.give_up("j", "take-3", "expired").lost == 1 and one.posted("j", "take-3") is None


def test_takes_are_numbered_per_thread(queue: JobQueue) -> None:
    record = PostingRecord(queue.redis)
    assert record.reserve_numbers("chat", "thread-1", 2) == 1
    assert record.reserve_numbers("chat", "thread-1", 1) == 3  # a 🔁 take: "Take 3"
    assert record.reserve_numbers("chat", "thread-2", 1) == 1
    take = Take(1, 7, 5.0, "k", 128, 5)
    assert take_number(ReplyTo(platform="chat", extra={"first_take": 3}), take.index) == 3
    assert take_number(ReplyTo(platform="chat"), take.index) == 1  # a job queued before numbering


def test_message_link_finds_the_request_for_regenerate(queue: JobQueue) -> None:
    from bot.links import MessageLinks

    job = queue.submit(*_request())
    links = MessageLinks(queue)
    links.link("discord", "m42", Shown(job.job_id, 1))
    assert links.shown("discord", "m42") == Shown(job.job_id, 1)
    found = links.job_for_message("discord", "m42")
    assert found is not None and found.request.prompt == "calm piano"
    assert links.job_for_message("discord", "unknown") is None


def test_an_event_id_is_seen_first_once(queue: JobQueue) -> None:
    from bot.seen import SeenEvents

    seen = SeenEvents(queue.redis)
    assert seen.first("slack", "Ev1") and not seen.first("slack", "Ev1") and seen.first("slack", "Ev2")


def _request():  # type: ignore[no-untyped-def]
    from pipeline.models import TuneRequest

    return TuneRequest(prompt="calm piano"), REPLY_TO


# ---- what the pump counts (the bots' /metrics) ------------------------------------------------
def counted(name: str, **labels: str) -> float:
    from prometheus_client import REGISTRY

    return REGISTRY.get_sample_value(name, labels) or 0.0


async def test_the_pump_counts_uploads_failures_and_how_each_request_ended(queue: JobQueue) -> None:
    from pipeline.models import TuneRequest

    uploads, failures = (counted("textunes_uploads_total", platform="chat"),
                         counted("textunes_upload_failures_total", platform="chat"))
    outcome = {name: counted("textunes_requests_total", platform="chat", kind=kind, outcome=name)
               for name, kind in (("done", "tags"), ("cancelled", "regenerate"), ("failed", "tags"))}
    results = counted("textunes_time_to_result_seconds_count", platform="chat")
    chat = Chat(fail_posts=1)
    pump = EventPump(queue, "chat", "c1", chat, progress_interval_s=0)
    done = queue.submit(TuneRequest(prompt="calm piano"), REPLY_TO)
    [event] = done_events(queue, done.job_id, 1)
    await pump.handle(event)  # the upload fails…
    await pump.handle(event)  # …and is posted on the retry
    cancelled = queue.submit(TuneRequest(prompt="calm piano"), REPLY_TO, parent_job_id=done.job_id)
    await pump.handle(Event(type="cancelled", job_id=cancelled.job_id, reply_to=REPLY_TO, error="Cancelled."))
    failed = queue.submit(TuneRequest(prompt="calm piano"), REPLY_TO)
    await pump.handle(Event(type="failed", job_id=failed.job_id, reply_to=REPLY_TO, error="It broke."))
    await pump.handle(Event(type="failed", job_id=failed.job_id, reply_to=REPLY_TO, error="It broke."))  # again
    assert counted("textunes_uploads_total", platform="chat") - uploads == 1
    assert counted("textunes_upload_failures_total", platform="chat") - failures == 1
    for name, kind in (("done", "tags"), ("cancelled", "regenerate"), ("failed", "tags")):
        assert counted("textunes_requests_total", platform="chat", kind=kind, outcome=name) - outcome[name] == 1
    assert counted("textunes_time_to_result_seconds_count", platform="chat") - results == 1  # the posted one
