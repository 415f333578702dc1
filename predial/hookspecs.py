"""The hook a plugin implements: hand predial its adapter classes.

```python
import predial

@predial.hookimpl
def register_adapters(register: predial.AdapterRegister) -> None:
    register(MyCrmAdapter)
```

Plugins register classes; the resolver then calls the one adapter a campaign names.
In code, the class itself may be passed instead of a plugin:
`Resolver(campaigns, plugins=[MyCrmAdapter])`.
There is deliberately no `fetch_phone` hook: pluggy would call every plugin's
implementation, and the first to answer could dial a number from the wrong CRM.
"""

from __future__ import annotations

from typing import Any, Protocol

import pluggy

__all__ = ["AdapterRegister", "hookimpl", "hookspec", "register_adapters"]

PROJECT_NAME = "predial"

hookspec = pluggy.HookspecMarker(PROJECT_NAME)
hookimpl = pluggy.HookimplMarker(PROJECT_NAME)


class AdapterRegister(Protocol):
    """What `register_adapters` is handed: call it once with each adapter class.

    Any class is taken (`type[Any]`): predial checks it as it registers it (a
    lowercase slug `name`, a `fetch_phone(external_id)` method) and lists the plugin
    as failed, saying what is wrong, rather than raising in the plugin's hook.
    """

    def __call__(self, adapter: type[Any], /) -> None: ...


@hookspec
def register_adapters(register: AdapterRegister) -> None:
    """Register adapter classes by calling `register(AdapterClass)` for each one."""
