"""`AdapterContract`: the checks every CRM adapter must pass, as a pytest base class.

Subclass it in your plugin's tests and give it two fixtures: an `adapter` wired
to a fake of your CRM, and a `known_id` the fake holds a dialable number for.

```python
from predial.testing import AdapterContract

class TestAcmeContract(AdapterContract):
    @pytest.fixture
    def adapter(self, fake_acme):
        return AcmeAdapter(base_url="http://acme.test", token="t", transport=fake_acme.transport())

    @pytest.fixture
    def known_id(self):
        return "1001"
```

Checked: the class is a valid adapter (name, `fetch_phone` shape); the known id
gives a number the phone policy accepts; an unknown id gives `None` or
`RecordNotFound`; importing the adapter's module opens no network connection; the
adapter is discoverable through its `predial` entry point. For adapters built on
`HttpAdapter`, also: outages, 429s, refused credentials and dropped connections
map to the right errors, and hostile external ids (`../admin`, `a/b?c=d#e`,
CR/LF, 10 KB strings, ...) never change the request's path, query or headers. For
every adapter, each hostile id is, to the fake, an id it does not have.
If the adapter has `fetch_phones`, its answer for a known and an unknown id is
checked too.

Combined with `RateLimitContract` or `OAuthAdapterContract`, which ask for
`make_adapter(fake, **settings)` instead, the `adapter` fixture defaults to
`make_adapter(fake)`. Override `unknown_id`, `policy`, `entry_point` (False for an
adapter that is not packaged yet) or `hostile_ids` to adjust. The tests run their own event loop, so
no pytest asyncio plugin is needed; fixtures must be function-scoped (the default).
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import os
import subprocess
import sys
import textwrap
from collections.abc import Callable, Coroutine, Mapping
from typing import Any, ClassVar, TypeVar, cast
from urllib.parse import unquote

import httpx
import pytest

from .._config import is_secret_setting
from .._phone import PhonePolicy
from .._plugins import load_plugins
from .._selection import DEFAULT_LABEL_PREFERENCE, interpret
from ..adapters import adapter_problems, close_adapter
from ..adapters.http import HttpAdapter
from ..errors import (
    AdapterAuthError,
    AdapterError,
    AdapterRateLimited,
    AdapterUnavailable,
    RecordNotFound,
)

__all__ = ["HOSTILE_IDS", "AdapterContract"]

T = TypeVar("T")

#: External ids that try to reach another path, query or header.
HOSTILE_IDS: tuple[str, ...] = (
    "../admin",
    "a/b?c=d#e",
    "%2e%2e%2f",
    "' OR Name != '",
    "a&email=victim@example.com",
    "x=y+z %26",
    "\r\nX-Injected: 1",
    "ünï©ødé-号码",
    "x" * 10_000,
)

#: A harmless id whose place in the request shows where ids go.
PROBE_ID = "predialprobe7"


def _run(make: Callable[[], Coroutine[Any, Any, T]]) -> T:
    # A loop per check: the contract must not depend on a pytest asyncio plugin.
    return asyncio.run(make())


async def _call(adapter: Any, external_id: str) -> Any:
    result = adapter.fetch_phone(external_id)
    if inspect.isawaitable(result):
        result = await result
    return result


class _Recorder:
    """A transport that records every request and answers each with `answer`."""

    def __init__(self, answer: Callable[[httpx.Request], httpx.Response]) -> None:
        self.requests: list[httpx.Request] = []
        self._answer = answer

    def handle(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        return self._answer(request)


def _not_found(request: httpx.Request) -> httpx.Response:
    return httpx.Response(404, json={"message": "not found"})


class AdapterContract:
    """Inherit it in a test class and provide the `adapter` and `known_id` fixtures."""

    #: The ids the injection check tries; extend it with your CRM's own traps.
    hostile_ids: ClassVar[tuple[str, ...]] = HOSTILE_IDS
    #: A well-formed id the injection check sends first, to see where ids go. Set
    #: it to one your adapter accepts if it refuses malformed ids without a request.
    probe_id: ClassVar[str] = PROBE_ID

    @pytest.fixture
    def adapter(self, request: pytest.FixtureRequest) -> Any:
        """Yours, wired to a fake; by default `make_adapter(fake)`, when the class has
        `make_adapter` (from `RateLimitContract` or `OAuthAdapterContract`)."""
        make = getattr(self, "make_adapter", None)
        if make is None:
            raise NotImplementedError("define an `adapter` fixture: your adapter, wired to a fake")
        return make(request.getfixturevalue("fake"))

    @pytest.fixture
    def known_id(self) -> str:
        raise NotImplementedError("define a `known_id` fixture: an id the fake has a number for")

    @pytest.fixture
    def unknown_id(self) -> str:
        return "predial-contract-no-such-record"

    @pytest.fixture
    def policy(self) -> PhonePolicy:
        return PhonePolicy(default_region="US")

    @pytest.fixture
    def entry_point(self) -> bool:
        """Whether the adapter must be discoverable through a `predial` entry point."""
        return True

    # -- shape ------------------------------------------------------------------------

    def test_is_an_adapter_class(self, adapter: Any) -> None:
        """A lowercase-slug `name` and a `fetch_phone(external_id)` method."""
        assert adapter_problems(type(adapter)) == []

    def test_repr_hides_secrets(self, adapter: Any) -> None:
        text = repr(adapter)
        for key, value in getattr(adapter, "_init_kwargs", {}).items():
            # Values under 6 characters would match by chance ("t" is in "http").
            if isinstance(value, str) and len(value) >= 6 and is_secret_setting(key):
                assert value not in text, f"repr() shows the {key} setting"

    # -- answers ---------------------------------------------------------------------

    def test_known_id_gives_an_accepted_number(
        self, adapter: Any, known_id: str, policy: PhonePolicy
    ) -> None:
        raw = _run(lambda: self._fetch_and_close(adapter, known_id))
        outcome = interpret(raw, policy, DEFAULT_LABEL_PREFERENCE)
        assert outcome.phone_number is not None, (
            f"fetch_phone({known_id!r}) returned {raw!r}, which gives no dialable number "
            f"({outcome.reason}: {outcome.detail})"
        )

    def test_unknown_id_gives_none_or_record_not_found(self, adapter: Any, unknown_id: str) -> None:
        try:
            raw = _run(lambda: self._fetch_and_close(adapter, unknown_id))
        except RecordNotFound:
            return
        assert raw is None, f"fetch_phone({unknown_id!r}) returned {raw!r}; want None"

    def test_batch_read_agrees_with_single_reads(
        self, adapter: Any, known_id: str, unknown_id: str, policy: PhonePolicy
    ) -> None:
        """`fetch_phones`, when the adapter has it: known ids answered, unknown ones
        absent or None."""
        if not callable(getattr(adapter, "fetch_phones", None)):
            pytest.skip("the adapter has no fetch_phones")

        async def both() -> Mapping[str, Any]:
            try:
                answer = adapter.fetch_phones([known_id, unknown_id])
                if inspect.isawaitable(answer):
                    answer = await answer
                return cast(Mapping[str, Any], answer)
            finally:
                await close_adapter(adapter)

        answers = _run(both)
        assert isinstance(answers, Mapping), "fetch_phones must return a mapping by id"
        assert interpret(answers[known_id], policy, DEFAULT_LABEL_PREFERENCE).phone_number
        unknown = answers.get(unknown_id)
        assert unknown is None or isinstance(unknown, RecordNotFound), (
            f"fetch_phones answered {unknown!r} for an unknown id; leave it out, or answer "
            "None (no number) or a RecordNotFound instance"
        )

    # -- behaviour -------------------------------------------------------------------

    def test_import_opens_no_connection(self, adapter: Any) -> None:
        """Importing the adapter's module must not touch the network (it runs in every
        process that loads plugins, `predial plugins` included)."""
        module = type(adapter).__module__
        code = textwrap.dedent(
            f"""
            import socket, sys
            def refuse(*args, **kwargs):
                raise SystemExit("network I/O at import: " + repr(args[:2]))
            socket.socket.connect = refuse
            socket.socket.connect_ex = refuse
            socket.create_connection = refuse
            socket.getaddrinfo = refuse
            import {module}
            """
        )
        # The test's own import path, so an adapter defined beside its tests imports.
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, sys.path))}
        result = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, env=env
        )
        assert result.returncode == 0, result.stderr[-2000:]

    def test_discoverable_through_its_entry_point(self, adapter: Any, entry_point: bool) -> None:
        if not entry_point:
            pytest.skip("entry_point fixture is False: the adapter is not packaged")
        registry = load_plugins()
        cls = type(adapter)
        names = registry.adapter_names()
        assert cls.name in names, (
            f"no installed plugin registers {cls.name!r} (installed: {names}); "
            "is the distribution installed, with an entry point in the 'predial' group?"
        )
        assert registry.adapter_class(cls.name) is cls

    # -- HTTP adapters: errors and injection -------------------------------------------

    @pytest.mark.parametrize(
        ("status", "headers", "expected", "retry_after"),
        [
            (503, {}, AdapterUnavailable, None),
            (500, {"Retry-After": "3"}, AdapterUnavailable, 3.0),
            (429, {"Retry-After": "7"}, AdapterUnavailable, 7.0),
            (401, {}, AdapterAuthError, None),
        ],
        ids=["503", "500-retry-after", "429", "401"],
    )
    def test_http_errors_are_mapped(
        self,
        adapter: Any,
        known_id: str,
        status: int,
        headers: dict[str, str],
        expected: type[Exception],
        retry_after: float | None,
    ) -> None:
        twin = self._twin(adapter, lambda request: httpx.Response(status, headers=headers))
        with pytest.raises(expected) as raised:
            _run(lambda: self._fetch_and_close(twin, known_id))
        if retry_after is not None:
            assert getattr(raised.value, "retry_after", None) == retry_after

    def test_dropped_connection_is_unavailable(self, adapter: Any, known_id: str) -> None:
        def drop(request: httpx.Request) -> httpx.Response:
            raise httpx.ConnectError("connection refused", request=request)

        twin = self._twin(adapter, drop)
        with pytest.raises(AdapterUnavailable):
            _run(lambda: self._fetch_and_close(twin, known_id))

    def test_hostile_ids_stay_in_their_place(self, adapter: Any) -> None:
        """Each hostile id lands exactly where a plain id does: the same path shape,
        the same query keys, the same headers; nothing else changes."""
        probe = _Recorder(_not_found)
        twin = self._twin(adapter, probe.handle)
        self._fetch_quietly(twin, self.probe_id)
        baseline = _data_requests(twin, probe.requests)
        assert baseline, "the adapter sent no request for a plain id"
        for hostile in self.hostile_ids:
            recorder = _Recorder(_not_found)
            twin = self._twin(adapter, recorder.handle)
            self._fetch_quietly(twin, hostile)
            sent = _data_requests(twin, recorder.requests)
            assert len(sent) <= len(baseline), f"{hostile[:40]!r} caused extra requests"
            for request, reference in zip(sent, baseline, strict=False):
                _assert_same_target(request, reference, hostile, self.probe_id)

    def test_hostile_ids_find_no_record(self, adapter: Any) -> None:
        """To the fake, each hostile id is an id it does not have: `None` or
        `RecordNotFound`, never another record's number or an error (an id built
        into a query language unescaped shows up here)."""

        async def lookup(external_id: str) -> Any:
            try:
                return await _call(adapter, external_id)
            except AdapterRateLimited as refusal:
                # The adapter's own budget (a low documented rate_limit): wait it out.
                wait = refusal.retry_after
                if refusal.called or wait is None or wait > 10:
                    raise
                await asyncio.sleep(wait)
                return await _call(adapter, external_id)

        async def each() -> None:
            try:
                for hostile in self.hostile_ids:
                    short = repr(hostile[:40])
                    try:
                        raw = await lookup(hostile)
                    except RecordNotFound:
                        continue
                    except AdapterError as error:
                        raise AssertionError(
                            f"fetch_phone({short}) raised {error!r}; an id the CRM does "
                            "not have is None or RecordNotFound"
                        ) from None
                    assert raw is None, f"fetch_phone({short}) found {raw!r}; want no record"
            finally:
                await close_adapter(adapter)

        _run(each)

    # -- helpers ---------------------------------------------------------------------------

    @staticmethod
    async def _fetch_and_close(adapter: Any, external_id: str) -> Any:
        try:
            return await _call(adapter, external_id)
        finally:
            await close_adapter(adapter)

    def _fetch_quietly(self, adapter: Any, external_id: str) -> None:
        # The recorder answers 404: only the request matters here.
        with contextlib.suppress(RecordNotFound, AdapterUnavailable):
            _run(lambda: self._fetch_and_close(adapter, external_id))

    @staticmethod
    def _twin(adapter: Any, answer: Callable[[httpx.Request], httpx.Response]) -> HttpAdapter:
        if not isinstance(adapter, HttpAdapter):
            pytest.skip("not an HttpAdapter: give your own error-mapping tests")
        token_url = adapter.oauth.token_url if adapter.oauth is not None else None

        def route(request: httpx.Request) -> httpx.Response:
            # An OAuth adapter gets its token; `answer` is for the data requests.
            if token_url is not None and str(request.url) == token_url:
                return httpx.Response(200, json={"access_token": "contract", "expires_in": 3600})
            return answer(request)

        return adapter.with_transport(httpx.MockTransport(route))


def _data_requests(adapter: HttpAdapter, requests: list[httpx.Request]) -> list[httpx.Request]:
    token_url = adapter.oauth.token_url if adapter.oauth is not None else None
    return [r for r in requests if token_url is None or str(r.url) != token_url]


def _assert_same_target(
    request: httpx.Request, reference: httpx.Request, hostile: str, probe: str
) -> None:
    short = repr(hostile[:40])
    assert request.method == reference.method
    assert request.url.host == reference.url.host, f"{short} changed the host"
    assert request.url.port == reference.url.port
    got = request.url.raw_path.decode("ascii").split("?")[0].split("/")
    want = reference.url.raw_path.decode("ascii").split("?")[0].split("/")
    assert len(got) == len(want), f"{short} changed the path's shape: {got[:6]}"
    for segment, expected in zip(got, want, strict=True):
        if probe in unquote(expected):
            decoded = unquote(segment)
            assert decoded == unquote(expected).replace(probe, hostile), (
                f"{short} was not kept as one segment"
            )
        else:
            assert segment == expected, f"{short} changed the path segment {expected!r}"
    sent = request.url.params.multi_items()
    planned = reference.url.params.multi_items()
    assert [key for key, _ in sent] == [key for key, _ in planned], f"{short} changed the query"
    for (key, value), (_, expected) in zip(sent, planned, strict=True):
        if probe in expected:
            # Around the id the value is unchanged (inside, the adapter may escape it,
            # as Salesforce's SOQL must).
            before, _, after = expected.partition(probe)
            assert value.startswith(before), f"{short} changed the query value of {key!r}"
            assert value.endswith(after), f"{short} changed the query value of {key!r}"
            assert len(value) >= len(before) + len(after)
        else:
            assert value == expected, f"{short} changed the query value of {key!r}"
    assert sorted(request.headers.keys()) == sorted(reference.headers.keys()), (
        f"{short} changed the headers"
    )
    for name, value in request.headers.items():
        assert "\r" not in value, f"{short} reached header {name}"
        assert "\n" not in value, f"{short} reached header {name}"
