"""Hostile adapters: whatever an adapter raises or returns, the resolver answers in time,
never with a wrong number, and never takes the dialer down with it."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import threading
import time
from typing import Any

import pytest
from conftest import VALID_US, VALID_US_2, Script, make_resolver
from hostile import Ambiguous, Boom, Impostor, Incomparable, Treacherous, Unprintable

import predial
from predial import (
    AdapterAuthError,
    AdapterRequestRejected,
    AdapterUnavailable,
    CacheSettings,
    CrmContact,
    CrmPhone,
    InvalidPhoneNumber,
    Lead,
    PhonePolicy,
    Resolution,
    Unresolvable,
    mask_phone,
)
from predial._phone import MAX_INPUT_LENGTH
from predial._selection import MAX_PHONES

LEAD = Lead(campaign_id="cmp", external_id="ext-1")
NO_CACHE = CacheSettings(positive_ttl=0, negative_ttl=0, stale_grace=0)
#: Long enough that a hang fails the test instead of stalling the suite.
HANG = 5.0


async def refused(resolver: Any, lead: Lead = LEAD) -> Unresolvable:
    with pytest.raises(Unresolvable) as caught:
        await asyncio.wait_for(resolver.resolve(lead), HANG)
    return caught.value


# -- anything raised --------------------------------------------------------------


@pytest.mark.parametrize(
    "raised",
    [GeneratorExit(), Boom(), asyncio.CancelledError()],
    ids=["GeneratorExit", "BaseException-subclass", "CancelledError"],
)
async def test_an_async_adapters_base_exception_is_an_adapter_error(raised: BaseException) -> None:
    """GeneratorExit, a BaseException of its own or a stray CancelledError from an async
    adapter: a retryable adapter_error, and the next resolve calls the adapter again."""
    script = Script(answer=raised)
    async with make_resolver(script, deadline=1.0) as resolver:
        for _ in range(2):
            refusal = await refused(resolver)
            assert (refusal.reason, refusal.retryable) == ("adapter_error", True)
    assert len(script.calls) == 2


@pytest.mark.parametrize(
    "raised",
    [KeyboardInterrupt(), SystemExit(3), GeneratorExit(), Boom()],
    ids=["KeyboardInterrupt", "SystemExit", "GeneratorExit", "BaseException-subclass"],
)
async def test_a_sync_adapters_base_exception_in_its_thread_is_an_adapter_error(
    raised: BaseException,
) -> None:
    """In a worker thread, KeyboardInterrupt and SystemExit are no interrupt: the dialer's
    loop goes on, the lead gets adapter_error, and the adapter is called again next time."""
    script = Script(answer=raised)
    async with make_resolver(script, adapter="scripted-sync", deadline=1.0) as resolver:
        for _ in range(2):
            refusal = await refused(resolver)
            assert (refusal.reason, refusal.retryable) == ("adapter_error", True)
        assert type(raised).__name__ in (refusal.detail or "")
    assert len(script.calls) == 2


def test_an_interrupt_in_the_loops_own_thread_propagates_and_frees_the_key() -> None:
    """KeyboardInterrupt raised while an async adapter runs is an interrupt of the caller's
    thread: it propagates, and the key is not left in flight for the next resolve."""
    answers = iter([KeyboardInterrupt(), VALID_US])
    script = Script(answer=lambda external_id: next(answers))
    resolver = make_resolver(script)
    loop = asyncio.new_event_loop()
    try:
        with pytest.raises(KeyboardInterrupt):
            loop.run_until_complete(resolver.resolve(LEAD))
        resolution = loop.run_until_complete(asyncio.wait_for(resolver.resolve(LEAD), HANG))
        loop.run_until_complete(resolver.close())
    finally:
        for task in asyncio.all_tasks(loop):
            task.cancel()
        loop.run_until_complete(asyncio.sleep(0))
        loop.close()
    assert resolution.phone_number == VALID_US
    assert len(script.calls) == 2


@pytest.mark.parametrize("raised", [KeyboardInterrupt(), SystemExit(2)], ids=["Ctrl-C", "exit"])
def test_an_interrupt_raised_on_resolve_syncs_own_loop_is_an_adapter_error(
    raised: BaseException,
) -> None:
    """resolve_sync's loop runs in a thread of predial's, where no signal is delivered:
    an async adapter raising KeyboardInterrupt or SystemExit there fails the lead, and
    the loop keeps serving."""
    answers = iter([raised, VALID_US])
    script = Script(answer=lambda external_id: next(answers))
    with make_resolver(script, deadline=1.0) as resolver:
        with pytest.raises(Unresolvable) as caught:
            resolver.resolve_sync(LEAD)
        assert caught.value.reason == "adapter_error"
        assert resolver.resolve_sync(LEAD).phone_number == VALID_US


async def test_resolve_many_fills_every_slot_when_an_adapter_raises_cancelled_error() -> None:
    """An adapter's own CancelledError is its failure, not the dialer's cancellation."""
    script = Script(
        answer=lambda external_id: asyncio.CancelledError() if external_id == "b" else VALID_US
    )
    leads = [Lead(campaign_id="cmp", external_id=external_id) for external_id in "abc"]
    async with make_resolver(script) as resolver:
        results = await asyncio.wait_for(resolver.resolve_many(leads), HANG)
    assert isinstance(results[0], Resolution)
    assert isinstance(results[1], Unresolvable)
    assert results[1].reason == "adapter_error"
    assert isinstance(results[2], Resolution)


async def test_the_callers_own_cancellation_still_cancels() -> None:
    """A dialer that cancels its resolve gets its cancellation, not a refusal."""
    async with make_resolver(Script(delay=1.0)) as resolver:
        task = asyncio.create_task(resolver.resolve(LEAD))
        await asyncio.sleep(0.05)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task


# -- anything returned ------------------------------------------------------------


@pytest.mark.parametrize(
    "answer",
    [
        CrmContact(phones=[CrmPhone(VALID_US)], do_not_call=Ambiguous()),  # type: ignore[arg-type]
        CrmContact(phones=[CrmPhone(VALID_US, primary=Ambiguous())]),  # type: ignore[arg-type]
        CrmContact(phones=[CrmPhone(VALID_US)], state=Incomparable()),  # type: ignore[arg-type]
        CrmContact(phones=Unprintable()),  # type: ignore[arg-type]
        CrmContact(phones=[Unprintable()]),  # type: ignore[list-item]
    ],
    ids=["do_not_call", "primary", "state", "phones", "phone"],
)
async def test_an_answer_that_raises_while_it_is_read_is_an_adapter_error(
    answer: CrmContact, caplog: pytest.LogCaptureFixture
) -> None:
    """A flag, state or phone list whose dunder methods raise: a retryable adapter_error,
    logged with the plugin's name; nothing escapes resolve()."""
    script = Script(answer=answer)
    with caplog.at_level(logging.ERROR, logger="predial"):
        async with make_resolver(script) as resolver:
            refusal = await refused(resolver)
    assert (refusal.reason, refusal.retryable) == ("adapter_error", True)
    assert "unusable value" in caplog.text
    assert "plugin" in caplog.text


async def test_a_phone_whose_own_methods_raise_is_read_by_its_text() -> None:
    """A str subclass whose strip, hash, eq and str raise is read as the text it holds."""
    script = Script(answer=CrmContact(phones=[CrmPhone(Treacherous(VALID_US))]))
    async with make_resolver(script) as resolver:
        resolution = await asyncio.wait_for(resolver.resolve(LEAD), HANG)
    assert resolution.phone_number == VALID_US
    assert type(resolution.phone_number) is str


async def test_a_str_subclass_cannot_pass_its_number_off_as_another() -> None:
    """Text that hashes and compares like another number never lends that number its
    verdict: each lead gets its own number."""
    script = Script(
        answer=lambda external_id: Impostor(VALID_US_2) if external_id == "impostor" else VALID_US
    )
    async with make_resolver(script) as resolver:
        first = await resolver.resolve(Lead(campaign_id="cmp", external_id="impostor"))
        second = await resolver.resolve(Lead(campaign_id="cmp", external_id="honest"))
    assert (first.phone_number, second.phone_number) == (VALID_US_2, VALID_US)


# -- bounded in time and size -------------------------------------------------------


async def test_an_adapter_that_swallows_cancellation_cannot_hold_the_resolve() -> None:
    """An async adapter that ignores its cancellation and runs on: the resolve returns at
    its deadline, and the next resolve of the id calls the adapter again."""
    release = asyncio.Event()
    calls: list[str] = []

    async def stubborn(external_id: str) -> str:
        calls.append(external_id)
        while not release.is_set():
            try:
                await asyncio.wait_for(release.wait(), 30)
            except asyncio.CancelledError:
                continue  # swallowed
        return VALID_US

    try:
        async with make_resolver(Script(), deadline=0.3) as resolver:
            resolver.campaigns["cmp"].adapter.fetch_phone = stubborn
            started = time.monotonic()
            refusal = await refused(resolver)
            elapsed = time.monotonic() - started
            assert (refusal.reason, refusal.retryable) == ("timeout", True)
            second = await refused(resolver)
            assert second.reason == "timeout"
            release.set()
    finally:
        release.set()
    assert elapsed < 0.3 + 1.0  # the deadline, with room for a slow machine
    assert calls == ["ext-1", "ext-1"]


async def test_a_contact_with_thousands_of_phones_is_read_only_up_to_the_cap() -> None:
    """Only the first MAX_PHONES phones are considered, and the refusal's text stays short."""
    invalid = [CrmPhone(f"+1555555{n:04d}") for n in range(30_000)]
    script = Script(answer=CrmContact(phones=[*invalid, CrmPhone(VALID_US)]))
    async with make_resolver(script) as resolver:
        refusal = await refused(resolver)
        trace = await resolver.explain(LEAD)
    assert refusal.reason == "invalid_number"
    assert len(str(refusal)) <= 600
    assert len(trace.verdicts) == MAX_PHONES


async def test_a_huge_error_text_is_bounded_in_the_refusal() -> None:
    """A megabyte of exception text becomes a short detail."""
    script = Script(answer=AdapterUnavailable("x" * 1_000_000))
    async with make_resolver(script) as resolver:
        refusal = await refused(resolver)
    assert len(str(refusal)) <= 600


@pytest.mark.parametrize(
    ("given", "expected"),
    [(math.nan, None), (math.inf, None), (-5.0, None), (1e12, 86_400.0), (7.5, 7.5), ("9", 9.0)],
)
async def test_an_adapters_retry_after_is_sanitised(given: object, expected: float | None) -> None:
    """NaN, infinity or a negative wait is no hint; a huge one is clamped to a day."""
    error = AdapterUnavailable("down")
    error.retry_after = given  # type: ignore[assignment]  # as a careless adapter might
    async with make_resolver(Script(answer=error)) as resolver:
        refusal = await refused(resolver)
    assert refusal.retry_after == expected
    assert "nan" not in str(refusal)
    assert "inf" not in str(refusal)


@pytest.mark.parametrize("given", [math.nan, math.inf, -1.0])
def test_errors_built_with_an_unusable_retry_after_carry_none(given: float) -> None:
    """The errors themselves sanitise what they are given."""
    assert AdapterUnavailable("down", retry_after=given).retry_after is None
    refusal = Unresolvable("unavailable", retryable=True, retry_after=given)
    assert refusal.retry_after is None
    assert str(refusal) == "unavailable (retry later)"


def test_overlong_inputs_are_refused_before_the_memo() -> None:
    """Input longer than any phone number is refused without parsing and never memoised."""
    policy = PhonePolicy(default_region="US", memo_size=10)
    for n in range(20):
        with pytest.raises(InvalidPhoneNumber) as caught:
            policy.normalize(f"{n} " + "1" * 100_000)
        assert caught.value.reason == "too_long_input"
    padded = " " * (MAX_INPUT_LENGTH + 1) + VALID_US
    assert not policy.accepts(padded)
    assert policy.normalize(VALID_US) == VALID_US
    assert all(len(key) <= MAX_INPUT_LENGTH for key in policy._memo)


# -- masked and redacted -------------------------------------------------------------


SECRET = "sk_live_" + "a1b2c3d4" * 5


@pytest.mark.parametrize(
    "error",
    [
        AdapterAuthError(f"refused Bearer {SECRET} for +1 202 456 1111 (token={SECRET})"),
        AdapterRequestRejected(f"400 for {VALID_US}: api_key={SECRET}"),
        AdapterUnavailable(f"https://user:{SECRET}@crm.example/ answered 503 for {VALID_US}"),
        RuntimeError(f"Authorization: Bearer {SECRET} failed for {VALID_US}"),
    ],
    ids=["auth", "rejected", "unavailable", "unexpected"],
)
async def test_adapter_text_is_redacted_in_logs_and_refusals(
    error: Exception, caplog: pytest.LogCaptureFixture
) -> None:
    """Numbers and credentials in an adapter's exception reach neither the logs (at any
    level, tracebacks included) nor the refusal's text."""
    with caplog.at_level(logging.DEBUG, logger="predial"):
        async with make_resolver(Script(answer=error)) as resolver:
            refusal = await refused(resolver)
    for text in (caplog.text, str(refusal), refusal.detail or ""):
        assert SECRET not in text
        assert "2024561111" not in text
        assert "456 1111" not in text


def test_reprs_mask_numbers() -> None:
    """Resolutions, contacts and phones show masked numbers in their reprs."""
    shown = [
        repr(Resolution(VALID_US, "crm", "cmp", "ext-1")),
        repr(CrmContact(phones=[CrmPhone(VALID_US, "mobile", True)])),
        repr(CrmPhone(VALID_US)),
    ]
    for text in shown:
        assert VALID_US not in text
        assert mask_phone(VALID_US) in text


def test_reprs_survive_values_that_cannot_be_shown() -> None:
    """A contact holding unprintable values still has a repr."""
    contact = CrmContact(phones=[CrmPhone(Unprintable(), Unprintable())])  # type: ignore[arg-type]
    assert "CrmPhone" in repr(contact)


def test_mask_phone_never_raises() -> None:
    """An object whose text raises is masked as '***'."""
    assert mask_phone(Unprintable()) == "***"
    assert mask_phone(Treacherous(VALID_US)) == mask_phone(VALID_US)


# -- found by hostile review -----------------------------------------------------------


class ExitingText(AdapterUnavailable):
    """An error whose text raises SystemExit."""

    def __str__(self) -> str:
        raise SystemExit(3)


class ExitingFloat:
    """A retry_after whose number raises SystemExit."""

    def __float__(self) -> float:
        raise SystemExit(4)


@pytest.mark.parametrize("adapter", ["scripted", "scripted-sync"])
def test_an_error_whose_text_raises_system_exit_leaves_resolve_sync_serving(adapter: str) -> None:
    """Reading the text or retry_after of an adapter's error may raise anything: off the
    main thread it is the adapter's failure, and resolve_sync's loop keeps serving."""
    odd = AdapterUnavailable("down")
    odd.retry_after = ExitingFloat()  # type: ignore[assignment]
    answers = iter([ExitingText("x"), odd, VALID_US])
    script = Script(answer=lambda external_id: next(answers))
    with make_resolver(script, adapter=adapter, deadline=1.0) as resolver:
        for _ in range(2):
            with pytest.raises(Unresolvable) as caught:
                resolver.resolve_sync(LEAD)
            assert caught.value.retryable
        assert resolver.resolve_sync(LEAD).phone_number == VALID_US
    assert len(script.calls) == 3


async def self_cancelling(external_id: str) -> str:
    """An adapter that cancels the task it runs in."""
    task = asyncio.current_task()
    assert task is not None
    task.cancel()
    await asyncio.sleep(0.01)
    return VALID_US


async def test_an_adapter_that_cancels_its_own_task_is_an_adapter_error() -> None:
    """An adapter cancelling the task it runs in: the callers get adapter_error, not a
    cancellation they never asked for, and resolve_many fills every slot."""

    leads = [Lead(campaign_id="cmp", external_id=external_id) for external_id in "ab"]
    async with make_resolver(Script()) as resolver:
        resolver.campaigns["cmp"].adapter.fetch_phone = self_cancelling
        refusal = await refused(resolver)
        results = await asyncio.wait_for(resolver.resolve_many(leads), HANG)
    assert refusal.reason == "adapter_error"
    assert all(isinstance(result, Unresolvable) for result in results)


async def test_closing_the_resolver_cancels_fetches_left_running() -> None:
    """A fetch its adapter kept running past the deadline is cancelled at close()."""
    ended = asyncio.Event()

    async def swallow_once(external_id: str) -> str:
        with contextlib.suppress(asyncio.CancelledError):  # the deadline's: swallowed
            await asyncio.sleep(60)
        try:
            await asyncio.sleep(60)  # close()'s is not
        finally:
            ended.set()
        return VALID_US

    resolver = make_resolver(Script(), deadline=0.2)
    resolver.campaigns["cmp"].adapter.fetch_phone = swallow_once
    assert (await refused(resolver)).reason == "timeout"
    assert not ended.is_set()
    await resolver.close()
    assert ended.is_set()
    await asyncio.to_thread(resolver._loop_thread.stop)


def test_nan_and_infinite_settings_are_refused() -> None:
    """A deadline, TTL or breaker time that is NaN is a clear error, not a hang."""
    from predial import BreakerSettings, RetrySettings

    with pytest.raises(ValueError, match="deadline"):
        make_resolver(deadline=math.nan)
    with pytest.raises(ValueError, match="deadline"):
        make_resolver(deadline=math.inf)
    with pytest.raises(ValueError, match="positive_ttl"):
        CacheSettings(positive_ttl=math.nan)
    with pytest.raises(ValueError, match="open_for"):
        BreakerSettings(open_for=math.nan)
    with pytest.raises(ValueError, match="backoff"):
        RetrySettings(initial=math.nan)


async def test_a_trace_marks_the_call_cut_off_at_the_deadline() -> None:
    """explain() records the call that was still running at the deadline as such."""
    async with make_resolver(Script(delay=5.0), deadline=0.2) as resolver:
        trace = await resolver.explain(LEAD)
    assert trace.refusal is not None
    assert trace.refusal.reason == "timeout"
    assert trace.attempts[-1].error == "no answer within the deadline"
    assert trace.attempts[-1].duration >= 0.15


def test_trace_and_cache_reprs_mask_numbers() -> None:
    """Every repr that can reach a log masks numbers: traces, attempts, verdicts, cache
    entries, a lead's metadata."""
    from predial._cache import CacheEntry
    from predial._trace import Attempt, PhoneVerdict, Trace

    trace = Trace(Lead(campaign_id="cmp", external_id="x", metadata={"alt": VALID_US_2}))
    trace.attempts.append(Attempt(1, 0.0, 0.1, raw=VALID_US, error=f"no {VALID_US_2}"))
    trace.verdicts.append(PhoneVerdict(VALID_US, "mobile", True, VALID_US))
    shown = [repr(trace), repr(CacheEntry(VALID_US, None, 1.0, 2.0))]
    for text in shown:
        assert VALID_US not in text
        assert VALID_US_2 not in text


class PasswordAdapter:
    """An adapter with a credential setting, whose errors quote it."""

    name = "with-password"

    def __init__(self, password: str) -> None:
        self.password = password

    async def fetch_phone(self, external_id: str) -> str:
        raise AdapterAuthError(f"login with {self.password} refused")


class PasswordPlugin:
    @predial.hookimpl
    def register_adapters(self, register: predial.AdapterRegister) -> None:
        register(PasswordAdapter)


def test_campaign_secrets_are_redacted_by_value(caplog: pytest.LogCaptureFixture) -> None:
    """A campaign's password quoted by its adapter is redacted though it looks like a word."""
    campaign = predial.Campaign("cmp", "with-password", {"password": "pa55word!x"})
    resolver = predial.Resolver([campaign], plugins=[PasswordPlugin()], load_entrypoints=False)
    with (
        caplog.at_level(logging.ERROR, logger="predial"),
        resolver,
        pytest.raises(Unresolvable) as caught,
    ):
        resolver.resolve_sync(LEAD)
    assert "pa55word!x" not in caplog.text
    assert "pa55word!x" not in str(caught.value)


# -- found by the second hostile review ---------------------------------------------------


def test_an_adapter_stopping_resolve_syncs_loop_does_not_end_it() -> None:
    """An adapter calling loop.stop() on resolve_sync's private loop: the loop goes on,
    later resolves answer, and close_sync() returns."""

    async def stopper(external_id: str) -> str:
        if external_id == "stop":
            asyncio.get_running_loop().stop()
            await asyncio.sleep(0.05)
        return VALID_US

    resolver = make_resolver(Script(), deadline=1.0)
    resolver.campaigns["cmp"].adapter.fetch_phone = stopper
    # The lead that stopped the loop may fail; the ones after it must not.
    with contextlib.suppress(Unresolvable, RuntimeError):
        resolver.resolve_sync(Lead(campaign_id="cmp", external_id="stop"))
    started = time.monotonic()
    assert resolver.resolve_sync(LEAD).phone_number == VALID_US
    assert time.monotonic() - started < 1.0
    closer = threading.Thread(target=resolver.close_sync)
    closer.start()
    closer.join(10)
    assert not closer.is_alive()


async def test_a_cancelled_error_raised_while_reading_an_answer_is_the_adapters() -> None:
    """Reading an answer is synchronous: a CancelledError it raises is the adapter's,
    even in a dialer task that once swallowed a cancellation of its own."""

    class Cancelling:
        def __bool__(self) -> bool:
            raise asyncio.CancelledError

    script = Script(answer=CrmContact(phones=[CrmPhone(VALID_US)], do_not_call=Cancelling()))  # type: ignore[arg-type]
    async with make_resolver(script) as resolver:
        task = asyncio.current_task()
        assert task is not None
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.sleep(0)  # the pre-3.11 idiom: swallowed, cancelling() stays 1
        assert task.cancelling() == 1
        with pytest.raises(Unresolvable) as caught:
            await resolver.resolve(LEAD)  # in this very task
    assert caught.value.reason == "adapter_error"


async def test_explain_reports_an_adapter_cancelling_its_task_as_an_adapter_error() -> None:
    """predial check does not call a self-cancelling adapter a timeout."""

    async with make_resolver(Script(), deadline=1.0) as resolver:
        resolver.campaigns["cmp"].adapter.fetch_phone = self_cancelling
        trace = await resolver.explain(LEAD)
    assert trace.refusal is not None
    assert trace.refusal.reason == "adapter_error"


async def test_an_export_settling_does_not_hold_other_campaigns(tmp_path: Any) -> None:
    """Lookups waiting for one export to settle wait on the event loop, not in worker
    threads: another campaign's export is served meanwhile."""
    settling = tmp_path / "a.csv"
    settling.write_text("id,phone\nA-1,+1202456")  # fresh, and cut mid-line
    healthy = tmp_path / "b.csv"
    healthy.write_text(f"id,phone\nB-1,{VALID_US}\n")
    resolver = predial.Resolver(
        [
            predial.Campaign("a", "file", {"path": str(settling), "settle_time": 2}),
            predial.Campaign("b", "file", {"path": str(healthy)}, default_region="US"),
        ],
        deadline=1.0,
    )
    async with resolver:
        waiting = [
            asyncio.create_task(resolver.resolve(Lead(campaign_id="a", external_id=f"A-{n}")))
            for n in range(12)
        ]
        await asyncio.sleep(0.1)
        resolution = await resolver.resolve(Lead(campaign_id="b", external_id="B-1"))
        await asyncio.gather(*waiting, return_exceptions=True)
    assert resolution.phone_number == VALID_US
