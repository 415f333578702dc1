"""Single-flight CRM fetches that run in the first caller's own task.

When several callers want the same (campaign, external id), one fetch serves
them all. The obvious design runs that fetch in a task of its own and has every
caller await it; on CPython 3.11 that costs a task and two event-loop iterations
per cache miss, and, worse, it splits a dialer's work across iterations: every
worker whose CRM call finished in one iteration normalises its number in the
next and starts its next call in the one after, so a hundred concurrent workers
move in lock-step waves and each wave waits for all the others' CPU work.

So the first caller (the *leader*) drives the fetch coroutine itself, like an
eager task: a fetch that never suspends (an adapter answering from memory)
costs no task, no timer and no loop iteration, and a worker's next CRM call
starts in the same step that finished its last one. Followers await a future of
their own. Each future the fetch waits on is relayed to the leader through a
proxy future, so cancelling the leader cancels only the proxy: the fetch is then
handed, at the point where it waits, to a task that finishes it for the
followers. The deadline timer is armed at the first suspension and cancels the
future the fetch waits on; the fetch then ends as a timeout.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine, Generator
from functools import partial
from typing import Any, Generic, TypeVar

__all__ = ["Flight"]

T = TypeVar("T")

_Step = tuple[bool, Any]  # (throw?, value): how to resume the fetch coroutine next


def _relay(proxy: asyncio.Future[None], _done: asyncio.Future[Any]) -> None:
    if not proxy.done():
        proxy.set_result(None)


class Flight(Generic[T]):
    """One fetch in flight: its coroutine, its waiters and its deadline.

    `forget` is called once the flight is over, to take it out of the table of
    flights in progress.
    """

    __slots__ = (
        "_blocked_on",
        "_coro",
        "_deadline",
        "_forget",
        "_loop",
        "_on_timeout",
        "_task",
        "_timer",
        "expired",
        "waiters",
    )

    def __init__(
        self,
        coro: Coroutine[Any, Any, T],
        loop: asyncio.AbstractEventLoop,
        deadline: float,
        on_timeout: Callable[[], T],
        forget: Callable[[], object],
    ) -> None:
        self._coro = coro
        self._loop = loop
        self._deadline = deadline  # in loop.time()
        self._on_timeout = on_timeout
        self._forget = forget
        self._blocked_on: asyncio.Future[Any] | None = None
        self._task: asyncio.Task[None] | None = None
        self._timer: asyncio.TimerHandle | None = None
        self.expired = False
        self.waiters: list[asyncio.Future[T]] = []

    def follow(self) -> asyncio.Future[T]:
        """A future of this caller's own that the flight's outcome will complete."""
        waiter: asyncio.Future[T] = self._loop.create_future()
        self.waiters.append(waiter)
        return waiter

    def __await__(self) -> Generator[Any, None, T]:
        """The leader awaits the flight itself: it drives the fetch in its own task."""
        try:
            outcome = yield from self._lead()
        except asyncio.CancelledError:
            if self._task is None:  # not handed over: nobody will finish it
                self._abort()
            raise
        except BaseException:
            self._abort()
            raise
        self._finish(outcome)
        return outcome

    # -- the deadline ------------------------------------------------------------

    def _arm(self) -> None:
        if self._timer is None:
            self._timer = self._loop.call_at(self._deadline, self._expire)

    def _expire(self) -> None:
        self.expired = True
        blocked = self._blocked_on
        if blocked is not None and not blocked.done():
            blocked.cancel()

    # -- the end ---------------------------------------------------------------------

    def _finish(self, outcome: T) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._forget()
        for waiter in self.waiters:
            if not waiter.done():  # a cancelled follower's future is already done
                waiter.set_result(outcome)

    def _abort(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._forget()
        for waiter in self.waiters:
            waiter.cancel()

    # -- driving the coroutine ----------------------------------------------------

    def _resume(self, step: _Step) -> tuple[bool, Any]:
        """Run the fetch to its next suspension: (True, result) when it finished."""
        throw, value = step
        if self.expired and not throw:
            throw, value = True, asyncio.CancelledError()
        try:
            yielded = self._coro.throw(value) if throw else self._coro.send(value)
        except StopIteration as stop:
            return True, stop.value
        except asyncio.CancelledError:
            if self.expired:
                return True, self._on_timeout()
            raise
        return False, yielded

    def _lead(self) -> Generator[Any, None, T]:
        step: _Step = (False, None)
        while True:
            finished, value = self._resume(step)
            if finished:
                return value  # type: ignore[no-any-return]
            self._arm()
            step = (False, None)  # the coroutine reads its future's result itself
            if value is None:  # a bare `yield` (asyncio.sleep(0)): let the loop run once
                try:
                    yield None
                except asyncio.CancelledError:
                    self._hand_over((False, None))
                    raise
                except BaseException as error:
                    step = (True, error)
                continue
            future: asyncio.Future[Any] = value
            self._blocked_on = future
            proxy: asyncio.Future[None] = self._loop.create_future()
            future.add_done_callback(partial(_relay, proxy))
            proxy._asyncio_future_blocking = True  # as Future.__await__ does before yielding
            try:
                yield proxy
            except asyncio.CancelledError:
                # The leader was cancelled: its proxy, not the fetch's future. A task
                # takes the fetch over where it waits, for the followers' sake.
                self._hand_over(None)
                raise
            except BaseException as error:
                step = (True, error)
            self._blocked_on = None

    def _hand_over(self, step: _Step | None) -> None:
        self._task = self._loop.create_task(self._finish_alone(step))

    async def _finish_alone(self, step: _Step | None) -> None:
        try:
            outcome = await _Follow(self, step)
        except BaseException:
            self._abort()
            raise
        self._finish(outcome)


class _Follow(Generic[T]):
    """The rest of a flight, driven by its own task after the leader left."""

    __slots__ = ("_flight", "_step")

    def __init__(self, flight: Flight[T], step: _Step | None) -> None:
        self._flight = flight
        self._step = step

    def __await__(self) -> Generator[Any, None, T]:
        flight = self._flight
        step: _Step = self._step or (False, None)
        blocked = flight._blocked_on
        if self._step is None and blocked is not None:
            # First wait for the future the fetch was waiting on when the leader left.
            blocked._asyncio_future_blocking = True
            try:
                yield blocked
            except BaseException as error:
                step = (True, error)
            flight._blocked_on = None
        while True:
            finished, value = flight._resume(step)
            if finished:
                return value  # type: ignore[no-any-return]
            flight._blocked_on = value
            step = (False, None)
            try:
                yield value
            except BaseException as error:  # the loop is shutting down: let the fetch clean up
                step = (True, error)
            flight._blocked_on = None
