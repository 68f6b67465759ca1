from __future__ import annotations

import subprocess
import sys
import threading

import pytest

from pipeline.models import TuneRequest
from worker.queue import Event, JobQueue, ReplyTo, Take


def test_queue_and_bots_import_without_torch() -> None:
    code = ("import worker.queue, bot.service, bot.discord_bot, bot.slack_app, pipeline.audio, sys; "
            "heavy = {'torch', 'transformers'} & set(sys.modules); assert not heavy, heavy")
    subprocess.run([sys.executable, "-c", code], check=True)


def _submit(queue: JobQueue, prompt: str = "calm piano", takes: int = 1, platform: str = "cli"):
    return queue.submit(TuneRequest(prompt=prompt, takes=takes), ReplyTo(platform=platform, channel_id="c1"))


def test_submit_then_claim_returns_the_job_with_fixed_seeds(queue: JobQueue) -> None:
    job = queue.submit(TuneRequest(prompt="x", takes=3, seed=10), ReplyTo(platform="cli"))
    assert job.seeds == [10, 11, 12]
    [delivery] = queue.claim("w1", 8, block_ms=100)
    assert delivery.job.job_id == job.job_id
    assert delivery.job.request.prompt == "x"
    events = queue.read_events("cli", "f1", block_ms=10)
    assert [e.type for e in events] == ["queued"]


def test_claim_takes_up_to_count_in_one_read(queue: JobQueue) -> None:
    ids = [_submit(queue, f"p{i}").job_id for i in range(5)]
    first = queue.claim("w1", 3, block_ms=100)
    second = queue.claim("w1", 3, block_ms=100)
    assert [d.job.job_id for d in first] == ids[:3]
    assert [d.job.job_id for d in second] == ids[3:]


def test_position_and_depth_count_running_and_waiting_jobs(queue: JobQueue) -> None:
    jobs = [_submit(queue) for _ in range(3)]
    assert [queue.position(j.job_id) for j in jobs] == [1, 2, 3]
    queue.claim("w1", 1, block_ms=100)
    assert queue.position(jobs[0].job_id) == 0
    assert queue.position(jobs[2].job_id) == 3  # one running, one ahead waiting
    assert queue.depth() == 3


def test_finish_publishes_one_done_per_take_once_and_acknowledges(queue: JobQueue) -> None:
    job = _submit(queue, takes=2)
    [delivery] = queue.claim("w1", 1, block_ms=100)
    done = [
        Event(type="done", job_id=job.job_id, reply_to=job.reply_to, take_count=2,
              take=Take(n, job.seeds[n - 1], 5.0, queue.store_audio(job.job_id, n, b"mp3-%d" % n), 128, 5))
        for n in (1, 2)
    ]
    assert queue.complete(delivery, *done) is True
    assert queue.complete(delivery, *done) is False  # a second worker finishing it publishes nothing
    events = queue.read_events("cli", "f1", block_ms=10)
    assert [e.type for e in events] == ["queued", "done", "done"]
    assert [queue.load_audio(e.take.audio_key) for e in events[1:]] == [b"mp3-1", b"mp3-2"]
    assert queue.depth() == 0


def test_dead_worker_jobs_are_reclaimed_after_visibility_timeout(queue: JobQueue) -> None:
    job = _submit(queue)
    assert queue.claim("dead", 1, block_ms=100)
    assert queue.claim("alive", 1, block_ms=10) == []  # still within the timeout
    queue.redis.xclaim(queue.jobs_stream, "workers", "dead", 0, [queue.redis.xpending_range(
        queue.jobs_stream, "workers", "-", "+", 1)[0]["message_id"]], idle=5000, justid=True)  # age it
    [delivery] = queue.claim("alive", 1, block_ms=10)
    assert delivery.job.job_id == job.job_id
    assert delivery.deliveries == 2


def test_failing_job_is_retried_then_dead_lettered_with_a_readable_failed_event(queue: JobQueue) -> None:
    job = _submit(queue, platform="slack")
    for attempt in range(1, queue.max_deliveries + 1):
        [delivery] = queue.claim("w1", 1, block_ms=100)
        assert delivery.job.attempt == attempt
        dead = queue.retry_or_fail(delivery, "the model ran out of memory")
        assert dead is (attempt == queue.max_deliveries)
    assert queue.claim("w1", 1, block_ms=10) == []
    [(dead_job, reason)] = queue.dead_letters()
    assert dead_job.job_id == job.job_id and "out of memory" in reason
    failed = [e for e in queue.read_events("slack", "f", block_ms=10) if e.type == "failed"]
    assert len(failed) == 1
    assert "out of memory" in failed[0].error and job.job_id in failed[0].error


def test_release_puts_jobs_back_for_another_worker(queue: JobQueue) -> None:
    job = _submit(queue)
    deliveries = queue.claim("w1", 1, block_ms=100)
    queue.release(deliveries)
    [again] = queue.claim("w2", 1, block_ms=100)
    assert again.job.job_id == job.job_id


def test_frontend_restart_rereads_unacknowledged_events(redis_url: str) -> None:
    with JobQueue.from_url(redis_url) as first:
        _submit(first, platform="discord")
        [event] = first.read_events("discord", "bot-1", block_ms=10)  # read, then the bot dies
    with JobQueue.from_url(redis_url) as restarted:
        [again] = restarted.read_events("discord", "bot-1", block_ms=10)
        assert again.event_id == event.event_id
        restarted.ack_event("discord", again.event_id)
        assert restarted.read_events("discord", "bot-1", block_ms=10) == []


def test_a_call_made_while_redis_restarts_waits_for_it(redis_server, redis_url: str) -> None:  # type: ignore[no-untyped-def]
    """A restart of Redis is no error for a worker's or a bot's threads: every call keeps trying
    for ``REDIS_RETRY_S``. This Redis keeps nothing, so the consumer groups are made again."""
    with JobQueue.from_url(redis_url) as queue:
        _submit(queue)
        assert queue.claim("w1", 1, block_ms=100)
        redis_server.stop()
        restart = threading.Timer(1.0, redis_server.start)
        restart.start()
        try:
            assert queue.claim("w1", 1, block_ms=100) == []  # waited for Redis; the job went with its data
        finally:
            restart.join()
        job = _submit(queue, "after restart")
        [delivery] = queue.claim("w1", 1, block_ms=100)
        assert delivery.job.job_id == job.job_id
        assert [e.type for e in queue.read_events("cli", "f1", block_ms=10)] == ["queued"]


def test_melody_jobs_wait_in_their_own_lane_and_count_toward_the_cap(queue: JobQueue) -> None:
    from worker.queue import MELODY_LANE, TakeRef

    plain = queue.submit(TuneRequest(prompt="calm"), ReplyTo(platform="cli"))
    melodic = queue.submit(TuneRequest(prompt="calm"), ReplyTo(platform="cli"), melody=b"flac-bytes")
    extension = queue.submit(TuneRequest(prompt="calm", duration=30), ReplyTo(platform="cli"),
                             extend=TakeRef(plain.job_id, 1))
    assert queue.depth() == 3
    assert [d.job.job_id for d in queue.claim("w", 8, block_ms=10)] == [plain.job_id, extension.job_id]
    melody_queue = JobQueue(queue.redis, prefix=queue.prefix, lane=MELODY_LANE)
    [delivery] = melody_queue.claim("m", 8, block_ms=10)
    assert delivery.job.job_id == melodic.job_id and queue.load_melody(delivery.job.melody_key) == b"flac-bytes"
    assert queue.get_job(extension.job_id).extend == TakeRef(plain.job_id, 1)
    assert TakeRef.parse(" abc123:2 ") == TakeRef("abc123", 2)
    with pytest.raises(ValueError, match="JOB:TAKE"):
        TakeRef.parse("abc123")
