"""predial adapter for GoHighLevel / LeadConnector (contacts API, `Version: 2021-07-28`).

```toml
[[campaigns]]
id = "ghl-callbacks"
adapter = "gohighlevel"
[campaigns.settings]
token = "${GHL_TOKEN}"       # a Private Integration Token (pit-...), or OAuth below
```

One request per lead: `GET /contacts/{contactId}` with the `Version` header the API
requires. The contact's `phone` is the primary number; `additionalPhones`, when
GoHighLevel sends them, follow it. A contact with `dnd: true` (do not disturb on
every channel) or with `dndSettings.Call.status` `"active"` or `"permanent"` is
returned as do-not-call, so neither it nor the lead's stored number is dialled.

GoHighLevel documents no 404 for an unknown contact, only 400, 401 and 422: a 404,
or a 400 whose message says the contact was not found, is `RecordNotFound`; any
other 400 or 422 is an error (the request was refused, not the contact missing).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any, ClassVar

import httpx

from predial import (
    AdapterRegister,
    AdapterUnavailable,
    CrmContact,
    CrmPhone,
    RecordNotFound,
    hookimpl,
)
from predial.adapters.http import HttpAdapter

__all__ = [
    "API_VERSION",
    "DND_CALL_STATUSES",
    "GoHighLevelAdapter",
    "contact_from",
    "register_adapters",
]

__version__ = "0.1.0"

#: The only value the spec allows for the `Version` header of the contacts API.
API_VERSION = "2021-07-28"
#: `dndSettings.Call.status` values that forbid a call (the spec's enum also has
#: "inactive", which allows it).
DND_CALL_STATUSES = frozenset({"active", "permanent"})
#: The label given to `additionalPhones` entries that carry none of their own.
ADDITIONAL_LABEL = "additional"


class GoHighLevelAdapter(HttpAdapter):
    """GoHighLevel contacts by contact id.

    Settings: `token` (a Private Integration Token `pit-...` or a sub-account access
    token) or `client_id` / `client_secret` / `refresh_token` (OAuth; GoHighLevel
    issues a new refresh token on every refresh, so set `refresh_token_file` too),
    `base_url`, `timeout`, `rate_limit` (default `[100, 10]`, GoHighLevel's burst
    limit per app and sub-account).
    """

    name = "gohighlevel"
    default_base_url = "https://services.leadconnectorhq.com"
    token_url = "/oauth/token"
    #: Contacts belong to a sub-account: only a Location token may read them.
    token_params: ClassVar[Mapping[str, str]] = {"user_type": "Location"}
    rate_limit: ClassVar[tuple[int, float] | None] = (100, 10.0)

    async def fetch_phone(self, external_id: str) -> CrmContact:
        data = await self.get_json("/contacts/{}", external_id)
        if not isinstance(data, Mapping):
            raise AdapterUnavailable("GoHighLevel answered 200 with a body that is not an object")
        contact = data.get("contact")
        if not isinstance(contact, Mapping):
            # An answer with no contact in it has nothing to dial: the same as a
            # missing record, not an outage to retry.
            raise RecordNotFound("GoHighLevel answered without a contact")
        return contact_from(contact)

    def auth_headers(self) -> dict[str, str]:
        # Sent with every API request (not to the token endpoint, which takes no
        # Version): the spec marks the header required and GoHighLevel answers 400
        # without it.
        return {**super().auth_headers(), "Version": API_VERSION}

    def raise_for_status(self, response: httpx.Response) -> None:
        if response.status_code == 400 and _says_contact_not_found(response):
            raise RecordNotFound("GoHighLevel has no such contact (400)")
        super().raise_for_status(response)

    def retry_after(self, response: httpx.Response) -> float | None:
        """`Retry-After` if sent; for a burst 429 without it, the length of
        GoHighLevel's window (`X-RateLimit-Interval-Milliseconds`), the longest a
        caller can have to wait for it to reopen."""
        told = super().retry_after(response)
        if told is not None or response.status_code != 429:
            return told
        if self.rate_limit_scope(response) != "burst":
            # A spent daily quota is not back after one burst window: the base
            # waits `quota_cooldown` instead.
            return None
        try:
            milliseconds = float(response.headers.get("x-ratelimit-interval-milliseconds", ""))
        except ValueError:
            return None
        # A window of more than an hour is no burst window: do not trust it.
        if not 0 < milliseconds <= 3_600_000:
            return None
        return milliseconds / 1000


def contact_from(contact: Mapping[str, Any]) -> CrmContact:
    """A `CrmContact` from GoHighLevel's contact object (`GetContectByIdSchema`)."""
    phones: list[CrmPhone] = []
    seen: set[str] = set()
    main = _text(contact.get("phone"))
    if main is not None:
        phones.append(CrmPhone(main, "main", primary=True))
        seen.add(main)
    extra = contact.get("additionalPhones")
    if isinstance(extra, list):
        for item in extra:
            # The SDK types them as strings; objects with a `phone` (and maybe a
            # `phoneLabel`) are read too, since the field is not in the spec.
            value: object = item
            label = ADDITIONAL_LABEL
            if isinstance(item, Mapping):
                value = item.get("phone")
                label = _text(item.get("phoneLabel")) or ADDITIONAL_LABEL
            text = _text(value)
            if text is not None and text not in seen:
                phones.append(CrmPhone(text, label))
                seen.add(text)
    return CrmContact(phones=phones, do_not_call=_do_not_call(contact))


def _do_not_call(contact: Mapping[str, Any]) -> bool:
    # `dnd` is do-not-disturb on every channel; `dndSettings.Call` is calls alone.
    # Either one forbidding calls is enough.
    if contact.get("dnd") is True:
        return True
    settings = contact.get("dndSettings")
    call = settings.get("Call") if isinstance(settings, Mapping) else None
    status = call.get("status") if isinstance(call, Mapping) else None
    return isinstance(status, str) and status.strip().lower() in DND_CALL_STATUSES


def _says_contact_not_found(response: httpx.Response) -> bool:
    """Whether a 400 is GoHighLevel saying the contact does not exist.

    Only a message naming the contact counts: "Version header was not found" is
    also a 400 with "not found" in it, and is a broken request, not a missing lead.
    """
    try:
        body = json.loads(response.content)
    except ValueError:
        return False
    message = body.get("message") if isinstance(body, Mapping) else None
    if isinstance(message, list):
        message = " ".join(str(part) for part in message)
    if not isinstance(message, str):
        return False
    text = message.lower()
    return "contact" in text and ("not found" in text or "does not exist" in text)


def _text(value: object) -> str | None:
    # The spec types phone numbers as strings; anything else is not a number.
    if not isinstance(value, str):
        return None
    text = value.strip()
    return text or None


@hookimpl
def register_adapters(register: AdapterRegister) -> None:
    register(GoHighLevelAdapter)
