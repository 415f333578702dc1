"""Test doubles for code that talks to Lupitor: a fake Leads API and a server for it.

Needs the `server` extra (starlette, uvicorn).

```python
from predial.testing import FakeLupitor, serve

fake = FakeLupitor(version="v1", window=0.6)
async with httpx.AsyncClient(transport=httpx.ASGITransport(app=fake), base_url="http://x") as c:
    ...                                   # in-process
with serve(fake) as base_url:             # or a real uvicorn on 127.0.0.1
    ...
```
"""

from __future__ import annotations

from .fake_lupitor import ApiKey, FakeLupitor, Faults, RequestRecord
from .serve import serve

__all__ = ["ApiKey", "FakeLupitor", "Faults", "RequestRecord", "serve"]
