"""Platform-neutral chat logic: taking requests, new takes, extensions and loops of posted
takes (``TuneService.follow_up``), and delivering results.

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
from bot.followups import EXTEND, LOOP, Action, FollowUp
from bot.links import MessageLinks, Shown
from bot.posting import EXTENDS, FIRST_TAKE, Busy, PostingRecord, Takes, Unpostable, take_number
from bot.ratelimit import RateLimiter
from bot.seen import SeenEvents
from bot.status import StatusMessages
from bot.uploads import TakePost, take_post
from pipeline.audio_files import TooLargeForLimit
from pipeline.brief import brief_from_tags
from pipeline.melody import prepare_clip
from pipeline.models import TuneRequest
from pipeline.validation import InvalidRequest, validate
from worker import metrics
from worker.queue import Event, Job, JobQueue, ReplyTo, Take, TakeRef, request_kind
from worker.settings import Settings
from worker.extend import EXTEND_BY_S, extension_seconds, take_seconds

log = logging.getLogger("textunes.bot")
T = TypeVar("T")

DOUBLE_CLICK_S = 5  # a second click on the same button within this long makes nothing more


class Refused(Exception):
    """The request can't be taken now; ``str(error)`` is the reply for the user. ``outcome``
    is how the request metrics count it: ``refused``, ``rate_limited`` or ``invalid``."""

    def __init__(self, message: str, outcome: str = "refused") -> None:
        super().__init__(message)
        self.outcome = outcome


def outcome_of(error: Exception) -> str:
    """The request metrics' outcome of a request a handler could not take."""
    return error.outcome if isinstance(error, Refused) else "invalid"


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
        self.clicks = SeenEvents(queue.redis, prefix=queue.prefix, ttl_s=DOUBLE_CLICK_S)

    def check(self, request: TuneRequest) -> TuneRequest:
        """Validate without submitting (raises InvalidRequest with the user's message)."""
        return validate(request, self.settings.limits)

    def refused(self, platform: str, kind: str, user_id: str, where: str, error: Exception) -> None:
        """Log and count a request a handler answered with ``error`` instead of queueing it."""
        log.info("%s by user %s not queued: %s", where, user_id, error)
        metrics.count_request(platform, kind, outcome_of(error))

    async def submit(self, platform: str, user_id: str, request: TuneRequest, reply_to: ReplyTo,
                     *, parent_job_id: str | None = None, extend: TakeRef | None = None,
                     melody: bytes | None = None) -> Submission:
        """Validate, apply the rate limit and queue cap, and enqueue (``extend``: continue that
        take; ``melody``: a clip from ``prepare_melody`` to follow).

        Raises InvalidRequest (bad input) or Refused (rate limit, full queue); counts the
        request's outcome either way."""
        kind = request_kind(request, parent_job_id=parent_job_id, extend=extend)
        try:
            request = self.check(request)
            await self._admit(platform, user_id, use=True)
        except (InvalidRequest, Refused) as error:
            metrics.count_request(platform, kind, outcome_of(error))
            raise
        reply_to = await asyncio.to_thread(self._numbered, reply_to, request.takes)
        job = await asyncio.to_thread(self.queue.submit, request, reply_to, parent_job_id=parent_job_id,
                                      extend=extend, melody=melody)
        metrics.count_request(platform, job.kind, "queued")
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
        await self._admit(platform, user_id, use=False)

    async def _admit(self, platform: str, user_id: str, *, use: bool) -> None:
        """The queue cap, then the user's rate limit (one request used when ``use``)."""
        depth = await asyncio.to_thread(self.queue.depth)
        metrics.set_queue_depth(depth)
        if depth >= self.settings.queue_cap:
            raise Refused(replies.queue_full(depth))
        limiter = self.limiter.take if use else self.limiter.peek
        wait = await asyncio.to_thread(limiter, f"{platform}:{user_id}")
        if wait is not None:
            raise Refused(replies.rate_limited(wait, self.settings.rate_limit_requests,
                                               self.settings.rate_limit_window_s), "rate_limited")

    # ---- melodies ------------------------------------------------------------------------
    async def melody_ready(self) -> None:
        """Raise Refused at once when no live worker follows melodies."""
        if not await asyncio.to_thread(self.queue.melody_workers):
            raise Refused(replies.NO_MELODY_WORKER)

    @staticmethod
    async def prepare_melody(data: bytes, filename: str) -> bytes:
        """The clip to queue with a request (raises BadMelody with the user's reply)."""
        return await asyncio.to_thread(prepare_clip, data, filename=filename)

    # ---- 🔁, ➕, 🔂 -------------------------------------------------------------------------
    async def shown(self, platform: str, message_id: str) -> Shown | None:
        return await asyncio.to_thread(self.links.shown, platform, message_id)

    async def first_click(self, platform: str, user_id: str, action: Action, shown: Shown) -> bool:
        """False for the same user's second click on the same button within a few seconds
        (a double click makes one job)."""
        return await asyncio.to_thread(self.clicks.first, platform, f"click:{user_id}:{action.name}:{shown.encode()}")

    async def follow_up(self, platform: str, user_id: str, action: Action, shown: Shown) -> FollowUp:
        """What ``action`` on a message showing ``shown`` would queue: a new take of its request
        (new seed), the take extended (its tokens continued by 30 s or what the maximum leaves;
        not a loop, as ``worker.extend`` makes it), or a loop of the take (same request and
        seed, ``loop``). Raises Refused with the
        user's reply when it can't be done; uses none of the user's requests."""
        job = await asyncio.to_thread(self.queue.get_job, shown.job_id)
        if job is None:
            raise Refused(replies.request_expired())
        plan = await self._plan(action, job, shown)
        if job.melody_key and action is not EXTEND:  # a new take or loop follows the same tune
            plan.melody = await asyncio.to_thread(self.queue.load_melody, job.melody_key)
            if plan.melody is None:
                raise Refused(replies.melody_expired())
            await self.melody_ready()
        await self.precheck(platform, user_id)
        return plan

    async def _plan(self, action: Action, job: Job, shown: Shown) -> FollowUp:
        # a new take or a loop of an extension continues the same take again
        extends = int(job.reply_to.extra.get(EXTENDS) or 0) if job.extend else 0
        if action is not EXTEND and action is not LOOP:  # a new take: the request again, a new seed
            return FollowUp(action, job, replace(job.request, seed=None, takes=1), extend=job.extend, extends=extends)
        if shown.take < 1:
            raise Refused(replies.needs_a_take(action.emoji, action.label), "invalid")
        number = take_number(job.reply_to, shown.take)
        if action is LOOP:
            if job.request.loop:
                raise Refused(replies.already_a_loop(number), "invalid")
            seed = job.seeds[shown.take - 1] if shown.take <= len(job.seeds) else None
            return FollowUp(action, job, replace(job.request, loop=True, takes=1, seed=seed), extend=job.extend,
                            source=number, extends=extends)
        tokens = await asyncio.to_thread(self.queue.load_tokens, self.queue.tokens_key(job.job_id, shown.take))
        length = take_seconds(tokens)
        if length is None:
            raise Refused(replies.tokens_expired(number))
        more = extension_seconds(length, self.settings.limits)
        if more is None:
            raise Refused(replies.at_maximum(number, length, self.settings.limits, EXTEND_BY_S), "invalid")
        return FollowUp(action, job, replace(job.request, duration=more, takes=1, seed=None, loop=False),
                        extend=TakeRef(job.job_id, shown.take), source=number, extends=number)

    async def submit_follow_up(self, platform: str, user_id: str, plan: FollowUp, reply_to: ReplyTo) -> Submission:
        """Queue what ``follow_up`` planned; its takes go where ``reply_to`` says."""
        if plan.extends:
            reply_to = replace(reply_to, extra={**reply_to.extra, EXTENDS: plan.extends})
        return await self.submit(platform, user_id, plan.request, reply_to, parent_job_id=plan.job.job_id,
                                 extend=plan.extend, melody=plan.melody)

    async def link(self, platform: str, message_id: str, job_id: str) -> None:
        await asyncio.to_thread(self.links.link, platform, message_id, Shown(job_id))

    async def submit_and_show(self, output: StatusMessages, request: TuneRequest, reply_to: ReplyTo,
                              *, status_key: str, where: str, melody: bytes | None = None) -> None:
        """Submit for a platform whose status message already exists; show the queue
        position on it, or the reason when a race with the user's other request lost."""
        try:
            submission = await self.submit(reply_to.platform, reply_to.user_id, request, reply_to, melody=melody)
        except (InvalidRequest, Refused) as error:
            await output.initial_status(reply_to, f"⚠️ {error}")
            return
        await self.show_queued(output, submission, status_key=status_key, where=where)

    async def show_queued(self, output: StatusMessages, submission: Submission, *, status_key: str, where: str) -> None:
        """Log the job, link its status message (for 🔁) and show its place in line."""
        job = submission.job
        log.info("job %s: %s on %s by user %s, %s mode, %d take(s)%s%s: %s", job.job_id, where, job.reply_to.platform,
                 job.reply_to.user_id, job.request.mode, job.request.takes,
                 f", extending {job.extend}" if job.extend else "", ", with a melody" if job.melody_key else "",
                 submission.caption)
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

    def upload_limit(self, event: Event) -> int:
        """The largest file (all of a message's files together) the job's channel takes."""
        ...

    async def post_take(self, event: Event, post: TakePost) -> str | None:
        """Upload one take (its audio, its picture, its buttons); return the posted message's
        ref (to link 🔁) or None. Raises Unpostable when the take can't be posted on this
        platform (the pump has already fitted it to ``upload_limit``)."""
        ...

    async def find_take(self, event: Event, take: Take, filename: str) -> str | None:
        """The ref of a message in the job's thread (or channel) that already carries the take
        ``filename`` names (``replies.is_take_file``: in any audio format) with ``take``'s line
        (``replies.shows_take``): an earlier attempt landed although its answer was lost.
        None if none."""
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
                 *, progress_interval_s: float = 2.0, block_ms: int = 1000, lease_s: float = 30.0,
                 health: metrics.Health | None = None) -> None:
        self.queue = queue
        self.platform = platform
        self.consumer = consumer
        self.output = output
        self.health = health or metrics.Health()  # beats on every turn of the loop (``/healthz``)
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
            self.health.beat()
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
                metrics.observe_event_lag(self.platform, _age_s(event))
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
            await self._final_status(event, replies.failed_status(event.job_id), outcome="failed")
        elif event.type == "cancelled":
            await _call(self.record.confirm, event.job_id, "cancelled")
            await self._final_status(event, replies.cancelled_status(event), outcome="cancelled")

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
            await self._final_status(event, replies.done_line(event.caption, takes.posted, total, event.job_id),
                                     outcome="done" if takes.posted == total else "failed", posted=takes.posted > 0)

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
        number = take_number(event.reply_to, take.index)
        name = replies.filename(event.caption, number, take.format, loop=take.loop)
        async with self._leased(job_id, what) as settled:
            if settled:
                return await _call(self.record.takes, job_id)
            ref = None
            if await _call(self.record.tried, job_id, what):  # an earlier attempt may have landed
                ref = await self._find(event, take, name)
            if ref is None:
                post = await self._take_post(event, take, number)
                if isinstance(post, str):  # expired, or too large for the channel: the user was told
                    return await _call(self.record.give_up, job_id, what, post)
                await _call(self.record.trying, job_id, what)
                try:
                    ref = await self.output.post_take(event, post) or ""
                except Unpostable as why:
                    return await _call(self.record.give_up, job_id, what, str(why))
                except Exception:
                    metrics.count_upload(self.platform, ok=False)
                    raise
                metrics.count_upload(self.platform, ok=True)
            if ref:
                await _call(self.links.link, self.platform, ref, Shown(job_id, take.index))
            drop = tuple(key for key in (take.audio_key, take.preview_key) if key)
            return await _call(self.record.confirm, job_id, what, ref, drop=drop)

    async def _take_post(self, event: Event, take: Take, number: int) -> TakePost | str:
        """The take's message, its audio fitted to the channel's upload limit; or, when it
        can't be posted, why (after telling the user in the thread)."""
        audio = await _call(self.queue.load_audio, take.audio_key)
        if audio is None:
            await self._post_text_once(event, f"expired-{take.index}", replies.expired_line(number, event.job_id))
            return "the audio expired"
        preview = await _call(self.queue.load_preview, take.preview_key) if take.preview_key else None
        limit = self.output.upload_limit(event)
        try:
            return await asyncio.to_thread(
                take_post, take, job_id=event.job_id, caption=event.caption, number=number, audio=audio,
                preview=preview, limit_bytes=limit, extends=int(event.reply_to.extra.get(EXTENDS) or 0))
        except TooLargeForLimit:
            log.info("job %s: take %d (%d bytes of %s) doesn't fit the %d-byte upload limit even as an MP3",
                     event.job_id, take.index, len(audio), take.format, limit)
            await self._post_text_once(event, f"too-large-{take.index}", replies.too_large(limit))
            return "over the upload limit"

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
            self.health.beat()  # a long upload is the loop at work, not a stall
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

    async def _final_status(self, event: Event, text: str, *, outcome: str, posted: bool = False) -> None:
        """The last edit of the status message, once: after every take is settled, or on
        failure or cancellation. A failed edit fails the event, so it is retried. Counts the
        request's ``outcome`` (and, when takes were ``posted``, its time to result)."""
        if await _call(self.record.settled, event.job_id, "status"):
            return
        await self.output.update_status(event, text)
        await _call(self.record.confirm, event.job_id, "status")
        self._last_status.pop(event.job_id, None)
        job = await _call(self.queue.get_job, event.job_id)
        metrics.count_request(self.platform, job.kind if job else "unknown", outcome)
        if job is not None and posted:
            metrics.observe_time_to_result(self.platform, time.time() - job.created_at)


def _age_s(event: Event) -> float:
    """Seconds since the event was published: its stream id is the time Redis added it, in ms."""
    try:
        return time.time() - int(event.event_id.partition("-")[0]) / 1000
    except ValueError:
        return 0.0


async def _call(function: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """A (quick, blocking) Redis call off the event loop."""
    return await asyncio.to_thread(function, *args, **kwargs)
