"""``textunes admin`` and the queue's operator API, against a real redis-server."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from pipeline.models import TuneRequest
from worker.cli import main
from worker.queue import CANCELLED_MESSAGE, WORKER_SEEN_TTL_S, Event, JobQueue, ReplyTo, Take, UnknownJob

REPO = Path(__file__).resolve().parents[1]


def _submit(queue: JobQueue, prompt: str = "calm piano", platform: str = "discord"):  # type: ignore[no-untyped-def]
    return queue.submit(TuneRequest(prompt=prompt, takes=2, seed=7),
                        ReplyTo(platform=platform, channel_id="c1", message_id="m1", user_id="u1"))


def _dead_letter(queue: JobQueue, prompt: str = "poison", reason: str = "the model ran out of memory"):  # type: ignore[no-untyped-def]
    job = _submit(queue, prompt)
    [delivery] = queue.claim("w-dead", 1, block_ms=100)
    assert delivery.job.job_id == job.job_id
    queue.dead_letter(delivery, reason)
    return job


def admin(capsys, *argv: str) -> tuple[int, str, str]:  # type: ignore[no-untyped-def]
    code = main(["admin", *argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_status_shows_depth_holders_oldest_waiting_workers_and_dead_letters(queue: JobQueue, redis_url: str, capsys) -> None:  # type: ignore[no-untyped-def]
    _dead_letter(queue)
    first, second, third = (_submit(queue, f"p{i}") for i in range(3))
    assert [d.job.job_id for d in queue.claim("gpu-0", 1, block_ms=100)] == [first.job_id]
    queue.beat("gpu-0", {"device": "cuda:0", "slots": 8})
    queue.beat("gpu-1", {"device": "cuda:1", "slots": 8})

    code, out, err = admin(capsys, "status", "--redis-url", redis_url, "--json")
    assert code == 0, err
    status = json.loads(out)
    assert status["waiting"] == 2 and status["running"] == 1
    assert status["pending_by_consumer"] == {"gpu-0": 1}
    assert status["oldest_waiting"]["job_id"] == second.job_id
    assert status["oldest_waiting"]["platform"] == "discord" and status["oldest_waiting"]["age_s"] >= 0
    assert [w["consumer"] for w in status["workers"]] == ["gpu-0", "gpu-1"]
    assert status["workers"][0]["info"] == {"device": "cuda:0", "slots": 8}
    assert status["dead_letters"] == 1

    code, out, _ = admin(capsys, "status", "--redis-url", redis_url)
    assert code == 0
    assert "waiting      2" in out and "running      1" in out
    assert f"oldest       {second.job_id} (discord), waiting " in out
    assert "dead         1" in out
    gpu0 = next(line for line in out.splitlines() if line.startswith("gpu-0"))
    assert "ago" in gpu0 and " 1 " in gpu0 and "device=cuda:0 slots=8" in gpu0
    assert third.job_id not in out


def test_status_of_an_empty_queue_says_no_worker_was_seen(redis_url: str, capsys) -> None:  # type: ignore[no-untyped-def]
    code, out, _ = admin(capsys, "status", "--redis-url", redis_url)
    assert code == 0
    assert "waiting      0" in out and "oldest       -" in out
    assert f"no worker seen in the last {WORKER_SEEN_TTL_S} s" in out


def test_a_worker_heartbeat_expires(queue: JobQueue) -> None:
    queue.beat("gpu-0", {"slots": 8})
    assert 0 < queue.redis.ttl("textunes:workers:gpu-0") <= WORKER_SEEN_TTL_S
    queue.redis.delete("textunes:workers:gpu-0")  # what the TTL does a minute later
    assert queue.workers() == []


def test_dead_lists_the_reason_and_requeue_puts_the_same_request_back_in_line(queue: JobQueue, redis_url: str, capsys) -> None:  # type: ignore[no-untyped-def]
    old = _dead_letter(queue, "rainy night", "the worker stopped while making this track, too many times")
    code, out, _ = admin(capsys, "dead", "--redis-url", redis_url)
    assert code == 0
    assert old.job_id in out and "rainy night" in out and "too many times" in out

    code, out, err = admin(capsys, "requeue", old.job_id, "--redis-url", redis_url)
    assert code == 0, err
    new_id = out.split()[-1]
    assert out.strip() == f"requeued {old.job_id} as job {new_id}"
    assert queue.dead() == []
    [delivery] = queue.claim("gpu-0", 1, block_ms=100)
    new = delivery.job
    assert new.job_id == new_id != old.job_id
    assert (new.request, new.seeds, new.reply_to, new.parent_job_id) == (old.request, old.seeds, old.reply_to, old.job_id)
    assert new.attempt == 1
    queued = [e for e in queue.read_events("discord", "f", block_ms=10) if e.type == "queued"]
    assert [e.job_id for e in queued][-1] == new_id

    code, _, err = admin(capsys, "requeue", old.job_id, "--redis-url", redis_url)  # only once
    assert code == 1 and err == f"error: no dead-lettered job {old.job_id}\n"


def test_requeue_all_empties_the_dead_letters(queue: JobQueue, redis_url: str, capsys) -> None:  # type: ignore[no-untyped-def]
    dead = [_dead_letter(queue, f"poison {i}") for i in range(3)]
    code, out, _ = admin(capsys, "requeue", "--all", "--redis-url", redis_url, "--json")
    assert code == 0
    moved = json.loads(out)
    assert [m["job_id"] for m in moved] == [j.job_id for j in dead]
    assert queue.dead() == [] and queue.status().waiting == 3


def test_dead_and_requeue_all_with_nothing_dead(redis_url: str, capsys) -> None:  # type: ignore[no-untyped-def]
    assert admin(capsys, "dead", "--redis-url", redis_url)[1] == "no dead-lettered jobs\n"
    assert admin(capsys, "requeue", "--all", "--redis-url", redis_url)[1] == "0 job(s) requeued\n"


def test_cancel_publishes_cancelled_once_and_the_worker_cannot_complete_it_after(queue: JobQueue, redis_url: str, capsys) -> None:  # type: ignore[no-untyped-def]
    job = _submit(queue)
    [delivery] = queue.claim("gpu-0", 1, block_ms=100)  # a worker is making it
    code, out, _ = admin(capsys, "cancel", job.job_id, "--redis-url", redis_url)
    assert (code, out) == (0, f"cancelled job {job.job_id}\n")
    done = Event(type="done", job_id=job.job_id, reply_to=job.reply_to, take_count=1,
                 take=Take(1, 7, 5.0, queue.store_audio(job.job_id, 1, b"mp3"), 128, 3))
    assert queue.complete(delivery, done) is False  # the worker finishing later publishes nothing
    events = [e for e in queue.read_events("discord", "f", block_ms=10) if e.type != "queued"]
    assert [(e.type, e.error, e.reply_to) for e in events] == [("cancelled", CANCELLED_MESSAGE, job.reply_to)]
    assert queue.finished(job.job_id) == "cancelled" and queue.depth() == 0  # acknowledged by complete()

    code, _, err = admin(capsys, "cancel", job.job_id, "--redis-url", redis_url)
    assert code == 1 and err == f"error: job {job.job_id} already finished (cancelled); nothing to cancel\n"


def test_a_completed_job_cannot_be_cancelled(queue: JobQueue, redis_url: str, capsys) -> None:  # type: ignore[no-untyped-def]
    job = _submit(queue)
    [delivery] = queue.claim("gpu-0", 1, block_ms=100)
    assert queue.complete(delivery, Event(type="failed", job_id=job.job_id, reply_to=job.reply_to, error="x"))
    code, out, err = admin(capsys, "cancel", job.job_id, "--redis-url", redis_url, "--json")
    assert code == 1 and json.loads(out) == {"job_id": job.job_id, "cancelled": False, "already": "failed"}
    assert [e.type for e in queue.read_events("discord", "f", block_ms=10)] == ["queued", "failed"]


def test_a_waiting_job_cancelled_keeps_its_place_until_a_worker_skips_it(queue: JobQueue) -> None:
    job = _submit(queue)
    assert queue.cancel(job.job_id) is True
    assert queue.cancel(job.job_id) is False
    assert queue.finished(job.job_id) == "cancelled"
    with pytest.raises(UnknownJob):
        queue.cancel("nosuchjob")


def test_unknown_job_ids_get_one_line_and_exit_1(redis_url: str, capsys) -> None:  # type: ignore[no-untyped-def]
    assert admin(capsys, "cancel", "nosuchjob", "--redis-url", redis_url)[::2] == (1, "error: no job nosuchjob\n")
    assert admin(capsys, "requeue", "nosuchjob", "--redis-url", redis_url)[::2] == (1, "error: no dead-lettered job nosuchjob\n")


def test_purge_audio_deletes_stored_takes_and_keeps_job_records(queue: JobQueue, redis_url: str, capsys) -> None:  # type: ignore[no-untyped-def]
    jobs = [_submit(queue, f"p{i}") for i in range(2)]
    for job, takes in zip(jobs, (2, 1)):
        for n in range(1, takes + 1):
            queue.store_audio(job.job_id, n, b"mp3")
    assert admin(capsys, "purge-audio", "--dry-run", "--redis-url", redis_url)[1] == "3 stored MP3(s) would be deleted\n"
    assert queue.load_audio(queue.audio_key(jobs[0].job_id, 1)) == b"mp3"
    assert admin(capsys, "purge-audio", "--redis-url", redis_url)[1] == "deleted 3 stored MP3(s)\n"
    assert queue.load_audio(queue.audio_key(jobs[0].job_id, 1)) is None
    assert all(queue.get_job(job.job_id) is not None for job in jobs)
    assert json.loads(admin(capsys, "purge-audio", "--redis-url", redis_url, "--json")[1]) == {"deleted": 0, "found": 0}


def test_an_unreachable_redis_is_one_line_without_the_password(capsys) -> None:  # type: ignore[no-untyped-def]
    from worker.local_redis import free_port

    code, out, err = admin(capsys, "status", "--redis-url", f"redis://:hunter2@127.0.0.1:{free_port()}/0")
    assert code == 1 and out == ""
    assert err.startswith("error: Redis at redis://:***@127.0.0.1:") and err.count("\n") == 1
    assert "hunter2" not in err


@pytest.mark.parametrize("argv", [["admin", "status", "--bogus"], ["admin", "explode"], ["admin", "cancel"],
                                  ["admin", "dead", "--limit", "many"]])
def test_a_bad_flag_is_one_line_on_stderr_and_exit_2(argv: list[str]) -> None:
    result = subprocess.run([sys.executable, "-m", "worker.cli", *argv], cwd=REPO, capture_output=True, text=True)
    assert result.returncode == 2
    assert result.stdout == "" and result.stderr.count("\n") == 1, result.stderr
    assert result.stderr.startswith("textunes") and "error:" in result.stderr and "--help" in result.stderr


def test_every_admin_action_has_help() -> None:
    for action, expected in (("status", "oldest"), ("dead", "--limit"), ("requeue", "--all"),
                             ("cancel", "already finished"), ("purge-audio", "--dry-run")):
        result = subprocess.run([sys.executable, "-m", "worker.cli", "admin", action, "--help"], cwd=REPO,
                                capture_output=True, text=True, check=True)
        assert expected in result.stdout and "--json" in result.stdout


def test_submit_wait_reports_a_cancellation_and_exits_1(queue: JobQueue, redis_url: str, capsys) -> None:  # type: ignore[no-untyped-def]
    result: list[int] = []
    waiter = threading.Thread(target=lambda: result.append(
        main(["submit", "calm piano", "--redis-url", redis_url, "--wait", "--timeout", "60"])))
    waiter.start()
    deadline = time.monotonic() + 30
    while queue.status().oldest_waiting is None:
        assert time.monotonic() < deadline, "the job was never queued"
        time.sleep(0.02)
    assert queue.cancel(queue.status().oldest_waiting.job_id)
    waiter.join(timeout=30)
    assert result == [1]
    assert "cancelled: Cancelled by an operator." in capsys.readouterr().err
