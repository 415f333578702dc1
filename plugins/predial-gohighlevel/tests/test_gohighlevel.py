"""predial-gohighlevel against FakeGoHighLevel: requests and answers checked against
GoHighLevel's OpenAPI spec (apps/contacts.json)."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, ClassVar
from urllib.parse import parse_qs

import httpx
import pytest
from predial_gohighlevel import API_VERSION, GoHighLevelAdapter, contact_from
from predial_gohighlevel.fake import CONTACT_PATH, TOKEN_PATH, FakeGoHighLevel, gohighlevel_oauth

from predial import (
    AdapterAuthError,
    AdapterRateLimited,
    AdapterUnavailable,
    Campaign,
    CrmPhone,
    Lead,
    RecordNotFound,
    Resolver,
    Unresolvable,
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

BASE = "http://127.0.0.1:7002"
TOKEN = "pit-5f1e0c2a-7b1d-4c8e-9a3f-000000000001"
SPEC_FILE = Path(__file__).parent / "specs" / "gohighlevel-contacts.json"

ADA = "ocQHyuzHvysMo5N5VsXc"  # phone and two additional phones
NO_PHONE = "noPhoneContact000001"
DND_ALL = "dndAllChannels000001"
DND_CALL = "dndCallActive0000001"
DND_CALL_PERMANENT = "dndCallPermanent0001"
DND_SMS_ONLY = "dndSmsOnly0000000001"
DND_CALL_INACTIVE = "dndCallInactive00001"
RATE_HEADERS = (
    "x-ratelimit-limit-daily",
    "x-ratelimit-daily-remaining",
    "x-ratelimit-interval-milliseconds",
    "x-ratelimit-max",
    "x-ratelimit-remaining",
)

# The contacts spec takes its error bodies from `../common/common-schemas.json`,
# which is not vendored with it. These are that file's DTOs as a public copy of it
# gives them (kleegr/kleegr-api-docs, common/common-schemas.json @ 49eeb31), so
# error answers are still checked for their shape.
COMMON_SCHEMAS: dict[str, dict[str, Any]] = {
    "BadRequestDTO": {
        "type": "object",
        "properties": {"statusCode": {"type": "number"}, "message": {"type": "string"}},
    },
    "UnauthorizedDTO": {
        "type": "object",
        "properties": {
            "statusCode": {"type": "number"},
            "message": {"type": "string"},
            "error": {"type": "string"},
        },
    },
    "UnprocessableDTO": {
        "type": "object",
        "properties": {
            "statusCode": {"type": "number"},
            "message": {"type": "array", "items": {"type": "string"}},
            "error": {"type": "string"},
        },
    },
}
COMMON_PREFIX = "../common/common-schemas.json#/components/schemas/"


def _local_refs(node: Any) -> Any:
    """`node` with the external refs pointed at COMMON_SCHEMAS; any other external
    ref (none today) becomes a permissive object, since it cannot be resolved."""
    if isinstance(node, dict):
        ref = node.get("$ref")
        if isinstance(ref, str) and not ref.startswith("#"):
            name = ref.removeprefix(COMMON_PREFIX)
            if name in COMMON_SCHEMAS:
                return {"$ref": f"#/components/schemas/{name}"}
            return {"type": "object"}
        return {key: _local_refs(value) for key, value in node.items()}
    if isinstance(node, list):
        return [_local_refs(item) for item in node]
    return node


def load_spec() -> OpenApiSpec:
    """The published spec, with what keeps openapi-core from loading it repaired.

    Besides the external refs, two defects of the published document make the spec
    validator refuse the whole of it: its `http` security schemes also carry
    `name` and `in` (allowed only for `apiKey` schemes in OpenAPI 3.0), and
    `POST /contacts/bulk/tags/update/{type}` does not declare its `type` path
    parameter. Neither touches get-contact; both are repaired, not removed, so the
    rest of the document is still checked as published.
    """
    document = _local_refs(json.loads(SPEC_FILE.read_text(encoding="utf-8")))
    schemas = document["components"]["schemas"]
    for name, schema in COMMON_SCHEMAS.items():
        assert name not in schemas, f"the spec now defines {name} itself: drop the copy"
        schemas[name] = schema
    for scheme in document["components"]["securitySchemes"].values():
        if scheme.get("type") == "http":
            scheme.pop("name", None)
            scheme.pop("in", None)
    bulk_tags = document["paths"]["/contacts/bulk/tags/update/{type}"]["post"]
    if not any(p.get("in") == "path" for p in bulk_tags.get("parameters", [])):
        bulk_tags.setdefault("parameters", []).append(
            {"name": "type", "in": "path", "required": True, "schema": {"type": "string"}}
        )
    return OpenApiSpec(document)


SPEC = load_spec()
#: The answers the spec documents for get-contact. 404 and 429 are not among them:
#: those answers are the fake's reading of GoHighLevel, not checkable against it.
DOCUMENTED = {200, 400, 401, 422}
#: Marks an answer a test queues precisely because the spec does not allow it.
OFF_SPEC = "off_spec"


@pytest.fixture
def fake() -> FakeGoHighLevel:
    fake = FakeGoHighLevel(tokens=[TOKEN])
    fake.add_contact(
        ADA,
        phone="+12025550123",
        additional_phones=["(202) 456-1111", "+12025550123"],
        firstName="Ada",
        email="ada@example.com",
        dndSettings={"SMS": {"status": "inactive", "message": "", "code": ""}},
    )
    fake.add_contact(NO_PHONE, firstName="Nobody")
    fake.add_contact(DND_ALL, phone="+12025550161", dnd=True)
    fake.add_contact(DND_CALL, phone="+12025550162", dnd_settings={"Call": "active"})
    fake.add_contact(
        DND_CALL_PERMANENT,
        phone="+12025550163",
        dnd_settings={"Call": {"status": "permanent", "message": "STOP", "code": "30007"}},
    )
    fake.add_contact(DND_SMS_ONLY, phone="+12025550164", dnd_settings={"SMS": "active"})
    fake.add_contact(
        DND_CALL_INACTIVE,
        phone="+12025550165",
        dnd_settings={"Call": "inactive", "SMS": "permanent"},
    )
    return fake


def check_token_request(request: httpx.Request) -> None:
    """The token call as GoHighLevel's oauth spec has it (not in the contacts spec)."""
    assert request.method == "POST"
    assert request.headers["content-type"] == "application/x-www-form-urlencoded"
    assert "version" not in request.headers  # the token endpoint takes none
    form = parse_qs(request.content.decode())
    assert form["grant_type"] == ["refresh_token"]
    assert form["user_type"] == ["Location"]
    assert set(form) <= {
        "client_id",
        "client_secret",
        "grant_type",
        "refresh_token",
        "user_type",
    }


def checked(fake: FakeGoHighLevel) -> Callable[[httpx.Request], httpx.Response]:
    """The fake's handler, with every request, and every answer the spec documents,
    checked against the spec; token requests against GoHighLevel's oauth spec."""

    def handle(request: httpx.Request) -> httpx.Response:
        if request.url.path == TOKEN_PATH:
            check_token_request(request)
        return fake.handler(request)

    return SPEC.checking(
        handle,
        outside=lambda request: request.url.path == TOKEN_PATH,
        answers=lambda answer: (
            answer.status_code in DOCUMENTED and not answer.extensions.get(OFF_SPEC)
        ),
    )


@pytest.fixture
def crm(fake: FakeGoHighLevel) -> RecordingTransport:
    """The fake as GoHighLevel, checked against the spec, every exchange recorded."""
    return RecordingTransport(checked(fake))


def adapter(transport: httpx.AsyncBaseTransport, **settings: Any) -> GoHighLevelAdapter:
    return GoHighLevelAdapter(
        **{"base_url": BASE, "token": TOKEN, "transport": transport, **settings}
    )


def campaign(crm: RecordingTransport) -> Campaign:
    settings = {"base_url": BASE, "token": TOKEN, "transport": crm}
    return Campaign("c", "gohighlevel", settings, default_region="US")


class TestContract(AdapterContract, RateLimitContract, OAuthAdapterContract):
    """predial's contracts: shape, errors, injection, limits, OAuth (through the spec)."""

    token_form: ClassVar[Mapping[str, str]] = {"user_type": "Location"}

    def make_adapter(self, fake: FakeGoHighLevel, **settings: Any) -> GoHighLevelAdapter:
        return adapter(httpx.MockTransport(checked(fake)), **settings)

    @pytest.fixture
    def known_id(self) -> str:
        return ADA

    def token_endpoint(self, **options: Any) -> FakeOAuth:
        # Day-long access tokens; refresh tokens rotate on every refresh.
        return gohighlevel_oauth(**options)

    def spend_daily_quota(self, fake: FakeGoHighLevel) -> None:
        fake.daily_limit = 0


# -- the spec itself -------------------------------------------------------------------


def test_the_spec_check_refuses_what_the_spec_refuses() -> None:
    """The repaired spec still checks: a request without `Version`, an extra query
    parameter, and a 200 with a dndSettings status outside the enum all fail."""
    url = f"{BASE}/contacts/{ADA}"
    auth = {"Authorization": f"Bearer {TOKEN}"}
    with pytest.raises(AssertionError, match="Version"):
        SPEC.validate_request(httpx.Request("GET", url, headers=auth))
    with pytest.raises(AssertionError, match="Version"):
        SPEC.validate_request(httpx.Request("GET", url, headers={**auth, "Version": "2021-04-15"}))
    with pytest.raises(AssertionError, match="not declared"):
        SPEC.validate_request(
            httpx.Request("GET", url + "?fields=phone", headers={**auth, "Version": API_VERSION})
        )
    good = httpx.Request("GET", url, headers={**auth, "Version": API_VERSION})
    SPEC.validate_request(good)
    bad = {"contact": {"id": ADA, "dndSettings": {"Call": {"status": "on"}}}}
    with pytest.raises(AssertionError, match="200"):
        SPEC.validate_response(good, httpx.Response(200, json=bad))
    with pytest.raises(AssertionError, match="401"):
        SPEC.validate_response(good, httpx.Response(401, json={"message": ["a", "list"]}))


def test_the_fake_requires_the_version_header(fake: FakeGoHighLevel) -> None:
    url = f"{BASE}/contacts/{ADA}"
    auth = {"Authorization": f"Bearer {TOKEN}"}
    missing = fake.handler(httpx.Request("GET", url, headers=auth))
    assert missing.status_code == 400
    assert missing.json() == {
        "statusCode": 400,
        "message": "Version header was not found",
        "error": "Bad Request",
    }
    wrong = fake.handler(httpx.Request("GET", url, headers={**auth, "Version": "2021-04-15"}))
    assert wrong.status_code == 400
    right = fake.handler(httpx.Request("GET", url, headers={**auth, "Version": API_VERSION}))
    assert right.status_code == 200
    assert right.json()["contact"]["phone"] == "+12025550123"


# -- requests and answers ---------------------------------------------------------------


async def test_sends_the_version_header_and_reads_the_contact(crm: RecordingTransport) -> None:
    ghl = adapter(crm)
    contact = await ghl.fetch_phone(ADA)
    request = crm.calls.last.request
    assert request.method == "GET"
    assert request.url.path == f"/contacts/{ADA}"
    assert not request.url.params
    assert request.headers["version"] == API_VERSION
    assert request.headers["authorization"] == f"Bearer {TOKEN}"
    assert contact.phones[0] == CrmPhone("+12025550123", "main", primary=True)
    assert contact.do_not_call is False
    assert contact.state == "active"
    await ghl.aclose()


async def test_additional_phones_follow_the_primary(crm: RecordingTransport) -> None:
    ghl = adapter(crm)
    contact = await ghl.fetch_phone(ADA)
    # The primary repeated among the additional phones is listed once.
    assert list(contact.phones) == [
        CrmPhone("+12025550123", "main", primary=True),
        CrmPhone("(202) 456-1111", "additional"),
    ]
    await ghl.aclose()


async def test_a_contact_without_a_phone_has_none(crm: RecordingTransport) -> None:
    ghl = adapter(crm)
    contact = await ghl.fetch_phone(NO_PHONE)
    assert list(contact.phones) == []
    assert contact.do_not_call is False
    await ghl.aclose()


def test_contact_reading_copes_with_what_the_spec_does_not_say() -> None:
    """Null phones, additional phones as objects, junk types: never a crash."""
    contact = contact_from(
        {
            "phone": None,
            "additionalPhones": [
                {"phone": "+12025550170", "phoneLabel": "mobile"},
                {"phone": "+12025550171"},
                "  ",
                None,
                7,
            ],
            "dnd": "true",  # not a boolean: not read as do-not-disturb
            "dndSettings": {"Call": "active"},  # not an object: ignored
        }
    )
    assert list(contact.phones) == [
        CrmPhone("+12025550170", "mobile"),
        CrmPhone("+12025550171", "additional"),
    ]
    assert contact.do_not_call is False
    assert contact_from({"dndSettings": {"Call": {"status": " Active "}}}).do_not_call is True


async def test_resolves_to_e164_through_the_resolver(crm: RecordingTransport) -> None:
    async with Resolver([campaign(crm)]) as resolver:
        resolution = await resolver.resolve(Lead(campaign_id="c", external_id=ADA))
        assert resolution.phone_number == "+12025550123"
        assert resolution.source == "crm"
        assert resolution.adapter == "gohighlevel"


# -- do not disturb ----------------------------------------------------------------------


@pytest.mark.parametrize("contact_id", [DND_ALL, DND_CALL, DND_CALL_PERMANENT])
async def test_do_not_disturb_is_refused_by_the_resolver(
    crm: RecordingTransport, contact_id: str
) -> None:
    ghl = adapter(crm)
    assert (await ghl.fetch_phone(contact_id)).do_not_call is True
    await ghl.aclose()
    async with Resolver([campaign(crm)]) as resolver:
        # The lead's stored number must not be dialled either.
        lead = Lead(campaign_id="c", external_id=contact_id, phone_number="+12025550100")
        with pytest.raises(Unresolvable) as refused:
            await resolver.resolve(lead)
        assert refused.value.reason == "do_not_call"
        assert refused.value.retryable is False


@pytest.mark.parametrize("contact_id", [DND_SMS_ONLY, DND_CALL_INACTIVE])
async def test_do_not_disturb_on_other_channels_does_not_stop_a_call(
    crm: RecordingTransport, contact_id: str
) -> None:
    async with Resolver([campaign(crm)]) as resolver:
        resolution = await resolver.resolve(Lead(campaign_id="c", external_id=contact_id))
        assert resolution.phone_number.startswith("+1202555016")
        assert resolution.source == "crm"


# -- unknown ids -------------------------------------------------------------------------


@pytest.mark.parametrize("status", [400, 404])
async def test_unknown_and_deleted_contacts_are_not_found(
    crm: RecordingTransport, fake: FakeGoHighLevel, status: int
) -> None:
    fake.not_found_status = status
    ghl = adapter(crm)
    with pytest.raises(RecordNotFound):
        await ghl.fetch_phone("noSuchContact0000001")
    assert crm.calls.last.response.status_code == status
    fake.delete(ADA)
    with pytest.raises(RecordNotFound):
        await ghl.fetch_phone(ADA)
    await ghl.aclose()


@pytest.mark.parametrize(
    ("status", "body"),
    [
        (400, {"statusCode": 400, "message": "Version header was not found"}),
        (400, {"statusCode": 400, "message": "Bad Request"}),
        (400, b"<html>bad request</html>"),
        (422, {"statusCode": 422, "message": ["contactId must be a string"]}),
    ],
    ids=["version-not-found", "plain-400", "not-json", "422"],
)
async def test_other_refusals_are_errors_not_a_missing_contact(
    crm: RecordingTransport, fake: FakeGoHighLevel, status: int, body: object
) -> None:
    if isinstance(body, bytes):
        fake.faults.append(httpx.Response(status, content=body, extensions={OFF_SPEC: True}))
    else:
        fake.faults.append(httpx.Response(status, json=body))
    ghl = adapter(crm)
    with pytest.raises(AdapterUnavailable) as raised:
        await ghl.fetch_phone(ADA)
    assert not isinstance(raised.value, AdapterRateLimited)
    assert str(status) in str(raised.value)
    await ghl.aclose()


async def test_an_answer_without_a_contact_is_not_found(
    crm: RecordingTransport, fake: FakeGoHighLevel
) -> None:
    fake.faults.append(httpx.Response(200, json={}))
    ghl = adapter(crm)
    with pytest.raises(RecordNotFound):
        await ghl.fetch_phone(ADA)
    fake.faults.append(
        httpx.Response(200, json=["not", "an", "object"], extensions={OFF_SPEC: True})
    )
    with pytest.raises(AdapterUnavailable):
        await ghl.fetch_phone(ADA)
    await ghl.aclose()


# -- limits ------------------------------------------------------------------------------


async def test_every_answer_reports_the_limits(
    crm: RecordingTransport, fake: FakeGoHighLevel
) -> None:
    ghl = adapter(crm)
    await ghl.fetch_phone(ADA)
    headers = crm.calls.last.response.headers
    assert {name: headers[name] for name in RATE_HEADERS} == {
        "x-ratelimit-limit-daily": "200000",
        "x-ratelimit-daily-remaining": "199999",
        "x-ratelimit-interval-milliseconds": "10000",
        "x-ratelimit-max": "100",
        "x-ratelimit-remaining": "99",
    }
    with pytest.raises(RecordNotFound):
        await ghl.fetch_phone("noSuchContact0000001")
    assert crm.calls.last.response.headers["x-ratelimit-remaining"] == "98"
    await ghl.aclose()


async def test_burst_limit_is_a_burst(crm: RecordingTransport, fake: FakeGoHighLevel) -> None:
    fake.burst = (2, 10.0)
    ghl = adapter(crm)
    await ghl.fetch_phone(ADA)
    await ghl.fetch_phone(ADA)
    with pytest.raises(AdapterRateLimited) as raised:
        await ghl.fetch_phone(ADA)
    assert crm.calls.last.response.status_code == 429
    assert raised.value.scope == "burst"
    # No Retry-After from GoHighLevel: the window length is the most to wait.
    assert raised.value.retry_after == 10.0
    assert len(fake.requests) == 3
    fake.burst = None
    assert (await ghl.fetch_phone(ADA)).phones  # a burst does not stop later calls
    await ghl.aclose()


async def test_burst_429_with_retry_after_uses_it(
    crm: RecordingTransport, fake: FakeGoHighLevel
) -> None:
    response = fake.rate_limited()
    response.headers["Retry-After"] = "2"
    fake.faults.append(response)
    ghl = adapter(crm)
    with pytest.raises(AdapterRateLimited) as raised:
        await ghl.fetch_phone(ADA)
    assert (raised.value.scope, raised.value.retry_after) == ("burst", 2.0)
    # A window length nobody could mean is not trusted.
    response = fake.rate_limited()
    response.headers["X-RateLimit-Interval-Milliseconds"] = "86400000"
    fake.faults.append(response)
    with pytest.raises(AdapterRateLimited) as raised:
        await ghl.fetch_phone(ADA)
    assert raised.value.retry_after is None
    await ghl.aclose()


async def test_static_token_refused_is_an_auth_error(crm: RecordingTransport) -> None:
    ghl = adapter(crm, token="pit-revoked")
    with pytest.raises(AdapterAuthError) as raised:
        await ghl.fetch_phone(ADA)
    response = crm.calls.last.response
    assert response.status_code == 401
    assert response.json()["error"] == "Unauthorized"
    assert "pit-revoked" not in str(raised.value)
    await ghl.aclose()


# -- predial check, against the fake served by uvicorn -----------------------------------------


def test_predial_check_against_the_served_fake(fake: FakeGoHighLevel, tmp_path: Path) -> None:
    settings = {"token": "${GHL_TOKEN}"}
    with served_check(
        fake, "gohighlevel", settings, env={"GHL_TOKEN": TOKEN}, directory=tmp_path
    ) as check:
        check(ADA).found("gohighlevel")
        check(DND_CALL).refused("do_not_call")
        check("noSuchContact0000001").refused("not_found")
    assert all(r.headers.get("version") == API_VERSION for r in fake.requests_to(CONTACT_PATH))
