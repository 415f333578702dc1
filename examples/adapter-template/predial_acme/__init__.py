"""predial adapter for Acme CRM — the template to copy for your own CRM.

Acme answers `GET /v2/contacts/{id}` with
`{"contact": {"id", "phones": [{"number", "type", "is_primary"}], "do_not_call", "deleted"}}`
and wants `X-Api-Key: <token>`. Everything else (timeouts, retries on 429/5xx,
`Retry-After`, OAuth, a rate budget, safe ids, no secrets in logs) comes from
`HttpAdapter`.
"""

from __future__ import annotations

from typing import ClassVar

from predial import AdapterRegister, CrmContact, CrmPhone, hookimpl
from predial.adapters.http import HttpAdapter

__all__ = ["AcmeAdapter", "register_adapters"]


class AcmeAdapter(HttpAdapter):
    """Acme contacts by id. Settings: `token`, `base_url`, `timeout`, `rate_limit`."""

    # What campaigns write as their `adapter`: the one place the name is written
    # (the tests take it from here).
    name = "acme"
    default_base_url = "https://api.acme-crm.example"
    rate_limit: ClassVar[tuple[int, float] | None] = (50, 1.0)  # Acme's documented limit

    def auth_headers(self) -> dict[str, str]:
        # Acme takes its API key in a header of its own, not as a bearer token.
        return {"X-Api-Key": self._token} if self._token else super().auth_headers()

    async def fetch_phone(self, external_id: str) -> CrmContact:
        # get_json puts the id in one percent-encoded path segment and maps errors:
        # 404 → RecordNotFound, 401/403 → AdapterAuthError, 429/5xx → AdapterUnavailable.
        data = await self.get_json("/v2/contacts/{}", external_id)
        contact = data.get("contact") or {}
        phones = [
            CrmPhone(phone.get("number"), phone.get("type"), bool(phone.get("is_primary")))
            for phone in contact.get("phones") or []
            if phone.get("number")
        ]
        return CrmContact(
            phones=phones,
            do_not_call=bool(contact.get("do_not_call")),
            state="deleted" if contact.get("deleted") else "active",
        )


@hookimpl
def register_adapters(register: AdapterRegister) -> None:
    register(AcmeAdapter)
