"""Campaigns on one CRM account (the `tenant` setting) share its rate budget and its
daily-quota pause within their resolver; two limits for one account are a
configuration error naming both campaigns; nothing is shared through the process."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from click.testing import CliRunner
from conftest import VALID_US

import predial
from predial import Campaign, ConfigurationError, Resolver, RetrySettings, Unresolvable
from predial._tenants import Tenants
from predial.adapters.http import HttpAdapter
from predial.cli._app import cli


class Rated(HttpAdapter):
    """A CRM documenting 5 requests a second per account."""

    name = "rated"
    default_base_url = "http://127.0.0.1:9"  # never connected: the transport answers
    rate_limit = (5, 1.0)

    async def fetch_phone(self, external_id: str) -> str:
        data = await self.get_json("/contacts/{}", external_id)
        return str(data["phone"])


class Other(Rated):
    """Another CRM: its accounts are not `Rated`'s, whatever they are called."""

    name = "other"


class Plugin:
    @predial.hookimpl
    def register_adapters(self, register: Callable[[type], None]) -> None:
        register(Rated)
        register(Other)


class Crm:
    """The mock CRM: counts requests; answers a spent daily quota once told to."""

    def __init__(self) -> None:
        self.requests = 0
        self.daily_spent = False

    def handler(self, request: httpx.Request) -> httpx.Response:
        self.requests += 1
        if self.daily_spent:
            return httpx.Response(
                429, headers={"x-ratelimit-daily-remaining": "0", "retry-after": "60"}
            )
        return httpx.Response(200, json={"phone": VALID_US})


def campaign(campaign_id: str, crm: Crm, adapter: str = "rated", **settings: Any) -> Campaign:
    return Campaign(
        campaign_id,
        adapter,
        {"token": "t0k3n", "transport": httpx.MockTransport(crm.handler), **settings},
        default_region="US",
    )


@pytest.fixture
def resolvers() -> Iterator[Callable[..., Resolver]]:
    made: list[Resolver] = []

    def make(*campaigns: Campaign, strict: bool = True, tenants: Tenants | None = None) -> Resolver:
        resolver = Resolver(
            campaigns,
            plugins=[Plugin()],
            load_entrypoints=False,
            retry=RetrySettings(attempts=1),
            strict=strict,
            tenants=tenants,
        )
        made.append(resolver)
        return resolver

    yield make
    for resolver in made:
        resolver.close_sync()


def resolved(resolver: Resolver, campaign_id: str, external_id: str) -> str | None:
    """The reason `resolver` refused the lead, or None when it resolved it."""
    try:
        resolver.resolve_sync({"campaignId": campaign_id, "externalId": external_id})
    except Unresolvable as refusal:
        return refusal.reason
    return None


# -- a conflict is a configuration error naming both campaigns ---------------------------


def test_two_limits_for_one_tenant_name_both_campaigns(
    resolvers: Callable[..., Resolver],
) -> None:
    crm = Crm()
    with pytest.raises(ConfigurationError) as caught:
        resolvers(
            campaign("a", crm, tenant="acme", rate_limit=[100, 10]),
            campaign("b", crm, tenant="acme", rate_limit=[50, 10]),
        )
    assert str(caught.value) == (
        "Campaign('b').settings.rate_limit: campaigns 'a' and 'b' name tenant 'acme' of "
        "adapter 'rated' with different rate_limit ([100, 10] vs [50, 10]); give them the same"
    )


def test_the_class_default_is_a_limit_too(resolvers: Callable[..., Resolver]) -> None:
    """A campaign that sets no rate_limit has the CRM's documented one (5 a second)."""
    crm = Crm()
    with pytest.raises(ConfigurationError, match=r"\(\[5, 1\] vs \[50, 10\]\)"):
        resolvers(
            campaign("a", crm, tenant="acme"),
            campaign("b", crm, tenant="acme", rate_limit=[50, 10]),
        )


def test_one_limit_given_twice_is_no_conflict(resolvers: Callable[..., Resolver]) -> None:
    crm = Crm()
    resolver = resolvers(
        campaign("a", crm, tenant="acme"),
        campaign("b", crm, tenant="acme", rate_limit=[5, 1.0]),  # the default, written
        campaign("c", crm, tenant="other-account", rate_limit=[50, 10]),
        campaign("d", crm, adapter="other", tenant="acme", rate_limit=[50, 10]),
    )
    assert all(runtime.error is None for runtime in resolver.campaigns.values())


def test_not_strict_refuses_the_later_campaign_only(resolvers: Callable[..., Resolver]) -> None:
    crm = Crm()
    resolver = resolvers(
        campaign("a", crm, tenant="acme", rate_limit=[100, 10]),
        campaign("b", crm, tenant="acme", rate_limit=[50, 10]),
        strict=False,
    )
    assert resolved(resolver, "a", "1") is None
    assert resolved(resolver, "b", "1") == "campaign_misconfigured"
    assert "campaigns 'a' and 'b' name tenant 'acme'" in str(resolver.campaigns["b"].error)
    assert crm.requests == 1


# -- campaigns of one tenant share; nothing else does -----------------------------------------


def test_campaigns_of_one_tenant_share_its_budget(resolvers: Callable[..., Resolver]) -> None:
    crm = Crm()
    resolver = resolvers(
        campaign("a", crm, tenant="acme", rate_limit=[2, 60]),
        campaign("b", crm, tenant="acme", rate_limit=[2, 60]),
        campaign("c", crm, rate_limit=[2, 60]),  # no tenant: a budget of its own
    )
    assert resolved(resolver, "a", "1") is None
    assert resolved(resolver, "b", "1") is None
    assert resolved(resolver, "a", "2") == "unavailable"  # the shared budget of 2 is spent
    assert resolved(resolver, "b", "2") == "unavailable"
    assert crm.requests == 2
    assert resolved(resolver, "c", "1") is None
    assert resolved(resolver, "c", "2") is None
    assert crm.requests == 4


def test_campaigns_of_one_tenant_share_its_daily_pause(
    resolvers: Callable[..., Resolver],
) -> None:
    crm = Crm()
    resolver = resolvers(
        campaign("a", crm, tenant="acme"),
        campaign("b", crm, tenant="acme"),
        campaign("c", crm),
    )
    crm.daily_spent = True
    assert resolved(resolver, "a", "1") == "unavailable"
    assert crm.requests == 1
    crm.daily_spent = False  # the pause is predial's: the CRM is not asked again
    assert resolved(resolver, "b", "1") == "unavailable"
    assert crm.requests == 1
    assert resolved(resolver, "c", "1") is None  # another account
    assert crm.requests == 2


def test_two_resolvers_in_one_process_do_not_share_a_tenant(
    resolvers: Callable[..., Resolver],
) -> None:
    """One resolver is one dialer's view: another resolver in the process naming the
    same tenant (and even another limit for it) has its own budget and pause."""
    crm = Crm()
    first = resolvers(campaign("a", crm, tenant="acme", rate_limit=[1, 60]))
    second = resolvers(campaign("a", crm, tenant="acme", rate_limit=[1, 60]))
    assert resolved(first, "a", "1") is None
    assert resolved(first, "a", "2") == "unavailable"  # its budget of 1 is spent
    assert resolved(second, "a", "1") is None
    assert crm.requests == 2
    third = resolvers(campaign("a", crm, tenant="acme", rate_limit=[50, 10]))
    fourth = resolvers(campaign("a", crm, tenant="acme", rate_limit=[50, 10]))
    crm.daily_spent = True
    assert resolved(third, "a", "1") == "unavailable"  # the CRM's answer: paused
    crm.daily_spent = False
    assert resolved(third, "a", "2") == "unavailable"
    assert crm.requests == 3
    assert resolved(fourth, "a", "1") is None
    assert crm.requests == 4


def test_resolvers_given_one_tenants_share_it(resolvers: Callable[..., Resolver]) -> None:
    """Sharing across resolvers is asked for, not had by accident."""
    crm = Crm()
    tenants = Tenants()
    first = resolvers(campaign("a", crm, tenant="acme", rate_limit=[1, 60]), tenants=tenants)
    second = resolvers(campaign("b", crm, tenant="acme", rate_limit=[1, 60]), tenants=tenants)
    assert resolved(first, "a", "1") is None
    assert resolved(second, "b", "1") == "unavailable"
    assert crm.requests == 1


async def test_an_adapter_without_a_resolver_keeps_its_limits_to_itself() -> None:
    """An adapter author's unit test: two adapters naming one tenant, no resolver."""
    crm = Crm()
    adapters = [
        Rated(
            token="t0k3n",
            tenant="acme",
            rate_limit=[1, 60],
            transport=httpx.MockTransport(crm.handler),
        )
        for _ in range(2)
    ]
    try:
        for adapter in adapters:
            assert await adapter.fetch_phone("1") == VALID_US
    finally:
        for adapter in adapters:
            await adapter.aclose()
    assert crm.requests == 2


# -- predial config validate, predial check ------------------------------------------------

PLUGIN = """
import predial
from predial.adapters.http import HttpAdapter

class Rated(HttpAdapter):
    name = "rated"
    default_base_url = "http://127.0.0.1:9"
    rate_limit = (5, 1.0)

    async def fetch_phone(self, external_id):
        return (await self.get_json("/contacts/{}", external_id))["phone"]

@predial.hookimpl
def register_adapters(register):
    register(Rated)
"""

CONFIG = """
[resolver]
plugins = ["rated.py"]

[[campaigns]]
id = "a"
adapter = "rated"
settings = {token = "${PREDIAL_TEST_TOKEN}", tenant = "acme", rate_limit = [100, 10]}

[[campaigns]]
id = "b"
adapter = "rated"
settings = {token = "${PREDIAL_TEST_TOKEN}", tenant = "acme", rate_limit = [50, 10]}

[[campaigns]]
id = "c"
adapter = "rated"
settings = {token = "${PREDIAL_TEST_TOKEN}", tenant = "acme", rate_limit = [100, 10]}
"""

ENV = {"PREDIAL_TEST_TOKEN": "t0k3n-from-the-environment"}


@pytest.fixture
def conflicting(tmp_path: Path) -> Path:
    (tmp_path / "rated.py").write_text(PLUGIN)
    path = tmp_path / "predial.toml"
    path.write_text(CONFIG)
    return path


def test_config_validate_names_both_campaigns(conflicting: Path) -> None:
    result = CliRunner(env=ENV).invoke(cli, ["config", "validate", str(conflicting)])
    assert result.exit_code == 2, result.output
    assert result.output.splitlines() == [
        f"error: {conflicting}: campaigns[1].settings.rate_limit: campaigns 'a' and 'b' name "
        "tenant 'acme' of adapter 'rated' with different rate_limit ([100, 10] vs [50, 10]); "
        "give them the same"
    ]
    conflicting.write_text(CONFIG.replace("[50, 10]", "[100, 10]"))
    result = CliRunner(env=ENV).invoke(cli, ["config", "validate", str(conflicting)])
    assert result.exit_code == 0, result.output


def test_check_refuses_the_conflicting_campaign(conflicting: Path) -> None:
    result = CliRunner(env=ENV).invoke(cli, ["check", "b", "1", "--config", str(conflicting)])
    assert result.exit_code == 2, result.output
    assert "campaign 'b' is misconfigured" in result.output
    assert "campaigns 'a' and 'b' name tenant 'acme'" in result.output
    with pytest.raises(ConfigurationError, match="campaigns 'a' and 'b' name tenant 'acme'"):
        Resolver.from_config(conflicting, environ=ENV)
