"""`HttpAdapter`: the base every HTTP CRM adapter stands on.

An adapter author writes the CRM-specific part — which URL, which fields — and
inherits the rest:

```python
class AcmeAdapter(HttpAdapter):
    name = "acme"
    default_base_url = "https://api.acme-crm.example"

    async def fetch_phone(self, external_id: str) -> CrmContact:
        data = await self.get_json("/contacts/{}", external_id)
        return CrmContact(phones=[CrmPhone(data["phone"], "main", True)])
```

What the base does:
- **Pools that stay fast under load.** One `httpx.AsyncClient` with 100 requests in
  flight collapses (its pool scans every connection on every event); requests are
  spread over several httpx transports of `connections_per_client` connections
  each, and go to them directly (no cookie jar, redirects or client auth flow).
- **Auth.** A static token header (`token`), Basic (`username`/`password`), or OAuth2
  (`client_id`/`client_secret` with `refresh_token` or client credentials) with expiry
  tracking, one refresh at a time, a hook to persist rotated refresh tokens, and one
  refresh-and-retry on 401. A revoked refresh token is `AdapterAuthError`, not a loop.
- **Errors mapped.** 404/410 → `RecordNotFound`; 401/403 → `AdapterAuthError`; 429
  and provider limit signals (`rate_limit_scope`) → `AdapterRateLimited`; 5xx,
  timeouts and connection errors → `AdapterUnavailable`; `retry_after` comes from
  `Retry-After` (seconds or an HTTP date). A spent daily quota stops calls to the
  CRM until it is expected back, instead of spending the rest of the day on 429s.
- **Safe requests.** An external id is always one percent-encoded path segment or a
  query value (`../x`, `a/b`, `?`, `#`, `%2e%2e`, CR/LF cannot change the target);
  responses are capped in size; no secret in exceptions, reprs or logs.
- **A rate budget per CRM tenant** (`rate_limit = (requests, seconds)`): a call that
  would exceed it fails fast with `retry_after` instead of earning a 429.
"""

from __future__ import annotations

import asyncio
import base64
import itertools
import json
import logging
import math
import os
import ssl
import tempfile
import time
import urllib.request
import zlib
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from typing import Any, ClassVar, Literal
from urllib.parse import quote

import certifi
import httpx

from .._http import retry_after_seconds
from ..errors import (
    AdapterAuthError,
    AdapterRateLimited,
    AdapterRequestRejected,
    AdapterUnavailable,
    RecordNotFound,
)
from ..lupitor.limiter import SlidingWindowLimiter

__all__ = [
    "HttpAdapter",
    "OAuth2",
    "Params",
    "RateLimitScope",
    "RefreshTokenFile",
    "environment_proxy",
    "retry_after_seconds",
    "safe_path",
]

log = logging.getLogger("predial.adapters.http")

RefreshHook = Callable[[str], Awaitable[None] | None]
RateLimitScope = Literal["burst", "daily"]
#: Query parameters: a mapping, or pairs when a name repeats (`properties=a&properties=b`).
Params = Mapping[str, Any] | list[tuple[str, Any]]

#: Headers in which CRMs report how much of a daily quota is left.
DAILY_REMAINING_HEADERS = (
    "x-ratelimit-daily-remaining",  # GoHighLevel
    "x-hubspot-ratelimit-daily-remaining",  # HubSpot (private apps)
    "x-daily-requests-left",  # Pipedrive, legacy accounts
)


def safe_path(template: str, *segments: object) -> str:
    """`template` with each `{}` replaced by one percent-encoded path segment.

    Everything but unreserved characters is encoded, `/` and `%` included, and `.`
    / `..` segments are refused, so an external id can never reach another path.
    """
    encoded = []
    for segment in segments:
        text = str(segment)
        if text in ("", ".", ".."):
            raise RecordNotFound(f"{text!r} is not a record id")
        encoded.append(quote(text, safe=""))
    return template.format(*encoded)


class RefreshTokenFile:
    """Keeps a rotated OAuth refresh token in a file, so a restart uses the newest one.

    GoHighLevel issues a new refresh token on every refresh and retires the old one;
    Salesforce can be set up to. Written atomically (a temporary file, then a rename)
    with mode 0600, so a crash never leaves half a token behind.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)

    def __repr__(self) -> str:
        return f"RefreshTokenFile({str(self.path)!r})"

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
    retired token.
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
    ) -> None:
        self.token_url = token_url
        self._on_token = on_token
        self._client_id = client_id
        self._client_secret = client_secret
        self._configured_refresh_token = refresh_token
        self._refresh_token = refresh_token
        self._on_refresh_token = on_refresh_token
        self._load_refresh_token = load_refresh_token
        self._scope = scope
        self._extra_params = dict(extra_params or {})
        self._client_auth = client_auth
        self._leeway = leeway
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
            task.add_done_callback(lambda done: done.cancelled() or done.exception())
            self._refreshing = task
        # Shielded: a caller cancelled at its deadline leaves the refresh running, so
        # a refresh token the CRM has already rotated is still kept and persisted.
        return await asyncio.shield(task)

    async def _refresh_once(self, client: httpx.AsyncClient) -> str:
        try:
            await self._refresh(client)
            assert self._access_token is not None
            return self._access_token
        finally:
            if self._refreshing is asyncio.current_task():
                self._refreshing = None

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
        self.refreshes += 1
        try:
            response = await client.post(self.token_url, data=form, headers=headers)
        except httpx.HTTPError as error:
            raise AdapterUnavailable(
                f"token endpoint unreachable ({type(error).__name__})"
            ) from None
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
                if self._on_refresh_token is not None:
                    result = self._on_refresh_token(self._refresh_token)
                    if result is not None:
                        await result
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
        self._access_token = access
        # Refreshed ahead of expiry by the leeway, or by half the lifetime for
        # short-lived tokens (else a token would never count as valid).
        self._expires_at = self._clock() + lifetime - min(self._leeway, lifetime / 2)


class HttpAdapter:
    """Subclass it: set `name` and `default_base_url`, write `fetch_phone` with
    `get_json`, and optionally override `auth_headers`, `token_url` or
    `rate_limit_scope`.

    Settings (the same names in every HTTP adapter): `base_url`, `token`,
    `client_id`, `client_secret`, `refresh_token`, `timeout`; also `username` and
    `password` for Basic auth, `token_url` to move the OAuth token endpoint,
    `refresh_token_file` to keep rotated refresh tokens across restarts,
    `rate_limit = [requests, seconds]` for the tenant's own limit (the class's
    `rate_limit` is the CRM's documented default), and `tenant`: campaigns naming
    the same tenant (one CRM account) share one rate budget and one daily-quota
    pause in the process.
    """

    name: ClassVar[str]
    default_base_url: ClassVar[str] = ""
    #: The OAuth token endpoint: absolute, or a path on `base_url`.
    token_url: ClassVar[str | None] = None
    #: Extra form fields the CRM's token endpoint wants (GoHighLevel: `user_type`).
    token_params: ClassVar[Mapping[str, str]] = {}
    #: How the client authenticates to the token endpoint: form fields, or a Basic
    #: header (Pipedrive).
    token_client_auth: ClassVar[Literal["body", "basic"]] = "body"
    #: The CRM's documented limit per tenant: (requests, seconds), or None.
    rate_limit: ClassVar[tuple[int, float] | None] = None
    #: How long to stop calling a CRM whose daily quota is spent and which did not
    #: say when it comes back.
    quota_cooldown: ClassVar[float] = 900.0
    max_response_bytes: ClassVar[int] = 2_000_000
    #: Connections per pool; `max_in_flight` is spread over as many pools as needed.
    connections_per_client: ClassVar[int] = 2

    _init_kwargs: dict[str, Any]

    def __new__(cls, *args: Any, **kwargs: Any) -> HttpAdapter:
        self = super().__new__(cls)
        # The settings as given, so `with_transport` can build a twin (the contract
        # kit points one at a misbehaving transport). Never shown: they hold secrets.
        self._init_kwargs = dict(kwargs)
        return self

    def __init__(
        self,
        *,
        base_url: str | None = None,
        token: str | None = None,
        username: str | None = None,
        password: str | None = None,
        client_id: str | None = None,
        client_secret: str | None = None,
        refresh_token: str | None = None,
        token_url: str | None = None,
        refresh_token_file: str | os.PathLike[str] | None = None,
        timeout: float = 5.0,
        rate_limit: tuple[int, float] | list[float] | None = None,
        tenant: str | None = None,
        max_in_flight: int = 100,
        on_refresh_token: RefreshHook | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        url = (base_url or self.default_base_url).rstrip("/")
        if not url.startswith(("http://", "https://")):
            raise ValueError(f"base_url must be an http(s) URL, not {url!r}")
        if timeout <= 0:
            raise ValueError("timeout must be > 0 seconds")
        self.base_url = url
        self._token = token
        self._basic = (username, password) if username is not None else None
        self.oauth: OAuth2 | None = None
        if client_id or client_secret or refresh_token:
            if not (client_id and client_secret):
                raise ValueError(
                    "OAuth needs both client_id and client_secret (and refresh_token for "
                    "the refresh-token grant); for a static token set only `token`"
                )
            endpoint = token_url or self.token_url or "/oauth/token"
            if endpoint.startswith("/"):
                endpoint = url + endpoint
            # The file holds the newest token once one has rotated; OAuth2 reads it
            # before every refresh.
            store = RefreshTokenFile(refresh_token_file) if refresh_token_file else None
            self.oauth = OAuth2(
                endpoint,
                client_id,
                client_secret,
                refresh_token,
                _persisting(store, on_refresh_token),
                extra_params=self.token_params,
                client_auth=self.token_client_auth,
                load_refresh_token=store.read if store is not None else None,
                on_token=self.on_token,
            )
        # Requests go straight to httpx transports, one connection pool each: the
        # client layer (cookies, redirects, auth flows, event hooks) is not needed
        # for one GET, and skipping it is a quarter of the CPU per request. Pools
        # stay small because httpcore scans every connection of a pool on every
        # request and response: one pool of 100 collapses under load.
        count = max(1, -(-max_in_flight // self.connections_per_client))
        self._timeout = httpx.Timeout(timeout).as_dict()
        if transport is not None:
            self._transports: list[httpx.AsyncBaseTransport] = [transport]
        else:
            limits = httpx.Limits(
                max_connections=self.connections_per_client,
                max_keepalive_connections=self.connections_per_client,
            )
            # One TLS context for all the pools: building one per pool loads the CA
            # bundle each time (~80 ms on the benchmark machine).
            tls = ssl.create_default_context(cafile=certifi.where())
            # Bare transports do not read the environment: the proxy an AsyncClient
            # would use (HTTPS_PROXY, HTTP_PROXY, ALL_PROXY, NO_PROXY) is looked up here.
            proxy = environment_proxy(url)
            self._transports = [
                httpx.AsyncHTTPTransport(verify=tls, limits=limits, proxy=proxy)
                for _ in range(count)
            ]
        # The OAuth token endpoint is called rarely: an ordinary client will do (it
        # finds its own proxy).
        self._token_client = (
            httpx.AsyncClient(timeout=timeout, transport=transport, follow_redirects=False)
            if transport is not None
            else httpx.AsyncClient(timeout=timeout, verify=tls, follow_redirects=False)
        )
        self._in_flight = [0] * len(self._transports)
        self._next = itertools.cycle(range(len(self._transports)))
        self._per_pool = self.connections_per_client
        self._headers = {
            "User-Agent": f"predial/{_version()} ({self.name})",
            "Accept": "application/json",
            # Answers are a few KB: compression saves little, and a compressed answer
            # is where a decompression bomb would hide.
            "Accept-Encoding": "identity",
        }
        budget = _rate_limit(rate_limit) if rate_limit is not None else type(self).rate_limit
        if tenant is not None:
            # Campaigns on one CRM account share its limits: one budget, one pause.
            key = (f"{type(self).__module__}.{type(self).__qualname__}", tenant)
            self._tenant = _TENANTS.get(key) or _TENANTS.setdefault(key, _Tenant(budget))
            if self._tenant.limit != (budget and (int(budget[0]), float(budget[1]))):
                log.warning(
                    "%s: tenant %r is already in use with rate_limit %s; this adapter's %s "
                    "is ignored (give campaigns of one tenant the same rate_limit)",
                    self.name,
                    tenant,
                    self._tenant.limit,
                    budget,
                )
        else:
            self._tenant = _Tenant(budget)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(base_url={self.base_url!r})"

    def with_transport(self, transport: httpx.AsyncBaseTransport) -> HttpAdapter:
        """A new adapter with the same settings that sends through `transport`."""
        return type(self)(**{**self._init_kwargs, "transport": transport})

    # -- for subclasses -----------------------------------------------------------

    def auth_headers(self) -> dict[str, str]:
        """Headers for static credentials; OAuth tokens are added per request."""
        if self._token:
            return {"Authorization": f"Bearer {self._token}"}
        if self._basic is not None:
            user, password = self._basic
            raw = f"{user}:{password or ''}".encode()
            return {"Authorization": "Basic " + base64.b64encode(raw).decode()}
        return {}

    def on_token(self, answer: Mapping[str, Any]) -> None:
        """Called with each OAuth token answer before its token is used. Override it
        to read where the tenant's API lives (Salesforce's `instance_url`, Pipedrive's
        `api_domain`) with `use_base_url`; raise `AdapterUnavailable` to refuse it."""

    def use_base_url(self, url: str) -> None:
        """Send later requests to `url` (from a token answer): http(s) only, and
        https unless it is this machine."""
        parsed = httpx.URL(url) if isinstance(url, str) else None
        if (
            parsed is None
            or parsed.scheme not in ("http", "https")
            or not parsed.host
            or (parsed.scheme == "http" and parsed.host not in ("127.0.0.1", "localhost"))
        ):
            raise AdapterUnavailable("the token endpoint named an unusable API address")
        self.base_url = str(url).rstrip("/")

    def rate_limit_scope(self, response: httpx.Response) -> RateLimitScope | None:
        """Whether `response` says a rate limit was hit, and which one.

        The base reads a 429 as a burst limit, or as the daily quota when a
        daily-remaining header says 0. Override it for a CRM's own signals (and
        call this one), e.g. Salesforce's 403 `REQUEST_LIMIT_EXCEEDED`.
        """
        if response.status_code != 429:
            return None
        for header in DAILY_REMAINING_HEADERS:
            if response.headers.get(header, "").strip() == "0":
                return "daily"
        return "burst"

    def retry_after(self, response: httpx.Response) -> float | None:
        """When to come back after `response`, in seconds: `Retry-After` (seconds or an
        HTTP date). Override to read a CRM's own reset headers as a fallback."""
        return retry_after_seconds(response.headers.get("retry-after"))

    def path(self, template: str, *segments: object) -> str:
        return safe_path(template, *segments)

    async def get_json(self, template: str, *segments: object, params: Params | None = None) -> Any:
        """GET `template` (ids as safe segments) and return the JSON body."""
        response = await self.request("GET", self.path(template, *segments), params=params)
        return self.json(response)

    async def post_json(
        self,
        template: str,
        *segments: object,
        body: Any,
        params: Params | None = None,
    ) -> Any:
        """POST `body` as JSON to `template` and return the JSON answer (batch reads)."""
        response = await self.request(
            "POST", self.path(template, *segments), params=params, json_body=body
        )
        return self.json(response)

    def json(self, response: httpx.Response) -> Any:
        try:
            return json.loads(response.content)
        except (ValueError, RecursionError):
            # Some CRMs' edges answer with HTML pages: transient, not a crash.
            raise AdapterUnavailable(
                f"the CRM answered {response.status_code} with a body that is not JSON"
            ) from None

    # -- the request ----------------------------------------------------------------

    def _pool(self) -> int:
        """A pool with a free connection, starting from a rotating position (so all
        stay warm); the least busy one when none is free."""
        start = next(self._next)
        in_flight = self._in_flight
        count = len(in_flight)
        for offset in range(count):
            index = (start + offset) % count
            if in_flight[index] < self._per_pool:
                return index
        return min(range(count), key=in_flight.__getitem__)

    async def request(
        self,
        method: str,
        path: str,
        *,
        params: Params | None = None,
        json_body: Any = None,
    ) -> httpx.Response:
        """Send one request with auth, the rate budget, the size cap and error mapping;
        return a 2xx response or raise the mapped adapter error."""
        tenant = self._tenant
        if tenant.quota_until:
            left = tenant.quota_until - time.monotonic()
            if left > 0:
                raise AdapterRateLimited(
                    "the CRM's daily quota is spent", retry_after=left, scope="daily"
                )
            tenant.quota_until = 0.0
        if tenant.budget is not None:
            wait = tenant.budget.reserve()
            if wait > 0:
                raise AdapterRateLimited("client-side rate budget spent", retry_after=wait)
        index = self._pool()
        transport = self._transports[index]
        self._in_flight[index] += 1
        try:
            response = await self._send(transport, method, path, params, json_body)
            if response.status_code == 401 and self.oauth is not None:
                # The token may have been revoked early: refresh once and retry once.
                refused = response.request.headers.get("authorization", "").removeprefix("Bearer ")
                response = await self._send(transport, method, path, params, json_body, refused)
        finally:
            self._in_flight[index] -= 1
        self.raise_for_status(response)
        return response

    async def _send(
        self,
        transport: httpx.AsyncBaseTransport,
        method: str,
        path: str,
        params: Params | None,
        json_body: Any,
        stale_token: str | None = None,
    ) -> httpx.Response:
        headers = {**self._headers, **self.auth_headers()}
        if self.oauth is not None:
            token = await self.oauth.token(self._token_client, stale_token)
            headers["Authorization"] = f"Bearer {token}"
        try:
            # `path` holds only percent-encoded ids (safe_path): joining is safe.
            request = httpx.Request(
                method,
                self.base_url + path,
                params=params,
                json=json_body,
                headers=headers,
                extensions={"timeout": self._timeout},
            )
            response = await transport.handle_async_request(request)
            response.request = request
        except httpx.TimeoutException:
            raise AdapterUnavailable("the CRM did not answer in time") from None
        except httpx.HTTPError as error:
            raise AdapterUnavailable(f"cannot reach the CRM ({type(error).__name__})") from None
        try:
            if response.is_stream_consumed:
                # Built in-process (a mock transport): httpx has read and decoded it.
                if len(response.content) > self.max_response_bytes:
                    raise AdapterUnavailable(
                        f"the CRM's answer exceeds {self.max_response_bytes} bytes"
                    )
                return response
            if self._fits(response):
                await response.aread()
                return response
            raw = bytearray()
            async for chunk in response.aiter_raw():
                raw += chunk
                if len(raw) > self.max_response_bytes:
                    raise AdapterUnavailable(
                        f"the CRM's answer exceeds {self.max_response_bytes} bytes"
                    )
        except httpx.HTTPError as error:
            reason = f"the CRM's answer was cut ({type(error).__name__})"
            raise AdapterUnavailable(reason) from None
        finally:
            await response.aclose()
        body = self._decoded(bytes(raw), response.headers.get("content-encoding", "identity"))
        kept = [
            (key, value)
            for key, value in response.headers.multi_items()
            if key.lower() not in ("content-encoding", "content-length", "transfer-encoding")
        ]
        return httpx.Response(response.status_code, headers=kept, content=body, request=request)

    def _fits(self, response: httpx.Response) -> bool:
        """Whether the answer is known to be within the cap before it is read: an
        uncompressed body of a declared length and no other framing (HTTP holds the
        server to it). Such a body is read in one go; any other is counted."""
        headers = response.headers
        if "transfer-encoding" in headers:
            return False
        if headers.get("content-encoding", "identity").strip().lower() != "identity":
            return False
        length = headers.get("content-length", "")
        return length.isdigit() and int(length) <= self.max_response_bytes

    def _decoded(self, raw: bytes, encoding: str) -> bytes:
        """The body, decompressed under the same cap. Compression is not asked for
        (answers are small), but a server may use it anyway: gzip and deflate are
        decoded a bounded amount at a time, so a small bomb cannot balloon."""
        encoding = encoding.strip().lower()
        if encoding in ("", "identity"):
            return raw
        if encoding not in ("gzip", "x-gzip", "deflate"):
            raise AdapterUnavailable(f"the CRM's answer uses an unsupported encoding {encoding!r}")
        # wbits 47 reads both the gzip and the zlib container; raw deflate (which some
        # servers send for "deflate") needs -15. A zlib header is CM 8 with a check
        # making the first two bytes a multiple of 31.
        zlib_header = len(raw) >= 2 and raw[0] & 0x0F == 8 and (raw[0] << 8 | raw[1]) % 31 == 0
        decoder = zlib.decompressobj(47 if encoding != "deflate" or zlib_header else -15)
        try:
            body = decoder.decompress(raw, self.max_response_bytes + 1)
        except zlib.error:
            raise AdapterUnavailable(f"the CRM's answer is not valid {encoding}") from None
        if len(body) > self.max_response_bytes:
            raise AdapterUnavailable(f"the CRM's answer exceeds {self.max_response_bytes} bytes")
        if not decoder.eof:
            raise AdapterUnavailable(f"the CRM's answer was cut ({encoding} stream incomplete)")
        return body

    def raise_for_status(self, response: httpx.Response) -> None:
        """Raise the adapter error `response` stands for (none for a 2xx).

        Override to read a CRM's own error bodies, and call this one for the rest.
        """
        status = response.status_code
        if 200 <= status < 300:
            return
        retry = self.retry_after(response)
        scope = self.rate_limit_scope(response)
        if scope == "daily":
            pause = retry if retry is not None else self.quota_cooldown
            self._tenant.quota_until = time.monotonic() + pause
            log.warning(
                "%s: the CRM's daily quota is spent (%d); no calls for %.0f s",
                self.name,
                status,
                pause,
            )
            raise AdapterRateLimited(
                f"the CRM's daily quota is spent ({status})", retry_after=pause, scope="daily"
            )
        if scope is not None:
            raise AdapterRateLimited(f"the CRM's rate limit ({status})", retry_after=retry)
        if status in (404, 410):
            raise RecordNotFound(f"the CRM has no such record ({status})")
        if status in (401, 403):
            raise AdapterAuthError(f"the CRM refused the credentials ({status})")
        if status >= 500:
            raise AdapterUnavailable(f"the CRM answered {status}", retry_after=retry)
        if 400 <= status < 500 and status not in (408, 409, 423, 425):
            # The request itself was refused: asking again would get the same answer.
            raise AdapterRequestRejected(f"the CRM refused the request ({status})")
        raise AdapterUnavailable(f"the CRM answered {status}")

    async def aclose(self) -> None:
        await self._token_client.aclose()
        for transport in self._transports:
            await transport.aclose()


def environment_proxy(url: str) -> str | None:
    """The proxy the environment names for `url` (as `httpx.AsyncClient` finds it):
    `<scheme>_proxy`, else `all_proxy`, unless `no_proxy` covers the host."""
    target = httpx.URL(url)
    if urllib.request.proxy_bypass(target.host):
        return None
    proxies = urllib.request.getproxies_environment()
    return proxies.get(target.scheme) or proxies.get("all") or None


class _Tenant:
    """One CRM account's client-side limits: the rate budget and the daily-quota pause."""

    def __init__(self, budget: tuple[int, float] | None) -> None:
        self.limit = (int(budget[0]), float(budget[1])) if budget else None
        self.budget = SlidingWindowLimiter(*self.limit) if self.limit else None
        self.quota_until = 0.0


#: Tenants shared by name (the `tenant` setting) across the adapters of a process.
_TENANTS: dict[tuple[str, str], _Tenant] = {}


def _version() -> str:
    from .. import __version__

    return __version__


def _rate_limit(value: tuple[int, float] | list[float]) -> tuple[int, float]:
    """`rate_limit` as a setting: `[requests, seconds]`, both positive."""
    try:
        requests, seconds = value
        if int(requests) != requests or requests < 1 or seconds <= 0:
            raise ValueError
    except (TypeError, ValueError):
        raise ValueError(
            f"rate_limit must be [requests, seconds], e.g. [100, 10], not {value!r}"
        ) from None
    return int(requests), float(seconds)


def _persisting(store: RefreshTokenFile | None, hook: RefreshHook | None) -> RefreshHook | None:
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
