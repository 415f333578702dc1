"""predial adapter for Salesforce (REST API: the Contact and Lead sObjects).

```toml
[[campaigns]]
id = "q3-outbound"
adapter = "salesforce"
[campaigns.settings]
base_url = "https://acme.my.salesforce.com"   # the org's instance URL
token = "${SF_ACCESS_TOKEN}"                  # or OAuth: client_id, client_secret, refresh_token
```

By record id: `GET /services/data/{api_version}/sobjects/{Contact|Lead}/{id}` with
only the phone fields and `DoNotCall`; with `object = "auto"` the id's key prefix
picks the object (`003` Contact, `00Q` Lead). By a field such as `Dialer_Id__c`
(`external_id_field`): one SOQL query whose only input, the id, is an escaped
string literal. A converted Lead is followed to its Contact; `DoNotCall` is
honoured. Salesforce's 403 `REQUEST_LIMIT_EXCEEDED` stops calls for the tenant
(`quota_cooldown`), as its 24-hour allocation does not come back within a dial.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any, ClassVar, Final, Literal, cast

import httpx

from predial import (
    AdapterAuthError,
    AdapterRegister,
    AdapterUnavailable,
    CrmContact,
    CrmPhone,
    RecordNotFound,
    hookimpl,
)
from predial.adapters.http import HttpAdapter, RateLimitScope

__all__ = [
    "CONTACT_FIELDS",
    "KEY_PREFIXES",
    "LEAD_FIELDS",
    "SalesforceAdapter",
    "register_adapters",
    "soql_string",
]

__version__ = "0.1.0"

SObject = Literal["Contact", "Lead"]

#: Phone fields in the order they are offered, with their labels. `Phone` is the
#: only one marked primary; the campaign's label preference orders the rest.
CONTACT_PHONES: Final = (
    ("Phone", "main"),
    ("MobilePhone", "mobile"),
    ("HomePhone", "home"),
    ("OtherPhone", "other"),
)
#: A Lead has no HomePhone or OtherPhone: asking for them is a 400 INVALID_FIELD.
LEAD_PHONES: Final = (("Phone", "main"), ("MobilePhone", "mobile"))

#: The only fields requested: a record has dozens, a dial needs these.
CONTACT_FIELDS: Final = (*(name for name, _ in CONTACT_PHONES), "DoNotCall")
LEAD_FIELDS: Final = (
    *(name for name, _ in LEAD_PHONES),
    "DoNotCall",
    "IsConverted",
    "ConvertedContactId",
)
_FIELDS: Final[Mapping[SObject, tuple[str, ...]]] = {
    "Contact": CONTACT_FIELDS,
    "Lead": LEAD_FIELDS,
}
_PHONES: Final[Mapping[SObject, tuple[tuple[str, str], ...]]] = {
    "Contact": CONTACT_PHONES,
    "Lead": LEAD_PHONES,
}

#: The key prefix (first three characters of an id) of each object routed to.
KEY_PREFIXES: Final[Mapping[str, SObject]] = {"003": "Contact", "00Q": "Lead"}

_OBJECTS: Final = ("Contact", "Lead", "auto")
#: A record id: 15 characters (case-sensitive) or 18 (15 plus a case checksum).
_RECORD_ID = re.compile(r"[A-Za-z0-9]{15}(?:[A-Za-z0-9]{3})?")
_API_VERSION = re.compile(r"v\d{2,3}\.\d")
#: A field's API name: `Email`, `Dialer_Id__c`, `ns__Dialer_Id__c`. Letters, digits
#: and single underscores, plus the `__` of a namespace and of the `__c` suffix.
_WORD = r"[A-Za-z][A-Za-z0-9]*(?:_[A-Za-z0-9]+)*"
_FIELD_NAME = re.compile(rf"(?:{_WORD}__)?{_WORD}(?:__c)?")
_FIELD_NAME_MAX = 100
_ERROR_CODE = re.compile(r"[A-Z][A-Z0-9_]{0,63}")
# `per-app-api-usage=...` may follow; only the org's own `api-usage` is read.
_API_USAGE = re.compile(r"(?:^|[\s,])api-usage=(\d+)/(\d+)")

#: An External ID text field holds at most 255 characters: a longer value can
#: match nothing, so it is not sent.
MAX_FIELD_VALUE = 255

#: SOQL's escape sequences for a quoted string literal. `_` and `%` are only
#: escaped inside LIKE; the query uses `=`, where they are plain characters.
_SOQL_ESCAPES: Final = {
    "\\": "\\\\",
    "'": "\\'",
    '"': '\\"',
    "\n": "\\n",
    "\r": "\\r",
    "\t": "\\t",
    "\b": "\\b",
    "\f": "\\f",
}


def soql_string(value: str) -> str:
    """`value` as one quoted SOQL string literal, escaped per SOQL's rules.

    `ValueError` for a control character SOQL has no escape for (any C0 character
    but `\\n \\r \\t \\b \\f`) or text that is not valid Unicode: sending it raw
    would leave its meaning to the parser.
    """
    out = []
    for char in value:
        escaped = _SOQL_ESCAPES.get(char)
        if escaped is not None:
            out.append(escaped)
        elif char < " " or "\ud800" <= char <= "\udfff":
            raise ValueError(f"SOQL has no escape for character U+{ord(char):04X}")
        else:
            out.append(char)
    return "'" + "".join(out) + "'"


class SalesforceAdapter(HttpAdapter):
    """Salesforce Contacts and Leads by record id, or by a field (`external_id_field`).

    Settings: `base_url` (required: the org's instance URL), `token` (an access
    token) or `client_id` / `client_secret` / `refresh_token` (the refresh-token
    grant at `token_url`, login.salesforce.com by default), `refresh_token_file`,
    `api_version` (default `v61.0`), `object` (`"Contact"`, `"Lead"` or `"auto"`:
    by the id's key prefix), `external_id_field`, `timeout`.
    """

    name = "salesforce"
    # No default: every org has its own instance URL.
    default_base_url = ""
    token_url = "https://login.salesforce.com/services/oauth2/token"
    #: Salesforce has no short-window limit, only a rolling 24-hour allocation.
    rate_limit: ClassVar[tuple[int, float] | None] = None
    default_api_version: ClassVar[str] = "v61.0"

    def __init__(
        self,
        *,
        api_version: str | None = None,
        object: str = "auto",
        external_id_field: str | None = None,
        **settings: Any,
    ) -> None:
        oauth = bool(settings.get("client_id") or settings.get("refresh_token"))
        if not settings.get("base_url"):
            if not oauth:
                raise ValueError(
                    "base_url is required with a token: the org's instance URL, "
                    'e.g. base_url = "https://acme.my.salesforce.com"'
                )
            # With OAuth the token answer says where the org lives (instance_url);
            # until the first token, the login host stands in (no data goes there).
            settings["base_url"] = "https://login.salesforce.com"
            self._follow_instance_url = True
        else:
            self._follow_instance_url = False
        version = self.default_api_version if api_version is None else api_version
        if not isinstance(version, str) or not _API_VERSION.fullmatch(version):
            raise ValueError(f'api_version must look like "v61.0", not {version!r}')
        if object not in _OBJECTS:
            raise ValueError(f'object must be "Contact", "Lead" or "auto", not {object!r}')
        if external_id_field is not None:
            if (
                not isinstance(external_id_field, str)
                or len(external_id_field) > _FIELD_NAME_MAX
                or not _FIELD_NAME.fullmatch(external_id_field)
            ):
                raise ValueError(
                    "external_id_field must be a field's API name such as "
                    f'"Dialer_Id__c", not {external_id_field!r}'
                )
            if object == "auto":
                # A field's value, unlike a record id, says nothing about its object.
                raise ValueError(
                    'external_id_field needs object = "Contact" or "Lead": '
                    "the field's values do not say which object they are on"
                )
        super().__init__(**settings)
        self.api_version = version
        self.sobject: SObject | Literal["auto"] = cast('SObject | Literal["auto"]', object)
        self.external_id_field = external_id_field
        #: The org's API usage from the last `Sforce-Limit-Info`: (used, allocation).
        self.api_usage: tuple[int, int] | None = None

    def on_token(self, answer: Mapping[str, Any]) -> None:
        # Salesforce's token answer names the org's instance; used unless the
        # campaign set base_url itself.
        if not self._follow_instance_url:
            return
        instance = answer.get("instance_url")
        if not isinstance(instance, str):
            raise AdapterUnavailable("Salesforce's token answer has no instance_url")
        self.use_base_url(instance)

    def __repr__(self) -> str:
        return (
            f"SalesforceAdapter(base_url={self.base_url!r}, object={self.sobject!r}, "
            f"external_id_field={self.external_id_field!r})"
        )

    async def fetch_phone(self, external_id: str) -> CrmContact:
        if self.external_id_field is not None:
            assert self.sobject != "auto"  # refused in __init__
            sobject: SObject = self.sobject
            record = await self._query_one(sobject, self.external_id_field, external_id)
        else:
            if not _RECORD_ID.fullmatch(external_id):
                raise RecordNotFound("not a Salesforce record id (15 or 18 letters and digits)")
            sobject = self._route(external_id)
            record = await self._get(sobject, external_id)
        return await self._contact(sobject, record)

    # -- requests ------------------------------------------------------------------------

    def _route(self, record_id: str) -> SObject:
        if self.sobject != "auto":
            return self.sobject
        prefix = record_id[:3]
        if len(record_id) == 18:
            # 18-character ids are case-insensitive (the suffix restores the case).
            prefix = prefix.upper()
        sobject = KEY_PREFIXES.get(prefix)
        if sobject is None:
            raise RecordNotFound(
                "the id is neither a Contact (003...) nor a Lead (00Q...); "
                'set object = "Contact" or "Lead" to look it up anyway'
            )
        return sobject

    async def _get(self, sobject: SObject, record_id: str) -> dict[str, Any]:
        data = await self.get_json(
            "/services/data/{}/sobjects/{}/{}",
            self.api_version,
            sobject,
            record_id,
            params={"fields": ",".join(_FIELDS[sobject])},
        )
        return _record(data)

    async def _query_one(self, sobject: SObject, field: str, value: str) -> dict[str, Any]:
        """The one record whose `field` equals `value`; RecordNotFound for none or
        several."""
        if not value or len(value) > MAX_FIELD_VALUE:
            raise RecordNotFound(
                f"an empty id, or one over {MAX_FIELD_VALUE} characters, matches no {field}"
            )
        try:
            literal = soql_string(value)
        except ValueError:
            raise RecordNotFound(f"the id holds a character no {field} value can match") from None
        # Object and field names come from validated settings, never from the id.
        selected = ", ".join(("Id", *_FIELDS[sobject]))
        soql = f"SELECT {selected} FROM {sobject} WHERE {field} = {literal} LIMIT 2"
        data = await self.get_json("/services/data/{}/query", self.api_version, params={"q": soql})
        records = data.get("records") if isinstance(data, dict) else None
        if not isinstance(records, list):
            raise AdapterUnavailable("Salesforce answered the query without records")
        if not records:
            raise RecordNotFound(f"no {sobject} has this {field}")
        if len(records) > 1:
            # Dialling the wrong person is worse than not dialling: refuse to guess.
            raise RecordNotFound(
                f"{len(records)} or more {sobject}s have this {field}; "
                "it is not unique, so none is dialled"
            )
        return _record(records[0])

    async def _contact(self, sobject: SObject, record: Mapping[str, Any]) -> CrmContact:
        do_not_call = _flag(record.get("DoNotCall"))
        if sobject == "Lead" and _flag(record.get("IsConverted")):
            # A converted Lead is frozen; the person lives on as its Contact.
            target = record.get("ConvertedContactId")
            if not isinstance(target, str) or not _RECORD_ID.fullmatch(target):
                return CrmContact(
                    phones=_phones(record, LEAD_PHONES), do_not_call=do_not_call, state="archived"
                )
            contact = await self._get("Contact", target)
            return CrmContact(
                phones=_phones(contact, CONTACT_PHONES),
                # Either record's flag is the person's word: both are honoured.
                do_not_call=do_not_call or _flag(contact.get("DoNotCall")),
                state="merged",
            )
        return CrmContact(phones=_phones(record, _PHONES[sobject]), do_not_call=do_not_call)

    # -- Salesforce's answers ------------------------------------------------------------

    def rate_limit_scope(self, response: httpx.Response) -> RateLimitScope | None:
        if response.status_code == 403:
            _, code, message = _error(response)
            if code != "REQUEST_LIMIT_EXCEEDED":
                return None
            # The same code is used for too many concurrent long-running requests,
            # which clears within seconds; only the allocation is a daily stop.
            return "burst" if "concurrent" in message.lower() else "daily"
        return super().rate_limit_scope(response)

    def raise_for_status(self, response: httpx.Response) -> None:
        self._note_usage(response)
        status = response.status_code
        if 200 <= status < 300:
            return
        is_json, code, _ = _error(response)
        if not is_json and response.content.strip():
            # An HTML page from Salesforce's edge (maintenance, proxy): transient.
            raise AdapterUnavailable(
                f"Salesforce answered {status} with a page that is not JSON",
                retry_after=self.retry_after(response),
            )
        if code == "MALFORMED_ID":
            raise RecordNotFound("Salesforce says the id is not a record id")
        if status == 403 and code != "REQUEST_LIMIT_EXCEEDED":
            raise AdapterAuthError(f"Salesforce refused the request (403 {code or 'no code'})")
        if status == 400:
            # INVALID_FIELD (a misspelt external_id_field), MALFORMED_QUERY, ...
            raise AdapterUnavailable(f"Salesforce refused the request (400 {code or 'no code'})")
        super().raise_for_status(response)

    def _note_usage(self, response: httpx.Response) -> None:
        found = _API_USAGE.search(response.headers.get("sforce-limit-info", ""))
        if found is not None:
            self.api_usage = (int(found.group(1)), int(found.group(2)))


def _record(data: object) -> dict[str, Any]:
    if not isinstance(data, dict):
        raise AdapterUnavailable("Salesforce answered with something that is not a record")
    return data


def _flag(value: object) -> bool:
    # Read generously: a do-not-call flag missed is a call that must not happen.
    return value is True or (isinstance(value, str) and value.strip().lower() == "true")


def _phones(record: Mapping[str, Any], fields: tuple[tuple[str, str], ...]) -> list[CrmPhone]:
    phones = []
    for name, label in fields:
        value = record.get(name)
        if isinstance(value, str) and value.strip():
            phones.append(CrmPhone(value.strip(), label, primary=name == "Phone"))
    return phones


def _error(response: httpx.Response) -> tuple[bool, str | None, str]:
    """(whether the body is JSON, its first `errorCode`, its first `message`).

    Salesforce's error bodies are arrays: `[{"message": ..., "errorCode": ...}]`.
    The code is kept only if it looks like one, as it may end up in a log.
    """
    try:
        body = json.loads(response.content)
    except ValueError:
        return False, None, ""
    first = body[0] if isinstance(body, list) and body else body
    if not isinstance(first, dict):
        return True, None, ""
    code = first.get("errorCode")
    message = first.get("message")
    return (
        True,
        code if isinstance(code, str) and _ERROR_CODE.fullmatch(code) else None,
        message if isinstance(message, str) else "",
    )


@hookimpl
def register_adapters(register: AdapterRegister) -> None:
    register(SalesforceAdapter)
