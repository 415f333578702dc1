"""A client-side rate limit that never sends more than the API allows: the Lupitor
client's, and a CRM tenant's budget in the HTTP adapter base.

Lupitor documents 10 bulk requests per minute and 100 other requests per minute, per
API key, enforced by a sliding window. A token bucket such as aiolimiter's
`AsyncLimiter(10, 60)` starts full and refills as it drains, so it admits 11 requests
in the first minute; against a sliding window the 11th is a 429. This limiter keeps
the send times of the last `limit` requests and admits a request only when the
oldest of them left the window: never more than `limit` in any window.

The server's `X-RateLimit-*` headers can only lower it: a smaller `Limit` replaces
ours, and `Remaining: 0` holds every request until `Reset`. It holds no asyncio
objects (callers sleep themselves), so one limiter serves threads and event loops.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping

from ._http import MAX_SLEEP_IN_CALL, reset_in

__all__ = ["SlidingWindowLimiter"]


class SlidingWindowLimiter:
    """At most `limit` acquisitions in any `window` seconds."""

    def __init__(
        self,
        limit: int,
        window: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        if limit < 1:
            raise ValueError("limit must be at least 1")
        if window <= 0:
            raise ValueError("window must be > 0 seconds")
        self.limit = limit
        self.window = window
        self._clock = clock
        self._wall_clock = wall_clock
        self._sent: deque[float] = deque()
        self._blocked_until = 0.0
        #: Whether the hold now in force came from a 429's Retry-After (`hold`), not
        #: from the server's X-RateLimit headers on an answer (`observe`).
        self._held_by_429 = False
        self._lock = threading.Lock()

    def reserve(self) -> float:
        """Take a slot if one is free now (returns 0.0), else return the seconds to
        wait before asking again. Taking a slot records the send time."""
        return self.acquire()[0]

    def acquire(self) -> tuple[float, float | None]:
        """`reserve`, also returning the slot's time stamp (for `release`)."""
        with self._lock:
            now = self._clock()
            if now < self._blocked_until:
                return self._blocked_until - now, None
            while self._sent and self._sent[0] <= now - self.window:
                self._sent.popleft()
            if len(self._sent) >= self.limit:
                return self._sent[0] + self.window - now, None
            self._sent.append(now)
            return 0.0, now

    def time_for(self, count: int) -> float:
        """Seconds from now until the last of `count` more acquisitions can be made,
        each as early as this limiter allows (0.0 if they all fit now). An import's
        progress uses it for the part of its time the rate limit decides."""
        if count <= 0:
            return 0.0
        with self._lock:
            now = self._clock()
            start = max(now, self._blocked_until)
            window, limit = self.window, self.limit
            # The send times that will still count at `start`, oldest first.
            recent = deque(t for t in self._sent if t > start - window)
            while len(recent) > limit:  # the server lowered the limit below the log's size
                recent.popleft()
        # The next `limit` slots, one by one: each is free once the request `limit`
        # places before it has left the window.
        first = min(count, limit)
        last = start
        for _ in range(first):
            last = start if len(recent) < limit else max(start, recent.popleft() + window)
            recent.append(last)
        left = count - first
        if left:
            # From here on the slots repeat those `limit` times, one window later per
            # round: no need to step through a million of them.
            rounds, place = divmod(left - 1, limit)
            last = recent[place] + window * (rounds + 1)
        return max(0.0, last - now)

    def release(self, stamp: float) -> None:
        """Give back the slot taken at `stamp`: its request never left (it failed to
        connect). Another caller's newer slot is not touched."""
        # Already out of the window (ValueError): nothing to give back.
        with self._lock, contextlib.suppress(ValueError):
            self._sent.remove(stamp)

    def hold(self, seconds: float) -> None:
        """Admit nothing for `seconds` (the server said 429 with Retry-After)."""
        with self._lock:
            self._blocked_until = max(self._blocked_until, self._clock() + seconds)
            self._held_by_429 = True

    def held_by_429(self) -> bool:
        """Whether requests are held back now because the server answered 429 (its
        Retry-After), not by the rate limit as counted or announced: what an
        operator is told while it lasts."""
        with self._lock:
            return self._held_by_429 and self._clock() < self._blocked_until

    def observe(self, headers: Mapping[str, str]) -> None:
        """Adopt the server's view where it is stricter than ours."""
        limit = _number(headers.get("x-ratelimit-limit"))
        remaining = _number(headers.get("x-ratelimit-remaining"))
        wait = reset_in(headers.get("x-ratelimit-reset"), self._wall_clock)
        with self._lock:
            if limit is not None and 1 <= limit < self.limit:
                self.limit = int(limit)
            if remaining is not None and remaining <= 0 and wait is not None:
                # Further off is not believed (a clock or unit mix-up): a real limit 429s.
                if 0 < wait <= MAX_SLEEP_IN_CALL:
                    until = self._clock() + wait
                    if until > self._blocked_until:
                        self._blocked_until = until
                        self._held_by_429 = False


def _number(value: str | None) -> float | None:
    if value is None:
        return None
    try:
        return float(value)
    except ValueError:
        return None
