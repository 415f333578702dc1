"""Frequency caps (issue 15, part 4): `ok` decisions counted per key in a rolling
window, in memory and on the shared Redis tier (real redis-server processes)."""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import AsyncIterator, Callable

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from predial.compliance._caps import CapCountUnavailable, MemoryCapCounter, RedisCapCounter
from predial.errors import ConfigurationError
from predial.shared import RedisTier
from predial.testing import RedisServer

DAY = 86_400.0
T0 = 1_780_000_000.0  # 2026-05-28, UTC epoch seconds
KEY = "us.fl:+13055550123"


def model_admit(log: list[float], limit: int, window: float, now: float) -> float | None:
    """The cap as the issue words it: attempts in (now - window, now] count."""
    log[:] = [t for t in log if t > now - window]
    if len(log) < limit:
        log.append(now)
        return None
    return min(log) + window - now


# -- in memory ----------------------------------------------------------------------------


async def test_three_per_day_then_the_wait_for_the_oldest() -> None:
    counter = MemoryCapCounter()
    assert await counter.admit(KEY, 3, DAY, T0) is None
    assert await counter.admit(KEY, 3, DAY, T0 + 3600) is None
    assert await counter.admit(KEY, 3, DAY, T0 + 7200) is None
    wait = await counter.admit(KEY, 3, DAY, T0 + 10_800)
    assert wait == pytest.approx(DAY - 10_800)
    # A refusal is not an attempt: the wait is still counted from the first.
    assert await counter.admit(KEY, 3, DAY, T0 + 20_000) == pytest.approx(DAY - 20_000)
    # Another number, or another rule's key, has its own count.
    assert await counter.admit("us.fl:+13055550124", 3, DAY, T0 + 20_000) is None
    assert await counter.admit("us.ok:+13055550123", 3, DAY, T0 + 20_000) is None


async def test_an_attempt_leaves_the_window_exactly_window_seconds_after() -> None:
    counter = MemoryCapCounter()
    t0 = T0 + 0.1  # not a round number: the edge must survive float arithmetic
    await counter.admit(KEY, 1, DAY, t0)
    assert await counter.admit(KEY, 1, DAY, t0 + DAY - 0.000_001) == pytest.approx(0.000_001)
    assert await counter.admit(KEY, 1, DAY, t0 + DAY) is None  # at the edge: left


async def test_admitting_after_the_answered_wait_succeeds() -> None:
    counter = MemoryCapCounter()
    now = T0
    for step in (0.0, 10.5, 20.25):
        assert await counter.admit(KEY, 3, 100.0, now + step) is None
    wait = await counter.admit(KEY, 3, 100.0, now + 50)
    assert wait == pytest.approx(50.0)
    assert wait is not None
    assert await counter.admit(KEY, 3, 100.0, now + 50 + wait) is None
    # The window rolls: the next frees up when the second attempt leaves.
    assert await counter.admit(KEY, 3, 100.0, now + 105) == pytest.approx(5.5)


async def test_memory_is_bounded_by_max_keys_and_by_the_window(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="predial.compliance._caps")
    counter = MemoryCapCounter(max_keys=2)
    for i in range(5):
        await counter.admit(f"us.fl:+1305555012{i}", 3, 100.0, T0 + i)
    assert len(counter) == 2
    warnings = [r for r in caplog.records if "raise max_keys" in r.getMessage()]
    assert len(warnings) == 1  # once, however many are dropped
    assert "+13055550124" not in caplog.text  # numbers masked
    # Once their attempts have left the window, keys are dropped without eviction.
    big = MemoryCapCounter(max_keys=100)
    for i in range(10):
        await big.admit(f"us.fl:+1305555012{i}", 3, 100.0, T0)
    assert len(big) == 10
    await big.admit(KEY, 3, 100.0, T0 + 100)
    assert len(big) == 1


@pytest.mark.parametrize(
    ("key", "limit", "window", "now"),
    [
        ("", 3, DAY, T0),
        (KEY, 0, DAY, T0),
        (KEY, True, DAY, T0),
        (KEY, 3, 0.0, T0),
        (KEY, 3, float("nan"), T0),
        (KEY, 3, DAY, float("inf")),
    ],
)
async def test_wrong_arguments_are_refused(key: str, limit: int, window: float, now: float) -> None:
    with pytest.raises(ValueError, match="frequency cap"):
        await MemoryCapCounter().admit(key, limit, window, now)


def test_max_keys_must_be_positive() -> None:
    with pytest.raises(ConfigurationError, match="max_keys"):
        MemoryCapCounter(max_keys=0)


async def test_100_concurrent_admits_with_limit_3_admit_exactly_3() -> None:
    counter = MemoryCapCounter()
    answers = await asyncio.gather(*(counter.admit(KEY, 3, DAY, T0) for _ in range(100)))
    assert answers.count(None) == 3


def test_threads_sharing_a_counter_admit_exactly_the_limit() -> None:
    counter = MemoryCapCounter()
    answers: list[float | None] = []
    barrier = threading.Barrier(20)

    def dial() -> None:
        barrier.wait()
        for _ in range(10):
            answers.append(counter.admit_now(KEY, 3, DAY, T0))

    threads = [threading.Thread(target=dial) for _ in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(answers) == 200
    assert answers.count(None) == 3


steps = st.lists(
    st.tuples(
        st.sampled_from(["a:+13055550123", "b:+13055550123"]),
        # Whole milliseconds apart (0: the same instant), sometimes a whole window.
        st.one_of(st.integers(0, 40_000), st.just(30_000)).map(lambda ms: ms / 1000),
    ),
    max_size=40,
)


@settings(max_examples=200, deadline=None)
@given(steps=steps, limit=st.integers(1, 4))
def test_memory_counter_matches_the_model(steps: list[tuple[str, float]], limit: int) -> None:
    counter = MemoryCapCounter()
    models: dict[str, list[float]] = {}
    now = T0
    for key, delta in steps:
        now += delta
        expected = model_admit(models.setdefault(key, []), limit, 30.0, now)
        got = counter.admit_now(key, limit, 30.0, now)
        if expected is None:
            assert got is None
        else:
            assert got == pytest.approx(expected, abs=2e-6)
            assert got > 0


# -- on the shared tier (real redis-server) --------------------------------------------------


@pytest.fixture
async def tiers(redis_url: str) -> AsyncIterator[Callable[[], RedisTier]]:
    made: list[RedisTier] = []

    def make() -> RedisTier:
        tier = RedisTier(redis_url, timeout=0.5, retry_interval=0.2, prefix="captest")
        made.append(tier)
        return tier

    yield make
    for tier in made:
        await tier.close()


async def test_two_processes_share_one_cap(tiers: Callable[[], RedisTier]) -> None:
    # Two tiers: two clients, as two dialer processes have.
    a, b = RedisCapCounter(tiers()), RedisCapCounter(tiers())
    assert await a.admit(KEY, 3, DAY, T0) is None
    assert await b.admit(KEY, 3, DAY, T0 + 3600) is None
    assert await a.admit(KEY, 3, DAY, T0 + 7200) is None
    assert await b.admit(KEY, 3, DAY, T0 + 10_800) == pytest.approx(DAY - 10_800)
    assert await a.admit(KEY, 3, DAY, T0 + 10_800) == pytest.approx(DAY - 10_800)
    assert await b.admit(KEY, 3, DAY, T0 + DAY) is None  # the first has left
    assert a.unshared == b.unshared == 0


async def test_redis_window_edges_and_key(tiers: Callable[[], RedisTier]) -> None:
    tier = tiers()
    counter = RedisCapCounter(tier)
    t0 = T0 + 0.1
    await counter.admit(KEY, 1, DAY, t0)
    assert await counter.admit(KEY, 1, DAY, t0 + DAY - 0.000_001) == pytest.approx(0.000_001)
    assert await counter.admit(KEY, 1, DAY, t0 + DAY) is None
    # One key per cap key, hash-tagged whole (one slot on a Cluster), under the
    # tier's prefix, expiring when its newest attempt leaves.
    name = tier.cap_key(KEY)
    assert name == "captest:{c:18:us.fl:+13055550123}"
    client = tier._client().redis
    assert await client.zcard(name) == 1
    ttl = await client.pttl(name)
    assert DAY * 1000 < ttl <= DAY * 1000 + 1000 + 100


async def test_100_concurrent_admits_across_two_processes_admit_exactly_3(
    tiers: Callable[[], RedisTier],
) -> None:
    a, b = RedisCapCounter(tiers()), RedisCapCounter(tiers())
    answers = await asyncio.gather(
        *((a if i % 2 else b).admit(KEY, 3, DAY, T0 + i / 1000) for i in range(100))
    )
    assert answers.count(None) == 3
    assert all(wait is not None and wait > 0 for wait in answers if wait is not None)


async def test_redis_counter_matches_the_model(tiers: Callable[[], RedisTier]) -> None:
    a, b = RedisCapCounter(tiers()), RedisCapCounter(tiers())
    example = 0

    @settings(
        max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
    )
    @given(steps=steps, limit=st.integers(1, 4))
    def check(steps: list[tuple[str, float]], limit: int) -> None:
        nonlocal example
        example += 1
        models: dict[str, list[float]] = {}
        now = T0

        async def run() -> None:
            nonlocal now
            for index, (key, delta) in enumerate(steps):
                now += delta
                expected = model_admit(models.setdefault(key, []), limit, 30.0, now)
                counter = a if index % 2 else b
                got = await counter.admit(f"{example}:{key}", limit, 30.0, now)
                if expected is None:
                    assert got is None
                else:
                    assert got == pytest.approx(expected, abs=2e-6)

        future = asyncio.run_coroutine_threadsafe(run(), loop)
        future.result(timeout=30)

    loop = asyncio.get_running_loop()
    # hypothesis drives a sync function; each example runs on this test's loop.
    await asyncio.to_thread(check)


async def test_redis_down_fails_closed_by_default(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="predial.compliance._caps")
    tier = RedisTier("redis://127.0.0.1:1/0", timeout=0.2, retry_interval=0.5, prefix="captest")
    try:
        counter = RedisCapCounter(tier)
        for _ in range(2):
            with pytest.raises(CapCountUnavailable) as caught:
                await counter.admit(KEY, 3, DAY, T0)
            assert caught.value.retry_after == pytest.approx(0.5)
        assert counter.unshared == 2
        told = [r for r in caplog.records if "shared tier is unavailable" in r.getMessage()]
        assert len(told) == 1
        assert "on_redis_down = 'closed'" in told[0].getMessage()
    finally:
        await tier.close()


async def test_redis_down_counts_locally_when_asked(
    fresh_redis_server: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="predial.compliance._caps")
    tier = RedisTier(fresh_redis_server.url, timeout=0.2, retry_interval=5.0, prefix="captest")
    try:
        counter = RedisCapCounter(tier, on_redis_down="local")
        assert await counter.admit(KEY, 3, DAY, T0) is None  # through Redis
        await asyncio.to_thread(fresh_redis_server.stop)
        # This process's own attempt made through Redis still counts locally.
        assert await counter.admit(KEY, 3, DAY, T0 + 1) is None
        assert await counter.admit(KEY, 3, DAY, T0 + 2) is None
        assert await counter.admit(KEY, 3, DAY, T0 + 3) == pytest.approx(DAY - 3)
        assert counter.unshared == 3
        assert "counted in this process only" in caplog.text
    finally:
        await tier.close()


def test_on_redis_down_is_checked(redis_url: str) -> None:
    tier = RedisTier(redis_url, prefix="captest")
    with pytest.raises(ConfigurationError, match="on_redis_down must be 'local' or 'closed'"):
        RedisCapCounter(tier, on_redis_down="open")  # type: ignore[arg-type]


async def test_a_cap_on_redis_cluster(redis_cluster_url: str) -> None:
    # Each cap key is its own hash slot: keys of many numbers spread over the nodes.
    made = [RedisTier(redis_cluster_url, cluster=True, timeout=1.0) for _ in range(2)]
    try:
        for tier in made:
            assert await tier.ping()  # learns the slots first
        a, b = (RedisCapCounter(tier) for tier in made)
        for i in range(20):
            key = f"us.fl:+1305555{i:04d}"
            assert await a.admit(key, 2, DAY, T0) is None
            assert await b.admit(key, 2, DAY, T0 + 1) is None
            assert await a.admit(key, 2, DAY, T0 + 2) == pytest.approx(DAY - 2)
        assert a.unshared == b.unshared == 0
    finally:
        for tier in made:
            await tier.close()
