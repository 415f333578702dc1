"""`predial serve`: the resolver as the HTTP predial function a dialer calls before each dial.

```python
from predial.service import create_app

app = create_app("predial.toml")        # or create_app(resolver, settings=ServiceConfig(...))
# gunicorn -k uvicorn.workers.UvicornWorker 'mymodule:app'
```

The app needs the `server` extra: `pip install 'predial[server]'`. The wire contract
is in `docs/service.md` and at `GET /openapi.json`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ._auth import Caller
from ._settings import ApiKeyConfig, ServiceConfig

if TYPE_CHECKING:
    from ._app import PredialService, create_app

__all__ = [
    "ApiKeyConfig",
    "Caller",
    "PredialService",
    "ServiceConfig",
    "create_app",
]


def __getattr__(name: str) -> Any:
    # Starlette is an extra: `predial._config` reads ServiceConfig without it.
    if name in ("PredialService", "create_app"):
        from . import _app as app

        return getattr(app, name)
    raise AttributeError(f"module 'predial.service' has no attribute {name!r}")
