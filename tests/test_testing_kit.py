"""predial.testing's own helpers: the TOML writer of served_check, and the contracts
(each of their checks fails for an adapter that breaks what it checks)."""

from __future__ import annotations

import importlib
import tomllib
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, ClassVar

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st

from predial import AdapterAuthError, AdapterRegister, hookimpl
from predial.adapters.http import HttpAdapter, RateLimitScope
from predial.testing import (
    AdapterContract,
    FakeCrm,
    FakeOAuth,
    OAuthAdapterContract,
    RateLimitContract,
    json_response,
)
from predial.testing._check import _string, _toml

pytest_plugins = ["pytester"]

scalars = st.one_of(
    st.text(), st.integers(), st.booleans(), st.floats(allow_nan=False, allow_infinity=False)
)
values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=12,
)


@given(st.text(), values)
def test_any_setting_round_trips_through_toml(key: str, value: object) -> None:
    document = f"{_string(key)} = {_toml(value)}\n"
    assert tomllib.loads(document) == {key: value}


def test_paths_are_written_as_strings(tmp_path: Path) -> None:
    assert tomllib.loads(f"p = {_toml(tmp_path / 'token')}") == {"p": str(tmp_path / "token")}


# -- the contracts can fail ---------------------------------------------------------------
#
# A well-behaved adapter of a small fake CRM passes every check of the kit; for each
# check, an adapter that breaks what it checks (the way an adapter author could) is
# run through the kit by pytester, and that check must fail.

BASE = "http://127.0.0.1:7301"
TOKEN = "kit-static-token"
TOKEN_PATH = "/oauth/v2/token"
VICTIM = "victim@example.com"


class FakeKitCrm(FakeCrm):
    """People by `ref` (`GET /v1/people?ref=...`): the CRM also finds them by `email`,
    which an id spliced into the query unescaped can reach. Its daily quota is a 403
    `QUOTA_EXHAUSTED`; its burst limit a 429 `SLOW_DOWN`."""

    def __init__(self) -> None:
        super().__init__(tokens=[TOKEN])
        self.people = {"k-1": {"phone": "+12024561111", "email": VICTIM}}
        self.quota_spent = False

    def rate_limited(self) -> httpx.Response:
        return json_response(429, {"error": "SLOW_DOWN"}, {"Retry-After": "2"})

    def route(self, request: httpx.Request) -> httpx.Response:
        if self.quota_spent:
            return json_response(403, {"error": "QUOTA_EXHAUSTED"})
        if request.method != "GET" or request.url.path != "/v1/people":
            return json_response(404, {"error": "NO_ROUTE"})
        params = request.url.params
        found = [
            person
            for ref, person in self.people.items()
            if ref == params.get("ref")
            or ("email" in params and person["email"] == params["email"])
        ]
        if not found:
            return json_response(404, {"error": "NOT_FOUND"})
        return json_response(200, {"person": found[0]})


class KitAdapter(HttpAdapter):
    """Well behaved: its token endpoint, form and client authentication are the CRM's,
    it follows `api_base` without a configured base_url, reads the 403 as the daily
    quota, and sends ids as query values."""

    name = "kit-crm"
    default_base_url = "https://api.kit-crm.example"
    token_url = TOKEN_PATH
    token_params: ClassVar[Mapping[str, str]] = {"audience": "dialer"}
    token_client_auth = "basic"
    rate_limit: ClassVar[tuple[int, float] | None] = (10, 1.0)

    def __init__(self, **settings: Any) -> None:
        self.follow = bool(settings.get("client_id")) and not settings.get("base_url")
        super().__init__(**settings)

    def on_token(self, answer: Mapping[str, Any]) -> None:
        address = answer.get("api_base")
        if self.follow and isinstance(address, str):
            self.use_base_url(address)

    def rate_limit_scope(self, response: httpx.Response) -> RateLimitScope | None:
        if response.status_code == 403 and b"QUOTA_EXHAUSTED" in response.content:
            return "daily"
        return super().rate_limit_scope(response)

    async def fetch_phone(self, external_id: str) -> str:
        data = await self.get_json("/v1/people", params={"ref": external_id})
        return str(data["person"]["phone"])


class WrongTokenPath(KitAdapter):
    name = "kit-wrong-token-path"
    token_url = "/oauth/token"


class NoTokenParams(KitAdapter):
    name = "kit-no-token-params"
    token_params: ClassVar[Mapping[str, str]] = {}


class FormClientAuth(KitAdapter):
    name = "kit-form-client-auth"
    token_client_auth = "body"


class OwnRequests(KitAdapter):
    """Sends its lookups through a client of its own: no refresh-and-retry on a 401."""

    name = "kit-own-requests"

    def __init__(self, *, transport: httpx.AsyncBaseTransport | None = None, **settings: Any):
        super().__init__(transport=transport, **settings)
        self.own = httpx.AsyncClient(transport=transport)

    async def fetch_phone(self, external_id: str) -> str:
        assert self.oauth is not None
        token = await self.oauth.token(self.own)
        response = await self.own.get(
            self.base_url + "/v1/people",
            params={"ref": external_id},
            headers={"Authorization": f"Bearer {token}"},
        )
        self.raise_for_status(response)
        return str(response.json()["person"]["phone"])

    async def aclose(self) -> None:
        await self.own.aclose()
        await super().aclose()


class RetriesAuthErrors(KitAdapter):
    name = "kit-retries-auth-errors"

    async def fetch_phone(self, external_id: str) -> str:
        for _ in range(2):
            try:
                return await super().fetch_phone(external_id)
            except AdapterAuthError:
                continue
        return await super().fetch_phone(external_id)


class SwallowsAuthErrors(KitAdapter):
    name = "kit-swallows-auth-errors"

    async def fetch_phone(self, external_id: str) -> str:
        try:
            return await super().fetch_phone(external_id)
        except AdapterAuthError:
            return ""


class DropsTokenFile(KitAdapter):
    name = "kit-drops-token-file"

    def __init__(self, *, refresh_token_file: str | None = None, **settings: Any) -> None:
        super().__init__(**settings)


class IgnoresApiBase(KitAdapter):
    name = "kit-ignores-api-base"

    def on_token(self, answer: Mapping[str, Any]) -> None:
        pass  # the API's address in the answer is not read


class FollowsEvenWhenPinned(KitAdapter):
    name = "kit-follows-even-when-pinned"

    def on_token(self, answer: Mapping[str, Any]) -> None:
        self.use_base_url(str(answer["api_base"]))


class TrustsAnyAddress(KitAdapter):
    name = "kit-trusts-any-address"

    def on_token(self, answer: Mapping[str, Any]) -> None:
        if self.follow:
            self.base_url = str(answer["api_base"])  # not through use_base_url's checks


class NoDailyScope(KitAdapter):
    name = "kit-no-daily-scope"

    def rate_limit_scope(self, response: httpx.Response) -> RateLimitScope | None:
        return HttpAdapter.rate_limit_scope(self, response)


class EveryLimitDaily(KitAdapter):
    name = "kit-every-limit-daily"

    def rate_limit_scope(self, response: httpx.Response) -> RateLimitScope | None:
        return "daily" if super().rate_limit_scope(response) else None


class DropsRateLimit(KitAdapter):
    name = "kit-drops-rate-limit"

    def __init__(self, *, rate_limit: object = None, **settings: Any) -> None:
        super().__init__(**settings)


class IgnoresDocumentedLimit(KitAdapter):
    name = "kit-ignores-documented-limit"

    def __init__(self, **settings: Any) -> None:
        super().__init__(**{"rate_limit": (1000, 1.0), **settings})


class InjectableQuery(KitAdapter):
    name = "kit-injectable-query"

    async def fetch_phone(self, external_id: str) -> str:
        response = await self.request("GET", f"/v1/people?ref={external_id}")
        return str(self.json(response)["person"]["phone"])


#: Each broken adapter, and the checks of the kit it must fail.
BREAKS: dict[type[KitAdapter], list[str]] = {
    WrongTokenPath: ["test_one_refresh_serves_concurrent_lookups"],
    NoTokenParams: ["test_one_refresh_serves_concurrent_lookups"],
    FormClientAuth: ["test_one_refresh_serves_concurrent_lookups"],
    OwnRequests: ["test_refused_access_token_is_refreshed_and_retried_once"],
    RetriesAuthErrors: ["test_fresh_token_refused_is_an_auth_error"],
    SwallowsAuthErrors: ["test_revoked_grant_is_an_auth_error_not_a_loop"],
    DropsTokenFile: [
        "test_rotated_refresh_token_is_kept_across_restarts",
        "test_predial_check_with_oauth_keeps_the_rotated_token",
    ],
    IgnoresApiBase: ["test_api_address_from_the_token_answer_is_followed"],
    FollowsEvenWhenPinned: ["test_configured_base_url_wins_over_the_token_answer"],
    TrustsAnyAddress: ["test_unusable_api_address_is_refused"],
    NoDailyScope: ["test_spent_daily_quota_pauses_calls"],
    EveryLimitDaily: ["test_burst_limit_is_a_burst"],
    DropsRateLimit: ["test_client_budget_fails_fast"],
    IgnoresDocumentedLimit: ["test_documented_limit_is_kept_by_default"],
    InjectableQuery: ["test_hostile_ids_find_no_record"],
}


@hookimpl
def register_adapters(register: AdapterRegister) -> None:
    """This module is the kit adapters' plugin (`installed` gives it an entry point),
    so `predial check` finds them by name."""
    for cls in (KitAdapter, *BREAKS):
        register(cls)


class KitContracts(AdapterContract, RateLimitContract, OAuthAdapterContract):
    """Every contract of the kit, against FakeKitCrm, with `adapter_class`."""

    adapter_class: ClassVar[type[KitAdapter]] = KitAdapter
    token_form: ClassVar[Mapping[str, str]] = {"audience": "dialer"}
    api_address_field = "api_base"

    @pytest.fixture(autouse=True)
    def installed(
        self, tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
    ) -> Iterator[None]:
        """This module installed as a plugin distribution, for the entry-point checks."""
        site = tmp_path_factory.mktemp("site")
        info = site / "predial_kit_crm-1.0.dist-info"
        info.mkdir()
        (info / "METADATA").write_text(
            "Metadata-Version: 2.1\nName: predial-kit-crm\nVersion: 1.0\n"
        )
        (info / "entry_points.txt").write_text(f"[predial]\nkit-crm = {__name__}\n")
        monkeypatch.syspath_prepend(str(site))
        yield
        importlib.invalidate_caches()

    @pytest.fixture
    def fake(self) -> FakeKitCrm:
        return FakeKitCrm()

    def make_adapter(self, fake: FakeKitCrm, **settings: Any) -> KitAdapter:
        return self.adapter_class(
            **{"base_url": BASE, "token": TOKEN, "transport": fake.transport(), **settings}
        )

    @pytest.fixture
    def known_id(self) -> str:
        return "k-1"

    def token_endpoint(self, **options: Any) -> FakeOAuth:
        return FakeOAuth(path=TOKEN_PATH, client_auth="basic", **options)

    def spend_daily_quota(self, fake: FakeKitCrm) -> None:
        fake.quota_spent = True


class TestTheKitPassesAWellBehavedAdapter(KitContracts):
    pass


#: The contract of each broken adapter, for pytester (not collected here).
BROKEN_CONTRACTS = {
    cls.__name__: type(f"Test{cls.__name__}", (KitContracts,), {"adapter_class": cls})
    for cls in BREAKS
}


def test_each_check_of_the_kit_fails_for_an_adapter_that_breaks_it(
    pytester: pytest.Pytester,
) -> None:
    pytester.makeini("[pytest]\nfilterwarnings = error\n")
    lines = [f"from {__name__} import BROKEN_CONTRACTS"]
    lines += [f"Test{name} = BROKEN_CONTRACTS[{name!r}]" for name in BROKEN_CONTRACTS]
    pytester.makepyfile(test_broken="\n".join(lines) + "\n")
    expected = {
        f"Test{cls.__name__}::{check}" for cls, checks in BREAKS.items() for check in checks
    }
    selection = " or ".join(f"({case.replace('::', ' and ')})" for case in sorted(expected))
    # No asyncio plugin: the contracts must run without one, as documented.
    run = pytester.inline_run("-p", "no:asyncio", "-p", "no:cacheprovider", "-k", selection)
    calls = {
        report.nodeid.split("::", 1)[1]: report
        for report in run.getreports("pytest_runtest_logreport")
        if report.when == "call"
    }
    assert set(calls) == expected, "a check did not run (an error in its setup?)"
    passed = sorted(case for case, report in calls.items() if not report.failed)
    assert not passed, f"checks that passed for an adapter that breaks them: {passed}"
    # Failed by a check of the kit, saying what is wrong, not by an error of its own.
    crashed = sorted(
        case
        for case, report in calls.items()
        if not any(word in str(report.longrepr) for word in ("AssertionError", "DID NOT RAISE"))
    )
    assert not crashed, f"checks that crashed instead of failing: {crashed}"
