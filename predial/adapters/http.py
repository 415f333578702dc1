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
- **Connections that stay fast under load.** One `httpx.AsyncClient` with 100
  requests in flight collapses (httpcore's pool scans every connection on every
  event). Requests are httpx's, sent straight to a transport on aiohttp
  (`AiohttpTransport`; no cookie jar, redirects or client auth flow): up to
  `max_in_flight` connections on each event loop, TLS checked against certifi's CAs,
  through the proxy the environment names. Each exchange is bounded as a whole by
  `timeout`, and its answer is read under `max_response_bytes` and decoded here.
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

import base64
import json
import logging
import math
import os
import ssl
import time
import urllib.request
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, ClassVar, Literal
from urllib.parse import quote

import certifi
import httpx

from .._http import MAX_RETRY_AFTER, retry_after_seconds
from .._ratelimit import SlidingWindowLimiter
from ..errors import (
    AdapterAuthError,
    AdapterRateLimited,
    AdapterRequestRejected,
    AdapterUnavailable,
    RecordNotFound,
)
from ._aiohttp import AiohttpTransport
from ._oauth import OAuth2, RefreshHook, RefreshTokenFile, persisting
from ._transport import Deadline, body_chunks, decode_body, read_capped, unframed

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

if TYPE_CHECKING:
    from .._campaign import Campaign
    from .._tenants import Tenants
    from ..shared._budget import SharedBudget
    from ..shared._redis import RedisTier

log = logging.getLogger(__name__)

RateLimitScope = Literal["burst", "daily"]
#: Query parameters: a mapping, or pairs when a name repeats (`properties=a&properties=b`).
Params = Mapping[str, Any] | list[tuple[str, Any]]

#: What a request that outlived `timeout` raises (as `AdapterUnavailable`).
_LATE = "the CRM did not answer in time"

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
        try:
            encoded.append(quote(text, safe=""))
        except UnicodeEncodeError:  # a lone surrogate: no CRM record has that id
            raise RecordNotFound("the id is not valid Unicode text") from None
    return template.format(*encoded)


class HttpAdapter:
    """Subclass it: set `name` and `default_base_url`, write `fetch_phone` with
    `get_json`, and optionally override `auth_headers`, `token_url` or
    `rate_limit_scope`.

    Settings (the same names in every HTTP adapter): `base_url`, `token`,
    `client_id`, `client_secret`, `refresh_token`, `timeout` (seconds: the most a
    request may take as a whole, from the wait for a connection to the answer's
    last byte; each OAuth token request likewise); also `username` and
    `password` for Basic auth, `token_url` to move the OAuth token endpoint,
    `refresh_token_file` to keep rotated refresh tokens across restarts,
    `rate_limit = [requests, seconds]` for the tenant's own limit (the class's
    `rate_limit` is the CRM's documented default), and `tenant`: campaigns naming
    the same tenant (one CRM account) share one rate budget and one daily-quota
    pause in their resolver (with the same rate_limit: a different one is a
    configuration error); `max_in_flight` (default 100) for how many connections
    the adapter may hold on each event loop, each serving one request at a time
    (more wait for one, up to `timeout`); and, in tests, `transport`: an httpx
    transport to send through instead of aiohttp's (a fake CRM's `transport()`).
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
        if not 0 < timeout < math.inf:  # NaN compares false
            raise ValueError("timeout must be a finite number of seconds > 0")
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
                persisting(store, on_refresh_token),
                extra_params=self.token_params,
                client_auth=self.token_client_auth,
                load_refresh_token=store.read if store is not None else None,
                refresh_lock=store.lock if store is not None else None,
                on_token=self.on_token,
                request_timeout=timeout,
            )
        # Requests go straight to a transport: the client layer (cookies, redirects,
        # auth flows, event hooks) is not needed for one GET, and skipping it is a
        # quarter of the CPU per request.
        self._timeout = httpx.Timeout(timeout).as_dict()
        # That times each phase on its own (connect, each read...); `_send` also
        # bounds each exchange as a whole by the same `timeout`.
        self._seconds = float(timeout)
        if max_in_flight < 1:
            raise ValueError("max_in_flight must be at least 1")
        self._tls: ssl.SSLContext | None = None
        self._closed = False
        # Bare transports do not read the environment: `environment_proxy` looks up
        # the proxy an AsyncClient would use.
        self._transport = (
            transport
            if transport is not None
            else AiohttpTransport(
                ssl_context=self._tls_context(),
                max_connections=max_in_flight,
                proxy=environment_proxy(url),
            )
        )
        # The OAuth token endpoint is called rarely: an ordinary client will do (it
        # finds its own proxy).
        if transport is not None:
            self._token_client = httpx.AsyncClient(
                timeout=timeout, transport=transport, follow_redirects=False
            )
        else:
            self._token_client = httpx.AsyncClient(
                timeout=timeout, verify=self._tls_context(), follow_redirects=False
            )
        self._headers = {
            "User-Agent": f"predial/{_version()} ({self.name})",
            "Accept": "application/json",
            # Answers are a few KB: compression saves little, and a compressed answer
            # is where a decompression bomb would hide.
            "Accept-Encoding": "identity",
        }
        budget = _rate_limit(rate_limit) if rate_limit is not None else type(self).rate_limit
        self._tenant_name = (
            f"{type(self).__module__}.{type(self).__qualname__}:{tenant}"
            if tenant is not None
            else None
        )
        self._shared_budget: SharedBudget | None = None
        self._tenant_setting = tenant
        # The adapter's own limits, until a resolver hands it the tenants of its
        # campaigns (`join_tenants`): used alone, it shares them with no one.
        self._tenant = _Tenant(budget)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(base_url={self.base_url!r})"

    def join_tenants(self, tenants: Tenants, campaign: Campaign) -> None:
        """Share the rate budget and the daily-quota pause with the other campaigns
        of `tenants` naming the same `tenant` (the resolver calls this as it adds
        `campaign`). `ConfigurationError` naming both campaigns if their rate_limit
        differs."""
        if self._tenant_setting is not None:
            self._tenant = tenants.join(
                campaign, type(self), self._tenant_setting, self._tenant.limit, self._tenant
            )

    def share_limits(self, tier: RedisTier, default_tenant: str) -> None:
        """Enforce the rate budget and the daily-quota pause fleet-wide through the
        shared tier (the resolver calls this): per `tenant` setting, else per
        `default_tenant` (the campaign)."""
        from ..shared._budget import SharedBudget

        limit = self._tenant.limit
        self._shared_budget = SharedBudget(
            tier,
            self._tenant_name or default_tenant,
            limit[0] if limit else None,
            limit[1] if limit else 1.0,
        )

    @property
    def base_url(self) -> str:
        """Where requests go: `base_url` + the request's path."""
        return self._base_url

    @base_url.setter
    def base_url(self, url: str) -> None:
        if "#" in url:
            raise ValueError(f"base_url cannot have a fragment ('#'): {url!r}")
        httpx.URL(url)  # InvalidURL now, rather than at the first request
        self._base_url = url

    def _tls_context(self) -> ssl.SSLContext:
        # One for every connection: building one loads the CA bundle (~80 ms on the
        # benchmark machine).
        if self._tls is None:
            self._tls = ssl.create_default_context(cafile=certifi.where())
        return self._tls

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
            or "#" in url
            or (parsed.scheme == "http" and parsed.host not in ("127.0.0.1", "localhost"))
        ):
            raise AdapterUnavailable("the token endpoint named an unusable API address")
        self.base_url = str(url).rstrip("/")
        if isinstance(self._transport, AiohttpTransport):
            # The new host may be proxied differently (NO_PROXY).
            self._transport.use_proxy(environment_proxy(self.base_url))

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
                # predial's own refusal: the CRM is not called.
                raise AdapterRateLimited(
                    "the CRM's daily quota is spent (calls paused)",
                    retry_after=left,
                    scope="daily",
                    called=False,
                )
            tenant.quota_until = 0.0
        shared = self._shared_budget
        slot = None
        if shared is not None:
            verdict, wait, slot = await shared.reserve()
            if verdict == "paused":
                # Asked of Redis on every call: not copied here, where a tampered
                # or outdated pause would outlive the key.
                wait = min(wait, MAX_RETRY_AFTER)
                raise AdapterRateLimited(
                    "the CRM's daily quota is spent (calls paused)",
                    retry_after=wait,
                    scope="daily",
                    called=False,
                )
            if verdict == "wait":
                raise AdapterRateLimited(
                    "client-side rate budget spent", retry_after=wait, scope="client", called=False
                )
        elif tenant.budget is not None:
            wait = tenant.budget.reserve()
            if wait > 0:
                raise AdapterRateLimited(
                    "client-side rate budget spent", retry_after=wait, scope="client", called=False
                )
        try:
            response = await self._send(method, path, params, json_body)
            if response.status_code == 401 and self.oauth is not None:
                # The token may have been revoked early: refresh once and retry once.
                refused = response.request.headers.get("authorization", "")
                refused = refused.removeprefix("Bearer ")
                response = await self._send(method, path, params, json_body, refused)
        finally:
            if shared is not None:
                # The request reached the CRM before now: its slot counts from now.
                shared.settle(slot)
        self.raise_for_status(response)
        return response

    async def _send(
        self,
        method: str,
        path: str,
        params: Params | None,
        json_body: Any,
        stale_token: str | None = None,
    ) -> httpx.Response:
        if self._closed:
            raise AdapterUnavailable("the adapter is closed")
        method = method.upper()
        headers = {**self._headers, **self.auth_headers()}
        if self.oauth is not None:
            token = await self.oauth.token(self._token_client, stale_token)
            headers["Authorization"] = f"Bearer {token}"
        query = str(httpx.QueryParams(params)) if params else ""
        body: bytes | None = None
        if json_body is not None:
            # As httpx encodes `json=` (0.28), whichever httpx is installed.
            body = json.dumps(
                json_body, ensure_ascii=False, separators=(",", ":"), allow_nan=False
            ).encode()
            if "content-type" not in {name.lower() for name in headers}:
                headers["Content-Type"] = "application/json"
        # `path` holds only percent-encoded ids (safe_path): joining is safe.
        url = self.base_url + path + ("?" + query if query else "")
        request = httpx.Request(
            method, url, headers=headers, content=body, extensions={"timeout": self._timeout}
        )
        cap = self.max_response_bytes
        # `timeout` bounds the exchange as a whole: waiting for a connection,
        # connecting, sending, and every read of the answer (1xx answers and chunks
        # included). A transport times each read on its own, which a server sending
        # a byte at a time never trips. Bounded here, not in a transport, so it holds
        # for any transport (a proxy's, a test's). Transport errors become predial's
        # here, and only here.
        response: httpx.Response | None = None
        try:
            with Deadline(self._seconds, _LATE):
                try:
                    response = await self._transport.handle_async_request(request)
                    if response.is_stream_consumed:
                        # Built and read in-process (a mock transport): httpx has
                        # decoded it already.
                        raw, encoding = response.content, "identity"
                        if len(raw) > cap:
                            raise AdapterUnavailable(f"the CRM's answer exceeds {cap} bytes")
                    else:
                        raw = await read_capped(body_chunks(response), cap)
                        encoding = response.headers.get("content-encoding", "identity")
                except httpx.TimeoutException:
                    raise AdapterUnavailable(_LATE) from None
                except httpx.HTTPError as error:
                    if self._closed:  # closed under it, from this or another loop
                        raise AdapterUnavailable("the adapter is closed") from None
                    where = (
                        "cannot reach the CRM" if response is None else "the CRM's answer was cut"
                    )
                    raise AdapterUnavailable(f"{where} ({type(error).__name__})") from None
        finally:
            # Not read to its end (cut off, refused), the connection is closed, not
            # kept for another request. Outside the deadline, which must not cut the
            # close itself short.
            if response is not None:
                await response.aclose()
        return httpx.Response(
            response.status_code,
            headers=unframed(response.headers),
            content=decode_body(raw, encoding, cap),
            request=request,
        )

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
            if self._shared_budget is not None:
                self._shared_budget.report_pause(pause)
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
        if status == 407:
            # From a proxy between us and the CRM (HTTP_PROXY): not the CRM's verdict on
            # the request, and fixed by the operator, not by skipping the lead.
            raise AdapterUnavailable(
                "the proxy refused its credentials (407): check HTTP(S)_PROXY / ALL_PROXY"
            )
        if status >= 500:
            raise AdapterUnavailable(f"the CRM answered {status}", retry_after=retry)
        if 400 <= status < 500 and status not in (408, 409, 423, 425):
            # The request itself was refused: asking again would get the same answer.
            raise AdapterRequestRejected(f"the CRM refused the request ({status})")
        raise AdapterUnavailable(f"the CRM answered {status}")

    async def aclose(self) -> None:
        self._closed = True
        if self.oauth is not None:
            await self.oauth.aclose()  # before its client closes under it
        await self._token_client.aclose()
        await self._transport.aclose()


def environment_proxy(url: str) -> str | None:
    """The proxy the environment names for `url` (as `httpx.AsyncClient` finds it):
    `<scheme>_proxy`, else `all_proxy`, unless `no_proxy` covers the host."""
    target = httpx.URL(url)
    if urllib.request.proxy_bypass(target.host):
        return None
    proxies = urllib.request.getproxies_environment()
    proxy = proxies.get(target.scheme) or proxies.get("all") or None
    if proxy is not None and "://" not in proxy:
        # `HTTPS_PROXY=host:3128` (or `user:pass@host:3128`) means an http proxy, as
        # for httpx and curl; read otherwise, its password would be the "scheme".
        proxy = "http://" + proxy
    return proxy


class _Tenant:
    """One CRM account's client-side limits: the rate budget and the daily-quota pause."""

    def __init__(self, budget: tuple[int, float] | None) -> None:
        self.limit = (int(budget[0]), float(budget[1])) if budget else None
        self.budget = SlidingWindowLimiter(*self.limit) if self.limit else None
        self.quota_until = 0.0


def _version() -> str:
    from .. import __version__

    return __version__


def _rate_limit(value: tuple[int, float] | list[float]) -> tuple[int, float]:
    """`rate_limit` as a setting: `[requests, seconds]`, both positive."""
    try:
        requests, seconds = value
        if int(requests) != requests or requests < 1 or not 0 < seconds < math.inf:
            raise ValueError
    except (TypeError, ValueError):
        raise ValueError(
            f"rate_limit must be [requests, seconds], e.g. [100, 10], not {value!r}"
        ) from None
    return int(requests), float(seconds)
