"""Prometheus metrics of a resolver: the same series `predial serve` exports.

```python
from prometheus_client import start_http_server
import predial.metrics

resolver = predial.Resolver(campaigns)
predial.metrics.instrument(resolver)        # on prometheus_client's default registry
start_http_server(9464, addr="127.0.0.1")
```

Series (every label value is a configured campaign id or one of a fixed set of words,
so a caller cannot grow them):

- `predial_resolves_total{campaign, source, status, reason}`: every decision.
  `status` is `ok`, `skip` or `retry_later`; `source` is where an `ok` number came
  from (`crm`, `cache`, `stale`, `stored`; empty for a refusal); `reason` is the
  refusal's reason, or why an `ok` number is not the CRM's (empty otherwise).
- `predial_resolve_duration_seconds{campaign, status}`: resolve latency.
- `predial_crm_calls_total{campaign, outcome}` and
  `predial_crm_call_duration_seconds{campaign, outcome}`: each adapter call
  (`outcome`: `ok`, `not_found`, `unavailable`, `rate_limited`, `auth_error`,
  `rejected`, `timeout`, `error`).
- `predial_cache_lookups_total{campaign, result}`: `hit` or `miss`.
- `predial_breaker_state{campaign, state}`: 1 for the breaker's current state
  (`closed`, `open`, `half_open`), 0 for the others.

Histograms use OpenTelemetry's advised buckets for request durations. Needs the
`metrics` extra: `pip install 'predial[metrics]'`. Under several worker processes,
set `PROMETHEUS_MULTIPROC_DIR` before start (`predial serve --workers N` does).
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

try:
    from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge, Histogram
except ImportError as error:  # pragma: no cover - exercised without the extra only
    raise ImportError(
        "predial.metrics needs prometheus-client: pip install 'predial[metrics]'"
    ) from error

if TYPE_CHECKING:
    from ._resolver import Resolver

__all__ = [
    "BREAKER_STATES",
    "LATENCY_BUCKETS",
    "ResolverMetrics",
    "instrument",
    "multiprocess_mode",
]

# OpenTelemetry's advised buckets for http.server.request.duration (seconds).
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0)
BREAKER_STATES = ("closed", "open", "half_open")
# A campaign id the resolver does not know is never a label value: a caller could
# otherwise create a series per request.
UNKNOWN_CAMPAIGN = "_unknown"


def multiprocess_mode() -> bool:
    """Whether prometheus-client writes its values to `PROMETHEUS_MULTIPROC_DIR`."""
    return bool(os.environ.get("PROMETHEUS_MULTIPROC_DIR"))


class ResolverMetrics:
    """The resolver's series on `registry`; the resolver calls the `on_*` methods.

    Label children are cached: on the hot path a decision costs two dictionary
    look-ups and two increments, not prometheus-client's label validation.
    """

    def __init__(self, registry: CollectorRegistry | None = REGISTRY) -> None:
        self.campaigns: frozenset[str] = frozenset()
        self.resolves = Counter(
            "predial_resolves",
            "Decisions of the resolver, by campaign, source, status and reason.",
            ["campaign", "source", "status", "reason"],
            registry=registry,
        )
        self.resolve_duration = Histogram(
            "predial_resolve_duration_seconds",
            "Time to a decision, by campaign and status.",
            ["campaign", "status"],
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self.crm_calls = Counter(
            "predial_crm_calls",
            "Calls of a campaign's CRM adapter, by outcome.",
            ["campaign", "outcome"],
            registry=registry,
        )
        self.crm_duration = Histogram(
            "predial_crm_call_duration_seconds",
            "Duration of each CRM adapter call, by campaign and outcome.",
            ["campaign", "outcome"],
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self.cache_lookups = Counter(
            "predial_cache_lookups",
            "Cache look-ups of prefetch-mode leads: hit or miss.",
            ["campaign", "result"],
            registry=registry,
        )
        self.breaker = Gauge(
            "predial_breaker_state",
            "1 for the current state of a campaign's circuit breaker, 0 for the others.",
            ["campaign", "state"],
            registry=registry,
            # Under several workers: open if any live worker's breaker is open.
            multiprocess_mode="livemax",
        )
        self.shared_events = Counter(
            "predial_shared_tier_events",
            "Shared tier (Redis) events: hit, claimed, wait, handed, wait_timeout, pushed, "
            "miss, lost, corrupt, error, degraded, recovered, rate_wait, breaker_open, event.",
            ["event"],
            registry=registry,
        )
        self.shared_up = Gauge(
            "predial_shared_tier_up",
            "1 while the shared tier (Redis) answers, 0 while the resolver works on its "
            "local tiers alone.",
            registry=registry,
            multiprocess_mode="livemin",
        )
        self._decisions: dict[tuple[str, str, str, str], tuple[Counter, Histogram]] = {}
        self._calls: dict[tuple[str, str], tuple[Counter, Histogram]] = {}
        self._cache: dict[tuple[str, str], Counter] = {}

    def _campaign(self, campaign_id: str | None) -> str:
        return campaign_id if campaign_id in self.campaigns else UNKNOWN_CAMPAIGN

    def on_decision(
        self, campaign_id: str | None, source: str, status: str, reason: str, elapsed: float
    ) -> None:
        key = (self._campaign(campaign_id), source, status, reason)
        children = self._decisions.get(key)
        if children is None:
            children = self._decisions[key] = (
                self.resolves.labels(*key),
                self.resolve_duration.labels(key[0], status),
            )
        children[0].inc()
        children[1].observe(elapsed)

    def on_crm_call(self, campaign_id: str, outcome: str, duration: float) -> None:
        key = (self._campaign(campaign_id), outcome)
        children = self._calls.get(key)
        if children is None:
            children = self._calls[key] = (
                self.crm_calls.labels(*key),
                self.crm_duration.labels(*key),
            )
        children[0].inc()
        children[1].observe(duration)

    def on_cache(self, campaign_id: str, hit: bool) -> None:
        key = (self._campaign(campaign_id), "hit" if hit else "miss")
        child = self._cache.get(key)
        if child is None:
            child = self._cache[key] = self.cache_lookups.labels(*key)
        child.inc()

    def on_shared(self, event: str) -> None:
        self.shared_events.labels(event).inc()
        if event in ("degraded", "recovered"):
            self.shared_up.set(1 if event == "recovered" else 0)

    def on_breaker(self, campaign_id: str, state: str) -> None:
        campaign = self._campaign(campaign_id)
        for each in BREAKER_STATES:
            self.breaker.labels(campaign, each).set(1 if each == state else 0)


def instrument(
    resolver: Resolver, registry: CollectorRegistry | None = REGISTRY
) -> ResolverMetrics:
    """Export `resolver`'s decisions, CRM calls, cache and breakers on `registry`.

    Call once per registry: prometheus-client refuses a second registration of the
    same series names. Returns the `ResolverMetrics` now attached to the resolver.
    """
    metrics = ResolverMetrics(registry)
    resolver.attach_metrics(metrics)
    return metrics
