"""A campaign's circuit breaker, shared by the fleet.

Failures are counted in Redis, so consecutive failures anywhere in the fleet open
the circuit everywhere: every process asks before each CRM call (one round trip),
and once it is open every process refuses at once. When the open period is over,
exactly one process in the fleet claims the half-open probe (`SET NX` in the
script); its result closes or re-opens the circuit for all.

The local breaker is always told too: while Redis is unavailable it decides alone,
starting from what this process saw.
"""

from __future__ import annotations

import asyncio
import secrets
from typing import Any

from ..breaker import CircuitBreaker
from .redis import RedisTier

__all__ = ["SharedBreaker"]


class SharedBreaker:
    def __init__(self, tier: RedisTier, campaign_id: str, local: CircuitBreaker) -> None:
        self.tier = tier
        self.campaign_id = campaign_id
        self.local = local
        self._probe = ""  # the token of the fleet's probe, while this process holds it
        self._failures_seen = 0
        self._tasks: set[asyncio.Task[Any]] = set()

    async def allow(self) -> tuple[bool, float] | None:
        """(allowed, seconds until a probe may go); None when Redis is unavailable
        (the local breaker decides)."""
        token = secrets.token_hex(16)
        reply = await self.tier.breaker_allow(self.campaign_id, self.local.settings.open_for, token)
        if reply is None:
            return None
        verdict, wait, failures = reply
        self._failures_seen = failures
        if verdict == "probe":
            self._probe = token
            return True, 0.0
        if verdict == "open":
            return False, max(wait, 0.001)
        return True, 0.0

    def record(self, ok: bool) -> None:
        """Tell the fleet how a call went (in the background: one round trip)."""
        if ok and not self._probe and self._failures_seen == 0:
            return  # nothing to reset: spare the round trip on the hot path
        token, self._probe = self._probe, ""
        self._failures_seen = 0 if ok else self._failures_seen + 1
        if ok:
            work = self.tier.breaker_success(self.campaign_id, token)
        else:
            settings = self.local.settings
            work = self.tier.breaker_failure(
                self.campaign_id, settings.failure_threshold, token, settings.open_for
            )
        try:
            task = asyncio.get_running_loop().create_task(work)
        except RuntimeError:
            work.close()
            return
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
