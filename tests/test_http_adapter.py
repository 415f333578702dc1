"""The HTTP adapter base: safe paths, error mapping, auth and OAuth, caps and budgets."""

from __future__ import annotations

import asyncio
import base64
import logging
from typing import Any, ClassVar

import httpx
import pytest
import respx

from predial import (
    AdapterAuthError,
    AdapterRateLimited,
    AdapterUnavailable,
    CrmContact,
    CrmPhone,
    RecordNotFound,
)
from predial import hookimpl as predial_hookimpl
from predial.adapters.http import HttpAdapter, RefreshTokenFile, retry_after_seconds, safe_path

BASE = "http://127.0.0.1:8765"
HOSTILE = [
    "../admin",
    "a/b?c=d#e",
    "%2e%2e%2f",
    "' OR Name != '",
    "\r\nX-Injected: 1",
    "ünï©ødé",
    "x" * 10_000,
]


class Acme(HttpAdapter):
    name = "acme"
    default_base_url = BASE

    def __init__(self, **settings: Any) -> None:
        # respx intercepts httpx's own transports, not the adapter's (aiohttp): unless
        # a test names one, requests go to respx's router through a mock transport.
        settings.setdefault("transport", httpx.MockTransport(respx.mock.async_handler))
        super().__init__(**settings)

    async def fetch_phone(self, external_id: str) -> CrmContact:
        data = await self.get_json("/v1/contacts/{}", external_id, params={"fields": "phone"})
        return CrmContact(phones=[CrmPhone(data["phone"], "main", True)])


def contact(phone: str = "+12024561111") -> httpx.Response:
    return httpx.Response(200, json={"phone": phone})


@pytest.mark.parametrize("external_id", HOSTILE)
def test_safe_path_keeps_ids_in_one_segment(external_id: str) -> None:
    """Whatever the id, it is one segment: no '/', '?', '#', '%2e' or CR/LF survives raw."""
    path = safe_path("/v1/contacts/{}", external_id)
    segment = path.removeprefix("/v1/contacts/")
    for character in ("/", "?", "#", "\r", "\n"):
        assert character not in segment
    assert httpx.URL(BASE + path).path.startswith("/v1/contacts/")


@pytest.mark.parametrize("external_id", ["", ".", ".."])
def test_dot_segments_are_not_ids(external_id: str) -> None:
    """'.' and '..' would walk the path: they are never sent."""
    with pytest.raises(RecordNotFound):
        safe_path("/v1/contacts/{}", external_id)


@respx.mock
@pytest.mark.parametrize("external_id", HOSTILE)
async def test_hostile_ids_reach_only_the_contact_path(external_id: str) -> None:
    """No request goes to another path, query or header."""
    route = respx.get(url__startswith=f"{BASE}/v1/contacts/").mock(return_value=contact())
    adapter = Acme(token="t0k3n")
    await adapter.fetch_phone(external_id)
    request = route.calls.last.request
    raw_path = request.url.raw_path.decode().split("?")[0]
    assert raw_path.count("/") == 3
    assert raw_path.startswith("/v1/contacts/")
    assert dict(request.url.params) == {"fields": "phone"}
    assert "x-injected" not in {name.lower() for name in request.headers}
    await adapter.aclose()


@respx.mock
@pytest.mark.parametrize(
    ("status", "headers", "error", "retry_after"),
    [
        (404, {}, RecordNotFound, None),
        (410, {}, RecordNotFound, None),
        (401, {}, AdapterAuthError, None),
        (403, {}, AdapterAuthError, None),
        (429, {"Retry-After": "12"}, AdapterUnavailable, 12.0),
        (503, {"Retry-After": "3"}, AdapterUnavailable, 3.0),
        (500, {}, AdapterUnavailable, None),
    ],
)
async def test_statuses_map_to_adapter_errors(
    status: int, headers: dict[str, str], error: type[Exception], retry_after: float | None
) -> None:
    """404/410 not found, 401/403 auth, 429/5xx unavailable with retry_after."""
    respx.get(f"{BASE}/v1/contacts/1").mock(return_value=httpx.Response(status, headers=headers))
    adapter = Acme(token="t0k3n")
    with pytest.raises(error) as caught:
        await adapter.fetch_phone("1")
    assert getattr(caught.value, "retry_after", None) == retry_after
    assert "t0k3n" not in str(caught.value)
    await adapter.aclose()


@respx.mock
async def test_transport_errors_are_unavailable() -> None:
    """Timeouts and refused connections: AdapterUnavailable, no secret in the text."""
    respx.get(f"{BASE}/v1/contacts/1").mock(side_effect=httpx.ConnectTimeout("slow"))
    respx.get(f"{BASE}/v1/contacts/2").mock(side_effect=httpx.ConnectError("refused"))
    adapter = Acme(token="t0k3n")
    for external_id in ("1", "2"):
        with pytest.raises(AdapterUnavailable):
            await adapter.fetch_phone(external_id)
    await adapter.aclose()


def test_retry_after_reads_seconds_and_http_dates() -> None:
    """Both forms of Retry-After."""
    assert retry_after_seconds("7") == 7
    assert retry_after_seconds("Wed, 21 Oct 2015 07:28:00 GMT", now=lambda: 1445412470.0) == 10
    assert retry_after_seconds("soon") is None


@respx.mock
async def test_static_token_and_basic_auth_headers() -> None:
    """`token` is a bearer header; `username`/`password` is Basic."""
    route = respx.get(f"{BASE}/v1/contacts/1").mock(return_value=contact())
    bearer, basic = Acme(token="abc"), Acme(username="u", password="p")
    await bearer.fetch_phone("1")
    assert route.calls.last.request.headers["authorization"] == "Bearer abc"
    await basic.fetch_phone("1")
    assert (
        route.calls.last.request.headers["authorization"]
        == "Basic " + base64.b64encode(b"u:p").decode()
    )
    assert "abc" not in repr(bearer)
    await bearer.aclose()
    await basic.aclose()


@respx.mock
async def test_response_size_is_capped() -> None:
    """A huge answer is refused, not buffered."""

    class Small(Acme):
        max_response_bytes = 1000

    respx.get(f"{BASE}/v1/contacts/1").mock(return_value=httpx.Response(200, content=b"x" * 5000))
    adapter = Small(token="t")
    with pytest.raises(AdapterUnavailable, match="exceeds"):
        await adapter.fetch_phone("1")
    await adapter.aclose()


@respx.mock
async def test_rate_budget_fails_fast_with_retry_after() -> None:
    """Over the tenant's documented limit: no request, a retry_after instead of a 429."""

    class Limited(Acme):
        rate_limit = (2, 10.0)

    route = respx.get(f"{BASE}/v1/contacts/1").mock(return_value=contact())
    adapter = Limited(token="t")
    await adapter.fetch_phone("1")
    await adapter.fetch_phone("1")
    with pytest.raises(AdapterUnavailable) as caught:
        await adapter.fetch_phone("1")
    assert route.call_count == 2
    assert 0 < (caught.value.retry_after or 0) <= 10
    await adapter.aclose()


class OAuthAcme(Acme):
    token_url = f"{BASE}/oauth/token"


def token_answer(access: str, refresh: str | None = None, expires_in: int = 3600) -> httpx.Response:
    body: dict[str, Any] = {
        "access_token": access,
        "expires_in": expires_in,
        "token_type": "Bearer",
    }
    if refresh:
        body["refresh_token"] = refresh
    return httpx.Response(200, json=body)


@respx.mock
async def test_expired_token_is_refreshed_once_for_50_concurrent_lookups() -> None:
    """50 lookups at once with no valid token: one refresh, every lookup answered."""
    issued = iter(range(1000))

    async def slow_token(request: httpx.Request) -> httpx.Response:
        await asyncio.sleep(0.05)
        return token_answer(f"access-{next(issued)}", "refresh-1")

    token_route = respx.post(f"{BASE}/oauth/token").mock(side_effect=slow_token)
    respx.get(url__startswith=f"{BASE}/v1/contacts/").mock(return_value=contact())
    adapter = OAuthAcme(client_id="id", client_secret="secret", refresh_token="refresh-1")
    results = await asyncio.gather(*(adapter.fetch_phone(str(i)) for i in range(50)))
    assert len(results) == 50
    assert token_route.call_count == 1
    await adapter.aclose()


@respx.mock
async def test_rotated_refresh_token_is_persisted() -> None:
    """GoHighLevel rotates refresh tokens on every refresh: the hook gets the new one."""
    saved: list[str] = []

    async def persist(token: str) -> None:
        saved.append(token)

    respx.post(f"{BASE}/oauth/token").mock(return_value=token_answer("access", "refresh-2"))
    respx.get(f"{BASE}/v1/contacts/1").mock(return_value=contact())
    adapter = OAuthAcme(
        client_id="id", client_secret="secret", refresh_token="refresh-1", on_refresh_token=persist
    )
    await adapter.fetch_phone("1")
    assert saved == ["refresh-2"]
    form = respx.calls[0].request.content.decode()
    assert "grant_type=refresh_token" in form
    assert "refresh_token=refresh-1" in form
    await adapter.aclose()


@respx.mock
async def test_a_rotated_refresh_token_with_nowhere_to_go_is_warned_about_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Without refresh_token_file or on_refresh_token a rotated token lives in memory
    only (a restart then sends the retired one): said once, without the token."""
    issued = iter(range(1000))
    respx.post(f"{BASE}/oauth/token").mock(
        side_effect=lambda request: token_answer("access", f"refresh-{next(issued) + 2}", 0)
    )
    respx.get(url__startswith=f"{BASE}/v1/contacts/").mock(return_value=contact())
    adapter = OAuthAcme(client_id="id", client_secret="secret", refresh_token="refresh-1")
    with caplog.at_level(logging.WARNING, logger="predial.adapters._oauth"):
        for index in range(3):  # expires_in 0: a refresh, and a rotation, each time
            await adapter.fetch_phone(str(index))
    warned = [r.getMessage() for r in caplog.records if "rotated" in r.getMessage()]
    assert warned == [
        "the CRM rotated the OAuth refresh token; it is kept in memory only "
        "(set refresh_token_file to keep it across restarts)"
    ]
    await adapter.aclose()

    caplog.clear()
    kept = OAuthAcme(
        client_id="id", client_secret="secret", refresh_token="r", on_refresh_token=lambda t: None
    )
    with caplog.at_level(logging.WARNING, logger="predial.adapters._oauth"):
        await kept.fetch_phone("1")
    assert not [r for r in caplog.records if "rotated" in r.getMessage()]
    await kept.aclose()


@respx.mock
async def test_revoked_refresh_token_is_an_auth_error_not_a_loop() -> None:
    """invalid_grant: AdapterAuthError, and later lookups do not hammer the token endpoint."""
    token_route = respx.post(f"{BASE}/oauth/token").mock(
        return_value=httpx.Response(400, json={"error": "invalid_grant"})
    )
    adapter = OAuthAcme(client_id="id", client_secret="secret", refresh_token="revoked")
    for _ in range(3):
        with pytest.raises(AdapterAuthError):
            await adapter.fetch_phone("1")
    assert token_route.call_count == 1
    await adapter.aclose()


@respx.mock
async def test_401_refreshes_once_and_retries_once() -> None:
    """A token revoked early: one refresh, one retry, then the answer."""
    respx.post(f"{BASE}/oauth/token").mock(side_effect=[token_answer("old"), token_answer("new")])
    contacts = respx.get(f"{BASE}/v1/contacts/1").mock(side_effect=[httpx.Response(401), contact()])
    adapter = OAuthAcme(client_id="id", client_secret="secret")
    result = await adapter.fetch_phone("1")
    assert result.phones[0].value == "+12024561111"
    assert contacts.calls[1].request.headers["authorization"] == "Bearer new"
    form = respx.calls[0].request.content.decode()
    assert "grant_type=client_credentials" in form
    await adapter.aclose()


async def test_requests_carry_predial_headers_and_the_timeout() -> None:
    seen: list[httpx.Request] = []

    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return contact()

    adapter = Acme(token="t", timeout=1.5, transport=httpx.MockTransport(answer))
    await adapter.fetch_phone("1")
    request = seen[0]
    assert request.headers["user-agent"].startswith("predial/")
    assert request.headers["accept"] == "application/json"
    assert request.extensions["timeout"] == httpx.Timeout(1.5).as_dict()
    await adapter.aclose()


# -- limit scopes, settings, hooks ---------------------------------------------------------


@respx.mock
async def test_daily_remaining_zero_pauses_calls_until_retry_after() -> None:
    route = respx.get(url__startswith=f"{BASE}/v1/contacts/")
    route.side_effect = [
        httpx.Response(429, headers={"X-RateLimit-Daily-Remaining": "0", "Retry-After": "0.2"}),
        contact(),
    ]
    adapter = Acme(token="t0k3n")
    with pytest.raises(AdapterRateLimited) as raised:
        await adapter.fetch_phone("1")
    assert (raised.value.scope, raised.value.retry_after) == ("daily", 0.2)
    with pytest.raises(AdapterRateLimited) as paused:
        await adapter.fetch_phone("1")
    assert paused.value.scope == "daily"
    assert 0 < (paused.value.retry_after or 0) <= 0.2
    assert route.call_count == 1  # paused: the CRM was not asked
    await asyncio.sleep(0.25)
    assert (await adapter.fetch_phone("1")).phones
    await adapter.aclose()


@respx.mock
async def test_a_burst_429_does_not_pause() -> None:
    route = respx.get(url__startswith=f"{BASE}/v1/contacts/")
    route.side_effect = [
        httpx.Response(429, headers={"X-RateLimit-Daily-Remaining": "17"}),
        contact(),
    ]
    adapter = Acme(token="t0k3n")
    with pytest.raises(AdapterRateLimited) as raised:
        await adapter.fetch_phone("1")
    assert raised.value.scope == "burst"
    assert (await adapter.fetch_phone("1")).phones
    await adapter.aclose()


@respx.mock
async def test_provider_signal_and_reset_header_hooks() -> None:
    class Strict(Acme):
        def rate_limit_scope(self, response: httpx.Response) -> Any:
            if response.status_code == 403 and b"LIMIT" in response.content:
                return "daily"
            return super().rate_limit_scope(response)

        def retry_after(self, response: httpx.Response) -> float | None:
            return (
                super().retry_after(response) or float(response.headers.get("x-reset", 0)) or None
            )

    respx.get(url__startswith=f"{BASE}/v1/contacts/").side_effect = [
        httpx.Response(429, headers={"x-reset": "4"}),
        httpx.Response(403, json=[{"errorCode": "REQUEST_LIMIT_EXCEEDED"}]),
        httpx.Response(403, json=[{"errorCode": "INSUFFICIENT_ACCESS"}]),
    ]
    adapter = Strict(token="t0k3n")
    with pytest.raises(AdapterRateLimited) as burst:
        await adapter.fetch_phone("1")
    assert (burst.value.scope, burst.value.retry_after) == ("burst", 4.0)
    with pytest.raises(AdapterRateLimited) as daily:
        await adapter.fetch_phone("1")
    assert (daily.value.scope, daily.value.retry_after) == ("daily", Strict.quota_cooldown)
    adapter._tenant.quota_until = 0.0  # as if the cooldown had passed
    with pytest.raises(AdapterAuthError):
        await adapter.fetch_phone("1")
    await adapter.aclose()


@pytest.mark.parametrize("value", [[0, 10], [10, 0], [1.5, 10], "100/10", [1, 2, 3]])
def test_rate_limit_setting_is_checked(value: Any) -> None:
    with pytest.raises(ValueError, match=r"rate_limit must be \[requests, seconds\]"):
        Acme(token="t", rate_limit=value)


def test_oauth_needs_both_client_credentials() -> None:
    with pytest.raises(ValueError, match="client_id and client_secret"):
        Acme(client_id="only-the-id", refresh_token="r")


@respx.mock
async def test_token_params_are_sent_with_the_refresh() -> None:
    class Extra(Acme):
        token_params: ClassVar[dict[str, str]] = {"user_type": "Location"}

    token = respx.post(f"{BASE}/oauth/token").mock(
        return_value=httpx.Response(200, json={"access_token": "a1", "expires_in": 60})
    )
    respx.get(url__startswith=f"{BASE}/v1/contacts/").mock(return_value=contact())
    adapter = Extra(client_id="cid", client_secret="cs", refresh_token="r0")
    await adapter.fetch_phone("1")
    form = token.calls.last.request.content.decode()
    assert "user_type=Location" in form
    assert "grant_type=refresh_token" in form
    await adapter.aclose()


def test_refresh_token_file_is_written_atomically(tmp_path: Any) -> None:
    store = RefreshTokenFile(tmp_path / "nested" / "token")
    assert store.read() is None
    store.write("r-1")
    store.write("r-2")
    assert store.read() == "r-2"
    assert (store.path.stat().st_mode & 0o777) == 0o600
    assert [p.name for p in store.path.parent.iterdir()] == ["token"]  # no temporary left
    assert "r-2" not in repr(store)


def test_with_transport_keeps_the_settings() -> None:
    adapter = Acme(token="t0k3n", timeout=2.0)
    twin = adapter.with_transport(httpx.MockTransport(lambda request: contact()))
    assert twin.auth_headers() == adapter.auth_headers()
    assert "t0k3n" not in repr(twin)


@respx.mock
async def test_token_client_auth_basic_sends_credentials_in_a_header() -> None:
    from predial.testing import FakeOAuth

    class BasicClient(Acme):
        token_client_auth = "basic"

    oauth = FakeOAuth("c id", "s:cret", "r0", client_auth="basic")
    respx.post(f"{BASE}/oauth/token").mock(side_effect=oauth.handle)
    respx.get(url__startswith=f"{BASE}/v1/contacts/").mock(return_value=contact())
    adapter = BasicClient(client_id="c id", client_secret="s:cret", refresh_token="r0")
    assert (await adapter.fetch_phone("1")).phones
    token_request = next(
        call.request for call in respx.calls if call.request.url.path == "/oauth/token"
    )
    assert "client_secret" not in token_request.content.decode()
    assert token_request.headers["authorization"].startswith("Basic ")
    assert oauth.refreshes == 1
    await adapter.aclose()
    # The same fake refuses form credentials when it wants Basic.
    body_adapter = Acme(client_id="c id", client_secret="s:cret", refresh_token="r0")
    with pytest.raises(AdapterAuthError):
        await body_adapter.fetch_phone("1")
    await body_adapter.aclose()


@respx.mock
async def test_a_refused_request_is_not_retried_within_the_dial() -> None:
    """400/422 come back the same however often they are asked: one call, then the
    dialer is told to retry later (some CRMs block clients that repeat failures)."""
    from predial import (
        AdapterRequestRejected,
        Campaign,
        Lead,
        Resolver,
        RetrySettings,
        Unresolvable,
    )

    route = respx.get(url__startswith=f"{BASE}/v1/contacts/").mock(
        return_value=httpx.Response(400, json={"message": "bad request"})
    )

    class Plugin:
        @predial_hookimpl
        def register_adapters(self, register: Any) -> None:
            register(Acme)

    campaign = Campaign("c", "acme", {"token": "t0k3n"}, default_region="US")
    resolver = Resolver(
        [campaign], plugins=[Plugin()], load_entrypoints=False, retry=RetrySettings(attempts=3)
    )
    async with resolver:
        with pytest.raises(Unresolvable) as refused:
            await resolver.resolve(Lead(campaign_id="c", external_id="1"))
    assert (refused.value.reason, refused.value.retryable) == ("adapter_error", True)
    assert route.call_count == 1
    assert resolver.stats().adapter_errors["rejected"] == 1
    with pytest.raises(AdapterRequestRejected):
        await Acme(token="t").fetch_phone("1")


@respx.mock
async def test_a_proxys_407_is_a_retryable_proxy_problem_not_the_crms_refusal() -> None:
    """Behind an HTTP_PROXY the proxy's `407` reaches the adapter as an answer: it is
    the operator's to fix (retry later), not the CRM refusing the lead (skip)."""
    respx.get(f"{BASE}/v1/contacts/1").mock(return_value=httpx.Response(407))
    adapter = Acme(token="t")
    with pytest.raises(AdapterUnavailable, match=r"the proxy refused its credentials \(407\)"):
        await adapter.fetch_phone("1")
    await adapter.aclose()


def test_an_id_that_is_not_unicode_text_is_no_record() -> None:
    """A lone surrogate cannot be percent-encoded: no CRM record has that id (a typed
    refusal, not a UnicodeEncodeError from the encoder)."""
    with pytest.raises(RecordNotFound, match="not valid Unicode text"):
        safe_path("/contacts/{}", "\ud800")
