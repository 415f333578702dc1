"""Shared test doubles: a scriptable adapter, a fake clock, a resolver factory."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from redis_fixtures import *  # noqa: F403  (real redis-server fixtures)

import predial
from predial import Campaign, Resolver

VALID_US = "+12024561111"  # The White House switchboard: valid, assigned.
VALID_US_2 = "+12024561414"
VALID_GB_MOBILE = "+447911123456"
FICTIONAL = "+15555551234"  # the docs' example: not an assigned number


class FakeClock:
    """A monotonic clock the test moves by hand (cache TTLs, breaker waits)."""

    def __init__(self, start: float = 1_000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@dataclass
class Script:
    """What the scripted adapter does: `answer` is returned, or raised if an exception.

    `answer` may be a callable of the external id; `delay` is slept first.
    """

    answer: Any = VALID_US
    delay: float = 0.0
    calls: list[str] = field(default_factory=list)
    in_flight: int = 0
    max_in_flight: int = 0
    closed: bool = False

    def next_answer(self, external_id: str) -> Any:
        self.calls.append(external_id)
        answer = self.answer(external_id) if callable(self.answer) else self.answer
        if isinstance(answer, BaseException):
            raise answer
        return answer


class ScriptedAdapter:
    """An async adapter driven by a `Script` passed in the campaign settings."""

    name = "scripted"

    def __init__(self, script: Script) -> None:
        self.script = script

    async def fetch_phone(self, external_id: str) -> Any:
        script = self.script
        script.in_flight += 1
        script.max_in_flight = max(script.max_in_flight, script.in_flight)
        try:
            if script.delay:
                await asyncio.sleep(script.delay)
            return script.next_answer(external_id)
        finally:
            script.in_flight -= 1

    async def aclose(self) -> None:
        self.script.closed = True


class SyncScriptedAdapter:
    """The same, as a plain `def` adapter (run in a worker thread)."""

    name = "scripted-sync"

    def __init__(self, script: Script, gate: threading.Event | None = None) -> None:
        self.script = script
        self.gate = gate

    def fetch_phone(self, external_id: str) -> Any:
        if self.gate is not None:
            self.gate.wait(60)  # "hangs" for up to a minute unless the test releases it
        return self.script.next_answer(external_id)

    def close(self) -> None:
        self.script.closed = True


class ScriptPlugin:
    @predial.hookimpl
    def register_adapters(self, register: predial.AdapterRegister) -> None:
        register(ScriptedAdapter)
        register(SyncScriptedAdapter)


def make_resolver(
    script: Script | None = None,
    *,
    adapter: str = "scripted",
    campaign_id: str = "cmp",
    region: str | None = "US",
    extra_settings: dict[str, Any] | None = None,
    **options: Any,
) -> Resolver:
    settings: dict[str, Any] = {"script": script or Script()}
    settings.update(extra_settings or {})
    options.setdefault("retry", predial.RetrySettings(attempts=1))
    return Resolver(
        [Campaign(campaign_id, adapter, settings, default_region=region)],
        plugins=[ScriptPlugin()],
        load_entrypoints=False,
        **options,
    )


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def gate() -> Iterator[threading.Event]:
    """Holds a sync adapter "hung"; released at teardown so no thread outlives the test."""
    event = threading.Event()
    yield event
    event.set()
