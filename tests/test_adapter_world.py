"""Adapters see a normal asyncio world: their own task, context, timeouts, httpx."""

from __future__ import annotations

import asyncio
import contextvars
import json
from collections.abc import AsyncIterator

import httpx
import pytest
from conftest import VALID_US, Script, make_resolver

from predial import AdapterUnavailable, Lead, Unresolvable

LEAD = Lead(campaign_id="cmp", external_id="ext-1")
REQUEST_ID: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="none")


@pytest.fixture
async def crm_server() -> AsyncIterator[str]:
    """A tiny HTTP server on 127.0.0.1 answering every GET with a contact's phone."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while (await reader.readline()) not in (b"\r\n", b""):
            pass
        body = json.dumps({"phone": "(202) 456-1111"}).encode()
        writer.write(
            b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n"
            + f"content-length: {len(body)}\r\n\r\n".encode()
            + body
        )
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    async with server:
        yield f"http://127.0.0.1:{port}"


async def test_httpx_adapter_resolves(crm_server: str) -> None:
    """A plain httpx adapter works (anyio cancel scopes need the fetch's own task)."""
    client = httpx.AsyncClient(base_url=crm_server)

    async def fetch(external_id: str) -> str:
        response = await client.get(f"/contacts/{external_id}")
        return str(response.json()["phone"])

    async with make_resolver(Script()) as resolver:
        resolver.campaigns["cmp"].adapter.fetch_phone = fetch
        results = await asyncio.gather(*(resolver.resolve(LEAD) for _ in range(5)))
        again = await resolver.resolve(Lead(campaign_id="cmp", external_id="ext-2"))
    await client.aclose()
    assert {r.phone_number for r in results} == {VALID_US}
    assert again.source == "crm"


async def test_adapter_own_timeout_is_its_own() -> None:
    """asyncio.timeout inside an adapter fires in the fetch, not in the caller."""

    async def fetch(external_id: str) -> str:
        try:
            async with asyncio.timeout(0.02):
                await asyncio.sleep(1)
        except TimeoutError:
            raise AdapterUnavailable("CRM slow") from None
        return VALID_US

    async with make_resolver(Script(), deadline=1) as resolver:
        resolver.campaigns["cmp"].adapter.fetch_phone = fetch
        with pytest.raises(Unresolvable) as caught:
            await resolver.resolve(LEAD)
        await asyncio.sleep(0.05)  # the caller's own task was not cancelled on the way
        assert asyncio.current_task().cancelling() == 0
    assert caught.value.reason == "unavailable"


async def test_adapter_task_group_errors_reach_the_resolver() -> None:
    """An adapter fanning out in a TaskGroup: its failure is an outcome, not a cancellation."""

    async def fetch(external_id: str) -> str:
        async def lookup() -> None:
            raise AdapterUnavailable("shard down")

        try:
            async with asyncio.TaskGroup() as group:
                group.create_task(lookup())
        except* AdapterUnavailable:
            raise AdapterUnavailable("shard down") from None
        return VALID_US

    async with make_resolver(Script()) as resolver:
        resolver.campaigns["cmp"].adapter.fetch_phone = fetch
        with pytest.raises(Unresolvable) as caught:
            await resolver.resolve(LEAD)
    assert caught.value.reason == "unavailable"


async def test_adapter_context_variables_stay_in_the_fetch() -> None:
    """What an adapter sets in a ContextVar does not leak into the dialer's context."""

    async def fetch(external_id: str) -> str:
        token = REQUEST_ID.set("adapter")
        await asyncio.sleep(0)
        REQUEST_ID.reset(token)
        REQUEST_ID.set("adapter-leftover")
        return VALID_US

    async with make_resolver(Script()) as resolver:
        resolver.campaigns["cmp"].adapter.fetch_phone = fetch
        await resolver.resolve(LEAD)
    assert REQUEST_ID.get() == "none"
