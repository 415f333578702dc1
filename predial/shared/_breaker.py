"""A campaign's circuit breaker, shared by the fleet.

Failures are counted in Redis, so consecutive failures anywhere in the fleet open
the circuit everywhere. The process whose failure opens it announces it on the
event stream, and every process then refuses at once, without asking Redis before
each call: the check costs nothing on the way to the CRM. While the circuit is
closed the view is trusted, except right after a failure of this process's own
(its count's answer may still be on its way); Redis is asked (one round trip)
then, when the tier comes back after an outage (announcements may have been
missed) and when an open period ends, where exactly one process in the fleet
claims the half-open probe (`SET NX` in the script). Its result closes or
re-opens the circuit for all.

A success resets the fleet's count of consecutive failures, at most every 0.1 s
per process (a reset per CRM call would cost a round trip per call).

The local breaker is always told too: while Redis is unavailable it decides alone,
starting from what this process saw.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Coroutine
from typing import Any, Literal

from .._background import Background
from .._breaker import CircuitBreaker
from ._redis import RedisTier

__all__ = ["SharedBreaker"]

#: How often a process's successes reset the fleet's failure count, at most.
_RESET_EVERY = 0.1


class SharedBreaker:
    def __init__(
        self,
        tier: RedisTier,
        campaign_id: str,
        local: CircuitBreaker,
        deadline: float = 0.0,
    ) -> None:
        self.tier = tier
        self.deadline = deadline
        self.campaign_id = campaign_id
        self.local = local
        self._view: Literal["unknown", "closed", "open"] = "unknown"
        self._open_until = 0.0
        self._generation = tier.generation
        self._probe = ""  # the token of the fleet's probe, while this process holds it
        self._failing = False  # failures were counted since the last reset
        self._last_reset = 0.0
        self._tasks = Background()

    @property
    def view(self) -> str:
        """What this process believes of the fleet's circuit: closed, open, unknown."""
        return self._view

    def heard(self, state: str, seconds: float) -> None:
        """An announcement: another process opened (or closed) the circuit."""
        if state == "open":
            self._view = "open"
            # Never longer than an open period, whatever the announcement says.
            seconds = min(max(seconds, 0.0), self.local.settings.open_for)
            self._open_until = time.monotonic() + seconds
        elif state == "closed":
            self._view = "closed"

    async def allow(self) -> tuple[bool, float] | None:
        """(allowed, seconds until a probe may go); None when Redis is unavailable
        (the local breaker decides)."""
        tier = self.tier
        if not tier.up:
            return None
        if self._generation != tier.generation:  # back after an outage
            self._generation = tier.generation
            self._view = "unknown"
        now = time.monotonic()
        if self._view == "closed":
            return True, 0.0
        if self._view == "open" and now < self._open_until:
            return False, self._open_until - now
        token = secrets.token_hex(16)
        open_for = self.local.settings.open_for
        reply = await tier.breaker_allow(self.campaign_id, open_for, token, self.deadline)
        if reply is None:
            return None
        verdict, wait, failures = reply
        self._failing = failures > 0
        if verdict == "probe":
            self._probe = token
            return True, 0.0
        if verdict == "open":
            wait = min(wait, open_for)
            self._view = "open"
            self._open_until = time.monotonic() + wait
            return False, max(wait, 0.001)
        self._view = "closed"
        return True, 0.0

    def record(self, ok: bool) -> None:
        """Tell the fleet how a call went (in the background: one round trip)."""
        now = time.monotonic()
        if ok and not self._probe and (not self._failing or now - self._last_reset < _RESET_EVERY):
            return  # nothing to reset, or reset a moment ago
        token, self._probe = self._probe, ""
        work: Coroutine[Any, Any, Any]
        if ok:
            self._failing = False
            self._last_reset = now
            work = self.tier.breaker_success(self.campaign_id, token)
        else:
            self._failing = True
            # Until the count's answer is in, this process's next call asks Redis
            # (queued after this failure, so it sees it) rather than trust "closed".
            if self._view == "closed":
                self._view = "unknown"
            work = self._failed(token)
        self._tasks.spawn(work)

    async def _failed(self, token: str) -> None:
        settings = self.local.settings
        reply = await self.tier.breaker_failure(
            self.campaign_id, settings.failure_threshold, token, settings.open_for
        )
        if reply is not None and reply[1] >= 0:  # open: by this failure or already
            self.heard("open", reply[1])
