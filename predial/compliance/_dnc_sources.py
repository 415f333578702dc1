"""External do-not-call sources registered by plugins (`register_dnc_sources`).

A source is a scrub service, a litigator list, anything that answers "is this
number listed?". Each runs under its own timeout; the sources a campaign names run
concurrently and the first to say "listed" wins (the others are cancelled). One
that fails (raises, times out, answers something other than True or False) is
judged by its `on_failure`: `"closed"` (the default) makes the answer
`unavailable` (the gate answers `retry_later`), `"open"` counts it as not listed,
logged (at most once a minute per source).

A plugin whose hook raises, or registers a wrong source, is logged and its sources
are left out; that is an error only for a campaign that names one of them
(`check_names`, at start-up). Two plugins registering one name is an error for a
campaign naming it, saying which two.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import math
import re
import threading
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final, Literal

from .._faults import safe_text
from .._phone import mask_phone
from .._redaction import redact
from .._threads import DaemonThreadPool
from ..errors import ConfigurationError

if TYPE_CHECKING:
    from .._threads import DaemonThreadPool
from .._plugins import PluginRegistry

__all__ = ["DncSource", "DncSourceAnswer", "DncSources"]

log = logging.getLogger(__name__)

#: What a source name may look like: a lowercase slug, as adapter names.
SOURCE_NAME: Final = re.compile(r"[a-z][a-z0-9_-]{0,62}")

#: At most one log line per source in this many seconds (a failing source is asked
#: before every dial of the campaigns naming it).
_LOG_EVERY: Final = 60.0

OnFailure = Literal["closed", "open"]
Check = Callable[[str], "Awaitable[bool] | bool"]


@dataclass(frozen=True, slots=True)
class DncSource:
    """One external source: see `predial.DncSourceRegister` for the fields."""

    name: str
    check: Check = field(repr=False)
    timeout: float = 1.0
    on_failure: OnFailure = "closed"
    retry_after: float = 60.0
    #: Who registered it, for error messages.
    plugin: str = "explicit"

    def __post_init__(self) -> None:
        problems = source_problems(
            self.name, self.check, self.timeout, self.on_failure, self.retry_after
        )
        if problems:
            raise ConfigurationError(
                f"do-not-call source from {self.plugin}: {'; '.join(problems)}"
            )


def source_problems(
    name: object, check: object, timeout: object, on_failure: object, retry_after: object
) -> list[str]:
    """What is wrong with a registration, one line each saying what to pass."""
    problems = []
    if not isinstance(name, str) or not SOURCE_NAME.fullmatch(name):
        problems.append(f"the name must be a lowercase slug such as 'litigators', not {name!r}")
    if not callable(check):
        problems.append(
            f"check must be a function taking the number (E.164) and returning True when "
            f"listed, not {type(check).__name__}"
        )
    for what, value, most in (("timeout", timeout, 60.0), ("retry_after", retry_after, 86400.0)):
        if (
            isinstance(value, bool)
            or not isinstance(value, (int, float))
            or not (0 < value <= most)  # NaN compares false
            or not math.isfinite(value)
        ):
            problems.append(f"{what} must be seconds > 0 and <= {most:g}, not {value!r}")
    if on_failure not in ("closed", "open"):
        problems.append(f"on_failure must be 'closed' or 'open', not {on_failure!r}")
    return problems


@dataclass(frozen=True, slots=True)
class DncSourceAnswer:
    """The sources' word on a number.

    `hit`: the source listing it (the gate refuses the dial for good). Else
    `unavailable`: a source that failed under `on_failure="closed"` (the gate
    answers retry_later, after `retry_after` seconds). Else clear. `opened`: the
    sources that failed under `on_failure="open"` and were counted as clear.
    """

    hit: str | None = None
    unavailable: str | None = None
    retry_after: float | None = None
    opened: tuple[str, ...] = ()

    @property
    def status(self) -> Literal["hit", "clear", "unavailable"]:
        if self.hit is not None:
            return "hit"
        if self.unavailable is not None:
            return "unavailable"
        return "clear"


class DncSources:
    """The registered sources, by name, and the runner asking them."""

    def __init__(
        self, sources: Iterable[DncSource] = (), *, pool: DaemonThreadPool | None = None
    ) -> None:
        # Sync checks run on predial's daemon threads, never asyncio's default
        # executor: a hung scrub service would hold the process's exit and starve
        # every other `to_thread` user (the file adapter among them).
        self._pool = pool if pool is not None else DaemonThreadPool(8, "predial-dnc-source")
        self._sources: dict[str, DncSource] = {}
        #: Names two plugins registered: the error a campaign naming one gets.
        self._conflicts: dict[str, ConfigurationError] = {}
        #: Names registered by a plugin whose registration then failed, and plugins
        #: that failed before registering anything: why, for `check_names`.
        self._dropped: dict[str, str] = {}
        self._failed_plugins: list[str] = []
        self._log_lock = threading.Lock()
        self._logged: dict[str, tuple[float, int]] = {}
        for source in sources:
            self._add(source)
        if self._conflicts:
            raise next(iter(self._conflicts.values()))

    @classmethod
    def from_registry(
        cls, registry: PluginRegistry, *, pool: DaemonThreadPool | None = None
    ) -> DncSources:
        """The sources the loaded plugins register through `register_dnc_sources`.

        Never raises for a plugin's mistake: a hook that raises or registers a wrong
        source is logged (naming the plugin) and its sources are left out."""
        sources = cls(pool=pool)
        for impl in registry.manager.hook.register_dnc_sources.get_hookimpls():
            plugin = _plugin_source(registry, impl.plugin)
            if plugin is None:
                continue  # a plugin listed as failed: its sources are not trusted
            collected: list[DncSource] = []
            problems: list[str] = []

            def register(
                name: str,
                check: Check,
                *,
                timeout: float = 1.0,
                on_failure: OnFailure = "closed",
                retry_after: float = 60.0,
                _collected: list[DncSource] = collected,
                _problems: list[str] = problems,
                _plugin: str = plugin,
            ) -> None:
                found = source_problems(name, check, timeout, on_failure, retry_after)
                if found:
                    _problems.extend(f"source {name!r}: {problem}" for problem in found)
                    return
                _collected.append(
                    DncSource(name, check, timeout, on_failure, retry_after, plugin=_plugin)
                )

            try:
                impl.function(*[{"register": register}[arg] for arg in impl.argnames])
            except Exception as error:
                text = redact(safe_text(error))
                problems.append(f"register_dnc_sources raised {type(error).__name__}: {text}")
            if problems:
                why = f"{plugin}: {'; '.join(problems)}"
                log.warning("do-not-call sources of plugin %s left out: %s", plugin, why)
                sources._failed_plugins.append(why)
                for source in collected:
                    sources._dropped.setdefault(source.name, why)
                continue
            for source in collected:
                sources._add(source)
        return sources

    def _add(self, source: DncSource) -> None:
        existing = self._sources.get(source.name)
        if existing is None:
            if source.name not in self._conflicts:
                self._sources[source.name] = source
            return
        del self._sources[source.name]
        self._conflicts[source.name] = ConfigurationError(
            f"do-not-call source {source.name!r} is registered twice, by {existing.plugin} "
            f"and by {source.plugin}: uninstall or disable one (PREDIAL_DISABLE_PLUGINS), "
            "or rename its source"
        )
        log.warning("%s", self._conflicts[source.name])

    def names(self) -> list[str]:
        """The sources that can be named (conflicting names left out)."""
        return sorted(self._sources)

    def sources(self) -> list[DncSource]:
        """The sources that can be named, by name."""
        return [self._sources[name] for name in sorted(self._sources)]

    def __len__(self) -> int:
        return len(self._sources)

    def check_names(self, names: Sequence[str]) -> None:
        """Raise `ConfigurationError` for a name no source answers to (a typo, a
        plugin not installed or whose registration failed, a name two plugins took)."""
        for name in names:
            if name in self._sources:
                continue
            if name in self._conflicts:
                raise self._conflicts[name]
            if name in self._dropped:
                raise ConfigurationError(
                    f"do-not-call source {name!r} is not available: {self._dropped[name]}"
                )
            known = ", ".join(self.names()) or "none"
            failed = (
                f"; plugins whose sources were left out: {' | '.join(self._failed_plugins)}"
                if self._failed_plugins
                else ""
            )
            raise ConfigurationError(
                f"no do-not-call source {name!r} is registered (registered: {known}{failed}): "
                "install the plugin providing it, or fix the name in compliance.dnc_sources"
            )

    async def check(self, e164: str, names: Sequence[str] | None = None) -> DncSourceAnswer:
        """Ask the sources `names` (None: every registered source) about `e164`,
        concurrently: the first hit wins; else `unavailable` if a source failed
        closed; else clear."""
        if names is None:
            if self._conflicts:
                raise next(iter(self._conflicts.values()))
            chosen = list(self._sources.values())
        else:
            self.check_names(names)
            chosen = [self._sources[name] for name in dict.fromkeys(names)]
        if not chosen:
            return DncSourceAnswer()
        if len(chosen) == 1:  # no task to make
            outcomes = [await self._ask(chosen[0], e164)]
        else:
            outcomes = await self._ask_all(chosen, e164)
        for source, outcome in outcomes:
            if outcome == "hit":
                return DncSourceAnswer(hit=source.name)
        opened: list[str] = []
        for source, outcome in outcomes:
            if outcome == "failed":
                if source.on_failure == "closed":
                    return DncSourceAnswer(
                        unavailable=source.name,
                        retry_after=source.retry_after,
                        opened=tuple(opened),
                    )
                opened.append(source.name)
        return DncSourceAnswer(opened=tuple(opened))

    async def _ask_all(
        self, chosen: list[DncSource], e164: str
    ) -> list[tuple[DncSource, Literal["hit", "clear", "failed"]]]:
        tasks = [asyncio.create_task(self._ask(source, e164)) for source in chosen]
        outcomes = []
        try:
            pending: set[asyncio.Task[Any]] = set(tasks)
            while pending:
                done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
                for task in done:
                    outcome = task.result()
                    if outcome[1] == "hit":
                        return [outcome]  # the others are cancelled below
                    outcomes.append(outcome)
        finally:
            for task in tasks:
                task.cancel()
            # Waited for, so none is left running unobserved (each is bounded by
            # its timeout, and a sync check's thread is not waited for).
            await asyncio.gather(*tasks, return_exceptions=True)
        # In the order named: the first closed failure is the one reported.
        order = {source.name: index for index, source in enumerate(chosen)}
        return sorted(outcomes, key=lambda outcome: order[outcome[0].name])

    async def _ask(
        self, source: DncSource, e164: str
    ) -> tuple[DncSource, Literal["hit", "clear", "failed"]]:
        try:
            async with asyncio.timeout(source.timeout):
                if _is_async(source.check):
                    result: object = await source.check(e164)  # type: ignore[misc]
                else:
                    # (A sync check cannot be stopped at its timeout: its thread
                    # finishes on its own, the answer is dropped.)
                    result = await asyncio.wrap_future(self._pool.submit(source.check, e164))
                    if inspect.isawaitable(result):
                        result = await result
        except TimeoutError:
            self._failed(source, e164, f"no answer within {source.timeout:g} s")
            return source, "failed"
        except Exception as error:  # the plugin's code: any error is its failure
            self._failed(source, e164, f"{type(error).__name__}: {redact(safe_text(error))}")
            return source, "failed"
        if result is True:
            return source, "hit"
        if result is False:
            return source, "clear"
        self._failed(source, e164, f"answered {type(result).__name__}, not True or False")
        return source, "failed"

    def _failed(self, source: DncSource, e164: str, why: str) -> None:
        """Log a source's failure, at most once per `_LOG_EVERY` seconds per source
        (with how many were not logged meanwhile)."""
        now = time.monotonic()
        with self._log_lock:
            last, quiet = self._logged.get(source.name, (-math.inf, 0))
            if now - last < _LOG_EVERY:
                self._logged[source.name] = (last, quiet + 1)
                return
            self._logged[source.name] = (now, 0)
        meaning = (
            "treated as not listed (on_failure='open')"
            if source.on_failure == "open"
            else "the dial waits (on_failure='closed': retry_later)"
        )
        more = f"; {quiet} more failures since the last line" if quiet else ""
        log.warning(
            "do-not-call source %r failed for %s (%s): %s%s",
            source.name,
            mask_phone(e164),
            why,
            meaning,
            more,
        )


def _is_async(check: object) -> bool:
    return inspect.iscoroutinefunction(check) or inspect.iscoroutinefunction(
        getattr(check, "__call__", None)  # noqa: B004  (an object with `async def __call__`)
    )


def _plugin_source(registry: PluginRegistry, plugin: object) -> str | None:
    """How error messages name the plugin `plugin` (its `PluginInfo.source`); None
    when it is listed as failed."""
    registered = registry.manager.get_name(plugin) or type(plugin).__name__
    base = registered.partition("#")[0]
    for info in registry.plugins:
        if f"{info.origin}:{info.name}" == base:
            return None if info.status == "failed" else info.source
    return registered
