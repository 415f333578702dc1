"""A fake of the Lupitor Leads API, faithful to its public docs, for tests.

Two versions of the docs exist and differ; ``version`` picks one:

* ``"v2"``, the newer docs (lupitor-docs.com): a lead needs a phoneNumber *or* an
  externalId (Prefetch Mode); dedup is by externalId first, then by phoneNumber; bulk
  create answers ``skippedIdentifiers``; single create answers ``{"leadId": ...}``; the
  list is paginated (``limit``, ``cursor``, ``hasMore``).
* ``"v1"``, the older docs (docs.lupitor.acrely.ai): bulk create needs a phoneNumber on
  every lead; dedup is by phoneNumber only; bulk create answers ``skippedPhones``; single
  create answers ``{"id": ...}``; the list returns every lead at once.

Where the docs are silent, this fake decides as follows (tests of a client test against
these choices, so they are part of the contract):

* v1 single create accepts a lead with an externalId and no phoneNumber: only bulk
  requires a phoneNumber in v1, and our importer sends prefetch-only leads one by one
  against v1. Since v1 dedups by phone only, such a lead is never a duplicate: sending it
  twice stores it twice.
* v2 dedup: a lead is a duplicate if its externalId matches a stored lead's externalId,
  or else its phoneNumber matches a stored lead's phoneNumber. The skipped identifier is
  the lead's externalId if it has one, else its phoneNumber.
* Order of checks for every request: 401 (key) → fault latency → fault 500 → forced 429
  → rate limit 429 → 403 (scope) → 400 campaignId missing → 404 campaign → other 400s
  → 404 lead / 400 duplicate → commit → fault 502 (answer lost after commit).
* Status codes: single create 201; bulk create 201 if it created a lead, else 200;
  everything else 200.
* A missing or null field is absent; an empty string is invalid (``""`` is no E.164
  number and no identifier). In DELETE query strings an empty value counts as absent.
* Rate limits: one log per API key for bulk endpoints and one for all others.
  ``X-RateLimit-Reset`` is when the oldest request in the window leaves it, i.e. when the
  next slot frees. 401s carry no rate-limit headers (no key to count against), nor does
  the 502 (it is the proxy's answer, not Lupitor's). A forced 429 asks the client to
  wait ``window / limit`` seconds.
* The list is in creation order. The cursor is base64 of ``{"position":N}`` as in the
  docs' example, where N is the creation sequence number of the page's last lead, so
  deleting leads between pages neither skips nor repeats any.
* DELETE and bulk-delete look a lead up by externalId when given, else by phoneNumber;
  if several leads match (possible in v1), the oldest goes. Both versions serve them.
* Unknown paths answer 404 "Not found", wrong methods 405 "Method not allowed", and a
  body that is not a JSON object 400 "Invalid JSON body".
"""

from __future__ import annotations

import asyncio
import base64
import bisect
import copy
import json
import math
import random
import re
import secrets
import threading
import time
from collections import deque
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal, NoReturn

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

__all__ = ["ApiKey", "FakeLupitor", "Faults", "RequestRecord"]

Version = Literal["v1", "v2"]
KeyScope = Literal["read", "write"]

MAX_BULK = 1000
DEFAULT_LIST_LIMIT = 1000
MAX_LIST_LIMIT = 8000
STATUSES = ("raw", "attempting", "exhausted", "concluded")
# ASCII so that Unicode digits fail; fullmatch so that a trailing newline fails too.
_E164 = re.compile(r"\+[1-9][0-9]{1,14}", re.ASCII)
# Convex ids are 32 characters of this base32 alphabet (no i, l, o, u).
_ID_ALPHABET = "0123456789abcdefghjkmnpqrstvwxyz"
_ID_LENGTH = 32
_IDENTIFIERS = ("externalId", "phoneNumber")

_CAMPAIGN_NOT_FOUND = "Campaign not found or access denied"
_RATE_LIMITED = "Rate limit exceeded. Please try again later."


@dataclass(frozen=True, slots=True)
class ApiKey:
    """An API key's permissions: `scope` read or write (write includes read), and the one
    campaign it is limited to, or None for a company-wide key."""

    scope: KeyScope = "write"
    campaign_id: str | None = None


@dataclass
class Faults:
    """Faults to inject; mutable, and replaceable at run time with `fake.faults = ...`.

    `error_rate`: fraction of requests answered 500 before anything happens.
    `latency`: seconds every authenticated request waits first.
    `lost_after_commit_rate`: fraction of successful writes committed whose answer a
    proxy then loses (502 "Bad gateway").
    `forced_429`: the next N requests are answered 429; counts down as they are.
    `seed`: seeds the random draws when the faults are assigned, so runs repeat.
    """

    error_rate: float = 0.0
    latency: float = 0.0
    lost_after_commit_rate: float = 0.0
    forced_429: int = 0
    seed: int = 0


@dataclass(frozen=True, slots=True)
class RequestRecord:
    """One request the fake answered: `leads` is how many leads its body carried;
    `at` is when it arrived, on the fake's clock (pacing measurements)."""

    method: str
    path: str
    status: int
    key: str | None
    leads: int
    at: float = field(default=0.0, compare=False)


DEFAULT_KEYS: Mapping[str, ApiKey] = {
    "sk_test_write": ApiKey(scope="write"),
    "sk_test_read": ApiKey(scope="read"),
    "sk_one": ApiKey(scope="write", campaign_id="cmp_1"),
}
DEFAULT_CAMPAIGNS = frozenset({"cmp_1", "cmp_2"})


class _Rejected(Exception):
    """A request refused with a documented status and message."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass(frozen=True, slots=True)
class _Reply:
    status: int
    data: dict[str, Any]


@dataclass(frozen=True, slots=True)
class _Call:
    """What a handler needs from a request that passed auth, faults and rate limits."""

    key: ApiKey
    body: object
    query: Mapping[str, str]


@dataclass(frozen=True, slots=True)
class _NewLead:
    phone_number: str | None
    external_id: str | None
    metadata: dict[str, Any] | None
    scheduled_for: str | None
    priority: float

    def get(self, identifier: str) -> str | None:
        return self.external_id if identifier == "externalId" else self.phone_number


@dataclass(frozen=True, slots=True)
class _Endpoint:
    name: str
    method: str
    suffix: str
    bulk: bool
    write: bool


_ENDPOINTS = (
    _Endpoint("create", "POST", "", bulk=False, write=True),
    _Endpoint("bulk_create", "POST", "/bulk", bulk=True, write=True),
    _Endpoint("list", "GET", "", bulk=False, write=False),
    _Endpoint("delete", "DELETE", "", bulk=False, write=True),
    _Endpoint("bulk_delete", "POST", "/bulk-delete", bulk=True, write=True),
)


class _Campaign:
    """One campaign's leads in creation order (keyed by sequence number), indexed by
    externalId and phoneNumber."""

    def __init__(self) -> None:
        self.leads: dict[int, dict[str, Any]] = {}
        self._index: dict[str, dict[str, list[int]]] = {name: {} for name in _IDENTIFIERS}

    def find(self, identifier: str, value: str) -> int | None:
        matches = self._index[identifier].get(value)
        return matches[0] if matches else None

    def lookup(self, external_id: str | None, phone_number: str | None) -> int | None:
        """The lead a delete means: by externalId when given (the docs' priority)."""
        if external_id is not None:
            return self.find("externalId", external_id)
        if phone_number is not None:
            return self.find("phoneNumber", phone_number)
        return None

    def add(self, seq: int, lead: dict[str, Any]) -> None:
        self.leads[seq] = lead
        for identifier in _IDENTIFIERS:
            if lead[identifier] is not None:
                self._index[identifier].setdefault(lead[identifier], []).append(seq)

    def remove(self, seq: int) -> None:
        lead = self.leads.pop(seq)
        for identifier in _IDENTIFIERS:
            value = lead[identifier]
            if value is not None:
                matches = self._index[identifier][value]
                matches.remove(seq)
                if not matches:
                    del self._index[identifier][value]


class _SlidingWindow:
    """A log of accepted request times: never more than `limit` in any `window` seconds.

    A log, not a token bucket, because a bucket lets a burst through right after a
    window's worth of requests and so breaks the "any window" promise.
    """

    def __init__(self, limit: int, window: float) -> None:
        self.limit = limit
        self.window = window
        self._times: deque[float] = deque()

    def _forget_old(self, now: float) -> None:
        while self._times and self._times[0] <= now - self.window:
            self._times.popleft()

    def try_acquire(self, now: float) -> bool:
        self._forget_old(now)
        if len(self._times) >= self.limit:
            return False
        self._times.append(now)
        return True

    def remaining(self, now: float) -> int:
        self._forget_old(now)
        return self.limit - len(self._times)

    def next_slot_in(self, now: float) -> float:
        """Seconds until the oldest request leaves the window (0 if the log is empty)."""
        self._forget_old(now)
        return self._times[0] + self.window - now if self._times else 0.0


class FakeLupitor:
    """The Lupitor Leads API as an ASGI app; see the module docstring for its contract."""

    def __init__(
        self,
        *,
        keys: Mapping[str, ApiKey] | None = None,
        campaigns: Iterable[str] | None = None,
        version: Version = "v2",
        bulk_limit: int = 10,
        default_limit: int = 100,
        window: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
        faults: Faults | None = None,
    ) -> None:
        if version not in ("v1", "v2"):
            raise ValueError(f"version must be 'v1' or 'v2', not {version!r}")
        if bulk_limit < 1 or default_limit < 1:
            raise ValueError("rate limits must be at least 1 request per window")
        if window <= 0:
            raise ValueError("window must be > 0 seconds")
        self.version: Version = version
        self.bulk_limit = bulk_limit
        self.default_limit = default_limit
        self.window = window
        self._keys = dict(DEFAULT_KEYS if keys is None else keys)
        self._clock = clock
        # The limiter runs on the injectable clock; headers need unix time.
        self._wall_offset = time.time() - clock()
        self._lock = threading.Lock()
        self._campaigns = {
            campaign_id: _Campaign()
            for campaign_id in (DEFAULT_CAMPAIGNS if campaigns is None else campaigns)
        }
        self._windows: dict[tuple[str, bool], _SlidingWindow] = {}
        self._requests: list[RequestRecord] = []
        self._next_seq = 1
        self._faults = Faults()
        self._rng = random.Random(0)
        self.faults = faults if faults is not None else Faults()
        self._handlers: dict[str, Callable[[_Call], _Reply]] = {
            "create": self._create,
            "bulk_create": self._bulk_create,
            "list": self._list,
            "delete": self._delete,
            "bulk_delete": self._bulk_delete,
        }
        self._app = Starlette(
            routes=self._routes(), exception_handlers={HTTPException: _http_error}
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self._app(scope, receive, send)

    # -- inspection (thread-safe: uvicorn may serve the app from another thread) --

    @property
    def faults(self) -> Faults:
        return self._faults

    @faults.setter
    def faults(self, faults: Faults) -> None:
        with self._lock:
            self._faults = faults
            self._rng = random.Random(faults.seed)

    @property
    def requests(self) -> list[RequestRecord]:
        """Every request answered so far, oldest first (a copy)."""
        with self._lock:
            return list(self._requests)

    def leads(self, campaign_id: str) -> list[dict[str, Any]]:
        """The campaign's stored leads as the list endpoint returns them (copies).

        Raises KeyError for a campaign the fake was not given, which is likelier a typo
        in a test than a campaign meant to be empty."""
        with self._lock:
            return [copy.deepcopy(lead) for lead in self._campaigns[campaign_id].leads.values()]

    def count(self, campaign_id: str) -> int:
        """How many leads the campaign holds; KeyError for an unknown campaign."""
        with self._lock:
            return len(self._campaigns[campaign_id].leads)

    # -- request pipeline --

    def _routes(self) -> list[Route]:
        return [
            Route(base + endpoint.suffix, self._endpoint_app(endpoint), methods=[endpoint.method])
            for base in ("/api/v1/leads", "/api/v1/records")
            for endpoint in _ENDPOINTS
        ]

    def _endpoint_app(self, endpoint: _Endpoint) -> Callable[[Request], Awaitable[Response]]:
        async def app(request: Request) -> Response:
            return await self._handle(request, endpoint)

        return app

    async def _handle(self, request: Request, endpoint: _Endpoint) -> Response:
        body = await _read_json(request) if endpoint.method == "POST" else None
        key_text = request.headers.get("x-api-key")
        arrived = self._clock()
        response = await self._respond(request, endpoint, key_text, body)
        record = RequestRecord(
            method=request.method,
            path=request.url.path,
            status=response.status_code,
            key=key_text,
            leads=_lead_count(endpoint, body),
            at=arrived,
        )
        with self._lock:
            self._requests.append(record)
        return response

    async def _respond(
        self, request: Request, endpoint: _Endpoint, key_text: str | None, body: object
    ) -> Response:
        if not key_text:
            return _envelope(401, error="Missing API key")
        key = self._keys.get(key_text)
        if key is None:
            return _envelope(401, error="Invalid or inactive API key")
        latency = self._faults.latency
        if latency > 0:
            await asyncio.sleep(latency)
        call = _Call(key=key, body=body, query=dict(request.query_params))
        # Everything from here on is synchronous under the lock, so each request commits
        # atomically even when uvicorn serves several at once.
        with self._lock:
            return self._respond_locked(endpoint, key_text, call)

    def _respond_locked(self, endpoint: _Endpoint, key_text: str, call: _Call) -> Response:
        limiter = self._window_for(key_text, endpoint.bulk)
        now = self._clock()
        if self._draw(self._faults.error_rate):
            return _envelope(
                500, error="Internal server error", headers=self._headers(limiter, now)
            )
        if self._faults.forced_429 > 0:
            self._faults.forced_429 -= 1
            return self._too_many(limiter, now, limiter.window / limiter.limit)
        if not limiter.try_acquire(now):
            return self._too_many(limiter, now, limiter.next_slot_in(now))
        headers = self._headers(limiter, now)
        try:
            reply = self._handlers[endpoint.name](call)
        except _Rejected as rejected:
            return _envelope(rejected.status, error=rejected.message, headers=headers)
        if endpoint.write and self._draw(self._faults.lost_after_commit_rate):
            return _envelope(502, error="Bad gateway")
        return _envelope(reply.status, data=reply.data, headers=headers)

    def _draw(self, rate: float) -> bool:
        # No draw at rate 0, so enabling one fault does not shift another's sequence.
        return rate > 0 and self._rng.random() < rate

    # -- rate limits --

    def _window_for(self, key_text: str, bulk: bool) -> _SlidingWindow:
        limiter = self._windows.get((key_text, bulk))
        if limiter is None:
            limit = self.bulk_limit if bulk else self.default_limit
            limiter = self._windows[key_text, bulk] = _SlidingWindow(limit, self.window)
        return limiter

    def _headers(self, limiter: _SlidingWindow, now: float) -> dict[str, str]:
        reset = self._unix(now + limiter.next_slot_in(now))
        return {
            "X-RateLimit-Limit": str(limiter.limit),
            "X-RateLimit-Remaining": str(limiter.remaining(now)),
            "X-RateLimit-Reset": self._seconds_text(reset),
        }

    def _too_many(self, limiter: _SlidingWindow, now: float, wait: float) -> Response:
        headers = self._headers(limiter, now)
        headers["X-RateLimit-Remaining"] = "0"
        headers["Retry-After"] = self._seconds_text(wait)
        reset = datetime.fromtimestamp(self._unix(now + wait), UTC)
        return JSONResponse(
            {
                "success": False,
                "data": None,
                "error": _RATE_LIMITED,
                "limit": limiter.limit,
                "remaining": 0,
                "reset": reset.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            },
            status_code=429,
            headers=headers,
        )

    def _unix(self, instant: float) -> float:
        return instant + self._wall_offset

    def _seconds_text(self, seconds: float) -> str:
        """Whole seconds rounded up, as the real API sends; milliseconds (still rounded
        up, so waiting that long always suffices) once the window is scaled below a
        minute, where whole seconds would round every wait up to a window or more."""
        if self.window >= 60:
            return str(math.ceil(seconds))
        return f"{math.ceil(seconds * 1000) / 1000:.3f}"

    # -- handlers: run under the lock, raise _Rejected for documented errors --

    def _create(self, call: _Call) -> _Reply:
        _require_write(call.key)
        body = _object_body(call.body)
        campaign_id, campaign = self._campaign(
            call.key, body.get("campaignId"), "campaignId is required"
        )
        lead = self._validate_lead(body, index=None)
        if self._is_duplicate(campaign, lead):
            raise _Rejected(400, "Lead already exists")
        lead_id = self._store(campaign_id, campaign, lead)
        return _Reply(201, {"leadId" if self.version == "v2" else "id": lead_id})

    def _bulk_create(self, call: _Call) -> _Reply:
        _require_write(call.key)
        body = _object_body(call.body)
        campaign_id, campaign = self._campaign(
            call.key, body.get("campaignId"), "campaignId is required"
        )
        # Validate every lead before storing any: one bad lead rejects the whole request.
        leads = [self._validate_lead(raw, index) for index, raw in enumerate(_leads_array(body))]
        created: list[str] = []
        skipped: list[str] = []
        for lead in leads:
            # Checked lead by lead against the store as it grows, so duplicates within
            # the request are skipped too.
            if self._is_duplicate(campaign, lead):
                skipped.append(self._identifier(lead))
            else:
                created.append(self._store(campaign_id, campaign, lead))
        skipped_key = "skippedIdentifiers" if self.version == "v2" else "skippedPhones"
        data = {"created": len(created), "skipped": len(skipped), "createdIds": created}
        return _Reply(201 if created else 200, {**data, skipped_key: skipped})

    def _list(self, call: _Call) -> _Reply:
        query = call.query
        _, campaign = self._campaign(
            call.key, query.get("campaignId"), "campaignId query parameter is required"
        )
        status = query.get("status")
        if status is not None and status not in STATUSES:
            raise _Rejected(400, f"status must be one of {', '.join(STATUSES)}")
        if self.version == "v1":
            leads = [
                copy.deepcopy(lead) for lead in campaign.leads.values() if _has_status(lead, status)
            ]
            return _Reply(200, {"leads": leads, "count": len(leads)})
        limit = _list_limit(query.get("limit"))
        position = _decode_cursor(query.get("cursor"))
        seqs = list(campaign.leads)  # ascending: sequence numbers only grow
        page: list[int] = []
        for seq in seqs[bisect.bisect_right(seqs, position) :]:
            if _has_status(campaign.leads[seq], status):
                page.append(seq)
                if len(page) > limit:  # one more than a page tells whether more exist
                    break
        has_more = len(page) > limit
        page = page[:limit]
        return _Reply(
            200,
            {
                "leads": [copy.deepcopy(campaign.leads[seq]) for seq in page],
                "count": len(page),
                "cursor": _encode_cursor(page[-1]) if has_more else None,
                "hasMore": has_more,
            },
        )

    def _delete(self, call: _Call) -> _Reply:
        _require_write(call.key)
        query = call.query
        _, campaign = self._campaign(
            call.key, query.get("campaignId"), "campaignId query parameter is required"
        )
        external_id = query.get("externalId") or None
        phone_number = query.get("phoneNumber") or None
        if external_id is None and phone_number is None:
            raise _Rejected(
                400, "At least one of phoneNumber or externalId query parameter is required"
            )
        seq = campaign.lookup(external_id, phone_number)
        if seq is None:
            raise _Rejected(404, "Lead not found")
        campaign.remove(seq)
        return _Reply(200, {"deleted": True})

    def _bulk_delete(self, call: _Call) -> _Reply:
        _require_write(call.key)
        body = _object_body(call.body)
        _, campaign = self._campaign(call.key, body.get("campaignId"), "campaignId is required")
        targets = [_delete_target(raw, index) for index, raw in enumerate(_leads_array(body))]
        deleted: list[str] = []
        not_found: list[str] = []
        for external_id, phone_number in targets:
            identifier = external_id if external_id is not None else phone_number
            assert identifier is not None  # _delete_target guarantees one of them
            seq = campaign.lookup(external_id, phone_number)
            if seq is None:
                not_found.append(identifier)
            else:
                campaign.remove(seq)
                deleted.append(identifier)
        return _Reply(
            200,
            {
                "deleted": len(deleted),
                "notFound": len(not_found),
                "deletedIdentifiers": deleted,
                "notFoundIdentifiers": not_found,
            },
        )

    # -- handler helpers --

    def _campaign(self, key: ApiKey, campaign_id: object, missing: str) -> tuple[str, _Campaign]:
        if not isinstance(campaign_id, str) or not campaign_id:
            raise _Rejected(400, missing)
        campaign = self._campaigns.get(campaign_id)
        # One message for both, as documented: a scoped key learns nothing about others.
        if campaign is None or key.campaign_id not in (None, campaign_id):
            raise _Rejected(404, _CAMPAIGN_NOT_FOUND)
        return campaign_id, campaign

    def _validate_lead(self, raw: object, index: int | None) -> _NewLead:
        """The lead in a create body (index None) or at `leads[index]` of a bulk body."""
        prefix = "" if index is None else f"leads[{index}]: "

        def reject(message: str) -> NoReturn:
            raise _Rejected(400, prefix + message)

        if not isinstance(raw, dict):
            reject("lead must be an object")
        phone_number = raw.get("phoneNumber")
        external_id = raw.get("externalId")
        if phone_number is None and (external_id is None or self._bulk_v1(index)):
            reject(
                "At least one of phoneNumber or externalId is required"
                if self.version == "v2"
                else "phoneNumber is required"
            )
        if phone_number is not None and not (
            isinstance(phone_number, str) and _E164.fullmatch(phone_number)
        ):
            reject("phoneNumber must be in E.164 format")
        if external_id is not None and not (isinstance(external_id, str) and external_id):
            reject("externalId must be a non-empty string")
        priority = raw.get("priority")
        priority = 0 if priority is None else priority
        if not _is_number(priority) or not 0 <= priority <= 100:
            reject("priority must be between 0 and 100")
        metadata = raw.get("metadata")
        if metadata is not None and not isinstance(metadata, dict):
            reject("metadata must be an object")
        scheduled_for = raw.get("scheduledFor")
        if scheduled_for is not None and not _is_iso_datetime(scheduled_for):
            reject("scheduledFor must be an ISO 8601 date")
        return _NewLead(phone_number, external_id, metadata, scheduled_for, priority)

    def _bulk_v1(self, index: int | None) -> bool:
        """v1 bulk requires a phoneNumber on every lead (v1 single create does not)."""
        return self.version == "v1" and index is not None

    def _is_duplicate(self, campaign: _Campaign, lead: _NewLead) -> bool:
        identifiers = _IDENTIFIERS if self.version == "v2" else ("phoneNumber",)
        for identifier in identifiers:
            value = lead.get(identifier)
            if value is not None and campaign.find(identifier, value) is not None:
                return True
        return False

    def _identifier(self, lead: _NewLead) -> str:
        if self.version == "v2" and lead.external_id is not None:
            return lead.external_id
        # v1 bulk leads always have a phone; v2 leads have one if they lack an externalId.
        assert lead.phone_number is not None
        return lead.phone_number

    def _store(self, campaign_id: str, campaign: _Campaign, lead: _NewLead) -> str:
        lead_id = "".join(secrets.choice(_ID_ALPHABET) for _ in range(_ID_LENGTH))
        seq = self._next_seq
        self._next_seq += 1
        campaign.add(
            seq,
            {
                "_id": lead_id,
                "campaignId": campaign_id,
                "phoneNumber": lead.phone_number,
                "externalId": lead.external_id,
                "metadata": copy.deepcopy(lead.metadata),
                "status": "raw",
                "scheduledFor": lead.scheduled_for,
                "priority": lead.priority,
                "attempts": 0,
                "_creationTime": self._unix(self._clock()) * 1000,
            },
        )
        return lead_id


# -- module helpers --


_INVALID_JSON = object()


async def _read_json(request: Request) -> object:
    """The parsed body, or a sentinel handlers turn into 400 "Invalid JSON body"."""
    raw = await request.body()
    try:
        return json.loads(raw)
    except ValueError:  # JSONDecodeError and UnicodeDecodeError both are
        return _INVALID_JSON


def _object_body(body: object) -> dict[str, Any]:
    if not isinstance(body, dict):
        raise _Rejected(400, "Invalid JSON body")
    return body


def _require_write(key: ApiKey) -> None:
    if key.scope != "write":
        raise _Rejected(403, "Forbidden")


def _leads_array(body: dict[str, Any]) -> list[object]:
    leads = body.get("leads")
    if not isinstance(leads, list):
        raise _Rejected(400, "leads array is required")
    if not leads:
        raise _Rejected(400, "leads array cannot be empty")
    if len(leads) > MAX_BULK:
        raise _Rejected(400, f"Maximum {MAX_BULK} leads per bulk request")
    return leads


def _delete_target(raw: object, index: int) -> tuple[str | None, str | None]:
    """(externalId, phoneNumber) of `leads[index]` in a bulk-delete body."""
    if not isinstance(raw, dict):
        raise _Rejected(400, f"leads[{index}]: lead must be an object")
    external_id = raw.get("externalId")
    phone_number = raw.get("phoneNumber")
    ids = [value for value in (external_id, phone_number) if value is not None]
    if not ids or not all(isinstance(value, str) and value for value in ids):
        raise _Rejected(
            400, f"leads[{index}]: At least one of phoneNumber or externalId is required"
        )
    return external_id, phone_number


def _is_number(value: object) -> bool:
    # bool is an int in Python but not a number in JSON.
    return isinstance(value, int | float) and not isinstance(value, bool)


def _is_iso_datetime(value: object) -> bool:
    if not isinstance(value, str):
        return False
    try:
        datetime.fromisoformat(value)
    except ValueError:
        return False
    return True


def _has_status(lead: Mapping[str, Any], status: str | None) -> bool:
    return status is None or lead["status"] == status


def _list_limit(text: str | None) -> int:
    if text is None:
        return DEFAULT_LIST_LIMIT
    try:
        limit = int(text)
    except ValueError:
        limit = 0
    if not 1 <= limit <= MAX_LIST_LIMIT:
        raise _Rejected(400, f"limit must be an integer between 1 and {MAX_LIST_LIMIT}")
    return limit


def _encode_cursor(position: int) -> str:
    text = json.dumps({"position": position}, separators=(",", ":"))
    return base64.b64encode(text.encode()).decode()


def _decode_cursor(cursor: str | None) -> int:
    if not cursor:
        return 0
    try:
        position = json.loads(base64.b64decode(cursor, validate=True))["position"]
    except (ValueError, TypeError, KeyError):
        position = None
    if not isinstance(position, int) or isinstance(position, bool) or position < 0:
        raise _Rejected(400, "Invalid cursor")
    return position


def _lead_count(endpoint: _Endpoint, body: object) -> int:
    if not isinstance(body, dict):
        return 0
    if endpoint.name == "create":
        return 1
    leads = body.get("leads")
    return len(leads) if isinstance(leads, list) else 0


def _envelope(
    status: int,
    *,
    data: dict[str, Any] | None = None,
    error: str | None = None,
    headers: Mapping[str, str] | None = None,
) -> JSONResponse:
    return JSONResponse(
        {"success": error is None, "data": data, "error": error},
        status_code=status,
        headers=headers,
    )


def _http_error(request: Request, exc: Exception) -> Response:
    """Starlette's own 404/405 in the documented envelope (keeping its Allow header)."""
    if not isinstance(exc, HTTPException):
        return _envelope(500, error="Internal server error")
    message = {404: "Not found", 405: "Method not allowed"}.get(exc.status_code, exc.detail)
    return _envelope(exc.status_code, error=message, headers=exc.headers)
