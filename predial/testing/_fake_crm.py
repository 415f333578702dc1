"""`FakeCrm`: the base of the fake CRMs that adapter tests run against.

A fake CRM answers `httpx.Request`s the way the real CRM documents it: its paths,
its auth, its error bodies, its rate-limit signals. One object serves three ways:

```python
fake = FakeHubSpot(token="pat-test")
fake.add_contact("101", phone="+12024561111")

respx.route(host="127.0.0.1").mock(side_effect=fake.handler)   # respx, in-process
httpx.AsyncClient(transport=fake.transport())                   # a mock transport
with serve(fake) as base_url: ...                               # uvicorn on 127.0.0.1
```

Subclasses implement `route(request)` for the CRM's endpoints and the error bodies
(`unauthorized`, `rate_limited`, `server_error`). The base does the rest the same
way for every CRM: bearer-token checks, an OAuth token endpoint that issues
expiring access tokens and can rotate or revoke refresh tokens, a burst rate limit,
injected faults, latency (served), and a log of every request.
"""

from __future__ import annotations

import asyncio
import base64
import itertools
import json
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from typing import Any, Literal
from urllib.parse import parse_qs, unquote

import httpx

__all__ = ["FakeCrm", "FakeOAuth", "body_json", "json_response"]

Clock = Callable[[], float]


def json_response(status: int, body: Any, headers: dict[str, str] | None = None) -> httpx.Response:
    """A JSON response with `status` (no `Content-Length` mismatch, utf-8)."""
    return httpx.Response(status, json=body, headers=headers)


class FakeOAuth:
    """An OAuth2 token endpoint: refresh-token and client-credentials grants.

    `rotate=True` answers every refresh with a new refresh token and retires the
    old one (GoHighLevel's behaviour); `revoke()` makes every refresh fail with
    `invalid_grant`, as a user removing the app would. `client_auth` requires the
    client's credentials in the form (`"body"`) or a Basic header (`"basic"`);
    None accepts either.
    """

    def __init__(
        self,
        client_id: str = "client-id",
        client_secret: str = "client-secret",
        refresh_token: str = "refresh-0",
        *,
        path: str = "/oauth/token",
        expires_in: int | None = 1800,
        rotate: bool = False,
        client_auth: Literal["body", "basic"] | None = None,
        extra: dict[str, Any] | None = None,
        clock: Clock = time.monotonic,
    ) -> None:
        #: More fields of every token answer (Pipedrive's `api_domain`, say).
        self.extra = dict(extra or {})
        self.client_id = client_id
        self.client_auth = client_auth
        self.client_secret = client_secret
        self.refresh_token = refresh_token
        self.path = path
        self.expires_in = expires_in
        self.rotate = rotate
        self.revoked = False
        self.refreshes = 0
        self._clock = clock
        self._issued: dict[str, float] = {}
        self._serial = itertools.count(1)
        self._lock = threading.Lock()

    def _client(self, request: httpx.Request, form: dict[str, str]) -> tuple[str, str] | None:
        """The client's credentials, from the Basic header or the form (RFC 6749 §2.3.1),
        as `client_auth` allows."""
        header = request.headers.get("authorization", "")
        if header.startswith("Basic ") and self.client_auth != "body":
            try:
                user, _, password = base64.b64decode(header[6:]).decode().partition(":")
            except (ValueError, UnicodeDecodeError):
                return None
            return unquote(user), unquote(password)
        if "client_id" in form and self.client_auth != "basic":
            return form["client_id"], form.get("client_secret", "")
        return None

    def revoke(self) -> None:
        self.revoked = True

    def expire_all(self) -> None:
        """Every access token issued so far stops working (as at the end of its life)."""
        with self._lock:
            self._issued.clear()

    def valid(self, access_token: str) -> bool:
        with self._lock:
            expires = self._issued.get(access_token)
        return expires is not None and self._clock() < expires

    def handle(self, request: httpx.Request) -> httpx.Response:
        if request.method != "POST":
            return json_response(405, {"error": "invalid_request"})
        form = {key: values[-1] for key, values in parse_qs(request.content.decode()).items()}
        if self._client(request, form) != (self.client_id, self.client_secret):
            return json_response(401, {"error": "invalid_client"})
        grant = form.get("grant_type")
        with self._lock:
            if grant == "refresh_token":
                if self.revoked or form.get("refresh_token") != self.refresh_token:
                    return json_response(
                        400,
                        {"error": "invalid_grant", "error_description": "token revoked or used"},
                    )
            elif grant != "client_credentials":
                return json_response(400, {"error": "unsupported_grant_type"})
            self.refreshes += 1
            serial = next(self._serial)
            access = f"access-{serial}"
            lifetime = self.expires_in if self.expires_in is not None else 7200
            self._issued[access] = self._clock() + lifetime
            body: dict[str, Any] = {"access_token": access, "token_type": "Bearer", **self.extra}
            if self.expires_in is not None:
                body["expires_in"] = self.expires_in
            if grant == "refresh_token":
                if self.rotate:
                    self.refresh_token = f"refresh-{serial}"
                body["refresh_token"] = self.refresh_token
        return json_response(200, body)


class FakeCrm:
    """Subclass it for one CRM: implement `route`, and the error bodies it documents.

    `tokens` are the static API tokens it accepts; `oauth` adds a token endpoint
    whose access tokens it accepts too. `faults` is a queue of responses (or bare
    status codes) answered before anything else, one per request. `latency` delays
    each served answer (uvicorn only). `rate_limit=(requests, seconds)` answers
    over-limit requests with the CRM's own 429.
    """

    #: The header that carries the credential, and its prefix.
    auth_header = "authorization"
    auth_prefix = "Bearer "

    def __init__(
        self,
        tokens: Iterable[str] = ("test-token",),
        *,
        oauth: FakeOAuth | None = None,
        latency: float = 0.0,
        rate_limit: tuple[int, float] | None = None,
        clock: Clock = time.monotonic,
    ) -> None:
        self.tokens = set(tokens)
        self.oauth = oauth
        self.latency = latency
        self.rate_limit = rate_limit
        self.clock = clock
        self.requests: list[httpx.Request] = []
        self.faults: deque[int | httpx.Response] = deque()
        self._window: deque[float] = deque()
        self._lock = threading.Lock()

    # -- for subclasses -------------------------------------------------------------

    def route(self, request: httpx.Request) -> httpx.Response:
        """Answer an authorised request for one of the CRM's endpoints."""
        raise NotImplementedError

    def unauthorized(self) -> httpx.Response:
        return json_response(401, {"message": "authentication credentials not valid"})

    def rate_limited(self) -> httpx.Response:
        return json_response(429, {"message": "rate limit"}, {"Retry-After": "1"})

    def server_error(self, status: int) -> httpx.Response:
        return json_response(status, {"message": "internal error"})

    # -- serving ----------------------------------------------------------------------

    def handler(self, request: httpx.Request) -> httpx.Response:
        """Answer one request: for respx's `side_effect` and `httpx.MockTransport`."""
        with self._lock:
            self.requests.append(request)
            fault = self.faults.popleft() if self.faults else None
        if fault is not None:
            return self.server_error(fault) if isinstance(fault, int) else fault
        if self.oauth is not None and request.url.path == self.oauth.path:
            return self.oauth.handle(request)
        if not self.authorised(request):
            return self.unauthorized()
        if self.rate_limit is not None and not self._admit():
            return self.rate_limited()
        return self.route(request)

    def transport(self) -> httpx.MockTransport:
        return httpx.MockTransport(self.handler)

    def authorised(self, request: httpx.Request) -> bool:
        value = request.headers.get(self.auth_header, "")
        if not value.startswith(self.auth_prefix):
            return False
        credential = value.removeprefix(self.auth_prefix)
        if credential in self.tokens:
            return True
        return self.oauth is not None and self.oauth.valid(credential)

    def _admit(self) -> bool:
        assert self.rate_limit is not None
        limit, window = self.rate_limit
        now = self.clock()
        with self._lock:
            while self._window and self._window[0] <= now - window:
                self._window.popleft()
            if len(self._window) >= limit:
                return False
            self._window.append(now)
            return True

    def requests_to(self, path_prefix: str) -> list[httpx.Request]:
        """The requests whose path starts with `path_prefix` (token calls excluded)."""
        return [r for r in self.requests if r.url.path.startswith(path_prefix)]

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        """ASGI: serve the fake with uvicorn (`predial.testing.serve`)."""
        if scope["type"] != "http":
            return
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        query = scope.get("query_string", b"")
        raw_path = scope.get("raw_path") or scope["path"].encode()
        host, port = scope.get("server") or ("127.0.0.1", 80)
        url = httpx.URL(f"http://{host}:{port}" + raw_path.decode("latin-1"))
        if query:
            url = url.copy_with(query=query)
        request = httpx.Request(
            scope["method"],
            url,
            headers=[(key, value) for key, value in scope["headers"]],
            content=body,
        )
        if self.latency:
            await asyncio.sleep(self.latency)
        response = self.handler(request)
        content = response.content
        headers = [
            (key.lower(), value)
            for key, value in response.headers.raw
            if key.lower() not in (b"content-length", b"transfer-encoding")
        ]
        headers.append((b"content-length", str(len(content)).encode()))
        start = {"type": "http.response.start", "status": response.status_code}
        await send({**start, "headers": headers})
        await send({"type": "http.response.body", "body": content})


def body_json(request: httpx.Request) -> Any:
    """The JSON body of `request` (None when it has none or it is not JSON)."""
    try:
        return json.loads(request.content or b"null")
    except ValueError:
        return None
