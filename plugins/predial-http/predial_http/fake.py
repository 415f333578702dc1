"""`FakeJsonCrm`: an in-house CRM that serves JSON records, to try an `http` campaign.

```python
fake = FakeJsonCrm("/api/v1/people/", tokens=["t0k3n"])
fake.records["p-1"] = {"person": {"mobile": "+12025550123"}}
with serve(fake) as base_url:        # then: path = "/api/v1/people/{id}"
    ...
```

A record is found by the last path segment under `prefix` (percent-decoded) or, with
`query_key`, by that query parameter. Unknown records get 404 `{"error": "not found"}`,
bad credentials 401, and the base's faults, latency and rate limit apply.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import unquote

import httpx

from predial.testing import FakeCrm, json_response

__all__ = ["FakeJsonCrm"]


class FakeJsonCrm(FakeCrm):
    def __init__(self, prefix: str, *, query_key: str | None = None, **options: Any) -> None:
        super().__init__(**options)
        self.prefix = prefix if prefix.endswith("/") or query_key else prefix + "/"
        self.query_key = query_key
        self.records: dict[str, Any] = {}

    def unauthorized(self) -> httpx.Response:
        return json_response(401, {"error": "unauthorized"})

    def route(self, request: httpx.Request) -> httpx.Response:
        raw_path = request.url.raw_path.decode("ascii").split("?")[0]
        if self.query_key is not None:
            if raw_path != self.prefix.rstrip("/"):
                return json_response(404, {"error": "no such endpoint"})
            key = request.url.params.get(self.query_key)
        else:
            segment = raw_path.removeprefix(self.prefix)
            if not raw_path.startswith(self.prefix) or not segment or "/" in segment:
                return json_response(404, {"error": "no such endpoint"})
            key = unquote(segment)
        if key is None or key not in self.records:
            return json_response(404, {"error": "not found"})
        return json_response(200, self.records[key])
