"""Platform events seen before: a chat service that redelivers an event (Slack does when it
thinks an acknowledgement came late) must not make a second job.

``P:seen:<platform>:<event id>`` is written once, with a TTL of a day.
"""

from __future__ import annotations

import redis


class SeenEvents:
    def __init__(self, client: redis.Redis, *, prefix: str = "textunes", ttl_s: int = 24 * 3600) -> None:
        self.redis = client
        self.prefix = prefix
        self.ttl_s = ttl_s

    def first(self, platform: str, event_id: str) -> bool:
        """True the first time ``event_id`` is seen on ``platform``, False after."""
        return bool(self.redis.set(f"{self.prefix}:seen:{platform}:{event_id}", "1", nx=True, ex=self.ttl_s))
