"""predial-pipedrive against FakePipedrive (Pipedrive's persons API v2 as documented)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from predial_pipedrive import PipedriveAdapter
from predial_pipedrive.fake import PERSONS_PATH, FakePipedrive

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
    HOSTILE_IDS,
    AdapterContract,
    FakeOAuth,
    OAuthAdapterContract,
    RateLimitContract,
    RecordingTransport,
    served_check,
)

BASE = "http://127.0.0.1:7002"
TOKEN = "pd-api-token-0123456789abcdef"
FIELD = "a1b2c3d4e5f60718293a4b5c6d7e8f9012345678"


class Clock:
    """A clock the test moves, so the fake's 2-second window is deterministic."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def fake(clock: Clock) -> FakePipedrive:
    fake = FakePipedrive(tokens=[TOKEN], clock=clock)
    fake.add_person(
        101,
        phones=[
            {"value": "(202) 456-1111", "label": "home", "primary": False},
            {"value": "+1 202 555 0123", "label": "work", "primary": True},
            {"value": "202-555-0188", "label": "mobile", "primary": False},
        ],
    )
    fake.add_person(
        102,
        phones=[
            {"value": "", "label": "work", "primary": True},
            {"value": "(202) 555-0142", "label": "home", "primary": False},
            {"value": "202 555 0199", "label": "mobile", "primary": False},
        ],
    )
    fake.add_person(103, phones=[{"value": "+12025550177", "label": "work", "primary": True}])
    fake.add_person(104, phones=[], custom_fields={FIELD: "+12025550166", "other": "x"})
    return fake


@pytest.fixture
def crm(fake: FakePipedrive) -> RecordingTransport:
    """The fake as Pipedrive, every exchange recorded."""
    return RecordingTransport(fake.handler)


def adapter(transport: httpx.AsyncBaseTransport | None, **settings: Any) -> PipedriveAdapter:
    return PipedriveAdapter(
        **{"base_url": BASE, "token": TOKEN, "transport": transport, **settings}
    )


def campaign(crm: RecordingTransport, **options: Any) -> Campaign:
    settings = {"base_url": BASE, "token": TOKEN, "transport": crm}
    return Campaign("c", "pipedrive", settings, default_region="US", **options)


class TestContract(AdapterContract, RateLimitContract, OAuthAdapterContract):
    """predial's contracts: shape, errors, injection, limits, OAuth."""

    # Malformed ids are refused before any request: the injection check needs a
    # well-formed probe to see where ids go.
    probe_id = "4242"
    api_address_field = "api_domain"

    def make_adapter(self, fake: FakePipedrive, **settings: Any) -> PipedriveAdapter:
        return adapter(fake.transport(), **settings)

    @pytest.fixture
    def fake(self, fake: FakePipedrive) -> FakePipedrive:
        # The test clock stands still: one burst window for the whole test, which
        # 50 lookups sharing a refresh would overrun.
        fake.burst_limit = 1000
        return fake

    @pytest.fixture
    def known_id(self) -> str:
        return "101"

    @pytest.fixture
    def unknown_id(self) -> str:
        # Well-formed, so the fake's 404 is what is checked, not the local refusal.
        return "999999"

    def token_endpoint(self, **options: Any) -> FakeOAuth:
        # Pipedrive wants the client's credentials as HTTP Basic, not in the form.
        return FakeOAuth(expires_in=3599, client_auth="basic", **options)

    def spend_daily_quota(self, fake: FakePipedrive) -> None:
        fake.daily_budget = 0


# -- requests and answers ---------------------------------------------------------------


async def test_reads_the_person_with_the_token_header(crm: RecordingTransport) -> None:
    pipedrive = adapter(crm)
    contact = await pipedrive.fetch_phone("101")
    request = crm.calls.last.request
    assert request.url.raw_path == b"/api/v2/persons/101"
    assert request.headers["x-api-token"] == TOKEN
    assert "authorization" not in request.headers
    assert contact.phones == [
        CrmPhone("(202) 456-1111", "home", primary=False),
        CrmPhone("+1 202 555 0123", "work", primary=True),
        CrmPhone("202-555-0188", "mobile", primary=False),
    ]
    assert contact.state == "active"
    await pipedrive.aclose()


async def test_the_token_never_goes_in_a_url(crm: RecordingTransport, fake: FakePipedrive) -> None:
    pipedrive = adapter(crm, custom_phone_fields=[FIELD])
    await pipedrive.fetch_phone("101")
    with pytest.raises(RecordNotFound):
        await pipedrive.fetch_phone("999")
    assert len(fake.requests) == 2
    for request in fake.requests:
        assert "api_token" not in request.url.params
        assert TOKEN not in str(request.url)
        assert request.headers["x-api-token"] == TOKEN
    await pipedrive.aclose()


async def test_empty_values_are_skipped(crm: RecordingTransport) -> None:
    pipedrive = adapter(crm)
    contact = await pipedrive.fetch_phone("102")
    assert [phone.value for phone in contact.phones] == ["(202) 555-0142", "202 555 0199"]
    assert not any(phone.primary for phone in contact.phones)
    await pipedrive.aclose()


async def test_primary_then_labels_through_the_resolver(crm: RecordingTransport) -> None:
    async with Resolver([campaign(crm)]) as resolver:
        # The primary (work) phone wins over the mobile one the labels prefer.
        primary = await resolver.resolve(Lead(campaign_id="c", external_id="101"))
        assert primary.phone_number == "+12025550123"
        # The primary entry is empty: by label, mobile before home.
        by_label = await resolver.resolve(Lead(campaign_id="c", external_id="102"))
        assert by_label.phone_number == "+12025550199"


async def test_label_preference_of_the_campaign_applies(crm: RecordingTransport) -> None:
    async with Resolver([campaign(crm, label_preference=["home", "mobile"])]) as resolver:
        result = await resolver.resolve(Lead(campaign_id="c", external_id="102"))
        assert result.phone_number == "+12025550142"


async def test_deleted_person_is_not_dialled(crm: RecordingTransport, fake: FakePipedrive) -> None:
    fake.delete(103)
    pipedrive = adapter(crm)
    contact = await pipedrive.fetch_phone("103")
    assert contact.state == "deleted"
    assert contact.phones  # Pipedrive still shows the number; the state forbids it
    await pipedrive.aclose()
    async with Resolver([campaign(crm)]) as resolver:
        with pytest.raises(Unresolvable) as refused:
            await resolver.resolve(Lead(campaign_id="c", external_id="103"))
        assert refused.value.reason == "record_deleted"
        assert refused.value.retryable is False


async def test_unknown_and_purged_persons_are_not_found(
    crm: RecordingTransport, fake: FakePipedrive
) -> None:
    pipedrive = adapter(crm)
    with pytest.raises(RecordNotFound):
        await pipedrive.fetch_phone("999")
    assert crm.calls.last.response.status_code == 404
    assert crm.calls.last.response.json()["success"] is False
    fake.purge(103)
    with pytest.raises(RecordNotFound):
        await pipedrive.fetch_phone("103")
    await pipedrive.aclose()


async def test_a_person_answer_without_data_is_not_found(
    crm: RecordingTransport, fake: FakePipedrive
) -> None:
    fake.faults.append(httpx.Response(200, json={"success": True, "data": None}))
    pipedrive = adapter(crm)
    with pytest.raises(RecordNotFound):
        await pipedrive.fetch_phone("5")
    await pipedrive.aclose()


async def test_bad_token_is_an_auth_error(crm: RecordingTransport) -> None:
    pipedrive = adapter(crm, token="not-the-token")
    with pytest.raises(AdapterAuthError):
        await pipedrive.fetch_phone("101")
    answer = crm.calls.last.response
    assert answer.status_code == 401
    assert answer.json()["error"] == "unauthorized access"
    await pipedrive.aclose()


async def test_the_api_token_is_never_a_bearer_token(crm: RecordingTransport) -> None:
    """The fake refuses an API token sent as Bearer, as Pipedrive does: this
    adapter's requests get through only because they use x-api-token."""
    async with httpx.AsyncClient(base_url=BASE, transport=crm) as client:
        answer = await client.get(
            "/api/v2/persons/101", headers={"Authorization": f"Bearer {TOKEN}"}
        )
    assert answer.status_code == 401


async def test_the_fake_refuses_what_pipedrive_refuses(crm: RecordingTransport) -> None:
    """The fake's own contract: what the adapter never sends still gets Pipedrive's
    answers, so a regression in the adapter shows up as the real API would show it."""
    async with httpx.AsyncClient(
        base_url=BASE, headers={"x-api-token": TOKEN}, transport=crm
    ) as client:
        malformed = await client.get("/api/v2/persons/abc")
        assert malformed.status_code == 400
        assert malformed.json()["success"] is False
        too_many = ",".join(f"k{index}" for index in range(16))
        fields = await client.get("/api/v2/persons/101", params={"custom_fields": too_many})
        assert fields.status_code == 400
        other = await client.get("/api/v2/persons/101/deals")
        assert other.status_code == 404
        assert {"x-ratelimit-limit", "x-ratelimit-remaining", "x-ratelimit-reset"} <= set(
            other.headers
        )
    # The legacy query parameter still works on Pipedrive (which is why the adapter's
    # requests are checked for it, not merely refused).
    async with httpx.AsyncClient(base_url=BASE, transport=crm) as client:
        legacy = await client.get("/api/v2/persons/101", params={"api_token": TOKEN})
        assert legacy.status_code == 200
        assert legacy.json()["data"]["id"] == 101


# -- custom phone fields -----------------------------------------------------------------


async def test_custom_phone_fields_are_asked_for_and_read(crm: RecordingTransport) -> None:
    pipedrive = adapter(crm, custom_phone_fields=[FIELD, "missing_key"])
    contact = await pipedrive.fetch_phone("104")
    request = crm.calls.last.request
    assert request.url.params["custom_fields"] == f"{FIELD},missing_key"
    assert contact.phones == [CrmPhone("+12025550166", FIELD)]
    # A custom field's value may come wrapped; and it ranks after the own phones.
    assert pipedrive._contact(
        {
            "data": {
                "phones": [{"value": "+12025550101", "label": "work", "primary": True}],
                "custom_fields": {FIELD: {"value": "+12025550102"}},
            }
        }
    ).phones == [CrmPhone("+12025550101", "work", True), CrmPhone("+12025550102", FIELD)]
    await pipedrive.aclose()


async def test_custom_fields_not_configured_are_ignored(crm: RecordingTransport) -> None:
    pipedrive = adapter(crm)
    contact = await pipedrive.fetch_phone("104")
    assert "custom_fields" not in crm.calls.last.request.url.params
    assert contact.phones == []
    await pipedrive.aclose()


@pytest.mark.parametrize(
    "fields",
    [
        "a1b2c3",  # a string, not a list
        [f"k{index}" for index in range(16)],  # over Pipedrive's 15
        ["a,b"],  # would split into two keys
        ["a&api_token=x"],
        [""],
        [7],
    ],
    ids=["string", "sixteen", "comma", "ampersand", "empty", "int"],
)
def test_custom_phone_fields_are_checked(fields: object) -> None:
    with pytest.raises(ValueError, match="custom_phone_fields"):
        PipedriveAdapter(token=TOKEN, custom_phone_fields=fields)  # type: ignore[arg-type]


# -- ids and injection ---------------------------------------------------------------------

MALFORMED_IDS = (
    "",
    "0",
    "-1",
    "+42",
    "042",
    "1.5",
    "1e3",
    "0x2a",
    " 42",
    "42 ",
    "42\n",
    "４２",  # fullwidth digits
    "9" * 20,
    str(2**63),
    "abc",
    "42?x=1",
    "42/../1",
    "42#frag",
    "42%2F1",
)


@pytest.mark.parametrize("external_id", HOSTILE_IDS + MALFORMED_IDS, ids=lambda v: repr(v[:12]))
async def test_hostile_and_malformed_ids_are_never_sent(
    crm: RecordingTransport, fake: FakePipedrive, external_id: str
) -> None:
    pipedrive = adapter(crm)
    with pytest.raises(RecordNotFound) as refused:
        await pipedrive.fetch_phone(external_id)
    assert fake.requests == []
    assert crm.calls.call_count == 0
    if len(external_id) > 3:
        assert external_id not in str(refused.value)
    await pipedrive.aclose()


async def test_the_largest_id_is_one_path_segment(crm: RecordingTransport) -> None:
    pipedrive = adapter(crm, custom_phone_fields=[FIELD])
    largest = str(2**63 - 1)
    with pytest.raises(RecordNotFound):
        await pipedrive.fetch_phone(largest)
    request = crm.calls.last.request
    assert request.url.raw_path.split(b"?")[0] == PERSONS_PATH.encode() + largest.encode()
    assert set(request.url.params) == {"custom_fields"}
    with httpx.Client() as plain:
        defaults = {"host", *plain.headers}
    assert set(request.headers) - defaults == {"x-api-token"}
    await pipedrive.aclose()


# -- limits -----------------------------------------------------------------------------------


async def test_burst_limit_gives_retry_after_from_the_reset_header(
    crm: RecordingTransport, fake: FakePipedrive, clock: Clock
) -> None:
    fake.burst_limit = 2
    pipedrive = adapter(crm)
    await pipedrive.fetch_phone("101")
    await pipedrive.fetch_phone("101")
    assert crm.calls.last.response.headers["x-ratelimit-remaining"] == "0"
    with pytest.raises(AdapterRateLimited) as raised:
        await pipedrive.fetch_phone("101")
    answer = crm.calls.last.response
    assert answer.status_code == 429
    assert "retry-after" not in answer.headers
    assert answer.headers["x-ratelimit-reset"] == "2"
    assert raised.value.scope == "burst"
    assert raised.value.retry_after == 2.0
    clock.now += raised.value.retry_after
    assert (await pipedrive.fetch_phone("101")).phones  # the window has passed
    await pipedrive.aclose()


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({"x-ratelimit-reset": "5"}, 5.0),
        ({"x-ratelimit-reset": "5", "Retry-After": "7"}, 7.0),
        ({"x-ratelimit-reset": "soon"}, None),
        ({"x-ratelimit-reset": "-3"}, 0.0),
        ({}, None),
    ],
    ids=["reset", "retry-after-first", "unreadable", "negative", "none"],
)
async def test_burst_429_retry_after(
    crm: RecordingTransport, fake: FakePipedrive, headers: dict[str, str], expected: float | None
) -> None:
    fake.faults.append(httpx.Response(429, json={"success": False}, headers=headers))
    pipedrive = adapter(crm)
    with pytest.raises(AdapterRateLimited) as raised:
        await pipedrive.fetch_phone("101")
    assert raised.value.scope == "burst"
    assert raised.value.retry_after == expected
    await pipedrive.aclose()


async def test_a_reset_given_as_unix_time_is_read_as_one(
    crm: RecordingTransport, fake: FakePipedrive
) -> None:
    reset = str(int(time.time()) + 30)
    fake.faults.append(httpx.Response(429, headers={"x-ratelimit-reset": reset}))
    pipedrive = adapter(crm)
    with pytest.raises(AdapterRateLimited) as raised:
        await pipedrive.fetch_phone("101")
    assert 28 <= (raised.value.retry_after or 0) <= 30
    await pipedrive.aclose()


async def test_reset_header_is_not_a_retry_after_for_5xx(
    crm: RecordingTransport, fake: FakePipedrive
) -> None:
    fake.faults.append(httpx.Response(503, headers={"x-ratelimit-reset": "2"}))
    pipedrive = adapter(crm)
    with pytest.raises(AdapterUnavailable) as raised:
        await pipedrive.fetch_phone("101")
    assert not isinstance(raised.value, AdapterRateLimited)
    assert raised.value.retry_after is None
    await pipedrive.aclose()


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({"x-daily-ratelimit-token-remaining": "0", "Retry-After": "2"}, 900.0),
        ({"x-daily-ratelimit-token-remaining": "0", "Retry-After": "7200"}, 7200.0),
        ({"x-daily-requests-left": "0"}, 900.0),
        ({"x-daily-ratelimit-token-remaining": "0", "x-ratelimit-reset": "2"}, 900.0),
    ],
    ids=["short-retry-after", "long-retry-after", "legacy-header", "burst-reset-ignored"],
)
async def test_daily_budget_signals(
    crm: RecordingTransport, fake: FakePipedrive, headers: dict[str, str], expected: float
) -> None:
    fake.faults.append(httpx.Response(429, headers=headers))
    pipedrive = adapter(crm)
    with pytest.raises(AdapterRateLimited) as raised:
        await pipedrive.fetch_phone("101")
    assert raised.value.scope == "daily"
    assert raised.value.retry_after == expected
    await pipedrive.aclose()


async def test_budget_left_is_still_a_burst(crm: RecordingTransport, fake: FakePipedrive) -> None:
    fake.faults.append(httpx.Response(429, headers={"x-daily-ratelimit-token-remaining": "12"}))
    pipedrive = adapter(crm)
    with pytest.raises(AdapterRateLimited) as raised:
        await pipedrive.fetch_phone("101")
    assert raised.value.scope == "burst"
    assert (await pipedrive.fetch_phone("101")).phones
    await pipedrive.aclose()


# -- OAuth -----------------------------------------------------------------------------------


def test_oauth_settings_are_checked() -> None:
    with pytest.raises(ValueError, match="not both"):
        adapter(None, client_id="cid", client_secret="csecret", refresh_token="r")
    assert PipedriveAdapter(token=TOKEN).base_url == "https://api.pipedrive.com"
    oauth = PipedriveAdapter(
        base_url="https://acme.pipedrive.com",
        client_id="cid",
        client_secret="csecret",
        refresh_token="r",
    )
    assert oauth.oauth is not None
    assert oauth.oauth.token_url == "https://oauth.pipedrive.com/oauth/token"
    assert "csecret" not in repr(oauth)
    assert "csecret" not in repr(oauth.oauth)


async def test_oauth_sends_the_access_token_as_bearer_only(
    crm: RecordingTransport, fake: FakePipedrive
) -> None:
    fake.oauth = FakeOAuth(client_auth="basic")
    pipedrive = adapter(
        crm,
        token=None,
        client_id="client-id",
        client_secret="client-secret",
        refresh_token="refresh-0",
    )
    await pipedrive.fetch_phone("101")
    (person,) = fake.requests_to(PERSONS_PATH)
    assert person.headers["authorization"] == "Bearer access-1"
    assert "x-api-token" not in person.headers
    await pipedrive.aclose()


# -- predial check, against the fake served by uvicorn -----------------------------------------


def test_predial_check_against_the_served_fake(fake: FakePipedrive, tmp_path: Path) -> None:
    fake.delete(103)
    settings = {"token": "${PIPEDRIVE_TOKEN}"}
    env = {"PIPEDRIVE_TOKEN": TOKEN}
    with served_check(fake, "pipedrive", settings, env=env, directory=tmp_path) as check:
        found = check("101").found("pipedrive")
        # The primary phone (masked in the output), not the mobile one the labels prefer.
        assert found.trace["phoneNumber"].endswith("0123")
        check("103").refused("record_deleted")
        sent = len(fake.requests)
        check("../101").refused("not_found")
        assert len(fake.requests) == sent
    assert all(r.headers.get("x-api-token") == TOKEN for r in fake.requests)
