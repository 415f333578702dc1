"""Counters and latency percentiles of a resolver, cheap enough for the hot path."""

from __future__ import annotations

import threading
from collections import Counter, deque
from dataclasses import dataclass, field
from typing import Any

__all__ = ["ResolverStats", "StatsRecorder"]


@dataclass(frozen=True)
class ResolverStats:
    """A snapshot of `Resolver.stats()`. Latencies are in milliseconds."""

    resolved: int
    refused: int
    hits: int
    misses: int
    stale: int
    stored: int
    adapter_calls: int
    adapter_errors: dict[str, int]
    fallbacks: dict[str, int]
    refusals: dict[str, int]
    latency_ms: dict[str, float]
    breakers: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "resolved": self.resolved,
            "refused": self.refused,
            "hits": self.hits,
            "misses": self.misses,
            "stale": self.stale,
            "stored": self.stored,
            "adapter_calls": self.adapter_calls,
            "adapter_errors": dict(self.adapter_errors),
            "fallbacks": dict(self.fallbacks),
            "refusals": dict(self.refusals),
            "latency_ms": dict(self.latency_ms),
            "breakers": dict(self.breakers),
        }


def _percentile(ordered: list[float], fraction: float) -> float:
    if not ordered:
        return 0.0
    index = min(len(ordered) - 1, max(0, round(fraction * (len(ordered) - 1))))
    return ordered[index]


class StatsRecorder:
    """Mutable counters; latencies keep the most recent `window` resolves."""

    def __init__(self, window: int = 10_000) -> None:
        self.hits = 0
        self.misses = 0
        self.stale = 0
        self.stored = 0
        self.resolved = 0
        self.refused = 0
        self.adapter_calls = 0
        self.adapter_errors: Counter[str] = Counter()
        self.fallbacks: Counter[str] = Counter()
        self.refusals: Counter[str] = Counter()
        self.latencies: deque[float] = deque(maxlen=window)
        self._lock = threading.Lock()

    def snapshot(self, breakers: dict[str, str]) -> ResolverStats:
        with self._lock:
            ordered = sorted(self.latencies)
            return ResolverStats(
                resolved=self.resolved,
                refused=self.refused,
                hits=self.hits,
                misses=self.misses,
                stale=self.stale,
                stored=self.stored,
                adapter_calls=self.adapter_calls,
                adapter_errors=dict(self.adapter_errors),
                fallbacks=dict(self.fallbacks),
                refusals=dict(self.refusals),
                latency_ms={
                    "p50": _percentile(ordered, 0.50) * 1000,
                    "p90": _percentile(ordered, 0.90) * 1000,
                    "p99": _percentile(ordered, 0.99) * 1000,
                    "max": (ordered[-1] * 1000) if ordered else 0.0,
                },
                breakers=breakers,
            )
