"""The adapters that ship with predial, registered like any third-party plugin."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ..hookspecs import hookimpl
from ._file import FileAdapter


@hookimpl
def register_adapters(register: Callable[[type[Any]], None]) -> None:
    register(FileAdapter)
