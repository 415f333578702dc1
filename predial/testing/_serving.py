"""Serve an ASGI app with uvicorn on 127.0.0.1 in a background thread, for tests."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, Literal

import uvicorn
from starlette.types import ASGIApp

__all__ = ["serve"]

LOOPBACK = "127.0.0.1"


@contextmanager
def serve(
    app: ASGIApp,
    host: str = LOOPBACK,
    *,
    timeout: float = 10.0,
    lifespan: Literal["on", "off", "auto"] = "off",
) -> Iterator[str]:
    """Serve `app` on a free port of 127.0.0.1 and yield its base URL.

    ```python
    with serve(FakeLupitor()) as base_url:   # "http://127.0.0.1:54321"
        ...
    ```

    Returns once the server accepts connections; on exit, stops it and waits (up to
    `timeout` seconds each) for it to finish. Only 127.0.0.1 is ever bound: a test
    server must not be reachable from the network. `lifespan="on"` runs the app's
    startup and shutdown (the predial service's readiness and drain); off by default.
    """
    if host != LOOPBACK:
        raise ValueError(f"serve() binds to {LOOPBACK} only, not {host!r}")
    # Binding here, not in uvicorn, gives us the free port before the thread starts
    # and leaves no window in which another process could take it. IPPROTO_TCP, not
    # 0: asyncio sets TCP_NODELAY only on sockets that say they are TCP, and without
    # it each answer after a connection's first waits out a delayed ACK (~40 ms).
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    try:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        server = uvicorn.Server(uvicorn_config(app, lifespan=lifespan))
        thread = threading.Thread(
            target=server.run, kwargs={"sockets": [sock]}, name=f"uvicorn-{port}", daemon=True
        )
        thread.start()
        try:
            _wait_until_started(server, thread, timeout)
            yield f"http://{host}:{port}"
        finally:
            _stop(server, thread, timeout)
    finally:
        sock.close()


def uvicorn_config(
    app: ASGIApp, *, lifespan: Literal["on", "off", "auto"] = "off", **options: Any
) -> uvicorn.Config:
    """The config of predial's own servers (these tests', `predial fake-lupitor`)."""
    return uvicorn.Config(
        app,
        # log_config=None: uvicorn's default would reconfigure the process's logging,
        # which the tests of predial's own logging must not see; its warnings still
        # reach stderr through Python's last-resort handler.
        log_config=None,
        log_level="warning",
        access_log=False,
        lifespan=lifespan,
        # Pinned so the server is the same whatever optional extras are installed.
        loop="asyncio",
        http="h11",
        ws="none",
        **options,
    )


def _wait_until_started(server: uvicorn.Server, thread: threading.Thread, timeout: float) -> None:
    """Wait for uvicorn's listening socket (`started` is set once it listens)."""
    deadline = time.monotonic() + timeout
    while not server.started:
        if not thread.is_alive():
            raise RuntimeError("uvicorn stopped before it started serving")
        if time.monotonic() > deadline:
            raise TimeoutError(f"uvicorn did not start within {timeout} s")
        time.sleep(0.005)


def _stop(server: uvicorn.Server, thread: threading.Thread, timeout: float) -> None:
    server.should_exit = True
    thread.join(timeout)
    if thread.is_alive():
        # Open connections or a stuck request: give up on a graceful shutdown.
        server.force_exit = True
        thread.join(timeout)
