"""`RecordingTransport`: a mock transport that keeps every exchange, for adapter tests.

Give it to the adapter as its `transport` (a campaign's settings may carry it too)
and read back what was sent and answered:

```python
crm = RecordingTransport(fake.handler)
adapter = AcmeAdapter(base_url="http://127.0.0.1:7201", token="k", transport=crm)
await adapter.fetch_phone("c-1")
assert crm.calls.last.request.url.path == "/v2/contacts/c-1"
assert crm.calls.last.response.status_code == 200
```

Nothing leaves the process: every request is answered by the handler (a `FakeCrm`'s
`handler`, or one that checks requests against a spec on their way to it).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass

import httpx

__all__ = ["Call", "Calls", "RecordingTransport"]


@dataclass(frozen=True)
class Call:
    """One exchange: the request as sent, the response as answered."""

    request: httpx.Request
    response: httpx.Response


class Calls(list[Call]):
    """The exchanges so far, oldest first."""

    @property
    def last(self) -> Call:
        if not self:
            raise AssertionError("no request was sent")
        return self[-1]

    @property
    def call_count(self) -> int:
        return len(self)


class RecordingTransport(httpx.MockTransport):
    """`httpx.MockTransport(handler)` that records each call in `calls`."""

    def __init__(self, handler: Callable[[httpx.Request], httpx.Response]) -> None:
        self.calls = Calls()
        self._lock = threading.Lock()  # served fakes answer from uvicorn's thread too

        def recording(request: httpx.Request) -> httpx.Response:
            response = handler(request)
            with self._lock:
                self.calls.append(Call(request, response))
            return response

        super().__init__(recording)
