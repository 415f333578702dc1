"""The resolver's cache of CRM answers.

One entry per (campaign, external id): either a number the policy accepted
(positive) or a permanent negative answer (not found, no number, do-not-call...).
Positives are fresh for `positive_ttl` and then kept `stale_grace` longer, to be
served only while the CRM is unavailable (stale-if-error); negatives are fresh
for `negative_ttl` and never served stale. Transient failures are never cached.

The memory tier is a `cachetools.LRUCache` bounded by `maxsize`, behind a lock
since `resolve_sync` callers and an event loop may share one resolver from
different threads. Entries carry their own expiry and an expired one is dropped
when read: `TLRUCache` does the same bookkeeping with a heap and measured ~3x
slower per get and set, and the resolver compares freshness itself anyway.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from cachetools import LRUCache

from ._phone import mask_phone

__all__ = ["CacheEntry", "CacheKey", "CacheSettings", "CacheTier", "MemoryCache"]

CacheKey = tuple[str, str]  # (campaign id, external id)


@dataclass(frozen=True, slots=True)
class CacheSettings:
    """How long answers live. Seconds; `maxsize` bounds the memory tier's entries."""

    positive_ttl: float = 300.0
    negative_ttl: float = 30.0
    stale_grace: float = 3600.0
    maxsize: int = 100_000

    def __post_init__(self) -> None:
        for name in ("positive_ttl", "negative_ttl", "stale_grace"):
            if not getattr(self, name) >= 0:  # NaN compares false; infinity is "for ever"
                raise ValueError(f"{name} must be >= 0 seconds")
        if self.maxsize < 1:
            raise ValueError("maxsize must be at least 1")


@dataclass(frozen=True, slots=True, repr=False)
class CacheEntry:
    """A cached CRM answer: `phone_number` (E.164) or a negative `reason`."""

    phone_number: str | None
    reason: str | None
    fresh_until: float
    keep_until: float
    adapter: str | None = None
    #: With a shared tier: until when this process may serve the entry without
    #: asking the shared tier again (its `local_ttl`); it is served up to
    #: `fresh_until` while the shared tier is unavailable.
    local_until: float = math.inf

    @property
    def positive(self) -> bool:
        return self.phone_number is not None

    def __repr__(self) -> str:
        number = mask_phone(self.phone_number) if self.phone_number is not None else None
        return (
            f"CacheEntry(phone_number={number!r}, reason={self.reason!r}, "
            f"fresh_until={self.fresh_until!r}, keep_until={self.keep_until!r}, "
            f"adapter={self.adapter!r}, local_until={self.local_until!r})"
        )


class CacheTier(Protocol):
    """What the resolver needs of a cache tier."""

    def get(self, key: CacheKey) -> CacheEntry | None: ...

    def set(self, key: CacheKey, entry: CacheEntry) -> None: ...

    def clear(self) -> None: ...


class MemoryCache:
    """A bounded in-process cache; entries carry their own expiry."""

    def __init__(self, maxsize: int = 100_000, timer: Callable[[], float] = time.monotonic):
        self._entries: LRUCache[CacheKey, CacheEntry] = LRUCache(maxsize=maxsize)
        self._timer = timer
        self._lock = threading.Lock()

    def get(self, key: CacheKey) -> CacheEntry | None:
        """The entry for `key`, fresh or within its stale grace; None once past both."""
        with self._lock:
            entry = self._entries.get(key)
            if entry is not None and self._timer() >= entry.keep_until:
                del self._entries[key]
                return None
            return entry

    def set(self, key: CacheKey, entry: CacheEntry) -> None:
        with self._lock:
            self._entries[key] = entry

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()

    def __len__(self) -> int:
        with self._lock:
            return len(self._entries)
