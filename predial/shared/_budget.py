"""A CRM tenant's rate budget and daily-quota pause, shared by the fleet.

The budget is taken in Redis by one atomic script on the server's clock (a sliding
log: never more than the limit in any window, whatever each machine's clock says).
While the shared tier is unavailable each process falls back to a local budget at
its share of the limit: the limit divided by the processes last seen alive (the
tier's heartbeat), so a fleet without Redis stays within the CRM's limit.
"""

from __future__ import annotations

from typing import Literal

from .._background import Background
from ._redis import RedisTier

__all__ = ["SharedBudget"]


class SharedBudget:
    """The budget of one tenant: `limit` requests per `window` seconds, fleet-wide
    (`limit` None: no budget, only the shared daily-quota pause)."""

    def __init__(self, tier: RedisTier, tenant: str, limit: int | None, window: float) -> None:
        self.tier = tier
        self.tenant = tenant
        self.limit = limit
        self.window = window
        self._tasks = Background()

    @property
    def local_share(self) -> int:
        """The limit this process keeps to while Redis is unavailable."""
        return max(1, (self.limit or 0) // max(1, self.tier.members))

    async def reserve(self) -> tuple[Literal["ok", "wait", "paused"], float, str | None]:
        """("ok", 0, slot) with a slot taken (`settle` it when the request has
        ended); ("wait", seconds, None) or ("paused", seconds, None)."""
        verdict = await self.tier.reserve(self.tenant, self.limit or 0, self.window)
        if verdict is not None:
            return verdict
        if self.limit is None:
            return "ok", 0.0, None
        wait = self.tier.local_budget(self.tenant, self.local_share, self.window).reserve()
        return ("ok", 0.0, None) if wait <= 0 else ("wait", wait, None)

    def settle(self, slot: str | None) -> None:
        """The request of `slot` has ended: its slot counts from now (in the
        background)."""
        if slot is not None:
            self._tasks.spawn(self.tier.settle(self.tenant, slot))

    def report_pause(self, seconds: float) -> None:
        """The CRM said its daily quota is spent: pause every process (in the
        background: the caller is answering its own request)."""
        self._tasks.spawn(self.tier.pause_quota(self.tenant, seconds))
