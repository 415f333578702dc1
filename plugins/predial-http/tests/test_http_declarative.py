"""predial-http: an in-house CRM described in settings, against FakeJsonCrm."""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

import httpx
import pytest
from predial_http import JsonHttpAdapter
from predial_http.fake import FakeJsonCrm
from pydantic import ValidationError

from predial import (
    AdapterAuthError,
    Campaign,
    CrmPhone,
    Lead,
    RecordNotFound,
    Resolver,
    Unresolvable,
)
from predial.testing import (
    HOSTILE_IDS,
    AdapterContract,
    OAuthAdapterContract,
    RateLimitContract,
    RecordingTransport,
    served_check,
)

BASE = "http://127.0.0.1:7101"
TOKEN = "inhouse-t0k3n"
PHONES: list[dict[str, Any]] = [
    {"path": "person.phones", "value": "number", "label": "kind", "primary": "preferred"},
    {"path": "person.mobile", "label": "mobile"},
]
SETTINGS: dict[str, Any] = {
    "base_url": BASE,
    "path": "/api/v1/people/{id}",
    "token": TOKEN,
    "phones": PHONES,
    "do_not_call": "person.flags.dnc",
    "deleted": "person.deleted_at",
}


def person(**fields: Any) -> dict[str, Any]:
    return {
        "person": {
            "phones": [],
            "mobile": None,
            "flags": {"dnc": False},
            "deleted_at": None,
            **fields,
        }
    }


@pytest.fixture
def fake() -> FakeJsonCrm:
    fake = FakeJsonCrm("/api/v1/people/", tokens=[TOKEN])
    fake.records["P-1"] = person(
        phones=[
            {"number": "(202) 456-1111", "kind": "work", "preferred": False},
            {"number": "+1 202 555 0123", "kind": "mobile", "preferred": True},
        ],
        mobile="+12025550188",
    )
    fake.records["P-dnc"] = person(mobile="+12025550188", flags={"dnc": "yes"})
    fake.records["P-gone"] = person(mobile="+12025550188", deleted_at="2026-01-01")
    return fake


@pytest.fixture
def crm(fake: FakeJsonCrm) -> RecordingTransport:
    """The fake in-house CRM, every exchange recorded."""
    return RecordingTransport(fake.handler)


def adapter(transport: httpx.AsyncBaseTransport | None = None, **changes: Any) -> JsonHttpAdapter:
    return JsonHttpAdapter(**{**SETTINGS, "transport": transport, **changes})


class Wiring:
    """How predial's contracts build the adapter against the fake."""

    def make_adapter(self, fake: FakeJsonCrm, **settings: Any) -> JsonHttpAdapter:
        return adapter(fake.transport(), **settings)

    @pytest.fixture
    def known_id(self) -> str:
        return "P-1"

    @pytest.fixture
    def served_settings(self) -> dict[str, object]:
        return {"path": SETTINGS["path"], "phones": PHONES}


class TestContract(Wiring, AdapterContract, RateLimitContract, OAuthAdapterContract):
    """predial's contracts: shape, errors, injection, limits, OAuth (refresh token)."""


class TestOAuthClientCredentials(Wiring, OAuthAdapterContract):
    grant = "client_credentials"


class TestContractWithIdInQuery(AdapterContract):
    @pytest.fixture
    def adapter(self, fake: FakeJsonCrm) -> JsonHttpAdapter:
        query_fake = FakeJsonCrm("/api/v1/people", query_key="ref", tokens=[TOKEN])
        query_fake.records = fake.records
        settings = {**SETTINGS, "path": "/api/v1/people", "query": {"ref": "{id}", "view": "dial"}}
        return JsonHttpAdapter(**settings, transport=query_fake.transport())

    @pytest.fixture
    def known_id(self) -> str:
        return "P-1"


# -- reading the answer ---------------------------------------------------------------


async def test_phones_labels_and_primary_from_the_paths(crm: RecordingTransport) -> None:
    crm_adapter = adapter(crm)
    contact = await crm_adapter.fetch_phone("P-1")
    assert contact.phones == [
        CrmPhone("(202) 456-1111", "work", False),
        CrmPhone("+1 202 555 0123", "mobile", True),
        CrmPhone("+12025550188", "mobile", False),
    ]
    assert (contact.do_not_call, contact.state) == (False, "active")
    assert crm.calls.last.request.headers["authorization"] == f"Bearer {TOKEN}"
    await crm_adapter.aclose()


async def test_flags_from_the_paths(crm: RecordingTransport) -> None:
    campaign = Campaign("c", "http", {**SETTINGS, "transport": crm}, default_region="US")
    async with Resolver([campaign]) as resolver:
        assert (
            await resolver.resolve(Lead(campaign_id="c", external_id="P-1"))
        ).phone_number == "+12025550123"
        with pytest.raises(Unresolvable) as dnc:
            await resolver.resolve(Lead(campaign_id="c", external_id="P-dnc"))
        assert dnc.value.reason == "do_not_call"
        with pytest.raises(Unresolvable) as gone:
            await resolver.resolve(Lead(campaign_id="c", external_id="P-gone"))
        assert gone.value.reason == "record_deleted"
        with pytest.raises(Unresolvable) as missing:
            await resolver.resolve(Lead(campaign_id="c", external_id="P-404"))
        assert missing.value.reason == "not_found"


async def test_list_of_strings_and_filters(crm: RecordingTransport, fake: FakeJsonCrm) -> None:
    fake.records["P-2"] = {
        "data": {
            "numbers": ["+12025550101", "+12025550102"],
            "contacts": [
                {"type": "cell", "n": "+12025550103"},
                {"type": "fax", "n": "+12025550104"},
            ],
        }
    }
    crm_adapter = adapter(
        crm,
        phones=[
            {"path": "data.numbers", "label": "main", "primary": True},
            {"path": "data.contacts[?type=='cell'].n", "label": "mobile"},
        ],
    )
    contact = await crm_adapter.fetch_phone("P-2")
    assert [(p.value, p.label, p.primary) for p in contact.phones] == [
        ("+12025550101", "main", True),
        ("+12025550102", "main", True),
        ("+12025550103", "mobile", False),
    ]
    await crm_adapter.aclose()


async def test_header_token_and_fixed_headers(crm: RecordingTransport, fake: FakeJsonCrm) -> None:
    fake.auth_header, fake.auth_prefix = "x-api-key", ""
    crm_adapter = adapter(
        crm, auth_header="X-Api-Key", auth_scheme="", headers={"Accept": "application/json"}
    )
    await crm_adapter.fetch_phone("P-1")
    request = crm.calls.last.request
    assert request.headers["x-api-key"] == TOKEN
    assert "authorization" not in request.headers
    assert request.headers["accept"] == "application/json"
    await crm_adapter.aclose()


async def test_basic_auth(crm: RecordingTransport) -> None:
    crm_adapter = adapter(crm, token=None, username="dialer", password="s3cret")
    with pytest.raises(AdapterAuthError):  # the fake accepts bearer tokens only
        await crm_adapter.fetch_phone("P-1")
    sent = crm.calls.last.request.headers["authorization"]
    assert sent == "Basic " + base64.b64encode(b"dialer:s3cret").decode()
    await crm_adapter.aclose()


async def test_custom_not_found_status(crm: RecordingTransport, fake: FakeJsonCrm) -> None:
    fake.faults.append(httpx.Response(422, json={"error": "unknown person"}))
    crm_adapter = adapter(crm, not_found=[404, 422])
    with pytest.raises(RecordNotFound):
        await crm_adapter.fetch_phone("P-1")
    await crm_adapter.aclose()


# -- settings are checked at start-up ------------------------------------------------------


@pytest.mark.parametrize(
    ("changes", "field", "words"),
    [
        ({"path": "/people"}, None, "{id} must appear exactly once"),
        ({"path": "/people/{id}/{id}"}, None, "found 2"),
        ({"path": "people/{id}"}, "path", "start with '/'"),
        ({"path": "/people/{id}?x=1"}, "path", "query"),
        ({"phones": []}, "phones", "at least 1"),
        ({"phones": [{"path": "person..mobile"}]}, "phones", "not a JMESPath expression"),
        ({"do_not_call": "flags[?"}, "do_not_call", "not a JMESPath expression"),
        ({"headers": {"Authorization": "Bearer x"}}, "headers", "credentials go in `token`"),
        ({"auth_header": "X-Key\r\nX-Injected"}, "auth_header", "not an HTTP header name"),
        ({"not_found": [200]}, None, "not a 4xx status"),
        ({"phones": [{"path": "a", "colour": "red"}]}, "phones", "Extra inputs"),
    ],
)
def test_bad_settings_name_the_setting(
    changes: dict[str, Any], field: str | None, words: str
) -> None:
    with pytest.raises(ValidationError) as raised:
        adapter(**changes)
    text = str(raised.value)
    assert words in text
    if field is not None:
        assert field in {str(error["loc"][0]) for error in raised.value.errors()}


def test_bad_settings_through_the_resolver_name_the_campaign() -> None:
    campaign = Campaign("c", "http", {**SETTINGS, "path": "/people"})
    with pytest.raises(
        Exception, match=r"Campaign\('c'\)\.settings: \{id\} must appear exactly once"
    ):
        Resolver([campaign])


def test_base_url_is_required() -> None:
    settings = {key: value for key, value in SETTINGS.items() if key != "base_url"}
    with pytest.raises(ValueError, match="base_url"):
        JsonHttpAdapter(**settings)


# -- injection -------------------------------------------------------------------------------


@pytest.mark.parametrize("external_id", HOSTILE_IDS, ids=lambda v: repr(v[:12]))
async def test_hostile_ids_are_one_query_value(crm: RecordingTransport, external_id: str) -> None:
    """In a query value the id is sent whole, as itself (the contract checks that the
    path and the other query values are left as they are)."""
    crm_adapter = adapter(crm, path="/api/v1/people", query={"ref": "{id}"})
    with pytest.raises(RecordNotFound):
        await crm_adapter.fetch_phone(external_id)
    request = crm.calls.last.request
    assert request.url.raw_path.decode("ascii").split("?")[0] == "/api/v1/people"
    assert dict(request.url.params) == {"ref": external_id}
    assert "x-injected" not in request.headers
    await crm_adapter.aclose()


# -- predial check against the served fake ----------------------------------------------------


def test_predial_check_against_the_served_fake(fake: FakeJsonCrm, tmp_path: Path) -> None:
    settings = {
        "path": "/api/v1/people/{id}",
        "token": "${INHOUSE_TOKEN}",
        "do_not_call": "person.flags.dnc",
        "phones": [
            {"path": "person.phones", "value": "number", "label": "kind", "primary": "preferred"}
        ],
    }
    env = {"INHOUSE_TOKEN": TOKEN}
    with served_check(fake, "http", settings, env=env, directory=tmp_path) as check:
        assert check("P-1").found("http").trace["phoneNumber"] == "+1202***0123"
        check("P-dnc").refused("do_not_call")
