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

__all__ = ["is_adapter_fault"]


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
