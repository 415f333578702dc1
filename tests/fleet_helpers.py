"""A fleet of resolver processes for the shared tier's multi-process tests.

Each member is a process of its own (multiprocessing, "spawn": a fresh interpreter,
as a real dialer fleet has) holding one `Resolver` with a `RedisTier`, driven by
commands from the test: resolve ids now (concurrently), run a paced load in the
background until told to stop, report the tier's state. The adapters count every
CRM call in a file opened in append mode, so calls are counted across processes.

Everything here must be importable by module name in a spawned child (the test
passes `sys.path` along): no closures, no lambdas.
"""

from __future__ import annotations

import asyncio
import contextlib
import faulthandler
import json
import multiprocessing
import os
import queue
import signal
import threading
import time
import traceback
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import predial
from predial import (
    AdapterUnavailable,
    BreakerSettings,
    Campaign,
    CrmContact,
    CrmPhone,
    RedisTier,
    Resolver,
    RetrySettings,
)
from predial._phone import PhonePolicy
from predial.adapters.http import HttpAdapter

__all__ = [
    "CountingAdapter",
    "Fleet",
    "FleetCrm",
    "FleetPlugin",
    "MemberConfig",
    "RecordingCrm",
    "expected_number",
    "invalid_id",
    "read_calls",
]

SPAWN = multiprocessing.get_context("spawn")

#: The number the counting adapter answers for an id that is not "invalid".
_VALID = "+1202555{:04d}"
#: An unassigned number (area code 555): every campaign's policy refuses it.
_INVALID = "+1555555{:04d}"


def _digits(external_id: str) -> int:
    number = "".join(c for c in external_id if c.isdigit())
    return int(number or "0") % 10_000


def invalid_id(external_id: str) -> bool:
    """Whether the counting adapter answers `external_id` with an invalid number
    (ids ending in `x`, in the fault tests)."""
    return external_id.endswith("x")


def expected_number(external_id: str) -> str:
    """The valid number the CRM holds for `external_id`."""
    return _VALID.format(_digits(external_id))


def read_calls(path: str | os.PathLike[str]) -> list[str]:
    """The calls recorded in a counter file: `<member>:<id>` per line."""
    try:
        return Path(path).read_text().split()
    except FileNotFoundError:
        return []


class CountingAdapter:
    """An async adapter that records each call (one `write` of one line to a file in
    append mode: atomic across processes), sleeps `latency`, then answers:
    `mode="ok"` the id's number (an invalid one for ids ending in `x`), `mode="fail"`
    raises `AdapterUnavailable`."""

    name = "counting"

    def __init__(
        self,
        counter_file: str,
        member: str = "?",
        latency: float = 0.1,
        mode: str = "ok",
    ) -> None:
        self.counter_file = counter_file
        self.member = member
        self.latency = latency
        self.mode = mode

    async def fetch_phone(self, external_id: str) -> str:
        # One write(2) of one line with O_APPEND: atomic across processes.
        fd = os.open(self.counter_file, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            os.write(fd, f"{self.member}:{external_id}\n".encode())
        finally:
            os.close(fd)
        await asyncio.sleep(self.latency)
        if self.mode == "fail":
            raise AdapterUnavailable("the fake CRM is down")
        if invalid_id(external_id):
            return _INVALID.format(_digits(external_id))
        return expected_number(external_id)


class FleetCrm(HttpAdapter):
    """An HTTP adapter of a CRM whose documented limit is 50 requests per 10 s per
    tenant (the campaign's `tenant` setting names the account)."""

    name = "fleetcrm"
    rate_limit = (50, 10.0)

    async def fetch_phone(self, external_id: str) -> CrmContact:
        data = await self.get_json("/contacts/{}", external_id)
        return CrmContact(phones=[CrmPhone(data["phone"], "main", True)])

    def auth_headers(self) -> dict[str, str]:
        # Called as each request is sent, after the rate budget granted it: the CRM
        # learns when it left (the machine's monotonic clock, shared by processes).
        return {**super().auth_headers(), "X-Sent-At": repr(time.monotonic())}


class RecordingCrm:
    """A fake CRM (an ASGI app, served by `predial.testing._serving.serve`): records
    the time (`time.monotonic()`, the machine's clock, as every process reads it) of
    every request it receives and answers `GET /contacts/<id>` with the id's number
    (after `delay` seconds). Requests of `FleetCrm` say when they were sent
    (`X-Sent-At`), kept in `sent`."""

    def __init__(self, delay: float = 0.0) -> None:
        self.delay = delay
        self.times: list[float] = []
        self.sent: list[float] = []
        self.paths: list[str] = []
        self._lock = threading.Lock()

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        arrived = time.monotonic()
        path = scope["path"]
        sent = dict(scope["headers"]).get(b"x-sent-at")
        with self._lock:
            self.times.append(arrived)
            self.sent.append(float(sent) if sent else arrived)
            self.paths.append(path)
        if self.delay:
            await asyncio.sleep(self.delay)
        body = json.dumps({"phone": expected_number(path.rsplit("/", 1)[-1])}).encode()
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-type", b"application/json")],
            }
        )
        await send({"type": "http.response.body", "body": body})


class FleetPlugin:
    @predial.hookimpl
    def register_adapters(self, register: predial.AdapterRegister) -> None:
        register(CountingAdapter)
        register(FleetCrm)


@dataclass(frozen=True)
class MemberConfig:
    """How one member process builds its resolver (picklable)."""

    url: str
    adapter: str = "counting"
    settings: dict[str, Any] = field(default_factory=dict)
    campaign: str = "c"
    cluster: bool = False
    timeout: float = 0.05
    deadline: float = 3.0
    retry_attempts: int = 3
    breaker: tuple[int, float] | None = None
    #: More campaigns: (id, adapter, settings).
    extra: tuple[tuple[str, str, dict[str, Any]], ...] = ()
    #: PING Redis before saying ready (connects, and a Cluster client learns the
    #: slots); False: the first command is the process's first use of the tier.
    ping_first: bool = True


def _build(config: MemberConfig) -> Resolver:
    return Resolver(
        [
            Campaign(config.campaign, config.adapter, dict(config.settings)),
            *(Campaign(cid, adapter, dict(settings)) for cid, adapter, settings in config.extra),
        ],
        plugins=[FleetPlugin()],
        load_entrypoints=False,
        deadline=config.deadline,
        retry=RetrySettings(attempts=config.retry_attempts),
        breaker=(
            BreakerSettings(failure_threshold=config.breaker[0], open_for=config.breaker[1])
            if config.breaker is not None
            else None
        ),
        shared=RedisTier(config.url, timeout=config.timeout, cluster=config.cluster),
    )


# -- inside a member process ---------------------------------------------------------


@dataclass
class _Load:
    """A paced load: `loops` tasks, each resolving an id then sleeping `pause` (a
    local cache hit never yields: without the sleep a loop starves its own event
    loop), until told to stop (or `end_at`, a `time.monotonic()` instant: the clock
    is the machine's, shared by every process)."""

    prefix: str
    loops: int
    pause: float
    pool: int  # ids drawn from a pool of this many; 0: every id is new
    fresh_every: int  # with a pool, every n-th resolve of a loop is a new id
    end_at: float | None
    stop: asyncio.Event = field(default_factory=asyncio.Event)
    ok: int = 0
    sources: Counter[str] = field(default_factory=Counter)
    refused: Counter[str] = field(default_factory=Counter)
    max_latency: float = 0.0
    slow: list[tuple[float, str]] = field(default_factory=list)  # (latency, outcome)
    wrong: list[tuple[str, str]] = field(default_factory=list)  # (id, number answered)
    served_invalid: list[tuple[str, str]] = field(default_factory=list)
    started_at: float = 0.0
    ended_at: float = 0.0

    def result(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "sources": dict(self.sources),
            "refused": dict(self.refused),
            "max_latency": self.max_latency,
            "slowest": sorted(self.slow, reverse=True)[:10],
            "wrong": self.wrong[:20],
            "served_invalid": self.served_invalid[:20],
            "seconds": self.ended_at - self.started_at,
        }


class _Member:
    def __init__(self, name: str, config: MemberConfig) -> None:
        self.name = name
        self.config = config
        self.resolver = _build(config)
        self.policy = PhonePolicy()
        self.load: _Load | None = None
        self.load_task: asyncio.Task[None] | None = None
        self.latency_bound = config.deadline + 0.1

    async def one(self, external_id: str, campaign: str | None = None) -> dict[str, Any]:
        started = time.monotonic()
        try:
            answer = await self.resolver.resolve(
                {"campaignId": campaign or self.config.campaign, "externalId": external_id}
            )
        except predial.Unresolvable as refusal:
            return {
                "id": external_id,
                "refused": refusal.reason,
                "elapsed": time.monotonic() - started,
            }
        return {
            "id": external_id,
            "number": answer.phone_number,
            "source": answer.source,
            "elapsed": time.monotonic() - started,
        }

    # commands

    async def cmd_resolve(
        self, ids: Sequence[str], sequential: bool = False, campaign: str | None = None
    ) -> list[dict[str, Any]]:
        """Resolve `ids` (of the first campaign, or `campaign`) concurrently, or one
        after the other; what each came to."""
        if sequential:
            return [await self.one(i, campaign) for i in ids]
        return list(await asyncio.gather(*(self.one(i, campaign) for i in ids)))

    async def cmd_connect(self, connections: int, step: int = 5) -> int:
        """Open `connections` connections to Redis (concurrent PINGs, `step` more at a
        time so no round pays for many connects at once): a burst that follows finds
        them in the pool, as in a process that has been running. How many of the last
        round's PINGs were answered."""
        tier = self.resolver.shared
        assert tier is not None
        answered = 0
        for size in range(step, connections + step, step):
            answers = await asyncio.gather(*(tier.ping() for _ in range(min(size, connections))))
            answered = sum(answers)
        return answered

    async def cmd_state(self) -> dict[str, Any]:
        tier = self.resolver.shared
        assert tier is not None
        return {"state": tier.state, "counts": dict(tier.counts), "pid": os.getpid()}

    async def cmd_wait_up(self, within: float) -> dict[str, Any]:
        """Wait (at most `within` seconds) until the tier is up again; its state at the end."""
        tier = self.resolver.shared
        assert tier is not None
        deadline = time.monotonic() + within
        while tier.state != "up" and time.monotonic() < deadline:  # noqa: ASYNC110 - no event to wait on
            await asyncio.sleep(0.02)
        return await self.cmd_state()

    async def cmd_load(self, **options: Any) -> None:
        load = self.load = _Load(**options)
        load.started_at = time.monotonic()
        self.load_task = asyncio.create_task(self._run_load(load))

    async def cmd_stop(self) -> dict[str, Any]:
        assert self.load is not None
        assert self.load_task is not None
        self.load.stop.set()
        await self.load_task
        return self.load.result()

    async def _run_load(self, load: _Load) -> None:
        await asyncio.gather(*(self._loop(load, j) for j in range(load.loops)))
        load.ended_at = time.monotonic()

    async def _loop(self, load: _Load, j: int) -> None:
        turn = 0
        while not load.stop.is_set() and (load.end_at is None or time.monotonic() < load.end_at):
            turn += 1
            if load.pool and (not load.fresh_every or turn % load.fresh_every):
                external_id = f"{load.prefix}{(j * 37 + turn * 11) % load.pool}"
            else:
                external_id = f"{load.prefix}{self.name}-{j}-{turn}"
            if turn % 7 == 3:
                external_id += "x"  # the CRM answers an invalid number for it
            outcome = await self.one(external_id)
            elapsed = outcome["elapsed"]
            load.max_latency = max(load.max_latency, elapsed)
            number = outcome.get("number")
            if number is None:
                load.refused[outcome["refused"]] += 1
                shown = f"refused {outcome['refused']}"
            else:
                load.ok += 1
                load.sources[outcome["source"]] += 1
                shown = f"{outcome['source']} {number}"
                if self.config.adapter == "counting" and number != expected_number(external_id):
                    load.wrong.append((external_id, number))
                try:
                    accepted = self.policy.normalize(number)
                except predial.InvalidPhoneNumber:
                    accepted = None
                if accepted != number:
                    load.served_invalid.append((external_id, number))
            if elapsed > self.latency_bound:
                load.slow.append((elapsed, shown))
            await asyncio.sleep(load.pause)


async def _serve(
    name: str, config: MemberConfig, commands: multiprocessing.Queue, replies: multiprocessing.Queue
) -> None:
    loop = asyncio.get_running_loop()
    try:
        member = _Member(name, config)
    except Exception:
        replies.put(("error", traceback.format_exc()))
        return
    try:
        # Connect before the test starts the clock: a first command should not pay
        # for the connection (and a member that cannot reach Redis says so now).
        if config.ping_first:
            await member.resolver.shared.ping()  # type: ignore[union-attr]
        replies.put(("ok", os.getpid()))
        while True:
            command, kwargs = await loop.run_in_executor(None, commands.get)
            if command == "exit":
                break
            try:
                result = await getattr(member, f"cmd_{command}")(**kwargs)
            except Exception:
                replies.put(("error", traceback.format_exc()))
            else:
                replies.put(("ok", result))
    finally:
        if member.load is not None and member.load_task is not None:
            member.load.stop.set()
            with contextlib.suppress(Exception):
                await member.load_task
        await member.resolver.close()


def member_main(
    name: str, config: MemberConfig, commands: multiprocessing.Queue, replies: multiprocessing.Queue
) -> None:
    """The body of a member process (SIGUSR1 dumps its threads' stacks to stderr)."""
    faulthandler.register(signal.SIGUSR1, all_threads=True)
    asyncio.run(_serve(name, config, commands, replies))


# -- in the test process -------------------------------------------------------------


class FleetError(AssertionError):
    """A member failed a command (its traceback in the message) or did not answer."""


class Fleet:
    """Member processes, started together, driven by commands, always cleaned up
    (`with Fleet(...) as fleet:` terminates every process on the way out, failure
    or not)."""

    def __init__(self, configs: dict[str, MemberConfig], *, start_timeout: float = 60.0) -> None:
        self.configs = configs
        self.start_timeout = start_timeout
        self.processes: dict[str, Any] = {}
        self._commands: dict[str, Any] = {}
        self._replies: dict[str, Any] = {}
        self._hung: set[str] = set()

    @property
    def names(self) -> list[str]:
        return list(self.configs)

    def start(self) -> Fleet:
        for name, config in self.configs.items():
            commands, replies = SPAWN.Queue(), SPAWN.Queue()
            process = SPAWN.Process(
                target=member_main, args=(name, config, commands, replies), name=f"member-{name}"
            )
            self._commands[name], self._replies[name] = commands, replies
            self.processes[name] = process
            process.start()
        for name in self.configs:
            self._reply(name, self.start_timeout)
        return self

    def _reply(self, name: str, timeout: float) -> Any:
        deadline = time.monotonic() + timeout
        while True:
            try:
                status, value = self._replies[name].get(timeout=0.2)
                break
            except queue.Empty:
                if not self.processes[name].is_alive():
                    raise FleetError(
                        f"member {name} died (exit code {self.processes[name].exitcode})"
                    ) from None
                if time.monotonic() > deadline:
                    # What it is doing instead, on the test's stderr.
                    with contextlib.suppress(OSError):
                        os.kill(self.processes[name].pid, signal.SIGUSR1)
                    time.sleep(0.5)
                    self._hung.add(name)  # close() will not wait for it to exit
                    raise FleetError(
                        f"member {name} did not answer within {timeout} s (its stacks are "
                        "on stderr)"
                    ) from None
        if status != "ok":
            raise FleetError(f"member {name} failed:\n{value}")
        return value

    def send(self, name: str, command: str, **kwargs: Any) -> None:
        self._commands[name].put((command, kwargs))

    def reply(self, name: str, timeout: float = 30.0) -> Any:
        return self._reply(name, timeout)

    def call(self, name: str, command: str, timeout: float = 30.0, **kwargs: Any) -> Any:
        self.send(name, command, **kwargs)
        return self.reply(name, timeout)

    def all(
        self,
        command: str,
        names: Sequence[str] | None = None,
        timeout: float = 30.0,
        per_member: dict[str, dict[str, Any]] | None = None,
        **kwargs: Any,
    ) -> dict[str, Any]:
        """Send `command` to every member (`names`) first, then collect the replies:
        the members run it at the same time."""
        names = list(names or self.names)
        for name in names:
            self.send(name, command, **{**kwargs, **(per_member or {}).get(name, {})})
        return {name: self.reply(name, timeout) for name in names}

    def close(self) -> None:
        for name, process in self.processes.items():
            if name in self._hung:
                process.kill()
            elif process.is_alive():
                with contextlib.suppress(Exception):
                    self._commands[name].put(("exit", {}))
        deadline = time.monotonic() + 5.0
        for process in self.processes.values():
            process.join(max(0.0, deadline - time.monotonic()))
        for process in self.processes.values():
            if process.is_alive():
                process.terminate()
                process.join(2.0)
            if process.is_alive():
                process.kill()
                process.join(2.0)
        for channel in (*self._commands.values(), *self._replies.values()):
            channel.cancel_join_thread()  # a dead member reads nothing: never block on it
            channel.close()

    def __enter__(self) -> Fleet:
        try:
            return self.start()
        except BaseException:
            self.close()
            raise

    def __exit__(self, *exc: object) -> None:
        self.close()
