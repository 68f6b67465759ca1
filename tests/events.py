"""What the platform tests wait on: a frontend has read and acknowledged its events."""

from __future__ import annotations

import redis

from worker.queue import FRONTEND_GROUP


def events_settled(redis_url: str, platform: str) -> bool:
    """Every event published for ``platform`` has been read and acknowledged by the bots
    (False while the stream or its consumer group doesn't exist yet)."""
    client = redis.Redis.from_url(redis_url)
    try:
        groups = client.xinfo_groups(f"textunes:events:{platform}")
    except redis.ResponseError:
        return False
    finally:
        client.close()
    group = next((g for g in groups if g["name"] == FRONTEND_GROUP.encode()), None)
    return bool(group) and group["pending"] == 0 and (group.get("lag") or 0) == 0
