"""`RedisTier`: the shared tier on Redis or Valkey, through redis-py's asyncio client.

What it shares, per (campaign, external id): the cache, and one CRM call at a time
across the fleet (single flight: the holder claims the key with `SET NX PX`, the
others register as waiters in the same script and block on a list the holder
fills when it is done — no polling); per CRM tenant: the rate budget and the
daily-quota pause; per campaign: the circuit breaker with one half-open probe for
the whole fleet. Do-not-call verdicts are announced on a stream every process
reads, so none dials a lead another has just learnt not to call.

Redis is never a new way to fail a dial. Every operation is bounded by `timeout`;
an operation that fails or times out puts the tier in the `degraded` state (logged
once, counted), and for `retry_interval` seconds nothing is sent: the resolver
works on its local tiers meanwhile. Then one operation tries again, and the tier
is `up` as soon as one succeeds.

redis-py's clients belong to the event loop that made them, so there is one client
per loop (a `resolve_sync` caller and an async dialer sharing a resolver each get
their own).
"""

from __future__ import annotations

import asyncio
import contextvars
import hashlib
import importlib.util
import logging
import os
import secrets
import time
import urllib.parse
import weakref
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final, Literal, TypeVar, cast

from .._background import Background
from .._redaction import register_secret
from ..errors import ConfigurationError
from . import _scripts as scripts
from ._codec import CorruptValue, Message, Value, decode_message, decode_value

if TYPE_CHECKING:
    from redis.asyncio import Redis
    from redis.asyncio.cluster import RedisCluster

    from .._ratelimit import SlidingWindowLimiter

__all__ = ["Lookup", "RedisTier", "TierState", "redacted_url"]

log = logging.getLogger(__name__)

T = TypeVar("T")

TierState = Literal["up", "degraded", "closed"]
LookupKind = Literal["hit", "claimed", "wait", "miss", "lost"]

#: The operation being queued for the next pipeline: its timeout and its bound.
_BOUND: contextvars.ContextVar[tuple[asyncio.Timeout, float] | None] = contextvars.ContextVar(
    "predial_shared_bound", default=None
)
#: How long an operation may wait on this loop for its pipeline to be sent.
_QUEUEING: Final = 0.5

#: How long the inbox reader blocks in one pop (seconds).
_INBOX_BLOCK: Final = 1.0
#: Messages kept for waiters that have not started waiting yet.
_EARLY_KEPT: Final = 1000

#: Fields of the event stream's entries: `kind`, `campaign`, `id`.
_EVENTS_MAXLEN: Final = 10_000


@dataclass(frozen=True, slots=True)
class Lookup:
    """What the shared tier holds for a key, and who fetches it.

    `kind`: `hit` (a fresh value), `claimed` (this process fetches and must
    `publish`), `wait` (another process fetches: `wait` for its message, at most
    `lock_ms`), `miss`, or `lost` (the answer did not come back: this process
    fetches, and publishes in case its claim was taken). `value` is the entry,
    fresh or not (a stale number may be served while the CRM is unavailable);
    `value_ms` its remaining life.
    """

    kind: LookupKind
    value: Value | None
    now_ms: int
    value_ms: int
    lock_ms: int
    token: str


def redacted_url(url: str) -> str:
    """`url` without its password (for logs, `predial check` and `/readyz`).

    Whatever precedes the URL's last `@` is user info: a password with `/`, `#` or
    `?` left unencoded would otherwise end the address early and show."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        return "<a Redis URL that does not parse>"
    if "@" in rest:
        user, _, rest = rest.rpartition("@")
        name = user.split(":", 1)[0] if ":" in user else ""
        rest = f"{name}:***@{rest}"
    address, _, _ = rest.partition("?")  # options are not shown (nor needed)
    return f"{scheme}://{address}"


def url_secrets(url: str) -> list[str]:
    """The password of `url`, as written and decoded (both are redacted)."""
    _, sep, rest = url.partition("://")
    if not sep or "@" not in rest:
        return []
    user = rest.rpartition("@")[0]
    password = user.split(":", 1)[1] if ":" in user else user
    if not password:
        return []
    return sorted({password, urllib.parse.unquote(password)})


def url_problem(url: str) -> str | None:
    """Why redis-py cannot read `url`, without quoting it; None when it can."""
    try:
        from redis.connection import parse_url
    except ImportError:
        return None
    try:
        parse_url(url)  # type: ignore[no-untyped-call]
        database = url.partition("://")[2].rpartition("@")[2].partition("?")[0]
        database = database.partition("/")[2] if "/" in database else ""
        if database and not (database.isdigit() or url.startswith("unix://")):
            raise ValueError("database")  # redis-py would quietly use 0
    except (ValueError, TypeError):
        return (
            "the Redis URL does not parse: check its port and database, and "
            "percent-encode a password holding / # ? @ or % (e.g. %2F for /)"
        )
    return None


def _key_part(value: str) -> str:
    # Length-prefixed, so ("a:b", "c") and ("a", "b:c") never share a key.
    return f"{len(value)}:{value}"


class RedisTier:
    """The shared tier on Redis or Valkey (plain, or Cluster with `cluster=True`).

    `url`: `redis://[:password@]host:port/db` or `rediss://` for TLS. `prefix`
    starts every key. `timeout` bounds each operation (seconds). `local_ttl`: how
    long a process serves an entry from its own memory before asking Redis again
    (how long a fleet may disagree). `retry_interval`: how long the tier stays
    degraded after a failure before trying Redis again.
    """

    def __init__(
        self,
        url: str,
        *,
        prefix: str = "predial",
        timeout: float = 0.05,
        cluster: bool = False,
        local_ttl: float = 1.0,
        retry_interval: float = 1.0,
        heartbeat: float = 5.0,
        max_connections: int = 1000,
    ) -> None:
        scheme = urllib.parse.urlsplit(url).scheme if isinstance(url, str) else ""
        if scheme not in ("redis", "rediss", "unix"):
            raise ConfigurationError(
                f"shared tier: {redacted_url(url) if isinstance(url, str) else url!r} is not a "
                "Redis URL (redis://host:6379/0, rediss:// for TLS, redis://:password@host; "
                "Valkey takes the same redis:// URLs)"
            )
        if importlib.util.find_spec("redis") is None:
            raise ConfigurationError(
                "the shared tier needs redis-py: pip install 'predial[redis]' "
                "(from a clone: pip install -e '.[redis]')"
            )
        for name, value in (
            ("timeout", timeout),
            ("local_ttl", local_ttl),
            ("retry_interval", retry_interval),
            ("heartbeat", heartbeat),
        ):
            if not 0 < value < 3600:  # NaN compares false
                raise ConfigurationError(f"shared tier: {name} must be > 0 and < 3600 seconds")
        if not prefix or any(c in prefix for c in "{} \n\r"):
            raise ConfigurationError("shared tier: prefix must be non-empty, without { } or spaces")
        self.url = url
        self.prefix = prefix
        self.timeout = timeout
        self.cluster = cluster
        self.local_ttl = local_ttl
        self.retry_interval = retry_interval
        self.heartbeat = heartbeat
        self.max_connections = max_connections
        self.shown_url = redacted_url(url)
        for secret in url_secrets(url):
            register_secret(secret)  # redacted wherever an error might quote it
        problem = url_problem(url)
        if problem is not None:
            raise ConfigurationError(f"shared tier: {problem}")
        # redis-py's import takes ~0.5 s: here, not in the first dial's deadline.
        import redis.asyncio
        import redis.asyncio.cluster  # noqa: F401

        self._state: TierState = "up"
        self._retry_at = 0.0
        self._last_success = time.monotonic()
        self._timeouts_since: float | None = None
        # How long timeouts must go on, with no operation succeeding, to degrade.
        self._patience = max(0.25, timeout * 5)
        self._since = time.time()
        self._last_error: str | None = None
        self._clients: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _Client] = (
            weakref.WeakKeyDictionary()
        )
        self._tasks = Background()
        # Hand-overs under way: finished (within the timeout) before close() stops.
        self._handing_over = Background()
        # Dropped clients being closed: waited for, never cancelled (a socket would
        # be left to the garbage collector).
        self._closing = Background()
        self._local_budgets: dict[str, SlidingWindowLimiter] = {}
        self._cluster_nodes: list[tuple[str, int]] = []
        self._inboxes: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _Inbox] = (
            weakref.WeakKeyDictionary()
        )
        self._listening: weakref.WeakSet[asyncio.AbstractEventLoop] = weakref.WeakSet()
        self._member = f"{os.getpid()}-{secrets.token_hex(4)}"
        self.members = 1
        #: Counters by event: hit, claimed, wait, handed, wait_timeout, pushed, miss,
        #: lost, corrupt, degraded, recovered, error, rate_wait, breaker_open, event.
        self.counts: dict[str, int] = {}
        #: Called with each counted event (metrics).
        self.on_event: Callable[[str], None] | None = None
        #: Called with (campaign, external id) when a process announces do-not-call.
        self.on_do_not_call: Callable[[str, str], None] | None = None
        #: Called with (campaign, "open" or "closed", seconds open) when a process
        #: announces that a campaign's circuit opened or closed.
        self.on_breaker: Callable[[str, str, float], None] | None = None
        #: Incremented each time the tier comes back: what a process learnt from
        #: announcements may be out of date (some were missed meanwhile).
        self.generation = 0

    # -- state ---------------------------------------------------------------------

    @property
    def state(self) -> TierState:
        return self._state

    @property
    def up(self) -> bool:
        return self._state == "up"

    def describe(self) -> dict[str, Any]:
        """The tier's state for operators (no password)."""
        return {
            "state": self._state,
            "url": self.shown_url,
            "cluster": self.cluster,
            "since": self._since,
            "error": self._last_error,
            "members": self.members,
        }

    @property
    def _background_bound(self) -> float:
        """The bound of writes no dial waits for (hand-overs, announcements): a
        slow answer there costs nothing, a write given up too early is lost."""
        return max(1.0, self.timeout * 4)

    def _count(self, event: str) -> None:
        self.counts[event] = self.counts.get(event, 0) + 1
        if self.on_event is not None:
            self.on_event(event)

    def _available(self) -> bool:
        if self._state == "up":
            return True
        if self._state == "closed":
            return False
        now = time.monotonic()
        if now < self._retry_at:
            return False
        self._retry_at = now + self.retry_interval  # one try per interval
        return True

    def _failed(self, what: str, error: BaseException, *, probing: bool = True) -> None:
        self._count("error")
        timed_out = _timed_out(error)
        if _lost_connection(error):
            # A refused or reset connection: the pooled ones are likely dead too.
            # (An error reply, OOM or NOPERM, says nothing of the connections.)
            self._drop_client()
        if timed_out and self._state == "up":
            # Slow answers in a burst on a busy machine are not an outage; timeouts
            # going on for a while with nothing answered are.
            now = time.monotonic()
            if self._timeouts_since is None or self._timeouts_since < self._last_success:
                self._timeouts_since = now
            if now - self._timeouts_since < self._patience:
                return
        description = self._described(error)
        self._last_error = f"{what}: {description}"
        if probing or self._state == "up":
            # (A hand-over tried while degraded does not put off the next probe.)
            self._retry_at = time.monotonic() + self.retry_interval
        if self._state == "up":
            self._state = "degraded"
            self._since = time.time()
            # Waiters fetch on their own now, rather than wait for a hand-over.
            for owner, inbox in list(self._inboxes.items()):
                if not owner.is_closed():
                    owner.call_soon_threadsafe(inbox.wake_all)
            self._count("degraded")
            log.warning(
                "shared tier %s unavailable (%s); the resolver uses its local tiers and "
                "tries again every %.1f s",
                self.shown_url,
                self._last_error,
                self.retry_interval,
            )

    def _described(self, error: BaseException) -> str:
        if _timed_out(error):
            return "no answer within the timeout"
        text = f"{type(error).__name__}: {_safe_error(error, self.url)}"
        if ("MOVED" in text or type(error).__name__ == "MovedError") and not self.cluster:
            text += " (the server is a Redis Cluster node: set cluster = true)"
        return text

    def _succeeded(self) -> None:
        self._last_success = time.monotonic()
        if self._state == "degraded":
            self.generation += 1
            self._state = "up"
            self._since = time.time()
            self._last_error = None
            self._count("recovered")
            log.warning("shared tier %s is back; sharing resumes", self.shown_url)

    async def _run(
        self,
        what: str,
        operation: Callable[[_Client], Awaitable[T]],
        bound: float | None = None,
        *,
        always: bool = False,
        probing: bool | None = None,
        wrong_type: list[str] | None = None,
    ) -> T | None:
        """`operation` on this loop's client within the timeout; None when the tier
        is degraded or the operation fails (the failure is logged once per change).
        With `always`, it is tried even while the tier is degraded (a holder's
        hand-over: its waiters would otherwise wait out their deadlines)."""
        if self._state == "closed" or not (always or self._available()):
            return None
        try:
            client = self._client()
            if not client.ready:
                # A Cluster client still learning the slots (in the background,
                # see _client): not this operation's to wait for.
                return None
            if bound is not None:
                async with asyncio.timeout(bound):
                    result = await operation(client)
            else:
                # A new client's first operations also open its connection.
                bound = self.timeout if client.connected else max(self.timeout, 0.25)
                # `bound` counts from when the pipeline carrying the operation is
                # sent (see _Client._send): a burst's own CPU work on this loop is
                # not the server being slow. Until then, a queueing allowance. The
                # script call sets the deadline (one timer for an operation sent at
                # once): an operation without an explicit bound must be a script.
                async with asyncio.timeout(None) as limit:
                    reset = _BOUND.set((limit, bound))
                    try:
                        result = await operation(client)
                    finally:
                        _BOUND.reset(reset)
            client.connected = True
        except asyncio.CancelledError:
            raise
        except Exception as error:  # redis-py's errors, OSError, timeouts, a bad reply
            if _wrong_type(error):
                # A key of predial's holding another type: one corrupt entry, not
                # an outage (the server answered).
                self._count("corrupt")
                self._succeeded()
                if wrong_type is not None:
                    wrong_type.append(what)
                return None
            if probing is None:
                probing = not always or self._state == "up"
            self._failed(what, error, probing=probing)
            return None
        self._succeeded()
        return result

    def _client(self) -> _Client:
        loop = asyncio.get_running_loop()
        client = self._clients.get(loop)
        if client is None:
            client = self._clients[loop] = _Client(self)
            if not client.ready:
                self._spawn(self._discover(client))
            if loop not in self._listening:
                self._listening.add(loop)
                self._spawn(self._listen())
        return client

    async def _discover(self, client: _Client) -> None:
        """A Cluster client's first step, learning which node holds which slots: a
        few round trips, more than one operation's timeout, so it is done in the
        background while operations go to the local tiers."""
        try:
            async with asyncio.timeout(max(1.0, self.timeout)):
                await client.redis.initialize()
        except asyncio.CancelledError:
            raise
        except Exception as error:
            loop = asyncio.get_running_loop()
            if self._clients.get(loop) is client:
                self._failed("cluster discovery", error)
                # Forgotten, so the next operation (after retry_interval when the
                # tier is degraded) starts a discovery again with a fresh client.
                del self._clients[loop]
                self._spawn(_close_quietly(client))
            return
        client.ready = True
        # Remembered for the next client: after a failover the URL's node may be
        # the one that is gone.
        nodes = getattr(client.redis, "get_nodes", None)
        if nodes is not None:
            self._cluster_nodes = [(str(node.host), int(node.port)) for node in nodes()]

    def _drop_client(self) -> None:
        """Forget this loop's client after a failure: its pooled connections may all
        be dead (a restarted server, a failed-over node), and each would fail once
        more. The next operation connects afresh."""
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return
        client = self._clients.pop(loop, None)
        if client is not None:
            self._closing.spawn(_close_quietly(client))

    def _spawn(self, work: Coroutine[Any, Any, Any]) -> None:
        self._tasks.spawn(work)

    # -- keys ----------------------------------------------------------------------

    def _lead(self, campaign: str, external_id: str) -> str:
        return f"{self.prefix}:{{l:{_key_part(campaign)}:{external_id}}}"

    def tenant_key(self, tenant: str) -> str:
        return f"{self.prefix}:{{t:{tenant}}}"

    def _breaker(self, campaign: str) -> str:
        return f"{self.prefix}:{{b:{_key_part(campaign)}}}"

    @property
    def _events(self) -> str:
        return f"{self.prefix}:{{events}}"

    @property
    def _members(self) -> str:
        return f"{self.prefix}:{{members}}"

    # -- the cache and single flight -------------------------------------------------

    async def lookup(
        self,
        campaign: str,
        external_id: str,
        *,
        claim_ms: int | None,
        token: str | None = None,
    ) -> Lookup | None:
        """The key's value and, with `claim_ms`, a claim on fetching it (held at most
        `claim_ms`, the fetch's deadline). None when the tier is unavailable. A
        `lost` lookup's `token` may be passed again: a claim it took is then this
        caller's."""
        base = self._lead(campaign, external_id)
        token = token or secrets.token_hex(16)
        claim = claim_ms is not None and claim_ms > 0
        argv: list[str | int] = [
            token,
            max(1, claim_ms or 1),
            "1" if claim else "0",
            self._inbox_name(),
        ]

        async def run(client: _Client) -> Any:
            return await client.lookup(keys=[f"{base}:c", f"{base}:l", f"{base}:w"], args=argv)

        if self._state == "closed" or not self._available():
            return None
        wrong_type: list[str] = []
        reply = await self._run("lookup", run, always=True, probing=True, wrong_type=wrong_type)
        if reply is None and wrong_type:
            # A key of this lead holds something predial did not write: removed,
            # so the fetch that follows (a miss) writes good values.
            log.warning(
                "shared tier: a key of a lead of campaign %r holds another type; removed",
                campaign,
            )
            keys = [f"{base}:c", f"{base}:l", f"{base}:w"]
            await self._run("repair", lambda client: client.redis.delete(*keys), self.timeout)
            return Lookup("miss", None, 0, 0, 0, token)
        if reply is None:
            # Sent, but the answer was lost (a timeout, a dropped connection): the
            # claim may have been taken, so the caller fetches on its own and still
            # publishes under this token (releasing it, handing over to waiters).
            self._count("lost")
            return Lookup("lost", None, 0, 0, 0, token)
        try:
            kind = _str(reply[0])
            now_ms, ttl_ms = int(reply[2]), int(reply[3])
            holder = _str(reply[4]) if reply[4] else token
        except (IndexError, TypeError, ValueError):
            self._count("corrupt")
            return None
        if kind not in ("hit", "claimed", "wait", "miss"):
            self._count("corrupt")
            return None
        value = None
        if reply[1]:
            try:
                value = decode_value(reply[1])
            except CorruptValue as problem:
                # A miss: the fetch that follows writes a good value over it.
                self._count("corrupt")
                log.warning(
                    "shared tier: a corrupt cache entry for a lead of campaign %r (%s) is "
                    "treated as a miss",
                    campaign,
                    problem,
                )
                kind = "miss" if kind == "hit" else kind
        self._count(kind)
        if kind == "wait":
            return Lookup("wait", value, now_ms, -2, ttl_ms, holder)
        return Lookup(cast(LookupKind, kind), value, now_ms, ttl_ms, 0, token)

    async def publish(
        self,
        campaign: str,
        external_id: str,
        *,
        token: str,
        body: str | None,
        fresh_ms: int,
        keep_ms: int,
        message: str,
        message_ms: int,
    ) -> bool:
        """Write the value (`body`, unless None), release the claim and hand
        `message` to the waiting processes' inboxes."""
        base = self._lead(campaign, external_id)
        argv: list[str | int] = [token, body or "", fresh_ms, max(1, keep_ms)]

        async def run(client: _Client) -> Any:
            return await client.publish(keys=[f"{base}:c", f"{base}:l", f"{base}:w"], args=argv)

        waiting = await self._run("publish", run, self._background_bound, always=True)
        if waiting is None:
            return False
        hand_over = [message, max(1, message_ms)]
        for inbox in waiting or ():
            try:
                key = f"{self.prefix}:{{i:{_str(inbox)}}}"
            except (TypeError, UnicodeDecodeError):
                continue

            async def push(client: _Client, key: str = key) -> Any:
                return await client.hand_over(keys=[key], args=hand_over)

            # All go out in the next pipeline: started now, awaited together.
            self._handing_over.spawn(self._hand_over(push))
        return True

    async def _hand_over(self, push: Callable[[_Client], Awaitable[Any]]) -> None:
        if await self._run("hand over", push, self._background_bound, always=True) is not None:
            self._count("pushed")

    async def store(
        self,
        campaign: str,
        external_id: str,
        *,
        body: str,
        fresh_ms: int,
        keep_ms: int,
        waited_for: bool = False,
    ) -> bool:
        """Write a value outside a flight (`waited_for`: a dial waits for it, so it
        is bounded by `timeout`, not the background writes' bound)."""
        key = f"{self._lead(campaign, external_id)}:c"

        async def run(client: _Client) -> Any:
            return await client.store(keys=[key], args=[body, fresh_ms, max(1, keep_ms)])

        bound = None if waited_for else self._background_bound
        return await self._run("store", run, bound) is not None

    async def wait(
        self, campaign: str, external_id: str, *, holder: str, seconds: float
    ) -> Message | None:
        """The holder's message, waiting at most `seconds`. It arrives in this
        loop's inbox (one blocking pop per process and loop, not one connection per
        waiter); None when it does not come in time or the tier goes away meanwhile
        (the caller then fetches on its own)."""
        inbox = self._inbox()
        early = inbox.early.pop(holder, None)
        if early is not None:
            self._count("handed")
            return early
        if not self.up:
            self._count("wait_timeout")
            return None
        future: asyncio.Future[Message | None] = asyncio.get_running_loop().create_future()
        inbox.waiting[holder] = future
        try:
            async with asyncio.timeout(seconds):
                message = await future
        except TimeoutError:
            message = None
        finally:
            if inbox.waiting.get(holder) is future:
                del inbox.waiting[holder]
        self._count("handed" if message is not None else "wait_timeout")
        return message

    def _inbox_name(self) -> str:
        return self._inbox().name

    def _inbox(self) -> _Inbox:
        loop = asyncio.get_running_loop()
        inbox = self._inboxes.get(loop)
        if inbox is None:
            inbox = self._inboxes[loop] = _Inbox(f"{self._member}-{len(self._inboxes)}")
            self._spawn(self._read_inbox(inbox))
        return inbox

    async def _read_inbox(self, inbox: _Inbox) -> None:
        """Pop this loop's inbox and wake the waiter each message is for."""
        key = f"{self.prefix}:{{i:{inbox.name}}}"
        while self._state != "closed":
            if not self.up:
                inbox.wake_all()  # they fetch on their own now
                await asyncio.sleep(min(self.retry_interval, 0.25))
                continue
            if not self._client().ready:  # a Cluster client learning the slots
                await asyncio.sleep(0.05)
                continue

            async def run(client: _Client) -> Any:
                return await client.redis.blpop([key], timeout=_INBOX_BLOCK)

            wrong_type: list[str] = []
            started = time.monotonic()
            reply = await self._run("inbox", run, bound=_INBOX_BLOCK + 1.0, wrong_type=wrong_type)
            if wrong_type:  # not a list: predial's own key, so it is repaired
                log.warning("shared tier: this process's inbox key held another type; removed")
                await self._run("repair", lambda client: client.redis.delete(key), self.timeout)
            if reply is None:
                if time.monotonic() - started < _INBOX_BLOCK / 2:
                    await asyncio.sleep(0.05)  # a failure at once: no busy loop
                continue
            try:
                message = decode_message(reply[1])
            except (CorruptValue, IndexError, TypeError):
                self._count("corrupt")
                continue
            future = inbox.waiting.pop(message.token, None)
            if future is None:
                inbox.keep_early(message)  # its waiter has not started waiting yet
            elif not future.done():
                future.set_result(message)

    # -- the rate budget -------------------------------------------------------------

    def local_budget(self, tenant: str, limit: int, window: float) -> SlidingWindowLimiter:
        """The tenant's budget in this process while Redis is unavailable: one per
        tenant, whatever number of campaigns (adapters) share it."""
        from .._ratelimit import SlidingWindowLimiter

        budget = self._local_budgets.get(tenant)
        if budget is None or budget.window != window:
            budget = self._local_budgets[tenant] = SlidingWindowLimiter(limit, window)
        budget.limit = limit  # the fleet's size changed: same history, new share
        return budget

    async def reserve(
        self, tenant: str, limit: int, window: float
    ) -> tuple[Literal["ok", "wait", "paused"], float, str | None] | None:
        """Take a slot of the tenant's budget: ("ok", 0, slot), ("wait", seconds,
        None) or ("paused", seconds, None) for a spent daily quota. None when
        unavailable. A slot taken is `settle`d when its request has ended."""
        base = self.tenant_key(tenant)
        argv: list[str | int] = [limit, int(window * 1_000_000), secrets.token_hex(6)]

        async def run(client: _Client) -> Any:
            return await client.reserve(keys=[f"{base}:rate", f"{base}:quota"], args=argv)

        reply = await self._run("reserve", run)
        if reply is None:
            return None
        code, amount = int(reply[0]), int(reply[1])
        if code == 0:
            return "ok", 0.0, _str(reply[2]) if len(reply) > 2 else None
        if code == 2:
            return "paused", amount / 1000, None
        self._count("rate_wait")
        return "wait", amount / 1_000_000, None

    async def settle(self, tenant: str, slot: str) -> bool:
        """Stamp a slot with the time its request ended."""
        key = f"{self.tenant_key(tenant)}:rate"

        async def run(client: _Client) -> Any:
            return await client.settle(keys=[key], args=[slot])

        return await self._run("settle", run, self._background_bound) is not None

    async def pause_quota(self, tenant: str, seconds: float) -> bool:
        """Pause every process's calls for the tenant (its daily quota is spent)."""
        key = f"{self.tenant_key(tenant)}:quota"

        async def run(client: _Client) -> Any:
            return await client.quota_pause(keys=[key], args=[max(1, int(seconds * 1000))])

        return await self._run("quota", run, self._background_bound) is not None

    # -- the breaker -----------------------------------------------------------------

    async def breaker_allow(
        self, campaign: str, open_for: float, token: str, probe_for: float | None = None
    ) -> tuple[Literal["closed", "open", "probe"], float, int] | None:
        """The fleet's verdict on a call; `probe_for`: how long a probe's claim lasts
        (its call's deadline: no second probe while the first is out)."""
        base = self._breaker(campaign)
        open_ms = max(1, int(open_for * 1000))
        probe_ms = max(open_ms, int((probe_for or 0) * 1000))

        async def run(client: _Client) -> Any:
            return await client.breaker_allow(
                keys=[f"{base}:s", f"{base}:p"], args=[open_ms, token, probe_ms]
            )

        reply = await self._run("breaker", run)
        if reply is None:
            return None
        verdict = _str(reply[0])
        ms, failures = int(reply[1]), int(reply[2])
        if verdict == "open":
            self._count("breaker_open")
            return "open", ms / 1000, failures
        if verdict == "probe":
            return "probe", 0.0, failures
        if verdict == "closed":
            return "closed", 0.0, failures
        return None

    async def breaker_failure(
        self, campaign: str, threshold: int, token: str, open_for: float
    ) -> tuple[bool, float] | None:
        """Count a failure fleet-wide: (opened by this call, seconds the circuit
        stays open; negative while it is closed)."""
        base = self._breaker(campaign)

        async def run(client: _Client) -> Any:
            return await client.breaker_failure(
                keys=[f"{base}:s", f"{base}:p"],
                args=[threshold, token, max(1, int(open_for * 1000))],
            )

        reply = await self._run("breaker", run, self._background_bound)
        if reply is None:
            return None
        opened, left_ms = int(reply[0]), int(reply[1])
        if opened:
            await self._announce({"kind": "open", "campaign": campaign, "ms": left_ms})
        return bool(opened), left_ms / 1000

    async def breaker_success(self, campaign: str, token: str) -> bool | None:
        base = self._breaker(campaign)

        async def run(client: _Client) -> Any:
            return await client.breaker_success(keys=[f"{base}:s", f"{base}:p"], args=[token])

        reply = await self._run("breaker", run, self._background_bound)
        if reply is None:
            return None
        if token and int(reply):  # the probe's success closed it for everyone
            await self._announce({"kind": "closed", "campaign": campaign})
        return bool(int(reply))

    # -- frequency caps (predial.compliance) ---------------------------------------

    def cap_key(self, key: str) -> str:
        """The sorted set of a cap's attempts: one hash slot per `key`."""
        return f"{self.prefix}:{{c:{_key_part(key)}}}"

    async def cap_admit(
        self, key: str, limit: int, window_us: int, now_us: int
    ) -> tuple[bool, int] | None:
        """Record an attempt under `key` unless `limit` are in the window ending at
        `now_us`: (True, 0) when recorded, (False, µs until the oldest leaves) when
        not; None when the tier is unavailable (the caller's policy decides)."""
        name = self.cap_key(key)
        argv: list[str | int] = [now_us, window_us, limit, secrets.token_hex(6)]

        async def run(client: _Client) -> Any:
            return await client.cap_admit(keys=[name], args=argv)

        wrong_type: list[str] = []
        reply = await self._run("cap", run, wrong_type=wrong_type)
        if reply is None:
            if wrong_type:  # predial's own key holding another type: repaired
                log.warning("shared tier: a frequency cap's key held another type; removed")
                await self._run("repair", lambda client: client.redis.delete(name), self.timeout)
            return None
        try:
            return int(reply[0]) == 0, int(reply[1])
        except (IndexError, TypeError, ValueError):
            self._count("corrupt")
            return None

    # -- do-not-call and membership ----------------------------------------------------

    async def announce_do_not_call(self, campaign: str, external_id: str) -> bool:
        """Tell every process that the lead is do-not-call (each drops what it holds)."""
        return await self._announce({"kind": "dnc", "campaign": campaign, "id": external_id})

    async def _announce(self, fields: dict[Any, Any]) -> bool:
        async def run(client: _Client) -> Any:
            return await client.redis.xadd(
                self._events, fields, maxlen=_EVENTS_MAXLEN, approximate=True
            )

        return await self._run("announce", run, self._background_bound) is not None

    async def _listen(self) -> None:
        """Read the event stream (do-not-call announcements) and keep this process
        counted as a member; a failure waits `retry_interval` and tries again.
        When its loop ends (asyncio.run cancels what is left), this loop's
        connections are closed with it."""
        try:
            await self._read_events()
        finally:
            if self._state != "closed":
                await self._forget_loop(asyncio.get_running_loop())

    async def _forget_loop(self, loop: asyncio.AbstractEventLoop) -> None:
        """Drop this loop's reader, inbox and client, closing the client."""
        self._listening.discard(loop)
        self._inboxes.pop(loop, None)
        client = self._clients.pop(loop, None)
        if client is not None:
            await _close_quietly(client)

    async def _read_events(self) -> None:
        last = "$"
        next_beat = 0.0
        block_ms = int(min(self.heartbeat, 1.0) * 1000)
        reply: Any
        while self._state != "closed":
            now = time.monotonic()
            if now >= next_beat:
                next_beat = now + self.heartbeat
                await self._beat()
            if not self.up:
                await asyncio.sleep(self.retry_interval)
                continue
            client = self._client()
            if not client.ready:  # a Cluster client learning the slots
                await asyncio.sleep(0.05)
                continue
            try:
                async with asyncio.timeout(block_ms / 1000 + self.timeout + 1.0):
                    if last == "$":
                        # Start at the stream's end, as an id: "$" again after a
                        # block would miss what came in between.
                        info = await client.redis.xrevrange(self._events, count=1)
                        last = _str(info[0][0]) if info else "0-0"
                    reply = await client.redis.xread({self._events: last}, block=block_ms)
            except asyncio.CancelledError:
                raise
            except Exception as error:
                if _wrong_type(error):  # not a stream: predial's own key, repaired
                    log.warning("shared tier: the event stream key held another type; removed")
                    await self._run(
                        "repair", lambda client: client.redis.delete(self._events), self.timeout
                    )
                    last = "$"
                    continue
                # `last` is kept: what was announced meanwhile is read on reconnecting.
                if self._clients.get(asyncio.get_running_loop()) is client:
                    self._failed("events", error)
                # (else the client was already dropped: a failure that says nothing
                # of the one in use now, which may have come back meanwhile)
                await asyncio.sleep(0.05)
                continue
            for _, entries in reply or ():
                for entry_id, fields in entries:
                    last = _str(entry_id)
                    self._event(fields)

    def _event(self, fields: dict[Any, Any]) -> None:
        try:
            values = {_str(k): _str(v) for k, v in fields.items()}
        except (TypeError, UnicodeDecodeError):
            self._count("corrupt")
            return
        kind, campaign = values.get("kind"), values.get("campaign")
        if not campaign:
            return
        if kind == "dnc" and self.on_do_not_call is not None:
            external_id = values.get("id")
            if external_id:
                self._count("event")
                self.on_do_not_call(campaign, external_id)
        elif kind in ("open", "closed") and self.on_breaker is not None:
            try:
                seconds = int(values.get("ms", "0")) / 1000
            except ValueError:
                self._count("corrupt")
                return
            self._count("event")
            self.on_breaker(campaign, kind, seconds)

    async def _beat(self) -> None:
        window = int(self.heartbeat * 3 * 1000)

        async def run(client: _Client) -> Any:
            return await client.heartbeat(keys=[self._members], args=[self._member, window])

        reply = await self._run("heartbeat", run)
        if reply is not None:
            self.members = max(1, int(reply))

    async def ping(self) -> bool:
        """Whether Redis answers now (`predial check`, `/readyz`), through a keyed
        script (a Cluster node answers PING but refuses a keyed command of another
        slot); counts this process as a member. Ignores the degraded state's pause."""
        if self._state == "closed":
            return False
        self._retry_at = 0.0
        try:
            client = self._client()
        except Exception as error:  # a client redis-py cannot build: not up
            self._failed("ping", error)
            return False
        if not client.ready:
            await self._discover(client)  # the probe waits for it (bounded)
        await self._beat()
        return self.up

    async def release_loop(self) -> None:
        """Stop this event loop's readers and close its connections, leaving the
        tier usable elsewhere (and here again later): for a loop that ends before
        the resolver is closed, such as a server's serving a resolver it does not
        own."""
        loop = asyncio.get_running_loop()
        await self._handing_over.wait(loop, self._background_bound)
        await self._closing.wait(loop, 2.0)
        for task in self._tasks.on(loop):
            task.cancel()
        await self._tasks.wait(loop, 1.0)
        await self._closing.wait(loop, 2.0)
        await self._forget_loop(loop)

    async def close(self) -> None:
        """Stop the background readers and close the connections. Tasks and clients
        of other event loops (a `resolve_sync` thread's) are stopped on their loops."""
        if self._state == "closed":
            return
        loop = asyncio.get_running_loop()
        # Waiters in other processes are counting on the hand-overs.
        await self._handing_over.wait(loop, self._background_bound)
        self._state = "closed"
        for task in self._tasks:
            owner = task.get_loop()
            if owner is loop:
                task.cancel()
            elif not owner.is_closed():
                owner.call_soon_threadsafe(task.cancel)
        await self._tasks.wait(loop, 1.0)
        await self._closing.wait(loop, 2.0)
        for owner, client in list(self._clients.items()):
            if owner is loop:
                await _close_quietly(client)
            elif owner.is_running():
                asyncio.run_coroutine_threadsafe(_close_quietly(client), owner)
        self._clients.clear()

    def __repr__(self) -> str:
        return f"RedisTier({self.shown_url!r}, prefix={self.prefix!r}, state={self._state!r})"


_HEARTBEAT = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZADD', KEYS[1], now, ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - tonumber(ARGV[2]))
redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[2]) * 2)
return redis.call('ZCARD', KEYS[1])
"""


class _Inbox:
    """One event loop's inbox: the flights its waiters wait for, by holder token."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.waiting: dict[str, asyncio.Future[Message | None]] = {}
        # A message can arrive before its waiter, which registers in the lookup
        # script and starts waiting once the reply is in: kept briefly for it.
        self.early: dict[str, Message] = {}

    def keep_early(self, message: Message) -> None:
        if len(self.early) >= _EARLY_KEPT:
            self.early.pop(next(iter(self.early)))
        self.early[message.token] = message

    def wake_all(self) -> None:
        waiting, self.waiting = self.waiting, {}
        for future in waiting.values():
            if not future.done():
                future.set_result(None)


class _Script:
    """A Lua script known by its SHA-1; loaded on the server when it says NOSCRIPT."""

    def __init__(self, source: str) -> None:
        self.source = source
        self.sha = hashlib.sha1(source.encode()).hexdigest()


_Queued = tuple[
    _Script,
    list[str],
    list[str | int],
    "asyncio.Future[Any]",
    "tuple[asyncio.Timeout, float] | None",
]


class _Client:
    """One event loop's redis-py client, sending the scripts called in one loop
    step as one pipeline.

    A dialer's burst of lookups would otherwise take one pooled connection each
    (a connection storm at start-up, where each new connection costs a handshake
    and most of the operation's timeout), and redis-py's per-command overhead is
    about a third in a pipeline. An operation that gives up waiting leaves the
    pipeline to finish, so its connection is not torn down either.
    """

    def __init__(self, tier: RedisTier) -> None:
        self.redis = _connect(tier)
        self.tier = tier
        #: Whether operations may use it (a Cluster client first learns the slots).
        self.ready = not tier.cluster
        #: Whether an operation has succeeded on it (its connection is open).
        self.connected = False
        self._queue: list[_Queued] = []
        self._sends: set[asyncio.Task[None]] = set()
        self._directs = 0  # operations sent on their own, under way
        self.lookup = self._caller(scripts.LOOKUP)
        self.publish = self._caller(scripts.PUBLISH)
        self.store = self._caller(scripts.STORE)
        self.reserve = self._caller(scripts.RESERVE)
        self.quota_pause = self._caller(scripts.QUOTA_PAUSE)
        self.breaker_allow = self._caller(scripts.BREAKER_ALLOW)
        self.breaker_failure = self._caller(scripts.BREAKER_FAILURE)
        self.breaker_success = self._caller(scripts.BREAKER_SUCCESS)
        self.heartbeat = self._caller(_HEARTBEAT)
        self.hand_over = self._caller(scripts.HAND_OVER)
        self.settle = self._caller(scripts.SETTLE)
        self.cap_admit = self._caller(scripts.CAP_ADMIT)

    def _caller(self, source: str) -> Callable[..., Awaitable[Any]]:
        script = _Script(source)

        def call(*, keys: list[str], args: list[str | int]) -> Awaitable[Any]:
            bound = _BOUND.get()
            loop = asyncio.get_running_loop()
            if not self._queue and not self._sends and not self._directs:
                # Nothing else under way: sent at once, in the caller's own task
                # (a pipeline of one would only add two loop steps).
                if bound is not None:
                    bound[0].reschedule(loop.time() + bound[1])
                return self._direct(script, keys, args)
            if bound is not None:
                bound[0].reschedule(loop.time() + max(_QUEUEING, bound[1]))
            future: asyncio.Future[Any] = loop.create_future()
            if not self._queue:
                # The send starts in the next loop step and takes whatever this
                # step queued: one step from call to wire.
                task = loop.create_task(self._send_queued())
                self._sends.add(task)
                task.add_done_callback(self._sends.discard)
            self._queue.append((script, keys, args, future, bound))
            return future

        return call

    async def _direct(
        self,
        script: _Script,
        keys: list[str],
        args: list[str | int],
    ) -> Any:
        self._directs += 1
        try:
            try:
                return await self.redis.evalsha(script.sha, len(keys), *keys, *args)
            except Exception as error:
                if not _no_script(error):
                    raise
            await self.redis.script_load(script.source)
            return await self.redis.evalsha(script.sha, len(keys), *keys, *args)
        finally:
            self._directs -= 1

    async def _send_queued(self) -> None:
        batch, self._queue = self._queue, []
        await self._send(batch)

    async def _send(self, batch: list[_Queued]) -> None:
        now = asyncio.get_running_loop().time()
        for *_, future, bound in batch:
            if bound is not None and not future.done():
                limit, seconds = bound
                if not limit.expired():
                    limit.reschedule(now + seconds)  # the server's time starts now
        try:
            # Bounded on its own: the callers stop waiting at their timeouts, and a
            # server that does not answer must not pile up sends.
            async with asyncio.timeout(max(1.0, self.tier.timeout * 4)):
                results = await self._evalshas(batch)
                missing = [i for i, r in enumerate(results) if _no_script(r)]
                if missing:  # a restarted or failed-over server forgot the scripts
                    for source in {batch[i][0].source for i in missing}:
                        await self.redis.script_load(source)
                    again = await self._evalshas([batch[i] for i in missing])
                    for i, result in zip(missing, again, strict=True):
                        results[i] = result
        except Exception as error:
            for item in batch:
                if not item[3].done():
                    item[3].set_exception(error)
            return
        except asyncio.CancelledError:
            for item in batch:
                item[3].cancel()
            raise
        for item, result in zip(batch, results, strict=True):
            future = item[3]
            if future.done():  # its caller gave up waiting
                continue
            if isinstance(result, Exception):
                future.set_exception(result)
            else:
                future.set_result(result)

    async def _evalshas(self, batch: list[_Queued]) -> list[Any]:
        if len(batch) == 1:
            script, keys, args, *_ = batch[0]
            try:
                return [await self.redis.evalsha(script.sha, len(keys), *keys, *args)]
            except Exception as error:
                if _no_script(error):
                    return [error]
                raise
        pipe = self.redis.pipeline(transaction=False)
        for script, keys, args, *_ in batch:
            # (Through execute_command: a Cluster pipeline refuses `evalsha` by
            # name, but routes EVALSHA by its keys like any keyed command.)
            pipe.execute_command("EVALSHA", script.sha, len(keys), *keys, *args)
        return list(await pipe.execute(raise_on_error=False))


def _no_script(result: object) -> bool:
    from redis.exceptions import NoScriptError

    return isinstance(result, NoScriptError) or (
        isinstance(result, Exception) and str(result).startswith("NOSCRIPT")
    )


def _connect(tier: RedisTier) -> Redis | RedisCluster:
    try:
        from redis.asyncio import Redis
        from redis.asyncio.cluster import RedisCluster
        from redis.asyncio.retry import Retry
        from redis.backoff import NoBackoff
    except ImportError:  # pragma: no cover - the extra is checked at construction
        raise ConfigurationError(
            "the shared tier needs redis-py: pip install 'predial[redis]'"
        ) from None
    # No retries of redis-py's own: the tier's answer to a failure is to degrade to
    # the local tiers at once, not to spend the dial's deadline reconnecting.
    common: dict[str, Any] = {
        # Each operation is bounded by its own timeout; a connection opened for a
        # background reader (the inbox, the event stream) may take longer on a
        # busy machine without that being an outage.
        "socket_connect_timeout": max(tier.timeout, 0.5),
        "socket_timeout": None,  # each operation is bounded by asyncio.timeout
        "health_check_interval": 0,
        "client_name": f"predial-{os.getpid()}",
        **_no_setinfo(),
    }
    if tier.cluster:
        from redis.asyncio.cluster import ClusterNode

        return RedisCluster.from_url(
            tier.url,
            startup_nodes=[ClusterNode(host, port) for host, port in tier._cluster_nodes],
            retry=Retry(NoBackoff(), 0),
            max_connections=tier.max_connections,
            **common,
        )
    return Redis.from_url(
        tier.url, retry=Retry(NoBackoff(), 0), max_connections=tier.max_connections, **common
    )


async def _close_quietly(client: _Client) -> None:
    try:
        async with asyncio.timeout(1.0):
            await client.redis.aclose()
    except Exception as error:  # a dead server: its sockets are closed either way
        log.debug("shared tier: closing the connections failed: %s", type(error).__name__)


def _no_setinfo() -> dict[str, Any]:
    """No CLIENT SETINFO per connection: a round trip, and redis-py 8 reads its own
    version from package metadata for it (~0.5 ms of CPU per connection). redis-py
    8 takes it as `driver_info` (its `lib_name` is deprecated); 5 to 7 as `lib_*`."""
    try:
        from redis.driver_info import DriverInfo
    except ImportError:
        return {"lib_name": None, "lib_version": None}
    return {"driver_info": DriverInfo(name=None, lib_version=None)}


def _wrong_type(error: BaseException) -> bool:
    """An error reply caused by what a key holds (another type, a garbage field a
    script cannot read), not by the server's state: one corrupt entry."""
    from redis.exceptions import ResponseError

    if not isinstance(error, ResponseError):
        return False
    text = str(error)
    server_state = ("OOM", "BUSY", "NOSCRIPT", "READONLY", "NOPERM", "no permissions")
    if any(mark in text for mark in server_state) or "can't run this command" in text:
        return False  # the server's state or the user's rights: an outage, not data
    return "WRONGTYPE" in text or "user_script" in text or "Error running script" in text


def _timed_out(error: BaseException) -> bool:
    from redis.exceptions import TimeoutError as RedisTimeoutError

    return isinstance(error, TimeoutError | RedisTimeoutError)


def _lost_connection(error: BaseException) -> bool:
    """A connection refused, reset or closed (not an error reply, not a timeout,
    not the pool's own limit)."""
    from redis.exceptions import ConnectionError as RedisConnectionError
    from redis.exceptions import MaxConnectionsError

    if isinstance(error, MaxConnectionsError) or _timed_out(error):
        return False  # (TimeoutError is an OSError)
    return isinstance(error, RedisConnectionError | OSError)


def _str(value: Any) -> str:
    if isinstance(value, bytes):
        return value.decode("utf-8")
    if isinstance(value, str):
        return value
    raise TypeError(f"a {type(value).__name__} where a string was expected")


def _safe_error(error: BaseException, url: str) -> str:
    """An error's text without the URL's password (redis-py may quote the URL)."""
    from .._redaction import redact, safe_text

    text = safe_text(error)
    for secret in url_secrets(url):
        text = text.replace(secret, "***")
    return redact(text, limit=300)
