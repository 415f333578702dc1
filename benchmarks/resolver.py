"""Resolver speed, each figure measured beside its reference in the same run.

    python benchmarks/resolver.py            # full run (~15 s)
    python benchmarks/resolver.py --quick    # smaller counts, for a smoke check

1. cache hit: `await resolver.resolve(lead)` vs a bare `TTLCache.get` (target <= 5x)
2. miss, zero-latency async adapter: `resolve` vs the adapter call plus one phone
   normalisation (target <= 2x)
3. `resolve_many` at concurrency 100 with a 50 ms async adapter vs the ideal
   2,000 resolves/s (target >= 0.9)

Timings are the best of several repeats, to read the machine's speed rather than its noise.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from typing import Any

from cachetools import TTLCache

import predial
from predial import BreakerSettings, CacheSettings, Campaign, Lead, PhonePolicy, Resolver

# Distinct valid US numbers, so every miss pays a real (un-memoised) parse.
NUMBERS = [f"+1202456{n:04d}" for n in range(10_000)]
VALID = [n for n in NUMBERS if PhonePolicy(strictness="valid").accepts(n)]


class InstantAdapter:
    """Answers at once with a distinct number per external id."""

    name = "instant"

    async def fetch_phone(self, external_id: str) -> str:
        return VALID[int(external_id) % len(VALID)]


class SlowAdapter:
    """Answers after `latency` seconds, like a CRM 50 ms away."""

    name = "slow"

    def __init__(self, latency: float = 0.05) -> None:
        self.latency = latency

    async def fetch_phone(self, external_id: str) -> str:
        await asyncio.sleep(self.latency)
        return VALID[int(external_id) % len(VALID)]


class Plugin:
    @predial.hookimpl
    def register_adapters(self, register: predial.AdapterRegister) -> None:
        register(InstantAdapter)
        register(SlowAdapter)


def make(adapter: str, **settings: Any) -> Resolver:
    return Resolver(
        [Campaign("bench", adapter, settings)],
        plugins=[Plugin()],
        load_entrypoints=False,
        cache=CacheSettings(maxsize=1_000_000),
        breaker=BreakerSettings(failure_threshold=10**9),
    )


def best_of(repeats: int, run: Callable[[], float]) -> float:
    return min(run() for _ in range(repeats))


async def abest_of(repeats: int, run: Callable[[], Awaitable[float]]) -> float:
    return min([await run() for _ in range(repeats)])


async def cache_hit(n: int, repeats: int) -> tuple[float, float]:
    resolver = make("instant")
    lead = Lead(campaign_id="bench", external_id="1")
    await resolver.resolve(lead)

    async def resolve_loop() -> float:
        started = time.perf_counter()
        for _ in range(n):
            await resolver.resolve(lead)
        return (time.perf_counter() - started) / n

    cache: TTLCache[tuple[str, str], str] = TTLCache(maxsize=1_000_000, ttl=300)
    key = ("bench", "1")
    cache[key] = VALID[1]

    def get_loop() -> float:
        started = time.perf_counter()
        for _ in range(n):
            cache.get(key)
        return (time.perf_counter() - started) / n

    ours = await abest_of(repeats, resolve_loop)
    reference = best_of(repeats, get_loop)
    await resolver.close()
    return ours, reference


async def miss(n: int, repeats: int) -> tuple[float, float]:
    adapter = InstantAdapter()
    round_ = 0

    async def resolve_loop() -> float:
        nonlocal round_
        round_ += 1
        resolver = make("instant")  # fresh cache and memo: every resolve is a miss
        leads = [Lead(campaign_id="bench", external_id=str(i)) for i in range(n)]
        gc.collect()
        started = time.perf_counter()
        for lead in leads:
            await resolver.resolve(lead)
        elapsed = (time.perf_counter() - started) / n
        await resolver.close()
        return elapsed

    async def reference_loop() -> float:
        policy = PhonePolicy()  # fresh memo: every normalisation parses
        ids = [str(i) for i in range(n)]
        gc.collect()
        started = time.perf_counter()
        for external_id in ids:
            policy.normalize(await adapter.fetch_phone(external_id))
        return (time.perf_counter() - started) / n

    ours = await abest_of(repeats, resolve_loop)
    reference = await abest_of(repeats, reference_loop)
    return ours, reference


async def throughput(n: int, repeats: int) -> float:
    async def run() -> float:
        resolver = make("slow", latency=0.05)
        leads = [Lead(campaign_id="bench", external_id=str(i)) for i in range(n)]
        started = time.perf_counter()
        results = await resolver.resolve_many(leads, concurrency=100)
        elapsed = time.perf_counter() - started
        assert all(isinstance(r, predial.Resolution) for r in results)
        await resolver.close()
        return n / elapsed

    return max([await run() for _ in range(repeats)])


async def bare_ceiling(n: int) -> float:
    """The same 50 ms waits and one normalisation each, in bare asyncio: what this
    machine's event loop itself allows, for context."""
    adapter = SlowAdapter(0.05)
    policy = PhonePolicy()
    pending = iter(range(n))

    async def worker() -> None:
        for index in pending:
            policy.normalize(await adapter.fetch_phone(str(index)))

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(100)))
    return n / (time.perf_counter() - started)


async def main(quick: bool) -> None:
    scale = 0.2 if quick else 1.0
    repeats = 3 if quick else 5
    print(f"predial {predial.__version__} resolver benchmark ({'quick' if quick else 'full'})\n")

    ours, reference = await cache_hit(int(50_000 * scale), repeats)
    ratio = ours / reference
    print(
        f"cache hit      resolve {ours * 1e6:6.2f} µs   TTLCache.get {reference * 1e6:5.2f} µs"
        f"   ratio {ratio:4.1f}x   (target <= 5x)  {'ok' if ratio <= 5 else 'MISSED'}"
    )

    ours, reference = await miss(int(8_000 * scale), repeats)
    ratio = ours / reference
    print(
        f"miss           resolve {ours * 1e6:6.2f} µs   adapter+normalise {reference * 1e6:5.2f} µs"
        f"   ratio {ratio:4.2f}x  (target <= 2x)  {'ok' if ratio <= 2 else 'MISSED'}"
    )

    samples = [await throughput(int(4_000 * scale), 1) for _ in range(repeats)]
    best = max(samples)
    fraction = best / 2000
    ceiling = max([await bare_ceiling(int(4_000 * scale)) for _ in range(repeats)])
    print(
        f"resolve_many   {best:7.0f}/s at concurrency 100, 50 ms adapter (median "
        f"{statistics.median(samples):.0f}/s)   ideal 2000/s   fraction {fraction:4.2f}"
        f"   (target >= 0.9)  {'ok' if fraction >= 0.9 else 'MISSED'}"
    )
    print(
        f"               for context: bare asyncio, same waits and parses: {ceiling:.0f}/s "
        f"({ceiling / 2000:.2f} of ideal); Python {sys.version.split()[0]}"
        + ("" if hasattr(asyncio, "eager_task_factory") else " (no eager tasks before 3.12)")
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller counts for a smoke run")
    asyncio.run(main(parser.parse_args().quick))
