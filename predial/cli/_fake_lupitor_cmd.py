"""`predial fake-lupitor`: the Lupitor Leads API, faked on 127.0.0.1, to try
`predial import` without an account.

It serves `predial.testing.FakeLupitor` with uvicorn until Ctrl-C or SIGTERM (exit
0; requests still running get `STOP_GRACE` seconds, a second signal stops it at
once) and prints the two `export` lines `predial import` needs. Leads live in memory
and go with the process. It needs the `server` extra (uvicorn, starlette).
"""

from __future__ import annotations

import asyncio
import difflib
import logging
import math
import re
import signal
import socket
import threading
import time
from collections.abc import Callable, Mapping
from contextlib import suppress
from types import FrameType
from typing import TYPE_CHECKING

import click

from ..errors import ConfigurationError

if TYPE_CHECKING:
    from starlette.types import ASGIApp, Message, Receive, Scope, Send

__all__ = ["DEFAULT_PORT", "FAULTS", "STOP_GRACE", "fake_lupitor", "parse_faults"]

#: The port when none is given: not one a development server usually takes.
DEFAULT_PORT = 8765
LOOPBACK = "127.0.0.1"

#: Each fault `--faults` takes (the fields of `predial.testing.Faults`), with what
#: its value must be.
FAULTS: Mapping[str, str] = {
    "error_rate": "fraction",
    "latency": "seconds",
    "lost_after_commit_rate": "fraction",
    "forced_429": "count",
    "seed": "integer",
}
_EXAMPLES = {
    "error_rate": "0.1",
    "latency": "0.5",
    "lost_after_commit_rate": "0.05",
    "forced_429": "3",
    "seed": "7",
}
#: A latency past an hour is a typo (milliseconds meant?), not a test.
_MAX_LATENCY = 3600.0


def parse_faults(text: str) -> dict[str, float | int]:
    """`error_rate=0.1,latency=0.2,forced_429=3` as keyword arguments for
    `predial.testing.Faults`. Keys may use dashes (`forced-429`) and any case;
    blanks around parts are ignored, as is an empty part. A `ValueError` names the
    part at fault and what to write instead: an unknown key (with the nearest
    known one), a missing or bad value, a key given twice."""
    faults: dict[str, float | int] = {}
    for part in text.split(","):
        part = part.strip()
        if not part:
            continue
        name, sep, value = part.partition("=")
        key = name.strip().lower().replace("-", "_")
        value = value.strip()
        if key not in FAULTS:
            close = difflib.get_close_matches(key, FAULTS, n=1)
            hint = f" (did you mean {close[0]}?)" if close else ""
            raise ValueError(
                f"--faults: unknown fault {name.strip()!r}{hint}; the faults are "
                f"{', '.join(FAULTS)}"
            )
        if not sep or not value:
            raise ValueError(
                f"--faults: {key} needs a value: write {key}={_EXAMPLES[key]}, parts "
                "separated by commas"
            )
        if key in faults:
            raise ValueError(f"--faults: {key} is given twice; give it once")
        faults[key] = _value(key, value)
    return faults


#: Numbers as written in ASCII: Python's int() and float() also take other scripts'
#: digits (`seed=٣`) and underscores (`1_000`), which no one means in a flag.
_INTEGER = re.compile(r"[+-]?[0-9]+")
_DECIMAL = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")


def _shown(text: str) -> str:
    """A value the user typed, as an error message echoes it: as typed, or, when it
    holds a control or other unprintable character (an escape sequence that would
    clear the terminal), as a Python literal with those escaped."""
    return text if text.isprintable() else repr(text)


def _value(key: str, text: str) -> float | int:
    kind = FAULTS[key]
    example = f"e.g. {key}={_EXAMPLES[key]}"
    given = f"--faults: {key}={_shown(text)}"
    if kind in ("count", "integer"):
        number = int(text) if _INTEGER.fullmatch(text) else None
        if number is None or (kind == "count" and number < 0):
            what = "a whole number of requests, 0 or more" if kind == "count" else "an integer"
            raise ValueError(f"{given}: must be {what} (digits 0-9), {example}")
        return number
    value = float(text) if _DECIMAL.fullmatch(text) else math.nan
    if kind == "fraction" and not 0.0 <= value <= 1.0:
        raise ValueError(f"{given}: must be a fraction of the requests from 0 to 1, {example}")
    if kind == "seconds" and not 0.0 <= value <= _MAX_LATENCY:
        raise ValueError(f"{given}: must be seconds from 0 to {_MAX_LATENCY:.0f}, {example}")
    return value


def _described(faults: Mapping[str, float | int]) -> str:
    return ", ".join(f"{key}={value:g}" for key, value in faults.items()) or "none"


class _StopAnswer:
    """A request cut short by the stop (its grace ran out, or a second Ctrl-C or
    SIGTERM) is answered 503 "the fake is stopping" if nothing was answered yet:
    uvicorn cancels the request's task then, and would log the CancelledError as an
    application's traceback and answer 500, which reads as a bug of the fake."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def sending(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, receive, sending)
        except asyncio.CancelledError:
            # The request's task ends here, as the stop wants it to: nothing is left
            # to cancel below, and a re-raise would only reach uvicorn's error log.
            if started:
                return
            body = b'{"success":false,"data":null,"error":"the fake is stopping"}'
            # The client may be gone already: nothing more to tell it, then.
            with suppress(OSError, RuntimeError):
                await sending(
                    {
                        "type": "http.response.start",
                        "status": 503,
                        "headers": [
                            (b"content-type", b"application/json"),
                            (b"content-length", str(len(body)).encode()),
                            (b"connection", b"close"),
                        ],
                    }
                )
                await sending({"type": "http.response.body", "body": body})


class _RequestLog:
    """One line on stderr per request answered: time, method, path, status (a 429
    or a 5xx shows the fault or the rate limit at work)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        status: list[int] = []

        async def sending(message: Message) -> None:
            if message["type"] == "http.response.start":
                status.append(int(message["status"]))
            await send(message)

        try:
            await self.app(scope, receive, sending)
        finally:
            stamp = time.strftime("%H:%M:%S")
            answer = status[0] if status else "no answer"
            click.echo(f"{stamp} {scope['method']} {scope['path']} {answer}", err=True)


def _listen(port: int) -> socket.socket:
    # IPPROTO_TCP, not 0: asyncio sets TCP_NODELAY only on sockets that say they are
    # TCP; without it each keep-alive answer after the first waits out a delayed ACK.
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((LOOPBACK, port))
        # Listening before the URL is printed: a client that reads it and connects at
        # once waits in the backlog until uvicorn accepts, rather than being refused.
        sock.listen(128)
    except OSError as error:
        sock.close()
        raise ConfigurationError(
            f"cannot listen on {LOOPBACK}:{port}: {error.strerror or error}; pass another "
            "--port, or --port 0 for a free one"
        ) from None
    return sock


@click.command("fake-lupitor")
@click.option(
    "--port",
    type=click.IntRange(0, 65535),
    default=DEFAULT_PORT,
    show_default=True,
    help="Port on 127.0.0.1; 0 for a free one (the URL printed says which).",
)
@click.option(
    "--api-version",
    type=click.Choice(["v1", "v2"]),
    default="v2",
    show_default=True,
    help="Which documented API to fake: v2, the newer docs; v1, the older ones (bulk "
    "create needs a phone number on every lead).",
)
@click.option(
    "--faults",
    "faults_text",
    default="",
    metavar="KEY=VALUE,...",
    help="Faults to inject: error_rate (fraction of requests answered 500), latency "
    "(seconds each request waits), lost_after_commit_rate (fraction of writes whose "
    "answer is lost after they are stored: 502), forced_429 (the first N requests "
    "answered 429), seed (repeatable draws). E.g. --faults error_rate=0.1,latency=0.5",
)
@click.option(
    "--campaign",
    "campaigns",
    multiple=True,
    metavar="ID",
    help="A campaign the fake knows (repeat for more; default cmp_1 and cmp_2).",
)
@click.option("-q", "--quiet", is_flag=True, help="No line per request on stderr.")
def fake_lupitor(
    port: int, api_version: str, faults_text: str, campaigns: tuple[str, ...], quiet: bool
) -> None:
    """Serve a fake of the Lupitor Leads API on 127.0.0.1, to try `predial import`
    without an account: it prints the URL and a key to export, keeps leads in
    memory, and enforces the documented rate limits (10 bulk and 100 other
    requests per minute per key). Ctrl-C or SIGTERM stops it (exit 0): requests
    still running get 3 s to finish, then are answered 503; a second Ctrl-C or
    SIGTERM stops it at once.
    """
    try:
        import uvicorn  # noqa: F401 - checked here, used by _serve

        from ..testing._fake_lupitor import DEFAULT_CAMPAIGNS, DEFAULT_KEYS, FakeLupitor, Faults
    except ImportError as error:
        raise ConfigurationError(
            f"predial fake-lupitor needs the server extra ({error.name or 'uvicorn'} is "
            "missing): pip install 'predial[server]' (from a clone: pip install -e "
            "'.[server]')"
        ) from None
    from ..lupitor._importer import campaign_problem

    try:
        chosen = parse_faults(faults_text)
    except ValueError as error:
        raise ConfigurationError(str(error)) from None
    names = list(dict.fromkeys(campaign.strip() for campaign in campaigns))
    for name in names:
        # What predial import would refuse (and a control character would reach the
        # terminal in the lines printed below).
        problem = campaign_problem(name)
        if problem is not None:
            raise ConfigurationError(f"--campaign: {problem}")
    names = names or sorted(DEFAULT_CAMPAIGNS)
    faults = Faults(
        error_rate=float(chosen.get("error_rate", 0.0)),
        latency=float(chosen.get("latency", 0.0)),
        lost_after_commit_rate=float(chosen.get("lost_after_commit_rate", 0.0)),
        forced_429=int(chosen.get("forced_429", 0)),
        seed=int(chosen.get("seed", 0)),
    )
    fake = FakeLupitor(
        campaigns=names, version="v1" if api_version == "v1" else "v2", faults=faults
    )
    app: ASGIApp = _StopAnswer(fake)
    if not quiet:
        app = _RequestLog(app)
    sock = _listen(port)
    # From the URL printed to uvicorn's own handlers, a Ctrl-C or SIGTERM is kept
    # for the server to act on at once: a script that stops the fake as soon as it
    # read the URL would otherwise kill it with the signal (exit 143, not 0).
    stopped, restore = _signals_kept()
    try:
        url = f"http://{LOOPBACK}:{sock.getsockname()[1]}"
        keys = ", ".join(
            f"{key} ({'read and write' if scope.scope == 'write' else 'read only'}"
            + (f", campaign {scope.campaign_id} only" if scope.campaign_id else "")
            + ")"
            for key, scope in DEFAULT_KEYS.items()
            if scope.campaign_id is None or scope.campaign_id in names
        )
        for line in (
            f"Fake Lupitor API ({api_version} docs) on {url}; leads are kept in memory "
            "only. Ctrl-C stops it (twice: at once).",
            f"campaigns: {', '.join(names)}",
            f"keys: {keys}",
            "rate limits: 10 bulk and 100 other requests per minute per key",
            f"faults: {_described(chosen)}",
            "In the shell that runs predial import:",
            "",
            f"export LUPITOR_API_URL={url} LUPITOR_API_KEY=sk_test_write",
            "",
        ):
            click.echo(line)
        _serve(app, sock, stopped=stopped)
    finally:
        restore()
        sock.close()
    held = ", ".join(f"{fake.count(name)} in {name}" for name in names)
    click.echo(f"stopped; the leads it held ({held}) are gone", err=True)


#: Seconds the requests still running get to finish when the fake is told to stop:
#: its injected latency may be up to an hour, and a stop should not wait that out.
STOP_GRACE = 3


class _QuietCancel(logging.Filter):
    """Drops uvicorn's own line for the requests it cancels when the grace runs out
    ("Cancel 1 running task(s), timeout graceful shutdown exceeded"): the fake has
    said so in its words already, and each request's line shows its 503."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith("Cancel %s running task(s)")


def _signals_kept() -> tuple[list[int], Callable[[], None]]:
    """Ctrl-C and SIGTERM recorded (in the list returned) instead of acted on, until
    the function returned is called: it puts the handlers back."""
    stopped: list[int] = []
    if threading.current_thread() is not threading.main_thread():
        return stopped, lambda: None  # no signal reaches another thread

    def keep(sig: int, frame: FrameType | None) -> None:
        stopped.append(sig)

    previous = {sig: signal.signal(sig, keep) for sig in (signal.SIGINT, signal.SIGTERM)}

    def restore() -> None:
        for sig, handler in previous.items():
            signal.signal(sig, handler if handler is not None else signal.SIG_DFL)

    return stopped, restore


def _serve(
    app: ASGIApp, sock: socket.socket, grace: int = STOP_GRACE, stopped: list[int] | None = None
) -> None:
    """Serve `app` on the listening `sock` until Ctrl-C or SIGTERM (or at once, if
    `stopped` holds one already). Requests still running then get `grace` seconds
    to finish, then are answered 503; a second Ctrl-C or SIGTERM stops it at once
    (those requests are answered 503 too)."""
    import uvicorn

    from ..testing._serving import uvicorn_config

    class Server(uvicorn.Server):
        def handle_exit(self, sig: int, frame: FrameType | None) -> None:
            # Not recorded as a captured signal: uvicorn would raise it again after
            # the graceful stop, and the process would die of it (exit 130 or 143)
            # instead of exiting 0.
            if self.should_exit:
                self.force_exit = True  # a second Ctrl-C or SIGTERM: stop waiting
            self.should_exit = True

        async def startup(self, sockets: list[socket.socket] | None = None) -> None:
            await super().startup(sockets)
            # Its own handlers are set by now: a signal kept before them is acted on.
            if stopped:
                self.should_exit = True

        async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
            running = len(self.server_state.tasks)
            if running and not self.force_exit:
                # In the loop, not the signal handler: a print there could land in
                # the middle of a request's line and fail as a reentrant write.
                click.echo(
                    f"stopping: {running} request{'s' if running > 1 else ''} still "
                    f"running get{'' if running > 1 else 's'} up to {grace:g} s to "
                    "finish, then the answer 503; Ctrl-C or SIGTERM again stops at once",
                    err=True,
                )
            await super().shutdown(sockets)
            if running and self.force_exit:
                click.echo("a second signal: stopped at once", err=True)

    logging.getLogger("uvicorn.error").addFilter(_QuietCancel())
    # No logging set up for uvicorn: the request lines are ours (_RequestLog).
    config = uvicorn_config(app, server_header=False, timeout_graceful_shutdown=grace)
    Server(config).run(sockets=[sock])
