"""The just-in-time resolver: the number to dial for a lead, right before dialling.

```
standard lead ───────────────────────────────► policy(stored) ─► Resolution(stored)
prefetch/both ─► cache ─ fresh ─► Resolution(cache)
                   │ miss: one in-flight fetch per (campaign, external id)
                   ▼
            breaker ─► adapter.fetch_phone (deadline, retries) ─► pick ─► policy ─► cache
              number ───────────────────────────────────────────► Resolution(crm)
              not found / no number / invalid ─► stored? ─► Resolution(stored) | Unresolvable(skip)
              do-not-call ─────────────────────────────────────► Unresolvable(skip)
              unavailable / timeout / open ─► stale? ─► stored? ─► Unresolvable(retry)
```

Nothing leaves the resolver that the campaign's phone policy did not accept.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import functools
import logging
import math
import os
import time
import weakref
from collections.abc import Awaitable, Callable, Coroutine, Iterable, Mapping, Sequence
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from time import perf_counter
from types import TracebackType
from typing import TYPE_CHECKING, Any, cast

from ._background import Background
from ._breaker import BreakerSettings
from ._cache import CacheEntry, CacheKey, CacheSettings, CacheTier, MemoryCache
from ._campaign import Campaign, RetrySettings
from ._config import secret_values
from ._decision import current_decision
from ._faults import is_adapter_fault, retrieve_exception
from ._fetcher import Answer, CampaignRuntime, redacted_traceback
from ._flight import Flight, start_task
from ._models import Lead, Resolution, parse_lead
from ._phone import mask_phone
from ._plugins import PluginRegistry, load_plugins
from ._redaction import redact, register_secret
from ._selection import DEFAULT_LABEL_PREFERENCE, Outcome
from ._settings import settings_error
from ._stats import ResolverStats, StatsRecorder
from ._tenants import Tenants
from ._threads import DaemonThreadPool, LoopThread
from ._trace import Trace
from ._warm import WarmReport
from ._warm import warm as warm_leads
from .adapters import close_adapter
from .compliance._gate import Compliance, ComplianceGate, GateResult
from .errors import (
    ConfigurationError,
    InvalidLead,
    InvalidPhoneNumber,
    UnknownAdapter,
    UnknownCampaign,
    Unresolvable,
)
from .shared._codec import Message, encode_body, encode_message

if TYPE_CHECKING:
    from ._config import PredialConfig
    from .compliance._audit import AuditLog
    from .compliance._gate import CapCounter
    from .metrics import ResolverMetrics
    from .shared._redis import Lookup, RedisTier

__all__ = ["Resolver"]

log = logging.getLogger(__name__)


class Resolver:
    """Resolves leads to dialable E.164 numbers; one per dialer process.

    `campaigns` name each campaign's adapter; `plugins` registers extra plugin
    objects or modules without entry points. `deadline` (seconds) bounds each
    `resolve`, adapter retries included. With `strict=False` a campaign whose
    adapter cannot be set up does not stop the others: its prefetch leads are
    refused as retryable (`campaign_misconfigured`) until the configuration is fixed.
    Campaigns whose adapters name one CRM `tenant` share its rate budget and
    daily-quota pause through `tenants` (default: the resolver's own; another
    resolver in the process does not share them unless given the same object).
    """

    def __init__(
        self,
        campaigns: Iterable[Campaign],
        plugins: Iterable[object] = (),
        deadline: float = 3.0,
        *,
        cache: CacheSettings | None = None,
        cache_tier: CacheTier | None = None,
        retry: RetrySettings | None = None,
        breaker: BreakerSettings | None = None,
        label_preference: Sequence[str] = DEFAULT_LABEL_PREFERENCE,
        load_entrypoints: bool = True,
        registry: PluginRegistry | None = None,
        strict: bool = True,
        max_adapter_threads: int = 32,
        clock: Callable[[], float] = time.monotonic,
        shared: RedisTier | None = None,
        tenants: Tenants | None = None,
        dnc_dir: str | os.PathLike[str] | None = None,
        audit: AuditLog | None = None,
        wall_clock: Callable[[], datetime] | None = None,
        cap_counter: CapCounter | None = None,
    ) -> None:
        if not deadline > 0 or deadline == math.inf:  # NaN compares false
            raise ValueError("deadline must be a finite number of seconds > 0")
        self.deadline = deadline
        self.cache_settings = cache or CacheSettings()
        self._clock = clock
        self._cache: CacheTier = cache_tier or MemoryCache(self.cache_settings.maxsize, clock)
        self._stats = StatsRecorder()
        self._pool = DaemonThreadPool(max_adapter_threads)
        self._loop_thread = LoopThread()
        # One table of in-flight fetches per event loop: resolve_sync callers run on
        # the resolver's own loop, async callers on theirs, and futures are loop-bound.
        self._inflight: weakref.WeakKeyDictionary[
            asyncio.AbstractEventLoop, dict[CacheKey, Flight[Answer | Outcome, Outcome]]
        ] = weakref.WeakKeyDictionary()
        self._last_loop: asyncio.AbstractEventLoop | None = None
        self._last_flights: dict[CacheKey, Flight[Answer | Outcome, Outcome]] = {}
        # Fetch tasks past their deadline whose adapters run on (on whichever loop;
        # set operations are atomic), cancelled again at close().
        self._overdue: set[asyncio.Task[None]] = set()
        self._closed = False
        self._background = Background()
        # Do-not-call verdicts fetched while the shared tier was unavailable, not yet
        # written to it (see _fetch_shared).
        self._unshared_dnc: set[CacheKey] = set()
        self._metrics: ResolverMetrics | None = None
        if registry is None:
            self.registry = load_plugins(plugins, entrypoints=load_entrypoints)
        else:
            self.registry = registry
            for plugin in plugins:
                registry.add_explicit(plugin)
        retry = retry or RetrySettings()
        #: The CRM tenants named by the campaigns, each shared by its campaigns.
        self.tenants = tenants if tenants is not None else Tenants()
        self.campaigns: dict[str, CampaignRuntime] = {}
        for campaign in campaigns:
            if campaign.id in self.campaigns:
                raise ConfigurationError(f"campaign {campaign.id!r} is configured twice")
            adapter, plugin, error = self._build_adapter(campaign)
            if error is not None:
                if strict:
                    raise error
                log.error("%s", error)
            self.campaigns[campaign.id] = CampaignRuntime(
                campaign,
                adapter,
                plugin=plugin,
                policy=campaign.phone_policy(),
                label_preference=campaign.label_preference or label_preference,
                deadline=campaign.deadline or deadline,
                retry=retry,
                # Slow calls are judged against the campaign's own deadline.
                breaker=breaker or BreakerSettings(slow_call=(campaign.deadline or deadline) / 2),
                pool=self._pool,
                stats=self._stats,
                error=error,
                clock=clock,
                cache=campaign.cache or self.cache_settings,
            )
        #: The shared tier (`RedisTier`), when a fleet shares one cache, flight,
        #: rate budget and breaker; None for a resolver of its own.
        self.shared = shared
        if shared is not None:
            self._share(shared)
        #: The audit log every decision is written to, when one is configured.
        self.audit = audit
        self._gate = self._build_gate(dnc_dir, wall_clock, cap_counter)

    def _share(self, shared: RedisTier) -> None:
        from .shared._breaker import SharedBreaker

        if shared.on_do_not_call is not None:
            raise ConfigurationError(
                "this RedisTier already serves another Resolver: give each resolver a "
                "RedisTier of its own (they share the Redis server, not the object)"
            )
        shared.on_do_not_call = self._heard_do_not_call
        shared.on_breaker = self._heard_breaker
        for campaign_id, runtime in self.campaigns.items():
            runtime.shared_breaker = SharedBreaker(
                shared, campaign_id, runtime.breaker, runtime.deadline
            )
            share_limits = getattr(runtime.adapter, "share_limits", None)
            if callable(share_limits):
                share_limits(shared, f"campaign:{campaign_id}")

    def _build_gate(
        self,
        dnc_dir: str | os.PathLike[str] | None,
        wall_clock: Callable[[], datetime] | None,
        counter: CapCounter | None,
    ) -> ComplianceGate | None:
        """The compliance gate, when a campaign opted in; its lists, sources and cap
        counter checked now, so a missing list fails at start-up, not at a dial."""
        settings = [
            (runtime.campaign, runtime.campaign.compliance_settings)
            for runtime in self.campaigns.values()
        ]
        opted = [(campaign, chosen) for campaign, chosen in settings if chosen is not None]
        if not opted:
            return None
        from .compliance._caps import MemoryCapCounter
        from .compliance._dnc_lists import DncLists
        from .compliance._dnc_sources import DncSources

        lists = None
        if any(chosen.dnc_lists for _, chosen in opted):
            if dnc_dir is None:
                users = ", ".join(campaign.where for campaign, c in opted if c.dnc_lists)
                raise ConfigurationError(
                    f"{users}: compliance names do-not-call lists but the resolver has no "
                    "dnc_dir: set [resolver.compliance] dnc_dir in predial.toml (or "
                    "Resolver(dnc_dir=...)), the folder `predial dnc` keeps them in"
                )
            lists = DncLists(Path(dnc_dir), clock=self._clock)
            _check_named(opted, "dnc_lists", lists.check_names)
        sources = None
        if any(chosen.dnc_sources for _, chosen in opted):
            sources = DncSources.from_registry(self.registry, pool=self._pool)
            _check_named(opted, "dnc_sources", sources.check_names)
        if counter is None:
            counter = self._shared_counter() or MemoryCapCounter()
        if wall_clock is not None:
            sample = wall_clock()
            if not isinstance(sample, datetime) or sample.utcoffset() is None:
                raise ConfigurationError(
                    "Resolver(wall_clock=...) must return an aware datetime "
                    f"(datetime.now(UTC)), not {sample!r}"
                )
        return ComplianceGate(
            lists=lists,
            sources=sources,
            counter=counter,
            wall_clock=wall_clock or _utc_now,
        )

    def _shared_counter(self) -> CapCounter | None:
        if self.shared is None:
            return None
        from .compliance._caps import RedisCapCounter

        return RedisCapCounter(self.shared)

    def _heard_breaker(self, campaign_id: str, state: str, seconds: float) -> None:
        runtime = self.campaigns.get(campaign_id)
        if runtime is not None and runtime.shared_breaker is not None:
            runtime.shared_breaker.heard(state, seconds)

    def _heard_do_not_call(self, campaign_id: str, external_id: str) -> None:
        """Another process learnt that the lead is do-not-call: drop what this one
        holds for it, so it is not dialled from this process's memory either."""
        runtime = self.campaigns.get(campaign_id)
        if runtime is None:
            return
        key = (campaign_id, external_id)
        held = self._cache.get(key)
        if held is not None and held.reason == "do_not_call":
            return
        self.store(runtime, key, Outcome.permanent("do_not_call"), share=False)

    @classmethod
    def from_config(
        cls,
        path: str | os.PathLike[str] | None = None,
        *,
        plugins: Iterable[object] = (),
        strict: bool = True,
        environ: Mapping[str, str] | None = None,
        **options: Any,
    ) -> Resolver:
        """A resolver built from a `predial.toml` (default: `$PREDIAL_CONFIG`, then
        `./predial.toml`). `options` override the file's resolver settings."""
        from ._config import find_config, load_config

        config = load_config(find_config(path), environ)
        return cls.from_loaded_config(config, plugins=plugins, strict=strict, **options)

    @classmethod
    def from_loaded_config(
        cls,
        config: PredialConfig,
        *,
        plugins: Iterable[object] = (),
        strict: bool = True,
        **options: Any,
    ) -> Resolver:
        """A resolver built from an already loaded `PredialConfig`.

        A plugin named in `[resolver] plugins` that fails (a missing file, one that
        raises at import, no hook) raises its `PluginLoadError` when `strict`; with
        `strict=False` it is recorded as failed, as an installed plugin's failure
        is, so only the campaigns needing its adapter are refused (naming it)."""
        where = str(config.path)
        campaigns = [
            replace(item.campaign(), origin=f"{where}: campaigns[{index}]")
            for index, item in enumerate(config.campaigns)
        ]
        registry = options.pop("registry", None)
        load_entrypoints = options.pop("load_entrypoints", True)
        if registry is None:
            registry = load_plugins(entrypoints=load_entrypoints)
        for info in registry.add_configured(config):
            if strict and info.exception is not None:
                raise info.exception
        return cls(
            campaigns,
            plugins=plugins,
            strict=strict,
            registry=registry,
            **{**config.resolver_options(), **options},
        )

    def _build_adapter(self, campaign: Campaign) -> tuple[Any, str, ConfigurationError | None]:
        # Credentials are known by value from here on: an adapter's error quoting one
        # (however it is shaped) is redacted in logs and refusals.
        for value in secret_values(campaign.settings):
            register_secret(value)
        try:
            spec = self.registry.adapter_spec(campaign.adapter)
        except UnknownAdapter as error:
            # The adapter may be in a plugin that failed to load: say which.
            failed = [p.source for p in self.registry.failures() if not p.adapters]
            note = f"plugins that failed to load: {', '.join(failed)}" if failed else None
            located = UnknownAdapter(
                error.name, error.installed, error.suggestion, f"{campaign.where}.adapter", note
            )
            return None, "?", located
        except ConfigurationError as error:
            return None, "?", error
        try:
            adapter = spec.cls(**dict(campaign.settings))
        except Exception as error:
            problem = settings_error(campaign, spec.cls, error)
            # The adapter's own exception, with its traceback, for --debug and -vv.
            problem.__cause__ = error
            return None, spec.plugin.source, problem
        join_tenants = getattr(adapter, "join_tenants", None)
        if callable(join_tenants):
            try:
                join_tenants(self.tenants, campaign)
            except ConfigurationError as error:
                # Built, so kept to be closed with the others; the campaign is refused.
                return adapter, spec.plugin.source, error
        return adapter, spec.plugin.source, None

    # -- resolving --------------------------------------------------------------

    async def resolve(self, lead: Lead | Mapping[str, Any]) -> Resolution:
        """The number to dial for `lead`, or `Unresolvable` with the verdict."""
        return await self._resolve(lead, gated=True)

    async def _resolve(self, lead: Lead | Mapping[str, Any], *, gated: bool) -> Resolution:
        """`resolve`; `gated=False` for `warm`, which fetches ahead of the dials and
        dials nothing: no compliance gate (no call is counted against a cap, and a
        night's warm-up is not refused for the hour)."""
        started = perf_counter()
        if not isinstance(lead, Lead):
            lead = self._parse(lead, None, started)
        if self._closed:
            raise RuntimeError("the resolver is closed")
        runtime = self.campaigns.get(lead.campaign_id)
        if runtime is None:
            raise self._unknown_campaign(lead, started)
        found = await self._find(lead, runtime, started)
        settings = runtime.compliance
        if settings is None or self._gate is None or not gated:
            return self._done(found, started)
        if not settings.dnc_sources:
            # The common case, without a coroutine: lists and windows need no await.
            now = self._gate.check_now(settings, found.phone_number, lead.metadata)
            if isinstance(now, GateResult):
                return self._passed(lead, runtime, found, started, now)
            counted = await self._gate.admit(found.phone_number, now)  # a capped number
            return self._passed(lead, runtime, found, started, counted)
        return await self._pass(lead, runtime, found, started)

    async def _find(self, lead: Lead, runtime: CampaignRuntime, started: float) -> Resolution:
        """The number the lead's sources give (CRM, cache, stale, stored), not yet
        through the compliance gate nor counted; or the refusal, counted."""
        external_id = lead.external_id
        if external_id is None:
            return self._standard(lead, runtime, started)

        key = (lead.campaign_id, external_id)
        entry = self._cache.get(key)
        metrics = self._metrics
        if entry is not None and self._serves(entry):
            self._stats.hits += 1
            if metrics is not None:
                metrics.on_cache(lead.campaign_id, True)
            if entry.phone_number is not None:
                return Resolution(
                    entry.phone_number,
                    "cache",
                    lead.campaign_id,
                    external_id,
                    runtime.adapter_name,
                    None,
                    perf_counter() - started,
                )
            return self._permanent(lead, runtime, entry.reason or "not_found", started)

        self._stats.misses += 1
        if metrics is not None:
            metrics.on_cache(lead.campaign_id, False)
        outcome = await self._shared_fetch(runtime, key, started)
        return self._after_fetch(lead, runtime, key, outcome, started)

    def _serves(self, entry: CacheEntry) -> bool:
        """Whether the local tier may answer with `entry` without asking further."""
        now = self._clock()
        if now >= entry.fresh_until:
            return False
        # Past its local time, ask the shared tier again, unless it is unavailable.
        return now < entry.local_until or self.shared is None or not self.shared.up

    async def explain(self, lead: Lead | Mapping[str, Any]) -> Trace:
        """Resolve `lead` once, bypassing the cache, and record every step.

        For operators and adapter authors (`predial check`): each adapter attempt
        with its timing and raw answer, the policy's verdict on each phone, and the
        resolution or refusal. The cache is read only for a stale fallback and is
        not written.
        """
        lead = parse_lead(lead)
        trace = Trace(lead)
        started = perf_counter()
        runtime = self.campaigns.get(lead.campaign_id)
        try:
            if runtime is None:
                trace.notes.append(f"no campaign {lead.campaign_id!r} is configured")
                raise self._unknown_campaign(lead, started)
            trace.adapter, trace.plugin = runtime.adapter_name, runtime.plugin
            trace.breaker = runtime.breaker.state
            if self.shared is not None:
                await self.shared.ping()
                trace.shared = self.shared.describe()
                if not self.shared.up:
                    trace.notes.append(
                        f"the shared tier is {self.shared.state}: this process works on its "
                        "local tiers alone"
                    )
            if lead.external_id is None:
                trace.notes.append("standard-mode lead: the CRM is not asked")
                trace.resolution = await self._pass(
                    lead, runtime, self._standard(lead, runtime, started), started, trace
                )
            else:
                deadline_at = time.monotonic() + runtime.deadline
                fetch = asyncio.ensure_future(runtime.fetch(lead.external_id, deadline_at, trace))
                fetch.add_done_callback(retrieve_exception)  # an interrupt is not "unretrieved"
                try:
                    # Not asyncio.timeout: it would wait for an adapter that swallows
                    # its cancellation. The fetch is cancelled and left behind.
                    await asyncio.wait((fetch,), timeout=runtime.deadline)
                finally:
                    answered = fetch.done()
                    if not answered:
                        fetch.cancel()
                if answered and fetch.cancelled():
                    # Ended cancelled before the deadline: the adapter cancelled its task.
                    trace.notes.append("the adapter cancelled the task it ran in")
                    outcome = Outcome.failed("adapter_error", detail="the CRM fetch was cancelled")
                elif answered:
                    outcome = fetch.result()
                else:
                    trace.notes.append("the adapter did not answer within the deadline")
                    if trace.attempts and trace.attempts[-1].error is None:
                        cut = trace.attempts[-1]  # the call still running at the deadline
                        cut.duration = time.monotonic() - trace.started - cut.started
                        cut.error = "no answer within the deadline"
                    outcome = runtime.timed_out()
                trace.outcome_reason = outcome.reason
                key = (lead.campaign_id, lead.external_id)
                found = self._after_fetch(lead, runtime, key, outcome, started)
                trace.resolution = await self._pass(lead, runtime, found, started, trace)
        except Unresolvable as refusal:
            trace.refusal = refusal
        trace.elapsed = perf_counter() - started
        return trace

    def _after_fetch(
        self,
        lead: Lead,
        runtime: CampaignRuntime,
        key: CacheKey,
        outcome: Outcome,
        started: float,
    ) -> Resolution:
        if outcome.phone_number is not None:
            return Resolution(
                outcome.phone_number,
                "cache" if outcome.cached else "crm",
                lead.campaign_id,
                lead.external_id,
                runtime.adapter_name,
                None,
                perf_counter() - started,
            )
        reason = outcome.reason or "adapter_error"
        if not outcome.transient:
            return self._permanent(lead, runtime, reason, started, outcome.detail)
        return self._transient(lead, runtime, key, outcome, started)

    def resolve_sync(self, lead: Lead | Mapping[str, Any]) -> Resolution:
        """`resolve` for plain threads; runs on the resolver's private event loop."""
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            pass  # no loop in this thread: the expected case
        else:
            raise RuntimeError("resolve_sync() called inside an event loop; use await resolve()")
        if self._closed:
            raise RuntimeError("the resolver is closed")
        # The resolve holds its own deadline; the margin only guards against a wedged loop.
        try:
            return self._loop_thread.run(self.resolve(lead), timeout=self.max_deadline + 5.0)
        except concurrent.futures.CancelledError:
            # Its event loop stopped under this resolve (close_sync from another thread).
            raise RuntimeError(
                "the resolver's event loop stopped while the lead was resolved"
            ) from None
        except concurrent.futures.TimeoutError:
            lead = parse_lead(lead)
            raise Unresolvable(
                "timeout",
                retryable=True,
                campaign_id=lead.campaign_id,
                external_id=lead.external_id,
                detail="the resolver's event loop did not answer in time",
            ) from None

    async def resolve_many(
        self,
        leads: Iterable[Lead | Mapping[str, Any]],
        concurrency: int = 100,
        on_result: Callable[[int, Resolution | Unresolvable], None] | None = None,
    ) -> list[Resolution | Unresolvable]:
        """Resolve `leads` with at most `concurrency` in flight; results keep input order.

        Each result is a `Resolution` or the `Unresolvable` refusal for that lead; a
        malformed lead is answered with an `InvalidLead` refusal carrying its `index`
        and `field` (it never fails the batch, and the others are still resolved).
        `on_result(index, result)` is called as each one arrives (a progress bar).
        """
        if concurrency < 1:
            raise ValueError("concurrency must be at least 1")
        items: list[Lead | InvalidLead] = []
        for index, lead in enumerate(leads):
            try:
                items.append(lead if isinstance(lead, Lead) else parse_lead(lead, index=index))
            except InvalidLead as invalid:
                items.append(invalid)
        results: list[Resolution | Unresolvable | None] = [None] * len(items)
        pending = iter(enumerate(items))

        async def worker() -> None:
            for index, lead in pending:
                result: Resolution | Unresolvable
                if isinstance(lead, InvalidLead):
                    result = self._count_invalid(lead, perf_counter())
                else:
                    try:
                        result = await self.resolve(lead)
                    except Unresolvable as refusal:
                        result = refusal
                results[index] = result
                if on_result is not None:
                    on_result(index, result)

        async with asyncio.TaskGroup() as group:
            for _ in range(min(concurrency, len(items))):
                group.create_task(worker())
        # Every slot is filled: a worker that failed would have failed the group.
        return cast(list[Resolution | Unresolvable], results)

    async def warm(
        self,
        leads: Iterable[Lead | Mapping[str, Any]],
        *,
        concurrency: int = 20,
        batch_timeout: float = 30.0,
        on_progress: Callable[[int, int], None] | None = None,
    ) -> WarmReport:
        """Fill the cache for `leads` ahead of a dial window; return what was done.

        Adapters with `fetch_phones` get one call per `batch_size` ids (each bounded
        by `batch_timeout` seconds); others get single fetches, at most
        `concurrency` in flight (batches count against the same limit). Leads
        already fresh in the cache are not fetched. `on_progress(done, total)` is
        called as leads are settled.
        """
        return await warm_leads(
            self,
            leads,
            concurrency=concurrency,
            batch_timeout=batch_timeout,
            on_progress=on_progress,
        )

    def is_fresh(self, campaign_id: str, external_id: str) -> bool:
        """Whether the cache holds a fresh answer (a number or a refusal) for the lead."""
        entry = self._cache.get((campaign_id, external_id))
        return entry is not None and self._serves(entry)

    # -- the pieces of the pipeline ----------------------------------------------

    async def _shared_fetch(
        self, runtime: CampaignRuntime, key: CacheKey, started: float
    ) -> Outcome:
        """One adapter call per key at a time, shared by every caller that asks meanwhile.

        The call runs in a task of its own (see `predial._flight`); callers wait on
        futures of their own, so cancelling a caller never cancels the call. The
        call holds the deadline of the caller that started it: callers of one
        campaign share a deadline length, so later callers' deadlines are later.
        """
        loop = asyncio.get_running_loop()
        if loop is self._last_loop:  # skips a WeakKeyDictionary look-up per miss
            flights = self._last_flights
        else:
            flights = self._inflight.setdefault(loop, {})
            self._last_loop, self._last_flights = loop, flights
        flight = flights.get(key)
        if flight is None:
            flight = flights[key] = Flight()
            remaining = runtime.deadline - (perf_counter() - started)
            flight.task = start_task(loop, self._fly(runtime, key, remaining, flight, flights))
        if not flight.done:  # an eager start may have finished it already
            await flight.follow(loop)
        return self._outcome(runtime, key, flight)

    async def _fly(
        self,
        runtime: CampaignRuntime,
        key: CacheKey,
        remaining: float,
        flight: Flight[Answer | Outcome, Outcome],
        flights: dict[CacheKey, Flight[Answer | Outcome, Outcome]],
    ) -> None:
        # The deadline, as asyncio.timeout() does it but with a bare timer: this runs
        # once per cache miss and the context manager measured 14 µs against 5 µs.
        # The task is this fetch's own: any other cancellation is the loop closing,
        # or the adapter cancelling the task it runs in.
        loop = asyncio.get_running_loop()
        task = asyncio.current_task()
        assert task is not None  # _fly always runs as its own task
        expired = False

        def expire() -> None:
            nonlocal expired
            expired = True
            task.cancel()
            # Kept until it ends, so close() can cancel it again if its adapter
            # ignores this cancellation and runs on.
            self._overdue.add(task)
            task.add_done_callback(self._overdue.discard)
            # The callers are answered in the next step, not when the adapter's call
            # ends: an adapter may swallow its cancellation and run on for seconds.
            # (One that answers as it is cancelled does so first, and is believed.)
            loop.call_soon(time_out)

        def time_out() -> None:
            if not flight.done:
                self._land(runtime, key, flight, flights, runtime.timed_out(crm=flight.calling))

        timer = loop.call_at(loop.time() + remaining, expire)
        answer: Answer | Outcome
        try:
            if self.shared is None:
                answer = await runtime.fetch_raw(
                    key[1], time.monotonic() + remaining, calling=flight
                )
            else:
                answer = await self._fetch_shared(
                    runtime, key, time.monotonic() + remaining, flight
                )
        except asyncio.CancelledError:
            if expired:
                return  # the deadline's cancellation: time_out() answers the callers
            # Cancelled by someone else: the loop closing, or an adapter cancelling
            # the task it runs in. There is no answer either way, and the callers
            # must not inherit a cancellation that was never theirs.
            answer = Outcome.failed("adapter_error", detail="the CRM fetch was cancelled")
        except GeneratorExit as error:
            if not is_adapter_fault(error, task):
                raise  # this coroutine is being closed (an abandoned task collected)
            answer = Outcome.failed("adapter_error", detail="GeneratorExit")
        except (KeyboardInterrupt, SystemExit) as error:
            if not is_adapter_fault(error):
                # An interrupt of the main thread while the adapter ran: it
                # propagates, as Python expects, once the callers are answered and
                # the key is free.
                self._land(runtime, key, flight, flights, Outcome.failed("adapter_error"))
                task.add_done_callback(retrieve_exception)  # it propagates: not "unretrieved"
                raise
            answer = Outcome.failed("adapter_error", detail=type(error).__name__)
        except BaseException as error:  # fetch_raw maps every adapter failure: a bug of ours
            log.error(
                "campaign %s: the CRM fetch failed unexpectedly:\n%s",
                runtime.campaign.id,
                redacted_traceback(error),
            )
            answer = Outcome.failed("adapter_error", detail="internal error")
        finally:
            timer.cancel()
        if expired:
            task.uncancel()  # the deadline's cancellation, caught by the adapter
            if flight.done:
                # It answered long after: the callers have had their timeout, and
                # the key may have a new flight. The late answer is dropped.
                return
        self._land(runtime, key, flight, flights, answer)

    async def _fetch_shared(
        self,
        runtime: CampaignRuntime,
        key: CacheKey,
        deadline_at: float,
        flight: Flight[Answer | Outcome, Outcome],
    ) -> Answer | Outcome:
        """The fetch of a key through the shared tier: its fresh entry if it has one;
        else one CRM call across the fleet (this process's if it claims the key,
        another's if that one holds it: its answer is handed over). Whenever the
        tier does not answer, this process fetches on its own."""
        shared = self.shared
        assert shared is not None
        campaign_id, external_id = key
        if key in self._unshared_dnc and not await self._share_dnc(runtime, key):
            # A do-not-call this process learnt while the tier was unavailable is
            # told to the fleet before anything is read back (the tier may hold an
            # older number, which must not replace it); until it can be told, the
            # CRM is asked again, as without a shared tier.
            outcome = runtime.finish(
                await runtime.fetch_raw(external_id, deadline_at, calling=flight)
            )
            if not outcome.transient and outcome.reason != "do_not_call":
                self._unshared_dnc.discard(key)  # the CRM has changed its mind
            return outcome
        retry: str | None = None  # the token of a lookup whose answer was lost
        while True:
            claim_ms = _ms(deadline_at - time.monotonic())
            if claim_ms <= 0:
                return Outcome.failed("timeout")
            found = await shared.lookup(campaign_id, external_id, claim_ms=claim_ms, token=retry)
            if found is not None and found.kind == "lost" and retry is None:
                retry = found.token  # asked once more: the claim may be ours
                continue
            if found is None:  # unavailable: on our own
                outcome = runtime.finish(
                    await runtime.fetch_raw(external_id, deadline_at, calling=flight)
                )
                if outcome.reason == "do_not_call":
                    self._unshared_dnc.add(key)  # told to the fleet once it is back
                return outcome
            lookup = found
            if lookup.value is not None:
                entry = self._held_entry(runtime, key, lookup)
                if entry is not None and lookup.kind == "hit":
                    if entry.phone_number is not None and self._holds_dnc(key):
                        # This process learnt do-not-call after that number was
                        # written: its verdict stands, and the fleet is told again.
                        self._unshared_dnc.add(key)
                        self._spawn(self._share_dnc(runtime, key))
                        return Outcome.permanent("do_not_call")
                    self._cache.set(key, entry)
                    return Outcome(entry.phone_number, entry.reason, cached=True)
                if entry is not None:
                    self._keep_for_stale(key, entry)
            if lookup.kind != "wait":
                held = self._cache.get(key)
                if held is not None and self._clock() < held.fresh_until:
                    # This process holds a fresh answer the shared tier lost (a
                    # restarted Redis): hand it back rather than ask the CRM again.
                    outcome = Outcome(held.phone_number, held.reason, cached=True)
                    self._cache.set(key, replace(held, local_until=self._local_until()))
                    self._share_outcome(runtime, key, outcome, lookup, held)
                    return outcome
                break
            left = deadline_at - time.monotonic()
            if lookup.lock_ms / 1000 > left + _RECHECK:
                # A claim held far past this dial's deadline (a holder configured
                # with a longer one, or a tampered key): waiting would only end in
                # a timeout, so this process asks the CRM itself.
                break
            # The hand-over is pushed; looking again after a while covers one that
            # was lost (a holder that died, or whose publish went unanswered).
            seconds = min(lookup.lock_ms / 1000, left, _RECHECK)
            message = await shared.wait(
                campaign_id, external_id, holder=lookup.token, seconds=seconds
            )
            if message is not None:
                handed = self._handed_outcome(runtime, message)
                if handed is not None and handed.phone_number is not None:
                    if self._holds_dnc(key):
                        self._unshared_dnc.add(key)
                        self._spawn(self._share_dnc(runtime, key))
                        return Outcome.permanent("do_not_call")
                if handed is not None:
                    return handed
        answer = await runtime.fetch_raw(external_id, deadline_at, calling=flight)
        outcome = runtime.finish(answer)
        if lookup.kind == "lost" and outcome.reason == "do_not_call":
            self._unshared_dnc.add(key)  # written again once the tier surely has it
        self._share_outcome(runtime, key, outcome, lookup)
        return outcome

    async def _share_dnc(self, runtime: CampaignRuntime, key: CacheKey) -> bool:
        """Write and announce a do-not-call learnt while the tier was unavailable;
        False when the tier still does not answer."""
        shared = self.shared
        assert shared is not None
        settings = runtime.cache_settings
        stored = await shared.store(
            key[0],
            key[1],
            body=encode_body(None, "do_not_call", runtime.adapter_name),
            fresh_ms=_ms(settings.negative_ttl),
            keep_ms=_ms(settings.negative_ttl + settings.stale_grace),
            waited_for=True,
        )
        if not stored:
            return False
        self._unshared_dnc.discard(key)
        self._spawn(shared.announce_do_not_call(*key))
        return True

    def _held_entry(
        self, runtime: CampaignRuntime, key: CacheKey, lookup: Lookup
    ) -> CacheEntry | None:
        """The shared entry as this process holds it: times on its own clock, capped
        by its own TTLs, the number checked by the campaign's policy again (a value
        in Redis is input like any other)."""
        value = lookup.value
        assert value is not None
        settings = runtime.cache_settings
        now = self._clock()
        fresh_left = (value.fresh_until_ms - lookup.now_ms) / 1000
        keep_left = lookup.value_ms / 1000 if lookup.value_ms > 0 else max(fresh_left, 0.0)
        number = value.phone_number
        if number is not None:
            try:
                accepted = runtime.policy.normalize(number)
            except InvalidPhoneNumber:
                accepted = None
            if accepted != number:
                log.warning(
                    "campaign %s: the shared tier's number for lead %s is refused by the "
                    "phone policy and is treated as a miss",
                    _shown_id(runtime.campaign.id),
                    _shown_id(key[1]),
                )
                return None
            fresh_until = now + min(fresh_left, settings.positive_ttl)
            keep_until = now + min(keep_left, settings.positive_ttl + settings.stale_grace)
        else:
            fresh_until = now + min(fresh_left, settings.negative_ttl)
            keep_until = now + max(keep_left, 0.0)
        local_until = min(fresh_until, now + (self.shared.local_ttl if self.shared else math.inf))
        return CacheEntry(number, value.reason, fresh_until, keep_until, value.adapter, local_until)

    def _keep_for_stale(self, key: CacheKey, entry: CacheEntry) -> None:
        """Hold a shared entry that is no longer fresh, for the stale fallback,
        unless this process holds one that lives longer."""
        held = self._cache.get(key)
        if held is not None and held.reason == "do_not_call" and entry.reason != "do_not_call":
            return  # a number never replaces a do-not-call held for the stale fallback
        if held is None or held.keep_until < entry.keep_until:
            self._cache.set(key, entry)

    def _holds_dnc(self, key: CacheKey) -> bool:
        """Whether this process holds a fresh do-not-call for the lead."""
        held = self._cache.get(key)
        return (
            held is not None and held.reason == "do_not_call" and self._clock() < held.fresh_until
        )

    def _handed_outcome(self, runtime: CampaignRuntime, message: Message) -> Outcome | None:
        """What another process's flight came to, as this one's outcome."""
        if message.phone_number is not None:
            try:
                accepted = runtime.policy.normalize(message.phone_number)
            except InvalidPhoneNumber:
                return None
            return Outcome(accepted) if accepted == message.phone_number else None
        assert message.reason is not None
        if message.transient:
            return Outcome.failed(message.reason, message.retry_after)
        return Outcome.permanent(message.reason)

    def _local_until(self) -> float:
        return self._clock() + (self.shared.local_ttl if self.shared else math.inf)

    def _share_outcome(
        self,
        runtime: CampaignRuntime,
        key: CacheKey,
        outcome: Outcome,
        lookup: Lookup,
        held: CacheEntry | None = None,
    ) -> None:
        """Publish what this process fetched: the cache entry, the claim released,
        the waiters handed the outcome (in the background: the dial is not kept
        waiting for it)."""
        shared = self.shared
        assert shared is not None
        settings = runtime.cache_settings
        body: str | None = None
        fresh = keep = 0.0
        if held is not None:  # an entry of this process's, for what is left of it
            now = self._clock()
            body = encode_body(held.phone_number, held.reason, held.adapter)
            fresh, keep = held.fresh_until - now, held.keep_until - now
        elif outcome.phone_number is not None:
            body = encode_body(outcome.phone_number, None, runtime.adapter_name)
            fresh, keep = settings.positive_ttl, settings.positive_ttl + settings.stale_grace
        elif not outcome.transient:
            body = encode_body(None, outcome.reason, runtime.adapter_name)
            fresh = keep = settings.negative_ttl
            if outcome.reason == "do_not_call":
                keep += settings.stale_grace
                self._spawn(shared.announce_do_not_call(*key))
        token = lookup.token if lookup.kind in ("claimed", "lost") else ""
        if not token and body is None:
            return  # nothing to write and nobody to wake
        message = encode_message(
            lookup.token,
            outcome.phone_number,
            outcome.reason,
            outcome.transient,
            outcome.retry_after,
        )
        self._spawn(
            shared.publish(
                key[0],
                key[1],
                token=token,
                body=body,
                fresh_ms=_ms(fresh),
                keep_ms=_ms(keep),
                message=message,
                message_ms=_ms(max(self.max_deadline, 1.0)),
            )
        )

    def _spawn(self, work: Coroutine[Any, Any, Any]) -> None:
        """Run `work` in the background (shared-tier writes), kept until it ends."""
        self._background.spawn(work)

    def _land(
        self,
        runtime: CampaignRuntime,
        key: CacheKey,
        flight: Flight[Answer | Outcome, Outcome],
        flights: dict[CacheKey, Flight[Answer | Outcome, Outcome]],
        answer: Answer | Outcome,
    ) -> None:
        """End the flight with `answer`: free the key and wake the callers."""
        if flight.done:
            return
        if flights.get(key) is flight:  # a later flight of the key may hold the slot
            del flights[key]
        if not flight.land(answer):
            # Every caller gave up: interpret and cache the answer anyway, so the
            # call was not wasted.
            self._outcome(runtime, key, flight)

    def _outcome(
        self,
        runtime: CampaignRuntime,
        key: CacheKey,
        flight: Flight[Answer | Outcome, Outcome],
    ) -> Outcome:
        """The flight's outcome, interpreted (and cached) by the first caller to ask."""
        outcome = flight.outcome
        if outcome is None:
            assert flight.answer is not None  # the flight has landed
            outcome = flight.outcome = runtime.finish(flight.answer)
            if not outcome.cached:  # a shared entry is held locally already
                # The flight shared what it fetched itself (see _fetch_shared).
                self.store(runtime, key, outcome, share=False)
        return outcome

    def store(
        self, runtime: CampaignRuntime, key: CacheKey, outcome: Outcome, *, share: bool = True
    ) -> None:
        """Cache an interpreted CRM answer, as a just-in-time fetch does (in the
        shared tier too, with `share`, when there is one)."""
        settings = runtime.cache_settings
        now = self._clock()
        shared = self.shared
        local_until = math.inf if shared is None else now + shared.local_ttl
        if outcome.phone_number is not None:
            fresh_until = now + settings.positive_ttl
            keep_until = fresh_until + settings.stale_grace
            entry = CacheEntry(
                outcome.phone_number,
                None,
                fresh_until,
                keep_until,
                runtime.adapter_name,
                local_until,
            )
        elif not outcome.transient:
            # Always written, even with a zero TTL: it replaces any older positive
            # entry, which must not be served stale once the CRM has said no.
            fresh_until = now + settings.negative_ttl
            keep_until = fresh_until
            if outcome.reason == "do_not_call":
                # Remembered through the grace period: if the CRM then goes down,
                # the stored number must not be dialled either.
                keep_until += settings.stale_grace
            entry = CacheEntry(
                None, outcome.reason, fresh_until, keep_until, runtime.adapter_name, local_until
            )
        else:
            return
        if share and shared is not None:
            if outcome.reason == "do_not_call":
                # Written and announced by _share_dnc (remembered until it is).
                self._unshared_dnc.add(key)
                self._spawn(self._share_dnc(runtime, key))
            else:
                self._spawn(
                    shared.store(
                        key[0],
                        key[1],
                        body=encode_body(entry.phone_number, entry.reason, entry.adapter),
                        fresh_ms=_ms(fresh_until - now),
                        keep_ms=_ms(keep_until - now),
                    )
                )
        try:
            self._cache.set(key, entry)
        except Exception as error:
            log.error(
                "campaign %s: the cache refused an entry:\n%s",
                runtime.campaign.id,
                redacted_traceback(error),
            )

    def _stored_number(self, lead: Lead, runtime: CampaignRuntime) -> str | None:
        if lead.phone_number is None:
            return None
        try:
            return runtime.policy.normalize(lead.phone_number)
        except InvalidPhoneNumber as refusal:
            log.info("campaign %s: stored number refused: %s", lead.campaign_id, refusal)
            return None

    def _standard(self, lead: Lead, runtime: CampaignRuntime, started: float) -> Resolution:
        number = self._stored_number(lead, runtime)
        if number is None:
            raise self._refuse(lead, runtime, "invalid_stored_number", False, None, started)
        return Resolution(
            number,
            "stored",
            lead.campaign_id,
            None,
            runtime.adapter_name,
            None,
            perf_counter() - started,
        )

    def _permanent(
        self,
        lead: Lead,
        runtime: CampaignRuntime,
        reason: str,
        started: float,
        detail: str | None = None,
    ) -> Resolution:
        # Do-not-call is the CRM's word about the person: the stored number must not
        # be dialled either.
        if reason != "do_not_call":
            number = self._stored_number(lead, runtime)
            if number is not None:
                return self._fallback(lead, runtime, number, "stored", reason, started)
        raise self._refuse(lead, runtime, reason, False, None, started, detail)

    def _transient(
        self,
        lead: Lead,
        runtime: CampaignRuntime,
        key: CacheKey,
        outcome: Outcome,
        started: float,
    ) -> Resolution:
        reason = outcome.reason or "unavailable"
        entry = self._cache.get(key)
        if entry is not None and self._clock() < entry.keep_until:
            if entry.phone_number is not None:
                return self._fallback(lead, runtime, entry.phone_number, "stale", reason, started)
            if entry.reason == "do_not_call":
                # The CRM's last word was do-not-call: the CRM being down now does
                # not make the stored number dialable.
                raise self._refuse(lead, runtime, "do_not_call", False, None, started)
        number = self._stored_number(lead, runtime)
        if number is not None:
            return self._fallback(lead, runtime, number, "stored", reason, started)
        raise self._refuse(
            lead, runtime, reason, True, outcome.retry_after, started, outcome.detail
        )

    def _fallback(
        self,
        lead: Lead,
        runtime: CampaignRuntime,
        number: str,
        source: Any,
        reason: str,
        started: float,
    ) -> Resolution:
        log.info(
            "campaign %s: lead %s falls back to the %s number %s (%s)",
            _shown_id(lead.campaign_id),
            _shown_id(lead.external_id),
            source,
            mask_phone(number),
            reason,
        )
        return Resolution(
            number,
            source,
            lead.campaign_id,
            lead.external_id,
            runtime.adapter_name,
            reason,
            perf_counter() - started,
        )

    async def _pass(
        self,
        lead: Lead,
        runtime: CampaignRuntime,
        found: Resolution,
        started: float,
        trace: Trace | None = None,
    ) -> Resolution:
        """`found` through the campaign's compliance gate, then counted: the last step
        of every resolve, whatever the number's source. With a `trace` (`explain`), the
        frequency caps are not counted: a diagnosis uses up no call."""
        settings = runtime.compliance
        if settings is None or self._gate is None:
            return self._done(found, started)
        # The plugins' sources are asked within what is left of the resolve's deadline
        # (each also within its own timeout): past it, the number waits (fail closed).
        left = runtime.deadline - (perf_counter() - started)
        try:
            async with asyncio.timeout(max(left, 0.0)):
                checked = await self._gate.check(
                    settings, found.phone_number, lead.metadata, count=trace is None
                )
        except TimeoutError:
            checked = GateResult(
                None,
                "dnc_source_unavailable",
                retryable=True,
                detail="the do-not-call sources did not answer within the resolve's deadline",
            )
        if trace is not None and checked.verdict is not None and checked.verdict.caps:
            trace.notes.append(
                "frequency caps not counted by a diagnosis: "
                + ", ".join(
                    f"{rule} {limit} per {window:g} s"
                    for rule, limit, window in checked.verdict.caps
                )
            )
        return self._passed(lead, runtime, found, started, checked)

    def _passed(
        self,
        lead: Lead,
        runtime: CampaignRuntime,
        found: Resolution,
        started: float,
        checked: GateResult,
    ) -> Resolution:
        """`found` counted if the gate allowed it; else the gate's refusal, raised."""
        if checked.reason is not None:
            raise self._refuse(
                lead,
                runtime,
                checked.reason,
                checked.retryable,
                checked.retry_after,
                started,
                checked.detail,
                gate=checked,
                number=found.phone_number,
                source=found.source,
            )
        return self._done(found, started, checked)

    def _done(
        self, found: Resolution, started: float, checked: GateResult | None = None
    ) -> Resolution:
        # `found` was built for this resolve alone: its elapsed time is set in place
        # (dataclasses.replace costs as much as the rest of a cache hit).
        resolution = found
        object.__setattr__(resolution, "elapsed", perf_counter() - started)
        stats = self._stats
        stats.resolved += 1
        if resolution.source == "stored":
            stats.stored += 1
        elif resolution.source == "stale":
            stats.stale += 1
        if resolution.fallback_reason is not None:
            stats.fallbacks[resolution.fallback_reason] += 1
        stats.latencies.append(resolution.elapsed)
        if self.audit is not None:
            asked = current_decision.get()
            self.audit.decision(
                campaign=resolution.campaign_id,
                external_id=resolution.external_id,
                number=resolution.phone_number,
                source=resolution.source,
                status="ok",
                reason=resolution.fallback_reason or "",
                latency=resolution.elapsed,
                verdict=checked.verdict if checked is not None else None,
                origin=asked.origin if asked else "library",
                decision_id=asked.decision_id if asked else None,
            )
        if self._metrics is not None:
            self._metrics.on_decision(
                resolution.campaign_id,
                resolution.source,
                "ok",
                resolution.fallback_reason or "",
                resolution.elapsed,
            )
        return resolution

    def _refuse(
        self,
        lead: Lead,
        runtime: CampaignRuntime | None,
        reason: str,
        retryable: bool,
        retry_after: float | None,
        started: float,
        detail: str | None = None,
        *,
        gate: GateResult | None = None,
        number: str | None = None,
        source: str = "",
    ) -> Unresolvable:
        elapsed = perf_counter() - started
        stats = self._stats
        stats.refused += 1
        stats.refusals[reason] += 1
        stats.latencies.append(elapsed)
        status = "retry_later" if retryable else "skip"
        if self.audit is not None:
            asked = current_decision.get()
            self.audit.decision(
                campaign=lead.campaign_id,
                external_id=lead.external_id,
                number=number if number is not None else lead.phone_number,
                source=source,
                status=status,
                reason=reason,
                latency=elapsed,
                verdict=gate.verdict if gate is not None else None,
                origin=asked.origin if asked else "library",
                decision_id=asked.decision_id if asked else None,
                dnc_list=gate.list_name if gate is not None else None,
            )
        if self._metrics is not None:
            self._metrics.on_decision(lead.campaign_id, "", status, reason, elapsed)
        log.info(
            "campaign %s: lead %s refused: %s%s",
            _shown_id(lead.campaign_id),
            _shown_id(lead.external_id)
            if lead.external_id is not None
            else mask_phone(lead.phone_number),
            reason,
            " (retryable)" if retryable else "",
        )
        return Unresolvable(
            reason,
            retryable=retryable,
            retry_after=retry_after,
            campaign_id=lead.campaign_id,
            external_id=lead.external_id,
            detail=detail,
            elapsed=elapsed,
            next_allowed_at=gate.next_allowed_at if gate is not None else None,
            list_name=gate.list_name if gate is not None else None,
        )

    def _parse(self, value: object, index: int | None, started: float) -> Lead:
        """`value` as a Lead, or the `InvalidLead` refusal counted like any other."""
        try:
            return parse_lead(value, index=index)
        except InvalidLead as invalid:
            raise self._count_invalid(invalid, started) from None

    def _count_invalid(self, invalid: InvalidLead, started: float) -> InvalidLead:
        elapsed = perf_counter() - started
        invalid.elapsed = elapsed
        stats = self._stats
        stats.refused += 1
        stats.refusals[invalid.reason] += 1
        stats.latencies.append(elapsed)
        if self.audit is not None:
            asked = current_decision.get()
            self.audit.decision(
                campaign=invalid.campaign_id or "",
                external_id=invalid.external_id,
                number=None,
                source="",
                status="skip",
                reason=invalid.reason,
                latency=elapsed,
                origin=asked.origin if asked else "library",
                decision_id=asked.decision_id if asked else None,
            )
        if self._metrics is not None:
            self._metrics.on_decision(invalid.campaign_id, "", "skip", invalid.reason, elapsed)
        # The fields only: the message quotes no values (a number may be among them).
        log.info("lead refused: invalid_lead (%s)", ", ".join(str(f) for f, _ in invalid.problems))
        return invalid

    def _unknown_campaign(self, lead: Lead, started: float) -> UnknownCampaign:
        """The permanent verdict for a lead of a campaign this resolver does not have."""
        self._refuse(lead, None, "unknown_campaign", False, None, started)
        return UnknownCampaign(
            lead.campaign_id,
            sorted(self.campaigns),
            external_id=lead.external_id,
            elapsed=perf_counter() - started,
        )

    # -- the rest ----------------------------------------------------------------

    def stats(self) -> ResolverStats:
        """Counters since start: hits, misses, stale, fallbacks and refusals by reason,
        adapter errors, latency percentiles, and each campaign's breaker state."""
        return self._stats.snapshot(
            {campaign_id: runtime.breaker.state for campaign_id, runtime in self.campaigns.items()}
        )

    @property
    def closed(self) -> bool:
        """Whether `close()` was called: a closed resolver resolves nothing."""
        return self._closed

    def attach_metrics(self, metrics: ResolverMetrics) -> None:
        """Report decisions, CRM calls, cache look-ups and breaker states to
        `metrics` (see `predial.metrics.instrument`)."""
        metrics.campaigns = frozenset(self.campaigns)
        self._metrics = metrics
        for campaign_id, runtime in self.campaigns.items():
            runtime.metrics = metrics
            runtime.breaker.on_change = functools.partial(metrics.on_breaker, campaign_id)
            metrics.on_breaker(campaign_id, runtime.breaker.state)
        if self.shared is not None:
            self.shared.on_event = metrics.on_shared
            metrics.shared_up.set(1 if self.shared.up else 0)

    def clear_cache(self) -> None:
        self._cache.clear()

    @property
    def max_deadline(self) -> float:
        """The longest deadline of any campaign (the resolver's own when none is set)."""
        return max((runtime.deadline for runtime in self.campaigns.values()), default=self.deadline)

    async def close(self, grace: float = 1.0) -> None:
        """Close every adapter (`aclose()` or `close()`) and stop the resolver's threads.

        Fetches still running (an adapter that went on after its deadline) are
        cancelled and given `grace` seconds to end; one that ignores its
        cancellation is left behind (and `asyncio.run` would wait for it at exit).
        """
        if self._closed:
            return
        self._closed = True
        await self._cancel_fetches(grace)
        loop = asyncio.get_running_loop()
        # Shared-tier writes still under way: each is bounded by the tier's timeout.
        await self._background.wait(loop, grace)
        if self.shared is not None:
            await self.shared.close()
        for runtime in self.campaigns.values():
            if runtime.adapter is None:
                continue
            try:
                await close_adapter(runtime.adapter)
            except Exception as error:
                log.error(
                    "campaign %s: closing adapter %r failed:\n%s",
                    runtime.campaign.id,
                    runtime.adapter_name,
                    redacted_traceback(error),
                )
        self._pool.shutdown()

    async def _cancel_fetches(self, grace: float) -> None:
        """Cancel the fetches still running, on every loop, and wait up to `grace`
        seconds for them to end: the adapters are closed next, under none of them."""
        by_loop: dict[asyncio.AbstractEventLoop, list[asyncio.Task[None]]] = {}
        for task in {*self._overdue, *self._running_fetches()}:
            if not task.done():
                by_loop.setdefault(task.get_loop(), []).append(task)
        loop = asyncio.get_running_loop()
        waits: list[Awaitable[None]] = []
        for owner, tasks in by_loop.items():
            if owner is loop:
                waits.append(_cancel_and_wait(tasks, grace))
            elif owner.is_running():
                # Another loop's tasks (resolve_sync's): cancelled and awaited there.
                future = asyncio.run_coroutine_threadsafe(_cancel_and_wait(tasks, grace), owner)
                waits.append(asyncio.wrap_future(future))
        if waits:
            try:
                async with asyncio.timeout(grace + 1.0):
                    await asyncio.gather(*waits, return_exceptions=True)
            except TimeoutError:
                log.warning("fetches still running %.0f s after close were left", grace)

    def _running_fetches(self) -> list[asyncio.Task[None]]:
        for _ in range(5):  # another thread may add a loop's table meanwhile
            try:
                tables = list(self._inflight.values())
                return [f.task for t in tables for f in list(t.values()) if f.task is not None]
            except RuntimeError:
                continue
        return []

    def close_sync(self, grace: float = 1.0) -> None:
        """`close` for callers without an event loop."""
        if self._loop_thread.loop is not None:
            try:
                # Bounded: closing adapters must not hold the caller for good either.
                self._loop_thread.run(self.close(grace), timeout=grace + 30.0)
            except concurrent.futures.TimeoutError:
                log.error("closing the resolver's adapters took over %.0f s; given up", grace + 30)
        else:
            asyncio.run(self.close(grace))
        self._loop_thread.stop(grace)

    async def __aenter__(self) -> Resolver:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.close()
        # Joining the resolve_sync thread blocks; keep it off this event loop.
        await asyncio.to_thread(self._loop_thread.stop)

    def __enter__(self) -> Resolver:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close_sync()


#: How long a waiter waits for another process's hand-over before it looks at the
#: key again (the value may be in, or the claim gone).
_RECHECK = 0.5


def _check_named(
    opted: Iterable[tuple[Campaign, Compliance]],
    field: str,
    check: Callable[[Sequence[str]], None],
) -> None:
    """Each campaign's lists or sources (`field`) checked by `check`; its error names
    the campaign's key (`predial.toml: campaigns[0].compliance.dnc_lists: ...`)."""
    for campaign, chosen in opted:
        try:
            check(getattr(chosen, field))
        except ConfigurationError as error:
            raise ConfigurationError(f"{campaign.where}.compliance.{field}: {error}") from None


def _utc_now() -> datetime:
    return datetime.now(UTC)


def _ms(seconds: float) -> int:
    """Whole milliseconds for Redis (infinity, "for ever", is capped at a year)."""
    return int(min(seconds, 31_536_000.0) * 1000)


def _shown_id(value: str | None) -> str:
    """A lead's id as a log line shows it: ids come from callers (a dialer, an HTTP
    request), so control characters are escaped (no forged lines) and phone-shaped
    ids masked like every number."""
    return redact(value, limit=200)


async def _cancel_and_wait(tasks: list[asyncio.Task[None]], grace: float) -> None:
    for task in tasks:
        task.cancel()
    await asyncio.wait(tasks, timeout=grace)
