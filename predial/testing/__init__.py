"""Test doubles and kits: a fake Lupitor Leads API, fake CRMs, the adapter contract.

```python
from predial.testing import FakeLupitor, serve

fake = FakeLupitor(version="v1", window=0.6)
async with httpx.AsyncClient(transport=httpx.ASGITransport(app=fake), base_url="http://x") as c:
    ...                                   # in-process
with serve(fake) as base_url:             # or a real uvicorn on 127.0.0.1
    ...
```

- `AdapterContract` (needs pytest): the checks every CRM adapter must pass.
- `RateLimitContract`, `OAuthAdapterContract` (need pytest): what an HTTP adapter
  does with its CRM's rate limits and OAuth, against your fake CRM.
- `FakeCrm`, `FakeOAuth`: the base of the fake CRMs the first-party plugins ship.
- `served_check` (needs the `cli` and `server` extras): `predial check` against a
  fake CRM served on 127.0.0.1, credentials checked absent from the output.
- `RecordingTransport`: a mock transport that keeps every request and answer.
- `OpenApiSpec` (needs openapi-core): checks requests against a CRM's OpenAPI spec.
- `FakeLupitor`, `serve`: need the `server` extra (starlette, uvicorn).

Names are imported on first use, so `AdapterContract` does not pull in uvicorn and
`FakeLupitor` does not pull in pytest.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .check import CheckRun, served_check
    from .contract import HOSTILE_IDS, AdapterContract
    from .fake_crm import FakeCrm, FakeOAuth, json_response
    from .fake_lupitor import ApiKey, FakeLupitor, Faults, RequestRecord
    from .http_contracts import OAuthAdapterContract, RateLimitContract
    from .openapi import OpenApiSpec
    from .recording import RecordingTransport
    from .serving import serve

__all__ = [
    "HOSTILE_IDS",
    "AdapterContract",
    "ApiKey",
    "CheckRun",
    "FakeCrm",
    "FakeLupitor",
    "FakeOAuth",
    "Faults",
    "OAuthAdapterContract",
    "OpenApiSpec",
    "RateLimitContract",
    "RecordingTransport",
    "RequestRecord",
    "json_response",
    "serve",
    "served_check",
]

_HOMES = {
    "HOSTILE_IDS": "contract",
    "AdapterContract": "contract",
    "ApiKey": "fake_lupitor",
    "CheckRun": "check",
    "FakeCrm": "fake_crm",
    "FakeLupitor": "fake_lupitor",
    "FakeOAuth": "fake_crm",
    "Faults": "fake_lupitor",
    "OAuthAdapterContract": "http_contracts",
    "OpenApiSpec": "openapi",
    "RateLimitContract": "http_contracts",
    "RecordingTransport": "recording",
    "RequestRecord": "fake_lupitor",
    "json_response": "fake_crm",
    "serve": "serving",  # not "serve": the submodule would shadow the function
    "served_check": "check",
}


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module 'predial.testing' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{home}", __name__), name)
    globals()[name] = value
    return value
