"""Telling an adapter's failure from what must propagate.

Adapters, and the objects they return, run code predial does not control: their
methods, `__str__`, `__bool__`, `__float__` can raise anything. Nearly all of it is
the adapter's failure, to be turned into a refusal; two things are not:

- the cancellation of the task that is running (a deadline, the dialer cancelling,
  the loop closing): `CancelledError` while the task is `cancelling()`. A
  `CancelledError` nobody asked for is the adapter's own, and its failure;
- `KeyboardInterrupt` or `SystemExit` in the main thread, the only thread Python
  delivers signals to. In any other thread (a sync adapter's worker, the private
  loop of `resolve_sync`, a dialer's loop in a thread of its own) the adapter raised
  it, and letting it out would stop that thread's event loop for good.
"""

from __future__ import annotations

import asyncio
import threading

__all__ = ["is_adapter_fault"]


def is_adapter_fault(error: BaseException) -> bool:
    """True when `error`, raised from adapter code or an adapter's object, is the
    adapter's failure; False when it must propagate (see the module docstring)."""
    if isinstance(error, Exception):
        return True
    if isinstance(error, (KeyboardInterrupt, SystemExit)):
        return threading.current_thread() is not threading.main_thread()
    if isinstance(error, asyncio.CancelledError):
        try:
            task = asyncio.current_task()
        except RuntimeError:  # no running loop: nobody is cancelling anything
            return True
        return task is None or task.cancelling() == 0
    return True
