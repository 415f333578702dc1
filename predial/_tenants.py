"""The CRM tenants of one resolver: campaigns on one CRM account share its limits.

A CRM limits each account (a tenant), not each campaign: two campaigns whose
adapters name the same `tenant` must spend one rate budget and stop together when
the account's daily quota is spent. `Tenants` is where they meet. The resolver
makes one and hands it to each campaign's adapter as the campaign is added
(`HttpAdapter.join_tenants`); the first campaign to name a tenant brings its state,
the others share it. It is the resolver's, not the process's: two resolvers in one
process keep their tenants apart (a resolver is one dialer's view of its CRMs; the
shared tier is what shares a tenant across processes), and an adapter used without
a resolver keeps limits of its own.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, TypeVar, cast

from .errors import ConfigurationError

if TYPE_CHECKING:
    from ._campaign import Campaign

__all__ = ["RateLimit", "Tenants"]

#: A tenant's client-side limit: (requests, seconds), or None for no budget.
RateLimit = tuple[int, float] | None

_State = TypeVar("_State")


class Tenants:
    """The tenants named by one resolver's campaigns, each with the state its
    campaigns share (an `HttpAdapter`'s rate budget and daily-quota pause)."""

    def __init__(self) -> None:
        # (adapter class, tenant) -> the first campaign naming it, its limit, its state.
        self._joined: dict[tuple[type, str], tuple[Campaign, RateLimit, object]] = {}

    def join(
        self,
        campaign: Campaign,
        adapter: type,
        tenant: str,
        limit: RateLimit,
        state: _State,
    ) -> _State:
        """The state `campaign`'s adapter (of class `adapter`) shares for `tenant`:
        `state` (its own) when it is the first to name the tenant, else the first
        one's. Tenants are told apart by adapter class: one name on two CRMs is two
        accounts.

        Raises `ConfigurationError` naming both campaigns when `limit` is not the
        first one's: one account has one limit, and keeping either would silently
        ignore the other campaign's setting.
        """
        key = (adapter, tenant)
        joined = self._joined.get(key)
        if joined is None:
            self._joined[key] = (campaign, limit, state)
            return state
        first, first_limit, shared = joined
        if limit != first_limit:
            raise ConfigurationError(
                f"{campaign.where}.settings.rate_limit: campaigns {first.id!r} and "
                f"{campaign.id!r} name tenant {tenant!r} of adapter {campaign.adapter!r} "
                f"with different rate_limit ({_said(first_limit)} vs {_said(limit)}); "
                "give them the same"
            )
        # The first campaign's state is of the class of this one's: same adapter class.
        return cast("_State", shared)


def _said(limit: RateLimit) -> str:
    """`limit` as it is written in predial.toml: `[100, 10]`, or none."""
    return "none" if limit is None else f"[{limit[0]}, {limit[1]:g}]"
