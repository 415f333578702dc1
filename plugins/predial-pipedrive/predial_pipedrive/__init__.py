"""predial adapter for Pipedrive (persons, API v2).

```toml
[[campaigns]]
id = "q3-outbound"
adapter = "pipedrive"
[campaigns.settings]
token = "${PIPEDRIVE_TOKEN}"     # a personal API token, or OAuth below
```

Reads `GET /api/v2/persons/{id}`: the person's `phones` list (`value`, `label`,
`primary`), and optionally up to 15 custom phone-type fields
(`custom_phone_fields`). The `primary: true` phone is tried first. A person
marked `is_deleted` (Pipedrive keeps it 30 days) is not dialled. Person ids are
positive integers; anything else is refused without a request.
"""

from __future__ import annotations

import math
import re
import time
from collections.abc import Iterator, Mapping, Sequence
from typing import Any, ClassVar

import httpx

from predial import AdapterRegister, ContactState, CrmContact, CrmPhone, RecordNotFound, hookimpl
from predial.adapters.http import HttpAdapter, RateLimitScope

__all__ = [
    "MAX_CUSTOM_FIELDS",
    "PERSON_PATH",
    "TOKEN_BUDGET_HEADER",
    "PipedriveAdapter",
    "register_adapters",
]

__version__ = "0.1.0"

PERSON_PATH = "/api/v2/persons/{}"
#: Pipedrive's limit on the `custom_fields` parameter.
MAX_CUSTOM_FIELDS = 15
#: What is left of the company's daily token budget; "0" on a 429 means the budget,
#: not the 2-second burst window, is spent.
TOKEN_BUDGET_HEADER = "x-daily-ratelimit-token-remaining"

# Canonical decimal only: no sign, no leading zero, no whitespace, ASCII digits
# (`\d` would let "４２" through), at most a signed 64-bit integer.
_PERSON_ID = re.compile(r"[1-9][0-9]{0,18}")
_MAX_PERSON_ID = 2**63 - 1
# Custom-field keys are 40-character hashes; the set is kept wider than that but
# without `,` (the parameter's separator) or anything else that needs encoding.
_FIELD_KEY = re.compile(r"[A-Za-z0-9_]{1,64}")
# A reset value this large is a Unix time, not a number of seconds to wait.
_EPOCH_THRESHOLD = 1e9


class PipedriveAdapter(HttpAdapter):
    """Pipedrive persons by id.

    Settings: `token` (an API token, sent as `x-api-token`) or `client_id` /
    `client_secret` / `refresh_token` (OAuth; without `base_url`, the token
    answer's `api_domain` is used), `custom_phone_fields` (up to 15
    custom-field keys of phone type), `base_url` (default
    `https://api.pipedrive.com`; `https://<company>.pipedrive.com` works too),
    `timeout`, `rate_limit` (default `[20, 2]`, the smallest plan's burst limit
    per 2-second window), `token_url`, `refresh_token_file`.
    """

    name = "pipedrive"
    default_base_url = "https://api.pipedrive.com"
    token_url = "https://oauth.pipedrive.com/oauth/token"
    # Pipedrive's token endpoint takes the app's credentials as HTTP Basic.
    token_client_auth = "basic"
    # The lowest plan's per-token burst allowance: a busy dialer fails fast on its
    # own budget instead of collecting 429s (Pipedrive blocks API-token clients
    # that keep sending after them). Raise it to the account's plan.
    rate_limit: ClassVar[tuple[int, float] | None] = (20, 2.0)

    def __init__(
        self, *, custom_phone_fields: Sequence[str] | None = None, **settings: Any
    ) -> None:
        # Checked before the base builds its HTTP clients, so a refused configuration
        # leaves nothing open.
        oauth = any(settings.get(key) for key in ("client_id", "client_secret", "refresh_token"))
        if oauth and settings.get("token"):
            raise ValueError(
                "set either `token` (an API token) or OAuth (`client_id`, `client_secret`, "
                "`refresh_token`), not both"
            )
        # With OAuth and no base_url, the token answer's api_domain says where the
        # company's API lives (Pipedrive requires OAuth apps to use it).
        self._follow_api_domain = oauth and not settings.get("base_url")
        self.custom_phone_fields = _field_keys(custom_phone_fields)
        super().__init__(**settings)

    def on_token(self, answer: Mapping[str, Any]) -> None:
        domain = answer.get("api_domain")
        if self._follow_api_domain and isinstance(domain, str) and domain:
            self.use_base_url(domain)

    async def fetch_phone(self, external_id: str) -> CrmContact:
        person_id = _person_id(external_id)
        params = None
        if self.custom_phone_fields:
            params = {"custom_fields": ",".join(self.custom_phone_fields)}
        body = await self.get_json(PERSON_PATH, person_id, params=params)
        return self._contact(body)

    def _contact(self, body: object) -> CrmContact:
        data = body.get("data") if isinstance(body, Mapping) else None
        if not isinstance(data, Mapping):
            # A 200 without a person (`"data": null`): nothing there to dial.
            raise RecordNotFound("Pipedrive answered without a person")
        phones = [
            CrmPhone(value, _label(entry.get("label")), primary=entry.get("primary") is True)
            for entry in data.get("phones") or []
            if isinstance(entry, Mapping)
            for value in _values(entry.get("value"))
        ]
        custom = data.get("custom_fields")
        if self.custom_phone_fields and isinstance(custom, Mapping):
            # Labelled with the field's key, so `predial check` shows where a number
            # came from; they rank after the person's own phones.
            phones.extend(
                CrmPhone(value, key)
                for key in self.custom_phone_fields
                for value in _values(custom.get(key))
            )
        # Deleted persons stay readable for 30 days, flagged; they must not be dialled.
        state: ContactState = "deleted" if data.get("is_deleted") is True else "active"
        return CrmContact(phones=phones, state=state)

    # -- Pipedrive's credentials and limits -------------------------------------------

    def auth_headers(self) -> dict[str, str]:
        if self._token:
            # Pipedrive's header for API tokens; the `api_token` query parameter would
            # put the token in every proxy's and server's access log.
            return {"x-api-token": self._token}
        return super().auth_headers()

    def rate_limit_scope(self, response: httpx.Response) -> RateLimitScope | None:
        scope = super().rate_limit_scope(response)
        if scope == "burst" and response.headers.get(TOKEN_BUDGET_HEADER, "").strip() == "0":
            return "daily"
        return scope

    def retry_after(self, response: httpx.Response) -> float | None:
        stated = super().retry_after(response)
        if self.rate_limit_scope(response) == "daily":
            # The budget comes back at the start of the next day. A short Retry-After
            # on a budget 429 is the burst window's, and waiting it out would only
            # spend more calls on refusals: probe no sooner than the cooldown.
            return max(stated or 0.0, self.quota_cooldown)
        if stated is not None or response.status_code != 429:
            # x-ratelimit-reset describes the burst window: no word on 5xx recovery.
            return stated
        return _reset_seconds(response.headers.get("x-ratelimit-reset"))


def _person_id(external_id: object) -> str:
    text = str(external_id)
    if not _PERSON_ID.fullmatch(text) or int(text) > _MAX_PERSON_ID:
        # Not sent: Pipedrive would refuse it anyway, and a malformed id is never a
        # way to another path. The id itself is left out of the message (it may be
        # long, or not meant for logs).
        raise RecordNotFound("a Pipedrive person id is a positive integer")
    return text


def _field_keys(keys: Sequence[str] | None) -> tuple[str, ...]:
    if keys is None:
        return ()
    if isinstance(keys, str) or not isinstance(keys, Sequence):
        raise ValueError("custom_phone_fields must be a list of custom-field keys")
    unique = tuple(dict.fromkeys(keys))
    if len(unique) > MAX_CUSTOM_FIELDS:
        raise ValueError(
            f"custom_phone_fields: Pipedrive returns at most {MAX_CUSTOM_FIELDS} custom "
            f"fields per request, not {len(unique)}"
        )
    for key in unique:
        if not isinstance(key, str) or not _FIELD_KEY.fullmatch(key):
            raise ValueError(
                f"custom_phone_fields: {key!r} is not a Pipedrive custom-field key "
                "(letters, digits and _, as in the field's 40-character key)"
            )
    return unique


def _values(raw: object) -> Iterator[str]:
    """The non-empty phone strings in a phone's or custom field's value."""
    if isinstance(raw, str):
        text = raw.strip()
        if text:
            yield text
    elif isinstance(raw, int) and not isinstance(raw, bool):
        # A number typed into a numeric field; it still goes through the phone policy.
        yield str(raw)
    elif isinstance(raw, Mapping):
        # Custom-field values may come wrapped: {"value": ...}.
        yield from _values(raw.get("value"))
    elif isinstance(raw, list):
        for item in raw:
            yield from _values(item)


def _label(raw: object) -> str | None:
    if isinstance(raw, str) and raw.strip():
        return raw.strip()
    return None


def _reset_seconds(value: str | None) -> float | None:
    """`x-ratelimit-reset` as seconds to wait.

    Pipedrive documents it as the time left in the 2-second burst window
    (`x-ratelimit-reset: 2`). A value that can only be a Unix time is read as one.
    """
    if not value:
        return None
    try:
        seconds = float(value.strip())
    except ValueError:
        return None
    if not math.isfinite(seconds):
        return None
    if seconds > _EPOCH_THRESHOLD:
        seconds -= time.time()
    return max(0.0, seconds)


@hookimpl
def register_adapters(register: AdapterRegister) -> None:
    register(PipedriveAdapter)
