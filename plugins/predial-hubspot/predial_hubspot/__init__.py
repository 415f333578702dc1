"""predial adapter for HubSpot CRM (v3 contacts API).

```toml
[[campaigns]]
id = "spring-renewals"
adapter = "hubspot"
[campaigns.settings]
token = "${HUBSPOT_TOKEN}"       # a private-app token, or OAuth below
```

Asks only for `phone`, `mobilephone` and `hs_calculated_phone_number`. The
calculated number (E.164, derived by HubSpot from `phone`) is tried first, then
`phone` as typed, then `mobilephone`. Archived contacts are not dialled; a merged
contact's id answers with the surviving record, which is dialled. `fetch_phones`
reads up to 100 contacts per call (`POST .../batch/read`) for `Resolver.warm`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

import httpx

from predial import AdapterRegister, CrmContact, CrmPhone, RecordNotFound, hookimpl
from predial.adapters.http import HttpAdapter, RateLimitScope

__all__ = ["PHONE_PROPERTIES", "HubSpotAdapter", "register_adapters"]

__version__ = "0.1.0"

#: The only properties requested: a contact has hundreds, a dial needs three.
PHONE_PROPERTIES = ("phone", "mobilephone", "hs_calculated_phone_number")


class HubSpotAdapter(HttpAdapter):
    """HubSpot contacts by record id, or by a unique property (`id_property`).

    Settings: `token` (private app) or `client_id` / `client_secret` /
    `refresh_token` (OAuth; access tokens live 30 minutes and are refreshed ahead
    of expiry), `id_property` (e.g. `"email"` or a custom unique property),
    `base_url`, `timeout`, `rate_limit` (default `[100, 10]`, the Free/Starter
    burst limit; Professional and Enterprise apps get `[190, 10]`).
    """

    name = "hubspot"
    default_base_url = "https://api.hubapi.com"
    token_url = "/oauth/v1/token"
    rate_limit: ClassVar[tuple[int, float] | None] = (100, 10.0)
    #: HubSpot's batch read takes at most 100 inputs.
    batch_size = 100

    def __init__(self, *, id_property: str | None = None, **settings: Any) -> None:
        super().__init__(**settings)
        if id_property is not None and not id_property.strip():
            raise ValueError("id_property must name a unique HubSpot property, or be left out")
        self.id_property = id_property

    async def fetch_phone(self, external_id: str) -> CrmContact:
        params: list[tuple[str, str]] = [("properties", name) for name in PHONE_PROPERTIES]
        if self.id_property:
            params.append(("idProperty", self.id_property))
        data = await self.get_json("/crm/v3/objects/contacts/{}", external_id, params=params)
        return self._contact(data, external_id)

    async def fetch_phones(
        self, external_ids: Sequence[str]
    ) -> dict[str, CrmContact | RecordNotFound]:
        """Up to `batch_size` contacts in one call; ids HubSpot says it does not have
        are `RecordNotFound`, others it leaves out are for single reads."""
        properties = list(PHONE_PROPERTIES)
        body: dict[str, Any] = {
            "inputs": [{"id": str(external_id)} for external_id in external_ids],
            "properties": properties,
            "propertiesWithHistory": [],
        }
        if self.id_property:
            body["idProperty"] = self.id_property
            # Asked for so each result can be matched to the value it was read by.
            properties.append(self.id_property)
        data = await self.post_json("/crm/v3/objects/contacts/batch/read", body=body)
        wanted = set(external_ids)
        answers: dict[str, CrmContact | RecordNotFound] = {}
        # A 207 lists the ids HubSpot does not have; a merged-away id is answered
        # under its survivor's id, so it is left out and the resolver asks it alone.
        for error in data.get("errors") or []:
            if error.get("category") == "OBJECT_NOT_FOUND":
                for missing in (error.get("context") or {}).get("ids") or []:
                    if str(missing) in wanted:
                        answers[str(missing)] = RecordNotFound("not in HubSpot")
        for record in data.get("results") or []:
            key = self._key(record)
            if key in wanted:
                answers[key] = self._contact(record, key)
        return answers

    def _key(self, record: Mapping[str, Any]) -> str:
        if self.id_property:
            return str((record.get("properties") or {}).get(self.id_property) or "")
        return str(record.get("id") or "")

    def _contact(self, data: Mapping[str, Any], asked_for: str) -> CrmContact:
        properties = data.get("properties") or {}
        calculated = _text(properties.get("hs_calculated_phone_number"))
        typed = _text(properties.get("phone"))
        mobile = _text(properties.get("mobilephone"))
        phones = []
        if calculated:
            phones.append(CrmPhone(calculated, "main", primary=True))
        if typed:
            phones.append(CrmPhone(typed, "main", primary=not calculated))
        if mobile:
            phones.append(CrmPhone(mobile, "mobile"))
        if data.get("archived"):
            return CrmContact(phones=phones, state="archived")
        # A merged-away id answers with the surviving contact, under its own id.
        merged = not self.id_property and str(data.get("id", asked_for)) != asked_for
        return CrmContact(phones=phones, state="merged" if merged else "active")

    def rate_limit_scope(self, response: httpx.Response) -> RateLimitScope | None:
        scope = super().rate_limit_scope(response)
        if scope is None:
            return None
        # The daily-remaining header is not sent on OAuth calls: the body says which.
        try:
            policy = response.json().get("policyName")
        except (ValueError, AttributeError):
            return scope
        return "daily" if policy == "DAILY" else scope


def _text(value: object) -> str | None:
    if value is None:
        return None
    text = str(value).strip()
    return text or None


@hookimpl
def register_adapters(register: AdapterRegister) -> None:
    register(HubSpotAdapter)
