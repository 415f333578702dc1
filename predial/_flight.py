"""Single-flight CRM fetches: one adapter call per key, shared by every caller.

Each fetch runs in a task of its own, so the adapter sees a normal asyncio world
(`asyncio.current_task()`, `asyncio.timeout`, task groups and httpx/anyio cancel
scopes belong to the fetch, and its context variables stay its own), and
cancelling any caller cancels only that caller. Callers wait on futures of their
own, which the fetch completes itself when it ends, so nobody's cancellation
reaches the shared task.

On Python 3.12+ the task starts eagerly (`asyncio.eager_task_factory`): it runs
until its first real wait inside the caller's step, so an adapter that answers
from memory costs no event-loop iteration, and a dialer worker's next CRM call
starts in the same step that finished its last one, instead of all workers'
calls starting together one iteration later (lock-step waves, each waiting for
the whole wave's CPU work). On 3.11 the task starts on the next iteration.

The task returns the adapter's raw answer; the first caller to wake interprets it
(number picking and the phone policy) in its own step, and the others reuse that.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any, Generic, TypeVar

__all__ = ["Flight", "start_task"]

T = TypeVar("T")
R = TypeVar("R")

_EAGER = getattr(asyncio, "eager_task_factory", None)


def start_task(loop: asyncio.AbstractEventLoop, coro: Coroutine[Any, Any, T]) -> asyncio.Task[T]:
    """A task for `coro`, started eagerly where the Python version allows."""
    if _EAGER is not None:
        task: asyncio.Task[T] = _EAGER(loop, coro)
        return task
    return loop.create_task(coro)


class Flight(Generic[R, T]):
    """One fetch in flight: its task, the callers' futures, its raw answer `R`
    and, once a caller has interpreted it, the outcome `T`."""

    __slots__ = ("answer", "calling", "done", "outcome", "task", "waiters")

    def __init__(self) -> None:
        self.task: asyncio.Task[None] | None = None
        self.waiters: list[asyncio.Future[None]] = []
        self.answer: R | None = None
        self.outcome: T | None = None
        self.done = False
        #: Whether the adapter is being called (not the shared tier being waited on):
        #: only then is a deadline cut the CRM's failure, for the breaker.
        self.calling = False

    def follow(self, loop: asyncio.AbstractEventLoop) -> asyncio.Future[None]:
        """A future of the caller's own, completed when the fetch ends."""
        waiter: asyncio.Future[None] = loop.create_future()
        self.waiters.append(waiter)
        return waiter

    def land(self, answer: R) -> bool:
        """Record the answer and wake the callers; False when none is left waiting."""
        self.answer = answer
        self.done = True
        waiting = False
        for waiter in self.waiters:
            if not waiter.done():  # a cancelled caller's future is already done
                waiter.set_result(None)
                waiting = True
        return waiting
