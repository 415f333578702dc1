"""predial-hubspot against FakeHubSpot: requests checked against HubSpot's OpenAPI spec."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import respx
from predial_hubspot import HubSpotAdapter
from predial_hubspot.fake import CONTACT_PATH, FakeHubSpot

from predial import (
    AdapterAuthError,
    AdapterRateLimited,
    CrmContact,
    CrmPhone,
    Lead,
    RecordNotFound,
    Resolution,
    Resolver,
)
from predial.campaign import Campaign
from predial.testing import HOSTILE_IDS, AdapterContract, FakeOAuth, OpenApiSpec, served_check

BASE = "http://127.0.0.1:7001"
TOKEN = "pat-na1-test"
SPEC = OpenApiSpec.from_file(Path(__file__).parent / "specs" / "hubspot-crm-contacts-v3.json")


@pytest.fixture
def fake() -> FakeHubSpot:
    fake = FakeHubSpot(tokens=[TOKEN])
    fake.add_contact(
        "101",
        phone="(202) 456-1111",
        mobilephone="+1 202 555 0123",
        hs_calculated_phone_number="+12024561111",
        email="ada@example.com",
    )
    fake.add_contact("102", phone="", mobilephone="202-555-0188")
    fake.add_contact("103", phone="not a number", hs_calculated_phone_number=None)
    return fake


@pytest.fixture
def crm(fake: FakeHubSpot) -> Iterator[respx.MockRouter]:
    """HubSpot on 127.0.0.1 through respx; every request and answer checked against
    the spec as it passes."""

    def checked(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/oauth/v1/token":  # OAuth is not in the contacts spec
            return fake.handler(request)
        SPEC.validate_request(request)
        response = fake.handler(request)
        SPEC.validate_response(request, response)
        return response

    with respx.mock(base_url=BASE, assert_all_called=False) as router:
        router.route().mock(side_effect=checked)
        yield router


def adapter(**settings: Any) -> HubSpotAdapter:
    return HubSpotAdapter(base_url=BASE, **{"token": TOKEN, **settings})


class TestContract(AdapterContract):
    @pytest.fixture
    def adapter(self, fake: FakeHubSpot) -> HubSpotAdapter:
        return HubSpotAdapter(base_url=BASE, token=TOKEN, transport=fake.transport())

    @pytest.fixture
    def known_id(self) -> str:
        return "101"


# -- requests and answers ---------------------------------------------------------------


async def test_asks_only_for_the_phone_properties(crm: respx.MockRouter) -> None:
    hubspot = adapter()
    contact = await hubspot.fetch_phone("101")
    request = crm.calls.last.request
    assert request.url.path == "/crm/v3/objects/contacts/101"
    assert request.url.params.get_list("properties") == [
        "phone",
        "mobilephone",
        "hs_calculated_phone_number",
    ]
    assert request.headers["authorization"] == f"Bearer {TOKEN}"
    assert contact.phones[0] == CrmPhone("+12024561111", "main", primary=True)
    assert [p.value for p in contact.phones] == [
        "+12024561111",
        "(202) 456-1111",
        "+1 202 555 0123",
    ]
    assert contact.state == "active"
    await hubspot.aclose()


async def test_typed_phone_is_primary_without_the_calculated_one(crm: respx.MockRouter) -> None:
    hubspot = adapter()
    contact = await hubspot.fetch_phone("103")
    assert contact.phones == [CrmPhone("not a number", "main", primary=True)]
    contact = await hubspot.fetch_phone("102")
    assert contact.phones == [CrmPhone("202-555-0188", "mobile")]
    await hubspot.aclose()


async def test_resolves_to_e164_through_the_resolver(crm: respx.MockRouter) -> None:
    campaign = Campaign("c", "hubspot", {"base_url": BASE, "token": TOKEN}, default_region="US")
    async with Resolver([campaign]) as resolver:
        assert (
            await resolver.resolve(Lead(campaign_id="c", external_id="101"))
        ).phone_number == "+12024561111"
        # The typed number fails the policy; the mobile one is dialled instead.
        assert (
            await resolver.resolve(Lead(campaign_id="c", external_id="102"))
        ).phone_number == "+12025550188"


async def test_unique_property_lookup(crm: respx.MockRouter) -> None:
    hubspot = adapter(id_property="email")
    contact = await hubspot.fetch_phone("ada@example.com")
    request = crm.calls.last.request
    assert request.url.raw_path.startswith(b"/crm/v3/objects/contacts/ada%40example.com?")
    assert request.url.params["idProperty"] == "email"
    assert contact.phones[0].value == "+12024561111"
    with pytest.raises(RecordNotFound):
        await hubspot.fetch_phone("nobody@example.com")
    await hubspot.aclose()


async def test_unknown_and_archived_contacts_are_not_found(
    crm: respx.MockRouter, fake: FakeHubSpot
) -> None:
    hubspot = adapter()
    with pytest.raises(RecordNotFound):
        await hubspot.fetch_phone("999")
    fake.archive("101")
    with pytest.raises(RecordNotFound):
        await hubspot.fetch_phone("101")
    await hubspot.aclose()


async def test_null_properties_are_no_phone(crm: respx.MockRouter) -> None:
    """HubSpot is reported to answer unset requested properties with null."""
    hubspot = adapter()
    record = {
        "id": "7",
        "archived": False,
        "properties": {
            "phone": None,
            "mobilephone": "+12025550123",
            "hs_calculated_phone_number": None,
        },
    }
    assert hubspot._contact(record, "7").phones == (
        CrmPhone("+12025550123", "mobile"),
    ) or hubspot._contact(record, "7").phones == [CrmPhone("+12025550123", "mobile")]
    await hubspot.aclose()


async def test_archived_record_returned_anyway_is_not_dialled(crm: respx.MockRouter) -> None:
    """If HubSpot ever returns an archived record, it is marked so and not dialled."""
    hubspot = adapter()
    record = {"id": "5", "archived": True, "properties": {"phone": "+12024561111"}}
    assert hubspot._contact(record, "5").state == "archived"
    await hubspot.aclose()


async def test_merged_contact_answers_with_the_survivor(
    crm: respx.MockRouter, fake: FakeHubSpot
) -> None:
    fake.add_contact("200", phone="+12025550100")
    fake.merge("201", into="200")
    hubspot = adapter()
    contact = await hubspot.fetch_phone("201")
    assert contact.state == "merged"
    assert contact.phones[0].value == "+12025550100"
    await hubspot.aclose()


# -- batch read and warm-up ----------------------------------------------------------------


async def test_batch_read_marks_missing_ids_not_found(crm: respx.MockRouter) -> None:
    hubspot = adapter()
    answers = await hubspot.fetch_phones(["101", "102", "nope"])
    assert set(answers) == {"101", "102", "nope"}
    assert isinstance(answers["nope"], RecordNotFound)
    assert crm.calls.last.response.status_code == 207  # HubSpot's partial answer
    assert crm.calls.last.request.url.path == "/crm/v3/objects/contacts/batch/read"
    await hubspot.aclose()


async def test_warm_asks_a_merged_id_alone_and_dials_the_survivor(
    crm: respx.MockRouter, fake: FakeHubSpot
) -> None:
    fake.add_contact("300", phone="+12025550100")
    fake.merge("301", into="300")
    campaign = Campaign("c", "hubspot", {"base_url": BASE, "token": TOKEN}, default_region="US")
    async with Resolver([campaign]) as resolver:
        report = await resolver.warm(
            [Lead(campaign_id="c", external_id=i) for i in ("101", "301", "nope")]
        )
        assert (report.warmed, report.refused, report.batches) == (2, 1, 1)
        assert [r.url.path for r in fake.requests][-1] == "/crm/v3/objects/contacts/301"
        resolution = await resolver.resolve(Lead(campaign_id="c", external_id="301"))
        assert (resolution.phone_number, resolution.source) == ("+12025550100", "cache")


async def test_batch_read_by_unique_property(crm: respx.MockRouter) -> None:
    hubspot = adapter(id_property="email")
    answers = await hubspot.fetch_phones(["ada@example.com", "x@example.com"])
    assert isinstance(answers["ada@example.com"], CrmContact)
    assert isinstance(answers["x@example.com"], RecordNotFound)
    await hubspot.aclose()


async def test_warm_fills_the_cache_in_batches_of_100(
    crm: respx.MockRouter, fake: FakeHubSpot
) -> None:
    for index in range(250):
        fake.add_contact(f"9{index:03d}", phone=f"+1202555{index:04d}")
    leads = [Lead(campaign_id="c", external_id=f"9{index:03d}") for index in range(250)]
    leads.append(Lead(campaign_id="c", external_id="missing"))
    campaign = Campaign("c", "hubspot", {"base_url": BASE, "token": TOKEN, "rate_limit": [190, 10]})
    progress: list[tuple[int, int]] = []
    async with Resolver([campaign]) as resolver:
        report = await resolver.warm(
            leads, on_progress=lambda done, total: progress.append((done, total))
        )
        assert (report.requested, report.warmed, report.refused, report.batches) == (251, 250, 1, 3)
        assert not any(r.url.path.endswith("/missing") for r in fake.requests)  # 207 said so
        assert progress[-1] == (251, 251)
        sent = len(fake.requests)
        results = await resolver.resolve_many(leads[:250])
        assert {r.source for r in results if isinstance(r, Resolution)} == {"cache"}
        assert all(isinstance(r, Resolution) for r in results)
        assert len(fake.requests) == sent
        again = await resolver.warm(leads)
        assert (again.fresh, again.batches) == (251, 0)


# -- limits ------------------------------------------------------------------------------


async def test_burst_limit_is_a_burst(crm: respx.MockRouter, fake: FakeHubSpot) -> None:
    fake.faults.append(fake.rate_limited())
    hubspot = adapter()
    with pytest.raises(AdapterRateLimited) as raised:
        await hubspot.fetch_phone("101")
    assert raised.value.scope == "burst"
    assert (await hubspot.fetch_phone("101")).phones  # the next call goes through
    await hubspot.aclose()


async def test_daily_quota_stops_calls(crm: respx.MockRouter, fake: FakeHubSpot) -> None:
    fake.daily_limit = 1
    hubspot = adapter()
    await hubspot.fetch_phone("101")
    with pytest.raises(AdapterRateLimited) as raised:
        await hubspot.fetch_phone("101")
    assert raised.value.scope == "daily"
    assert raised.value.retry_after == HubSpotAdapter.quota_cooldown
    sent = len(fake.requests)
    with pytest.raises(AdapterRateLimited):
        await hubspot.fetch_phone("102")
    assert len(fake.requests) == sent  # HubSpot was not asked again
    await hubspot.aclose()


async def test_daily_quota_read_from_the_body_on_oauth_calls(
    crm: respx.MockRouter, fake: FakeHubSpot
) -> None:
    """OAuth calls carry no daily-remaining header: `policyName` alone says DAILY."""
    fake.daily_limit = 0
    response = fake.daily_limited()
    del response.headers["X-HubSpot-RateLimit-Daily-Remaining"]
    fake.faults.append(response)
    hubspot = adapter()
    with pytest.raises(AdapterRateLimited) as raised:
        await hubspot.fetch_phone("101")
    assert raised.value.scope == "daily"
    await hubspot.aclose()


async def test_client_side_budget_fails_fast(crm: respx.MockRouter, fake: FakeHubSpot) -> None:
    hubspot = adapter(rate_limit=[2, 10])
    await hubspot.fetch_phone("101")
    await hubspot.fetch_phone("101")
    with pytest.raises(AdapterRateLimited) as raised:
        await hubspot.fetch_phone("101")
    assert 0 < (raised.value.retry_after or 0) <= 10
    assert len(fake.requests) == 2
    await hubspot.aclose()


# -- OAuth -----------------------------------------------------------------------------------


def oauth_fake(**options: Any) -> FakeOAuth:
    return FakeOAuth("cid", "csecret", "refresh-0", expires_in=1800, **options)


async def test_oauth_refreshes_once_for_50_concurrent_lookups(
    crm: respx.MockRouter, fake: FakeHubSpot
) -> None:
    fake.oauth = oauth_fake()
    fake.oauth.path = "/oauth/v1/token"
    hubspot = adapter(
        token=None, client_id="cid", client_secret="csecret", refresh_token="refresh-0"
    )
    contacts = await asyncio.gather(*(hubspot.fetch_phone("101") for _ in range(50)))
    assert all(c.phones for c in contacts)
    assert fake.oauth.refreshes == 1
    # HubSpot's tokens live 30 minutes; once HubSpot retires them, one refresh again.
    fake.oauth.expire_all()
    await asyncio.gather(*(hubspot.fetch_phone("101") for _ in range(50)))
    assert fake.oauth.refreshes == 2
    await hubspot.aclose()


async def test_rotated_refresh_token_is_persisted(
    crm: respx.MockRouter, fake: FakeHubSpot, tmp_path: Path
) -> None:
    fake.oauth = oauth_fake(rotate=True)
    fake.oauth.path = "/oauth/v1/token"
    store = tmp_path / "hubspot-refresh"
    hubspot = adapter(
        token=None,
        client_id="cid",
        client_secret="csecret",
        refresh_token="refresh-0",
        refresh_token_file=str(store),
    )
    await hubspot.fetch_phone("101")
    assert store.read_text() == fake.oauth.refresh_token == "refresh-1"
    assert store.stat().st_mode & 0o777 == 0o600
    await hubspot.aclose()
    # A restart reads the rotated token, not the retired one from the settings.
    fake.oauth.expire_all()
    restarted = adapter(
        token=None,
        client_id="cid",
        client_secret="csecret",
        refresh_token="refresh-0",
        refresh_token_file=str(store),
    )
    assert (await restarted.fetch_phone("101")).phones
    await restarted.aclose()


async def test_revoked_refresh_token_is_an_auth_error_not_a_loop(
    crm: respx.MockRouter, fake: FakeHubSpot
) -> None:
    fake.oauth = oauth_fake()
    fake.oauth.path = "/oauth/v1/token"
    fake.oauth.revoke()
    hubspot = adapter(
        token=None, client_id="cid", client_secret="csecret", refresh_token="refresh-0"
    )
    results = await asyncio.gather(
        *(hubspot.fetch_phone("101") for _ in range(20)), return_exceptions=True
    )
    assert all(isinstance(r, AdapterAuthError) for r in results)
    assert len(fake.requests_to("/oauth/v1/token")) == 1
    assert fake.requests_to(CONTACT_PATH) == []
    await hubspot.aclose()


# -- injection ---------------------------------------------------------------------------------


@pytest.mark.parametrize("external_id", HOSTILE_IDS, ids=lambda v: repr(v[:12]))
async def test_hostile_ids_reach_only_one_contact(
    crm: respx.MockRouter, fake: FakeHubSpot, external_id: str
) -> None:
    hubspot = adapter()
    with pytest.raises(RecordNotFound):
        await hubspot.fetch_phone(external_id)
    request = crm.calls.last.request
    raw = request.url.raw_path.decode("ascii").split("?")[0]
    assert raw.startswith(CONTACT_PATH)
    assert raw.count("/") == CONTACT_PATH.count("/")
    assert set(request.url.params) == {"properties"}
    assert "x-injected" not in request.headers
    await hubspot.aclose()


# -- predial check, against the fake served by uvicorn -----------------------------------------


def test_predial_check_against_the_served_fake(fake: FakeHubSpot, tmp_path: Path) -> None:
    settings = {"token": "${HUBSPOT_TOKEN}"}
    env = {"HUBSPOT_TOKEN": TOKEN}
    with served_check(fake, "hubspot", settings, env=env, directory=tmp_path) as check:
        found = check("101")
        assert found.exit_code == 0, found.output
        assert (found.trace["adapter"], found.trace["source"]) == ("hubspot", "crm")
        missing = check("999")
        assert (missing.exit_code, missing.trace["reason"]) == (1, "not_found")
