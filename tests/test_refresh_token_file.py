"""A refresh-token file whose lock cannot be made (a read-only folder): what was said
about it belongs to the file's store, not to the process."""

from __future__ import annotations

import logging
from pathlib import Path

import filelock
import httpx
import pytest
from conftest import VALID_US

from predial.adapters.http import HttpAdapter
from predial.testing import FakeOAuth


class Crm(HttpAdapter):
    name = "crm"
    default_base_url = "http://127.0.0.1:9"  # never connected: the transport answers

    async def fetch_phone(self, external_id: str) -> str:
        data = await self.get_json("/contacts/{}", external_id)
        return str(data["phone"])


async def test_an_unlockable_token_file_is_told_once_per_store(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """Each adapter keeping a token file in a folder that cannot take a lock says so
    once, however often it refreshes: no process-wide memory hides the second."""

    async def refused(self: object, *args: object, **kwargs: object) -> None:
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(filelock.AsyncFileLock, "acquire", refused)
    caplog.set_level(logging.WARNING)
    oauth = FakeOAuth("cid", "cs", "refresh-0")

    def crm(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/oauth/token":
            return oauth.handle(request)
        if not oauth.valid(request.headers["authorization"].removeprefix("Bearer ")):
            return httpx.Response(401)
        return httpx.Response(200, json={"phone": VALID_US})

    settings = {
        "client_id": "cid",
        "client_secret": "cs",
        "refresh_token": "refresh-0",
        "refresh_token_file": str(tmp_path / "refresh"),
        "transport": httpx.MockTransport(crm),
    }
    for _ in range(2):  # two adapters of one process, one after the other
        adapter = Crm(**settings)
        try:
            for _ in range(2):
                assert await adapter.fetch_phone("1") == VALID_US
                oauth.expire_all()
        finally:
            await adapter.aclose()
    assert oauth.refreshes == 4
    warnings = [r for r in caplog.records if "cannot lock" in r.getMessage()]
    assert len(warnings) == 2
