"""Per-user sliding-window rate limit kept in Redis, so every bot process shares it."""

from __future__ import annotations

import secrets
import time

import redis

_TAKE = """
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[1] - ARGV[2])
local used = redis.call('ZCARD', KEYS[1])
if used < tonumber(ARGV[3]) then
  redis.call('ZADD', KEYS[1], ARGV[1], ARGV[4])
  redis.call('EXPIRE', KEYS[1], math.ceil(ARGV[2]))
  return -1
end
local oldest = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
return tostring(oldest[2] + ARGV[2] - ARGV[1])
"""


class RateLimiter:
    def __init__(self, client: redis.Redis, *, requests: int, window_s: float, prefix: str = "textunes") -> None:
        self.requests = requests
        self.window_s = window_s
        self.prefix = prefix
        self.redis = client
        self._take = client.register_script(_TAKE)

    def take(self, user_key: str, now: float | None = None) -> float | None:
        """Use one request for ``user_key``; None when allowed, else seconds until one frees up."""
        now = time.time() if now is None else now
        result = self._take(
            keys=[f"{self.prefix}:rate:{user_key}"],
            args=[now, self.window_s, self.requests, f"{now}:{secrets.token_hex(4)}"],
        )
        wait = float(result)
        return None if wait < 0 else max(wait, 1.0)

    def peek(self, user_key: str, now: float | None = None) -> float | None:
        """Like ``take`` without using a request: None when one is free now, else seconds to wait."""
        now = time.time() if now is None else now
        used = self.redis.zrangebyscore(f"{self.prefix}:rate:{user_key}", f"({now - self.window_s}", "+inf",
                                        withscores=True)
        if len(used) < self.requests:
            return None
        return max(float(used[0][1]) + self.window_s - now, 1.0)
