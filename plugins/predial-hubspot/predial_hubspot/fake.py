"""`FakeHubSpot`: HubSpot's contacts API as documented, for tests.

Serves `GET /crm/v3/objects/contacts/{contactId}` (`properties`, `idProperty`,
`archived`) and `POST /crm/v3/objects/contacts/batch/read` (at most 100 inputs;
207 with an `OBJECT_NOT_FOUND` error listing ids it does not have), bearer
tokens (private-app tokens, or OAuth access tokens from `/oauth/v1/token` that
live 30 minutes), HubSpot's error bodies, and its two rate limits: a burst limit
(429, `policyName: SECONDLY`, no `Retry-After`, as HubSpot often sends it) and a
daily quota (429, `policyName: DAILY`, `X-HubSpot-RateLimit-Daily-Remaining: 0`).

```python
fake = FakeHubSpot(tokens=["pat-test"])
fake.add_contact("101", phone="(202) 456-1111", mobilephone="+12025550123")
```
"""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any
from urllib.parse import unquote

import httpx

from predial.testing import FakeCrm, FakeOAuth, body_json, json_response

__all__ = ["FakeHubSpot"]

CONTACT_PATH = "/crm/v3/objects/contacts/"
BATCH_READ_PATH = "/crm/v3/objects/contacts/batch/read"
BATCH_LIMIT = 100
_STAMP = "2026-01-05T10:00:00.000Z"


def _error(status: int, category: str, message: str, **extra: Any) -> httpx.Response:
    body = {
        "status": "error",
        "message": message,
        "correlationId": str(uuid.uuid4()),
        "category": category,
        **extra,
    }
    return json_response(status, body)


class FakeHubSpot(FakeCrm):
    """Contacts, each a dict of string properties; archived and merged ones too."""

    def __init__(
        self,
        tokens: tuple[str, ...] | list[str] = ("test-token",),
        *,
        oauth: FakeOAuth | None = None,
        daily_limit: int | None = None,
        **options: Any,
    ) -> None:
        if oauth is not None:
            oauth.path = "/oauth/v1/token"
        super().__init__(tokens, oauth=oauth, **options)
        self.contacts: dict[str, dict[str, str | None]] = {}
        self.archived: set[str] = set()
        self.merged_into: dict[str, str] = {}
        self.daily_limit = daily_limit
        self.daily_used = 0

    def add_contact(self, contact_id: str, **properties: str | None) -> None:
        self.contacts[contact_id] = {"hs_object_id": contact_id, **properties}

    def archive(self, contact_id: str) -> None:
        self.archived.add(contact_id)

    def merge(self, merged_id: str, into: str) -> None:
        """`merged_id` now answers with `into`, as HubSpot does after a merge."""
        self.contacts.pop(merged_id, None)
        self.merged_into[merged_id] = into
        survivor = self.contacts[into]
        previous = survivor.get("hs_merged_object_ids")
        survivor["hs_merged_object_ids"] = ";".join(filter(None, [previous, merged_id]))

    # -- HubSpot's answers ----------------------------------------------------------

    def unauthorized(self) -> httpx.Response:
        return _error(
            401,
            "INVALID_AUTHENTICATION",
            "Authentication credentials not found. This API supports OAuth 2.0 "
            "authentication and you can find more details at https://developers.hubspot.com",
        )

    def rate_limited(self) -> httpx.Response:
        response = _error(
            429,
            "RATE_LIMITS",
            "You have reached your secondly limit.",
            errorType="RATE_LIMIT",
            policyName="SECONDLY",
        )
        response.headers["X-HubSpot-RateLimit-Interval-Milliseconds"] = "10000"
        response.headers["X-HubSpot-RateLimit-Remaining"] = "0"
        return response

    def daily_limited(self) -> httpx.Response:
        response = _error(
            429,
            "RATE_LIMITS",
            "You have reached your daily limit.",
            errorType="RATE_LIMIT",
            policyName="DAILY",
        )
        response.headers["X-HubSpot-RateLimit-Daily"] = str(self.daily_limit)
        response.headers["X-HubSpot-RateLimit-Daily-Remaining"] = "0"
        return response

    def server_error(self, status: int) -> httpx.Response:
        return _error(status, "INTERNAL_ERROR", "internal error")

    def route(self, request: httpx.Request) -> httpx.Response:
        if self.daily_limit is not None:
            if self.daily_used >= self.daily_limit:
                return self.daily_limited()
            self.daily_used += 1
        path = request.url.path
        if request.method == "POST" and path == BATCH_READ_PATH:
            return self._batch_read(request)
        raw_path = request.url.raw_path.decode("ascii").split("?")[0]
        if request.method == "GET" and raw_path.startswith(CONTACT_PATH):
            segment = raw_path.removeprefix(CONTACT_PATH)
            if segment and "/" not in segment:
                return self._get(request, unquote(segment))
        return _error(404, "OBJECT_NOT_FOUND", "resource not found")

    def _find(
        self, key: str, id_property: str | None, archived: bool
    ) -> tuple[str, dict[str, str | None]] | None:
        if id_property:
            for contact_id, properties in self.contacts.items():
                if properties.get(id_property) == key:
                    return self._visible(contact_id, archived)
            return None
        key = self.merged_into.get(key, key)
        return self._visible(key, archived) if key in self.contacts else None

    def _visible(self, contact_id: str, archived: bool) -> tuple[str, dict[str, str | None]] | None:
        # Archived contacts are only returned with archived=true; live ones only without.
        if (contact_id in self.archived) != archived:
            return None
        return contact_id, self.contacts[contact_id]

    def _record(
        self, contact_id: str, properties: dict[str, str | None], wanted: list[str]
    ) -> dict[str, Any]:
        archived = contact_id in self.archived
        shown = {"hs_object_id": contact_id, "createdate": _STAMP, "lastmodifieddate": _STAMP}
        for name in wanted:
            # The spec types every value as a string: unset properties are left out
            # (the adapter also copes with the nulls HubSpot is reported to send).
            value = properties.get(name)
            if value is not None:
                shown[name] = value
        record: dict[str, Any] = {
            "id": contact_id,
            "properties": shown,
            "createdAt": _STAMP,
            "updatedAt": _STAMP,
            "archived": archived,
        }
        if archived:
            record["archivedAt"] = _STAMP
        return record

    def _get(self, request: httpx.Request, raw_id: str) -> httpx.Response:
        params = request.url.params
        key = raw_id
        wanted = [name for value in params.get_list("properties") for name in value.split(",")]
        archived = params.get("archived", "false") == "true"
        found = self._find(key, params.get("idProperty"), archived)
        if found is None:
            return _error(404, "OBJECT_NOT_FOUND", "resource not found")
        return json_response(200, self._record(*found, wanted))

    def _batch_read(self, request: httpx.Request) -> httpx.Response:
        body = body_json(request)
        if not isinstance(body, dict) or not isinstance(body.get("inputs"), list):
            return _error(400, "VALIDATION_ERROR", "Invalid input JSON: inputs is required")
        inputs = body["inputs"]
        if len(inputs) > BATCH_LIMIT:
            return _error(
                400, "VALIDATION_ERROR", f"Batch input must contain at most {BATCH_LIMIT} inputs"
            )
        wanted = [str(name) for name in body.get("properties") or []]
        archived = request.url.params.get("archived", "false") == "true"
        results, missing = [], []
        for item in inputs:
            key = str(item.get("id")) if isinstance(item, dict) else ""
            found = self._find(key, body.get("idProperty"), archived)
            if found is None:
                missing.append(key)
            else:
                results.append(self._record(*found, wanted))
        now = dt.datetime.now(dt.UTC).isoformat().replace("+00:00", "Z")
        answer: dict[str, Any] = {
            "status": "COMPLETE",
            "results": results,
            "startedAt": now,
            "completedAt": now,
        }
        if not missing:
            return json_response(200, answer)
        answer["numErrors"] = 1
        answer["errors"] = [
            {
                "status": "error",
                "category": "OBJECT_NOT_FOUND",
                "message": "Could not get some CONTACT objects, they may be deleted or not exist. "
                "Check that ids are valid.",
                "context": {"ids": missing},
                "errors": [],
                "links": {},
            }
        ]
        return json_response(207, answer)
