"""The Redis harness itself (predial.testing._redis_server), against real servers: what
the shared tier's tests rely on — a URL that answers, a password that is enforced,
a crash, a restart that comes back empty on the same port, a stall, a cluster that
fails over."""

from __future__ import annotations

import os
import uuid
from typing import Any

import pytest
import redis.asyncio
import redis.exceptions
from redis.asyncio.cluster import RedisCluster
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis_cluster import RedisClusterServers
from redis_fixtures import require_redis_or_skip

from predial.testing._redis_server import (
    RedisServer,
    RedisServerError,
    require_redis_server,
)


def client(url: str, **options: Any) -> redis.asyncio.Redis:
    """No retries: a refused or timed-out command fails at once."""
    return redis.asyncio.from_url(url, retry=Retry(NoBackoff(), 0), **options)


def key() -> str:
    return f"harness:{uuid.uuid4().hex}"


async def test_ping_and_round_trip(redis_url: str, redis_server: RedisServer) -> None:
    assert redis_url == f"redis://127.0.0.1:{redis_server.port}/0"
    async with client(redis_url) as r:
        assert await r.ping() is True
        name = key()
        await r.set(name, "value")
        assert await r.get(name) == b"value"


@pytest.mark.parametrize("turn", [1, 2])
async def test_each_test_starts_flushed(redis_url: str, turn: int) -> None:
    async with client(redis_url) as r:
        assert await r.dbsize() == 0  # whichever turn runs second sees the other's key gone
        await r.set(f"turn-{turn}", "x")


async def test_password_is_required_and_checked() -> None:
    require_redis_or_skip()
    with RedisServer(password="s3cret /:@%") as server:
        assert server.url == f"redis://:s3cret%20%2F%3A%40%25@127.0.0.1:{server.port}/0"
        async with client(server.url) as r:
            assert await r.ping() is True
        wrong = f"redis://:wrong@127.0.0.1:{server.port}/0"
        async with client(wrong) as r:
            with pytest.raises(redis.exceptions.AuthenticationError):
                await r.ping()
        async with client(f"redis://127.0.0.1:{server.port}/0") as r:
            with pytest.raises(redis.exceptions.AuthenticationError):
                await r.ping()


async def test_kill_refuses_then_restart_comes_back_empty_on_the_same_port(
    fresh_redis_server: RedisServer,
) -> None:
    server = fresh_redis_server
    port, pid = server.port, server.pid
    async with client(server.url) as r:
        await r.set("kept?", "no")
        server.kill()
        assert not server.running
        assert pid is not None
        with pytest.raises(ProcessLookupError):  # reaped, not a zombie
            os.kill(pid, 0)
        with pytest.raises(redis.exceptions.ConnectionError):
            await r.ping()
        server.restart()
        assert server.port == port
        assert server.pid != pid
        assert await r.ping() is True
        assert await r.get("kept?") is None


async def test_pause_times_out_then_resume_answers(fresh_redis_server: RedisServer) -> None:
    server = fresh_redis_server
    async with client(server.url, socket_timeout=0.1) as r:
        assert await r.ping() is True
        server.pause()
        assert server.paused
        with pytest.raises(redis.exceptions.TimeoutError):
            await r.ping()
        server.resume()
        assert await r.ping() is True


def test_a_server_that_cannot_start_says_why() -> None:
    require_redis_or_skip()
    server = RedisServer(args=["--no-such-directive", "1"], startup_timeout=5.0)
    try:
        with pytest.raises(RedisServerError, match="(?s)exited.*log ends.*no-such-directive"):
            server.start()
        assert not server.running
    finally:
        server.stop()
    assert server.directory is None


def test_no_binary_skips_or_fails_in_ci(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", "")
    with pytest.raises(RedisServerError, match="apt-get install redis-server"):
        require_redis_server()
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception, match="apt-get install redis-server"):
        require_redis_or_skip()
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="CI is set"):
        require_redis_or_skip()


async def test_cluster_round_trip(
    redis_cluster_url: str, redis_cluster: RedisClusterServers
) -> None:
    assert len(redis_cluster.masters()) == 3
    assert len(redis_cluster.ports) == 6
    name = key()
    async with RedisCluster.from_url(redis_cluster_url) as r:
        await r.set(name, "value")
        assert await r.get(name) == b"value"
    owner = redis_cluster.node(redis_cluster.node_for_key(name))
    assert owner.command("GET", name) == b"value"


async def test_cluster_failover_promotes_a_replica(
    redis_cluster_url: str, redis_cluster: RedisClusterServers
) -> None:
    cluster = redis_cluster
    name = key()
    async with RedisCluster.from_url(redis_cluster_url) as r:
        await r.set(name, "survives")
        old = cluster.node_for_key(name)
        replica = cluster.replicas_of(old)[0]
        promoted = cluster.failover(old)
        assert promoted == replica
        assert not cluster.node(old).running
        assert old not in cluster.masters()
        assert promoted in cluster.masters()
        assert cluster.node_for_key(name) == promoted
        assert await r.get(name) == b"survives"  # the same client finds the new master
    cluster.heal()
    assert cluster.node(old).running
    assert cluster.replicas_of(promoted) == [old]
    async with RedisCluster(startup_nodes=None, host="127.0.0.1", port=promoted) as r:
        assert await r.get(name) == b"survives"
