"""`predial serve`: uvicorn around the app, with a drain on SIGTERM and N workers.

On SIGTERM (or Ctrl-C) the service stops admitting requests (503 with Retry-After,
`/readyz` 503), waits `drain_delay` seconds so a load balancer notices, closes the
listener, lets in-flight resolves finish within their deadline, closes the adapters
and exits 0. A second Ctrl-C stops at once.

With `--workers N`, uvicorn's supervisor runs N processes on one socket; each builds
its app from `PREDIAL_CONFIG` and the metrics use prometheus-client's multiprocess
mode in a fresh directory (wiped at start, as its documentation requires).
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import json
import logging
import os
import shutil
import signal
import socket
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from types import FrameType
from typing import Any

import uvicorn
from uvicorn.config import STARTUP_FAILURE
from uvicorn.supervisors import Multiprocess

from .._faults import safe_text
from ..errors import ConfigurationError
from ._settings import ServiceConfig

__all__ = [
    "DrainingServer",
    "configure_logging",
    "configure_worker",
    "drain_on_signal",
    "run",
    "stop_quietly_until_serving",
    "worker_app",
]

log = logging.getLogger(__name__)

_LOG_ENV = "PREDIAL_SERVE_ACCESS_LOG"
_VERBOSE_ENV = "PREDIAL_SERVE_VERBOSE"
_DRAIN_ENV = "PREDIAL_SERVE_DRAIN_DELAY"
# The settings the command line overrides (--host, --port, --workers, --access-log).
_SETTINGS_ENV = "PREDIAL_SERVE_SETTINGS"
_OVERRIDABLE = ("host", "port", "workers", "access_log")
_WORKER_ENV = (
    "PREDIAL_CONFIG",
    "PROMETHEUS_MULTIPROC_DIR",
    _LOG_ENV,
    _VERBOSE_ENV,
    _DRAIN_ENV,
    _SETTINGS_ENV,
)


class DrainingServer(uvicorn.Server):
    """uvicorn's server, draining the app before it stops listening."""

    def __init__(self, config: uvicorn.Config, drain_delay: float = 0.0) -> None:
        super().__init__(config)
        self.drain_delay = drain_delay
        self.drain_started: float | None = None

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        if self.drain_started is None:
            from ._app import LIVE

            self.drain_started = time.monotonic()
            for service in list(LIVE):
                service.drain()
            if self.drain_delay <= 0:
                self.should_exit = True
            # Not recorded as a captured signal: uvicorn would raise it again after
            # the graceful stop, and the process would die of it instead of exiting 0.
            return
        if sig == signal.SIGINT:
            self.force_exit = True
        self.should_exit = True

    def run(self, sockets: list[socket.socket] | None = None) -> None:
        """uvicorn's `run`, except that a task still running after the shutdown (a
        fetch whose adapter ignores its cancellation) is given a second and left,
        where `asyncio.run` would wait for it forever and the process never exit."""
        make_loop = self.config.get_loop_factory()
        loop = make_loop() if make_loop is not None else asyncio.new_event_loop()
        try:
            loop.run_until_complete(self.serve(sockets=sockets))
        finally:
            try:
                _cancel_stragglers(loop, grace=1.0)
            finally:
                loop.close()

    async def on_tick(self, counter: int) -> bool:
        if (
            self.drain_started is not None
            and not self.should_exit
            and time.monotonic() >= self.drain_started + self.drain_delay
        ):
            self.should_exit = True
        return await super().on_tick(counter)


def configure_logging(access_log: str, verbose: int = 0) -> None:
    """Access lines to stdout, everything else to stderr; nothing uvicorn-styled."""
    err = logging.StreamHandler(sys.stderr)
    err.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    level = logging.DEBUG if verbose > 1 else logging.INFO
    for name in ("predial", "uvicorn.error"):
        logger = logging.getLogger(name)
        logger.handlers[:] = [err]
        logger.setLevel(level)
        logger.propagate = False
    access = logging.getLogger("predial.access")
    out = logging.StreamHandler(sys.stdout)
    out.setFormatter(
        logging.Formatter("%(message)s" if access_log == "json" else "%(asctime)s %(message)s")
    )
    access.handlers[:] = [out]
    access.setLevel(logging.INFO if access_log != "off" else logging.WARNING)
    access.propagate = False


def configure_worker() -> None:
    """In a worker process: the logging the parent was asked for."""
    access_log = os.environ.get(_LOG_ENV)
    if access_log:
        configure_logging(access_log, int(os.environ.get(_VERBOSE_ENV, "0")))
    if _DRAIN_ENV in os.environ and threading.current_thread() is threading.main_thread():
        drain_on_signal(float(os.environ[_DRAIN_ENV]))


def worker_app() -> Any:
    """The app of one `--workers` process: the configuration at `PREDIAL_CONFIG` with
    the parent's command-line settings (`app_from_environment` would serve the file's:
    `--access-log json` would log text).

    A worker that cannot build it exits with uvicorn's startup-failure code, on which
    the supervisor stops, rather than dying of the exception and being restarted by
    the supervisor, failing the same way, forever.
    """
    from .._config import load_config
    from ._app import create_app

    try:
        configure_worker()
        path = os.environ["PREDIAL_CONFIG"]
        service = load_config(path).checked_service()
        overrides = json.loads(os.environ.get(_SETTINGS_ENV, "{}"))
        settings = service.model_validate({**service.model_dump(), **overrides})
        app = create_app(path, settings=settings)
        use_line_writer(app, settings)
        return app
    except Exception as error:
        log.error("worker %d cannot start: %s", os.getpid(), safe_text(error))
        sys.exit(STARTUP_FAILURE)


def use_line_writer(app: Any, settings: ServiceConfig) -> None:
    """Access lines of the app to stdout directly (see `accesslog.LineWriter`)."""
    from ._accesslog import LineWriter

    if settings.access_log != "off":
        app.state.predial.access_writer = LineWriter(
            sys.stdout, timestamps=settings.access_log == "text"
        )


def drain_on_signal(drain_delay: float) -> None:
    """In a worker process (uvicorn's supervisor runs plain uvicorn servers): drain
    the app on SIGTERM and hand the signal to uvicorn `drain_delay` seconds later.

    Called while the app is built, which uvicorn does with its own handlers in place.
    """
    from ._app import LIVE

    previous = signal.getsignal(signal.SIGTERM)
    if not callable(previous):
        return

    def drain(sig: int, frame: FrameType | None) -> None:
        for service in list(LIVE):
            service.drain()
        if drain_delay <= 0:
            previous(sig, frame)
            return
        timer = threading.Timer(drain_delay, signal.raise_signal, (sig,))
        timer.daemon = True
        signal.signal(signal.SIGTERM, previous)
        timer.start()

    signal.signal(signal.SIGTERM, drain)


def _bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # IPPROTO_TCP, not 0: asyncio sets TCP_NODELAY only on sockets that say they are
    # TCP; without it each keep-alive answer after the first waits out a delayed ACK.
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host.strip("[]"), port))
    except OSError as error:
        sock.close()
        raise ConfigurationError(
            f"cannot listen on {host}:{port}: {error.strerror or error}"
        ) from None
    sock.set_inheritable(True)
    return sock


def _uvicorn_config(app: Any, settings: ServiceConfig, shutdown_timeout: float) -> uvicorn.Config:
    return uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        factory=isinstance(app, str),
        workers=settings.workers,
        lifespan="on",
        # predial logs its own access lines (masked, structured); none from uvicorn.
        log_config=None,
        access_log=False,
        server_header=False,
        timeout_graceful_shutdown=max(1, round(shutdown_timeout)),
        proxy_headers=bool(settings.forwarded_allow_ips),
        forwarded_allow_ips=settings.forwarded_allow_ips or None,
        http=settings.http,
        limit_concurrency=settings.max_connections,
    )


def run(
    config_path: str | os.PathLike[str],
    settings: ServiceConfig,
    *,
    verbose: int = 0,
    on_ready: Any = None,
) -> None:
    """Serve the campaigns of `config_path` until SIGTERM; raise on a bad setup.

    Everything that can be wrong with the configuration (campaigns, adapters,
    credentials, the address) raises `ConfigurationError` before anything listens.
    """
    from ._app import create_app

    try:
        settings.check_listening(settings.host)
    except ValueError as error:
        raise ConfigurationError(f"{config_path}: {error}") from None
    configure_logging(settings.access_log, verbose)
    path = str(Path(config_path).resolve())
    with stop_quietly_until_serving() as stopped:
        # Built here in every case: a bad campaign or adapter fails before any worker.
        app = create_app(path, settings=settings)
    if stopped:
        return
    use_line_writer(app, settings)
    service = app.state.predial
    timeout = settings.shutdown_timeout or service.batch_deadline + 5.0
    sock: socket.socket | None = None
    try:
        with stop_quietly_until_serving() as stopped:
            sock = _bind(settings.host, settings.port)
        if stopped:
            return
        address = sock.getsockname()
        log.info(
            "predial serve: %d campaign(s) on http://%s:%d with %d worker(s)",
            len(service.resolver.campaigns),
            f"[{settings.host.strip('[]')}]" if ":" in settings.host else settings.host,
            address[1],
            settings.workers,
        )
        if on_ready is not None:
            on_ready(address[1])
        if settings.workers == 1:
            server = DrainingServer(_uvicorn_config(app, settings, timeout), settings.drain_delay)
            server.run(sockets=[sock])
            return
        with stop_quietly_until_serving() as stopped:
            # uvicorn's supervisor takes the signals only once it runs.
            service.resolver.close_sync()
        if stopped:
            return
        _run_workers(path, settings, timeout, sock, verbose)
    finally:
        if sock is not None:
            sock.close()
        # The adapters built above, when no server got to close them (a port in use).
        if not service.resolver.closed:
            service.resolver.close_sync()


def _cancel_stragglers(loop: asyncio.AbstractEventLoop, grace: float) -> None:
    pending = asyncio.all_tasks(loop)
    if not pending:
        return
    for task in pending:
        task.cancel()
    _, left = loop.run_until_complete(asyncio.wait(pending, timeout=grace))
    if left:
        log.warning(
            "%d task(s) ignored their cancellation %.0f s after the shutdown (an adapter "
            "that swallows it?); exiting without them",
            len(left),
            grace,
        )


class _StoppedBeforeServing(BaseException):
    """SIGTERM while the adapters were being built: nothing was served yet."""


@contextlib.contextmanager
def stop_quietly_until_serving(
    say: Callable[[str], None] | None = None,
) -> Iterator[list[bool]]:
    """A SIGTERM before uvicorn takes over the signals stops here, exit 0, as one
    during serving does (its default action would kill the process: exit 143): the
    list yielded then holds True, and `say` (default: an INFO log line) is told."""
    stopped: list[bool] = []
    if threading.current_thread() is not threading.main_thread():
        yield stopped
        return

    def stop(sig: int, frame: FrameType | None) -> None:
        raise _StoppedBeforeServing

    previous = signal.signal(signal.SIGTERM, stop)
    try:
        yield stopped
    except _StoppedBeforeServing:
        (say or log.info)("stopped by SIGTERM before serving")
        stopped.append(True)
    finally:
        signal.signal(signal.SIGTERM, previous)


def _run_workers(
    path: str, settings: ServiceConfig, timeout: float, sock: socket.socket, verbose: int
) -> None:
    metrics_dir = Path(tempfile.mkdtemp(prefix="predial-metrics-"))
    # The workers read these; they are put back after, so a caller in this process
    # (a test, an embedding program) is not left in prometheus' multiprocess mode.
    saved = {name: os.environ.get(name) for name in _WORKER_ENV}
    os.environ.update(
        {
            "PREDIAL_CONFIG": path,
            "PROMETHEUS_MULTIPROC_DIR": str(metrics_dir),
            _LOG_ENV: settings.access_log,
            _VERBOSE_ENV: str(verbose),
            _DRAIN_ENV: str(settings.drain_delay),
            _SETTINGS_ENV: json.dumps({key: getattr(settings, key) for key in _OVERRIDABLE}),
        }
    )
    try:
        config = _uvicorn_config(f"{__name__}:worker_app", settings, timeout)
        if "target" in inspect.signature(Multiprocess).parameters:  # uvicorn < 0.36
            supervisor = Multiprocess(config, target=uvicorn.Server(config).run, sockets=[sock])  # type: ignore[call-arg,unused-ignore]
        else:
            supervisor = Multiprocess(config, sockets=[sock])
        supervisor.run()
        if any(
            process.exitcode == STARTUP_FAILURE for process in getattr(supervisor, "processes", ())
        ):
            raise ConfigurationError("a worker could not start (its error is logged above)")
    finally:
        shutil.rmtree(metrics_dir, ignore_errors=True)
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
