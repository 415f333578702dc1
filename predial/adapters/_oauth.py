"""OAuth2 for HTTP adapters: access tokens with expiry, one refresh at a time, and
refresh tokens that rotate.

GoHighLevel issues a new refresh token on every refresh and retires the old one at
once; Salesforce can be set up to. So a refresh runs as one task that every waiting
lookup joins through `asyncio.shield` (a lookup cut off at its deadline must not
lose a token the CRM has already rotated), the newest refresh token is persisted
before anything else is done with the answer, and a store shared by several
adapters or processes is read again before each refresh.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import math
import os
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path
from typing import Any, Literal
from urllib.parse import quote

import filelock
import httpx

from .._faults import retrieve_exception
from .._http import retry_after_seconds
from .._redaction import register_secret
from ..errors import AdapterAuthError, AdapterUnavailable
from ._transport import Deadline, body_chunks, decode_body, read_capped, unframed

__all__ = [
    "REFRESH_LOCK_TIMEOUT",
    "TOKEN_ANSWER_BYTES",
    "OAuth2",
    "RefreshHook",
    "RefreshTokenFile",
    "persisting",
]

RefreshHook = Callable[[str], Awaitable[None] | None]

log = logging.getLogger(__name__)

#: The most a token endpoint's answer may hold (they are a few hundred bytes).
TOKEN_ANSWER_BYTES = 64 * 1024
#: How long a refresh waits for another process's refresh of the same token file.
REFRESH_LOCK_TIMEOUT = 120.0


class RefreshTokenFile:
    """Keeps a rotated OAuth refresh token in a file, so a restart uses the newest one.

    GoHighLevel issues a new refresh token on every refresh and retires the old one;
    Salesforce can be set up to. Written atomically (a temporary file, then a rename)
    with mode 0600, so a crash never leaves half a token behind.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        # Whether the lock file could not be made (a read-only folder) and the
        # operator was told: once per store, not at every refresh.
        self._unlockable_told = False

    def __repr__(self) -> str:
        return f"RefreshTokenFile({str(self.path)!r})"

    def lock(self) -> AbstractAsyncContextManager[object]:
        """Held while one adapter refreshes, so adapters and processes sharing the
        file refresh one after another: each then sends the newest refresh token,
        never one that another has just retired (a file lock, `<file>.lock`)."""
        return self._refresh_lock()

    @asynccontextmanager
    async def _refresh_lock(self) -> AsyncIterator[None]:
        path = self.path.with_name(self.path.name + ".lock")
        lock = filelock.AsyncFileLock(path, timeout=REFRESH_LOCK_TIMEOUT, mode=0o600)
        try:
            await lock.acquire()
        except filelock.Timeout:
            raise AdapterUnavailable(
                "another refresh of the token file has held its lock for "
                f"{REFRESH_LOCK_TIMEOUT:.0f} s"
            ) from None
        except OSError as error:
            # A folder this process may read but not write (a read-only secret
            # mount): the refresh goes ahead unlocked, as it would with no file to
            # share. Tried again at the next refresh: the mount may have been fixed.
            if not self._unlockable_told:
                self._unlockable_told = True
                log.warning(
                    "cannot lock %s (%s): refreshes through it are not serialised across processes",
                    path,
                    type(error).__name__,
                )
            yield
            return
        try:
            yield
        finally:
            await lock.release()

    def read(self) -> str | None:
        try:
            token = self.path.read_text(encoding="utf-8").strip()
        except FileNotFoundError:
            return None
        return token or None

    def write(self, token: str) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        handle, temporary = tempfile.mkstemp(dir=self.path.parent, prefix=".refresh-")
        try:
            with os.fdopen(handle, "w", encoding="utf-8") as file:
                file.write(token)
                file.flush()
                os.fsync(file.fileno())
            os.chmod(temporary, 0o600)
            os.replace(temporary, self.path)
        except BaseException:
            Path(temporary).unlink(missing_ok=True)
            raise


class OAuth2:
    """OAuth2 access tokens with expiry tracking and one refresh at a time.

    `refresh_token` set: the refresh-token grant (rotated tokens are kept and handed
    to `on_refresh_token` to persist); else the client-credentials grant.
    `load_refresh_token` reads the newest stored refresh token before each refresh,
    so another adapter or process that rotated it does not leave this one holding a
    retired token; `refresh_lock` (`RefreshTokenFile.lock`) is held during each
    refresh, so they never rotate it at the same moment. `request_timeout` bounds
    each token request as a whole, its answer read included (the client's own
    timeouts apply to each read on its own, which a trickling endpoint never trips).
    """

    def __init__(
        self,
        token_url: str,
        client_id: str,
        client_secret: str,
        refresh_token: str | None = None,
        on_refresh_token: RefreshHook | None = None,
        scope: str | None = None,
        extra_params: Mapping[str, str] | None = None,
        client_auth: Literal["body", "basic"] = "body",
        leeway: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
        load_refresh_token: Callable[[], str | None] | None = None,
        on_token: Callable[[Mapping[str, Any]], None] | None = None,
        refresh_lock: Callable[[], AbstractAsyncContextManager[object]] | None = None,
        request_timeout: float = 5.0,
    ) -> None:
        if not 0 < request_timeout < math.inf:  # NaN compares false
            raise ValueError("request_timeout must be a finite number of seconds > 0")
        self.token_url = token_url
        self._on_token = on_token
        self._client_id = client_id
        self._client_secret = client_secret
        self._configured_refresh_token = refresh_token
        self._refresh_token = refresh_token
        self._on_refresh_token = on_refresh_token
        self._warned_unkept = False
        self._load_refresh_token = load_refresh_token
        self._refresh_lock = refresh_lock
        self._scope = scope
        self._extra_params = dict(extra_params or {})
        self._client_auth = client_auth
        self._leeway = leeway
        self._request_timeout = float(request_timeout)
        self._clock = clock
        self._access_token: str | None = None
        self._expires_at = 0.0
        self._refreshing: asyncio.Task[str] | None = None
        self._revoked: str | None = None
        self._refused: set[str] = set()
        # Configured without any refresh token: the client-credentials grant, always
        # (a refresh token the endpoint may hand out anyway is not switched to).
        self._client_credentials = refresh_token is None and load_refresh_token is None
        self.refreshes = 0

    def __repr__(self) -> str:
        return f"OAuth2(token_url={self.token_url!r}, client_id=<hidden>)"

    def _valid(self) -> bool:
        return self._access_token is not None and self._clock() < self._expires_at

    async def token(self, client: httpx.AsyncClient, stale: str | None = None) -> str:
        """A valid access token; refreshed (once, however many callers wait) when
        missing, expiring, or equal to `stale` (the one a 401 just refused)."""
        if self._revoked is not None and not self._new_token_stored():
            raise AdapterAuthError(self._revoked)
        current = self._access_token
        if current is not None and current != stale and self._valid():
            return current
        loop = asyncio.get_running_loop()
        task = self._refreshing
        # A refresh under way on this loop is joined; a finished one (an eager task
        # can finish before it is stored) or one on another loop is not.
        if task is None or task.done() or task.get_loop() is not loop:
            task = loop.create_task(self._refresh_once(client))
            # Read the outcome even when every waiter was cancelled: no "exception
            # never retrieved" noise.
            task.add_done_callback(retrieve_exception)
            self._refreshing = task
        # Shielded: a caller cancelled at its deadline leaves the refresh running, so
        # a refresh token the CRM has already rotated is still kept and persisted.
        return await asyncio.shield(task)

    async def _refresh_once(self, client: httpx.AsyncClient) -> str:
        try:
            if self._refresh_lock is None:
                await self._refresh(client)
            else:
                before = self._access_token
                async with self._refresh_lock():
                    # Refreshed meanwhile by this object on another event loop: done.
                    if not (self._valid() and self._access_token != before):
                        await self._refresh(client)
            assert self._access_token is not None
            return self._access_token
        finally:
            if self._refreshing is asyncio.current_task():
                self._refreshing = None

    async def aclose(self, grace: float = 5.0) -> None:
        """Let a refresh under way on this loop finish (up to `grace` seconds), so a
        refresh token the CRM has just rotated is kept before the client closes."""
        task = self._refreshing
        if task is None or task.done() or task.get_loop() is not asyncio.get_running_loop():
            return
        try:
            async with asyncio.timeout(grace):
                await asyncio.shield(task)
        except TimeoutError:
            log.warning("an OAuth refresh still running after %.0f s was abandoned", grace)
            task.cancel()
        except Exception as error:  # the refresh's callers have been told
            log.debug("the OAuth refresh ended with %s", type(error).__name__)

    def _new_token_stored(self) -> bool:
        """Whether the store holds a refresh token not yet refused: another adapter
        or process rotated it, or an operator put a new one there. Revocation is
        then lifted and the stored token tried."""
        if self._load_refresh_token is None:
            return False
        stored = self._load_refresh_token()
        if stored is None or stored in self._refused:
            return False
        self._revoked = None
        return True

    def _candidates(self) -> list[str | None]:
        """Refresh tokens to try, newest first: the stored one (another process may
        have rotated it), the one in memory, the configured one (after the app was
        authorised again, the stored one is stale)."""
        if self._client_credentials:
            return [None]
        stored = self._load_refresh_token() if self._load_refresh_token else None
        register_secret(stored)  # read back from its file: as secret as a configured one
        ordered = [stored, self._refresh_token, self._configured_refresh_token]
        tokens = [token for token in dict.fromkeys(ordered) if token and token not in self._refused]
        # Nothing left to try: ask with the newest anyway, so the refusal is the CRM's.
        return list(tokens) or [next((t for t in ordered if t), None)]

    async def _refresh(self, client: httpx.AsyncClient) -> None:
        refused = 0
        # A second pass only if the store changed meanwhile: another adapter or
        # process sharing it won a race to rotate the token this one just sent.
        for _ in range(2):
            for refresh_token in self._candidates():
                response = await self._ask(client, refresh_token)
                if response.status_code in (400, 401, 403):
                    refused = response.status_code
                    if refresh_token is not None:
                        self._refused.add(refresh_token)
                    continue  # invalid_grant: a retired token; try the next candidate
                await self._accept(response, refresh_token)
                return
            if not self._new_token_stored():
                break
        # Every grant was refused: the credentials are revoked or wrong. Remembered,
        # so lookups fail at once instead of hammering the token endpoint.
        self._revoked = f"OAuth token refresh refused ({refused})"
        raise AdapterAuthError(self._revoked)

    async def _ask(self, client: httpx.AsyncClient, refresh_token: str | None) -> httpx.Response:
        form: dict[str, str] = {}
        headers: dict[str, str] = {}
        if self._client_auth == "basic":
            # RFC 6749 §2.3.1: the client's credentials in a Basic header.
            pair = f"{quote(self._client_id, safe='')}:{quote(self._client_secret, safe='')}"
            headers["Authorization"] = "Basic " + base64.b64encode(pair.encode()).decode()
        else:
            form.update(client_id=self._client_id, client_secret=self._client_secret)
        if refresh_token is not None:
            form.update(grant_type="refresh_token", refresh_token=refresh_token)
        else:
            form["grant_type"] = "client_credentials"
        if self._scope:
            form["scope"] = self._scope
        form.update(self._extra_params)
        # Not compressed, and read under a cap: a token answer is a few hundred bytes,
        # and the endpoint is as untrusted as any other answer.
        headers["Accept-Encoding"] = "identity"
        self.refreshes += 1
        # The whole request is bounded, not each read: the refresh is shielded from
        # the lookups waiting on it and may hold the token file's lock, so an
        # endpoint trickling its answer would hold up every lookup of the adapter
        # (and other processes' refreshes) for as long as it kept trickling.
        raw: httpx.Response | None = None
        try:
            with Deadline(self._request_timeout, "the token endpoint did not answer in time"):
                try:
                    request = client.build_request(
                        "POST", self.token_url, data=form, headers=headers
                    )
                    # What `client.stream` does, with the close below, out of the bound.
                    raw = await client.send(request, stream=True)
                    if raw.is_stream_consumed:  # built in-process (a mock transport): decoded
                        content = raw.content
                        if len(content) > TOKEN_ANSWER_BYTES:
                            raise AdapterUnavailable(f"exceeds {TOKEN_ANSWER_BYTES} bytes")
                    else:
                        content = await read_capped(body_chunks(raw), TOKEN_ANSWER_BYTES)
                        encoding = raw.headers.get("content-encoding", "identity")
                        content = decode_body(content, encoding, TOKEN_ANSWER_BYTES)
                except httpx.HTTPError as error:
                    raise AdapterUnavailable(
                        f"token endpoint unreachable ({type(error).__name__})"
                    ) from None
                except AdapterUnavailable as error:
                    reason = str(error).removeprefix("the CRM's answer ")
                    raise AdapterUnavailable(f"the token endpoint's answer {reason}") from None
        finally:
            # Outside the deadline, which must not cut the close itself short (the
            # client's pool would keep the request for good).
            if raw is not None:
                await raw.aclose()
        # The body is decoded now: its framing headers no longer describe it.
        response = httpx.Response(raw.status_code, headers=unframed(raw.headers), content=content)
        if response.status_code >= 300 and response.status_code not in (400, 401, 403):
            retry = retry_after_seconds(response.headers.get("retry-after"))
            raise AdapterUnavailable(
                f"token endpoint answered {response.status_code}", retry_after=retry
            )
        return response

    async def _accept(self, response: httpx.Response, used: str | None) -> None:
        try:
            body = response.json()
            if not isinstance(body, dict):
                raise TypeError
        except (ValueError, TypeError):
            raise AdapterUnavailable("token endpoint answered without a usable token") from None
        if not self._client_credentials:
            # First, whatever else is wrong with this answer: the CRM has retired the
            # refresh token just sent, so a rotated one must be kept.
            self._refresh_token = used
            rotated = body.get("refresh_token")
            if rotated and rotated != used:
                self._refresh_token = str(rotated)
                register_secret(self._refresh_token)
                if self._on_refresh_token is not None:
                    result = self._on_refresh_token(self._refresh_token)
                    if result is not None:
                        await result
                elif not self._warned_unkept:
                    # Kept in memory only: after a restart the configured token is
                    # the one already retired, and the CRM refuses it.
                    self._warned_unkept = True
                    log.warning(
                        "the CRM rotated the OAuth refresh token; it is kept in memory only "
                        "(set refresh_token_file to keep it across restarts)"
                    )
        try:
            access = str(body["access_token"])
            given = body.get("expires_in")
            lifetime = 3600.0 if given is None else float(given)
            if not math.isfinite(lifetime) or lifetime < 0:
                raise ValueError
        except (ValueError, KeyError, TypeError):
            raise AdapterUnavailable("token endpoint answered without a usable token") from None
        if self._on_token is not None:
            self._on_token(body)  # may refuse the answer: before its token is used
        register_secret(access)
        self._access_token = access
        # Refreshed ahead of expiry by the leeway, or by half the lifetime for
        # short-lived tokens (else a token would never count as valid).
        self._expires_at = self._clock() + lifetime - min(self._leeway, lifetime / 2)


def persisting(store: RefreshTokenFile | None, hook: RefreshHook | None) -> RefreshHook | None:
    """The refresh hook that writes `store` first, then calls the user's `hook`."""
    if store is None:
        return hook

    async def persist(token: str) -> None:
        store.write(token)
        if hook is not None:
            result = hook(token)
            if result is not None:
                await result

    return persist
