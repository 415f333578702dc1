"""Frequency caps: at most `limit` `ok` decisions per key in any rolling window.

The compliance gate calls `admit` only when a capped rule applies (Florida and
Oklahoma: 3 calls per 24 hours), with a key such as `f"{rule_id}:{e164}"` and the
gate's own clock. `MemoryCapCounter` counts in this process; `RedisCapCounter`
counts for a whole fleet on the shared tier (`predial.shared.RedisTier`).

An attempt made at `t` counts until `t + window`, exclusive: at exactly
`t + window` it has left. So the wait `admit` answers is exact: admitting again
`retry_after` seconds later succeeds (unless another attempt took the slot).
Times are held as whole microseconds, so a window's edge is not lost to float
rounding.
"""

from __future__ import annotations

import logging
import math
import threading
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING, Final, Literal, Protocol

from cachetools import TLRUCache

from .._phone import mask_phone
from ..errors import ConfigurationError

if TYPE_CHECKING:
    from ..shared import RedisTier

__all__ = ["CapCounter", "MemoryCapCounter", "RedisCapCounter"]

log = logging.getLogger(__name__)

_MICROS: Final = 1_000_000

OnRedisDown = Literal["local", "closed"]


class CapCounter(Protocol):
    """What the gate calls: see `MemoryCapCounter.admit`."""

    async def admit(self, key: str, limit: int, window: float, now: float) -> float | None: ...


def _micros(seconds: float) -> int:
    return round(seconds * _MICROS)


def _check_arguments(key: str, limit: int, window: float, now: float) -> None:
    # The gate builds these from the ruleset: a wrong one is predial's or the
    # ruleset's mistake, said plainly rather than counted wrongly.
    if not isinstance(key, str) or not key:
        raise ValueError("a frequency cap's key must be a non-empty string")
    if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
        raise ValueError(f"a frequency cap's limit must be an integer >= 1, not {limit!r}")
    if not (isinstance(window, (int, float)) and math.isfinite(window) and window > 0):
        raise ValueError(f"a frequency cap's window must be > 0 seconds, not {window!r}")
    if not (isinstance(now, (int, float)) and math.isfinite(now)):
        raise ValueError(f"a frequency cap's `now` must be epoch seconds, not {now!r}")


def _shown(key: str) -> str:
    """A key for a log line: its number masked (`rule:+1202***0123`)."""
    head, sep, tail = key.rpartition(":")
    return f"{head}{sep}{mask_phone(tail)}" if sep else mask_phone(key)


_Entry = tuple[int, "deque[int]"]  # (window µs, attempt times µs, oldest first)


class _Attempts(TLRUCache[str, _Entry, int]):
    """The cache of keys: counts the keys dropped while their attempts still count
    (the cache is full), which under-counts them."""

    def __init__(
        self, maxsize: int, ttu: Callable[[str, _Entry, int], int], timer: Callable[[], int]
    ) -> None:
        super().__init__(maxsize, ttu, timer)
        self.evicted_live = 0

    def popitem(self) -> tuple[str, _Entry]:
        item = super().popitem()  # the least recently used key (expired ones go first)
        self.evicted_live += 1
        return item


class CapCountUnavailable(Exception):
    """The shared count cannot be read and `on_redis_down="closed"`: retry after
    `retry_after` seconds (the tier's `retry_interval`)."""

    def __init__(self, retry_after: float) -> None:
        super().__init__(f"the shared call count is unavailable; retry in {retry_after:g}s")
        self.retry_after = retry_after


class MemoryCapCounter:
    """A frequency-cap counter in this process's memory.

    Bounded: a key is forgotten once its newest attempt has left its window, and at
    most `max_keys` keys are held (past that the least recently used is dropped,
    logged once: raise `max_keys`, since a dropped key's attempts no longer count).
    Each key holds at most `limit` attempts. Thread-safe: a `resolve_sync` thread and
    an async dialer may share one.
    """

    def __init__(self, *, max_keys: int = 1_000_000) -> None:
        if isinstance(max_keys, bool) or not isinstance(max_keys, int) or max_keys < 1:
            raise ConfigurationError(
                f"frequency caps: max_keys must be an integer >= 1, not {max_keys!r}"
            )
        self.max_keys = max_keys
        self._lock = threading.Lock()
        # The cache's clock is the gate's: set from `now` before each use, under the
        # lock (the gate's clock is injectable, and may stand still in tests).
        self._now_us = 0
        self._keys = _Attempts(max_keys, self._expires_at, lambda: self._now_us)
        self._told_full = False

    @staticmethod
    def _expires_at(key: str, value: _Entry, now: int) -> int:
        window_us, attempts = value
        return (attempts[-1] if attempts else now) + window_us

    def __len__(self) -> int:
        """The keys held (expired ones included until the next `admit`)."""
        with self._lock:
            return len(self._keys)

    async def admit(self, key: str, limit: int, window: float, now: float) -> float | None:
        """Record an attempt under `key` unless `limit` attempts are already in the
        window of `window` seconds ending at `now` (UTC epoch seconds): None when it
        was recorded, else the seconds (> 0) until the oldest attempt leaves."""
        return self.admit_now(key, limit, window, now)

    def admit_now(self, key: str, limit: int, window: float, now: float) -> float | None:
        """`admit`, from synchronous code."""
        _check_arguments(key, limit, window, now)
        now_us, window_us = _micros(now), _micros(window)
        with self._lock:
            self._now_us = now_us
            self._keys.expire()
            entry = self._keys.get(key)
            attempts: deque[int] = entry[1] if entry is not None else deque()
            # Those at or before now - window have left (`<=`: exact edges).
            while attempts and attempts[0] <= now_us - window_us:
                attempts.popleft()
            if len(attempts) >= limit:
                wait_us = max(1, attempts[0] + window_us - now_us)
                return wait_us / _MICROS
            attempts.append(now_us)
            if len(attempts) > 1 and attempts[-2] > now_us:
                # An attempt stamped later than this one (a clock that went back):
                # kept in order, so the oldest is always first.
                attempts = deque(sorted(attempts))
            evicted = self._keys.evicted_live
            self._keys[key] = (window_us, attempts)  # (re)inserted: its expiry moves on
            if self._keys.evicted_live > evicted and not self._told_full:
                self._told_full = True
                log.warning(
                    "frequency caps: %d numbers are held in memory, the most allowed; the "
                    "least recently dialled ones are forgotten (their attempts no longer "
                    "count; %s was added): raise max_keys",
                    self.max_keys,
                    _shown(key),
                )
            return None


class RedisCapCounter:
    """A frequency-cap counter shared by every process using the same Redis tier.

    One sorted set per key (`{prefix}:{c:<key>}`, its own hash slot on a Cluster),
    updated by one atomic script: an attempt admitted in one process counts in all.
    Times are the gate's (`now`), so the fleet's clocks should agree (NTP); a skew
    of a second is nothing against a 24-hour window.

    While the tier is unavailable (down, or degraded after a failure), `on_redis_down`
    decides: `"closed"` (the default) refuses the capped attempt, answering the
    tier's `retry_interval` as the wait; `"local"` counts in this process's
    `MemoryCapCounter`, which then knows this process's own attempts (each admitted
    attempt is recorded there too) but not the other processes'. Logged once per
    outage.
    """

    def __init__(
        self,
        tier: RedisTier,
        *,
        on_redis_down: OnRedisDown = "closed",
        local: MemoryCapCounter | None = None,
    ) -> None:
        if on_redis_down not in ("local", "closed"):
            raise ConfigurationError(
                f"frequency caps: on_redis_down must be 'local' or 'closed', not {on_redis_down!r}"
            )
        self.tier = tier
        self.on_redis_down: OnRedisDown = on_redis_down
        self.local = local if local is not None else MemoryCapCounter()
        #: Attempts answered without Redis (refused when closed, counted locally).
        self.unshared = 0
        self._told = False

    async def admit(self, key: str, limit: int, window: float, now: float) -> float | None:
        """As `MemoryCapCounter.admit`, for the whole fleet."""
        _check_arguments(key, limit, window, now)
        now_us = _micros(now)
        reply = await self.tier.cap_admit(key, limit, _micros(window), now_us)
        if reply is not None:
            self._told = False  # the next outage is told again
            admitted, wait_us = reply
            if not admitted:
                return max(1, wait_us) / _MICROS
            if self.on_redis_down == "local":
                # Kept locally too, so an outage does not forget this process's own.
                self.local.admit_now(key, limit, window, now)
            return None
        self.unshared += 1
        if not self._told:
            self._told = True
            what = (
                "counted in this process only (other processes' attempts are not seen)"
                if self.on_redis_down == "local"
                else "refused (retry_later) until it is back: on_redis_down = 'closed'"
            )
            log.warning(
                "frequency caps: the shared tier is unavailable; capped attempts are %s", what
            )
        if self.on_redis_down == "local":
            return self.local.admit_now(key, limit, window, now)
        # Not "over the cap": the count is unknown. The gate says so (its own reason).
        raise CapCountUnavailable(float(self.tier.retry_interval))
