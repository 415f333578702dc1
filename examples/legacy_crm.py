"""A custom adapter for an in-house CRM, loaded from predial.toml (`resolver.plugins`).

The bundled example points it at 127.0.0.1:9, where nothing listens, to show what a
dialer gets while a CRM is unreachable: the stored number when the lead has one,
else a "retry later" refusal.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any
from urllib.parse import quote

import httpx

import predial


class LegacyCrmAdapter:
    """GET {base_url}/contacts/{id} -> {"phones": [{"number", "type", "primary"}], "dnc": bool}."""

    name = "legacy-crm"

    def __init__(self, base_url: str, timeout: float = 1.0) -> None:
        self.client = httpx.AsyncClient(base_url=base_url, timeout=timeout)

    async def fetch_phone(self, external_id: str) -> predial.CrmContact:
        # One percent-encoded path segment: an id like "../admin" cannot change the target.
        path = f"/contacts/{quote(external_id, safe='')}"
        try:
            response = await self.client.get(path)
        except httpx.TransportError as error:
            raise predial.AdapterUnavailable(
                f"legacy CRM unreachable ({type(error).__name__})"
            ) from error
        if response.status_code == 404:
            raise predial.RecordNotFound(external_id)
        if response.status_code in (401, 403):
            raise predial.AdapterAuthError(f"legacy CRM refused us ({response.status_code})")
        if response.status_code == 429 or response.status_code >= 500:
            retry_after = response.headers.get("retry-after")
            raise predial.AdapterUnavailable(
                f"legacy CRM answered {response.status_code}",
                retry_after=float(retry_after) if retry_after and retry_after.isdigit() else None,
            )
        record = response.json()
        return predial.CrmContact(
            phones=[
                predial.CrmPhone(phone.get("number"), phone.get("type"), bool(phone.get("primary")))
                for phone in record.get("phones", [])
            ],
            do_not_call=bool(record.get("dnc")),
        )

    async def aclose(self) -> None:
        await self.client.aclose()


@predial.hookimpl
def register_adapters(register: Callable[[type[Any]], None]) -> None:
    register(LegacyCrmAdapter)
