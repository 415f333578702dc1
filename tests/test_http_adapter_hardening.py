"""The HTTP base against hostile or unlucky servers: framing tricks, compression bombs,
absurd Retry-After values, OAuth refreshes cut off or raced by another adapter."""

from __future__ import annotations

import asyncio
import gzip
import math
import tracemalloc
import zlib
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

from predial import AdapterAuthError, AdapterRateLimited, AdapterUnavailable, Campaign
from predial._http import MAX_RETRY_AFTER, retry_after_seconds
from predial._tenants import Tenants
from predial.adapters.http import HttpAdapter, environment_proxy
from predial.testing import FakeOAuth

Writer = Callable[[asyncio.StreamWriter], Awaitable[None]]


class Raw(HttpAdapter):
    name = "raw"
    max_response_bytes = 100_000

    async def fetch_phone(self, external_id: str) -> Any:
        return await self.get_json("/c/{}", external_id)


@asynccontextmanager
async def raw_server(write: Writer) -> AsyncIterator[str]:
    """A bare HTTP/1.1 server on 127.0.0.1 whose answers are written byte by byte."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await reader.readuntil(b"\r\n\r\n")
            await write(writer)
            await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError):
            pass  # the client hung up on a body it refused: expected here
        finally:
            writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.close()
        await server.wait_closed()


def answer(body: bytes, *headers: str) -> Writer:
    async def write(writer: asyncio.StreamWriter) -> None:
        head = "\r\n".join(("HTTP/1.1 200 OK", *headers, f"Content-Length: {len(body)}"))
        writer.write(head.encode() + b"\r\n\r\n" + body)

    return write


@pytest.mark.parametrize(
    ("framing", "words"),
    [
        (b"Transfer-Encoding: chunked", "exceeds 100000 bytes"),
        # Both framings at once: refused outright (RFC 9112 6.1: a sign of response
        # splitting), never read by either.
        (b"Content-Length: 10\r\nTransfer-Encoding: chunked", r"\(RemoteProtocolError\)"),
    ],
    ids=["chunked", "declared-length-and-chunked"],
)
async def test_a_chunked_answer_is_counted_not_trusted(framing: bytes, words: str) -> None:
    """A chunked body is counted as it comes and cut off at the cap; a Content-Length
    beside it does not make the body trusted."""

    async def write(writer: asyncio.StreamWriter) -> None:
        writer.write(b"HTTP/1.1 200 OK\r\n" + framing + b"\r\n\r\n")
        chunk = b"x" * 65_536
        for _ in range(40):  # 2.6 MB, far over the cap
            writer.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
            await writer.drain()
        writer.write(b"0\r\n\r\n")

    async with raw_server(write) as url:
        adapter = Raw(base_url=url)
        try:
            with pytest.raises(AdapterUnavailable, match=words):
                await adapter.fetch_phone("1")
        finally:
            await adapter.aclose()


async def test_a_gzip_bomb_is_refused_without_ballooning() -> None:
    bomb = gzip.compress(b"\0" * 50_000_000, 9)  # 49 KB on the wire

    async with raw_server(answer(bomb, "Content-Encoding: gzip")) as url:
        adapter = Raw(base_url=url)
        tracemalloc.start()
        try:
            with pytest.raises(AdapterUnavailable, match="exceeds"):
                await adapter.fetch_phone("1")
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
            await adapter.aclose()
        assert peak < 5_000_000  # the cap is 100 KB; 50 MB were never produced


@pytest.mark.parametrize(
    ("encoding", "encode"),
    [
        ("gzip", gzip.compress),
        ("deflate", zlib.compress),  # the zlib container, as RFC 9110 means it
        ("deflate", lambda data: zlib.compress(data)[2:-4]),  # raw deflate, as some send it
    ],
)
async def test_compressed_answers_are_decoded(
    encoding: str, encode: Callable[[bytes], bytes]
) -> None:
    async with raw_server(
        answer(encode(b'{"phone": "+12024561111"}'), f"Content-Encoding: {encoding}")
    ) as url:
        adapter = Raw(base_url=url)
        assert await adapter.fetch_phone("1") == {"phone": "+12024561111"}
        await adapter.aclose()


@pytest.mark.parametrize(
    ("headers", "words"),
    [
        (("Content-Encoding: br",), "unsupported encoding 'br'"),
        (("Content-Encoding: gzip",), "not valid gzip"),
    ],
)
async def test_bad_encodings_are_unavailable(headers: tuple[str, ...], words: str) -> None:
    async with raw_server(answer(b"definitely not compressed", *headers)) as url:
        adapter = Raw(base_url=url)
        with pytest.raises(AdapterUnavailable, match=words):
            await adapter.fetch_phone("1")
        await adapter.aclose()


async def test_compression_is_not_asked_for() -> None:
    seen: list[httpx.Request] = []

    def record(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json={})

    adapter = Raw(base_url="http://127.0.0.1:1", transport=httpx.MockTransport(record))
    await adapter.fetch_phone("1")
    assert seen[0].headers["accept-encoding"] == "identity"
    await adapter.aclose()


async def test_deeply_nested_json_is_unavailable_not_a_crash() -> None:
    async with raw_server(answer(b"[" * 50_000)) as url:
        adapter = Raw(base_url=url)
        with pytest.raises(AdapterUnavailable, match="not JSON"):
            await adapter.fetch_phone("1")
        await adapter.aclose()


@pytest.mark.parametrize("value", ["inf", "1e12", "NaN", "-5"])
def test_absurd_retry_after_values_are_clamped(value: str) -> None:
    seconds = retry_after_seconds(value)
    assert seconds is None or (math.isfinite(seconds) and 0 <= seconds <= MAX_RETRY_AFTER)


async def test_an_infinite_retry_after_does_not_pause_the_adapter_for_ever() -> None:
    def daily(request: httpx.Request) -> httpx.Response:
        return httpx.Response(
            429, headers={"Retry-After": "inf", "X-RateLimit-Daily-Remaining": "0"}
        )

    adapter = Raw(base_url="http://127.0.0.1:1", transport=httpx.MockTransport(daily))
    with pytest.raises(AdapterRateLimited) as raised:
        await adapter.fetch_phone("1")
    assert raised.value.retry_after == MAX_RETRY_AFTER
    await adapter.aclose()


# -- OAuth --------------------------------------------------------------------------------


def crm_with(oauth: FakeOAuth, token_delay: float = 0.0) -> httpx.AsyncBaseTransport:
    """A CRM whose token endpoint is `oauth` (answering after `token_delay`, having
    already committed the refresh) and whose data answers need a valid access token."""

    class Transport(httpx.AsyncBaseTransport):
        async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
            await request.aread()
            if request.url.path == "/oauth/token":
                response = oauth.handle(request)
                await asyncio.sleep(token_delay)
                return response
            bearer = request.headers.get("authorization", "").removeprefix("Bearer ")
            if not oauth.valid(bearer):
                return httpx.Response(401, json={"error": "invalid_token"})
            return httpx.Response(200, json={"phone": "+12024561111"})

    return Transport()


def oauth_settings(**extra: Any) -> dict[str, Any]:
    return {
        "base_url": "http://127.0.0.1:1",
        "client_id": "cid",
        "client_secret": "cs",
        "refresh_token": "refresh-0",
        **extra,
    }


async def test_tokens_shorter_than_the_leeway_do_not_cause_a_refresh_storm() -> None:
    oauth = FakeOAuth("cid", "cs", "refresh-0", expires_in=10)  # below the 30 s leeway
    adapter = Raw(**oauth_settings(), transport=crm_with(oauth))
    await asyncio.gather(*(adapter.fetch_phone(str(i)) for i in range(50)))
    assert oauth.refreshes == 1
    await adapter.aclose()


async def test_a_caller_cut_off_mid_refresh_does_not_lose_the_rotated_token(tmp_path: Path) -> None:
    oauth = FakeOAuth("cid", "cs", "refresh-0", rotate=True)
    store = tmp_path / "refresh"
    adapter = Raw(**oauth_settings(refresh_token_file=str(store)), transport=crm_with(oauth, 0.3))
    with pytest.raises(TimeoutError):
        async with asyncio.timeout(0.1):  # the resolver's deadline, shorter than the refresh
            await adapter.fetch_phone("1")
    async with asyncio.timeout(5.0):  # the refresh finishes in the background
        while not store.exists():  # noqa: ASYNC110 - a file the refresh task writes
            await asyncio.sleep(0.01)
    assert store.read_text() == oauth.refresh_token == "refresh-1"
    assert await adapter.fetch_phone("1") == {"phone": "+12024561111"}
    assert oauth.refreshes == 1
    await adapter.aclose()


async def test_adapters_sharing_a_token_file_follow_each_others_rotations(tmp_path: Path) -> None:
    oauth = FakeOAuth("cid", "cs", "refresh-0", rotate=True)
    settings = oauth_settings(refresh_token_file=str(tmp_path / "refresh"))
    first, second = (
        Raw(**settings, transport=crm_with(oauth)),
        Raw(**settings, transport=crm_with(oauth)),
    )
    for _ in range(3):
        await first.fetch_phone("1")
        oauth.expire_all()
        await second.fetch_phone("1")  # refreshes with the token the first one stored
        oauth.expire_all()
    assert (tmp_path / "refresh").read_text() == oauth.refresh_token == "refresh-6"
    await first.aclose()
    await second.aclose()


async def test_a_newly_configured_token_wins_over_a_stale_stored_one(tmp_path: Path) -> None:
    """After the app is authorised again, the stored token is retired: the configured
    one is tried next (one more token call, not a loop)."""
    store = tmp_path / "refresh"
    store.write_text("refresh-retired")
    oauth = FakeOAuth("cid", "cs", "refresh-new")
    adapter = Raw(
        **oauth_settings(refresh_token="refresh-new", refresh_token_file=str(store)),
        transport=crm_with(oauth),
    )
    assert await adapter.fetch_phone("1") == {"phone": "+12024561111"}
    assert oauth.refreshes == 1  # the retired token's attempt was refused
    await adapter.aclose()


async def test_all_candidates_refused_is_one_auth_error_per_candidate_then_none() -> None:
    oauth = FakeOAuth("cid", "cs", "refresh-0")
    oauth.revoke()
    seen: list[str] = []

    crm = crm_with(oauth)

    class Counting(httpx.AsyncBaseTransport):
        async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
            seen.append(request.url.path)
            return await crm.handle_async_request(request)

    adapter = Raw(**oauth_settings(), transport=Counting())
    for _ in range(5):
        with pytest.raises(AdapterAuthError):
            await adapter.fetch_phone("1")
    assert seen == ["/oauth/token"]
    await adapter.aclose()


async def test_campaigns_naming_one_tenant_share_its_budget_and_pause() -> None:
    sent: list[str] = []

    def crm(request: httpx.Request) -> httpx.Response:
        sent.append(request.url.path)
        if len(sent) == 4:
            return httpx.Response(
                429, headers={"X-RateLimit-Daily-Remaining": "0", "Retry-After": "60"}
            )
        return httpx.Response(200, json={})

    def pair(tenant: str | None) -> list[Raw]:
        adapters = [
            Raw(
                base_url="http://127.0.0.1:1",
                rate_limit=[2, 60],
                tenant=tenant,
                transport=httpx.MockTransport(crm),
            )
            for _ in range(2)
        ]
        tenants = Tenants()  # as a resolver hands it to its campaigns' adapters
        for index, adapter in enumerate(adapters):
            adapter.join_tenants(tenants, Campaign(f"campaign-{index}", "raw"))
        return adapters

    first, second = pair("acme-account")
    await first.fetch_phone("1")
    await second.fetch_phone("1")
    with pytest.raises(AdapterRateLimited, match="budget"):  # the shared budget of 2 is spent
        await first.fetch_phone("1")
    # Without a tenant, each campaign has its own budget (and its own pause).
    third, fourth = pair(None)
    await third.fetch_phone("1")
    with pytest.raises(AdapterRateLimited, match="daily"):
        await third.fetch_phone("1")  # the CRM says the daily quota is spent
    assert (await fourth.fetch_phone("1")) == {}
    for adapter in (first, second, third, fourth):
        await adapter.aclose()


async def test_the_environment_proxy_is_used_as_an_async_client_would(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    seen: list[bytes] = []

    async def proxy(writer: asyncio.StreamWriter) -> None:
        await answer(b'{"via": "proxy"}')(writer)

    async def recording(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        seen.append(await reader.readuntil(b"\r\n\r\n"))
        await proxy(writer)
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(recording, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    monkeypatch.setenv("HTTP_PROXY", f"http://127.0.0.1:{port}")
    monkeypatch.setenv("NO_PROXY", "")
    adapter = Raw(base_url="http://crm.example.invalid")
    assert await adapter.fetch_phone("1") == {"via": "proxy"}
    assert seen[0].startswith(b"GET http://crm.example.invalid/c/1 ")  # absolute form: a proxy
    await adapter.aclose()
    monkeypatch.setenv("NO_PROXY", "crm.example.invalid")
    assert environment_proxy("http://crm.example.invalid") is None
    assert environment_proxy("http://other.example.invalid") == f"http://127.0.0.1:{port}"
    server.close()
    await server.wait_closed()


def small_window_zlib(data: bytes) -> bytes:
    compressor = zlib.compressobj(wbits=9)  # its header starts with 0x18, not "x"
    return compressor.compress(data) + compressor.flush()


@pytest.mark.parametrize(
    ("encoding", "body", "words"),
    [
        ("deflate", small_window_zlib(b'{"a": 1}'), None),
        ("gzip", gzip.compress(b'{"phone": "+12024561111"}')[:-12], "cut"),
    ],
    ids=["small-window-zlib", "truncated-gzip"],
)
async def test_zlib_variants_and_truncation(encoding: str, body: bytes, words: str | None) -> None:
    async with raw_server(answer(body, f"Content-Encoding: {encoding}")) as url:
        adapter = Raw(base_url=url)
        if words is None:
            assert await adapter.fetch_phone("1") == {"a": 1}
        else:
            with pytest.raises(AdapterUnavailable, match=words):
                await adapter.fetch_phone("1")
        await adapter.aclose()


async def test_two_adapters_refreshing_at_once_through_one_file_both_succeed(
    tmp_path: Path,
) -> None:
    oauth = FakeOAuth("cid", "cs", "refresh-0", rotate=True)
    settings = oauth_settings(refresh_token_file=str(tmp_path / "refresh"))
    first, second = (
        Raw(**settings, transport=crm_with(oauth, 0.05)),
        Raw(**settings, transport=crm_with(oauth, 0.05)),
    )
    results = await asyncio.gather(
        first.fetch_phone("1"), second.fetch_phone("1"), return_exceptions=True
    )
    assert (
        list(results) == [{"phone": "+12024561111"}] * 2
    )  # the loser re-read the file and retried
    assert (tmp_path / "refresh").read_text() == oauth.refresh_token
    await first.aclose()
    await second.aclose()


async def test_a_token_kept_only_in_the_file_is_used(tmp_path: Path) -> None:
    store = tmp_path / "refresh"
    store.write_text("refresh-7")
    oauth = FakeOAuth("cid", "cs", "refresh-7")
    settings = {**oauth_settings(refresh_token_file=str(store)), "refresh_token": None}
    adapter = Raw(**settings, transport=crm_with(oauth))
    assert await adapter.fetch_phone("1") == {"phone": "+12024561111"}
    await adapter.aclose()


async def test_a_finished_refresh_is_not_reused_after_the_token_expires() -> None:
    """An eager task can finish before it is stored: a done task must not be joined."""
    oauth = FakeOAuth("cid", "cs", "refresh-0", expires_in=3600)
    adapter = Raw(**oauth_settings(), transport=crm_with(oauth))
    await adapter.fetch_phone("1")
    oauth.expire_all()
    assert adapter.oauth is not None
    adapter.oauth._expires_at = 0.0  # as if an hour had passed
    assert await adapter.fetch_phone("1") == {"phone": "+12024561111"}
    assert oauth.refreshes == 2
    await adapter.aclose()


async def test_a_rotated_refresh_token_is_kept_even_when_the_answer_is_refused(
    tmp_path: Path,
) -> None:
    """An answer whose API address is refused still retired the old refresh token."""

    class Strict(Raw):
        def on_token(self, answer: Any) -> None:
            self.use_base_url(answer.get("api_domain", ""))

    oauth = FakeOAuth("cid", "cs", "refresh-0", rotate=True, extra={"api_domain": "ftp://nope"})
    store = tmp_path / "refresh"
    adapter = Strict(**oauth_settings(refresh_token_file=str(store)), transport=crm_with(oauth))
    with pytest.raises(AdapterUnavailable, match="unusable API address"):
        await adapter.fetch_phone("1")
    assert store.read_text() == oauth.refresh_token == "refresh-1"
    await adapter.aclose()


async def test_refreshes_sharing_a_file_wait_for_each_other(tmp_path: Path) -> None:
    """One adapter's refresh is slow to answer; another's would be refused at once for
    sending the token the first just retired. With the file's lock the second waits,
    then sends the newest token."""
    oauth = FakeOAuth("cid", "cs", "refresh-0", rotate=True)
    settings = oauth_settings(refresh_token_file=str(tmp_path / "refresh"))
    slow = Raw(**settings, transport=crm_with(oauth, 0.3))
    fast = Raw(**settings, transport=crm_with(oauth))
    first = asyncio.create_task(slow.fetch_phone("1"))
    await asyncio.sleep(0.05)  # the slow refresh has retired refresh-0 by now
    assert await fast.fetch_phone("1") == {"phone": "+12024561111"}
    assert await first == {"phone": "+12024561111"}
    assert oauth.refreshes == 2  # one each: no refused attempt
    assert (tmp_path / "refresh").read_text() == oauth.refresh_token == "refresh-2"
    await slow.aclose()
    await fast.aclose()


async def test_a_token_answer_is_read_under_a_cap() -> None:
    """A token endpoint that streams without end is cut off, not read into memory."""

    class Endless(httpx.AsyncByteStream):
        async def __aiter__(self) -> AsyncIterator[bytes]:
            while True:
                yield b" " * 65_536

    def answer(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, stream=Endless())

    adapter = Raw(**oauth_settings(), transport=httpx.MockTransport(answer))
    with pytest.raises(AdapterUnavailable, match="token endpoint's answer exceeds 65536 bytes"):
        await adapter.fetch_phone("1")
    await adapter.aclose()


async def test_a_new_api_address_is_proxied_as_its_own_host_would_be(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """`use_base_url` (Salesforce's instance_url) looks the proxy up again: NO_PROXY
    may cover the first host and not the second."""
    seen: list[bytes] = []

    async def recording(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        seen.append(await reader.readuntil(b"\r\n\r\n"))
        await answer(b'{"via": "proxy"}')(writer)
        await writer.drain()
        writer.close()

    proxy = await asyncio.start_server(recording, "127.0.0.1", 0)
    monkeypatch.setenv("HTTP_PROXY", f"http://127.0.0.1:{proxy.sockets[0].getsockname()[1]}")
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    try:
        async with raw_server(answer(b'{"via": "direct"}')) as direct_url:
            adapter = Raw(base_url=direct_url)
            try:
                assert await adapter.fetch_phone("1") == {"via": "direct"}
                adapter.use_base_url(direct_url.replace("127.0.0.1", "localhost"))
                assert await adapter.fetch_phone("1") == {"via": "proxy"}
                assert seen[0].startswith(b"GET http://localhost:")  # absolute form: a proxy
            finally:
                await adapter.aclose()
    finally:
        proxy.close()
        await proxy.wait_closed()


@pytest.mark.parametrize("in_process", [True, False], ids=["mock-transport", "socket"])
async def test_a_compressed_token_answer_is_decoded_once(in_process: bool) -> None:
    """A token endpoint that gzips although asked not to: decoded once, then used."""
    token = gzip.compress(b'{"access_token": "a1", "expires_in": 3600}')

    def handle(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/oauth/token":
            return httpx.Response(200, content=token, headers={"Content-Encoding": "gzip"})
        return httpx.Response(200, json={"phone": "+12024561111"})

    if in_process:
        adapter = Raw(**oauth_settings(), transport=httpx.MockTransport(handle))
        try:
            assert await adapter.fetch_phone("1") == {"phone": "+12024561111"}
        finally:
            await adapter.aclose()
        return

    async def token_then_data(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        if head.startswith(b"POST /oauth/token"):
            length = head.lower().split(b"content-length:")[1].split(b"\r\n")[0]
            await reader.readexactly(int(length))
            await answer(token, "Content-Encoding: gzip")(writer)
        else:
            await answer(b'{"phone": "+12024561111"}')(writer)
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(token_then_data, "127.0.0.1", 0)
    url = f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"
    adapter = Raw(**{**oauth_settings(), "base_url": url})
    try:
        assert await adapter.fetch_phone("1") == {"phone": "+12024561111"}
    finally:
        await adapter.aclose()
        server.close()
        await server.wait_closed()


async def test_a_token_file_that_cannot_be_locked_is_refreshed_unlocked(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """A read-only folder (a secret mount): the lock cannot be made, the refresh goes
    ahead as it would without a shared file, and the operator is told once."""
    import filelock

    async def refused(self: object, *args: object, **kwargs: object) -> None:
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(filelock.AsyncFileLock, "acquire", refused)
    oauth = FakeOAuth("cid", "cs", "refresh-0")
    store = tmp_path / "refresh"
    adapter = Raw(**oauth_settings(refresh_token_file=str(store)), transport=crm_with(oauth))
    try:
        assert await adapter.fetch_phone("1") == {"phone": "+12024561111"}
        oauth.expire_all()
        assert await adapter.fetch_phone("1") == {"phone": "+12024561111"}
    finally:
        await adapter.aclose()
    assert oauth.refreshes == 2
    warnings = [r for r in caplog.records if "cannot lock" in r.getMessage()]
    assert len(warnings) == 1


async def test_closing_waits_for_a_refresh_under_way(tmp_path: Path) -> None:
    """A lookup cut off mid-refresh, then the adapter closed at once: the refresh is
    let finish, so the token the CRM rotated is stored, not lost with the client."""
    oauth = FakeOAuth("cid", "cs", "refresh-0", rotate=True)
    store = tmp_path / "refresh"
    adapter = Raw(**oauth_settings(refresh_token_file=str(store)), transport=crm_with(oauth, 0.3))
    with pytest.raises(TimeoutError):
        async with asyncio.timeout(0.05):
            await adapter.fetch_phone("1")
    await adapter.aclose()
    assert store.read_text() == oauth.refresh_token == "refresh-1"
