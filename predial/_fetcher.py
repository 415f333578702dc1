"""One campaign's adapter at run time: the call, its deadline, retries and breaker.

`CampaignRuntime.fetch` never raises for anything an adapter does: every
failure becomes an `Outcome` the resolver can act on, and an adapter that raises
something unexpected is logged with its plugin's name and treated as unavailable.
"Anything" is meant: `BaseException` subclasses such as `GeneratorExit`, and a
`CancelledError` the adapter raised on its own, are the adapter's failure too; only
the calling task's own cancellation and an interrupt in the main thread propagate
(`predial._faults.is_adapter_fault`).
Text the adapter supplied (exception messages) is redacted before it is logged
or kept in a refusal's detail.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import time
import traceback
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from ._breaker import BreakerSettings, CircuitBreaker
from ._cache import CacheSettings
from ._campaign import Campaign, RetrySettings
from ._faults import is_adapter_fault
from ._http import backoff, retry_after_hint
from ._phone import PhonePolicy
from ._redaction import redact, safe_text
from ._selection import Outcome, interpret
from ._stats import StatsRecorder
from ._threads import DaemonThreadPool, RaisedInThread
from ._trace import Attempt, Trace
from .errors import (
    AdapterAuthError,
    AdapterRateLimited,
    AdapterRequestRejected,
    AdapterUnavailable,
    BadBatchAnswer,
    CircuitOpen,
    ConfigurationError,
    RecordNotFound,
)

if TYPE_CHECKING:
    from .metrics import ResolverMetrics
    from .shared._breaker import SharedBreaker

__all__ = ["Answer", "CampaignRuntime"]

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Answer:
    """What the adapter returned, before interpretation."""

    raw: object


class Calling(Protocol):
    """Told when the adapter is being called (a flight, for its deadline's cut)."""

    calling: bool


def _described(error: BaseException) -> str:
    """`Type: message` of an adapter's exception, safe to keep (bounded, never raising)."""
    return redact(f"{type(error).__name__}: {safe_text(error)}", show_numbers=True, limit=2000)


class CampaignRuntime:
    """A campaign with its constructed adapter, phone policy and circuit breaker."""

    def __init__(
        self,
        campaign: Campaign,
        adapter: Any,
        *,
        plugin: str,
        policy: PhonePolicy,
        label_preference: Sequence[str],
        deadline: float,
        retry: RetrySettings,
        breaker: BreakerSettings,
        pool: DaemonThreadPool,
        stats: StatsRecorder,
        error: ConfigurationError | None = None,
        clock: Callable[[], float] = time.monotonic,
        cache: CacheSettings | None = None,
    ) -> None:
        self.campaign = campaign
        #: The campaign's compliance gate settings, or None (read on every resolve).
        self.compliance = campaign.compliance_settings
        self.adapter = adapter
        self.adapter_name = campaign.adapter
        self.plugin = plugin
        self.policy = policy
        self.label_preference = tuple(label.lower() for label in label_preference)
        self.deadline = deadline
        self.retry = retry
        self.breaker = CircuitBreaker(breaker, timer=clock)
        self.error = error
        self.cache_settings = cache or CacheSettings()
        self._pool = pool
        self._stats = stats
        fetch = getattr(adapter, "fetch_phone", None)
        self.is_async = fetch is not None and inspect.iscoroutinefunction(fetch)
        batch = getattr(adapter, "fetch_phones", None)
        self.fetch_batch = batch if callable(batch) else None
        #: How many ids one `fetch_phones` call may take (the CRM's batch limit).
        self.batch_size = max(1, int(getattr(adapter, "batch_size", 100)))
        self.metrics: ResolverMetrics | None = None
        #: The fleet's breaker for this campaign, when the resolver has a shared tier.
        self.shared_breaker: SharedBreaker | None = None

    async def _call(self, external_id: str) -> object:
        if self.is_async:
            return await self.adapter.fetch_phone(external_id)
        future = self._pool.submit(self.adapter.fetch_phone, external_id)
        result = await asyncio.wrap_future(future)
        if inspect.isawaitable(result):
            if inspect.iscoroutine(result):
                result.close()
            raise TypeError("a sync fetch_phone returned an awaitable; declare it async def")
        return result

    async def fetch_many(self, external_ids: Sequence[str]) -> Mapping[str, object]:
        """One `fetch_phones` call: the adapter's answers by id (an id left out is asked
        alone later). Raises what the adapter raises; the breaker hears of it."""
        assert self.fetch_batch is not None
        allowed, wait = await self.allow()
        if not allowed:
            raise CircuitOpen("circuit open", retry_after=wait)
        started = time.monotonic()
        self._stats.adapter_calls += 1
        awaiting = asyncio.current_task()
        try:
            if inspect.iscoroutinefunction(self.fetch_batch):
                answers = await self.fetch_batch(list(external_ids))
            else:
                future = self._pool.submit(self.fetch_batch, list(external_ids))
                answers = await asyncio.wrap_future(future)
        except RecordNotFound:
            # The batch endpoint found none of them (some answer a 404): each id is
            # then asked alone, which says which are really missing.
            if self.metrics is not None:
                self._observe_call("not_found", started)
            self.record_success(time.monotonic() - started)
            return {}
        except BaseException as error:
            if not is_adapter_fault(error, awaiting):
                raise
            if self.metrics is not None:
                self._observe_call(call_outcome(error), started)
            self.record_failure()
            if isinstance(error, Exception):
                raise
            # A GeneratorExit or a stray cancellation: the batch failed, nothing more.
            raise RuntimeError(f"fetch_phones raised {type(error).__name__}") from error
        if not isinstance(answers, Mapping):
            self.record_failure()
            raise BadBatchAnswer(
                f"fetch_phones must return a mapping of id to answer, not {type(answers).__name__}"
            )
        try:
            # Read once, here: a mapping of the adapter's own may raise on any look-up.
            wanted = {key: answers[key] for key in external_ids if key in answers}
        except BaseException as error:
            if not is_adapter_fault(error):
                raise
            self.record_failure()
            raise BadBatchAnswer(
                f"fetch_phones returned a mapping that cannot be read ({type(error).__name__})"
            ) from error
        if self.metrics is not None:
            self._observe_call("ok", started)
        self.record_success(time.monotonic() - started)
        return wanted

    async def allow(self) -> tuple[bool, float]:
        """May the adapter be called now, and if not, in how many seconds? The
        fleet's breaker decides while the shared tier is up, the local one otherwise."""
        if self.shared_breaker is not None:
            verdict = await self.shared_breaker.allow()
            if verdict is not None:
                return verdict
        if self.breaker.allow():
            return True, 0.0
        return False, self.breaker.retry_after()

    def record_success(self, duration: float) -> None:
        self.breaker.record_success(duration)
        if self.shared_breaker is not None:
            slow = self.breaker.settings.slow_call
            self.shared_breaker.record(slow is None or duration <= slow)

    def record_failure(self) -> None:
        self.breaker.record_failure()
        if self.shared_breaker is not None:
            self.shared_breaker.record(False)

    def timed_out(self, *, crm: bool = True) -> Outcome:
        """The outcome of a fetch cut off at its deadline (or timed out by the
        adapter); with `crm` False the CRM was not being called (the wait was for
        another process's call), so the breaker does not count it."""
        if crm:
            self.record_failure()
        self._stats.adapter_errors["timeout"] += 1
        return Outcome.failed("timeout")

    async def fetch(
        self, external_id: str, deadline_at: float, trace: Trace | None = None
    ) -> Outcome:
        """Ask the adapter and interpret its answer (`fetch_raw`, then `finish`)."""
        return self.finish(await self.fetch_raw(external_id, deadline_at, trace), trace)

    def finish(self, answer: Answer | Outcome, trace: Trace | None = None) -> Outcome:
        """Pick a number from the adapter's answer and apply the phone policy."""
        if isinstance(answer, Outcome):
            return answer
        try:
            return interpret(
                answer.raw,
                self.policy,
                self.label_preference,
                trace.verdicts if trace is not None else None,
            )
        except BaseException as error:
            # Not only a wrong type: a flag whose __bool__ raises (a numpy array), a
            # phone whose __str__ or __eq__ does. Whatever it is, it is the adapter's
            # answer that failed, and the dial gets "retry later", never a crash.
            if not is_adapter_fault(error):
                raise
            detail = redact(_described(error))
            self._stats.adapter_errors["bad_return"] += 1
            log.error(
                "campaign %s: adapter %r (plugin %s) returned an unusable value: %s",
                self.campaign.id,
                self.adapter_name,
                self.plugin,
                detail,
            )
            return Outcome.failed("adapter_error", detail=detail)

    async def fetch_raw(
        self,
        external_id: str,
        deadline_at: float,
        trace: Trace | None = None,
        calling: Calling | None = None,
    ) -> Answer | Outcome:
        """Ask the adapter, retrying within `deadline_at` (a `time.monotonic()` instant).

        Returns the adapter's raw `Answer`, or the `Outcome` of its failure. The caller
        bounds the whole call by the deadline. With a `trace`, every attempt is
        recorded in it (`predial check`).
        """
        if self.error is not None or self.adapter is None:
            if trace is not None:
                trace.notes.append(f"campaign misconfigured: {self.error}")
            return Outcome.failed("campaign_misconfigured", detail=str(self.error))
        stats = self._stats
        awaiting = asyncio.current_task()
        attempt = 0
        while True:
            allowed, wait = await self.allow()
            if not allowed:
                if trace is not None:
                    trace.notes.append("circuit open: the adapter was not called")
                return Outcome.failed("circuit_open", retry_after=wait)
            remaining = deadline_at - time.monotonic()
            if remaining <= 0:
                return Outcome.failed("timeout")
            started = time.monotonic()
            stats.adapter_calls += 1
            record = None
            if trace is not None:
                record = Attempt(len(trace.attempts) + 1, started - trace.started, 0.0)
                trace.attempts.append(record)
            if calling is not None:
                # Only a cut while the adapter runs is the CRM's (the breaker's
                # round trip before it, or a wait on another process, is not).
                calling.calling = True
            try:
                raw = await self._call(external_id)
            except BaseException as error:
                if not is_adapter_fault(error, awaiting):
                    if self.metrics is not None:  # cut off at the deadline
                        self._observe_call("timeout", started)
                    raise  # (still `calling`: the deadline's cut is the CRM's)
                if calling is not None:
                    calling.calling = False
                if self.metrics is not None:
                    self._observe_call(call_outcome(error), started)
                if record is not None:
                    record.duration = time.monotonic() - started
                    record.error = _described(error)  # masked where it is shown
                    record.retry_after = _retry_after(error)
                outcome, wait = self._failure(error, started, deadline_at, attempt + 1)
                if outcome is not None:
                    return outcome
                attempt += 1
                if record is not None:
                    record.wait = wait
                await asyncio.sleep(wait)
                continue
            if calling is not None:
                calling.calling = False
            if record is not None:
                record.duration = time.monotonic() - started
                record.raw = raw
            if self.metrics is not None:
                self._observe_call("ok", started)
            self.record_success(time.monotonic() - started)
            return Answer(raw)

    def _observe_call(self, outcome: str, started: float) -> None:
        assert self.metrics is not None
        self.metrics.on_crm_call(self.campaign.id, outcome, time.monotonic() - started)

    def _failure(
        self, error: BaseException, started: float, deadline_at: float, attempt: int
    ) -> tuple[Outcome | None, float]:
        """What an adapter's exception comes to: an outcome, or (None, wait) to retry."""
        stats = self._stats
        if isinstance(error, RecordNotFound):
            self.record_success(time.monotonic() - started)
            return Outcome.permanent("not_found"), 0.0
        if isinstance(error, TimeoutError):  # the adapter's own timeout (a socket's, say)
            return self.timed_out(), 0.0
        if not _refused_by_predial(error):
            # predial's own budget refusing a call is not the CRM failing.
            self.record_failure()
        if isinstance(error, AdapterAuthError):
            stats.adapter_errors["auth_error"] += 1
            detail = redact(safe_text(error))
            log.error(
                "campaign %s: adapter %r (plugin %s) was refused by the CRM: %s",
                self.campaign.id,
                self.adapter_name,
                self.plugin,
                detail,
            )
            return Outcome.failed("auth_error", detail=detail), 0.0
        if isinstance(error, AdapterRequestRejected):
            stats.adapter_errors["rejected"] += 1
            detail = redact(safe_text(error))
            log.error(
                "campaign %s: adapter %r (plugin %s): %s; not retried",
                self.campaign.id,
                self.adapter_name,
                self.plugin,
                detail,
            )
            return Outcome.failed("adapter_error", detail=detail), 0.0
        if _refused_by_predial(error):
            # predial refused the call itself (the tenant's budget spent, its daily
            # quota paused): the CRM was not called.
            # Waiting for a slot inside the dial would spend its deadline (and a
            # call started late would be cut off, as if the CRM were slow); the
            # dialer is told when to come back instead.
            stats.adapter_errors["rate_limited"] += 1
            detail = redact(safe_text(error))
            return Outcome.failed("unavailable", _retry_after(error), detail=detail), 0.0
        if isinstance(error, AdapterUnavailable):
            stats.adapter_errors["unavailable"] += 1
            retry_after = _retry_after(error)
            wait = backoff(attempt, self.retry.initial, self.retry.maximum)
            if retry_after is not None:
                wait = max(wait, retry_after)
            if attempt >= self.retry.attempts or wait >= deadline_at - time.monotonic():
                # Out of attempts, or the wait would not fit in the deadline: the
                # CRM's own retry_after becomes the dialer's verdict.
                detail = redact(safe_text(error))
                return Outcome.failed("unavailable", retry_after, detail=detail), 0.0
            log.debug(
                "campaign %s: adapter %r unavailable (attempt %d), retrying in %.3fs",
                self.campaign.id,
                self.adapter_name,
                attempt,
                wait,
            )
            return None, wait
        stats.adapter_errors["unexpected"] += 1
        log.error(
            "campaign %s: adapter %r (plugin %s) raised %s; treated as unavailable "
            "(traceback at DEBUG level)",
            self.campaign.id,
            self.adapter_name,
            self.plugin,
            _raised(error),
        )
        if log.isEnabledFor(logging.DEBUG):
            # The traceback helps the adapter's author; exception texts of HTTP
            # libraries can hold URLs with credentials, so it is redacted too.
            log.debug("adapter %r traceback:\n%s", self.adapter_name, redacted_traceback(error))
        return Outcome.failed("adapter_error", detail=_raised(error)), 0.0


def _refused_by_predial(error: BaseException) -> bool:
    """predial refused the call itself: the CRM was not called."""
    return isinstance(error, AdapterRateLimited) and (
        error.scope == "client" or getattr(error, "called", True) is False
    )


def call_outcome(error: BaseException) -> str:
    """The `outcome` label of an adapter call that raised `error`."""
    if isinstance(error, RecordNotFound):
        return "not_found"
    if isinstance(error, TimeoutError):
        return "timeout"
    if isinstance(error, AdapterAuthError):
        return "auth_error"
    if isinstance(error, AdapterRequestRejected):
        return "rejected"
    if isinstance(error, AdapterRateLimited):
        return "rate_limited"
    if isinstance(error, AdapterUnavailable):
        return "unavailable"
    return "error"


def _raised(error: BaseException) -> str:
    """An unexpected exception by its type (and what it wraps): its text may hold
    anything, and the type is what tells the adapter's author where to look."""
    name = type(error).__name__
    cause = error.__cause__
    if isinstance(error, RaisedInThread) and cause is not None:
        return f"{type(cause).__name__} (in its worker thread)"
    return name


def _retry_after(error: BaseException) -> float | None:
    """The error's `retry_after`, if it has a usable one (an adapter may set anything)."""
    try:
        value = getattr(error, "retry_after", None)
    except BaseException as failure:
        if not is_adapter_fault(failure):
            raise
        return None
    return retry_after_hint(value)


def redacted_traceback(error: BaseException) -> str:
    """`error`'s traceback, redacted (numbers masked, credentials removed), each line
    behind `| ` so that no line of it passes for a log line of its own."""
    try:
        lines = traceback.format_exception(error)
    except BaseException as failure:
        if not is_adapter_fault(failure):
            raise
        return f"| <the traceback of {type(error).__name__} could not be formatted>"
    # Whole, not line by line: a credential split across lines (`password:` then the
    # value on the next) is still one credential.
    text = redact("".join(lines).rstrip("\n"), keep_newlines=True, limit=20_000)
    return "| " + text.replace("\n", "\n| ")
