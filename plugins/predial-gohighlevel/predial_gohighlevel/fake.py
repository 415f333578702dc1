"""`FakeGoHighLevel`: GoHighLevel's contacts API as documented, for tests.

Serves `GET /contacts/{contactId}` (`apps/contacts.json`, operation `get-contact`):
the `Version: 2021-07-28` header is required (400 without it, as the spec marks it
required), bearer tokens (Private Integration Tokens, or OAuth access tokens from
`POST /oauth/token` that live a day and whose refresh tokens rotate on every
refresh), error bodies shaped like the spec's `BadRequestDTO` / `UnauthorizedDTO`
(`{"statusCode", "message", "error"}`), and GoHighLevel's two limits: a burst of
100 requests per 10 s and 200,000 per day, with the `X-RateLimit-*` headers on
every answer and a 429 when either is spent (`X-RateLimit-Daily-Remaining: 0` for
the daily one).

An unknown contact is a 400 "Contact not found" by default: the spec documents no
404 for this operation. `not_found_status=404` makes it a 404 instead, to test
both readings.

```python
fake = FakeGoHighLevel(tokens=["pit-test"])
fake.add_contact("ocQHyuzHvysMo5N5VsXc", phone="+12025550123", dnd_settings={"Call": "active"})
```
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Iterable, Mapping
from typing import Any
from urllib.parse import parse_qs, unquote

import httpx

from predial.testing import FakeCrm, FakeOAuth, json_response

__all__ = [
    "API_VERSION",
    "BURST_LIMIT",
    "CONTACT_PATH",
    "DAILY_LIMIT",
    "TOKEN_PATH",
    "FakeGoHighLevel",
    "gohighlevel_oauth",
]

CONTACT_PATH = "/contacts/"
TOKEN_PATH = "/oauth/token"
API_VERSION = "2021-07-28"
#: GoHighLevel's documented limits per app and sub-account.
BURST_LIMIT = (100, 10.0)
DAILY_LIMIT = 200_000
#: How long GoHighLevel's OAuth access tokens live (`expires_in` in its examples).
ACCESS_TOKEN_SECONDS = 86_399
_STAMP = "2026-01-05T10:00:00.000Z"

DndSettings = Mapping[str, str | Mapping[str, str]]


def _error(status: int, message: str, error: str | None = None) -> httpx.Response:
    body: dict[str, Any] = {"statusCode": status, "message": message}
    if error is not None:
        body["error"] = error
    return json_response(status, body)


def gohighlevel_oauth(
    client_id: str = "client-id",
    client_secret: str = "client-secret",
    refresh_token: str = "refresh-0",
    **options: Any,
) -> FakeOAuth:
    """GoHighLevel's token endpoint: day-long access tokens and refresh tokens that
    rotate on every refresh (the old one is refused from then on)."""
    options.setdefault("expires_in", ACCESS_TOKEN_SECONDS)
    options.setdefault("rotate", True)
    return FakeOAuth(client_id, client_secret, refresh_token, path=TOKEN_PATH, **options)


class FakeGoHighLevel(FakeCrm):
    """Contacts of one sub-account (location), each the spec's contact object.

    `rate_limit` is the burst limit `(requests, seconds)` (None: unlimited) and
    `daily_limit` the daily cap (None: unlimited); requests refused by either do
    not count against them.
    """

    def __init__(
        self,
        tokens: Iterable[str] = ("pit-test",),
        *,
        oauth: FakeOAuth | None = None,
        location_id: str = "ve9EPM428h8vShlRW1KT",
        rate_limit: tuple[int, float] | None = BURST_LIMIT,
        daily_limit: int | None = DAILY_LIMIT,
        not_found_status: int = 400,
        **options: Any,
    ) -> None:
        if oauth is not None:
            oauth.path = TOKEN_PATH
        if not_found_status not in (400, 404):
            raise ValueError("not_found_status must be 400 or 404")
        # The burst limit is counted here rather than by FakeCrm, so every answer
        # can say how much of the window is left.
        super().__init__(tokens, oauth=oauth, rate_limit=None, **options)
        self.location_id = location_id
        self.burst = rate_limit
        self.daily_limit = daily_limit
        self.not_found_status = not_found_status
        self.contacts: dict[str, dict[str, Any]] = {}
        self.daily_used = 0
        #: The `user_type` of every token request, in order.
        self.token_user_types: list[str | None] = []
        self._burst_window: deque[float] = deque()
        self._counters = threading.Lock()

    def add_contact(
        self,
        contact_id: str,
        phone: str | None = None,
        *,
        additional_phones: list[str] | None = None,
        dnd: bool = False,
        dnd_settings: DndSettings | None = None,
        **fields: Any,
    ) -> dict[str, Any]:
        """Store a contact; `dnd_settings` maps a channel (`"Call"`, `"SMS"`, ...) to
        a status (`"active"`, `"inactive"`, `"permanent"`) or to a full setting."""
        contact: dict[str, Any] = {
            "id": contact_id,
            "locationId": self.location_id,
            "type": "lead",
            "source": "public api",
            "tags": [],
            "dateAdded": _STAMP,
            "dateUpdated": _STAMP,
            "dnd": dnd,
            **fields,
        }
        # The spec types `phone` as a string: a contact without one leaves it out.
        if phone is not None:
            contact["phone"] = phone
        if additional_phones is not None:
            contact["additionalPhones"] = list(additional_phones)
        if dnd_settings is not None:
            contact["dndSettings"] = {
                channel: {"status": value} if isinstance(value, str) else dict(value)
                for channel, value in dnd_settings.items()
            }
        self.contacts[contact_id] = contact
        return contact

    def delete(self, contact_id: str) -> None:
        self.contacts.pop(contact_id, None)

    # -- GoHighLevel's answers ------------------------------------------------------

    def unauthorized(self) -> httpx.Response:
        return _error(401, "Invalid token: access token is invalid", "Unauthorized")

    def rate_limited(self) -> httpx.Response:
        """The burst limit's 429 (its body is not documented; shaped like the DTOs)."""
        response = _error(429, "Too Many Requests", "Too Many Requests")
        response.headers["X-RateLimit-Remaining"] = "0"
        return response

    def daily_limited(self) -> httpx.Response:
        response = _error(429, "Too Many Requests: daily limit reached", "Too Many Requests")
        response.headers["X-RateLimit-Daily-Remaining"] = "0"
        if self.daily_limit is not None:
            response.headers["X-RateLimit-Limit-Daily"] = str(self.daily_limit)
        return response

    def server_error(self, status: int) -> httpx.Response:
        return _error(status, "Internal server error", "Internal Server Error")

    def handler(self, request: httpx.Request) -> httpx.Response:
        if self.oauth is not None and request.url.path == self.oauth.path:
            return self._token(request)
        response = super().handler(request)
        self._add_rate_headers(response)
        return response

    def route(self, request: httpx.Request) -> httpx.Response:
        with self._counters:
            if self.daily_limit is not None and self.daily_used >= self.daily_limit:
                return self.daily_limited()
            if not self._admit_burst():
                return self.rate_limited()
            self.daily_used += 1
        if request.headers.get("version") is None:
            return _error(400, "Version header was not found", "Bad Request")
        if request.headers["version"] != API_VERSION:
            return _error(400, "Version header is not supported", "Bad Request")
        # The path as sent: an id's encoded '/' must not reach another resource.
        raw_path = request.url.raw_path.decode("ascii").split("?")[0]
        if raw_path.startswith(CONTACT_PATH):
            segment = raw_path.removeprefix(CONTACT_PATH)
            if request.method == "GET" and segment and "/" not in segment:
                return self._get(unquote(segment))
        return _error(404, f"Cannot {request.method} {request.url.path}", "Not Found")

    # -- internals ----------------------------------------------------------------------

    def _get(self, contact_id: str) -> httpx.Response:
        contact = self.contacts.get(contact_id)
        if contact is None:
            error = "Bad Request" if self.not_found_status == 400 else "Not Found"
            return _error(self.not_found_status, "Contact not found", error)
        return json_response(200, {"contact": contact})

    def _token(self, request: httpx.Request) -> httpx.Response:
        form = {key: values[-1] for key, values in parse_qs(request.content.decode()).items()}
        user_type = form.get("user_type")
        self.token_user_types.append(user_type)
        if user_type not in (None, "Company", "Location"):
            self.requests.append(request)
            return json_response(
                422,
                {
                    "statusCode": 422,
                    "message": ["user_type must be one of the following values: Company, Location"],
                    "error": "Unprocessable Entity",
                },
            )
        response = super().handler(request)
        try:
            body = response.json()
        except ValueError:
            return response
        if response.status_code != 200 or not isinstance(body, dict):
            return response
        # GoHighLevel's answer also says whose token it is (`userId` is required by
        # the spec's GetAccessCodeSuccessfulResponseDto).
        body.update(
            userType=user_type or "Location",
            locationId=self.location_id,
            companyId="l1C08ntBrFjLS0elLIYU",
            userId="fake-installer",
            scope="contacts.readonly",
        )
        return json_response(200, body)

    def _admit_burst(self) -> bool:
        # Called with `_counters` held.
        if self.burst is None:
            return True
        limit, window = self.burst
        now = self.clock()
        while self._burst_window and self._burst_window[0] <= now - window:
            self._burst_window.popleft()
        if len(self._burst_window) >= limit:
            return False
        self._burst_window.append(now)
        return True

    def _add_rate_headers(self, response: httpx.Response) -> None:
        """GoHighLevel's `X-RateLimit-*` headers; a queued answer keeps its own."""
        with self._counters:
            headers: dict[str, str] = {}
            if self.burst is not None:
                limit, window = self.burst
                now = self.clock()
                used = sum(1 for stamp in self._burst_window if stamp > now - window)
                headers["X-RateLimit-Max"] = str(limit)
                headers["X-RateLimit-Remaining"] = str(max(0, limit - used))
                headers["X-RateLimit-Interval-Milliseconds"] = str(int(window * 1000))
            if self.daily_limit is not None:
                headers["X-RateLimit-Limit-Daily"] = str(self.daily_limit)
                headers["X-RateLimit-Daily-Remaining"] = str(
                    max(0, self.daily_limit - self.daily_used)
                )
        for name, value in headers.items():
            response.headers.setdefault(name, value)
