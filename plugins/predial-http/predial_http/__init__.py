"""predial's declarative adapter: an in-house CRM described in `predial.toml` alone.

```toml
[[campaigns]]
id = "branch-callbacks"
adapter = "http"
default_region = "US"

[campaigns.settings]
base_url = "https://crm.internal.example"
path = "/api/v1/people/{id}"            # {id}: one percent-encoded path segment
token = "${INHOUSE_CRM_TOKEN}"
do_not_call = "person.flags.dnc"        # JMESPath expressions into the JSON answer
deleted = "person.deleted_at"

[[campaigns.settings.phones]]
path = "person.phones"                  # a list of objects ...
value = "number"                        # ... each with its number,
label = "kind"                          # its label,
primary = "preferred"                   # and whether it is the primary one

[[campaigns.settings.phones]]
path = "person.mobile"                  # or one field holding one number
label = "mobile"
```

Paths are JMESPath (https://jmespath.org), so nested objects, list indexes and
filters (`phones[?type=='cell'].number`) need no code. Auth: a bearer token by
default, any header (`auth_header = "X-Api-Key"`, `auth_scheme = ""`), Basic
(`username`/`password`), or OAuth2 (`client_id`, `client_secret`, optional
`refresh_token`, `token_url`). Everything else — timeouts, retries on 429/5xx,
`Retry-After`, the rate budget, the size cap, safe ids — comes from
`predial.adapters.http.HttpAdapter`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, Literal

import httpx
import jmespath
import jmespath.exceptions
import jmespath.parser
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from predial import AdapterRegister, CrmContact, CrmPhone, RecordNotFound, hookimpl
from predial.adapters.http import HttpAdapter

__all__ = ["HttpSettings", "JsonHttpAdapter", "PhoneField", "register_adapters"]

__version__ = "0.1.0"

ID = "{id}"
#: RFC 9110 token characters: what a header name may hold.
HEADER_NAME = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")


def _expression(text: str) -> jmespath.parser.ParsedResult:
    try:
        return jmespath.compile(text)
    except jmespath.exceptions.JMESPathError as error:
        message = str(error).splitlines()[0]
        raise ValueError(f"{text!r} is not a JMESPath expression: {message}") from None


class PhoneField(BaseModel):
    """Where one phone (or a list of phones) is in the CRM's answer.

    `path` leads to a string (one number) or a list. For a list of objects,
    `value`, `label` and `primary` are expressions inside each item; for a list of
    strings, each string is a number. `label` is otherwise a fixed label, and
    `primary` a fixed flag.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    path: str
    value: str | None = None
    label: str | None = None
    primary: bool | str = False

    @field_validator("path", "value")
    @classmethod
    def _compiles(cls, text: str | None) -> str | None:
        if text is not None:
            _expression(text)
        return text

    @model_validator(mode="after")
    def _item_expressions(self) -> PhoneField:
        if isinstance(self.primary, str):
            _expression(self.primary)
        if self.value is not None and self.label is not None:
            _expression(self.label)  # inside list items the label is an expression too
        return self


class HttpSettings(BaseModel):
    """The CRM-specific settings of the `http` adapter, checked when predial starts."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    path: str = Field(description="the record's URL path on base_url, with {id} once")
    query: dict[str, str] = Field(default_factory=dict)
    headers: dict[str, str] = Field(default_factory=dict)
    auth_header: str = "Authorization"
    auth_scheme: str = "Bearer"
    phones: list[PhoneField] = Field(min_length=1)
    do_not_call: str | None = None
    deleted: str | None = None
    not_found: list[int] = Field(default_factory=lambda: [404, 410])
    method: Literal["GET"] = "GET"

    @field_validator("path")
    @classmethod
    def _path(cls, path: str) -> str:
        if not path.startswith("/"):
            raise ValueError("path must start with '/', e.g. '/api/people/{id}'")
        if "?" in path or "#" in path:
            raise ValueError("put query parameters in `query`, not in path")
        return path

    @field_validator("do_not_call", "deleted")
    @classmethod
    def _compiles(cls, text: str | None) -> str | None:
        if text is not None:
            _expression(text)
        return text

    @field_validator("auth_header")
    @classmethod
    def _header_name(cls, name: str) -> str:
        if not HEADER_NAME.fullmatch(name):
            raise ValueError(f"{name!r} is not an HTTP header name")
        return name

    @field_validator("headers")
    @classmethod
    def _no_credentials_in_headers(cls, headers: dict[str, str]) -> dict[str, str]:
        for name, value in headers.items():
            if not HEADER_NAME.fullmatch(name):
                raise ValueError(f"{name!r} is not an HTTP header name")
            if name.lower() in ("authorization", "cookie", "proxy-authorization"):
                raise ValueError(f"header {name!r}: credentials go in `token` (see auth_header)")
            if "\r" in value or "\n" in value or "\r" in name or "\n" in name:
                raise ValueError(f"header {name!r}: no line breaks")
        return headers

    @model_validator(mode="after")
    def _one_id(self) -> HttpSettings:
        places = self.path.count(ID) + sum(value.count(ID) for value in self.query.values())
        if places != 1:
            raise ValueError(
                f"{{id}} must appear exactly once, in `path` or in one `query` value "
                f"(found {places})"
            )
        for not_found in self.not_found:
            if not 400 <= not_found < 500:
                raise ValueError(f"not_found: {not_found} is not a 4xx status")
        rest = self.path.replace(ID, "")
        if "{" in rest or "}" in rest:
            raise ValueError("path: {id} is the only placeholder")
        return self


class JsonHttpAdapter(HttpAdapter):
    """A CRM that answers a GET with JSON, described by settings (see the module)."""

    name = "http"

    def __init__(
        self,
        *,
        path: str,
        phones: list[Mapping[str, Any]],
        query: Mapping[str, str] | None = None,
        headers: Mapping[str, str] | None = None,
        auth_header: str = "Authorization",
        auth_scheme: str = "Bearer",
        do_not_call: str | None = None,
        deleted: str | None = None,
        not_found: list[int] | None = None,
        **settings: Any,
    ) -> None:
        options: dict[str, Any] = {
            "path": path,
            "phones": phones,
            "query": dict(query or {}),
            "headers": dict(headers or {}),
            "auth_header": auth_header,
            "auth_scheme": auth_scheme,
            "do_not_call": do_not_call,
            "deleted": deleted,
        }
        if not_found is not None:
            options["not_found"] = not_found
        # A pydantic ValidationError names the setting; predial adds the campaign.
        self.settings = HttpSettings.model_validate(options)
        if "base_url" not in settings:
            raise ValueError("base_url: the CRM's address, e.g. 'https://crm.internal.example'")
        super().__init__(**settings)
        self._template = self.settings.path.replace(ID, "{}")
        self._id_in_path = ID in self.settings.path
        self._phones = [
            (
                _expression(field.path),
                _expression(field.value) if field.value else None,
                field,
            )
            for field in self.settings.phones
        ]
        self._dnc = _expression(do_not_call) if do_not_call else None
        self._deleted = _expression(deleted) if deleted else None

    def auth_headers(self) -> dict[str, str]:
        headers = dict(self.settings.headers)
        if self._token:
            scheme = self.settings.auth_scheme
            headers[self.settings.auth_header] = (
                f"{scheme} {self._token}" if scheme else self._token
            )
            return headers
        return {**headers, **super().auth_headers()}

    async def fetch_phone(self, external_id: str) -> CrmContact:
        query = {
            key: value.replace(ID, external_id) if ID in value else value
            for key, value in self.settings.query.items()
        }
        if self._id_in_path:
            data = await self.get_json(self._template, external_id, params=query or None)
        else:
            data = await self.get_json(self._template, params=query)
        if data is None:
            raise RecordNotFound("the CRM answered null")
        phones: list[CrmPhone] = []
        for path, value, field in self._phones:
            phones.extend(_phones(path.search(data), value, field))
        state: Literal["active", "deleted"] = (
            "deleted"
            if self._deleted is not None and _truthy(self._deleted.search(data))
            else "active"
        )
        dnc = self._dnc is not None and _truthy(self._dnc.search(data))
        return CrmContact(phones=phones, do_not_call=dnc, state=state)

    def raise_for_status(self, response: httpx.Response) -> None:
        if response.status_code in self.settings.not_found:
            raise RecordNotFound(f"the CRM has no such record ({response.status_code})")
        super().raise_for_status(response)


def _truthy(value: object) -> bool:
    if isinstance(value, str):
        return value.strip().lower() not in ("", "0", "false", "no", "off", "null")
    return bool(value)


def _phones(
    found: object, value: jmespath.parser.ParsedResult | None, field: PhoneField
) -> list[CrmPhone]:
    if found is None:
        return []
    items = found if isinstance(found, list) else [found]
    phones = []
    for item in items:
        if value is not None:
            if not isinstance(item, Mapping):
                continue
            number = value.search(item)
            label = jmespath.search(field.label, item) if field.label else None
            primary = (
                _truthy(jmespath.search(field.primary, item))
                if isinstance(field.primary, str)
                else field.primary
            )
        else:
            number, label, primary = item, field.label, bool(field.primary)
        if isinstance(number, (str, int)) and not isinstance(number, bool) and str(number).strip():
            phones.append(
                CrmPhone(str(number).strip(), str(label) if label is not None else None, primary)
            )
    return phones


@hookimpl
def register_adapters(register: AdapterRegister) -> None:
    register(JsonHttpAdapter)
