"""Where sync adapters run, and where `resolve_sync` finds an event loop.

Sync adapters run in daemon worker threads rather than a `ThreadPoolExecutor`:
the resolver returns at its deadline even when an adapter hangs, and the hung
call must not keep the dialer process from exiting (`ThreadPoolExecutor` joins its
non-daemon workers at interpreter exit).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import queue
import threading
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

__all__ = ["DaemonThreadPool", "LoopThread", "RaisedInThread", "run"]

log = logging.getLogger(__name__)

T = TypeVar("T")

_STOP = object()


class RaisedInThread(Exception):
    """Code in a worker thread raised a `BaseException` that is not an `Exception`
    (`KeyboardInterrupt`, `SystemExit`, `GeneratorExit`, a cancellation...).

    No signal is ever delivered to a worker thread, so it is not an interrupt: it is
    what that code raised, and it reaches the waiting event loop as an ordinary
    error (`__cause__` is the original). Raised as it was, asyncio would re-raise a
    `KeyboardInterrupt` or `SystemExit` out of the loop and stop the dialer.
    """

    def __init__(self, error: BaseException) -> None:
        super().__init__(f"{type(error).__name__} raised in a worker thread")
        self.__cause__ = error


class DaemonThreadPool:
    """At most `max_workers` daemon threads, started as work arrives."""

    def __init__(self, max_workers: int = 32, name: str = "predial-adapter") -> None:
        if max_workers < 1:
            raise ValueError("max_workers must be at least 1")
        self.max_workers = max_workers
        self._name = name
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._threads: list[threading.Thread] = []
        self._idle = 0
        self._lock = threading.Lock()
        self._closed = False

    def submit(self, fn: Callable[..., T], *args: Any) -> concurrent.futures.Future[T]:
        future: concurrent.futures.Future[T] = concurrent.futures.Future()
        with self._lock:
            if self._closed:
                raise RuntimeError("the adapter thread pool is closed")
            self._queue.put((future, fn, args))
            if self._idle > 0:
                self._idle -= 1  # an idle worker will take it
            elif len(self._threads) < self.max_workers:
                thread = threading.Thread(
                    target=self._work, name=f"{self._name}-{len(self._threads)}", daemon=True
                )
                self._threads.append(thread)
                thread.start()
            # else: every worker is busy; the call waits in the queue (and the
            # resolver's deadline still holds for its caller).
        return future

    def _work(self) -> None:
        while True:
            item = self._queue.get()
            if item is _STOP:
                return
            future, fn, args = item
            if future.set_running_or_notify_cancel():
                try:
                    future.set_result(fn(*args))
                except Exception as error:  # handed to the awaiting resolver, not lost
                    future.set_exception(error)
                except BaseException as error:  # not an interrupt here: see RaisedInThread
                    future.set_exception(RaisedInThread(error))
            with self._lock:
                self._idle += 1

    def shutdown(self) -> None:
        """Stop idle workers; a worker stuck in a hung call is abandoned (it is a daemon)."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            for _ in self._threads:
                self._queue.put(_STOP)


class LoopThread:
    """A private event loop in a daemon thread, for callers without one (`resolve_sync`).

    The loop runs until `stop()`: code on it that stops it (an adapter calling
    `loop.stop()`) or lets an exception out of a task does not end it, since no
    caller could be answered after that.
    """

    def __init__(self, name: str = "predial-sync") -> None:
        self._name = name
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._stopping = False
        self._grace = 5.0

    @property
    def loop(self) -> asyncio.AbstractEventLoop | None:
        return self._loop

    def _start(self) -> asyncio.AbstractEventLoop:
        with self._lock:
            if self._loop is None:
                loop = asyncio.new_event_loop()
                ready = threading.Event()
                self._stopping = False

                def run() -> None:
                    asyncio.set_event_loop(loop)
                    loop.call_soon(ready.set)
                    while True:
                        try:
                            loop.run_forever()
                        except BaseException as error:
                            # No signal reaches this thread: code running on the loop
                            # let this out of a task. The loop must go on serving.
                            log.error(
                                "%s escaped a task on resolve_sync's event loop; it goes on",
                                type(error).__name__,
                            )
                            continue
                        if self._stopping:
                            break
                        log.error("something stopped resolve_sync's event loop; it goes on")
                    _end_tasks(loop, self._grace)

                self._thread = threading.Thread(target=run, name=self._name, daemon=True)
                self._thread.start()
                ready.wait()
                self._loop = loop
            return self._loop

    def run(self, coro: Coroutine[Any, Any, T], timeout: float | None = None) -> T:
        loop = self._start()
        future = asyncio.run_coroutine_threadsafe(coro, loop)
        try:
            return future.result(timeout)
        except concurrent.futures.TimeoutError:
            future.cancel()
            raise

    def stop(self, grace: float = 5.0) -> None:
        """Stop the loop; what still runs on it is cancelled and given `grace` seconds."""
        with self._lock:
            loop, thread = self._loop, self._thread
            self._loop = self._thread = None
            self._stopping = True
            self._grace = grace
        if loop is None or thread is None:
            return
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=grace + 10)
        if not thread.is_alive():
            loop.close()


def run(main: Coroutine[Any, Any, T], *, grace: float = 2.0) -> T:
    """`asyncio.run(main)` for the CLI, except at the end: tasks still running are
    cancelled and given `grace` seconds, then abandoned. `asyncio.run` waits for
    every task, and a fetch whose adapter ignores its cancellation would keep the
    command from ever exiting."""
    loop = asyncio.new_event_loop()
    try:
        asyncio.set_event_loop(loop)
        return loop.run_until_complete(main)
    finally:
        try:
            _end_tasks(loop, grace)
        finally:
            asyncio.set_event_loop(None)
            loop.close()


def _end_tasks(loop: asyncio.AbstractEventLoop, grace: float = 5.0) -> None:
    """Cancel what still runs on a stopped loop and let it unwind (up to `grace`
    seconds), as `asyncio.run` does: a task left pending would keep its locks and
    files (an OAuth refresh holds its token file's lock) for the life of the process.
    A task still running after that (it ignores cancellation) is abandoned quietly."""
    pending = [task for task in asyncio.all_tasks(loop) if not task.done()]
    for task in pending:
        task.cancel()
    if pending:
        loop.run_until_complete(asyncio.wait(pending, timeout=grace))
        stuck = {task for task in pending if not task.done()}
        if stuck:
            log.warning("%d task(s) ignored cancellation and were abandoned", len(stuck))
            _quiet_when_destroyed(loop, stuck)
    loop.run_until_complete(loop.shutdown_asyncgens())


def _quiet_when_destroyed(loop: asyncio.AbstractEventLoop, tasks: set[asyncio.Task[Any]]) -> None:
    """asyncio reports an abandoned task as "destroyed but it is pending" when it is
    collected: said once above already, so not again for these."""
    previous = loop.get_exception_handler()
    ids = {id(task) for task in tasks}

    def handler(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        if id(context.get("task")) in ids:
            return
        if previous is not None:
            previous(loop, context)
        else:
            loop.default_exception_handler(context)

    loop.set_exception_handler(handler)
