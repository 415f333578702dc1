"""What tenacity would cost on the path every CRM lookup takes: the first attempt succeeds.

    pip install tenacity && python benchmarks/retry_loop.py

predial's fetcher retries in a loop of its own (docs/architecture.md, "Retries and the
breaker"). tenacity's `stop_before_delay` does stop before a wait that would pass a
deadline, so the loop is kept for what it decides, not for that; this script measures
the other half of the choice, side by side in one run: a retry wrapper around an
adapter call that succeeds at once, hand-written vs `tenacity.AsyncRetrying` with the
same policy (3 attempts, exponential backoff with jitter, a deadline).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

import tenacity


class Unavailable(Exception):
    """An adapter error worth retrying."""


async def adapter_call() -> int:
    return 1


async def hand_written(deadline: float) -> int:
    attempt = 0
    while True:
        attempt += 1
        try:
            return await adapter_call()
        except Unavailable:
            if attempt >= 3 or time.monotonic() + 0.1 >= deadline:
                raise


async def with_tenacity(deadline: float) -> int:
    async for attempt in tenacity.AsyncRetrying(
        stop=tenacity.stop_after_attempt(3)
        | tenacity.stop_before_delay(deadline - time.monotonic()),
        wait=tenacity.wait_random_exponential(multiplier=0.05, max=1),
        retry=tenacity.retry_if_exception_type(Unavailable),
        reraise=True,
    ):
        with attempt:
            return await adapter_call()
    raise AssertionError("unreachable: tenacity returns or raises")


async def per_call(wrapper: Callable[[float], Awaitable[int]], calls: int) -> float:
    started = time.perf_counter()
    for _ in range(calls):
        await wrapper(time.monotonic() + 1.0)
    return (time.perf_counter() - started) / calls * 1e6


async def main() -> None:
    calls = 100_000
    for round_ in range(1, 4):
        mine = await per_call(hand_written, calls)
        theirs = await per_call(with_tenacity, calls)
        print(
            f"round {round_}: hand-written {mine:.2f} µs, tenacity {theirs:.2f} µs per call "
            f"(+{theirs - mine:.1f} µs, {theirs / mine:.0f}x)"
        )


if __name__ == "__main__":
    asyncio.run(main())
