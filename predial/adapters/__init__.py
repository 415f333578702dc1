"""What an adapter is, and helpers for the people who write them.

An adapter is a class with a `name` (a lowercase slug) and a `fetch_phone(external_id)`
method, plain or `async def`. It is constructed with the campaign's settings as
keyword arguments and returns `None`, a raw phone string, or a `CrmContact`. It
raises `RecordNotFound`, `AdapterUnavailable` or `AdapterAuthError`; anything else it
raises is logged and treated as the CRM being unavailable.
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Awaitable
from typing import Any, Protocol, runtime_checkable

from .._models import CrmContact

__all__ = ["ADAPTER_NAME", "Adapter", "FetchResult", "adapter_problems", "close_adapter"]

FetchResult = CrmContact | str | None

#: What an adapter name may look like: a lowercase slug.
ADAPTER_NAME = re.compile(r"[a-z][a-z0-9_-]{0,62}")


@runtime_checkable
class Adapter(Protocol):
    """The shape the resolver calls. `fetch_phone` may also be `async def`."""

    name: str

    def fetch_phone(self, external_id: str) -> FetchResult | Awaitable[FetchResult]: ...


def adapter_problems(cls: object) -> list[str]:
    """What keeps `cls` from being an adapter class (empty when it is one)."""
    if not isinstance(cls, type):
        return [f"{cls!r} is not a class"]
    problems = []
    name = getattr(cls, "name", None)
    if not isinstance(name, str) or not ADAPTER_NAME.fullmatch(name):
        problems.append(
            f"{cls.__qualname__}.name must be a lowercase slug such as 'hubspot', not {name!r}"
        )
    fetch = getattr(cls, "fetch_phone", None)
    if not callable(fetch):
        problems.append(f"{cls.__qualname__} has no fetch_phone(external_id) method")
    else:
        try:
            inspect.signature(fetch).bind(None, "external-id")
        except TypeError:
            problems.append(f"{cls.__qualname__}.fetch_phone must take one argument, external_id")
    return problems


async def close_adapter(adapter: Any) -> None:
    """Close an adapter through `aclose()` or `close()`, whichever it has."""
    closer = getattr(adapter, "aclose", None) or getattr(adapter, "close", None)
    if closer is None:
        return
    result = closer()
    if inspect.isawaitable(result):
        await result
