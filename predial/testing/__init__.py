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
    from ._check import CheckRun, served_check
    from ._contract import HOSTILE_IDS, AdapterContract
    from ._fake_crm import FakeCrm, FakeOAuth, body_json, json_response
    from ._fake_lupitor import ApiKey, FakeLupitor, Faults, RequestRecord
    from ._http_contracts import OAuthAdapterContract, RateLimitContract
    from ._openapi import OpenApiSpec
    from ._recording import RecordingTransport
    from ._redis_server import RedisServer
    from ._serving import serve

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
    "RedisServer",
    "RequestRecord",
    "body_json",
    "json_response",
    "serve",
    "served_check",
]

_HOMES = {
    "HOSTILE_IDS": "_contract",
    "AdapterContract": "_contract",
    "ApiKey": "_fake_lupitor",
    "CheckRun": "_check",
    "FakeCrm": "_fake_crm",
    "FakeLupitor": "_fake_lupitor",
    "FakeOAuth": "_fake_crm",
    "Faults": "_fake_lupitor",
    "OAuthAdapterContract": "_http_contracts",
    "OpenApiSpec": "_openapi",
    "RateLimitContract": "_http_contracts",
    "RecordingTransport": "_recording",
    "RedisServer": "_redis_server",
    "RequestRecord": "_fake_lupitor",
    "body_json": "_fake_crm",
    "json_response": "_fake_crm",
    "serve": "_serving",  # not "serve": the submodule would shadow the function
    "served_check": "_check",
}


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module 'predial.testing' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{home}", __name__), name)
    globals()[name] = value
    return value
