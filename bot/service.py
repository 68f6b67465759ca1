"""Platform-neutral chat logic: taking requests, regenerating, and delivering results.

A platform module (Discord, Slack) turns its events into calls on ``TuneService`` and
implements ``ChatOutput``; ``EventPump`` reads the platform's event stream and calls it,
posting each result exactly once even across restarts and redeliveries.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, replace
from typing import Protocol

from bot import replies
from bot.ratelimit import RateLimiter
from bot.status import StatusMessages
from pipeline.brief import brief_from_tags
from pipeline.models import TuneRequest
from pipeline.validation import InvalidRequest, validate
from worker.queue import Event, Job, JobQueue, ReplyTo, Take
from worker.settings import Settings

log = logging.getLogger("textunes.bot")


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
        job = await asyncio.to_thread(self.queue.submit, request, reply_to, parent_job_id=parent_job_id)
        position = await asyncio.to_thread(self.queue.position, job.job_id)
        return Submission(job, position, preview_caption(request))

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
        job = await asyncio.to_thread(self.queue.job_for_message, platform, message_id)
        if job is None:
            return None
        request = replace(job.request, seed=None, takes=1)
        return await self.submit(platform, user_id, request, reply_to or job.reply_to, parent_job_id=job.job_id)

    async def link(self, platform: str, message_id: str, job_id: str) -> None:
        await asyncio.to_thread(self.queue.link_message, platform, message_id, job_id)

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
        """Upload one take; return the posted message id (to link 🔁) or None."""
        ...


class EventPump:
    """Reads one platform's events and hands them to its ChatOutput, exactly once each."""

    max_attempts = 5

    def __init__(self, queue: JobQueue, platform: str, consumer: str, output: ChatOutput,
                 *, progress_interval_s: float = 2.0, block_ms: int = 1000) -> None:
        self.queue = queue
        self.platform = platform
        self.consumer = consumer
        self.output = output
        self.progress_interval_s = progress_interval_s
        self.block_ms = block_ms
        self._last_status: dict[str, float] = {}
        self._failures: dict[str, int] = {}
        self._stop = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        """Run the pump in a background task until ``stop``."""
        self._stop.clear()
        self._task = asyncio.create_task(self.run(self._stop), name=f"textunes-{self.platform}-events")

    async def stop(self, timeout_s: float = 10.0) -> None:
        """Finish the event in hand and stop reading."""
        self._stop.set()
        if self._task is None:
            return
        try:
            await asyncio.wait_for(self._task, timeout=timeout_s)
        except (asyncio.TimeoutError, asyncio.CancelledError):
            log.warning("%s event pump did not stop in time", self.platform)
        self._task = None

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            try:
                events = await asyncio.to_thread(
                    self.queue.read_events, self.platform, self.consumer, block_ms=self.block_ms)
            except Exception:
                log.exception("reading %s events failed; retrying", self.platform)
                await asyncio.sleep(1.0)
                continue
            for event in events:
                await self.handle(event)

    async def handle(self, event: Event) -> None:
        try:
            await self._deliver(event)
        except Exception:
            failures = self._failures.get(event.event_id, 0) + 1
            self._failures[event.event_id] = failures
            log.exception("job %s: delivering %s event failed (attempt %d)", event.job_id, event.type, failures)
            if failures < self.max_attempts:
                return  # left unacknowledged: read again after the visibility timeout
            log.error("job %s: giving up on %s event after %d attempts", event.job_id, event.type, failures)
        self._failures.pop(event.event_id, None)
        await asyncio.to_thread(self.queue.ack_event, self.platform, event.event_id)

    async def _deliver(self, event: Event) -> None:
        job_id = event.job_id
        if event.type == "started":
            if event.brief and await self._claim(job_id, "analysis"):
                await self._guarded(job_id, "analysis", self.output.post_text(event, replies.analysis_line(event)))
            await self._status(event, replies.progress_line(event.caption, 0.0), force=True)
        elif event.type == "progress":
            if not await asyncio.to_thread(self.queue.was_posted, job_id, "status-final"):
                await self._status(event, replies.progress_line(event.caption, event.progress))
        elif event.type == "done":
            if event.take is not None:
                await self._post_take(event, event.take)
            total = event.take_count or 1
            last = event.take is None or event.take.index >= total
            if last and await self._claim(job_id, "status-final"):
                await self._guarded(job_id, "status-final",
                                    self.output.update_status(event, replies.done_line(event.caption, total)))
        elif event.type == "failed":
            if await self._claim(job_id, "failed"):
                await self._guarded(job_id, "failed", self.output.post_text(event, replies.failed_line(event)))
            if await self._claim(job_id, "status-final"):
                await self._status(event, replies.failed_status(job_id), force=True)

    async def _post_take(self, event: Event, take: Take) -> None:
        what = f"take-{take.index}"
        if not await self._claim(event.job_id, what):
            return
        audio = await asyncio.to_thread(self.queue.load_audio, take.audio_key)
        if audio is None:
            await self._guarded(event.job_id, what, self.output.post_text(
                event, f"⚠️ Take {take.index} expired before it could be posted. Job id: {event.job_id}."))
            return
        name = replies.filename(event.caption, take.index)
        message_id = await self._guarded(
            event.job_id, what, self.output.post_take(event, take, audio, name, replies.take_line(take)))
        if message_id:
            await asyncio.to_thread(self.queue.link_message, self.platform, str(message_id), event.job_id)

    async def _status(self, event: Event, text: str, *, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self._last_status.get(event.job_id, 0.0) < self.progress_interval_s:
            return
        self._last_status[event.job_id] = now
        try:
            await self.output.update_status(event, text)
        except Exception:  # a missed progress edit is harmless; never retry it
            log.warning("job %s: status update failed", event.job_id, exc_info=True)

    async def _claim(self, job_id: str, what: str) -> bool:
        return await asyncio.to_thread(self.queue.claim_post, job_id, what)

    async def _guarded(self, job_id: str, what: str, posting):  # type: ignore[no-untyped-def]
        """Run a post; if it fails, give the claim back so a retry can post it."""
        try:
            return await posting
        except Exception:
            await asyncio.to_thread(self.queue.unclaim_post, job_id, what)
            raise
