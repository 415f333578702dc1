"""The shared tier: one cache, one CRM call per lead, one rate budget per CRM
tenant and one circuit breaker per campaign for a whole fleet of dialer processes.

`RedisTier` (the `predial[redis]` extra) is passed as `Resolver(..., shared=...)` or
configured as `[resolver.shared]` in `predial.toml`; see docs/shared-tier.md.
"""

from __future__ import annotations

from ._redis import Lookup, RedisTier, TierState, redacted_url, url_problem

__all__ = ["Lookup", "RedisTier", "TierState", "redacted_url", "url_problem"]
