"""Whatever an adapter returns or raises, the resolver keeps its two promises (hypothesis):
never a number the policy refuses or the CRM did not give, and never stuck or crashed."""

from __future__ import annotations

import asyncio
import gc
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
from hostile import Ambiguous, Boom, Impostor, Incomparable, Treacherous, Unprintable
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import predial
from predial import (
    AdapterAuthError,
    AdapterRateLimited,
    AdapterRequestRejected,
    AdapterUnavailable,
    BreakerSettings,
    CacheSettings,
    Campaign,
    CrmContact,
    CrmPhone,
    Lead,
    PhonePolicy,
    RecordNotFound,
    Resolution,
    Resolver,
    RetrySettings,
    Unresolvable,
)
from predial._selection import MAX_PHONES, PERMANENT_REASONS, TRANSIENT_REASONS

DEADLINE = 0.15
#: The acceptance bound: a resolve returns within its deadline plus this.
SLACK = 0.1
VALID = ["+12024561111", "+12024561414", "+447911123456", "+4930123456789"]
STORED = "+12025550143"


# -- what an adapter may give back ---------------------------------------------------

texts = st.one_of(
    st.sampled_from([*VALID, "+15555551234", "", "  ", "tel:+1-202-456-1111", "00447911123456"]),
    st.text(alphabet="0123456789+()-. ext", max_size=20),
    st.text(max_size=30),
    st.sampled_from(VALID).map(Treacherous),
    st.sampled_from(VALID).map(Impostor),
    st.integers(min_value=0, max_value=10**20).map(lambda n: "+" + "9" * 1000 + str(n)),
)
values = st.one_of(
    texts,
    st.none(),
    st.integers(),
    st.floats(allow_nan=True),
    st.binary(max_size=12),
    st.builds(Unprintable),
    st.builds(Ambiguous),
    st.lists(st.sampled_from(VALID), max_size=3),
)
flags = st.one_of(st.booleans(), st.none(), st.just("yes"), st.builds(Ambiguous))
states = st.one_of(
    st.sampled_from(["active", "archived", "deleted", "merged"]),
    st.builds(Incomparable),
    st.none(),
    st.integers(),
)
phones = st.builds(
    CrmPhone,
    value=values,
    label=st.one_of(st.none(), st.sampled_from(["mobile", "home", "work"]), st.builds(Unprintable)),
    primary=flags,
)
contacts = st.one_of(
    st.builds(
        CrmContact,
        phones=st.one_of(st.lists(phones, max_size=5), st.builds(Unprintable)),
        do_not_call=flags,
        state=states,
    ),
    # Huge contacts: tens of thousands of junk phones, maybe a good one at the end.
    st.builds(
        lambda count, junk, tail: CrmContact(phones=[CrmPhone(junk)] * count + tail),
        st.integers(min_value=MAX_PHONES, max_value=30_000),
        st.sampled_from(["+15555551234", "not a number", "x" * 300]),
        st.lists(st.builds(CrmPhone, st.sampled_from(VALID)), max_size=1),
    ),
)
answers = st.one_of(values, contacts, st.builds(object), st.dictionaries(st.text(), st.text()))


def _exceptions(retry: st.SearchStrategy[Any]) -> st.SearchStrategy[BaseException]:
    return st.one_of(
        st.builds(RecordNotFound, st.text(max_size=20)),
        st.builds(lambda r: AdapterUnavailable("down", retry_after=r), retry),
        st.builds(lambda r: AdapterRateLimited("slow down", retry_after=r), retry),
        st.builds(AdapterAuthError, st.just("Bearer sk_live_0123456789abcdefghijklmnopqrstuv")),
        st.builds(AdapterRequestRejected, st.just("400 for +12024561111")),
        st.sampled_from(
            [
                ValueError("x"),
                TypeError("x"),
                RuntimeError("+12024561111"),
                KeyError("x"),
                TimeoutError(),
                RecursionError(),
                GeneratorExit(),
                Boom(),
                asyncio.CancelledError(),
            ]
        ),
    )


retry_afters = st.one_of(
    st.none(), st.floats(allow_nan=True, allow_infinity=True), st.integers(), st.just("soon")
)
async_raisables = _exceptions(retry_afters)
# No signal reaches a worker thread: there these are the adapter's, like any other.
sync_raisables = st.one_of(async_raisables, st.sampled_from([KeyboardInterrupt(), SystemExit(1)]))


@dataclass
class Behaviour:
    """What the hostile adapter does on every call."""

    kind: str  # "return", "raise", "hang", "swallow" (ignore the cancellation, answer late)
    value: Any = None
    calls: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def called(self) -> None:
        with self.lock:
            self.calls += 1


class HostileAdapter:
    name = "hostile"

    def __init__(self, behaviour: Callable[[], Behaviour]) -> None:
        self.behaviour = behaviour

    async def fetch_phone(self, external_id: str) -> Any:
        behaviour = self.behaviour()
        behaviour.called()
        if behaviour.kind == "raise":
            raise behaviour.value
        if behaviour.kind == "hang":
            await asyncio.sleep(DEADLINE * 3)
        if behaviour.kind == "swallow":
            try:
                await asyncio.sleep(DEADLINE * 3)
            except asyncio.CancelledError:
                await asyncio.sleep(DEADLINE * 2)  # runs on, long past the deadline
        return behaviour.value


class HostileSyncAdapter:
    name = "hostile-sync"

    def __init__(self, behaviour: Callable[[], Behaviour]) -> None:
        self.behaviour = behaviour

    def fetch_phone(self, external_id: str) -> Any:
        behaviour = self.behaviour()
        behaviour.called()
        if behaviour.kind == "raise":
            raise behaviour.value
        if behaviour.kind in ("hang", "swallow"):
            time.sleep(DEADLINE * 2)
        return behaviour.value


class HostilePlugin:
    @predial.hookimpl
    def register_adapters(self, register: predial.AdapterRegister) -> None:
        register(HostileAdapter)
        register(HostileSyncAdapter)


_CURRENT = Behaviour("return", VALID[0])


def _current() -> Behaviour:
    return _CURRENT


@pytest.fixture(scope="module")
def resolver() -> Any:
    """One resolver for every example, so its private event loop has to survive them all."""
    shared = Resolver(
        [
            Campaign("async", "hostile", {"behaviour": _current}, default_region="US"),
            Campaign("sync", "hostile-sync", {"behaviour": _current}, default_region="US"),
        ],
        plugins=[HostilePlugin()],
        load_entrypoints=False,
        deadline=DEADLINE,
        cache=CacheSettings(positive_ttl=0, negative_ttl=0, stale_grace=0),
        breaker=BreakerSettings(failure_threshold=10**9),
        retry=RetrySettings(attempts=2, initial=0.01, maximum=0.02),
    )
    yield shared
    shared.close_sync()


def _offered(value: Any, policy: PhonePolicy) -> set[str]:
    """The numbers an answer could honestly resolve to: each text it holds, normalised."""
    if isinstance(value, CrmContact):
        try:
            return set().union(*(_offered(phone.value, policy) for phone in value.phones))
        except Exception:
            return set()
    if isinstance(value, str):
        data = str.__str__(value)
        return {policy.normalize(data)} if policy.accepts(data) else set()
    return set()


def _resolve(resolver: Resolver, lead: Lead) -> tuple[Resolution | Unresolvable, float]:
    # The bound is predial's, not the garbage collector's: a full collection of the
    # suite's heap (hypothesis keeps examples alive) can pause for longer than it.
    gc.disable()
    started = time.perf_counter()
    try:
        result: Resolution | Unresolvable = resolver.resolve_sync(lead)
    except Unresolvable as refusal:
        result = refusal
    finally:
        elapsed = time.perf_counter() - started
        gc.enable()
    return result, elapsed


@settings(
    max_examples=100,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    data=st.data(),
    sync=st.booleans(),
    kind=st.sampled_from(["return", "return", "raise", "raise", "hang", "swallow"]),
    stored=st.sampled_from([None, STORED]),
)
def test_any_adapter_behaviour_gives_an_accepted_number_or_a_refusal_in_time(
    resolver: Resolver, data: st.DataObject, sync: bool, kind: str, stored: str | None
) -> None:
    """Any return value, any exception (BaseException subclasses and cancellation too),
    values whose dunder methods raise, huge contacts, adapters that hang or ignore their
    cancellation: the resolve gives a number the policy accepts and the CRM (or the
    lead) offered, or Unresolvable, within deadline + 100 ms; the next resolve of the id
    calls the adapter again; the resolver's event loop survives it all."""
    global _CURRENT
    if kind == "raise":
        value = data.draw(sync_raisables if sync else async_raisables)
    else:
        value = data.draw(answers)
    behaviour = _CURRENT = Behaviour(kind, value)
    campaign = "sync" if sync else "async"
    policy = resolver.campaigns[campaign].policy
    lead = Lead(campaign_id=campaign, external_id="ext", phone_number=stored)
    allowed = _offered(value, policy) | ({STORED} if stored else set())

    for attempt in (1, 2):
        before = behaviour.calls
        result, elapsed = _resolve(resolver, lead)
        assert elapsed <= DEADLINE + SLACK, f"{elapsed:.3f} s for {kind} {value!r}"
        if isinstance(result, Resolution):
            assert policy.normalize(result.phone_number) == result.phone_number
            assert result.phone_number in allowed, (result, value)
        else:
            assert isinstance(result, Unresolvable)
            assert result.reason in PERMANENT_REASONS or result.reason in TRANSIENT_REASONS
            assert len(str(result)) <= 600
            assert result.retry_after is None or 0 <= result.retry_after <= 86_400
        # Every resolve reaches the adapter: no key is left poisoned in flight.
        if sync:  # the worker thread may start the call a moment later
            until = time.monotonic() + 1.0
            while behaviour.calls == before and time.monotonic() < until:
                time.sleep(0.001)
        assert behaviour.calls > before, f"attempt {attempt}: the adapter was not called"
