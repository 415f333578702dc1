"""External do-not-call sources registered by plugins through the real pluggy registry
(`register_dnc_sources`, issue 15 part 3): hits, clears, timeouts and errors under
each failure policy, sync sources, duplicate names and plugins that fail."""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

import predial
from predial._plugins import PluginInfo, PluginRegistry, load_plugins, make_plugin_manager
from predial.compliance._dnc_sources import DncSource, DncSourceAnswer, DncSources
from predial.errors import ConfigurationError

LISTED = "+12025550123"
NOT_LISTED = "+12025550199"


class Plugin:
    """A plugin registering the sources it is given, as a third-party one would."""

    def __init__(self, name: str, **sources: tuple[Callable[..., Any], dict[str, Any]]) -> None:
        self.__name__ = name
        self.sources = sources

    @predial.hookimpl
    def register_dnc_sources(self, register: predial.DncSourceRegister) -> None:
        for name, (check, options) in self.sources.items():
            register(name.replace("_", "-"), check, **options)


def sources_of(*plugins: object) -> DncSources:
    return DncSources.from_registry(load_plugins(plugins, entrypoints=False, builtins=False))


async def listed_async(number: str) -> bool:
    await asyncio.sleep(0)
    return number == LISTED


def listed_sync(number: str) -> bool:
    return number == LISTED


async def never_answers(number: str) -> bool:
    await asyncio.sleep(30)
    return False


async def raises(number: str) -> bool:
    raise RuntimeError(f"scrub service said 503 for {number}")


async def test_a_hit_and_a_clear() -> None:
    sources = sources_of(Plugin("scrub", scrub=(listed_async, {})))
    assert await sources.check(LISTED, ["scrub"]) == DncSourceAnswer(hit="scrub")
    answer = await sources.check(NOT_LISTED, ["scrub"])
    assert answer == DncSourceAnswer()
    assert answer.status == "clear"
    assert (await sources.check(LISTED, None)).status == "hit"  # None: every source


async def test_a_sync_source_runs_in_a_thread() -> None:
    threads: list[int] = []

    def check(number: str) -> bool:
        threads.append(threading.get_ident())
        return listed_sync(number)

    sources = sources_of(Plugin("lit", litigators=(check, {})))
    assert (await sources.check(LISTED, ["litigators"])).hit == "litigators"
    assert (await sources.check(NOT_LISTED, ["litigators"])).status == "clear"
    assert threads
    assert threading.get_ident() not in threads


async def test_a_timeout_fails_closed_by_default_with_the_retry_suggestion() -> None:
    sources = sources_of(Plugin("slow", slow=(never_answers, {"timeout": 0.05})))
    started = time.perf_counter()
    answer = await sources.check(NOT_LISTED, ["slow"])
    assert time.perf_counter() - started < 1.0
    assert answer == DncSourceAnswer(unavailable="slow", retry_after=60.0)
    assert answer.status == "unavailable"
    custom = sources_of(Plugin("slow", slow=(never_answers, {"timeout": 0.05, "retry_after": 300})))
    assert (await custom.check(NOT_LISTED, ["slow"])).retry_after == 300


async def test_a_timeout_fails_open_when_asked_logged_once_a_minute(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="predial.compliance._dnc_sources")
    sources = sources_of(
        Plugin("slow", slow=(never_answers, {"timeout": 0.05, "on_failure": "open"}))
    )
    answer = await sources.check(NOT_LISTED, ["slow"])
    assert answer == DncSourceAnswer(opened=("slow",))
    assert answer.status == "clear"
    await sources.check(NOT_LISTED, ["slow"])
    lines = [r.getMessage() for r in caplog.records if "do-not-call source" in r.getMessage()]
    assert len(lines) == 1  # rate-limited
    assert "no answer within 0.05 s" in lines[0]
    assert "on_failure='open'" in lines[0]
    assert NOT_LISTED not in caplog.text
    assert "+1202***0199" in caplog.text


@pytest.mark.parametrize("policy", ["closed", "open"])
async def test_an_exception_follows_the_failure_policy(
    policy: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="predial.compliance._dnc_sources")
    sources = sources_of(Plugin("scrub", scrub=(raises, {"on_failure": policy})))
    answer = await sources.check(LISTED, ["scrub"])
    if policy == "closed":
        assert answer == DncSourceAnswer(unavailable="scrub", retry_after=60.0)
    else:
        assert answer == DncSourceAnswer(opened=("scrub",))
    assert "RuntimeError: scrub service said 503" in caplog.text
    assert LISTED not in caplog.text  # the exception's text is redacted too


@pytest.mark.parametrize("policy", ["closed", "open"])
async def test_an_answer_that_is_not_a_bool_is_a_failure(policy: str) -> None:
    sources = sources_of(Plugin("scrub", scrub=(lambda number: "yes", {"on_failure": policy})))
    assert (await sources.check(LISTED, ["scrub"])).status == (
        "unavailable" if policy == "closed" else "clear"
    )


async def test_sources_run_concurrently_and_the_first_hit_wins() -> None:
    cancelled = asyncio.Event()

    async def slow(number: str) -> bool:
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            cancelled.set()
            raise
        return False

    sources = sources_of(
        Plugin("a", slow=(slow, {"timeout": 60})),
        Plugin("b", down=(raises, {}), scrub=(listed_async, {})),
    )
    started = time.perf_counter()
    # A hit outranks a source that failed closed: the number is listed, for good.
    assert await sources.check(LISTED, ["slow", "down", "scrub"]) == DncSourceAnswer(hit="scrub")
    assert time.perf_counter() - started < 1.0
    assert cancelled.is_set()
    # No hit: the first source named that failed closed is the answer.
    answer = await sources.check(NOT_LISTED, ["scrub", "down"])
    assert answer == DncSourceAnswer(unavailable="down", retry_after=60.0)


async def test_each_source_has_its_own_timeout() -> None:
    async def takes(seconds: float) -> bool:
        await asyncio.sleep(seconds)
        return False

    sources = sources_of(
        Plugin(
            "p",
            quick=(lambda n: takes(0.2), {"timeout": 0.05, "on_failure": "open"}),
            patient=(lambda n: takes(0.2), {"timeout": 2}),
        )
    )
    answer = await sources.check(NOT_LISTED, ["quick", "patient"])
    assert answer == DncSourceAnswer(opened=("quick",))


async def test_duplicate_names_are_an_error_naming_both_plugins() -> None:
    sources = sources_of(
        Plugin("first_plugin", litigators=(listed_async, {})),
        Plugin("second_plugin", litigators=(listed_sync, {}), scrub=(listed_async, {})),
    )
    with pytest.raises(ConfigurationError) as caught:
        sources.check_names(["litigators"])
    message = str(caught.value)
    assert "first_plugin (explicit)" in message
    assert "second_plugin (explicit)" in message
    with pytest.raises(ConfigurationError, match="registered twice"):
        await sources.check(LISTED, ["litigators"])
    with pytest.raises(ConfigurationError, match="registered twice"):
        await sources.check(LISTED, None)
    # The other plugin's other source is unaffected.
    assert (await sources.check(LISTED, ["scrub"])).hit == "scrub"
    with pytest.raises(ConfigurationError, match="registered twice, by a and by b"):
        DncSources([DncSource("x", listed_sync, plugin="a"), DncSource("x", raises, plugin="b")])


async def test_a_plugin_whose_hook_raises_does_not_sink_the_others(
    caplog: pytest.LogCaptureFixture,
) -> None:
    class Broken:
        __name__ = "broken_plugin"

        @predial.hookimpl
        def register_dnc_sources(self, register: predial.DncSourceRegister) -> None:
            register("half", listed_async)
            raise KeyError("SCRUB_TOKEN")

    caplog.set_level(logging.WARNING, logger="predial.compliance._dnc_sources")
    sources = sources_of(Broken(), Plugin("good", scrub=(listed_async, {})))
    assert sources.names() == ["scrub"]
    assert (await sources.check(LISTED, ["scrub"])).hit == "scrub"
    assert "broken_plugin" in caplog.text
    assert "KeyError" in caplog.text
    # An error only for a campaign naming one of its sources, saying why.
    with pytest.raises(
        ConfigurationError, match="'half' is not available: broken_plugin .*KeyError"
    ):
        sources.check_names(["half"])
    with pytest.raises(ConfigurationError, match="no do-not-call source 'other'.*broken_plugin"):
        sources.check_names(["other"])


async def test_a_wrong_registration_is_said_plainly() -> None:
    sources = sources_of(
        Plugin("bad", Bad_Name=(listed_async, {})),
        Plugin("bad2", slow=(listed_async, {"timeout": 0})),
        Plugin("bad3", lax=(listed_async, {"on_failure": "ignore"})),
    )
    assert sources.names() == []
    for name, expected in (
        ("Bad-Name", "lowercase slug"),
        ("slow", r"timeout must be seconds > 0"),
        ("lax", "on_failure must be 'closed' or 'open'"),
    ):
        with pytest.raises(ConfigurationError, match=expected):
            sources.check_names([name])


async def test_an_unknown_name_lists_the_registered_ones() -> None:
    sources = sources_of(Plugin("p", scrub=(listed_async, {})))
    with pytest.raises(
        ConfigurationError, match=r"no do-not-call source 'scurb'.*registered: scrub"
    ):
        await sources.check(LISTED, ["scurb"])


def test_a_plugin_listed_as_failed_registers_no_source() -> None:
    class NoFetch:
        name = "nofetch"  # no fetch_phone: a bad adapter

    class Mixed:
        __name__ = "mixed"

        @predial.hookimpl
        def register_adapters(self, register: predial.AdapterRegister) -> None:
            register(NoFetch)

        @predial.hookimpl
        def register_dnc_sources(self, register: predial.DncSourceRegister) -> None:
            register("mixed-source", listed_sync)

    registry = PluginRegistry(make_plugin_manager())
    info = PluginInfo(name="mixed", origin="entry point")
    registry.add(Mixed(), info)
    assert info.status == "failed"
    assert DncSources.from_registry(registry).names() == []


def test_the_register_type_is_public() -> None:
    assert "DncSourceRegister" in predial.__all__

    def typed(register: predial.DncSourceRegister) -> None:
        check: Callable[[str], Awaitable[bool] | bool] = listed_sync
        register("scrub", check, timeout=0.5, on_failure="open", retry_after=30)

    collected: list[tuple[Any, ...]] = []
    typed(lambda *args, **kwargs: collected.append((*args, kwargs)))
    assert collected == [
        ("scrub", listed_sync, {"timeout": 0.5, "on_failure": "open", "retry_after": 30})
    ]


async def test_a_sync_source_runs_on_predials_daemon_threads() -> None:
    """Never on asyncio's default executor: a hung scrub service must not hold the
    process's exit nor starve other `to_thread` users."""
    import threading

    from predial.compliance._dnc_sources import DncSource

    seen: list[tuple[str, bool]] = []

    def check(number: str) -> bool:
        thread = threading.current_thread()
        seen.append((thread.name, thread.daemon))
        return False

    sources = DncSources([DncSource("sync", check, timeout=1.0, on_failure="closed")])
    answer = await sources.check("+12024561111", ["sync"])
    assert (answer.hit, answer.unavailable) == (None, None)
    [(name, daemon)] = seen
    assert name.startswith("predial-dnc-source")
    assert daemon
