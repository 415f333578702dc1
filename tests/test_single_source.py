"""Facts defined once and used everywhere (issue 14): the transient reasons, the caps
on a server's waits, the backoff formula, the configuration defaults and the
exception tree. Each test fails when a copy drifts from its source."""

from __future__ import annotations

import importlib
import importlib.util
import inspect
import pkgutil
import re
import types
from collections.abc import Callable
from pathlib import Path
from typing import Any
from unittest import mock

import httpx
import pytest
import respx
from conftest import VALID_US, Script, make_resolver
from hypothesis import given
from hypothesis import strategies as st

import predial
import predial.errors
from predial import (
    AdapterAuthError,
    AdapterUnavailable,
    BreakerSettings,
    CacheSettings,
    Lead,
    PhonePolicy,
    RecordNotFound,
    RedisTier,
    Resolver,
    RetrySettings,
    Unresolvable,
)
from predial._config import (
    BreakerConfig,
    CacheConfig,
    PolicyConfig,
    ResolverConfig,
    RetryConfig,
    SharedConfig,
)
from predial._http import MAX_RETRY_AFTER, MAX_SLEEP_IN_CALL, backoff, reset_in
from predial._ratelimit import SlidingWindowLimiter
from predial._selection import TRANSIENT_REASONS
from predial.lupitor import LupitorClient, RetryPolicy
from predial.shared._codec import decode_message, encode_message

# -- the transient reasons ------------------------------------------------------------

STORED = "+12025550123"

#: How a resolve comes to each transient reason (an adapter's answer, or resolver
#: options). A reason added to `TRANSIENT_REASONS` must be added here.
FAILURES: dict[str, tuple[Any, dict[str, Any]]] = {
    "unavailable": (AdapterUnavailable("down"), {}),
    "timeout": (TimeoutError(), {}),
    "auth_error": (AdapterAuthError("revoked"), {}),
    "adapter_error": (RuntimeError("a bug"), {}),
    "campaign_misconfigured": (VALID_US, {"extra_settings": {"nope": 1}, "strict": False}),
    # The first lead opens the circuit (one failure); the second meets it open.
    "circuit_open": (
        AdapterUnavailable("down"),
        {"breaker": BreakerSettings(failure_threshold=1, open_for=60)},
    ),
}


def test_every_transient_reason_has_a_case() -> None:
    assert set(FAILURES) == set(TRANSIENT_REASONS)


@pytest.mark.parametrize("reason", sorted(FAILURES))
async def test_warm_counts_a_stored_number_standing_in_for_a_failure_as_failed(
    reason: str,
) -> None:
    """A lead whose CRM failed is dialled on its stored number: `warm` counts it as
    failed (fetched just in time later), never as refused, for every transient reason
    the resolver knows (`selection.TRANSIENT_REASONS`, warm's only list)."""
    answer, options = FAILURES[reason]
    async with make_resolver(Script(answer=answer), campaign_id="c", **options) as resolver:
        leads = [
            Lead(campaign_id="c", external_id=f"id-{i}", phone_number=STORED) for i in range(2)
        ]
        if reason == "circuit_open":
            await resolver.resolve(leads.pop(0))
        result = await resolver.resolve(leads[0])
        assert (result.source, result.fallback_reason) == ("stored", reason)
        report = await resolver.warm(leads)
        assert (report.failed, report.refused, report.warmed) == (len(leads), 0, 0)


async def test_warm_counts_a_stored_number_after_a_permanent_answer_as_refused() -> None:
    async with make_resolver(Script(answer=RecordNotFound("gone")), campaign_id="c") as r:
        report = await r.warm([Lead(campaign_id="c", external_id="x", phone_number=STORED)])
        assert (report.failed, report.refused) == (0, 1)


# -- the caps on a server's waits -----------------------------------------------------


def test_the_two_caps_are_distinct_facts() -> None:
    """A day for a wait passed on (never slept on), an hour for a wait slept through."""
    assert (MAX_RETRY_AFTER, MAX_SLEEP_IN_CALL) == (86_400.0, 3_600.0)


@given(st.one_of(st.none(), st.floats(min_value=0, allow_nan=False, allow_infinity=False)))
def test_a_flight_message_carries_any_retry_after_the_resolver_may_hold(
    retry_after: float | None,
) -> None:
    """What a holder writes, its waiters read: a circuit open for longer than a day
    (`open_for` has no upper bound) was written as is and read back as corrupt."""
    token = "0" * 32
    message = decode_message(encode_message(token, None, "circuit_open", True, retry_after))
    assert (message.transient, message.reason) == (True, "circuit_open")
    if retry_after is None:
        assert message.retry_after is None
    else:
        assert message.retry_after == pytest.approx(min(retry_after, MAX_RETRY_AFTER), abs=1e-3)


@respx.mock
def test_lupitor_sleeps_at_most_max_sleep_in_call_on_a_429() -> None:
    now = [1_000.0]
    slept: list[float] = []

    def sleep(seconds: float) -> None:
        slept.append(seconds)
        now[0] += seconds

    client = LupitorClient(
        "sk_test_single_source",
        base_url="https://lupitor.test",
        clock=lambda: now[0],
        wall_clock=lambda: 1_700_000_000.0 + now[0],
        sleep=sleep,
    )
    respx.delete("https://lupitor.test/api/v1/leads").mock(
        side_effect=[
            httpx.Response(429, json={"error": "slow down"}, headers={"Retry-After": "86400"}),
            httpx.Response(200, json={"success": True, "data": {"deleted": True}}),
        ]
    )
    assert client.delete_lead("c", external_id="L1")
    assert slept == [MAX_SLEEP_IN_CALL]


@pytest.mark.parametrize(
    ("ahead", "held"), [(MAX_SLEEP_IN_CALL - 1, True), (MAX_SLEEP_IN_CALL + 1, False)]
)
def test_the_limiter_believes_a_reset_no_further_off_than_max_sleep_in_call(
    ahead: float, held: bool
) -> None:
    limiter = SlidingWindowLimiter(10, 60.0, clock=lambda: 0.0, wall_clock=lambda: 1e9)
    limiter.observe({"x-ratelimit-remaining": "0", "x-ratelimit-reset": str(1e9 + ahead)})
    assert (limiter.reserve() > 0) is held


@given(st.one_of(st.none(), st.text(max_size=40)))
def test_reset_in_reads_any_header_without_raising(value: str | None) -> None:
    seconds = reset_in(value, lambda: 1e9)
    assert seconds is None or isinstance(seconds, float)


def test_reset_in_takes_seconds_or_milliseconds() -> None:
    assert reset_in("1000000060", lambda: 1e9) == 60
    assert reset_in("1000000060000", lambda: 1e9) == 60
    assert reset_in("soon", lambda: 1e9) is None


# -- the backoff ----------------------------------------------------------------------


def _ceiling(attempt: int, initial: float, maximum: float) -> float:
    with mock.patch("predial._http.random.uniform", side_effect=lambda low, high: high):
        return backoff(attempt, initial, maximum)


finite = st.floats(min_value=0, max_value=1e6, allow_nan=False)


@given(st.integers(1, 5_000), finite, finite)
def test_backoff_stays_within_its_ceiling(attempt: int, initial: float, maximum: float) -> None:
    wait = backoff(attempt, initial, maximum)
    assert 0 <= wait <= maximum
    ceiling = _ceiling(attempt, initial, maximum)
    assert wait <= ceiling
    if attempt == 1:
        assert ceiling == min(initial, maximum)


@given(st.integers(1, 5_000), finite, finite)
def test_backoff_ceiling_grows_until_the_maximum(
    attempt: int, initial: float, maximum: float
) -> None:
    assert _ceiling(attempt, initial, maximum) <= _ceiling(attempt + 1, initial, maximum)
    if initial >= 1e-9:
        assert _ceiling(attempt + 100, initial, maximum) == maximum


def test_the_lupitor_policy_waits_as_backoff_says() -> None:
    """Doubling from `initial` up to `maximum`; 2,000 attempts in too, where
    `initial * 2 ** n` no longer fits a float (it raised OverflowError)."""
    policy = RetryPolicy(initial=0.5, maximum=30.0)
    with mock.patch("predial._http.random.uniform", side_effect=lambda low, high: high):
        ceilings = [policy.backoff(n) for n in (1, 2, 3, 8, 2_000)]
    assert ceilings == [0.5, 1.0, 2.0, 30.0, 30.0]


async def test_the_resolver_retries_past_a_thousand_attempts() -> None:
    """`initial * 2 ** 1100` overflowed a float: the 1,026th retry raised instead of
    waiting."""
    script = Script(answer=AdapterUnavailable("down"))
    retry = RetrySettings(attempts=1_100, initial=0.0, maximum=0.0)
    breaker = BreakerSettings(failure_threshold=10_000)
    async with make_resolver(script, retry=retry, breaker=breaker, deadline=30) as resolver:
        with pytest.raises(Unresolvable) as refused:
            await resolver.resolve(Lead(campaign_id="cmp", external_id="x"))
    assert (refused.value.reason, len(script.calls)) == ("unavailable", 1_100)


# -- the configuration defaults -------------------------------------------------------


@pytest.mark.parametrize(
    ("config", "runtime", "names"),
    [
        (CacheConfig, CacheSettings, "positive_ttl negative_ttl stale_grace maxsize"),
        (RetryConfig, RetrySettings, "attempts initial maximum"),
        (BreakerConfig, BreakerSettings, "failure_threshold open_for slow_call"),
        (SharedConfig, RedisTier, "prefix timeout cluster local_ttl retry_interval"),
        (ResolverConfig, Resolver, "deadline max_adapter_threads"),
        (PolicyConfig, PhonePolicy, "strictness allowed_regions allowed_types refused_types"),
    ],
)
def test_a_setting_left_out_of_the_file_is_the_runtime_default(
    config: Any, runtime: Callable[..., Any], names: str
) -> None:
    """A setting `predial.toml` leaves out is what the runtime class defaults to."""
    runtime_defaults = inspect.signature(runtime).parameters
    for name in names.split():
        default = config.model_fields[name].get_default(call_default_factory=True)
        expected = runtime_defaults[name].default
        if isinstance(expected, frozenset):  # a list in the file
            default = frozenset(default)
        assert default == expected, name


def test_an_empty_file_builds_the_runtime_defaults() -> None:
    options = predial._config.PredialConfig().resolver_options()
    assert options["cache"] == CacheSettings()
    assert options["retry"] == RetrySettings()


# -- the exception tree ---------------------------------------------------------------

_DRAWN = re.compile(r"^(?P<indent>[│ ]*)(?:[├└]── )?(?P<name>[A-Z]\w+)")


def _drawing() -> dict[str, str | None]:
    """Each class in `predial.errors`' docstring drawing, with the class it is drawn
    under (None for the root)."""
    doc = predial.errors.__doc__ or ""
    block = doc.split("```")[1]
    parents: dict[str, str | None] = {}
    stack: list[tuple[int, str]] = []
    for line in block.strip("\n").splitlines():
        found = _DRAWN.match(line)
        assert found, line
        depth = len(found["indent"]) // 4 + (0 if line[0].isalpha() else 1)
        while stack and stack[-1][0] >= depth:
            stack.pop()
        assert found["name"] not in parents, f"{found['name']} drawn twice"
        parents[found["name"]] = stack[-1][1] if stack else None
        stack.append((depth, found["name"]))
    return parents


def _defined_in(module: types.ModuleType) -> dict[str, type[BaseException]]:
    return {
        name: value
        for name, value in vars(module).items()
        if isinstance(value, type)
        and issubclass(value, BaseException)
        and value.__module__ == module.__name__
    }


def test_the_drawing_is_the_tree() -> None:
    """The docstring draws every exception class of `predial.errors`, each under its
    own base (the nearest that is a PredialError), and nothing else."""
    defined = _defined_in(predial.errors)
    drawn = _drawing()
    assert set(drawn) == set(defined)
    for name, cls in defined.items():
        bases = [base for base in cls.__bases__ if issubclass(base, predial.PredialError)]
        assert drawn[name] == (bases[0].__name__ if bases else None), name
    assert predial.errors.__all__ == sorted(defined)


#: Exception classes defined outside `predial.errors`, each internal: it never reaches
#: a caller of predial's API. A new one is moved to `predial.errors` (and drawn there)
#: or listed here with the reason it stays.
def _modules() -> list[types.ModuleType]:
    names = [
        info.name
        for info in pkgutil.walk_packages(predial.__path__, "predial.")
        if not info.name.endswith("__main__") and not _deprecated_path(info.name)
    ]
    return [importlib.import_module(name) for name in names]


def _deprecated_path(name: str) -> bool:
    """An old module path kept for one release (importing it warns)."""
    spec = importlib.util.find_spec(name)
    origin = spec.origin if spec is not None else None
    return origin is not None and "_moved import moved" in Path(origin).read_text()


def test_every_other_exception_class_is_internal() -> None:
    """Outside `predial.errors` only internal modules (`predial._x`) and private classes
    (`_X`) define exceptions (a 401 answer, a corrupt Redis value, the test harness's
    own failures: never a dialer's concern); whatever a package exports is a
    PredialError from `predial.errors`."""
    found = set()
    for module in _modules():
        if any(part.startswith("_") for part in module.__name__.split(".")):
            continue
        for name in _defined_in(module):
            if not name.startswith("_") and module is not predial.errors:
                found.add(f"{module.__name__}.{name}")
        if module.__name__ == "predial" or hasattr(module, "__path__"):  # a package's API
            for name in getattr(module, "__all__", []):
                value = getattr(module, name)
                if isinstance(value, type) and issubclass(value, BaseException):
                    assert issubclass(value, predial.PredialError), name
                    assert value.__module__ == "predial.errors", name
    assert found == set()


def test_moved_exceptions_keep_their_old_import_path() -> None:
    from predial import _fetcher as fetcher

    assert fetcher.CircuitOpen is predial.errors.CircuitOpen
    assert fetcher.BadBatchAnswer is predial.errors.BadBatchAnswer
    assert issubclass(predial.errors.BadBatchAnswer, TypeError)  # as it was
