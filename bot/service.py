"""Platform-neutral chat logic: taking requests, regenerating, and delivering results.

A platform module (Discord, Slack) turns its events into calls on ``TuneService`` and
implements ``ChatOutput``; ``EventPump`` reads the platform's event stream and calls it.
Nothing is lost first, nothing is posted twice second: every post goes through the
posting record (``bot.posting``): a lease while it is in progress, a look in the thread
before a post that may already have landed, and the mark only once the platform confirmed it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, replace
from typing import Any, Protocol, TypeVar

import redis

from bot import replies
from bot.links import MessageLinks
from bot.posting import FIRST_TAKE, Busy, PostingRecord, Takes, Unpostable, take_number
from bot.ratelimit import RateLimiter
from bot.status import StatusMessages
from pipeline.brief import brief_from_tags
from pipeline.models import TuneRequest
from pipeline.validation import InvalidRequest, validate
from worker.queue import Event, Job, JobQueue, ReplyTo, Take
from worker.settings import Settings

log = logging.getLogger("textunes.bot")
T = TypeVar("T")


class Refused(Exception):
    """The request can't be taken now; ``str(error)`` is the reply for the user."""


@dataclass
class Submission:
    job: Job
    position: int
    caption: str  # the caption for tags requests; a placeholder while text is analysed

    @property
    def status_text(self) -> str:
        return replies.status_line(self.caption, self.position)


class TuneService:
    def __init__(self, queue: JobQueue, settings: Settings) -> None:
        self.queue = queue
        self.settings = settings
        self.limiter = RateLimiter(
            queue.redis, requests=settings.rate_limit_requests,
            window_s=settings.rate_limit_window_s, prefix=settings.prefix,
        )
        self.links = MessageLinks(queue)
        self.record = PostingRecord(queue.redis, prefix=queue.prefix, ttl_s=queue.audio_ttl_s)

    def check(self, request: TuneRequest) -> TuneRequest:
        """Validate without submitting (raises InvalidRequest with the user's message)."""
        return validate(request, self.settings.limits)

    async def submit(self, platform: str, user_id: str, request: TuneRequest, reply_to: ReplyTo,
                     *, parent_job_id: str | None = None) -> Submission:
        """Validate, apply the rate limit and queue cap, and enqueue.

        Raises InvalidRequest (bad input) or Refused (rate limit, full queue)."""
        request = self.check(request)
        depth = await asyncio.to_thread(self.queue.depth)
        if depth >= self.settings.queue_cap:
            raise Refused(replies.queue_full(depth))
        wait = await asyncio.to_thread(self.limiter.take, f"{platform}:{user_id}")
        if wait is not None:
            raise Refused(replies.rate_limited(wait, self.settings.rate_limit_requests, self.settings.rate_limit_window_s))
        reply_to = await asyncio.to_thread(self._numbered, reply_to, request.takes)
        job = await asyncio.to_thread(self.queue.submit, request, reply_to, parent_job_id=parent_job_id)
        position = await asyncio.to_thread(self.queue.position, job.job_id)
        return Submission(job, position, preview_caption(request))

    def _numbered(self, reply_to: ReplyTo, takes: int) -> ReplyTo:
        """Reserve the job's take numbers in its thread (or channel), so a 🔁 take there is
        "Take 3", ``…-3.mp3``, not a second "Take 1"."""
        place = reply_to.thread_id or reply_to.channel_id
        if not place:
            return reply_to
        first = self.record.reserve_numbers(reply_to.platform, place, takes)
        return replace(reply_to, extra={**reply_to.extra, FIRST_TAKE: first})

    async def precheck(self, platform: str, user_id: str) -> None:
        """Raise Refused when ``submit`` would refuse now (queue cap, rate limit), using nothing:
        lets a frontend answer privately before it posts anything public."""
        depth = await asyncio.to_thread(self.queue.depth)
        if depth >= self.settings.queue_cap:
            raise Refused(replies.queue_full(depth))
        wait = await asyncio.to_thread(self.limiter.peek, f"{platform}:{user_id}")
        if wait is not None:
            raise Refused(replies.rate_limited(wait, self.settings.rate_limit_requests, self.settings.rate_limit_window_s))

    async def regenerate(self, platform: str, user_id: str, message_id: str,
                         reply_to: ReplyTo | None = None) -> Submission | None:
        """A new take of the request behind a posted message, with a new seed; None when the
        message isn't a (still remembered) TexTuneS result or status."""
        job = await asyncio.to_thread(self.links.job_for_message, platform, message_id)
        if job is None:
            return None
        request = replace(job.request, seed=None, takes=1)
        return await self.submit(platform, user_id, request, reply_to or job.reply_to, parent_job_id=job.job_id)

    async def link(self, platform: str, message_id: str, job_id: str) -> None:
        await asyncio.to_thread(self.links.link, platform, message_id, job_id)

    async def submit_and_show(self, output: StatusMessages, request: TuneRequest, reply_to: ReplyTo,
                              *, status_key: str, where: str) -> None:
        """Submit for a platform whose status message already exists; show the queue
        position on it, or the reason when a race with the user's other request lost."""
        try:
            submission = await self.submit(reply_to.platform, reply_to.user_id, request, reply_to)
        except (InvalidRequest, Refused) as error:
            await output.initial_status(reply_to, f"⚠️ {error}")
            return
        await self.show_queued(output, submission, status_key=status_key, where=where)

    async def show_queued(self, output: StatusMessages, submission: Submission, *, status_key: str, where: str) -> None:
        """Log the job, link its status message (for 🔁) and show its place in line."""
        job = submission.job
        log.info("job %s: %s on %s by user %s, %s mode, %d take(s): %s", job.job_id, where, job.reply_to.platform,
                 job.reply_to.user_id, job.request.mode, job.request.takes, submission.caption)
        await self.link(job.reply_to.platform, status_key, job.job_id)
        try:
            await output.initial_status(job.reply_to, submission.status_text)
        except Exception:  # the job is queued; its progress edits will follow
            log.info("job %s: could not show the queue position", job.job_id, exc_info=True)


def preview_caption(request: TuneRequest) -> str:
    if request.mode == "text":
        return "reading your text"
    return brief_from_tags(request).caption


class ChatOutput(Protocol):
    """What a platform does with events. Each method may raise to have the event retried."""

    async def update_status(self, event: Event, text: str) -> None: ...

    async def post_text(self, event: Event, text: str) -> str | None: ...

    async def post_take(self, event: Event, take: Take, audio: bytes, filename: str, text: str) -> str | None:
        """Upload one take; return the posted message's ref (to link 🔁) or None. Raises
        Unpostable when the take can't be posted on this platform."""
        ...

    async def find_take(self, event: Event, take: Take, filename: str) -> str | None:
        """The ref of a message in the job's thread (or channel) that already carries
        ``filename`` with ``take``'s line (``replies.shows_take``): an earlier attempt landed
        although its answer was lost. None if none."""
        ...


class EventPump:
    """Reads one platform's events and hands them to its ChatOutput.

    An event is acknowledged only once everything it asks for is confirmed by the platform
    (or given up on). One that fails is retried here with a growing pause; one whose post
    another process holds a lease on is looked at again when that lease runs out. An event
    still unacknowledged when the process stops is read again by the next one."""

    max_attempts = 8
    max_pause_s = 60.0

    def __init__(self, queue: JobQueue, platform: str, consumer: str, output: ChatOutput,
                 *, progress_interval_s: float = 2.0, block_ms: int = 1000, lease_s: float = 30.0) -> None:
        self.queue = queue
        self.platform = platform
        self.consumer = consumer
        self.output = output
        self.progress_interval_s = progress_interval_s
        self.block_ms = block_ms
        self.record = PostingRecord(queue.redis, prefix=queue.prefix, ttl_s=queue.audio_ttl_s, lease_s=lease_s,
                                    holder=f"{consumer}:{os.getpid()}:{secrets.token_hex(3)}")
        self.links = MessageLinks(queue)
        self._last_status: dict[str, float] = {}
        self._failures: dict[str, int] = {}
        self._later: dict[str, tuple[float, Event]] = {}  # event id -> (when to look again, event)
        self._stop = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    # ---- running -------------------------------------------------------------------------
    def start(self) -> None:
        """Run the pump in a background task until ``stop``."""
        self._stop.clear()
        self._task = asyncio.create_task(self.run(self._stop), name=f"textunes-{self.platform}-events")

    async def stop(self, grace_s: float = 10.0) -> None:
        """Stop reading; give the posts in hand up to ``grace_s`` to finish. What is not
        finished by then is cancelled (its lease given back) and stays unacknowledged, so
        the next process posts it."""
        self._stop.set()
        task, self._task = self._task, None
        if task is None:
            return
        done, _ = await asyncio.wait({task}, timeout=grace_s)
        if not done:
            log.warning("%s: a post was still in progress after the %g s shutdown grace period; "
                        "the next process will post it", self.platform, grace_s)
            task.cancel()
            await asyncio.wait({task}, timeout=5.0)

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            for event in self._due():
                if stop.is_set():
                    return
                await self.handle(event)
            try:
                events = await asyncio.to_thread(
                    self.queue.read_events, self.platform, self.consumer, block_ms=self._block_ms())
            except Exception:
                log.exception("reading %s events failed; retrying", self.platform)
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(stop.wait(), 1.0)
                continue
            for event in events:
                if stop.is_set():
                    return  # the rest stay unacknowledged: the next process reads them
                await self.handle(event)

    def _due(self) -> list[Event]:
        now = time.monotonic()
        due = sorted((when, event.event_id) for when, event in self._later.values() if when <= now)
        return [self._later.pop(event_id)[1] for _, event_id in due]

    def _block_ms(self) -> int:
        if not self._later:
            return self.block_ms
        wait_ms = (min(when for when, _ in self._later.values()) - time.monotonic()) * 1000
        return max(1, min(self.block_ms, int(wait_ms)))

    def _retry_in(self, event: Event, seconds: float) -> None:
        self._later[event.event_id] = (time.monotonic() + seconds, event)

    # ---- one event -----------------------------------------------------------------------
    async def handle(self, event: Event) -> None:
        self._later.pop(event.event_id, None)
        try:
            await self._deliver(event)
        except Busy as busy:  # another process is posting it: look again when its lease ends
            self._retry_in(event, busy.retry_in_s)
            return
        except Exception:
            failures = self._failures.get(event.event_id, 0) + 1
            self._failures[event.event_id] = failures
            log.exception("job %s: delivering %s event failed (attempt %d)", event.job_id, event.type, failures)
            if failures < self.max_attempts:
                self._retry_in(event, min(2.0 ** (failures - 1), self.max_pause_s))
                return
            log.error("job %s: giving up on %s event after %d attempts", event.job_id, event.type, failures)
            await self._abandon(event)
        self._failures.pop(event.event_id, None)
        try:
            await asyncio.to_thread(self.queue.ack_event, self.platform, event.event_id)
        except redis.RedisError:  # Redis away past the queue's retries: the pump must go on
            log.warning("job %s: could not acknowledge its %s event; it is read again later and found settled",
                        event.job_id, event.type, exc_info=True)

    async def _deliver(self, event: Event) -> None:
        if event.type == "started":
            if event.brief:
                await self._post_text_once(event, "analysis", replies.analysis_line(event))
            await self._progress(event, 0.0, force=True)
        elif event.type == "progress":
            await self._progress(event, event.progress)
        elif event.type == "done":
            await self._done(event)
        elif event.type == "failed":
            await self._post_text_once(event, "failed", replies.failed_line(event))
            await self._final_status(event, replies.failed_status(event.job_id))
        elif event.type == "cancelled":
            await _call(self.record.confirm, event.job_id, "cancelled")
            await self._final_status(event, replies.cancelled_status(event))

    async def _done(self, event: Event) -> None:
        take = event.take
        if take is None:
            log.warning("job %s: a done event without a take (from an older worker?); ignored", event.job_id)
            return
        if await _call(self.record.settled, event.job_id, "cancelled"):
            log.info("job %s: cancelled; take %d is not posted", event.job_id, take.index)
            return
        await self._settle(event, await self._post_take(event, take))

    async def _settle(self, event: Event, takes: Takes) -> None:
        """The final status, once every take of the job is posted or settled as lost."""
        total = event.take_count or 1
        if takes.settled(total):
            await self._final_status(event, replies.done_line(event.caption, takes.posted, total, event.job_id))

    async def _abandon(self, event: Event) -> None:
        """After the last attempt: a take that never got posted is settled as lost, so the
        status says so instead of waiting for it forever."""
        if event.type != "done" or event.take is None:
            return
        try:
            await self._settle(event, await _call(self.record.give_up, event.job_id, f"take-{event.take.index}",
                                                  "the platform refused it"))
        except Exception:
            log.exception("job %s: could not record take %d as lost", event.job_id, event.take.index)

    # ---- posting, once -------------------------------------------------------------------
    async def _post_take(self, event: Event, take: Take) -> Takes:
        job_id, what = event.job_id, f"take-{take.index}"
        number = take_number(event.reply_to, take)
        name = replies.filename(event.caption, number)
        async with self._leased(job_id, what) as settled:
            if settled:
                return await _call(self.record.takes, job_id)
            ref = None
            if await _call(self.record.tried, job_id, what):  # an earlier attempt may have landed
                ref = await self._find(event, take, name)
            if ref is None:
                audio = await asyncio.to_thread(self.queue.load_audio, take.audio_key)
                if audio is None:
                    await self._post_text_once(event, f"expired-{take.index}", replies.expired_line(number, job_id))
                    return await _call(self.record.give_up, job_id, what, "the audio expired")
                await _call(self.record.trying, job_id, what)
                try:
                    ref = await self.output.post_take(event, take, audio, name, replies.take_line(take, number)) or ""
                except Unpostable as why:
                    return await _call(self.record.give_up, job_id, what, str(why))
            if ref:
                await _call(self.links.link, self.platform, ref, job_id)
            return await _call(self.record.confirm, job_id, what, ref, drop=(take.audio_key,))

    async def _find(self, event: Event, take: Take, name: str) -> str | None:
        """Look in the thread for a take an earlier attempt may have posted. If the platform
        won't say (no permission to read the thread, say), post it again: a take posted twice
        is better than a take lost."""
        try:
            ref = await self.output.find_take(event, take, name)
        except Exception:
            log.warning("job %s: could not look for take %d in the thread; posting it (again?)", event.job_id,
                        take.index, exc_info=True)
            return None
        if ref is not None:
            log.info("job %s: take %d was already in the thread; not posting it again", event.job_id, take.index)
        return ref

    async def _post_text_once(self, event: Event, what: str, text: str) -> None:
        async with self._leased(event.job_id, what) as settled:
            if not settled:
                ref = await self.output.post_text(event, text)
                await _call(self.record.confirm, event.job_id, what, ref or "")

    @contextlib.asynccontextmanager
    async def _leased(self, job_id: str, what: str) -> AsyncIterator[bool]:
        """Hold the lease on posting ``what`` (raises Busy while another process holds it),
        renewing it until the block ends; yields True when ``what`` is already settled."""
        if await _call(self.record.settled, job_id, what):
            yield True
            return
        await _call(self.record.lease, job_id, what)
        keeper = asyncio.create_task(self._keep_lease(job_id, what))
        try:  # settled by another process between the first look and the lease?
            yield await _call(self.record.settled, job_id, what)
        finally:
            keeper.cancel()
            await _call(self.record.release, job_id, what)  # nothing to release once confirmed

    async def _keep_lease(self, job_id: str, what: str) -> None:
        while True:
            await asyncio.sleep(self.record.lease_s / 3)
            try:
                if not await _call(self.record.renew, job_id, what):
                    log.warning("job %s: the lease on %s ran out while posting it", job_id, what)
                    return
            except Exception:
                log.warning("job %s: could not renew the lease on %s", job_id, what, exc_info=True)

    # ---- the status message --------------------------------------------------------------
    async def _progress(self, event: Event, fraction: float, *, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self._last_status.get(event.job_id, 0.0) < self.progress_interval_s:
            return
        if await _call(self.record.settled, event.job_id, "status"):
            return  # the final status is up: a late progress edit must not cover it
        self._last_status[event.job_id] = now
        if len(self._last_status) > 10_000:
            self._last_status.clear()
        try:
            await self.output.update_status(event, replies.progress_line(event.caption, fraction))
        except Exception:  # a missed progress edit is harmless; never retry it
            log.warning("job %s: status update failed", event.job_id, exc_info=True)

    async def _final_status(self, event: Event, text: str) -> None:
        """The last edit of the status message, once: after every take is settled, or on
        failure or cancellation. A failed edit fails the event, so it is retried."""
        if await _call(self.record.settled, event.job_id, "status"):
            return
        await self.output.update_status(event, text)
        await _call(self.record.confirm, event.job_id, "status")
        self._last_status.pop(event.job_id, None)


async def _call(function: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """A (quick, blocking) Redis call off the event loop."""
    return await asyncio.to_thread(function, *args, **kwargs)
