"""`LupitorClient` and `AsyncLupitorClient`: the Lupitor Leads API over httpx.

Both share one sans-I/O core: each call is a plan (a generator) that yields
"send this request" or "sleep this long" and receives the response or the
transport error, so the retry, rate-limit and error-mapping logic is written once
and driven by a sync and an async loop.

- The API key comes from `api_key` or `LUPITOR_API_KEY`; it is sent as `x-api-key`
  and appears in no repr, log line or exception text.
- The base URL comes from `base_url`, `LUPITOR_API_URL`, or the older docs' host;
  `resource="records"` uses the `/records` alias of `/leads`.
- 429: the client waits as `Retry-After` (or `X-RateLimit-Reset`) says, then sends
  again. 5xx, timeouts and dropped connections: jittered exponential backoff. Bulk
  create is idempotent on the server (duplicates are skipped), so it is retried
  freely; a retried single create that meets "Lead already exists" returns
  `CreatedLead(None, already_present=True)`: its first answer was lost.
- Sliding-window limiters keep it under 10 bulk and 100 other requests per minute
  (configurable), lowered by the server's `X-RateLimit-*` headers.
- Every wait is visible: `waiting()` says what the client waits for now (a 429, the
  rate limit, a retry) and how long, listeners hear each wait start and end, and
  `stats` counts 429s, retries and the seconds waited (an import's progress and
  report show them).
"""

from __future__ import annotations

import itertools
import os
import threading
import time
from collections.abc import AsyncIterator, Callable, Generator, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Generic, Literal, TypeVar

import httpx

from .._http import MAX_SLEEP_IN_CALL, backoff, reset_in, retry_after_seconds
from .._models import Lead
from .._ratelimit import SlidingWindowLimiter
from .._redaction import register_secret
from ..errors import (
    ConfigurationError,
    LeadAlreadyExists,
    LupitorAnswerLost,
    LupitorAuthError,
    LupitorError,
    LupitorForbidden,
    LupitorNotFound,
    LupitorRateLimited,
    LupitorUnavailable,
    LupitorValidationError,
)
from ._models import BulkCreateResult, BulkDeleteResult, CreatedLead, StoredLead

__all__ = [
    "API_KEY_ENV",
    "API_URL_ENV",
    "DEFAULT_API_URL",
    "MAX_BULK",
    "AsyncLupitorClient",
    "LupitorClient",
    "RequestStats",
    "RetryPolicy",
    "Waiting",
]

API_KEY_ENV = "LUPITOR_API_KEY"
API_URL_ENV = "LUPITOR_API_URL"
DEFAULT_API_URL = "https://lupitor.acrely.ai"
MAX_BULK = 1000

T = TypeVar("T")
Identifier = Mapping[str, str]  # {"externalId": ...} or {"phoneNumber": ...}


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How hard the client tries before raising.

    `attempts` bounds tries on 5xx, timeouts and dropped connections (waits grow
    from `initial` to `maximum`, full jitter); `rate_limit_waits` bounds how many
    429s it waits out for one call.
    """

    attempts: int = 6
    initial: float = 0.5
    maximum: float = 30.0
    rate_limit_waits: int = 30

    def backoff(self, attempt: int) -> float:
        return backoff(attempt, self.initial, self.maximum)


@dataclass(frozen=True, slots=True)
class _Send:
    request: httpx.Request


WaitReason = Literal["429", "limit", "retry"]


@dataclass(frozen=True, slots=True)
class _Sleep:
    seconds: float
    reason: WaitReason = "limit"
    #: What a retry follows: "500 Internal server error", "ConnectError".
    cause: str | None = None


@dataclass(frozen=True, slots=True)
class Waiting:
    """A wait the client is in (`waiting()`): `seconds` left; why: `"429"` the
    server answered 429 and asked for it (Retry-After), `"limit"` the rate limit
    (as this client counts it, or as the server's X-RateLimit headers announce it),
    `"retry"` before a retry; `cause` is what a retry follows ("500 Internal
    server error", "ConnectError")."""

    seconds: float
    reason: WaitReason
    cause: str | None = None


@dataclass(frozen=True, slots=True)
class RequestStats:
    """What a client's requests met since it was made (`stats`): 429 answers, retries
    after a 5xx or a dropped connection, and the seconds spent waiting for each
    reason (time when at least one request waited, so waits that overlap count
    once). `later - earlier` is what happened between two snapshots."""

    answered_429: int = 0
    retries: int = 0
    waited_429: float = 0.0
    waited_limit: float = 0.0
    waited_retry: float = 0.0

    def __sub__(self, earlier: RequestStats) -> RequestStats:
        return RequestStats(
            self.answered_429 - earlier.answered_429,
            self.retries - earlier.retries,
            self.waited_429 - earlier.waited_429,
            self.waited_limit - earlier.waited_limit,
            self.waited_retry - earlier.waited_retry,
        )


class _Waits:
    """The client's waits as they happen, for `waiting()` and `stats` (thread-safe:
    the sync client may be shared by threads), and the listeners told when one
    starts or ends (an import's progress)."""

    def __init__(self, clock: Callable[[], float]) -> None:
        self.clock = clock
        self.lock = threading.Lock()
        self.answered_429 = 0
        self.retries = 0
        self.waited: dict[str, float] = dict.fromkeys(("429", "limit", "retry"), 0.0)
        self.active: dict[int, tuple[float, WaitReason, str | None]] = {}
        self.since: dict[str, float] = {}
        self.tokens = itertools.count()
        self.listeners: list[Callable[[], None]] = []

    def count(self, *, answered_429: int = 0, retries: int = 0) -> None:
        with self.lock:
            self.answered_429 += answered_429
            self.retries += retries

    def begin(self, step: _Sleep) -> int:
        with self.lock:
            now = self.clock()
            token = next(self.tokens)
            if not any(reason == step.reason for _, reason, _ in self.active.values()):
                self.since[step.reason] = now
            self.active[token] = (now + step.seconds, step.reason, step.cause)
        self._tell()
        return token

    def end(self, token: int) -> None:
        with self.lock:
            _, reason, _ = self.active.pop(token)
            if not any(other == reason for _, other, _ in self.active.values()):
                self.waited[reason] += self.clock() - self.since.pop(reason)
        self._tell()

    @contextmanager
    def during(self, step: _Sleep) -> Iterator[None]:
        token = self.begin(step)
        try:
            yield
        finally:
            self.end(token)

    def _tell(self) -> None:
        for listener in list(self.listeners):
            listener()

    def current(self) -> Waiting | None:
        with self.lock:
            if not self.active:
                return None
            until, reason, cause = max(self.active.values(), key=lambda wait: wait[0])
            return Waiting(max(0.0, until - self.clock()), reason, cause)

    def stats(self) -> RequestStats:
        with self.lock:
            now = self.clock()
            waited = dict(self.waited)
            for reason, since in self.since.items():
                waited[reason] += now - since  # a wait still going counts so far
            return RequestStats(
                self.answered_429,
                self.retries,
                waited["429"],
                waited["limit"],
                waited["retry"],
            )


_Step = _Send | _Sleep
_Plan = Generator[_Step, "httpx.Response | httpx.TransportError | None", T]

_ERRORS: dict[int, type[LupitorError]] = {
    400: LupitorValidationError,
    401: LupitorAuthError,
    403: LupitorForbidden,
    404: LupitorNotFound,
}


def _retry_after(response: httpx.Response, wall_clock: Callable[[], float]) -> float:
    """Seconds to wait after a 429: Retry-After (seconds or HTTP date), else the
    X-RateLimit-Reset unix time, else one second."""
    seconds = retry_after_seconds(response.headers.get("retry-after"), wall_clock)
    if seconds is None:
        seconds = reset_in(response.headers.get("x-ratelimit-reset"), wall_clock)
    return 1.0 if seconds is None else min(MAX_SLEEP_IN_CALL, max(0.0, seconds))


def _error_text(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return response.reason_phrase or f"HTTP {response.status_code}"
    if isinstance(body, dict) and isinstance(body.get("error"), str):
        return str(body["error"])
    return response.reason_phrase or f"HTTP {response.status_code}"


def _mapped_error(response: httpx.Response) -> LupitorError:
    message = _error_text(response)
    if response.status_code in (400, 409) and message == "Lead already exists":
        return LeadAlreadyExists(message, status=response.status_code)
    error_type = _ERRORS.get(response.status_code, LupitorError)
    return error_type(message, status=response.status_code)


class _Core:
    """Requests, plans and answers: everything but the I/O."""

    def __init__(
        self,
        api_key: str | None,
        base_url: str | None,
        resource: Literal["leads", "records"],
        bulk_per_window: int,
        calls_per_window: int,
        window: float,
        retry: RetryPolicy,
        clock: Callable[[], float],
        wall_clock: Callable[[], float],
    ) -> None:
        key = api_key if api_key is not None else os.environ.get(API_KEY_ENV)
        # Stripped first: a key pasted from a file often ends with a newline, and one
        # that is only blanks is as missing as none.
        key = (key or "").strip()
        if not key:
            raise ConfigurationError(f"no Lupitor API key: pass api_key or set {API_KEY_ENV}")
        register_secret(key)  # redacted by value wherever a message might quote it
        if not key.isascii() or not key.isprintable() or " " in key:
            raise ConfigurationError(
                f"the Lupitor API key ({API_KEY_ENV}) has characters an HTTP header cannot "
                "carry; paste it again"
            )
        self._headers = {"x-api-key": key, "accept": "application/json"}
        url = (base_url or os.environ.get(API_URL_ENV) or DEFAULT_API_URL).rstrip("/")
        if not url.endswith("/api/v1"):
            url += "/api/v1"
        self.base_url = url
        if resource not in ("leads", "records"):
            raise ValueError("resource must be 'leads' or 'records'")
        self.resource = resource
        self.bulk_limiter = SlidingWindowLimiter(bulk_per_window, window, clock, wall_clock)
        self.call_limiter = SlidingWindowLimiter(calls_per_window, window, clock, wall_clock)
        self.retry = retry
        self.wall_clock = wall_clock
        self.waits = _Waits(clock)

    def request(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, str | int] | None = None,
        body: Any = None,
    ) -> httpx.Request:
        return httpx.Request(
            method,
            f"{self.base_url}/{self.resource}{path}",
            params={k: v for k, v in (params or {}).items() if v is not None},
            json=body,
            headers=self._headers,
        )

    def plan(
        self,
        request: httpx.Request,
        *,
        bulk: bool = False,
        single_create: bool = False,
        notes: dict[str, bool] | None = None,
        resend_uncertain: bool = True,
    ) -> _Plan[Any]:
        """Send `request` until it has an answer; return the envelope's `data`.

        `notes["may_have_landed"]` is set when an earlier attempt may have reached
        the server (its answer was lost), so the caller can read "skipped" right.
        With `resend_uncertain=False`, a request that may have landed is not sent
        again: `LupitorAnswerLost` says so (for creates the server cannot dedup).
        """
        limiter = self.bulk_limiter if bulk else self.call_limiter
        retry = self.retry
        failures = 0
        rate_limited = 0
        may_have_landed = False
        while True:
            wait, stamp = limiter.acquire()
            if stamp is None:
                yield _Sleep(wait, "429" if limiter.held_by_429() else "limit")
                continue
            answer = yield _Send(request)
            if isinstance(answer, (httpx.LocalProtocolError, httpx.UnsupportedProtocol)):
                # Refused before sending (a malformed header or URL): retrying cannot
                # help, and the original error would quote the header's value.
                limiter.release(stamp)
                raise LupitorError(
                    f"the request could not be sent ({type(answer).__name__}); "
                    "check the API URL and the key's characters"
                ) from None
            if isinstance(answer, httpx.TransportError):
                if isinstance(answer, httpx.ConnectError):
                    limiter.release(stamp)  # never reached the server
                else:
                    may_have_landed = True
                    if not resend_uncertain:
                        raise LupitorAnswerLost(
                            f"{request.method} {request.url.path}: {type(answer).__name__}; "
                            "the request may have been committed"
                        ) from answer
                failures += 1
                if failures >= retry.attempts:
                    # The cause first: an import report groups failed rows by it.
                    raise LupitorUnavailable(
                        f"{type(answer).__name__} after {failures} attempts "
                        f"({request.method} {request.url.path})"
                    ) from answer
                self.waits.count(retries=1)
                yield _Sleep(retry.backoff(failures), "retry", type(answer).__name__)
                continue
            assert answer is not None
            limiter.observe(answer.headers)
            status = answer.status_code
            if status == 429:
                rate_limited += 1
                self.waits.count(answered_429=1)
                wait = _retry_after(answer, self.wall_clock)
                if rate_limited > retry.rate_limit_waits:
                    raise LupitorRateLimited(_error_text(answer), retry_after=wait)
                limiter.hold(wait)
                continue
            if status >= 500:
                may_have_landed = True
                if not resend_uncertain:
                    raise LupitorAnswerLost(_error_text(answer), status=status)
                failures += 1
                if failures >= retry.attempts:
                    raise LupitorUnavailable(
                        f"{_error_text(answer)} after {failures} attempts", status=status
                    )
                self.waits.count(retries=1)
                yield _Sleep(retry.backoff(failures), "retry", f"{status} {_error_text(answer)}")
                continue
            if notes is not None and may_have_landed:
                notes["may_have_landed"] = True
            if 200 <= status < 300:
                try:
                    envelope = answer.json()
                except ValueError:
                    raise LupitorError(
                        "the API answered with no JSON body", status=status
                    ) from None
                if isinstance(envelope, dict) and envelope.get("success", True):
                    return envelope.get("data")
            error = _mapped_error(answer)
            if single_create and may_have_landed and isinstance(error, LeadAlreadyExists):
                return _ALREADY_PRESENT
            raise error

    # -- the calls, as plans -------------------------------------------------------

    def create_lead(
        self, lead: Lead | Mapping[str, Any], exist_ok: bool, resend_uncertain: bool = True
    ) -> _Plan[CreatedLead]:
        body = _lead(lead).to_api()
        request = self.request("POST", "", body=body)
        try:
            data = yield from self.plan(
                request, single_create=True, resend_uncertain=resend_uncertain
            )
        except LeadAlreadyExists:
            if exist_ok:
                return CreatedLead(None, already_present=True)
            raise
        if data is _ALREADY_PRESENT:
            return CreatedLead(None, already_present=True, retried=True)
        data = data or {}
        lead_id = data.get("leadId") or data.get("id")
        return CreatedLead(str(lead_id) if lead_id is not None else None)

    def create_leads_bulk(
        self, campaign_id: str, leads: Sequence[Lead | Mapping[str, Any]]
    ) -> _Plan[BulkCreateResult]:
        if not leads:
            raise ValueError("leads must not be empty")
        if len(leads) > MAX_BULK:
            raise ValueError(f"at most {MAX_BULK} leads per bulk request, not {len(leads)}")
        items = []
        for lead in leads:
            item = _lead(lead, campaign_id).to_api()
            item.pop("campaignId", None)
            items.append(item)
        request = self.request("POST", "/bulk", body={"campaignId": campaign_id, "leads": items})
        notes: dict[str, bool] = {}
        data = yield from self.plan(request, bulk=True, notes=notes)
        return BulkCreateResult.from_api(data or {}, retried=notes.get("may_have_landed", False))

    def list_page(
        self, campaign_id: str, status: str | None, limit: int, cursor: str | None
    ) -> _Plan[tuple[list[StoredLead], str | None]]:
        params: dict[str, str | int] = {"campaignId": campaign_id, "limit": limit}
        if status:
            params["status"] = status
        if cursor:
            params["cursor"] = cursor
        data = yield from self.plan(self.request("GET", "", params=params))
        data = data or {}
        leads = [StoredLead.model_validate(item) for item in data.get("leads") or ()]
        more = data.get("hasMore")
        next_cursor = data.get("cursor") if more else None
        return leads, next_cursor

    def delete_lead(
        self, campaign_id: str, external_id: str | None, phone_number: str | None
    ) -> _Plan[bool]:
        if not external_id and not phone_number:
            raise ValueError("give an external_id or a phone_number")
        params: dict[str, str | int] = {"campaignId": campaign_id}
        if external_id:
            params["externalId"] = external_id
        if phone_number:
            params["phoneNumber"] = phone_number  # httpx encodes "+" as %2B
        data = yield from self.plan(self.request("DELETE", "", params=params))
        return bool((data or {}).get("deleted"))

    def delete_leads_bulk(
        self, campaign_id: str, identifiers: Sequence[Identifier]
    ) -> _Plan[BulkDeleteResult]:
        if not identifiers:
            raise ValueError("identifiers must not be empty")
        if len(identifiers) > MAX_BULK:
            raise ValueError(f"at most {MAX_BULK} leads per bulk delete, not {len(identifiers)}")
        body = {"campaignId": campaign_id, "leads": [dict(item) for item in identifiers]}
        data = yield from self.plan(self.request("POST", "/bulk-delete", body=body), bulk=True)
        return BulkDeleteResult.from_api(data or {})


_ALREADY_PRESENT = object()


def _lead(lead: Lead | Mapping[str, Any], campaign_id: str | None = None) -> Lead:
    if isinstance(lead, Lead):
        return lead
    values = dict(lead)
    if campaign_id is not None:
        values.setdefault("campaignId", campaign_id)
    return Lead.model_validate(values)


_TransportT = TypeVar("_TransportT", httpx.BaseTransport, httpx.AsyncBaseTransport)
_SleepT = TypeVar("_SleepT")


class _ClientBase(Generic[_TransportT, _SleepT]):
    """What both clients share: their settings, and what they tell of themselves and
    of their waits, read from their shared core."""

    def __init__(
        self,
        api_key: str | None = None,
        *,
        base_url: str | None = None,
        resource: Literal["leads", "records"] = "leads",
        timeout: float = 30.0,
        bulk_per_minute: int = 10,
        calls_per_minute: int = 100,
        window: float = 60.0,
        retry: RetryPolicy | None = None,
        transport: _TransportT | None = None,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
        sleep: _SleepT | None = None,
    ) -> None:
        """`window` (seconds) scales both limits together; `clock`, `wall_clock` and
        `sleep` (by default `time.sleep`, or `asyncio.sleep`) are injectable for
        tests and simulations."""
        self._core = _Core(
            api_key,
            base_url,
            resource,
            bulk_per_minute,
            calls_per_minute,
            window,
            retry or RetryPolicy(),
            clock,
            wall_clock,
        )
        self._open(timeout, transport, sleep)

    def _open(self, timeout: float, transport: _TransportT | None, sleep: _SleepT | None) -> None:
        """Make the HTTP client; each client knows its own (sync or async)."""
        raise NotImplementedError

    @property
    def base_url(self) -> str:
        return self._core.base_url

    def __repr__(self) -> str:
        return f"{type(self).__name__}(base_url={self._core.base_url!r})"

    @property
    def stats(self) -> RequestStats:
        """429 answers, retries and seconds waited since this client was made."""
        return self._core.waits.stats()

    def waiting(self) -> Waiting | None:
        """The wait the client is in now (the longest, if several requests wait), or
        None when no request waits."""
        return self._core.waits.current()

    def add_wait_listener(self, listener: Callable[[], None]) -> None:
        """Call `listener()` whenever a request starts or ends a wait (a 429, the rate
        limit, a retry's backoff), in the thread or event loop of that request."""
        self._core.waits.listeners.append(listener)

    def remove_wait_listener(self, listener: Callable[[], None]) -> None:
        self._core.waits.listeners.remove(listener)


class LupitorClient(_ClientBase[httpx.BaseTransport, Callable[[float], None]]):
    """The Leads API for threads and scripts. Use as a context manager, or `close()`."""

    def _open(
        self,
        timeout: float,
        transport: httpx.BaseTransport | None,
        sleep: Callable[[float], None] | None,
    ) -> None:
        self._http = httpx.Client(timeout=timeout, transport=transport)
        self._sleep = sleep or time.sleep

    def _run(self, plan: _Plan[T]) -> T:
        answer: httpx.Response | httpx.TransportError | None = None  # first send: next()
        while True:
            try:
                step = plan.send(answer)
            except StopIteration as stop:
                result: T = stop.value
                return result
            if isinstance(step, _Sleep):
                with self._core.waits.during(step):
                    self._sleep(step.seconds)
                answer = None
                continue
            try:
                answer = self._http.send(step.request)
            except httpx.TransportError as error:
                answer = error

    def create_lead(
        self,
        lead: Lead | Mapping[str, Any],
        *,
        exist_ok: bool = False,
        resend_uncertain: bool = True,
    ) -> CreatedLead:
        """Create one lead. A duplicate raises `LeadAlreadyExists` (unless `exist_ok`).
        With `resend_uncertain=False` a lost answer raises `LupitorAnswerLost`
        instead of a resend (the older API does not dedup externalId-only leads)."""
        return self._run(self._core.create_lead(lead, exist_ok, resend_uncertain))

    def create_leads_bulk(
        self, campaign_id: str, leads: Sequence[Lead | Mapping[str, Any]]
    ) -> BulkCreateResult:
        """Create up to 1,000 leads; duplicates are skipped, not failed."""
        return self._run(self._core.create_leads_bulk(campaign_id, leads))

    def list_leads(
        self, campaign_id: str, *, status: str | None = None, page_size: int = 1000
    ) -> Iterator[StoredLead]:
        """Every lead of the campaign, page by page (cursor pagination)."""
        cursor: str | None = None
        while True:
            leads, cursor = self._run(self._core.list_page(campaign_id, status, page_size, cursor))
            yield from leads
            if cursor is None:
                return

    def delete_lead(
        self, campaign_id: str, *, external_id: str | None = None, phone_number: str | None = None
    ) -> bool:
        """Delete one lead by externalId (first) or phone number; `LupitorNotFound` if absent."""
        return self._run(self._core.delete_lead(campaign_id, external_id, phone_number))

    def delete_leads_bulk(
        self, campaign_id: str, identifiers: Sequence[Identifier]
    ) -> BulkDeleteResult:
        """Delete up to 1,000 leads given as {"externalId": ...} or {"phoneNumber": ...}."""
        return self._run(self._core.delete_leads_bulk(campaign_id, identifiers))

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> LupitorClient:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()


class AsyncLupitorClient(_ClientBase[httpx.AsyncBaseTransport, Callable[[float], Any]]):
    """The Leads API for asyncio. Use `async with`, or `await aclose()`."""

    def _open(
        self,
        timeout: float,
        transport: httpx.AsyncBaseTransport | None,
        sleep: Callable[[float], Any] | None,
    ) -> None:
        import asyncio

        self._http = httpx.AsyncClient(timeout=timeout, transport=transport)
        self._sleep = sleep or asyncio.sleep

    async def _run(self, plan: _Plan[T]) -> T:
        answer: httpx.Response | httpx.TransportError | None = None  # first send: next()
        while True:
            try:
                step = plan.send(answer)
            except StopIteration as stop:
                result: T = stop.value
                return result
            if isinstance(step, _Sleep):
                with self._core.waits.during(step):
                    await self._sleep(step.seconds)
                answer = None
                continue
            try:
                answer = await self._http.send(step.request)
            except httpx.TransportError as error:
                answer = error

    async def create_lead(
        self,
        lead: Lead | Mapping[str, Any],
        *,
        exist_ok: bool = False,
        resend_uncertain: bool = True,
    ) -> CreatedLead:
        """Create one lead. A duplicate raises `LeadAlreadyExists` (unless `exist_ok`).
        With `resend_uncertain=False` a lost answer raises `LupitorAnswerLost`
        instead of a resend (the older API does not dedup externalId-only leads)."""
        return await self._run(self._core.create_lead(lead, exist_ok, resend_uncertain))

    async def create_leads_bulk(
        self, campaign_id: str, leads: Sequence[Lead | Mapping[str, Any]]
    ) -> BulkCreateResult:
        """Create up to 1,000 leads; duplicates are skipped, not failed."""
        return await self._run(self._core.create_leads_bulk(campaign_id, leads))

    async def list_leads(
        self, campaign_id: str, *, status: str | None = None, page_size: int = 1000
    ) -> AsyncIterator[StoredLead]:
        """Every lead of the campaign, page by page (cursor pagination)."""
        cursor: str | None = None
        while True:
            plan = self._core.list_page(campaign_id, status, page_size, cursor)
            leads, cursor = await self._run(plan)
            for lead in leads:
                yield lead
            if cursor is None:
                return

    async def delete_lead(
        self, campaign_id: str, *, external_id: str | None = None, phone_number: str | None = None
    ) -> bool:
        """Delete one lead by externalId (first) or phone number; `LupitorNotFound` if absent."""
        return await self._run(self._core.delete_lead(campaign_id, external_id, phone_number))

    async def delete_leads_bulk(
        self, campaign_id: str, identifiers: Sequence[Identifier]
    ) -> BulkDeleteResult:
        """Delete up to 1,000 leads given as {"externalId": ...} or {"phoneNumber": ...}."""
        return await self._run(self._core.delete_leads_bulk(campaign_id, identifiers))

    def rate_limit_wait(self, *, bulk: int = 0, other: int = 0) -> float:
        """Seconds, from now, before `bulk` more bulk requests and `other` more other
        requests can all have been sent under the rate limits (0.0 if now): the
        least time they take whatever the server's speed."""
        return max(self._core.bulk_limiter.time_for(bulk), self._core.call_limiter.time_for(other))

    async def aclose(self) -> None:
        await self._http.aclose()

    async def __aenter__(self) -> AsyncLupitorClient:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.aclose()
