"""predial-hubspot against FakeHubSpot: requests checked against HubSpot's OpenAPI spec."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from predial_hubspot import HubSpotAdapter
from predial_hubspot.fake import FakeHubSpot

from predial import (
    AdapterRateLimited,
    Campaign,
    CrmContact,
    CrmPhone,
    Lead,
    RecordNotFound,
    Resolution,
    Resolver,
)
from predial.testing import (
    AdapterContract,
    FakeOAuth,
    OAuthAdapterContract,
    OpenApiSpec,
    RateLimitContract,
    RecordingTransport,
    served_check,
)

BASE = "http://127.0.0.1:7001"
TOKEN_PATH = "/oauth/v1/token"
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


def checked(fake: FakeHubSpot) -> Callable[[httpx.Request], httpx.Response]:
    """The fake's handler, with every request and answer checked against the spec
    (but OAuth's, which is not in the contacts spec)."""
    return SPEC.checking(fake.handler, outside=lambda request: request.url.path == TOKEN_PATH)


@pytest.fixture
def crm(fake: FakeHubSpot) -> RecordingTransport:
    """The fake as HubSpot, checked against the spec, every exchange recorded."""
    return RecordingTransport(checked(fake))


def adapter(transport: httpx.AsyncBaseTransport, **settings: Any) -> HubSpotAdapter:
    return HubSpotAdapter(**{"base_url": BASE, "token": TOKEN, "transport": transport, **settings})


def campaign(crm: RecordingTransport, **settings: object) -> Campaign:
    return Campaign(
        "c",
        "hubspot",
        {"base_url": BASE, "token": TOKEN, "transport": crm, **settings},
        default_region="US",
    )


class TestContract(AdapterContract, RateLimitContract, OAuthAdapterContract):
    """predial's contracts: shape, errors, injection, limits, OAuth (through the spec)."""

    def make_adapter(self, fake: FakeHubSpot, **settings: Any) -> HubSpotAdapter:
        return adapter(httpx.MockTransport(checked(fake)), **settings)

    @pytest.fixture
    def known_id(self) -> str:
        return "101"

    def token_endpoint(self, **options: Any) -> FakeOAuth:
        # HubSpot's OAuth access tokens live 30 minutes.
        return FakeOAuth(path=TOKEN_PATH, expires_in=1800, **options)

    def spend_daily_quota(self, fake: FakeHubSpot) -> None:
        fake.daily_limit = 0


# -- requests and answers ---------------------------------------------------------------


async def test_asks_only_for_the_phone_properties(crm: RecordingTransport) -> None:
    hubspot = adapter(crm)
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


async def test_typed_phone_is_primary_without_the_calculated_one(crm: RecordingTransport) -> None:
    hubspot = adapter(crm)
    contact = await hubspot.fetch_phone("103")
    assert contact.phones == [CrmPhone("not a number", "main", primary=True)]
    contact = await hubspot.fetch_phone("102")
    assert contact.phones == [CrmPhone("202-555-0188", "mobile")]
    await hubspot.aclose()


async def test_resolves_to_e164_through_the_resolver(crm: RecordingTransport) -> None:
    async with Resolver([campaign(crm)]) as resolver:
        assert (
            await resolver.resolve(Lead(campaign_id="c", external_id="101"))
        ).phone_number == "+12024561111"
        # The typed number fails the policy; the mobile one is dialled instead.
        assert (
            await resolver.resolve(Lead(campaign_id="c", external_id="102"))
        ).phone_number == "+12025550188"


async def test_unique_property_lookup(crm: RecordingTransport) -> None:
    hubspot = adapter(crm, id_property="email")
    contact = await hubspot.fetch_phone("ada@example.com")
    request = crm.calls.last.request
    assert request.url.raw_path.startswith(b"/crm/v3/objects/contacts/ada%40example.com?")
    assert request.url.params["idProperty"] == "email"
    assert contact.phones[0].value == "+12024561111"
    with pytest.raises(RecordNotFound):
        await hubspot.fetch_phone("nobody@example.com")
    await hubspot.aclose()


async def test_unknown_and_archived_contacts_are_not_found(
    crm: RecordingTransport, fake: FakeHubSpot
) -> None:
    hubspot = adapter(crm)
    with pytest.raises(RecordNotFound):
        await hubspot.fetch_phone("999")
    fake.archive("101")
    with pytest.raises(RecordNotFound):
        await hubspot.fetch_phone("101")
    await hubspot.aclose()


async def test_null_properties_are_no_phone(crm: RecordingTransport) -> None:
    """HubSpot is reported to answer unset requested properties with null."""
    hubspot = adapter(crm)
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


async def test_archived_record_returned_anyway_is_not_dialled(crm: RecordingTransport) -> None:
    """If HubSpot ever returns an archived record, it is marked so and not dialled."""
    hubspot = adapter(crm)
    record = {"id": "5", "archived": True, "properties": {"phone": "+12024561111"}}
    assert hubspot._contact(record, "5").state == "archived"
    await hubspot.aclose()


async def test_merged_contact_answers_with_the_survivor(
    crm: RecordingTransport, fake: FakeHubSpot
) -> None:
    fake.add_contact("200", phone="+12025550100")
    fake.merge("201", into="200")
    hubspot = adapter(crm)
    contact = await hubspot.fetch_phone("201")
    assert contact.state == "merged"
    assert contact.phones[0].value == "+12025550100"
    await hubspot.aclose()


# -- batch read and warm-up ----------------------------------------------------------------


async def test_batch_read_marks_missing_ids_not_found(crm: RecordingTransport) -> None:
    hubspot = adapter(crm)
    answers = await hubspot.fetch_phones(["101", "102", "nope"])
    assert set(answers) == {"101", "102", "nope"}
    assert isinstance(answers["nope"], RecordNotFound)
    assert crm.calls.last.response.status_code == 207  # HubSpot's partial answer
    assert crm.calls.last.request.url.path == "/crm/v3/objects/contacts/batch/read"
    await hubspot.aclose()


async def test_warm_asks_a_merged_id_alone_and_dials_the_survivor(
    crm: RecordingTransport, fake: FakeHubSpot
) -> None:
    fake.add_contact("300", phone="+12025550100")
    fake.merge("301", into="300")
    async with Resolver([campaign(crm)]) as resolver:
        report = await resolver.warm(
            [Lead(campaign_id="c", external_id=i) for i in ("101", "301", "nope")]
        )
        assert (report.warmed, report.refused, report.batches) == (2, 1, 1)
        assert [r.url.path for r in fake.requests][-1] == "/crm/v3/objects/contacts/301"
        resolution = await resolver.resolve(Lead(campaign_id="c", external_id="301"))
        assert (resolution.phone_number, resolution.source) == ("+12025550100", "cache")


async def test_batch_read_by_unique_property(crm: RecordingTransport) -> None:
    hubspot = adapter(crm, id_property="email")
    answers = await hubspot.fetch_phones(["ada@example.com", "x@example.com"])
    assert isinstance(answers["ada@example.com"], CrmContact)
    assert isinstance(answers["x@example.com"], RecordNotFound)
    await hubspot.aclose()


async def test_warm_fills_the_cache_in_batches_of_100(
    crm: RecordingTransport, fake: FakeHubSpot
) -> None:
    for index in range(250):
        fake.add_contact(f"9{index:03d}", phone=f"+1202555{index:04d}")
    leads = [Lead(campaign_id="c", external_id=f"9{index:03d}") for index in range(250)]
    leads.append(Lead(campaign_id="c", external_id="missing"))
    progress: list[tuple[int, int]] = []
    async with Resolver([campaign(crm, rate_limit=[190, 10])]) as resolver:
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


async def test_daily_quota_read_from_the_body_on_oauth_calls(
    crm: RecordingTransport, fake: FakeHubSpot
) -> None:
    """OAuth calls carry no daily-remaining header: `policyName` alone says DAILY."""
    fake.daily_limit = 0
    response = fake.daily_limited()
    del response.headers["X-HubSpot-RateLimit-Daily-Remaining"]
    fake.faults.append(response)
    hubspot = adapter(crm)
    with pytest.raises(AdapterRateLimited) as raised:
        await hubspot.fetch_phone("101")
    assert raised.value.scope == "daily"
    await hubspot.aclose()


# -- predial check, against the fake served by uvicorn -----------------------------------------


def test_predial_check_against_the_served_fake(fake: FakeHubSpot, tmp_path: Path) -> None:
    settings = {"token": "${HUBSPOT_TOKEN}"}
    env = {"HUBSPOT_TOKEN": TOKEN}
    with served_check(fake, "hubspot", settings, env=env, directory=tmp_path) as check:
        check("101").found("hubspot")
        check("999").refused("not_found")
