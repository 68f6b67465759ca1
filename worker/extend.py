"""Extending a take: the request that continues it, or the reason it can't be continued.

Used by every frontend (the CLI's ``submit --extend``, the bots' ➕ and Extend button) so
they all refuse the same things with the same words. No torch: frontends import it.
"""

from __future__ import annotations

from dataclasses import replace

from pipeline.models import TuneRequest
from pipeline.validation import InvalidRequest, Limits
from worker.queue import JobQueue, TakeRef
from worker.tokens import FRAME_RATE, frames_in

DEFAULT_EXTEND_S = 30.0


def extension(queue: JobQueue, ref: TakeRef, seconds: float | None, limits: Limits) -> TuneRequest:
    """The request that continues take ``ref`` by ``seconds`` (30 by default, less if that
    would pass the longest track allowed). Raises InvalidRequest with the user's reply."""
    job = queue.get_job(ref.job_id)
    if job is None or not 1 <= ref.take <= len(job.seeds):
        raise InvalidRequest(f"I don't know take {ref}: it's more than {queue.audio_ttl_s // 3600} h old, "
                             "or it never existed.")
    tokens = queue.load_tokens(queue.tokens_key(ref.job_id, ref.take))
    if tokens is None:
        raise InvalidRequest(f"Take {ref} can't be extended any more: its music is kept for "
                             f"{queue.audio_ttl_s // 3600} h. Make a new take and extend that.")
    current = frames_in(tokens) / FRAME_RATE
    room = limits.max_duration - current
    if room < limits.min_duration:
        raise InvalidRequest(f"This take is already {current:.0f} s long; tracks can be at most "
                             f"{limits.max_duration:g} s, so it can't be extended.")
    added = min(DEFAULT_EXTEND_S, room) if seconds is None else seconds
    if not limits.min_duration <= added <= room:
        raise InvalidRequest(f"An extension must add between {limits.min_duration:g} and {room:g} seconds "
                             f"(the take is {current:.0f} s; tracks can be at most {limits.max_duration:g} s).")
    return replace(job.request, duration=added, takes=1, seed=None, loop=False)
