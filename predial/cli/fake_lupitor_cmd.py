"""`predial fake-lupitor`: the Lupitor Leads API, faked on 127.0.0.1, to try
`predial import` without an account.

It serves `predial.testing.FakeLupitor` with uvicorn until Ctrl-C or SIGTERM (exit
0) and prints the two `export` lines `predial import` needs. Leads live in memory
and go with the process. It needs the `server` extra (uvicorn, starlette).
"""

from __future__ import annotations

import difflib
import math
import signal
import socket
import time
from collections.abc import Mapping
from types import FrameType
from typing import TYPE_CHECKING

import click

from ..errors import ConfigurationError

if TYPE_CHECKING:
    from starlette.types import ASGIApp, Message, Receive, Scope, Send

__all__ = ["DEFAULT_PORT", "FAULTS", "fake_lupitor", "parse_faults"]

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


def _value(key: str, text: str) -> float | int:
    kind = FAULTS[key]
    example = f"e.g. {key}={_EXAMPLES[key]}"
    if kind in ("count", "integer"):
        try:
            number = int(text)
        except ValueError:
            number = None
        if number is None or (kind == "count" and number < 0):
            what = "a whole number of requests, 0 or more" if kind == "count" else "an integer"
            raise ValueError(f"--faults: {key}={text}: must be {what}, {example}")
        return number
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if kind == "fraction" and not 0.0 <= value <= 1.0:
        raise ValueError(
            f"--faults: {key}={text}: must be a fraction of the requests from 0 to 1, {example}"
        )
    if kind == "seconds" and not 0.0 <= value <= _MAX_LATENCY:
        raise ValueError(
            f"--faults: {key}={text}: must be seconds from 0 to {_MAX_LATENCY:.0f}, {example}"
        )
    return value


def _described(faults: Mapping[str, float | int]) -> str:
    return ", ".join(f"{key}={value:g}" for key, value in faults.items()) or "none"


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
    requests per minute per key). Ctrl-C or SIGTERM stops it (exit 0).
    """
    try:
        import uvicorn  # noqa: F401 - checked here, used by _serve

        from ..testing.fake_lupitor import DEFAULT_CAMPAIGNS, DEFAULT_KEYS, FakeLupitor, Faults
    except ImportError as error:
        raise ConfigurationError(
            f"predial fake-lupitor needs the server extra ({error.name or 'uvicorn'} is "
            "missing): pip install 'predial[server]' (from a clone: pip install -e "
            "'.[server]')"
        ) from None
    try:
        chosen = parse_faults(faults_text)
    except ValueError as error:
        raise ConfigurationError(str(error)) from None
    names = list(dict.fromkeys(campaign.strip() for campaign in campaigns))
    if any(not name for name in names):
        raise ConfigurationError("--campaign: a campaign id cannot be empty")
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
    app: ASGIApp = fake if quiet else _RequestLog(fake)
    sock = _listen(port)
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
            "only. Ctrl-C stops it.",
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
        _serve(app, sock)
    finally:
        sock.close()
    held = ", ".join(f"{fake.count(name)} in {name}" for name in names)
    click.echo(f"stopped; the leads it held ({held}) are gone", err=True)


def _serve(app: ASGIApp, sock: socket.socket) -> None:
    """Serve `app` on the listening `sock` until Ctrl-C or SIGTERM."""
    import uvicorn

    class Server(uvicorn.Server):
        def handle_exit(self, sig: int, frame: FrameType | None) -> None:
            # Not recorded as a captured signal: uvicorn would raise it again after
            # the graceful stop, and the process would die of it (exit 130 or 143)
            # instead of exiting 0.
            if self.should_exit and sig == signal.SIGINT:
                self.force_exit = True  # a second Ctrl-C: stop waiting for clients
            self.should_exit = True

    config = uvicorn.Config(
        app,
        # No logging set up for uvicorn (the request lines are ours); its warnings
        # still reach stderr through Python's last-resort handler.
        log_config=None,
        log_level="warning",
        access_log=False,
        lifespan="off",
        server_header=False,
        # Pinned so the fake is the same whatever optional extras are installed.
        loop="asyncio",
        http="h11",
        ws="none",
    )
    Server(config).run(sockets=[sock])
