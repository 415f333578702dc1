"""`FakeAcme`: Acme's contacts endpoint as its documentation describes it, for tests."""

from __future__ import annotations

from typing import Any
from urllib.parse import unquote

import httpx

from predial.testing import FakeCrm, json_response

__all__ = ["FakeAcme"]

PREFIX = "/v2/contacts/"


class FakeAcme(FakeCrm):
    auth_header = "x-api-key"
    auth_prefix = ""

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self.contacts: dict[str, dict[str, Any]] = {}

    def add(self, contact_id: str, *phones: tuple[str, str, bool], **flags: Any) -> None:
        self.contacts[contact_id] = {
            "id": contact_id,
            "phones": [
                {"number": number, "type": kind, "is_primary": primary}
                for number, kind, primary in phones
            ],
            **flags,
        }

    def unauthorized(self) -> httpx.Response:
        return json_response(401, {"error": {"code": "unauthorized", "message": "bad API key"}})

    def route(self, request: httpx.Request) -> httpx.Response:
        raw_path = request.url.raw_path.decode("ascii").split("?")[0]
        segment = raw_path.removeprefix(PREFIX)
        if request.method != "GET" or not raw_path.startswith(PREFIX) or "/" in segment:
            return json_response(404, {"error": {"code": "no_route", "message": "no such path"}})
        contact = self.contacts.get(unquote(segment))
        if contact is None:
            return json_response(404, {"error": {"code": "not_found", "message": "no contact"}})
        return json_response(200, {"contact": contact})
