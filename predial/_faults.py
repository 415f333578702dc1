"""Telling an adapter's failure from what must propagate.

Adapters, and the objects they return, run code predial does not control: their
methods, `__str__`, `__bool__`, `__float__` can raise anything. Nearly all of it is
the adapter's failure, to be turned into a refusal; two things are not:

- the cancellation of the task that is awaiting the adapter (a deadline, the
  dialer cancelling, the loop closing): `CancelledError` out of an `await` while
  that task is `cancelling()`, and the `GeneratorExit` of its coroutine being
  closed. A `CancelledError` nobody asked for, or either one raised by synchronous
  code (reading an answer), is the adapter's own, and its failure;
- `KeyboardInterrupt` or `SystemExit` in the main thread, the only thread Python
  delivers signals to. In any other thread (a sync adapter's worker, the private
  loop of `resolve_sync`, a dialer's loop in a thread of its own) the adapter raised
  it, and letting it out would stop that thread's event loop for good.
"""

from __future__ import annotations

import asyncio
import threading
from typing import Any

__all__ = [
    "is_adapter_fault",
    "retrieve_exception",
    "safe_flag",
    "safe_repr",
    "safe_text",
    "type_name",
]


def is_adapter_fault(error: BaseException, awaited_by: asyncio.Task[Any] | None = None) -> bool:
    """True when `error`, raised from adapter code or an adapter's object, is the
    adapter's failure; False when it must propagate (see the module docstring).

    `awaited_by` is the task that was awaiting the adapter when `error` came out:
    only an `await` can deliver that task's cancellation, or the `GeneratorExit` of
    its coroutine being closed (an abandoned task collected). Raised by synchronous
    code (reading an answer, an error's text), those are the adapter's own.
    """
    if isinstance(error, Exception):
        return True
    if isinstance(error, (KeyboardInterrupt, SystemExit)):
        return threading.current_thread() is not threading.main_thread()
    if awaited_by is None:
        return True
    if isinstance(error, asyncio.CancelledError):
        return awaited_by.cancelling() == 0
    if isinstance(error, GeneratorExit):
        # Closed from outside (garbage collection of an abandoned task) when the
        # task awaiting the adapter is not the one stepping this code.
        try:
            return asyncio.current_task() is awaited_by
        except RuntimeError:  # no running loop: being closed, not stepped
            return False
    return True


def type_name(value: object) -> str:
    """The name of `value`'s type (`?` when even that raises: a hostile metaclass)."""
    try:
        return str.__str__(type(value).__name__)
    except BaseException as error:
        if not is_adapter_fault(error):
            raise
        return "?"


def safe_text(value: object) -> str:
    """`str(value)` as a plain `str`, or the type's name in angle brackets when that
    raises. A str subclass is read by its own data: its `__str__` may lie or raise,
    and what another `__str__` returns may be a subclass whose methods raise."""
    try:
        text = value if isinstance(value, str) else str(value)
        if isinstance(text, str):
            return str.__str__(text)
    except BaseException as error:
        if not is_adapter_fault(error):
            raise
    return f"<{type_name(value)}>"


def safe_repr(value: object) -> str:
    """`repr(value)` as a plain `str`, or the type's name in angle brackets."""
    try:
        return str.__str__(repr(value))
    except BaseException as error:
        if not is_adapter_fault(error):
            raise
    return f"<{type_name(value)}>"


def safe_flag(value: object) -> bool | None:
    """An adapter's flag as a bool; None when its truth value cannot be read."""
    try:
        return bool(value)
    except BaseException as error:
        if not is_adapter_fault(error):
            raise
        return None


def retrieve_exception(future: asyncio.Future[Any]) -> None:
    """A done callback: read how `future` ended, so an exception that propagated some
    other way (or that nobody waits for) is not reported as "never retrieved"."""
    if not future.cancelled():
        future.exception()
