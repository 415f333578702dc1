"""Tasks started in the background and kept until they end (asyncio keeps only a
weak reference to a task, so one nobody holds may be collected mid-way)."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine, Iterator
from typing import Any

__all__ = ["Background"]


class Background:
    """A set of background tasks, possibly on several event loops."""

    def __init__(self) -> None:
        self._tasks: set[asyncio.Task[Any]] = set()

    def spawn(self, work: Coroutine[Any, Any, Any]) -> asyncio.Task[Any] | None:
        """Run `work` on the running loop; None (and `work` closed) without one."""
        try:
            task = asyncio.get_running_loop().create_task(work)
        except RuntimeError:
            work.close()
            return None
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    def on(self, loop: asyncio.AbstractEventLoop) -> list[asyncio.Task[Any]]:
        """The tasks still running on `loop`."""
        return [task for task in self._tasks if task.get_loop() is loop]

    def __iter__(self) -> Iterator[asyncio.Task[Any]]:
        return iter(list(self._tasks))  # a copy: tasks end (and leave) meanwhile

    async def wait(self, loop: asyncio.AbstractEventLoop, seconds: float) -> None:
        """Wait up to `seconds` for the tasks of `loop` to end."""
        tasks = self.on(loop)
        if tasks:
            await asyncio.wait(tasks, timeout=seconds)
