"""pytest fixtures running real `redis-server` processes on 127.0.0.1 for the shared tier.

Registered in conftest.py. A session-scoped server and a session-scoped cluster
(3 masters, 3 replicas) are started once, on first use, and each test gets them
flushed through `redis_url` / `redis_cluster_url`; a test that kills, pauses or
restarts a server takes its own, `fresh_redis_server`. Without a `redis-server`
binary the fixtures skip, except in CI (`CI` set) where a missing server fails the
run: the shared tier must not go untested there.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
from redis_cluster import RedisClusterServers

from predial.testing._redis_server import (
    INSTALL_HINT,
    RedisServer,
    find_redis_cli,
    find_redis_server,
)

__all__ = [
    "fresh_redis_server",
    "redis_cluster",
    "redis_cluster_url",
    "redis_server",
    "redis_url",
    "require_redis_or_skip",
]


def _in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


def require_redis_or_skip(*, cluster: bool = False) -> None:
    """Skip the test when there is no `redis-server` (nor, for a cluster, `redis-cli`);
    fail it instead when `CI` is set."""
    server = find_redis_server()
    missing = None
    if server is None:
        missing = "no redis-server (nor valkey-server) on PATH"
    elif cluster and find_redis_cli(server) is None:
        missing = "no redis-cli (nor valkey-cli) on PATH"
    if missing is None:
        return
    if _in_ci():
        pytest.fail(f"{missing}, and CI is set: {INSTALL_HINT}", pytrace=False)
    pytest.skip(f"{missing}; {INSTALL_HINT}")


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    """One `redis-server` for the session; use `redis_url` to get it flushed."""
    require_redis_or_skip()
    with RedisServer() as server:
        yield server


@pytest.fixture
def redis_url(redis_server: RedisServer) -> str:
    """The session server's URL (`redis://127.0.0.1:PORT/0`), flushed before the test
    (and brought back first if a test left it paused or down)."""
    if redis_server.paused:
        redis_server.resume()
    elif not redis_server.running:
        redis_server.restart()
    redis_server.flush()
    return redis_server.url


@pytest.fixture
def fresh_redis_server() -> Iterator[RedisServer]:
    """A `redis-server` of the test's own, to kill, pause or restart; stopped after."""
    require_redis_or_skip()
    with RedisServer() as server:
        yield server


@pytest.fixture(scope="session")
def redis_cluster() -> Iterator[RedisClusterServers]:
    """A Redis Cluster for the session: 3 masters, one replica each (about 2 s to
    start); use `redis_cluster_url` to get it healed and flushed."""
    require_redis_or_skip(cluster=True)
    with RedisClusterServers(masters=3, replicas=1) as cluster:
        yield cluster


@pytest.fixture
def redis_cluster_url(redis_cluster: RedisClusterServers) -> str:
    """`redis://127.0.0.1:PORT` of a master of the session cluster, healed (nodes a
    previous test killed or paused are back, as replicas) and flushed."""
    redis_cluster.heal()
    redis_cluster.flush()
    return redis_cluster.url
