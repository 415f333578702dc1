"""`RateLimitContract` and `OAuthAdapterContract`: what an HTTP adapter does with its
CRM's limits and OAuth, checked against your fake CRM, as pytest base classes.

`AdapterContract` checks one adapter; these build adapters with other settings (a
rate budget, OAuth credentials, a refresh-token file), so they ask for a builder
instead of an `adapter` fixture:

```python
from predial.testing import FakeOAuth, OAuthAdapterContract, RateLimitContract

class TestAcmeLimitsAndOAuth(RateLimitContract, OAuthAdapterContract):
    def make_adapter(self, fake, **settings):
        # The kit's settings win over yours: it sets `token=None` for OAuth.
        return AcmeAdapter(**{"base_url": "http://127.0.0.1:7201", "token": "k",
                              "transport": fake.transport(), **settings})

    def token_endpoint(self, **options):       # your CRM's token endpoint
        return FakeOAuth(path="/oauth/v2/token", client_auth="basic", **options)

    def spend_daily_quota(self, fake):         # the fake answers as with no quota left
        fake.daily_limit = 0

    @pytest.fixture
    def known_id(self):
        return "c-1"
```

Both need a `fake` fixture (module-level or in the class: your `FakeCrm`, holding
`known_id`) and `make_adapter(fake, **settings)`, which must wire the adapter to
`fake` (its `transport()`, or a transport that checks requests on their way to it).

Checked by `RateLimitContract`: a client-side budget (`rate_limit`) refuses the call
it would exceed without sending it; the class's documented `rate_limit` is kept by
default; the CRM's burst answer is a burst (`scope="burst"`, later calls go on); its
daily-quota answer pauses every call for `quota_cooldown` (or what the CRM said)
without calling it again. These are what `rate_limit_scope`, `retry_after` and an
`__init__` that passes settings on decide.

Checked by `OAuthAdapterContract`: lookups reach the CRM's token endpoint (your
`token_url`, `token_client_auth`, `token_params`: set `token_form` to the fields
the CRM requires) and share one refresh however many wait; an access token the CRM
refuses is refreshed and the request retried once, and a fresh token refused is
`AdapterAuthError`, not a loop; a revoked grant is `AdapterAuthError` after one
token request, with no secret in errors or `repr`; a rotated refresh token is
written to `refresh_token_file` (mode 0600) and read after a restart; with
`api_address_field`, your `on_token` follows the API address the token answer names
(only without a configured `base_url`, and only through `use_base_url`); and
`predial check` with OAuth settings from the environment against the served fake
keeps the rotated token across runs (needs the `cli` and `server` extras, and the
adapter installed: set the `entry_point` fixture to False before it is packaged).

The tests run their own event loop, so no pytest asyncio plugin is needed.
"""

from __future__ import annotations

import asyncio
import stat
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from typing import Any, ClassVar, Literal
from urllib.parse import parse_qs

import httpx
import pytest

from ..adapters import close_adapter
from ..errors import AdapterAuthError, AdapterError, AdapterRateLimited, AdapterUnavailable
from ._contract import _call, _run
from ._fake_crm import FakeOAuth

__all__ = ["OAuthAdapterContract", "RateLimitContract"]

#: Where the api-address checks say the tenant's API lives: a port nothing listens
#: on, reached only through the fake's transport.
API_ADDRESS = "http://127.0.0.1:7399"
#: An address `use_base_url` must refuse: plain HTTP to another machine.
UNUSABLE_ADDRESS = "http://crm.example.com"
#: The variables the served check passes the credentials in.
ENV_NAMES = {
    "client_id": "PREDIAL_KIT_CLIENT_ID",
    "client_secret": "PREDIAL_KIT_CLIENT_SECRET",
    "refresh_token": "PREDIAL_KIT_REFRESH_TOKEN",
    "refresh_token_file": "PREDIAL_KIT_REFRESH_TOKEN_FILE",
}


async def _closing(adapter: Any, scenario: Callable[[], Awaitable[None]]) -> None:
    try:
        await scenario()
    finally:
        await close_adapter(adapter)


async def _refusal(adapter: Any, external_id: str, signal: str) -> AdapterRateLimited:
    """The `AdapterRateLimited` a lookup must raise on the CRM's `signal`."""
    try:
        answer = await _call(adapter, external_id)
    except AdapterRateLimited as refusal:
        return refusal
    except AdapterError as error:
        raise AssertionError(
            f"the CRM's {signal} came as {error!r}, not AdapterRateLimited (rate_limit_scope)"
        ) from None
    raise AssertionError(f"the CRM's {signal} was answered {answer!r}; want AdapterRateLimited")


class _FakeCrmContract:
    """What both contracts need: a builder of adapters wired to the fake, and an id."""

    def make_adapter(self, fake: Any, **settings: Any) -> Any:
        """Your adapter, wired to `fake`, with `settings` over your defaults."""
        raise NotImplementedError(
            "define make_adapter(self, fake, **settings): your adapter with "
            "transport=fake.transport() and `settings` over your own (a dict merge)"
        )

    @pytest.fixture
    def known_id(self) -> str:
        raise NotImplementedError("define a `known_id` fixture: an id the fake has a number for")

    def _build(self, fake: Any, **settings: Any) -> Any:
        adapter = self.make_adapter(fake, **settings)
        if adapter is None:
            raise TypeError("make_adapter returned None: return the adapter it builds")
        return adapter


class RateLimitContract(_FakeCrmContract):
    """Inherit it, with a `fake` and `known_id` fixture and `make_adapter`."""

    #: How long the fake's daily-quota answer says to wait; None: it does not say,
    #: so the adapter's `quota_cooldown` is expected.
    daily_pause: ClassVar[float | None] = None

    def hit_burst_limit(self, fake: Any) -> None:
        """Make the fake answer the next request as over the CRM's burst limit."""
        fake.faults.append(fake.rate_limited())

    def spend_daily_quota(self, fake: Any) -> None:
        """Make the fake answer as the CRM does once the day's quota is spent."""
        pytest.skip("define spend_daily_quota(self, fake) to check the daily-quota pause")

    def test_client_budget_fails_fast(self, fake: Any, known_id: str) -> None:
        """`rate_limit = [2, 10]`: the call that would pass it is refused at once,
        `retry_after` within the window, and never reaches the CRM."""
        adapter = self._build(fake, rate_limit=[2, 10])

        async def scenario() -> None:
            answered = 0
            refusal: AdapterRateLimited | None = None
            for _ in range(3):  # two requests allowed: a lookup may take more than one
                sent = len(fake.requests)
                try:
                    await _call(adapter, known_id)
                except AdapterRateLimited as error:
                    refusal = error
                    break
                answered += 1
            assert refusal is not None, "rate_limit = [2, 10] let 3 lookups through"
            assert refusal.scope == "client", f"refused as {refusal!r}; want the client's budget"
            assert refusal.called is False
            assert refusal.retry_after is not None
            assert 0 < refusal.retry_after <= 10
            assert len(fake.requests) == sent, "a call over the budget reached the CRM"
            assert answered >= 1, "the first lookup was refused: is rate_limit passed on?"
            assert len(fake.requests) == 2

        _run(lambda: _closing(adapter, scenario))

    def test_documented_limit_is_kept_by_default(self, fake: Any, known_id: str) -> None:
        """The class's `rate_limit` (the CRM's documented limit) holds with no setting:
        that many lookups are answered, the next is refused without a request."""
        adapter = self._build(fake)
        limit = type(adapter).rate_limit
        if limit is None:
            pytest.skip("the adapter class sets no rate_limit")
        requests, _ = limit
        if requests > 1000:
            pytest.skip(f"rate_limit allows {requests} requests: too many to try")

        async def scenario() -> None:
            await asyncio.gather(*(_call(adapter, known_id) for _ in range(requests)))
            sent = len(fake.requests)
            with pytest.raises(AdapterRateLimited) as refused:
                await _call(adapter, known_id)
            assert refused.value.scope == "client"
            assert len(fake.requests) == sent

        _run(lambda: _closing(adapter, scenario))

    def test_burst_limit_is_a_burst(self, fake: Any, known_id: str) -> None:
        """The CRM's burst answer is `AdapterRateLimited(scope="burst")`, and the next
        lookup goes to the CRM (a burst pauses nothing)."""
        adapter = self._build(fake)

        async def scenario() -> None:
            self.hit_burst_limit(fake)
            refusal = await _refusal(adapter, known_id, "burst limit")
            assert refusal.scope == "burst", (
                f"the CRM's burst limit was read as scope {refusal.scope!r} (rate_limit_scope)"
            )
            sent = len(fake.requests)
            assert await _call(adapter, known_id) is not None
            assert len(fake.requests) > sent

        _run(lambda: _closing(adapter, scenario))

    def test_spent_daily_quota_pauses_calls(self, fake: Any, known_id: str) -> None:
        """The CRM's daily-quota answer is `AdapterRateLimited(scope="daily")` with the
        pause, and later lookups are refused without calling the CRM."""
        adapter = self._build(fake)
        self.spend_daily_quota(fake)
        expected = self.daily_pause if self.daily_pause is not None else adapter.quota_cooldown

        async def scenario() -> None:
            refusal = await _refusal(adapter, known_id, "daily-quota answer")
            assert refusal.scope == "daily", (
                f"the CRM's daily-quota answer was read as scope {refusal.scope!r} "
                "(rate_limit_scope)"
            )
            assert refusal.retry_after == expected, (
                f"paused for {refusal.retry_after} s; want {expected} (retry_after)"
            )
            sent = len(fake.requests)
            for _ in range(3):
                with pytest.raises(AdapterRateLimited) as again:
                    await _call(adapter, known_id)
                assert again.value.scope == "daily"
                assert again.value.called is False
                assert again.value.retry_after is not None
                assert 0 < again.value.retry_after <= expected
            assert len(fake.requests) == sent, "the CRM was called with its quota spent"

        _run(lambda: _closing(adapter, scenario))


class OAuthAdapterContract(_FakeCrmContract):
    """Inherit it, with a `fake` and `known_id` fixture, `make_adapter` and, unless
    your CRM's token endpoint is a plain `FakeOAuth()`, `token_endpoint`."""

    #: The grant the adapter is configured with.
    grant: ClassVar[Literal["refresh_token", "client_credentials"]] = "refresh_token"
    #: How many lookups wait on one refresh.
    concurrent_lookups: ClassVar[int] = 50
    #: Form fields the CRM's token endpoint requires (your `token_params`).
    token_form: ClassVar[Mapping[str, str]] = {}
    #: The token answer's field naming where the tenant's API lives (Salesforce's
    #: `instance_url`, Pipedrive's `api_domain`), read by your `on_token`; None
    #: when the CRM names none.
    api_address_field: ClassVar[str | None] = None

    def token_endpoint(self, **options: Any) -> FakeOAuth:
        """Your CRM's token endpoint: a `FakeOAuth` with its path, lifetimes and
        client authentication; pass `options` (`rotate=True`, ...) on."""
        return FakeOAuth(**options)

    @pytest.fixture
    def served_settings(self) -> dict[str, object]:
        """Settings besides the credentials a served campaign needs (none by default)."""
        return {}

    @pytest.fixture
    def entry_point(self) -> bool:
        """Whether the adapter is installed (the served check finds it by its name)."""
        return True

    # -- refreshing -------------------------------------------------------------------

    def test_one_refresh_serves_concurrent_lookups(self, fake: Any, known_id: str) -> None:
        """`concurrent_lookups` lookups share one token request, and again when the
        CRM refuses the token they hold; the token request is the CRM's (its path,
        client authentication and form)."""
        oauth = self._install(fake)
        adapter = self._build(fake, **self._credentials(oauth))
        lookups = self.concurrent_lookups

        async def scenario() -> None:
            try:
                answers = await asyncio.gather(*(_call(adapter, known_id) for _ in range(lookups)))
            except AdapterAuthError as error:
                raise AssertionError(
                    f"{error}: the fake's token endpoint ({oauth.path}, client credentials "
                    f"{oauth.client_auth or 'in the form or Basic'}) refused the adapter's "
                    "token request; check token_url, token_client_auth and token_params"
                ) from None
            assert all(answer is not None for answer in answers)
            assert oauth.refreshes == 1, f"{oauth.refreshes} token requests for {lookups} lookups"
            oauth.expire_all()
            await asyncio.gather(*(_call(adapter, known_id) for _ in range(lookups)))
            assert oauth.refreshes == 2, f"{oauth.refreshes - 1} refreshes after a refused token"
            assert len(self._token_requests(fake)) == 2

        _run(lambda: _closing(adapter, scenario))
        self._check_token_requests(fake)

    def test_refused_access_token_is_refreshed_and_retried_once(
        self, fake: Any, known_id: str
    ) -> None:
        """An access token the CRM stops accepting early: one refresh, and the
        refused request sent once more with the new token."""
        oauth = self._install(fake)
        adapter = self._build(fake, **self._credentials(oauth))

        async def scenario() -> None:
            await _call(adapter, known_id)
            oauth.expire_all()
            before = len(self._data_requests(fake))
            try:
                assert await _call(adapter, known_id) is not None
            except AdapterAuthError as error:
                raise AssertionError(
                    f"{error}: a refused access token was not refreshed and the request "
                    "sent again (are lookups sent through get_json or request?)"
                ) from None
            assert oauth.refreshes == 2
            sent = self._data_requests(fake)[before:]
            assert len(sent) == 2, f"{len(sent)} requests; want the refused one and one retry"
            assert sent[0].headers.get("authorization") != sent[1].headers.get("authorization")

        _run(lambda: _closing(adapter, scenario))
        self._check_token_requests(fake)

    def test_fresh_token_refused_is_an_auth_error(
        self, fake: Any, known_id: str, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """The CRM refuses every token, fresh ones too (the user lost API access):
        `AdapterAuthError` after one refresh and one retry, no more."""
        oauth = self._install(fake)
        adapter = self._build(fake, **self._credentials(oauth))

        async def scenario() -> None:
            await _call(adapter, known_id)
            monkeypatch.setattr(oauth, "valid", lambda token: False)
            before = len(self._data_requests(fake))
            with pytest.raises(AdapterAuthError):
                await _call(adapter, known_id)
            assert oauth.refreshes == 2, "want one refresh for the refused token"
            assert len(self._data_requests(fake)) - before == 2, "want one retry, no more"

        _run(lambda: _closing(adapter, scenario))

    def test_revoked_grant_is_an_auth_error_not_a_loop(self, fake: Any, known_id: str) -> None:
        """A revoked refresh token (or client, for client credentials): every lookup is
        `AdapterAuthError` after one token request, none reaches the CRM's data, and
        no secret is in an error or the adapter's repr."""
        oauth = self._install(fake)
        credentials = self._credentials(oauth)
        if self.grant == "refresh_token":
            oauth.revoke()
        else:
            oauth.client_secret = "changed-by-the-crm"
        adapter = self._build(fake, **credentials)
        secrets = [
            str(credentials[key])
            for key in ("client_secret", "refresh_token")
            if key in credentials
        ]

        async def scenario() -> None:
            results = await asyncio.gather(
                *(_call(adapter, known_id) for _ in range(20)), return_exceptions=True
            )
            for _ in range(3):  # later lookups too: remembered, not asked again
                try:
                    results.append(await _call(adapter, known_id))
                except AdapterAuthError as error:
                    results.append(error)
            wrong = [r for r in results if not isinstance(r, AdapterAuthError)]
            assert not wrong, f"a revoked grant answered {wrong[0]!r}; want AdapterAuthError"
            assert len(self._token_requests(fake)) == 1, "the token endpoint was asked again"
            assert self._data_requests(fake) == []
            shown = repr(adapter) + "".join(str(r) for r in results)
            for secret in secrets:
                assert secret not in shown, "an error or the repr shows a credential"

        _run(lambda: _closing(adapter, scenario))

    # -- rotation ---------------------------------------------------------------------

    def test_rotated_refresh_token_is_kept_across_restarts(
        self, fake: Any, known_id: str, tmp_path: Path
    ) -> None:
        """A CRM that rotates refresh tokens: each new one is written to
        `refresh_token_file` (mode 0600, no temporary file left), the configured one
        is then refused, and a restart reads the file and goes on rotating."""
        self._refresh_grant_only()
        oauth = self._install(fake, rotate=True)
        credentials = self._credentials(oauth)
        store = tmp_path / "state" / "refresh-token"
        adapter = self._build(fake, **credentials, refresh_token_file=str(store))

        async def rounds() -> None:
            seen = {credentials["refresh_token"]}
            for round_ in range(1, 4):
                oauth.expire_all()  # each round: the access token refused, one refresh
                assert await _call(adapter, known_id) is not None
                assert oauth.refreshes == round_
                assert store.exists(), "the rotated refresh token was not written"
                kept = store.read_text(encoding="utf-8").strip()
                assert kept == oauth.refresh_token, "the file holds a retired refresh token"
                assert kept not in seen, "the CRM's new refresh token was not kept"
                seen.add(kept)
                assert stat.S_IMODE(store.stat().st_mode) == 0o600
            left = {path.name for path in store.parent.iterdir()} - {store.name + ".lock"}
            assert left == {store.name}, f"files left beside the token: {sorted(left)}"

        _run(lambda: _closing(adapter, rounds))

        # The refresh token in the settings is long retired: the CRM refuses it.
        oauth.expire_all()
        stale = self._build(fake, **credentials)

        async def refused() -> None:
            with pytest.raises(AdapterAuthError):
                await _call(stale, known_id)

        _run(lambda: _closing(stale, refused))

        restarted = self._build(fake, **credentials, refresh_token_file=str(store))
        newest = oauth.refresh_token

        async def restart() -> None:
            assert await _call(restarted, known_id) is not None
            kept = store.read_text(encoding="utf-8").strip()
            assert kept == oauth.refresh_token != newest

        _run(lambda: _closing(restarted, restart))
        self._check_token_requests(fake)

    # -- the API's address ------------------------------------------------------------

    def test_api_address_from_the_token_answer_is_followed(self, fake: Any, known_id: str) -> None:
        """Without `base_url`, the API address the token answer names is where lookups go."""
        field, adapter = self._addressed(fake, API_ADDRESS, base_url=None)

        async def scenario() -> None:
            assert await _call(adapter, known_id) is not None
            sent = self._data_requests(fake)
            assert sent, "no lookup request was sent"
            targets = {(r.url.host, r.url.port) for r in sent}
            assert targets == {("127.0.0.1", 7399)}, (
                f"lookups went to {sorted(map(str, targets))}, not to the token "
                f"answer's {field} (on_token and use_base_url)"
            )
            assert adapter.base_url == API_ADDRESS

        _run(lambda: _closing(adapter, scenario))

    def test_configured_base_url_wins_over_the_token_answer(self, fake: Any, known_id: str) -> None:
        field, adapter = self._addressed(fake, API_ADDRESS)
        configured = adapter.base_url
        port = httpx.URL(configured).port

        async def scenario() -> None:
            assert await _call(adapter, known_id) is not None
            assert adapter.base_url == configured, (
                f"the token answer's {field} replaced the configured base_url"
            )
            assert all(r.url.port == port for r in self._data_requests(fake))

        _run(lambda: _closing(adapter, scenario))

    def test_unusable_api_address_is_refused(self, fake: Any, known_id: str) -> None:
        """An address a token answer must not send lookups to (plain HTTP to another
        machine) is `AdapterUnavailable`, and nothing is sent there."""
        field, adapter = self._addressed(fake, UNUSABLE_ADDRESS, base_url=None)

        async def scenario() -> None:
            with pytest.raises(AdapterUnavailable):
                await _call(adapter, known_id)
            assert self._data_requests(fake) == [], (
                f"a lookup went to {UNUSABLE_ADDRESS} (pass the token answer's {field} "
                "through use_base_url, which checks it)"
            )

        _run(lambda: _closing(adapter, scenario))

    # -- end to end -------------------------------------------------------------------

    def test_predial_check_with_oauth_keeps_the_rotated_token(
        self,
        fake: Any,
        known_id: str,
        tmp_path: Path,
        served_settings: dict[str, object],
        entry_point: bool,
    ) -> None:
        """`predial check` twice, credentials and the token file from the environment,
        against the served fake: each run refreshes with the token the last one kept,
        and prints no credential or token."""
        if not entry_point:
            pytest.skip("entry_point fixture is False: the adapter is not packaged")
        from ._check import served_check

        refresh = self.grant == "refresh_token"
        oauth = self._install(fake, rotate=True) if refresh else self._install(fake)
        credentials = self._credentials(oauth)
        probe = self._build(fake, **credentials)
        name = type(probe).name
        _run(lambda: close_adapter(probe))
        store = tmp_path / "refresh-token"
        values = {**credentials, "refresh_token_file": str(store)}
        env = {
            ENV_NAMES[key]: str(values[key]) for key in ENV_NAMES if refresh or key in credentials
        }
        settings: dict[str, object] = {
            **served_settings,
            **{key: f"${{{variable}}}" for key, variable in ENV_NAMES.items() if variable in env},
            "token_url": oauth.path,  # on the served fake, whatever the class says
        }
        with served_check(fake, name, settings, env=env, directory=tmp_path) as check:
            for round_ in (1, 2):
                run = check(known_id).found(name)
                assert oauth.refreshes == round_
                used = {
                    r.headers.get("authorization", "").removeprefix("Bearer ")
                    for r in self._data_requests(fake)
                }
                for secret in {*used, oauth.refresh_token} - {""}:
                    assert secret not in run.output, "predial check printed a token"
                if refresh:
                    assert store.exists(), "the rotated refresh token was not written"
                    assert store.read_text(encoding="utf-8").strip() == oauth.refresh_token
        self._check_token_requests(fake)

    # -- helpers ----------------------------------------------------------------------

    def _install(self, fake: Any, **options: Any) -> FakeOAuth:
        oauth = self.token_endpoint(**options)
        fake.oauth = oauth
        return oauth

    def _credentials(self, oauth: FakeOAuth) -> dict[str, Any]:
        credentials: dict[str, Any] = {
            # A builder's static token would otherwise stand beside OAuth.
            "token": None,
            "client_id": oauth.client_id,
            "client_secret": oauth.client_secret,
            # The client's own budget is not under test here (RateLimitContract's
            # business): lifted, so many lookups in a moment are not refused.
            "rate_limit": [10 * self.concurrent_lookups, 1],
        }
        if self.grant == "refresh_token":
            credentials["refresh_token"] = oauth.refresh_token
        return credentials

    def _refresh_grant_only(self) -> None:
        if self.grant != "refresh_token":
            pytest.skip("no refresh token with the client-credentials grant")

    def _addressed(self, fake: Any, address: str, **settings: Any) -> tuple[str, Any]:
        """The token answer's address field, and an adapter whose token answer names
        `address` as the API's (its token endpoint reached there too)."""
        field = self.api_address_field
        if field is None:
            pytest.skip("api_address_field is None: the token answer names no API address")
        oauth = self._install(fake)
        oauth.extra[field] = address
        credentials = self._credentials(oauth)
        return field, self._build(fake, **credentials, **settings, token_url=address + oauth.path)

    @staticmethod
    def _token_requests(fake: Any) -> list[httpx.Request]:
        path = fake.oauth.path
        return [r for r in fake.requests if r.url.path == path]

    @staticmethod
    def _data_requests(fake: Any) -> list[httpx.Request]:
        path = fake.oauth.path
        return [r for r in fake.requests if r.url.path != path]

    def _check_token_requests(self, fake: Any) -> None:
        """Every token request carried the form fields the CRM requires."""
        for request in self._token_requests(fake):
            form = parse_qs(request.content.decode())
            for key, value in self.token_form.items():
                assert form.get(key) == [value], (
                    f"the token request sent {key}={form.get(key)}; the CRM requires "
                    f"{key}={value!r} (token_params)"
                )
