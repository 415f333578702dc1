"""A circuit breaker sized for a pre-dial lookup.

Service-mesh breakers judge failure rates over windows of 100 calls; a dialer
cannot wait that long while every call burns its deadline against a dead CRM. This
one opens after a few *consecutive* failures or slow calls, rejects at once while
open (so leads fall back to stale or stored numbers in microseconds), and after a
short wait lets exactly one probe through: a good probe closes it, a bad one
re-opens it.

It holds no asyncio objects, so one breaker serves every event loop and thread
that shares a resolver.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

__all__ = ["BreakerSettings", "BreakerState", "CircuitBreaker"]

BreakerState = Literal["closed", "open", "half_open"]


@dataclass(frozen=True, slots=True)
class BreakerSettings:
    """`failure_threshold` consecutive failures (or calls slower than `slow_call`
    seconds) open the circuit for `open_for` seconds."""

    failure_threshold: int = 5
    open_for: float = 5.0
    slow_call: float | None = None

    def __post_init__(self) -> None:
        if self.failure_threshold < 1:
            raise ValueError("failure_threshold must be at least 1")
        if not 0 < self.open_for < math.inf:  # NaN compares false
            raise ValueError("open_for must be a finite number of seconds > 0")


class CircuitBreaker:
    """Closed → (N consecutive failures) → open → (wait) → half-open → one probe."""

    def __init__(
        self, settings: BreakerSettings | None = None, timer: Callable[[], float] = time.monotonic
    ) -> None:
        self.settings = settings or BreakerSettings()
        self._timer = timer
        self._lock = threading.Lock()
        self._state: BreakerState = "closed"
        self._failures = 0
        self._opened_at = 0.0
        self._probe_started: float | None = None
        self.times_opened = 0
        #: Called with the new state on every transition (metrics); under the lock,
        #: so it must be quick and must not call back into the breaker.
        self.on_change: Callable[[BreakerState], None] | None = None

    @property
    def state(self) -> BreakerState:
        return self._state

    def retry_after(self) -> float:
        """Seconds until the open circuit lets a probe through (0 when it would now)."""
        with self._lock:
            if self._state == "closed":
                return 0.0
            left = self._opened_at + self.settings.open_for - self._timer()
            # Half-open with a probe in flight: not "now", or callers retry in a hot loop.
            return max(left, min(1.0, self.settings.open_for))

    def allow(self) -> bool:
        """May a call go to the adapter now? In half-open, True for the one probe only."""
        if self._state == "closed":  # the hot path: no lock needed to read one attribute
            return True
        with self._lock:
            now = self._timer()
            if self._state == "open":
                if now < self._opened_at + self.settings.open_for:
                    return False
                self._state = "half_open"
                self._probe_started = now
                self._changed()
                return True
            if self._state == "half_open":
                # A probe that never reported back (its caller vanished) must not
                # wedge the breaker: after another open period, allow a new probe.
                if (
                    self._probe_started is None
                    or now - self._probe_started > self.settings.open_for
                ):
                    self._probe_started = now
                    return True
                return False
            return True

    def record_success(self, duration: float = 0.0) -> None:
        slow = self.settings.slow_call
        if slow is not None and duration > slow:
            self.record_failure()
            return
        with self._lock:
            self._failures = 0
            self._probe_started = None
            if self._state != "closed":
                self._state = "closed"
                self._changed()

    def record_failure(self) -> None:
        with self._lock:
            self._failures += 1
            if self._state == "half_open" or (
                self._state == "closed" and self._failures >= self.settings.failure_threshold
            ):
                self._open()

    def _open(self) -> None:
        self._state = "open"
        self._opened_at = self._timer()
        self._probe_started = None
        self.times_opened += 1
        self._changed()

    def _changed(self) -> None:
        if self.on_change is not None:
            self.on_change(self._state)
