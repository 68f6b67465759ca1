"""Extending a take: how far it can go, and the request that continues it.

Used by every frontend (the CLI's ``submit --extend``, the bots' ➕ and Extend button) so
they all measure a take and refuse the same things. No torch: frontends import it.
"""

from __future__ import annotations

import math
from dataclasses import replace

from pipeline.models import TuneRequest
from pipeline.validation import InvalidRequest, Limits
from worker.queue import JobQueue, TakeRef
from worker.tokens import FRAME_RATE, BadTokens, frames_in

EXTEND_BY_S = 30.0  # what an extension adds, when the maximum length allows


def take_seconds(tokens: bytes | None) -> float | None:
    """How long the track a take's stored tokens hold is (None when they are gone or damaged).
    For a loop this is the music it was cut from, which is what an extension continues."""
    try:
        return frames_in(tokens or b"") / FRAME_RATE
    except BadTokens:
        return None


def extension_seconds(length: float, limits: Limits) -> float | None:
    """How much an extension adds to a track of ``length`` seconds: 30 s, or what is left
    under the maximum; None when that is under the shortest request."""
    more = math.floor(min(EXTEND_BY_S, limits.max_duration - length) * 10) / 10
    return more if more >= limits.min_duration else None


def extension(queue: JobQueue, ref: TakeRef, seconds: float | None, limits: Limits) -> TuneRequest:
    """The request that continues take ``ref`` by ``seconds`` (30 by default, less if that
    would pass the longest track allowed). Raises InvalidRequest with the user's reply."""
    job = queue.get_job(ref.job_id)
    if job is None or not 1 <= ref.take <= len(job.seeds):
        raise InvalidRequest(f"I don't know take {ref}: it's more than {queue.audio_ttl_s // 3600} h old, "
                             "or it never existed.")
    current = take_seconds(queue.load_tokens(queue.tokens_key(ref.job_id, ref.take)))
    if current is None:
        raise InvalidRequest(f"Take {ref} can't be extended any more: its music is kept for "
                             f"{queue.audio_ttl_s // 3600} h. Make a new take and extend that.")
    room = limits.max_duration - current
    added = extension_seconds(current, limits) if seconds is None else seconds
    if added is None:
        raise InvalidRequest(f"This take is already {current:.0f} s long; tracks can be at most "
                             f"{limits.max_duration:g} s, so it can't be extended.")
    if not limits.min_duration <= added <= room:
        raise InvalidRequest(f"An extension must add between {limits.min_duration:g} and {room:g} seconds "
                             f"(the take is {current:.0f} s; tracks can be at most {limits.max_duration:g} s).")
    return replace(job.request, duration=added, takes=1, seed=None, loop=False)
