"""`FakePipedrive`: Pipedrive's persons API (v2) as documented, for tests.

Serves `GET /api/v2/persons/{id}` (with `custom_fields`, at most 15 keys) and
answers `{"success": true, "data": {...}}`. A person has `phones`
(`[{"value", "label", "primary"}]`), `custom_fields` and `is_deleted`: a deleted
person still answers 200, flagged, for the 30 days Pipedrive keeps it; a purged
one answers 404.

Credentials: an API token in `x-api-token` (the legacy `api_token` query
parameter is still accepted, as Pipedrive does, though discouraged), or an OAuth
access token from `FakeOAuth` as `Authorization: Bearer`. An API token sent as a
Bearer token is refused.

Limits: a burst limit per 2-second window (default 20, the smallest plan's) and
an optional daily token budget (each call costs 1 token, the person GET's
`x-token-cost`), both answered with 429. Every answer carries
`x-ratelimit-limit`, `x-ratelimit-remaining` and `x-ratelimit-reset` (seconds
left in the window), and `x-daily-ratelimit-token-limit` / `-remaining` when a
budget is set. Errors take Pipedrive's shape: `{"success": false, "error",
"error_info", "data": null, "additional_data": null}`.

```python
fake = FakePipedrive(tokens=["pd-test"])
fake.add_person(101, phones=[{"value": "(202) 456-1111", "label": "work", "primary": True}])
fake.delete(101)                       # is_deleted: true, still 200
```
"""

from __future__ import annotations

import math
import threading
from collections import deque
from collections.abc import Iterable, Mapping
from typing import Any

import httpx

from predial.testing import FakeCrm, FakeOAuth, json_response

__all__ = ["BURST_WINDOW", "PERSONS_PATH", "FakePipedrive"]

PERSONS_PATH = "/api/v2/persons/"
#: Pipedrive's burst window, in seconds.
BURST_WINDOW = 2.0
#: The person GET's token cost (`x-token-cost: 1` in the v2 spec).
PERSON_COST = 1
MAX_CUSTOM_FIELDS = 15
ERROR_INFO = "Please check developers.pipedrive.com for more information about Pipedrive API."
_STAMP = "2026-01-05T10:00:00Z"


def _error(status: int, error: str, headers: dict[str, str] | None = None) -> httpx.Response:
    body = {
        "success": False,
        "error": error,
        "error_info": ERROR_INFO,
        "data": None,
        "additional_data": None,
    }
    return json_response(status, body, headers)


class FakePipedrive(FakeCrm):
    """Persons by integer id, with phones, custom fields and soft deletion.

    One burst window and one budget for the whole fake: tests use one credential.
    """

    auth_header = "x-api-token"
    auth_prefix = ""

    def __init__(
        self,
        tokens: Iterable[str] = ("test-token",),
        *,
        oauth: FakeOAuth | None = None,
        burst_limit: int = 20,
        daily_budget: int | None = None,
        **options: Any,
    ) -> None:
        if burst_limit < 1:
            raise ValueError("burst_limit must be at least 1 request per window")
        super().__init__(tokens, oauth=oauth, **options)
        self.persons: dict[int, dict[str, Any]] = {}
        self.burst_limit = burst_limit
        self.daily_budget = daily_budget
        self.tokens_used = 0
        self._burst: deque[float] = deque()
        self._limits = threading.Lock()

    # -- the data ---------------------------------------------------------------------

    def add_person(
        self,
        person_id: int,
        *,
        name: str = "Ada Lovelace",
        phones: Iterable[Mapping[str, Any]] = (),
        custom_fields: Mapping[str, Any] | None = None,
    ) -> dict[str, Any]:
        """Add a person; each phone is `{"value", "label", "primary"}` as Pipedrive
        stores it (values exactly as typed, never normalised)."""
        first, _, last = name.partition(" ")
        person: dict[str, Any] = {
            "id": person_id,
            "name": name,
            "first_name": first or None,
            "last_name": last or None,
            "owner_id": 1,
            "org_id": None,
            "add_time": _STAMP,
            "update_time": _STAMP,
            "emails": [],
            "phones": [
                {
                    "value": phone.get("value"),
                    "label": phone.get("label"),
                    "primary": phone.get("primary", False),
                }
                for phone in phones
            ],
            "is_deleted": False,
            "visible_to": 3,
            "label_ids": [],
            "picture_id": None,
            "custom_fields": dict(custom_fields or {}),
        }
        self.persons[person_id] = person
        return person

    def delete(self, person_id: int) -> None:
        """Mark the person deleted, as Pipedrive does for its first 30 days."""
        self.persons[person_id]["is_deleted"] = True

    def purge(self, person_id: int) -> None:
        """The person is gone for good (30 days after deletion): 404 from now on."""
        del self.persons[person_id]

    # -- Pipedrive's answers ----------------------------------------------------------

    def authorised(self, request: httpx.Request) -> bool:
        token = request.headers.get("x-api-token")
        if token is not None:
            return token in self.tokens
        bearer = request.headers.get("authorization", "")
        if bearer.startswith("Bearer "):
            # Bearer is for OAuth access tokens only.
            return self.oauth is not None and self.oauth.valid(bearer.removeprefix("Bearer "))
        legacy = request.url.params.get("api_token")
        return legacy is not None and legacy in self.tokens

    def unauthorized(self) -> httpx.Response:
        return self._stamped(_error(401, "unauthorized access"))

    def rate_limited(self) -> httpx.Response:
        return _error(429, "Request over limit")

    def budget_spent(self) -> httpx.Response:
        """The company's daily token budget is spent (429 until the next day)."""
        return _error(
            429,
            "Daily token budget exceeded",
            {
                "x-daily-ratelimit-token-limit": str(self.daily_budget or 0),
                "x-daily-ratelimit-token-remaining": "0",
            },
        )

    def server_error(self, status: int) -> httpx.Response:
        return _error(status, "Internal server error")

    def route(self, request: httpx.Request) -> httpx.Response:
        return self._stamped(self._answer(request))

    def _answer(self, request: httpx.Request) -> httpx.Response:
        with self._limits:
            if self.daily_budget is not None and self.tokens_used >= self.daily_budget:
                return self.budget_spent()
            if not self._admit_burst(self.clock()):
                return self.rate_limited()
            # Every admitted call costs its tokens, found or not.
            self.tokens_used += PERSON_COST
        raw_path = request.url.raw_path.decode("ascii").split("?")[0]
        segment = raw_path.removeprefix(PERSONS_PATH)
        if request.method != "GET" or not raw_path.startswith(PERSONS_PATH) or "/" in segment:
            return _error(404, "Unknown method .")
        if not (segment.isascii() and segment.isdigit()):
            return _error(400, "Validation failed: id: Expected number, received string")
        keys = None
        wanted = request.url.params.get("custom_fields")
        if wanted is not None:
            keys = [key for key in wanted.split(",") if key]
            if len(keys) > MAX_CUSTOM_FIELDS:
                return _error(
                    400, f"Validation failed: custom_fields: at most {MAX_CUSTOM_FIELDS} keys"
                )
        person = self.persons.get(int(segment))
        if person is None:
            return _error(404, "Person not found")
        data = dict(person)
        if keys is not None:
            # Only the custom fields asked for come back (unset ones as null).
            data["custom_fields"] = {key: person["custom_fields"].get(key) for key in keys}
        return json_response(200, {"success": True, "data": data})

    def _admit_burst(self, now: float) -> bool:
        self._expire(now)
        if len(self._burst) >= self.burst_limit:
            return False
        self._burst.append(now)
        return True

    def _expire(self, now: float) -> None:
        while self._burst and self._burst[0] <= now - BURST_WINDOW:
            self._burst.popleft()

    def _stamped(self, response: httpx.Response) -> httpx.Response:
        """`response` with the rate-limit headers Pipedrive puts on every answer."""
        now = self.clock()
        with self._limits:
            self._expire(now)
            used = len(self._burst)
            left = self._burst[0] + BURST_WINDOW - now if self._burst else BURST_WINDOW
            response.headers["x-ratelimit-limit"] = str(self.burst_limit)
            response.headers["x-ratelimit-remaining"] = str(max(0, self.burst_limit - used))
            response.headers["x-ratelimit-reset"] = str(max(1, math.ceil(left)))
            if self.daily_budget is not None:
                remaining = max(0, self.daily_budget - self.tokens_used)
                response.headers["x-daily-ratelimit-token-limit"] = str(self.daily_budget)
                response.headers["x-daily-ratelimit-token-remaining"] = str(remaining)
        return response
