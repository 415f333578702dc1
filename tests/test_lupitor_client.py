"""The Leads API client against responses shaped like the documented ones (respx)."""

from __future__ import annotations

import json

import httpx
import pytest
import respx

from predial import (
    ConfigurationError,
    LeadAlreadyExists,
    LupitorAuthError,
    LupitorForbidden,
    LupitorNotFound,
    LupitorUnavailable,
    LupitorValidationError,
)
from predial.lupitor import (
    AsyncLupitorClient,
    LupitorClient,
    RetryPolicy,
    SlidingWindowLimiter,
    Waiting,
)
from predial.lupitor._client import _Sleep

BASE = "http://127.0.0.1:8080"
LEADS = f"{BASE}/api/v1/leads"
KEY = "sk_test_abc123xyz"


class FakeTime:
    """A clock the client's sleeps advance, so waits are measured, not slept."""

    def __init__(self) -> None:
        self.now = 1_000.0
        self.slept: list[float] = []

    def clock(self) -> float:
        return self.now

    def wall(self) -> float:
        return 1_700_000_000.0 + self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


def ok(data: object, status: int = 200) -> httpx.Response:
    return httpx.Response(status, json={"success": True, "data": data, "error": None})


def fail(status: int, message: str, headers: dict[str, str] | None = None) -> httpx.Response:
    body = {"success": False, "data": None, "error": message}
    return httpx.Response(status, json=body, headers=headers)


@pytest.fixture
def fake_time() -> FakeTime:
    return FakeTime()


@pytest.fixture
def client(fake_time: FakeTime) -> LupitorClient:
    return LupitorClient(
        KEY,
        base_url=BASE,
        clock=fake_time.clock,
        wall_clock=fake_time.wall,
        sleep=fake_time.sleep,
        retry=RetryPolicy(attempts=3, initial=0.5, maximum=1),
    )


@respx.mock
def test_create_sends_the_key_and_reads_lead_id(client: LupitorClient) -> None:
    """x-api-key header, the API's JSON body, `leadId` in the answer."""
    route = respx.post(LEADS).mock(return_value=ok({"leadId": "jh7abc123xyz"}, 201))
    created = client.create_lead({"campaignId": "c", "externalId": "CRM_001"})
    assert created.lead_id == "jh7abc123xyz"
    request = route.calls.last.request
    assert request.headers["x-api-key"] == KEY
    assert json.loads(request.content) == {
        "campaignId": "c",
        "externalId": "CRM_001",
        "priority": 0,
    }


@respx.mock
def test_older_create_answer_with_id(client: LupitorClient) -> None:
    """The older docs answer `id` rather than `leadId`."""
    respx.post(LEADS).mock(return_value=ok({"id": "old123"}, 201))
    assert (
        client.create_lead({"campaignId": "c", "phoneNumber": "+12024561111"}).lead_id == "old123"
    )


@respx.mock
@pytest.mark.parametrize("field", ["skippedIdentifiers", "skippedPhones"])
def test_bulk_reads_both_documented_shapes(client: LupitorClient, field: str) -> None:
    """skippedIdentifiers (newer) and skippedPhones (older) land in one field."""
    respx.post(f"{LEADS}/bulk").mock(
        return_value=ok({"created": 1, "skipped": 1, "createdIds": ["a1"], field: ["+12024561111"]})
    )
    result = client.create_leads_bulk(
        "c", [{"phoneNumber": "+12024561111"}, {"phoneNumber": "+12024561414"}]
    )
    assert (result.created, result.skipped) == (1, 1)
    assert result.skipped_identifiers == ("+12024561111",)


@respx.mock
def test_bulk_body_has_campaign_once(client: LupitorClient) -> None:
    """campaignId at the top, not repeated in each lead."""
    route = respx.post(f"{LEADS}/bulk").mock(return_value=ok({"createdIds": ["x"]}))
    client.create_leads_bulk("cmp", [{"externalId": "E1"}])
    body = json.loads(route.calls.last.request.content)
    assert body == {"campaignId": "cmp", "leads": [{"externalId": "E1", "priority": 0}]}


def test_bulk_over_1000_is_refused_before_sending(client: LupitorClient) -> None:
    """The documented cap is checked client-side."""
    with pytest.raises(ValueError, match="1000"):
        client.create_leads_bulk("c", [{"externalId": str(i)} for i in range(1001)])


@respx.mock
@pytest.mark.parametrize(
    ("status", "message", "error_type"),
    [
        (401, "Missing API key", LupitorAuthError),
        (401, "Invalid or inactive API key", LupitorAuthError),
        (403, "Forbidden", LupitorForbidden),
        (404, "Campaign not found or access denied", LupitorNotFound),
        (400, "campaignId is required", LupitorValidationError),
        (
            400,
            "leads[3]: At least one of phoneNumber or externalId is required",
            LupitorValidationError,
        ),
        (400, "Lead already exists", LeadAlreadyExists),
    ],
)
def test_documented_errors_map_to_types(
    client: LupitorClient, status: int, message: str, error_type: type[Exception]
) -> None:
    """Each documented error is its own type, keeping status and the server's message."""
    respx.post(LEADS).mock(return_value=fail(status, message))
    with pytest.raises(error_type) as caught:
        client.create_lead({"campaignId": "c", "externalId": "E"})
    assert (caught.value.status, caught.value.message) == (status, message)
    assert KEY not in str(caught.value)


@respx.mock
def test_429_waits_as_retry_after_says(client: LupitorClient, fake_time: FakeTime) -> None:
    """A 429 with Retry-After: 7 waits 7 s, then succeeds."""
    respx.post(LEADS).mock(
        side_effect=[
            fail(429, "Rate limit exceeded. Please try again later.", {"Retry-After": "7"}),
            ok({"leadId": "a"}),
        ]
    )
    assert client.create_lead({"campaignId": "c", "externalId": "E"}).lead_id == "a"
    assert sum(fake_time.slept) == pytest.approx(7)


@respx.mock
def test_429_without_retry_after_reads_the_reset_header(
    client: LupitorClient, fake_time: FakeTime
) -> None:
    """X-RateLimit-Reset (unix seconds) tells how long to wait."""
    reset = str(fake_time.wall() + 12)
    respx.post(LEADS).mock(
        side_effect=[
            fail(429, "Rate limit exceeded.", {"X-RateLimit-Reset": reset}),
            ok({"leadId": "a"}),
        ]
    )
    client.create_lead({"campaignId": "c", "externalId": "E"})
    assert sum(fake_time.slept) == pytest.approx(12)


@respx.mock
def test_5xx_is_retried_with_backoff(client: LupitorClient, fake_time: FakeTime) -> None:
    """500, 503, then success: three calls, growing jittered waits."""
    route = respx.post(f"{LEADS}/bulk").mock(
        side_effect=[
            fail(500, "Internal server error"),
            fail(503, "unavailable"),
            ok({"createdIds": ["a"]}),
        ]
    )
    result = client.create_leads_bulk("c", [{"externalId": "E"}])
    assert result.created == 1
    assert route.call_count == 3
    assert len(fake_time.slept) == 2
    assert result.retried  # an earlier attempt may have landed


@respx.mock
def test_retries_give_up_with_a_typed_error(client: LupitorClient) -> None:
    """A server that stays down: LupitorUnavailable after `attempts` tries."""
    route = respx.post(LEADS).mock(return_value=fail(502, "Bad gateway"))
    with pytest.raises(LupitorUnavailable, match="Bad gateway"):
        client.create_lead({"campaignId": "c", "externalId": "E"})
    assert route.call_count == 3


@respx.mock
def test_timeouts_and_dropped_connections_are_retried(client: LupitorClient) -> None:
    """Transport errors are retried like 5xx."""
    respx.post(LEADS).mock(
        side_effect=[
            httpx.ReadTimeout("slow"),
            httpx.RemoteProtocolError("dropped"),
            ok({"leadId": "a"}),
        ]
    )
    assert client.create_lead({"campaignId": "c", "externalId": "E"}).lead_id == "a"


@respx.mock
def test_retried_create_meeting_already_exists_is_already_present(client: LupitorClient) -> None:
    """The first answer was lost after commit; the resend's 'already exists' is not a failure."""
    respx.post(LEADS).mock(side_effect=[fail(502, "Bad gateway"), fail(400, "Lead already exists")])
    created = client.create_lead({"campaignId": "c", "externalId": "E"})
    assert (created.already_present, created.retried) == (True, True)


@respx.mock
def test_first_attempt_already_exists_raises_unless_exist_ok(client: LupitorClient) -> None:
    """Without a lost answer, a duplicate is the documented error (or a flag with exist_ok)."""
    respx.post(LEADS).mock(return_value=fail(400, "Lead already exists"))
    with pytest.raises(LeadAlreadyExists):
        client.create_lead({"campaignId": "c", "externalId": "E"})
    assert client.create_lead({"campaignId": "c", "externalId": "E"}, exist_ok=True).already_present


@respx.mock
def test_list_follows_the_cursor(client: LupitorClient) -> None:
    """Pages are followed until hasMore is false."""
    lead = {
        "_id": "1",
        "campaignId": "c",
        "externalId": "A",
        "status": "raw",
        "_creationTime": 1703520000000,
    }
    route = respx.get(LEADS).mock(
        side_effect=[
            ok({"leads": [lead], "count": 1, "cursor": "eyJwIjoxfQ==", "hasMore": True}),
            ok({"leads": [{**lead, "_id": "2"}], "count": 1, "cursor": None, "hasMore": False}),
        ]
    )
    ids = [stored.id for stored in client.list_leads("c", status="raw")]
    assert ids == ["1", "2"]
    assert route.calls[1].request.url.params["cursor"] == "eyJwIjoxfQ=="
    assert route.calls[0].request.url.params["status"] == "raw"


@respx.mock
def test_delete_by_phone_encodes_the_plus(client: LupitorClient) -> None:
    """`+` in a query value is sent as %2B, as the docs ask."""
    route = respx.delete(LEADS).mock(return_value=ok({"deleted": True}))
    assert client.delete_lead("c", phone_number="+12024561111")
    assert "phoneNumber=%2B12024561111" in str(route.calls.last.request.url)


@respx.mock
def test_bulk_delete(client: LupitorClient) -> None:
    """bulk-delete reads deleted/notFound and the identifier lists."""
    respx.post(f"{LEADS}/bulk-delete").mock(
        return_value=ok(
            {"deleted": 1, "notFound": 1, "deletedIdentifiers": ["A"], "notFoundIdentifiers": ["B"]}
        )
    )
    result = client.delete_leads_bulk("c", [{"externalId": "A"}, {"externalId": "B"}])
    assert (result.deleted, result.not_found_identifiers) == (1, ("B",))


@respx.mock
def test_records_alias_and_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """LUPITOR_API_KEY / LUPITOR_API_URL configure the client; /records is the alias."""
    monkeypatch.setenv("LUPITOR_API_KEY", KEY)
    monkeypatch.setenv("LUPITOR_API_URL", "https://acme.lupitor.com/")
    route = respx.post("https://acme.lupitor.com/api/v1/records").mock(
        return_value=ok({"leadId": "x"})
    )
    with LupitorClient(resource="records") as client:
        client.create_lead({"campaignId": "c", "externalId": "E"})
        assert KEY not in repr(client)
    assert route.called


def test_missing_key_is_a_configuration_error(monkeypatch: pytest.MonkeyPatch) -> None:
    """No key anywhere: say where to put it."""
    monkeypatch.delenv("LUPITOR_API_KEY", raising=False)
    with pytest.raises(ConfigurationError, match="LUPITOR_API_KEY"):
        LupitorClient()


@pytest.mark.parametrize("blank", [" ", "\n", " \t "])
def test_a_key_of_blanks_is_missing(monkeypatch: pytest.MonkeyPatch, blank: str) -> None:
    """A key that is only blanks (an empty line pasted) is no key, not a 401 later."""
    monkeypatch.setenv("LUPITOR_API_KEY", blank)
    with pytest.raises(ConfigurationError, match="^no Lupitor API key: pass api_key or set"):
        LupitorClient()
    with pytest.raises(ConfigurationError, match="^no Lupitor API key"):
        LupitorClient(blank)


@respx.mock
def test_giving_up_says_the_cause_first(client: LupitorClient) -> None:
    """What a report groups by: the cause and the attempts, then the request."""
    respx.post(f"{LEADS}/bulk").mock(side_effect=httpx.ConnectError("refused"))
    with pytest.raises(LupitorUnavailable) as caught:
        client.create_leads_bulk("c", [{"externalId": "E"}])
    assert str(caught.value) == "ConnectError after 3 attempts (POST /api/v1/leads/bulk)"
    respx.post(LEADS).mock(return_value=fail(500, "Internal server error"))
    with pytest.raises(LupitorUnavailable) as caught:
        client.create_lead({"campaignId": "c", "externalId": "E"})
    assert str(caught.value) == "500 Internal server error after 3 attempts"


@respx.mock
def test_bulk_limit_never_exceeds_10_per_minute(client: LupitorClient, fake_time: FakeTime) -> None:
    """11 bulk calls: the 11th waits until the first leaves the 60 s window."""
    sent_at: list[float] = []

    def record(request: httpx.Request) -> httpx.Response:
        sent_at.append(fake_time.now)
        return ok({"createdIds": ["x"]})

    respx.post(f"{LEADS}/bulk").mock(side_effect=record)
    for index in range(21):
        client.create_leads_bulk("c", [{"externalId": str(index)}])
    for start in sent_at:
        in_window = [t for t in sent_at if start <= t < start + 60]
        assert len(in_window) <= 10
    assert sent_at[10] - sent_at[0] >= 60


def test_limiter_is_lowered_by_server_headers() -> None:
    """X-RateLimit-Limit below ours replaces it; Remaining 0 holds until Reset."""
    now = [0.0]
    limiter = SlidingWindowLimiter(100, 60, clock=lambda: now[0], wall_clock=lambda: 5_000.0)
    limiter.observe({"x-ratelimit-limit": "16", "x-ratelimit-remaining": "3"})
    assert limiter.limit == 16
    limiter.observe(
        {"x-ratelimit-limit": "16", "x-ratelimit-remaining": "0", "x-ratelimit-reset": "5030"}
    )
    assert limiter.reserve() == pytest.approx(30)


@respx.mock
async def test_async_client_does_the_same() -> None:
    """The async client shares the plan: retries, then the answer."""
    slept: list[float] = []

    async def sleep(seconds: float) -> None:
        slept.append(seconds)

    respx.post(f"{LEADS}/bulk").mock(
        side_effect=[fail(500, "boom"), ok({"createdIds": ["a"], "skippedIdentifiers": []})]
    )
    async with AsyncLupitorClient(KEY, base_url=BASE, sleep=sleep) as client:
        result = await client.create_leads_bulk("c", [{"externalId": "E"}])
    assert result.created == 1
    assert len(slept) == 1


def test_key_with_a_stray_character_is_a_configuration_error() -> None:
    """A key with an inner control character fails at once, without quoting the key."""
    with pytest.raises(ConfigurationError) as caught:
        LupitorClient("sk_live_SECRET\r123", base_url=BASE)
    assert "SECRET" not in str(caught.value)
    assert LupitorClient("sk_live_SECRET123\n", base_url=BASE).base_url.endswith("/api/v1")


@respx.mock
def test_garbage_and_millisecond_reset_headers_do_not_break_waits(
    client: LupitorClient, fake_time: FakeTime
) -> None:
    """An unreadable Retry-After falls back; a millisecond X-RateLimit-Reset is read as such."""
    reset_ms = str(int((fake_time.wall() + 5) * 1000))
    respx.post(LEADS).mock(
        side_effect=[
            fail(429, "Rate limit exceeded.", {"Retry-After": "whenever"}),
            fail(429, "Rate limit exceeded.", {"X-RateLimit-Reset": reset_ms}),
            ok({"leadId": "a"}),
        ]
    )
    assert client.create_lead({"campaignId": "c", "externalId": "E"}).lead_id == "a"
    assert sum(fake_time.slept) < 10


def test_release_gives_back_only_its_own_slot() -> None:
    """A failed connect returns its slot, not another caller's newer one."""
    now = [0.0]
    limiter = SlidingWindowLimiter(2, 1.0, clock=lambda: now[0])
    _, first = limiter.acquire()
    now[0] = 0.5
    _, second = limiter.acquire()
    assert first is not None
    limiter.release(first)
    now[0] = 0.6
    assert limiter.acquire()[1] is not None  # the freed slot
    assert limiter.reserve() > 0  # still two in the window: second and the new one
    assert second is not None


# -- issue 13: the waits are seen while they last and counted after --------------------


@respx.mock
def test_a_429_wait_is_seen_while_it_lasts_and_counted(fake_time: FakeTime) -> None:
    """During the Retry-After wait, `waiting()` says a 429 and how long; listeners
    hear it start and end; `stats` counts the 429s and the seconds waited."""
    seen: list[Waiting | None] = []
    client = LupitorClient(
        KEY,
        base_url=BASE,
        clock=fake_time.clock,
        wall_clock=fake_time.wall,
        sleep=lambda seconds: (seen.append(client.waiting()), fake_time.sleep(seconds))[1],
    )
    heard: list[Waiting | None] = []
    client.add_wait_listener(lambda: heard.append(client.waiting()))
    limited = {"Retry-After": "7", "X-RateLimit-Remaining": "0"}
    respx.post(LEADS).mock(
        side_effect=[
            fail(429, "Rate limit exceeded.", limited),
            fail(429, "Rate limit exceeded.", {"Retry-After": "5"}),
            ok({"leadId": "a"}),
        ]
    )
    before = client.stats
    client.create_lead({"campaignId": "c", "externalId": "E"})
    assert seen == [Waiting(7.0, "429"), Waiting(5.0, "429")]
    assert heard == [Waiting(7.0, "429"), None, Waiting(5.0, "429"), None]
    met = client.stats - before
    assert (met.answered_429, met.retries) == (2, 0)
    assert met.waited_429 == pytest.approx(12)
    assert client.waiting() is None


@respx.mock
def test_retries_are_counted_with_their_cause(client: LupitorClient, fake_time: FakeTime) -> None:
    causes: list[str | None] = []
    client.add_wait_listener(lambda: causes.append(w.cause if (w := client.waiting()) else None))
    respx.post(f"{LEADS}/bulk").mock(
        side_effect=[fail(500, "Internal server error"), httpx.ConnectError("refused"), ok({})]
    )
    client.create_leads_bulk("c", [{"externalId": "E"}])
    assert [cause for cause in causes if cause] == ["500 Internal server error", "ConnectError"]
    stats = client.stats
    assert (stats.answered_429, stats.retries) == (0, 2)
    assert stats.waited_retry == pytest.approx(sum(fake_time.slept))


def test_the_rate_limits_own_wait_is_not_a_429(fake_time: FakeTime) -> None:
    """Waiting for a slot of the client's own window is "limit", not "429"."""
    limiter = SlidingWindowLimiter(1, 60.0, fake_time.clock, fake_time.wall)
    limiter.acquire()
    assert limiter.acquire()[1] is None
    assert not limiter.held_by_429()
    limiter.hold(5)
    assert limiter.held_by_429()
    fake_time.now += 5
    assert not limiter.held_by_429()


async def test_overlapping_waits_count_once() -> None:
    """Two requests waiting out one 429 at the same time: the seconds are counted
    once (the time something waited), not twice."""
    clock = FakeTime()
    client = AsyncLupitorClient(KEY, base_url=BASE, clock=clock.clock)
    core = client._core
    first = core.waits.begin(_Sleep(10.0, "429"))
    clock.now += 4
    second = core.waits.begin(_Sleep(10.0, "429"))
    clock.now += 6
    core.waits.end(first)
    clock.now += 4
    core.waits.end(second)
    assert client.stats.waited_429 == pytest.approx(14)
    await client.aclose()
