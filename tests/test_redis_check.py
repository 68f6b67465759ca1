"""The Redis hygiene check against real redis-servers started with each configuration."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
import redis

from worker.local_redis import RedisServer, free_port
from worker.redis_check import log_redis_warnings, redis_warnings


@contextmanager
def server(*args: str, appendonly: bool = False) -> Iterator[RedisServer]:
    started = RedisServer(appendonly=appendonly, extra_args=args)
    started.start()
    try:
        yield started
    finally:
        started.cleanup()


def warnings_of(url: str, **options: object) -> list[str]:
    client = redis.Redis.from_url(url, **options)  # type: ignore[arg-type]
    try:
        return redis_warnings(client)
    finally:
        client.close()


def test_aof_and_noeviction_is_quiet() -> None:
    with server("--maxmemory-policy", "noeviction", appendonly=True) as aof:
        assert warnings_of(aof.url) == []


def test_rdb_snapshots_alone_count_as_persistence() -> None:
    with server("--save", "60 1") as rdb:
        assert warnings_of(rdb.url) == []


def test_no_persistence_is_a_warning_naming_the_fix() -> None:
    with server() as bare:  # --save "" --appendonly no
        [warning] = warnings_of(bare.url)
    assert "keeps nothing on disk" in warning and "appendonly yes" in warning


@pytest.mark.parametrize("policy", ["allkeys-lru", "volatile-lru", "volatile-ttl", "allkeys-random"])
def test_an_evicting_policy_is_a_warning(policy: str) -> None:
    with server("--maxmemory-policy", policy, appendonly=True) as evicting:
        [warning] = warnings_of(evicting.url)
    assert f"maxmemory-policy is {policy}" in warning and "noeviction" in warning


def test_both_problems_give_two_warnings_and_are_logged(caplog: pytest.LogCaptureFixture) -> None:
    with server("--maxmemory-policy", "allkeys-lru") as bad:
        client = redis.Redis.from_url(bad.url)
        with caplog.at_level(logging.WARNING):
            warnings = log_redis_warnings(client, logging.getLogger("textunes.test"))
        client.close()
    assert len(warnings) == 2
    assert [r.getMessage() for r in caplog.records if r.name == "textunes.test"] == warnings


def test_config_renamed_away_like_managed_redis_says_it_could_not_check() -> None:
    with server("--rename-command", "CONFIG", "") as managed:
        [warning] = warnings_of(managed.url)
    assert warning.startswith("could not check Redis persistence and eviction settings") and "unknown command" in warning
    assert "noeviction" in warning


def test_a_user_without_config_permission_says_it_could_not_check() -> None:
    with server("--user", "textunes", "on", ">s3cret", "~*", "&*", "+@all", "-config", appendonly=True) as acl:
        [warning] = warnings_of(acl.url, username="textunes", password="s3cret")
    assert warning.startswith("could not check") and "no permissions" in warning and "s3cret" not in warning


def test_an_unreachable_redis_does_not_raise() -> None:
    [warning] = warnings_of(f"redis://127.0.0.1:{free_port()}/0")
    assert warning.startswith("could not check")
