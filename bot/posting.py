"""The posting record: what a frontend has posted for each job, and who is posting it now.

A take must never be lost and should never be posted twice, across crashes, kills and
restarts. So a post is never marked before it happens:

1. ``lease``: whoever posts takes a lease on the post first. The lease expires after
   ``lease_s`` unless its holder renews it, so a process killed mid-upload blocks nobody
   for long; while it is held, another process leaves the post alone (``Busy``).
2. ``trying``: right before calling the platform, the attempt is recorded. A later attempt
   that finds this mark must first look in the thread for the post (``tried``): the earlier
   attempt may have landed even though nobody saw the platform's answer.
3. ``confirm``: only once the platform confirmed the post is it marked as posted for good
   (and the take's audio is deleted from Redis in the same step: it is no longer needed).

Keys (``P`` is the prefix), all with the record's TTL (the audio TTL):

- ``P:posts:<job>``         hash: ``<what>`` -> ``ok:<message ref>`` once confirmed, or
                            ``lost:<reason>`` when it can't be posted; ``tried:<what>`` -> attempts
- ``P:lease:<job>:<what>``  the holder of a post in progress, expiring after ``lease_s``
- ``P:numbers:<platform>:<place>``  the last take number used in a thread (or channel), so
                            takes of 🔁 jobs continue the numbering instead of repeating it

``what`` names the post: ``take-<n>``, ``analysis``, ``failed``, ``status`` (the final status
edit), ``cancelled``, and the notices ``expired-<n>`` and ``too-large-<n>`` for a take that can't
be posted.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass

import redis

from worker.queue import ReplyTo

# Take the lease when it is free (or already ours); else say how long it has left.
_LEASE = """
local holder = redis.call('GET', KEYS[1])
if not holder or holder == ARGV[1] then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return -1
end
local left = redis.call('PTTL', KEYS[1])
if left < 0 then left = 0 end
return left
"""

# Extend (ARGV[2] > 0) or drop (ARGV[2] == 0) the lease, only when it is still ours.
_RENEW_OR_RELEASE = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
if tonumber(ARGV[2]) > 0 then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
else
  redis.call('DEL', KEYS[1])
end
return 1
"""

# Record an outcome, drop our lease and the keys it made unneeded, and return every
# outcome of the job: in one step, so two processes finishing the last two takes at once
# both see both.
_SETTLE = """
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
redis.call('EXPIRE', KEYS[1], ARGV[3])
if redis.call('GET', KEYS[2]) == ARGV[4] then redis.call('DEL', KEYS[2]) end
for i = 3, #KEYS do redis.call('DEL', KEYS[i]) end
return redis.call('HGETALL', KEYS[1])
"""

POSTED = "ok:"
LOST = "lost:"


class Busy(Exception):
    """Another process is posting this right now; look again in ``retry_in_s``."""

    def __init__(self, what: str, retry_in_s: float) -> None:
        super().__init__(f"{what} is being posted by another process")
        self.retry_in_s = retry_in_s


class Unpostable(Exception):
    """A take the platform can't take at all (too large even re-encoded); the output has
    told the user why, and the take is settled as not posted."""


@dataclass(frozen=True)
class Takes:
    """How a job's takes stand: confirmed posts and takes that could not be posted."""

    posted: int
    lost: int

    def settled(self, total: int) -> bool:
        return self.posted + self.lost >= total


class PostingRecord:
    def __init__(self, client: redis.Redis, *, prefix: str = "textunes", ttl_s: int = 24 * 3600,
                 lease_s: float = 30.0, holder: str = "") -> None:
        self.redis = client
        self.prefix = prefix
        self.ttl_s = ttl_s
        self.lease_s = lease_s
        self.holder = holder or f"frontend-{secrets.token_hex(6)}"
        self._lease = client.register_script(_LEASE)
        self._renew_or_release = client.register_script(_RENEW_OR_RELEASE)
        self._settle = client.register_script(_SETTLE)

    def _posts(self, job_id: str) -> str:
        return f"{self.prefix}:posts:{job_id}"

    def _lease_key(self, job_id: str, what: str) -> str:
        return f"{self.prefix}:lease:{job_id}:{what}"

    # ---- leases ----------------------------------------------------------------------
    def lease(self, job_id: str, what: str) -> None:
        """Take the lease on posting ``what``; raises Busy while another holder has it."""
        left_ms = int(self._lease(keys=[self._lease_key(job_id, what)], args=[self.holder, int(self.lease_s * 1000)]))
        if left_ms >= 0:
            raise Busy(what, max(left_ms, 50) / 1000)

    def renew(self, job_id: str, what: str) -> bool:
        """Extend our lease by ``lease_s``; False when it is no longer ours (it expired)."""
        return bool(self._renew_or_release(keys=[self._lease_key(job_id, what)],
                                           args=[self.holder, int(self.lease_s * 1000)]))

    def release(self, job_id: str, what: str) -> None:
        """Give the lease back (after a failed attempt) so the next try needn't wait it out."""
        self._renew_or_release(keys=[self._lease_key(job_id, what)], args=[self.holder, 0])

    # ---- attempts and outcomes ---------------------------------------------------------
    def trying(self, job_id: str, what: str) -> None:
        """Mark that a post is about to be attempted (call right before the platform call)."""
        with self.redis.pipeline() as pipe:
            pipe.hincrby(self._posts(job_id), f"tried:{what}", 1)
            pipe.expire(self._posts(job_id), self.ttl_s)
            pipe.execute()

    def tried(self, job_id: str, what: str) -> bool:
        """An earlier attempt was made and never confirmed: it may have landed all the same."""
        return bool(self.redis.hexists(self._posts(job_id), f"tried:{what}"))

    def posted(self, job_id: str, what: str) -> str | None:
        """The confirmed post's message ref ("" when it has none); None while not posted."""
        value = self.redis.hget(self._posts(job_id), what)
        text = value.decode() if value is not None else ""
        return text.removeprefix(POSTED) if text.startswith(POSTED) else None

    def settled(self, job_id: str, what: str) -> bool:
        """Posted, or given up on: nothing more to do for ``what``."""
        return bool(self.redis.hexists(self._posts(job_id), what))

    def confirm(self, job_id: str, what: str, ref: str = "", *, drop: tuple[str, ...] = ()) -> Takes:
        """The platform confirmed the post: mark it for good, release the lease and delete
        ``drop`` (the take's audio). Returns how the job's takes stand now."""
        return self._record(job_id, what, POSTED + ref, drop)

    def give_up(self, job_id: str, what: str, reason: str) -> Takes:
        """``what`` can't be posted (its audio expired, it is too large, the platform keeps
        refusing it): settle it as lost so the job's status can say so."""
        return self._record(job_id, what, LOST + reason, ())

    def takes(self, job_id: str) -> Takes:
        return _count_takes(self.redis.hgetall(self._posts(job_id)))

    def _record(self, job_id: str, what: str, outcome: str, drop: tuple[str, ...]) -> Takes:
        flat = self._settle(keys=[self._posts(job_id), self._lease_key(job_id, what), *drop],
                            args=[what, outcome, self.ttl_s, self.holder])
        return _count_takes(dict(zip(flat[::2], flat[1::2])))

    # ---- take numbers ------------------------------------------------------------------
    def reserve_numbers(self, platform: str, place: str, count: int) -> int:
        """Reserve ``count`` take numbers in a thread or channel; returns the first one."""
        key = f"{self.prefix}:numbers:{platform}:{place}"
        with self.redis.pipeline() as pipe:
            pipe.incrby(key, count)
            pipe.expire(key, self.ttl_s)
            last, _ = pipe.execute()
        return int(last) - count + 1


FIRST_TAKE = "first_take"  # ReplyTo.extra: the number the job's first take shows in its thread
EXTENDS = "extends"  # ReplyTo.extra: the number of the take an extension continues


def take_number(reply_to: ReplyTo, index: int) -> int:
    """The number take ``index`` (1-based) of a job shows ("Take 3", ``…-3.mp3``): its place
    in the thread's numbering."""
    return int(reply_to.extra.get(FIRST_TAKE) or 1) + index - 1


def _count_takes(fields: dict[bytes, bytes]) -> Takes:
    outcomes = [v for k, v in fields.items() if k.startswith(b"take-")]
    return Takes(posted=sum(v.startswith(POSTED.encode()) for v in outcomes),
                 lost=sum(v.startswith(LOST.encode()) for v in outcomes))
