"""The job protocol on Redis Streams. Imports without torch: frontends use it too.

Streams and keys (``P`` is the prefix, ``textunes`` by default):

- ``P:jobs``              jobs; consumer group ``workers``; capped with ``MAXLEN ~``
- ``P:jobs:melody``       jobs that follow a melody clip: only workers with a melody model read it
- ``P:jobs:dead``         jobs that failed ``max_deliveries`` times, with the reason
- ``P:events:<platform>`` queued / started / progress / done / failed / cancelled; group ``frontends``
- ``P:job:<id>``          the job record (JSON), kept for the audio TTL (a 🔁 reads it)
- ``P:audio:<id>:<n>``    MP3 bytes of take ``n``, with a TTL (24 h by default); the frontend
                          deletes it once the platform confirmed the take's post
- ``P:tokens:<id>:<n>``   the tokens of take ``n`` (``worker.tokens``), kept for the audio TTL:
                          an extension continues them
- ``P:preview:<id>:<n>``  a PNG of take ``n``'s waveform, like its audio
- ``P:melody:<id>``       the melody clip a job follows (mono 32 kHz FLAC), kept for the audio TTL
- ``P:brief:<id>``        the brief a finished job was made from (JSON): an extension reuses its caption
- ``P:done:<id>``         written once, atomically with the ``done``/``failed`` event: a job
                          finished twice (a slow worker thought dead) still gets one event
- ``P:workers:<consumer>`` a worker's heartbeat (JSON), expiring ``WORKER_SEEN_TTL_S`` after its last beat

What the frontends record about their own posts (leases, confirmed posts, message links,
events seen) is theirs: see ``bot/posting.py``, ``bot/links.py`` and ``bot/seen.py``.

Delivery is at-least-once: a worker acknowledges a job only after its result is published;
while it works on a job it keeps the job's idle time fresh (``keep_alive``), so only a dead
worker's jobs are taken over with XAUTOCLAIM once idle past ``visibility_timeout``. A job
whose ``done`` key is set (finished elsewhere, or cancelled) is acknowledged and skipped.
Everything on the wire is JSON, never pickle.

Every call keeps trying for ``REDIS_RETRY_S`` while Redis can't be reached or is still loading
its data, so a restart of Redis is no error for anyone. A command Redis ran whose answer was
lost in a crash may run twice: each is harmless twice (a job queued or re-queued twice is done
once, under its ``done`` key).
"""

from __future__ import annotations

import json
import random
import secrets
import time
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any, Literal

import redis
from redis.backoff import ExponentialBackoff
from redis.retry import Retry

from pipeline.models import TuneRequest

if TYPE_CHECKING:
    from worker.settings import Settings

EventType = Literal["queued", "started", "progress", "done", "failed", "cancelled"]
WORKER_GROUP = "workers"
MELODY_LANE = "melody"
FRONTEND_GROUP = "frontends"
WORKER_SEEN_TTL_S = 60
CANCELLED_MESSAGE = "Cancelled by an operator."
REDIS_RETRY_S = 10.0  # how long a call keeps trying while Redis is away (restarting, loading its AOF)


class UnknownJob(LookupError):
    """An operator named a job that Redis does not know (or no longer keeps)."""


@dataclass
class ReplyTo:
    """Where results go. Opaque to the worker; each frontend fills what it needs."""

    platform: str
    channel_id: str = ""
    thread_id: str = ""
    message_id: str = ""
    user_id: str = ""
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class TakeRef:
    """One take of one job: what an extension continues (written ``JOB:TAKE``)."""

    job_id: str
    take: int

    def __str__(self) -> str:
        return f"{self.job_id}:{self.take}"

    @classmethod
    def parse(cls, text: str) -> "TakeRef":
        job_id, sep, take = text.strip().rpartition(":")
        if not sep or not job_id or not take.isdigit() or int(take) < 1:
            raise ValueError(f"'{text}' is not JOB:TAKE (for example 3f9c2a1b7d4e:1)")
        return cls(job_id, int(take))


def request_kind(request: TuneRequest, *, parent_job_id: str | None = None, extend: TakeRef | None = None) -> str:
    """What the request metrics call a job: ``extend``, ``regenerate`` (made from another job:
    a 🔁, a loop of a take, a requeue) or the request's mode (``tags``, ``text``)."""
    if extend is not None:
        return "extend"
    if parent_job_id:
        return "regenerate"
    return request.mode


@dataclass
class Job:
    job_id: str
    request: TuneRequest
    reply_to: ReplyTo
    seeds: list[int]
    created_at: float
    parent_job_id: str | None = None
    attempt: int = 1
    extend: TakeRef | None = None  # continue this take (its tokens) by request.duration seconds
    melody_key: str = ""  # the melody clip to follow; such jobs go to the melody lane

    @property
    def kind(self) -> str:
        return request_kind(self.request, parent_job_id=self.parent_job_id, extend=self.extend)

    def to_json(self) -> str:
        data = asdict(self)
        data["request"] = self.request.to_dict()
        return json.dumps(data, ensure_ascii=False)

    @classmethod
    def from_json(cls, payload: str | bytes) -> "Job":
        data = json.loads(payload)
        data["request"] = TuneRequest.from_dict(data["request"])
        data["reply_to"] = ReplyTo(**data["reply_to"])
        data["extend"] = TakeRef(**data["extend"]) if data.get("extend") else None
        return cls(**data)


@dataclass
class Take:
    index: int  # 1-based
    seed: int
    duration: float
    audio_key: str
    bitrate_kbps: int
    size_bytes: int
    tokens_key: str = ""  # where the take's tokens are kept ("" when they weren't)
    format: str = "mp3"  # the audio file's format: mp3, flac or wav
    loop: bool = False  # a seamless loop (its file name says -loop)
    preview_key: str = ""  # where a PNG of its waveform is kept ("" when there is none)
    note: str = ""  # something the user should know, e.g. a format changed to fit the upload limit
    length: float = 0.0  # for an extension: the whole track's seconds (duration is the same)


@dataclass
class Event:
    type: EventType
    job_id: str
    reply_to: ReplyTo
    caption: str = ""
    progress: float = 0.0
    brief: dict[str, Any] | None = None
    take: Take | None = None  # done: the one take this event delivers
    error: str = ""
    take_count: int = 0  # done: how many takes the job has; each take gets its own done event
    event_id: str = ""  # the stream entry id, set when read

    def to_json(self) -> str:
        data = asdict(self)
        data.pop("event_id")
        return json.dumps(data, ensure_ascii=False)

    @classmethod
    def from_json(cls, payload: str | bytes, event_id: str = "") -> "Event":
        data = json.loads(payload)
        data["reply_to"] = ReplyTo(**data["reply_to"])
        data["take"] = Take(**data["take"]) if data.get("take") else None
        return cls(**data, event_id=event_id)


@dataclass
class Delivery:
    """A job handed to a worker; acknowledge it with ``JobQueue.complete`` or ``retry_or_fail``."""

    job: Job
    entry_id: str
    deliveries: int = 1


@dataclass
class DeadLetter:
    """A job in the dead-letter stream, with the reason it was given up."""

    entry_id: str
    job: Job
    reason: str
    failed_at: float


@dataclass
class WorkerSeen:
    """A worker's last heartbeat (``JobQueue.beat``); ``info`` is whatever the worker reports."""

    consumer: str
    seen_at: float
    info: dict[str, Any] = field(default_factory=dict)


@dataclass
class WaitingJob:
    job_id: str
    platform: str
    age_s: float  # since it was submitted


@dataclass
class QueueStatus:
    """What ``textunes admin status`` shows."""

    waiting: int  # in line, not yet claimed
    running: int  # claimed by a worker, not yet acknowledged
    pending_by_consumer: dict[str, int]
    oldest_waiting: WaitingJob | None
    workers: list[WorkerSeen]
    dead_letters: int


# Publish a job's final events (and acknowledge its entry, when given) in one step, only if
# nobody finished it before.
_FINISH_ONCE = """
local first = redis.call('SET', KEYS[1], ARGV[1], 'NX', 'EX', ARGV[2])
if first then
  for i = 6, #ARGV do
    redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[3], '*', 'event', ARGV[i])
  end
end
if ARGV[5] ~= '' then
  redis.call('XACK', KEYS[3], ARGV[4], ARGV[5])
end
if first then return 1 else return 0 end
"""


# Refresh the idle time of pending entries, but only those this consumer still owns (a
# worker thought dead whose job was taken over must not take it back).
_KEEP_ALIVE = """
local lost = {}
for i = 3, #ARGV do
  local entry = redis.call('XPENDING', KEYS[1], ARGV[1], ARGV[i], ARGV[i], 1)
  if entry[1] and entry[1][2] == ARGV[2] then
    redis.call('XCLAIM', KEYS[1], ARGV[1], ARGV[2], 0, ARGV[i], 'JUSTID')
  else
    table.insert(lost, ARGV[i])
  end
end
return lost
"""


class JobQueue:
    """Submit, claim, finish and follow TexTuneS jobs on one Redis server."""

    def __init__(
        self,
        client: redis.Redis,
        *,
        prefix: str = "textunes",
        audio_ttl_s: int = 24 * 3600,
        visibility_timeout_s: float = 300.0,
        max_deliveries: int = 3,
        stream_maxlen: int = 10_000,
        lane: str = "",
    ) -> None:
        self.redis = client
        self.prefix = prefix
        self.audio_ttl_s = audio_ttl_s
        self.visibility_timeout_s = visibility_timeout_s
        self.max_deliveries = max_deliveries
        self.stream_maxlen = stream_maxlen
        self.lane = lane  # "" for ordinary jobs, MELODY_LANE for a worker with a melody model
        self.jobs_stream = self.lane_stream(lane)
        self.dead_stream = f"{prefix}:jobs:dead"
        self._finish_once = client.register_script(_FINISH_ONCE)
        self._keep_alive = client.register_script(_KEEP_ALIVE)
        self._groups_made: set[tuple[str, str]] = set()
        self._backlog_read: set[str] = set()

    @classmethod
    def from_url(cls, url: str, *, retry_s: float = REDIS_RETRY_S, **options: Any) -> "JobQueue":
        """A queue on its own client, whose calls keep trying for ``retry_s`` while Redis is away
        (redis-py's clients made from a URL give up at the first refused connection)."""
        return cls(redis.Redis.from_url(url, health_check_interval=30, retry=_retry_for(retry_s)), **options)

    @classmethod
    def from_settings(cls, settings: "Settings", *, url: str | None = None, lane: str = "") -> "JobQueue":
        """The queue every process of one deployment shares (``url`` overrides REDIS_URL)."""
        return cls.from_url(url or settings.redis_url, prefix=settings.prefix, audio_ttl_s=settings.audio_ttl_s,
                            visibility_timeout_s=settings.visibility_timeout_s,
                            max_deliveries=settings.max_deliveries, lane=lane)

    def close(self) -> None:
        self.redis.close()

    def __enter__(self) -> "JobQueue":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ---- keys -------------------------------------------------------------------------
    def events_stream(self, platform: str) -> str:
        return f"{self.prefix}:events:{platform}"

    def _job_key(self, job_id: str) -> str:
        return f"{self.prefix}:job:{job_id}"

    def audio_key(self, job_id: str, take: int) -> str:
        return f"{self.prefix}:audio:{job_id}:{take}"

    def tokens_key(self, job_id: str, take: int) -> str:
        return f"{self.prefix}:tokens:{job_id}:{take}"

    def lane_stream(self, lane: str) -> str:
        return f"{self.prefix}:jobs:{lane}" if lane else f"{self.prefix}:jobs"

    def _stream_for(self, job: Job) -> str:
        return self.lane_stream(MELODY_LANE if job.melody_key else "")

    def _done_key(self, job_id: str) -> str:
        return f"{self.prefix}:done:{job_id}"

    def _worker_key(self, consumer: str) -> str:
        return f"{self.prefix}:workers:{consumer}"

    def _ensure_group(self, stream: str, group: str) -> None:
        if (stream, group) in self._groups_made:
            return
        try:
            self.redis.xgroup_create(stream, group, id="0", mkstream=True)
        except redis.ResponseError as error:
            if "BUSYGROUP" not in str(error):
                raise
        self._groups_made.add((stream, group))

    # ---- frontends: submit and follow -------------------------------------------------
    def submit(
        self,
        request: TuneRequest,
        reply_to: ReplyTo,
        *,
        parent_job_id: str | None = None,
        job_id: str | None = None,
        extend: TakeRef | None = None,
        melody: bytes | None = None,
    ) -> Job:
        """Record and enqueue a job; emits ``queued``. Seeds are fixed here so a retried job
        makes the same audio. ``extend`` continues a stored take; ``melody`` (a clip from
        ``pipeline.melody.prepare_clip``) sends the job to the melody lane."""
        if request.seed is not None:
            seeds = [(request.seed + i) % 2**32 for i in range(request.takes)]
        else:
            seeds = [random.randrange(2**32) for _ in range(request.takes)]
        job = Job(
            job_id=job_id or secrets.token_hex(6),
            request=request,
            reply_to=reply_to,
            seeds=seeds,
            created_at=time.time(),
            parent_job_id=parent_job_id,
            extend=extend,
        )
        if melody:
            job.melody_key = f"{self.prefix}:melody:{job.job_id}"
        self._ensure_group(self._stream_for(job), WORKER_GROUP)
        with self.redis.pipeline() as pipe:
            if melody:
                pipe.set(job.melody_key, melody, ex=self.audio_ttl_s)
            self._enqueue(job, pipe)
            pipe.execute()
        self.publish(Event(type="queued", job_id=job.job_id, reply_to=reply_to))
        return job

    def _enqueue(self, job: Job, pipe: Any) -> None:
        """Queue the commands that record ``job`` and put it in line (the caller executes)."""
        payload = job.to_json()
        pipe.set(self._job_key(job.job_id), payload, ex=self.audio_ttl_s)
        pipe.xadd(self._stream_for(job), {"job": payload}, maxlen=self.stream_maxlen, approximate=True)

    def get_job(self, job_id: str) -> Job | None:
        payload = self.redis.get(self._job_key(job_id))
        return Job.from_json(payload) if payload else None

    def _worker_group(self, stream: str | None = None) -> dict[str, Any]:
        """XINFO GROUPS of a jobs stream (this queue's lane by default), for the ``workers`` group."""
        stream = stream or self.jobs_stream
        self._ensure_group(stream, WORKER_GROUP)
        return next(g for g in self.redis.xinfo_groups(stream) if _text(g["name"]) == WORKER_GROUP)

    def _waiting(self, group: dict[str, Any], count: int | None = None, stream: str | None = None) -> list[Any]:
        """Stream entries not yet delivered to any worker, oldest first."""
        last = _text(group["last-delivered-id"])
        return self.redis.xrange(stream or self.jobs_stream, min=f"({last}" if last != "0-0" else "-", max="+",
                                 count=count)

    def depth(self) -> int:
        """Jobs waiting or running in every lane: what a global queue cap compares against."""
        total = 0
        for lane in ("", MELODY_LANE):
            group = self._worker_group(self.lane_stream(lane))
            total += int(group.get("lag") or 0) + int(group["pending"])
        return total

    def position(self, job_id: str) -> int:
        """1-based place in line counting jobs running now; 0 once the job is running or gone."""
        job = self.get_job(job_id)
        stream = self._stream_for(job) if job else self.jobs_stream
        group = self._worker_group(stream)
        waiting = self._waiting(group, stream=stream)
        for place, (_, fields) in enumerate(waiting, start=1):
            if json.loads(fields[b"job"])["job_id"] == job_id:
                return int(group["pending"]) + place
        return 0

    def _regroup_on_nogroup(self, error: redis.ResponseError) -> None:
        """A Redis restarted without persistence forgets consumer groups: make them again."""
        if "NOGROUP" not in str(error):
            raise error
        self._groups_made.clear()

    def read_events(self, platform: str, consumer: str, *, count: int = 20, block_ms: int = 1000) -> list[Event]:
        try:
            return self._read_events(platform, consumer, count=count, block_ms=block_ms)
        except redis.ResponseError as error:
            self._regroup_on_nogroup(error)
            return self._read_events(platform, consumer, count=count, block_ms=block_ms)

    def _read_events(self, platform: str, consumer: str, *, count: int, block_ms: int) -> list[Event]:
        """Events for one platform through the ``frontends`` group.

        The first call of a process returns what this consumer had read but not acknowledged
        before it stopped; later calls take over events idle for ``visibility_timeout_s`` in
        other (dead) consumers, then read new ones. Acknowledge each with ``ack_event``.
        """
        stream = self.events_stream(platform)
        self._ensure_group(stream, FRONTEND_GROUP)
        if stream not in self._backlog_read:
            self._backlog_read.add(stream)
            backlog = self.redis.xreadgroup(FRONTEND_GROUP, consumer, {stream: "0"}, count=10_000)
            events = _events_from(backlog)
            if events:
                return events
        _, claimed, _ = self.redis.xautoclaim(
            stream, FRONTEND_GROUP, consumer, min_idle_time=int(self.visibility_timeout_s * 1000), count=count
        )
        events = [Event.from_json(f[b"event"], _text(i)) for i, f in claimed if f]
        if events:
            return events
        return _events_from(self.redis.xreadgroup(FRONTEND_GROUP, consumer, {stream: ">"}, count=count, block=block_ms))

    def ack_event(self, platform: str, event_id: str) -> None:
        self.redis.xack(self.events_stream(platform), FRONTEND_GROUP, event_id)

    def load_audio(self, audio_key: str) -> bytes | None:
        return self.redis.get(audio_key)

    # ---- workers ----------------------------------------------------------------------
    def claim(self, consumer: str, count: int, *, block_ms: int = 5000) -> list[Delivery]:
        """Up to ``count`` jobs: first those a dead worker held too long, then new ones with
        one blocking read. Jobs delivered ``max_deliveries`` times already are dead-lettered
        here instead of being returned."""
        try:
            return self._claim(consumer, count, block_ms=block_ms)
        except redis.ResponseError as error:
            self._regroup_on_nogroup(error)
            return self._claim(consumer, count, block_ms=block_ms)

    def _claim(self, consumer: str, count: int, *, block_ms: int) -> list[Delivery]:
        self._ensure_group(self.jobs_stream, WORKER_GROUP)
        deliveries: list[Delivery] = []
        _, claimed, _ = self.redis.xautoclaim(
            self.jobs_stream, WORKER_GROUP, consumer,
            min_idle_time=int(self.visibility_timeout_s * 1000), count=count,
        )
        for entry_id, fields in claimed:
            if not fields:  # trimmed away while pending
                self.redis.xack(self.jobs_stream, WORKER_GROUP, entry_id)
                continue
            delivery = Delivery(Job.from_json(fields[b"job"]), _text(entry_id), self._times_delivered(entry_id))
            if self.redis.exists(self._done_key(delivery.job.job_id)):
                self.acknowledge(delivery)
            elif delivery.deliveries + delivery.job.attempt - 1 > self.max_deliveries:
                self.dead_letter(delivery, "the worker stopped while making this track, too many times")
            else:
                deliveries.append(delivery)
        if len(deliveries) < count:
            read = self.redis.xreadgroup(
                WORKER_GROUP, consumer, {self.jobs_stream: ">"},
                count=count - len(deliveries), block=None if deliveries else block_ms,
            )
            fresh = [Delivery(Job.from_json(fields[b"job"]), _text(entry_id))
                     for _, entries in read or [] for entry_id, fields in entries]
            finished = self.completed([d.job.job_id for d in fresh])
            for delivery in fresh:
                if delivery.job.job_id in finished:  # cancelled while it waited
                    self.acknowledge(delivery)
                else:
                    deliveries.append(delivery)
        return deliveries

    def keep_alive(self, consumer: str, deliveries: list[Delivery]) -> list[str]:
        """Reset the idle time of jobs ``consumer`` holds, so no other worker takes them over
        while it works on them. Returns the entry ids it no longer owns."""
        if not deliveries:
            return []
        lost = self._keep_alive(keys=[self.jobs_stream], args=[WORKER_GROUP, consumer, *(d.entry_id for d in deliveries)])
        return [_text(entry) for entry in lost]

    def completed(self, job_ids: list[str]) -> set[str]:
        """Which of these jobs are finished (done, failed or cancelled), by anyone."""
        if not job_ids:
            return set()
        with self.redis.pipeline(transaction=False) as pipe:
            for job_id in job_ids:
                pipe.exists(self._done_key(job_id))
            return {job_id for job_id, found in zip(job_ids, pipe.execute()) if found}

    def acknowledge(self, delivery: Delivery) -> None:
        """Drop a job from this worker's pending list without publishing anything."""
        self.redis.xack(self.jobs_stream, WORKER_GROUP, delivery.entry_id)

    def _times_delivered(self, entry_id: bytes | str) -> int:
        info = self.redis.xpending_range(self.jobs_stream, WORKER_GROUP, min=entry_id, max=entry_id, count=1)
        return int(info[0]["times_delivered"]) if info else 1

    def publish(self, event: Event) -> str:
        return _text(self.redis.xadd(
            self.events_stream(event.reply_to.platform), {"event": event.to_json()},
            maxlen=self.stream_maxlen * 10, approximate=True,
        ))

    def has_tokens(self, ref: TakeRef) -> bool:
        """Whether a take's tokens are still kept (an extension needs them)."""
        return bool(self.redis.exists(self.tokens_key(ref.job_id, ref.take)))

    def load_melody(self, melody_key: str) -> bytes | None:
        return self.redis.get(melody_key)

    def store_preview(self, job_id: str, take: int, png: bytes) -> str:
        key = f"{self.prefix}:preview:{job_id}:{take}"
        self.redis.set(key, png, ex=self.audio_ttl_s)
        return key

    def load_preview(self, preview_key: str) -> bytes | None:
        return self.redis.get(preview_key)

    def store_brief(self, job_id: str, brief: dict[str, Any]) -> None:
        self.redis.set(f"{self.prefix}:brief:{job_id}", json.dumps(brief, ensure_ascii=False), ex=self.audio_ttl_s)

    def load_brief(self, job_id: str) -> dict[str, Any] | None:
        payload = self.redis.get(f"{self.prefix}:brief:{job_id}")
        return json.loads(payload) if payload else None

    def melody_workers(self) -> list["WorkerSeen"]:
        """Workers seen recently that follow melodies (they beat with ``lanes`` naming it)."""
        return [w for w in self.workers() if MELODY_LANE in w.info.get("lanes", [])]

    def store_tokens(self, job_id: str, take: int, data: bytes) -> str:
        key = self.tokens_key(job_id, take)
        self.redis.set(key, data, ex=self.audio_ttl_s)
        return key

    def load_tokens(self, tokens_key: str) -> bytes | None:
        return self.redis.get(tokens_key)

    def store_audio(self, job_id: str, take: int, data: bytes) -> str:
        key = self.audio_key(job_id, take)
        with self.redis.pipeline() as pipe:
            pipe.set(key, data, ex=self.audio_ttl_s)
            pipe.expire(self._job_key(job_id), self.audio_ttl_s)
            pipe.execute()
        return key

    def complete(self, delivery: Delivery, *events: Event) -> bool:
        """Publish the job's final events (one ``done`` per take, or one ``failed``) and
        acknowledge the job, atomically and once.

        Returns False when another worker had already finished this job (nothing published).
        """
        return self._finish(delivery.job, delivery.entry_id, *events)

    def _finish(self, job: Job, entry_id: str, *events: Event) -> bool:
        """Publish final events under the job's once-only done key; acknowledge ``entry_id`` if given."""
        return bool(self._finish_once(
            keys=[self._done_key(job.job_id), self.events_stream(job.reply_to.platform), self.jobs_stream],
            args=[events[0].type, self.audio_ttl_s, self.stream_maxlen * 10, WORKER_GROUP, entry_id,
                  *(event.to_json() for event in events)],
        ))

    def retry_or_fail(self, delivery: Delivery, reason: str) -> bool:
        """After a failure: enqueue the job again, or dead-letter it after ``max_deliveries``
        attempts. Returns True when it was dead-lettered."""
        job = delivery.job
        if job.attempt + delivery.deliveries - 1 >= self.max_deliveries:
            self.dead_letter(delivery, reason)
            return True
        job.attempt += 1
        with self.redis.pipeline() as pipe:  # MULTI: re-added and acknowledged together
            pipe.xadd(self.jobs_stream, {"job": job.to_json()}, maxlen=self.stream_maxlen, approximate=True)
            pipe.xack(self.jobs_stream, WORKER_GROUP, delivery.entry_id)
            pipe.execute()
        return False

    def release(self, deliveries: list[Delivery]) -> None:
        """Hand claimed jobs back (a worker stopping before it started them)."""
        if not deliveries:
            return
        with self.redis.pipeline() as pipe:
            for delivery in deliveries:
                pipe.xadd(self.jobs_stream, {"job": delivery.job.to_json()}, maxlen=self.stream_maxlen, approximate=True)
                pipe.xack(self.jobs_stream, WORKER_GROUP, delivery.entry_id)
            pipe.execute()

    def dead_letter(self, delivery: Delivery, reason: str) -> None:
        job = delivery.job
        self.redis.xadd(
            self.dead_stream, {"job": job.to_json(), "reason": reason, "failed_at": str(time.time())},
            maxlen=self.stream_maxlen, approximate=True,
        )
        self.complete(delivery, Event(
            type="failed", job_id=job.job_id, reply_to=job.reply_to,
            error=f"Sorry, this track could not be made ({reason}). Job id: {job.job_id}.",
        ))

    def dead_letters(self, count: int = 100) -> list[tuple[Job, str]]:
        return [(letter.job, letter.reason) for letter in self.dead(count)]

    # ---- operators --------------------------------------------------------------------
    def dead(self, count: int | None = None) -> list[DeadLetter]:
        """Dead-lettered jobs, oldest first (all of them unless ``count``)."""
        return _dead_letters(self.redis.xrange(self.dead_stream, count=count))

    def requeue(self, job_id: str) -> Job:
        """Put a dead-lettered job back in line as a new job: the same request, seeds and
        reply_to, ``parent_job_id`` = the old id. It leaves the dead letters in the same
        transaction, so two operators can't requeue it twice. Raises UnknownJob."""
        while True:
            with self.redis.pipeline() as pipe:
                try:
                    pipe.watch(self.dead_stream)
                    letters = [d for d in _dead_letters(pipe.xrange(self.dead_stream)) if d.job.job_id == job_id]
                    if not letters:
                        raise UnknownJob(f"no dead-lettered job {job_id}")
                    old = letters[-1].job
                    job = Job(job_id=secrets.token_hex(6), request=old.request, reply_to=old.reply_to,
                              seeds=list(old.seeds), created_at=time.time(), parent_job_id=old.job_id)
                    self._ensure_group(self.jobs_stream, WORKER_GROUP)
                    pipe.multi()
                    self._enqueue(job, pipe)
                    pipe.xdel(self.dead_stream, *(d.entry_id for d in letters))
                    pipe.execute()
                except redis.WatchError:
                    continue  # the dead letters changed meanwhile: look again
            self.publish(Event(type="queued", job_id=job.job_id, reply_to=job.reply_to))
            return job

    def cancel(self, job_id: str) -> bool:
        """Cancel a job that has not finished: publishes ``cancelled`` under the same once-only
        done key as ``complete``, so a job is either completed or cancelled, never both.
        Returns False when it had already finished. Raises UnknownJob."""
        job = self.get_job(job_id)
        if job is None:
            raise UnknownJob(f"no job {job_id}")
        cancelled = Event(type="cancelled", job_id=job_id, reply_to=job.reply_to, error=CANCELLED_MESSAGE)
        return self._finish(job, "", cancelled)

    def finished(self, job_id: str) -> str | None:
        """How a job ended (``done``, ``failed`` or ``cancelled``); None while it waits or runs."""
        value = self.redis.get(self._done_key(job_id))
        return _text(value) if value else None

    def beat(self, consumer: str, info: dict[str, Any]) -> None:
        """A worker's heartbeat: call it at least every ``WORKER_SEEN_TTL_S / 2`` seconds."""
        seen = WorkerSeen(consumer=consumer, seen_at=time.time(), info=info)
        self.redis.set(self._worker_key(consumer), json.dumps(asdict(seen)), ex=WORKER_SEEN_TTL_S)

    def workers(self) -> list[WorkerSeen]:
        """Workers that beat within the last ``WORKER_SEEN_TTL_S`` seconds, by name."""
        keys = sorted(self.redis.scan_iter(match=self._worker_key("*"), count=500))
        return [WorkerSeen(**json.loads(value)) for value in (self.redis.mget(keys) if keys else []) if value]

    def status(self) -> QueueStatus:
        group = self._worker_group()
        oldest = self._waiting(group, count=1)
        lag = group.get("lag")
        waiting = int(lag) if lag is not None else len(self._waiting(group))
        pending = self.redis.xpending(self.jobs_stream, WORKER_GROUP)
        oldest_waiting = None
        if oldest:
            job = Job.from_json(oldest[0][1][b"job"])
            oldest_waiting = WaitingJob(job.job_id, job.reply_to.platform, max(0.0, time.time() - job.created_at))
        return QueueStatus(
            waiting=waiting,
            running=int(pending["pending"]),
            pending_by_consumer={_text(c["name"]): int(c["pending"]) for c in pending.get("consumers") or []},
            oldest_waiting=oldest_waiting,
            workers=self.workers(),
            dead_letters=int(self.redis.xlen(self.dead_stream)),
        )

    def purge_audio(self, *, dry_run: bool = False) -> int:
        """Delete every stored MP3 (``P:audio:*``); returns how many there were."""
        keys = list(self.redis.scan_iter(match=f"{self.prefix}:audio:*", count=1000))
        if dry_run:
            return len(keys)
        return sum(self.redis.unlink(*keys[start:start + 500]) for start in range(0, len(keys), 500))


def _retry_for(seconds: float) -> Retry:
    """Retries 20 ms apart at first, doubling up to 0.5 s, until about ``seconds`` have passed."""
    backoff = ExponentialBackoff(cap=0.5, base=0.01)
    retries, waited = 0, 0.0
    while waited < seconds:
        retries += 1
        waited += backoff.compute(retries)
    return Retry(backoff, retries)


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _dead_letters(entries: Any) -> list[DeadLetter]:
    return [
        DeadLetter(_text(entry_id), Job.from_json(f[b"job"]), _text(f[b"reason"]), float(f.get(b"failed_at", 0)))
        for entry_id, f in entries
    ]


def _events_from(read: Any) -> list[Event]:
    return [
        Event.from_json(fields[b"event"], _text(entry_id))
        for _, entries in read or []
        for entry_id, fields in entries
        if fields
    ]
