"""Is this Redis safe for TexTuneS jobs? Warnings for a process to log at start.

Jobs, events and takes live only in Redis. Without persistence (neither AOF nor RDB
snapshots) a Redis restart loses every queued job; with a ``maxmemory-policy`` other than
``noeviction`` a full Redis deletes keys to make room (``volatile-*`` policies pick among
keys with a TTL, which is most of ours). Managed Redis often forbids ``CONFIG GET``: then
the check says it could not look, and nothing fails.
"""

from __future__ import annotations

import logging

import redis

_ADVICE = "run Redis with appendonly yes, appendfsync everysec and maxmemory-policy noeviction"


def redis_warnings(client: redis.Redis) -> list[str]:
    """One line per risk found in ``client``'s server settings; [] when none."""
    try:
        appendonly = _config(client, "appendonly")
        save = _config(client, "save")
        policy = _config(client, "maxmemory-policy")
    except redis.RedisError as error:
        return [f"could not check Redis persistence and eviction settings (CONFIG GET: {error}); "
                f"make sure your Redis keeps its data on disk and never evicts keys: {_ADVICE}"]
    warnings = []
    if appendonly != "yes" and not save.strip():
        warnings.append("Redis keeps nothing on disk (appendonly no, no RDB save points): a Redis restart "
                        f"loses every queued job, event and take; {_ADVICE}")
    if policy != "noeviction":
        warnings.append(f"Redis maxmemory-policy is {policy}: when it reaches maxmemory it deletes keys "
                        f"to make room, and TexTuneS jobs, events or takes can vanish; {_ADVICE}")
    return warnings


def log_redis_warnings(client: redis.Redis, logger: logging.Logger) -> list[str]:
    """Log each warning (WARNING level); for a worker or bot to call once at start."""
    warnings = redis_warnings(client)
    for warning in warnings:
        logger.warning(warning)
    return warnings


def _config(client: redis.Redis, name: str) -> str:
    value = client.config_get(name).get(name, "")
    return value.decode() if isinstance(value, bytes) else str(value)
