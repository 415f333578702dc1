"""`FakeSalesforce`: Salesforce's REST API for Contacts and Leads, as documented, for tests.

Serves `GET /services/data/vNN.N/sobjects/{Contact|Lead}/{id}` (`fields=`; 15- and
18-character ids) and `GET /services/data/vNN.N/query?q=...` for a strict subset
of SOQL, `SELECT f, ... FROM Contact|Lead WHERE Field = '<literal>' LIMIT n`, in
which anything else is a 400 `MALFORMED_QUERY` (so an id that escaped its string
literal shows). Also: error bodies as Salesforce's JSON arrays,
`Sforce-Limit-Info: api-usage=N/M` on every answer, a daily allocation (403
`REQUEST_LIMIT_EXCEEDED`), 401 `INVALID_SESSION_ID`, and an OAuth token endpoint at
`/services/oauth2/token` whose answers carry `instance_url` (and, as Salesforce's
do, no `expires_in` when the `FakeOAuth` is built with `expires_in=None`).

```python
fake = FakeSalesforce(tokens=["00Dxx!test"])
contact = fake.add_contact(Phone="(202) 456-1111", MobilePhone="+12025550123")
lead = fake.add_lead(Phone="+12025550100", Dialer_Id__c="D-42")
fake.convert_lead(lead, contact)
```
"""

from __future__ import annotations

import itertools
import json
import re
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote

import httpx

from predial.testing import FakeCrm, FakeOAuth, json_response

__all__ = [
    "CONTACT_FIELDS",
    "DEFAULT_ALLOCATION",
    "LEAD_FIELDS",
    "TOKEN_PATH",
    "FakeSalesforce",
    "SoqlError",
    "SoqlQuery",
    "make_id",
    "parse_soql",
]

TOKEN_PATH = "/services/oauth2/token"
DATA_PATH = "/services/data/"
#: The allocation `Sforce-Limit-Info` reports when no `daily_limit` is set.
DEFAULT_ALLOCATION = 100_000

#: The fields the fake knows on each object (a subset of Salesforce's).
CONTACT_FIELDS = (
    "Id",
    "FirstName",
    "LastName",
    "Name",
    "Email",
    "AccountId",
    "Phone",
    "MobilePhone",
    "HomePhone",
    "OtherPhone",
    "AssistantPhone",
    "Fax",
    "DoNotCall",
    "IsDeleted",
    "MasterRecordId",
)
LEAD_FIELDS = (
    "Id",
    "FirstName",
    "LastName",
    "Name",
    "Email",
    "Company",
    "Status",
    "Phone",
    "MobilePhone",
    "Fax",
    "DoNotCall",
    "IsConverted",
    "ConvertedContactId",
    "ConvertedAccountId",
    "IsDeleted",
    "MasterRecordId",
)
_KNOWN = {"Contact": CONTACT_FIELDS, "Lead": LEAD_FIELDS}
_KEY_PREFIX = {"Contact": "003", "Lead": "00Q"}
_BOOLEANS = {"DoNotCall", "IsConverted", "IsDeleted"}

_RECORD_ID = re.compile(r"[A-Za-z0-9]{15}(?:[A-Za-z0-9]{3})?")
_VERSION = re.compile(r"v(\d{2,3})\.0")
#: The versions the fake answers for (Salesforce retires old ones).
_VERSIONS = range(31, 66)
_CHECKSUM = "ABCDEFGHIJKLMNOPQRSTUVWXYZ012345"


def make_id(prefix: str, serial: int) -> str:
    """An 18-character record id: `prefix` (a key prefix such as `003`), `serial`
    padded to 15 characters, and the case checksum Salesforce appends."""
    base = f"{prefix}{serial:0{15 - len(prefix)}d}"
    if len(base) != 15:
        raise ValueError("prefix and serial do not fit in 15 characters")
    suffix = ""
    for start in range(0, 15, 5):
        bits = sum(1 << i for i, char in enumerate(base[start : start + 5]) if "A" <= char <= "Z")
        suffix += _CHECKSUM[bits]
    return base + suffix


# -- the SOQL subset ------------------------------------------------------------------


class SoqlError(ValueError):
    """The query is not in the subset the fake (and the adapter) speak."""


@dataclass(frozen=True, slots=True)
class SoqlQuery:
    """`SELECT fields FROM sobject WHERE field = 'value' LIMIT limit`, value decoded."""

    fields: tuple[str, ...]
    sobject: str
    field: str
    value: str
    limit: int


_HEAD = re.compile(
    r"SELECT\s+(?P<fields>\w+(?:\s*,\s*\w+)*)\s+FROM\s+(?P<sobject>\w+)"
    r"\s+WHERE\s+(?P<field>\w+)\s*=\s*'",
    re.IGNORECASE | re.ASCII,
)
_TAIL = re.compile(r"\s+LIMIT\s+(?P<limit>\d{1,9})\s*", re.IGNORECASE | re.ASCII)
#: SOQL's escape sequences in a quoted string (LIKE's `\_` and `\%` are not valid
#: after `=`); any other backslash is an error, as in Salesforce.
_UNESCAPE = {
    "n": "\n",
    "N": "\n",
    "r": "\r",
    "R": "\r",
    "t": "\t",
    "T": "\t",
    "b": "\b",
    "B": "\b",
    "f": "\f",
    "F": "\f",
    '"': '"',
    "'": "'",
    "\\": "\\",
}


def parse_soql(text: str) -> SoqlQuery:
    """Parse the one query shape the fake answers; `SoqlError` for anything else."""
    head = _HEAD.match(text)
    if head is None:
        raise SoqlError("unexpected token: expected SELECT ... FROM ... WHERE Field = '...'")
    value: list[str] = []
    index = head.end()
    while True:
        if index >= len(text):
            raise SoqlError("unterminated string literal")
        char = text[index]
        if char == "'":
            index += 1
            break
        if char == "\\":
            decoded = _UNESCAPE.get(text[index + 1 : index + 2])
            if decoded is None:
                raise SoqlError("invalid escape sequence in a string literal")
            value.append(decoded)
            index += 2
            continue
        value.append(char)
        index += 1
    tail = _TAIL.fullmatch(text, index)
    if tail is None:
        rest = text[index:].split()
        raise SoqlError(f"unexpected token: {rest[0][:40] if rest else '<end>'}")
    fields = tuple(name.strip() for name in head["fields"].split(","))
    return SoqlQuery(fields, head["sobject"], head["field"], "".join(value), int(tail["limit"]))


# -- Salesforce's answers ---------------------------------------------------------------


def _errors(status: int, code: str, message: str) -> httpx.Response:
    return json_response(status, [{"message": message, "errorCode": code}])


def _not_found() -> httpx.Response:
    return _errors(404, "NOT_FOUND", "The requested resource does not exist")


class FakeSalesforce(FakeCrm):
    """Contacts and Leads, each a dict of fields; deleted and converted ones too.

    `daily_limit` is the org's API allocation: once that many API requests were
    answered, every request is a 403 `REQUEST_LIMIT_EXCEEDED`. `custom_fields` are
    the custom fields (e.g. an external id) both objects have.
    """

    def __init__(
        self,
        tokens: Iterable[str] = ("test-token",),
        *,
        oauth: FakeOAuth | None = None,
        daily_limit: int | None = None,
        custom_fields: Iterable[str] = ("Dialer_Id__c",),
        **options: Any,
    ) -> None:
        self._oauth: FakeOAuth | None = None
        super().__init__(tokens, oauth=oauth, **options)
        self.custom_fields = tuple(custom_fields)
        self.records: dict[str, dict[str, Any]] = {}
        self.sobjects: dict[str, str] = {}
        self.deleted: set[str] = set()
        self.queries: list[SoqlQuery] = []
        self.daily_limit = daily_limit
        self.daily_used = 0
        self._serial = itertools.count(1)

    @property
    def oauth(self) -> FakeOAuth | None:
        return self._oauth

    @oauth.setter
    def oauth(self, value: FakeOAuth | None) -> None:
        # Salesforce's token endpoint, wherever the FakeOAuth was built for.
        if value is not None:
            value.path = TOKEN_PATH
        self._oauth = value

    @property
    def allocation(self) -> int:
        return self.daily_limit if self.daily_limit is not None else DEFAULT_ALLOCATION

    # -- records ------------------------------------------------------------------------

    def add_contact(self, contact_id: str | None = None, **fields: Any) -> str:
        """Add a Contact; returns its 18-character id."""
        return self._add("Contact", contact_id, fields)

    def add_lead(self, lead_id: str | None = None, **fields: Any) -> str:
        """Add a Lead; returns its 18-character id."""
        return self._add("Lead", lead_id, fields)

    def convert_lead(self, lead_id: str, contact_id: str | None) -> None:
        """Mark `lead_id` converted, to `contact_id` (None: to no Contact)."""
        lead = self.records[lead_id]
        lead["IsConverted"] = True
        lead["ConvertedContactId"] = contact_id

    def delete(self, record_id: str) -> None:
        """Move a record to the recycle bin: 404 `ENTITY_IS_DELETED` by id, absent
        from queries."""
        self.deleted.add(record_id)
        self.records[record_id]["IsDeleted"] = True

    def _add(self, sobject: str, record_id: str | None, fields: dict[str, Any]) -> str:
        known = self._fields(sobject)
        unknown = set(fields) - set(known)
        if unknown:
            raise ValueError(f"{sobject} has no field {sorted(unknown)[0]!r}")
        if record_id is None:
            record_id = make_id(_KEY_PREFIX[sobject], next(self._serial))
        if len(record_id) != 18 or not _RECORD_ID.fullmatch(record_id):
            raise ValueError("the fake keeps 18-character ids")
        record: dict[str, Any] = dict.fromkeys(known)
        record.update(dict.fromkeys(_BOOLEANS & set(known), False))
        record.update(fields, Id=record_id)
        self.records[record_id] = record
        self.sobjects[record_id] = sobject
        return record_id

    def _fields(self, sobject: str) -> tuple[str, ...]:
        return (*_KNOWN[sobject], *self.custom_fields)

    def _canonical_field(self, sobject: str, name: str) -> str | None:
        # Field names are case-insensitive in Salesforce; answers use the API name.
        for known in self._fields(sobject):
            if known.lower() == name.lower():
                return known
        return None

    def _find(self, sobject: str, raw_id: str) -> str | None:
        """The stored id `raw_id` names: 18 characters match case-insensitively (the
        suffix restores the case), 15 exactly."""
        for record_id, kind in self.sobjects.items():
            if kind != sobject:
                continue
            if len(raw_id) == 18 and record_id.lower() == raw_id.lower():
                return record_id
            if len(raw_id) == 15 and record_id[:15] == raw_id:
                return record_id
        return None

    def _shown(
        self, sobject: str, version: str, record_id: str, fields: list[str]
    ) -> dict[str, Any]:
        record = self.records[record_id]
        shown: dict[str, Any] = {
            "attributes": {
                "type": sobject,
                "url": f"/services/data/{version}/sobjects/{sobject}/{record_id}",
            },
        }
        # Every requested field is present, null when unset, as Salesforce answers.
        for name in fields:
            shown[name] = record.get(name)
        shown.setdefault("Id", record_id)
        return shown

    # -- Salesforce's errors -----------------------------------------------------------------

    def unauthorized(self) -> httpx.Response:
        return _errors(401, "INVALID_SESSION_ID", "Session expired or invalid")

    def rate_limited(self) -> httpx.Response:
        # Salesforce's only short-lived limit: concurrent long-running requests.
        return _errors(
            403,
            "REQUEST_LIMIT_EXCEEDED",
            "ConcurrentRequests (Concurrent API Requests) Limit exceeded.",
        )

    def daily_limited(self) -> httpx.Response:
        return _errors(403, "REQUEST_LIMIT_EXCEEDED", "TotalRequests Limit exceeded.")

    def server_error(self, status: int) -> httpx.Response:
        return _errors(
            status,
            "UNKNOWN_EXCEPTION",
            "An unexpected error occurred. Please include this ErrorId if you contact "
            "support: 1234567890-12345 (-1234567890)",
        )

    @staticmethod
    def maintenance_page(status: int = 503) -> httpx.Response:
        """An HTML page, as Salesforce's edge serves during maintenance."""
        page = "<html><head><title>Maintenance</title></head><body>Back soon</body></html>"
        return httpx.Response(status, text=page, headers={"Content-Type": "text/html"})

    # -- serving ---------------------------------------------------------------------------

    def handler(self, request: httpx.Request) -> httpx.Response:
        response = super().handler(request)
        if self._oauth is not None and request.url.path == self._oauth.path:
            return self._token_answer(request, response)
        response.headers["Sforce-Limit-Info"] = f"api-usage={self.daily_used}/{self.allocation}"
        return response

    def _token_answer(self, request: httpx.Request, response: httpx.Response) -> httpx.Response:
        if response.status_code != 200:
            return response
        body = json.loads(response.content)
        body.update(
            instance_url=f"{request.url.scheme}://{request.url.netloc.decode('ascii')}",
            id="https://login.salesforce.com/id/00D000000000001AAA/005000000000001AAA",
            issued_at=str(int(time.time() * 1000)),
            signature="c2lnbmF0dXJl",
            scope="api refresh_token",
        )
        return json_response(200, body)

    def route(self, request: httpx.Request) -> httpx.Response:
        if self.daily_limit is not None and self.daily_used >= self.daily_limit:
            return self.daily_limited()
        self.daily_used += 1
        raw_path = request.url.raw_path.decode("ascii").split("?")[0]
        if not raw_path.startswith(DATA_PATH):
            return _not_found()
        parts = raw_path.removeprefix(DATA_PATH).split("/")
        version = _VERSION.fullmatch(parts[0])
        if version is None or int(version[1]) not in _VERSIONS:
            return _not_found()
        if request.method != "GET":
            return _errors(
                405,
                "METHOD_NOT_ALLOWED",
                f"HTTP Method '{request.method}' not allowed. Allowed are GET,HEAD",
            )
        rest = parts[1:]
        if rest in (["query"], ["query", ""]):
            return self._query(request, parts[0])
        if len(rest) == 3 and rest[0] == "sobjects" and rest[1] in _KNOWN:
            return self._get(request, parts[0], rest[1], unquote(rest[2]))
        return _not_found()

    def _get(
        self, request: httpx.Request, version: str, sobject: str, raw_id: str
    ) -> httpx.Response:
        if not _RECORD_ID.fullmatch(raw_id):
            # Salesforce reads a segment that is not an id as an external id field.
            return _errors(
                404,
                "NOT_FOUND",
                "Provided external ID field does not exist or is not accessible: " + raw_id,
            )
        fields_param = request.url.params.get("fields")
        if fields_param is None:
            wanted = list(self._fields(sobject))
        else:
            wanted = []
            for name in fields_param.split(","):
                known = self._canonical_field(sobject, name.strip())
                if known is None:
                    return _errors(
                        400,
                        "INVALID_FIELD",
                        f"No such column '{name.strip()}' on sobject of type {sobject}",
                    )
                wanted.append(known)
        record_id = self._find(sobject, raw_id)
        if record_id is None:
            return _not_found()
        if record_id in self.deleted:
            return _errors(404, "ENTITY_IS_DELETED", "entity is deleted")
        return json_response(200, self._shown(sobject, version, record_id, wanted))

    def _query(self, request: httpx.Request, version: str) -> httpx.Response:
        text = request.url.params.get("q")
        if not text:
            return _errors(400, "MALFORMED_QUERY", "A query string has to be specified")
        try:
            query = parse_soql(text)
        except SoqlError as error:
            return _errors(400, "MALFORMED_QUERY", str(error))
        self.queries.append(query)
        sobject = next((name for name in _KNOWN if name.lower() == query.sobject.lower()), None)
        if sobject is None:
            return _errors(400, "INVALID_TYPE", f"sObject type '{query.sobject}' is not supported.")
        wanted = []
        for name in (*query.fields, query.field):
            known = self._canonical_field(sobject, name)
            if known is None:
                return _errors(
                    400, "INVALID_FIELD", f"No such column '{name}' on entity '{sobject}'."
                )
            wanted.append(known)
        field = wanted.pop()
        matches = [
            record_id
            for record_id, kind in self.sobjects.items()
            if kind == sobject
            and record_id not in self.deleted
            and self.records[record_id].get(field) == query.value
        ][: query.limit]
        records = [self._shown(sobject, version, record_id, wanted) for record_id in matches]
        return json_response(200, {"totalSize": len(records), "done": True, "records": records})
