"""``textunes admin``: look at the queue and fix it, from a shell.

``status`` (queue depth, jobs held per worker, the oldest waiting job, workers seen
recently, dead letters), ``dead`` (dead-lettered jobs and why), ``requeue ID|--all``,
``cancel ID`` and ``purge-audio``. Tables for people, ``--json`` for scripts. A bad flag,
an unknown job id or an unreachable Redis gets one line on stderr and a non-zero exit.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import asdict
from typing import Any

import redis

from pipeline.env import redacted_url
from pipeline.models import TuneRequest
from worker.queue import WORKER_SEEN_TTL_S, JobQueue, QueueStatus, UnknownJob
from worker.settings import Settings, env_name


def configure_parser(parser: argparse.ArgumentParser) -> None:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--redis-url", help=f"the Redis server (default: env {env_name('redis_url')})")
    common.add_argument("--json", action="store_true", help="print JSON for scripts instead of a table")
    sub = parser.add_subparsers(dest="admin_command", required=True, metavar="ACTION")
    sub.add_parser("status", parents=[common], help="queue depth, jobs per worker, oldest waiting job, workers, dead letters",
                   description="How many jobs wait and run, which worker holds how many, the oldest job still "
                               f"waiting and its age, the workers seen in the last {WORKER_SEEN_TTL_S} s, "
                               "and how many jobs were dead-lettered.")
    dead = sub.add_parser("dead", parents=[common], help="list dead-lettered jobs with the reason",
                          description="Jobs that failed too many times, oldest first, with the reason.")
    dead.add_argument("--limit", type=int, default=100, help="show at most this many (default: %(default)s)")
    requeue = sub.add_parser("requeue", parents=[common], help="put a dead-lettered job (or all) back in line",
                             description="Submit a dead-lettered job again as a new job with the same request, "
                                         "seeds and reply target (its parent is the old job), and remove it "
                                         "from the dead letters.")
    which = requeue.add_mutually_exclusive_group(required=True)
    which.add_argument("job_id", nargs="?", help="the dead-lettered job's id")
    which.add_argument("--all", action="store_true", help="requeue every dead-lettered job")
    cancel = sub.add_parser("cancel", parents=[common], help="cancel a job that has not finished",
                            description="Publish 'cancelled' for a waiting or running job: the user's status "
                                        "message says so and workers skip it. A job that already finished "
                                        "is left alone (exit 1).")
    cancel.add_argument("job_id", help="the job's id")
    purge = sub.add_parser("purge-audio", parents=[common], help="delete every stored MP3 from Redis",
                           description="Delete all stored takes (P:audio:*) to free Redis memory; job records "
                                       "stay. Takes not yet posted are lost. Says how many were deleted.")
    purge.add_argument("--dry-run", action="store_true", help="only count them")


def run(args: argparse.Namespace, settings: Settings) -> int:
    url = args.redis_url or settings.redis_url
    try:
        with JobQueue.from_settings(settings, url=url) as queue:
            return _ACTIONS[args.admin_command](queue, args)
    except UnknownJob as error:
        return _fail(str(error))
    except redis.RedisError as error:
        return _fail(f"Redis at {redacted_url(url)}: {error}")


def _status(queue: JobQueue, args: argparse.Namespace) -> int:
    status = queue.status()
    if args.json:
        return _print_json(asdict(status))
    print(format_status(status, time.time()))
    return 0


def format_status(status: QueueStatus, now: float) -> str:
    oldest = status.oldest_waiting
    lines = [
        f"waiting      {status.waiting}",
        f"running      {status.running}",
        f"oldest       {f'{oldest.job_id} ({oldest.platform}), waiting {_age(oldest.age_s)}' if oldest else '-'}",
        f"dead         {status.dead_letters}" + ("  (textunes admin dead)" if status.dead_letters else ""),
        "",
    ]
    seen = {worker.consumer: worker for worker in status.workers}
    names = sorted(set(seen) | set(status.pending_by_consumer))
    if not names:
        return "\n".join(lines + [f"no worker seen in the last {WORKER_SEEN_TTL_S} s"])
    rows = []
    for name in names:
        worker = seen.get(name)
        rows.append([
            name,
            f"{_age(now - worker.seen_at)} ago" if worker else f"not in the last {WORKER_SEEN_TTL_S} s",
            str(status.pending_by_consumer.get(name, 0)),
            " ".join(f"{k}={v}" for k, v in worker.info.items()) if worker else "",
        ])
    return "\n".join(lines) + "\n" + _table(["WORKER", "LAST SEEN", "HOLDS", "INFO"], rows)


def _dead(queue: JobQueue, args: argparse.Namespace) -> int:
    letters = queue.dead(args.limit)
    if args.json:
        return _print_json([
            {"entry_id": d.entry_id, "job_id": d.job.job_id, "platform": d.job.reply_to.platform,
             "failed_at": d.failed_at, "reason": d.reason, "request": d.job.request.to_dict()}
            for d in letters
        ])
    if not letters:
        print("no dead-lettered jobs")
        return 0
    print(_table(["JOB", "PLATFORM", "FAILED AT (UTC)", "REQUEST", "REASON"], [
        [d.job.job_id, d.job.reply_to.platform, time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(d.failed_at)),
         _short(_describe(d.job.request), 30), d.reason]
        for d in letters
    ]))
    return 0


def _requeue(queue: JobQueue, args: argparse.Namespace) -> int:
    if args.all:
        old_ids = list(dict.fromkeys(d.job.job_id for d in queue.dead()))
    else:
        old_ids = [args.job_id]
    moved = [(old_id, queue.requeue(old_id)) for old_id in old_ids]
    if args.json:
        return _print_json([{"job_id": old_id, "new_job_id": job.job_id} for old_id, job in moved])
    for old_id, job in moved:
        print(f"requeued {old_id} as job {job.job_id}")
    if args.all:
        print(f"{len(moved)} job(s) requeued")
    return 0


def _cancel(queue: JobQueue, args: argparse.Namespace) -> int:
    cancelled = queue.cancel(args.job_id)
    ended = None if cancelled else queue.finished(args.job_id)
    if args.json:
        _print_json({"job_id": args.job_id, "cancelled": cancelled, "already": ended})
    elif cancelled:
        print(f"cancelled job {args.job_id}")
    else:
        print(f"error: job {args.job_id} already finished ({ended}); nothing to cancel", file=sys.stderr)
    return 0 if cancelled else 1


def _purge_audio(queue: JobQueue, args: argparse.Namespace) -> int:
    count = queue.purge_audio(dry_run=args.dry_run)
    if args.json:
        return _print_json({"deleted": 0 if args.dry_run else count, "found": count})
    print(f"{count} stored MP3(s) would be deleted" if args.dry_run else f"deleted {count} stored MP3(s)")
    return 0


_ACTIONS = {"status": _status, "dead": _dead, "requeue": _requeue, "cancel": _cancel, "purge-audio": _purge_audio}


def _fail(message: str) -> int:
    print(f"error: {message}", file=sys.stderr)
    return 1


def _print_json(data: Any) -> int:
    print(json.dumps(data, ensure_ascii=False, indent=2))
    return 0


def _table(headers: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(cell) for cell in column) for column in zip(headers, *rows)]
    return "\n".join("  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip()
                     for row in [headers, *rows])


def _age(seconds: float) -> str:
    seconds = int(max(0.0, seconds))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds // 60 % 60:02d}m"


def _describe(request: TuneRequest) -> str:
    return request.prompt or request.text or ", ".join(request.genres + request.moods + request.instruments)


def _short(text: str, width: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 1] + "…"
