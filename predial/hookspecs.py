"""The hooks a plugin implements: hand predial its adapter classes, and its external
do-not-call sources.

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

from collections.abc import Awaitable, Callable
from typing import Any, Literal, Protocol

import pluggy

__all__ = [
    "AdapterRegister",
    "DncSourceRegister",
    "hookimpl",
    "hookspec",
    "register_adapters",
    "register_dnc_sources",
]

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


class DncSourceRegister(Protocol):
    """What `register_dnc_sources` is handed: call it once per external source.

    `name`: a lowercase slug campaigns name it by (`compliance.dnc_sources`).
    `check(e164)`: True when the source lists the number, False when it does not;
    a plain function (run in a thread) or an `async def`. `timeout`: seconds the
    source may take. `on_failure`: what an error, a timeout or an answer that is not
    a bool means: `"closed"` (the default) refuses the dial for now (`retry_later`,
    after `retry_after` seconds), `"open"` dials as if the source had said no (and
    logs it). predial checks the arguments as it registers them rather than raising
    in the plugin's hook: a wrong one is logged, naming the plugin, and that plugin's
    sources are left out (a campaign naming one then fails to start, saying why).
    """

    def __call__(
        self,
        name: str,
        check: Callable[[str], Awaitable[bool] | bool],
        *,
        timeout: float = 1.0,
        on_failure: Literal["closed", "open"] = "closed",
        retry_after: float = 60.0,
    ) -> None: ...


@hookspec
def register_dnc_sources(register: DncSourceRegister) -> None:
    """Register external do-not-call sources: `register("name", check, timeout=...)`."""
