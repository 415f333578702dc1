"""Admission: each caller's concurrency and rate allowance (429 with Retry-After).

Concurrency is a counter per caller. Rates use the `limits` library's moving window
(exact: never more than the allowance in any window, like the Lupitor API's own
limits) on its in-memory storage; its Redis storage is the shared tier's.
"""

from __future__ import annotations

import math
import time
from collections import Counter

from limits import RateLimitItem, parse, storage, strategies

from ._auth import Caller

__all__ = ["Admission", "Refused"]


class Refused(Exception):
    """429: the caller is over its allowance; `retry_after` in whole seconds."""

    def __init__(self, message: str, retry_after: int) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class Admission:
    def __init__(self) -> None:
        self._in_flight: Counter[str] = Counter()
        self._limiter = strategies.MovingWindowRateLimiter(storage.MemoryStorage())
        self._items: dict[str, RateLimitItem] = {}

    def enter(self, caller: Caller) -> None:
        """Admit one request of `caller` (pair with `leave`), or raise `Refused`."""
        if self._in_flight[caller.name] >= caller.max_in_flight:
            raise Refused(
                f"{caller.max_in_flight} requests of this caller are already in flight", 1
            )
        if caller.rate_limit is not None:
            item = self._items.get(caller.rate_limit)
            if item is None:
                item = self._items[caller.rate_limit] = parse(caller.rate_limit)
            if not self._limiter.hit(item, caller.name):
                reset, _ = self._limiter.get_window_stats(item, caller.name)
                wait = max(1, math.ceil(reset - time.time()))
                raise Refused(f"over this caller's rate limit ({caller.rate_limit})", wait)
        self._in_flight[caller.name] += 1

    def leave(self, caller: Caller) -> None:
        left = self._in_flight[caller.name] - 1
        if left > 0:
            self._in_flight[caller.name] = left
        else:
            del self._in_flight[caller.name]
