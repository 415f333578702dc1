"""Check an adapter's requests (and a fake's answers) against a CRM's OpenAPI spec.

Needs `openapi-core` (in the `test` extra). A request passes when its path and
method are an operation of the spec, every parameter the operation requires is
present, every parameter sent is one the operation declares, and each value and
the JSON body match their schemas.

```python
spec = OpenApiSpec.from_file("specs/hubspot-crm-contacts-v3.json")
spec.validate_request(crm.calls.last.request)     # AssertionError saying what is wrong
transport = RecordingTransport(spec.checking(fake.handler))   # every exchange checked
```
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Callable
from functools import cached_property
from pathlib import Path
from typing import Any

import httpx
from openapi_core import OpenAPI
from openapi_core.datatypes import RequestParameters
from werkzeug.datastructures import Headers, ImmutableMultiDict

__all__ = ["OpenApiSpec"]

# Headers every HTTP client sends, which specs leave undeclared.
TRANSPORT_HEADERS = frozenset(
    {
        "accept",
        "accept-encoding",
        "authorization",
        "connection",
        "content-length",
        "content-type",
        "host",
        "user-agent",
    }
)


class _Request:
    """An `httpx.Request` in the shape openapi-core reads."""

    def __init__(self, request: httpx.Request, server: str) -> None:
        self._request = request
        self.host_url = server
        # As sent (percent-encoded): an id's encoded '/' must not split the path.
        self.path = request.url.raw_path.decode("ascii").split("?")[0]
        self.full_url_pattern = server + self.path
        self.method = request.method.lower()
        self.body = request.content or None
        self.content_type = request.headers.get("content-type", "")
        self.parameters = RequestParameters(
            query=ImmutableMultiDict(list(request.url.params.multi_items())),
            header=Headers(list(request.headers.items())),
            cookie=ImmutableMultiDict(),
        )


class _Response:
    def __init__(self, response: httpx.Response) -> None:
        self.status_code = response.status_code
        self.data = response.content
        self.content_type = response.headers.get("content-type", "").split(";")[0]
        self.headers = Headers(list(response.headers.items()))


def _json_wildcards(node: Any) -> Any:
    """The document with `*/*` media types read as JSON.

    HubSpot's spec declares its error bodies as `*/*`; the API sends JSON, and
    openapi-core would otherwise check the raw bytes against an object schema.
    """
    if isinstance(node, dict):
        return {
            ("application/json" if key == "*/*" and "application/json" not in node else key): (
                _json_wildcards(value)
            )
            for key, value in node.items()
        }
    if isinstance(node, list):
        return [_json_wildcards(item) for item in node]
    return node


class OpenApiSpec:
    """One OpenAPI 3.0 document, loaded from JSON."""

    def __init__(self, document: dict[str, Any]) -> None:
        self.document = _json_wildcards(document)
        servers = document.get("servers") or [{"url": "http://localhost"}]
        self.server = str(servers[0]["url"]).rstrip("/")

    @classmethod
    def from_file(cls, path: str | Path) -> OpenApiSpec:
        return cls(json.loads(Path(path).read_text(encoding="utf-8")))

    @cached_property
    def _api(self) -> OpenAPI:
        # The published specs use a few constructs openapi-core only warns about
        # (header-named API keys); the checks here do not depend on them.
        return OpenAPI.from_dict(self.document)

    def _operation(self, request: httpx.Request) -> dict[str, Any]:
        # Split the path as sent: an id holding an encoded '/' is still one segment.
        path = request.url.raw_path.decode("ascii").split("?")[0]
        wanted = path.strip("/").split("/")
        for template, item in self.document["paths"].items():
            parts = template.strip("/").split("/")
            if len(parts) != len(wanted):
                continue
            if all(p.startswith("{") or p == w for p, w in zip(parts, wanted, strict=True)):
                operation = item.get(request.method.lower())
                if operation is not None:
                    return dict(operation)
        raise AssertionError(f"{request.method} {path} is not an operation of the spec")

    def _as_spec_server(self, request: httpx.Request) -> httpx.Request:
        # Tests send to 127.0.0.1; the spec knows the CRM's public host.
        url = httpx.URL(self.server).copy_with(raw_path=request.url.raw_path)
        return httpx.Request(request.method, url, headers=request.headers, content=request.content)

    def validate_request(self, request: httpx.Request) -> None:
        operation = self._operation(request)
        declared = {
            (parameter["in"], parameter["name"].lower())
            for parameter in operation.get("parameters", [])
        }
        for name in request.url.params:
            assert ("query", name.lower()) in declared, (
                f"query parameter {name!r} is not declared for {request.method} {request.url.path}"
            )
        for name in request.headers:
            if name.lower() in TRANSPORT_HEADERS:
                continue
            assert ("header", name.lower()) in declared, (
                f"header {name!r} is not declared for {request.method} {request.url.path}"
            )
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            try:
                self._api.validate_request(_Request(self._as_spec_server(request), self.server))
            except Exception as error:
                raise AssertionError(f"{request.method} {request.url.path}: {error}") from error

    def validate_response(self, request: httpx.Request, response: httpx.Response) -> None:
        """Check a fake's answer against the operation's documented response."""
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            try:
                self._api.validate_response(
                    _Request(self._as_spec_server(request), self.server), _Response(response)
                )
            except Exception as error:
                raise AssertionError(
                    f"answer {response.status_code} to {request.method} {request.url.path}: {error}"
                ) from error

    def checking(
        self,
        handler: Callable[[httpx.Request], httpx.Response],
        *,
        outside: Callable[[httpx.Request], bool] = lambda request: False,
        answers: Callable[[httpx.Response], bool] = lambda response: True,
    ) -> Callable[[httpx.Request], httpx.Response]:
        """`handler` (a fake's) with each request checked against the spec on its way
        in and each answer on its way out, for a transport to call. Requests
        `outside` the spec (an OAuth token endpoint it leaves out) pass unchecked, and
        answers for which `answers` is False (statuses it does not document) too."""

        def checked(request: httpx.Request) -> httpx.Response:
            if outside(request):
                return handler(request)
            self.validate_request(request)
            response = handler(request)
            if answers(response):
                self.validate_response(request, response)
            return response

        return checked
