"""The hook a plugin implements: hand predial its adapter classes.

```python
import predial

@predial.hookimpl
def register_adapters(register):
    register(MyCrmAdapter)
```

Plugins register classes; the resolver then calls the one adapter a campaign names.
In code, the class itself may be passed instead of a plugin:
`Resolver(campaigns, plugins=[MyCrmAdapter])`.
There is deliberately no `fetch_phone` hook: pluggy would call every plugin's
implementation, and the first to answer could dial a number from the wrong CRM.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pluggy

__all__ = ["hookimpl", "hookspec", "register_adapters"]

PROJECT_NAME = "predial"

hookspec = pluggy.HookspecMarker(PROJECT_NAME)
hookimpl = pluggy.HookimplMarker(PROJECT_NAME)


@hookspec
def register_adapters(register: Callable[[type[Any]], None]) -> None:
    """Register adapter classes by calling `register(AdapterClass)` for each one."""
