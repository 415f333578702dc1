"""`predial serve`: the resolver as the HTTP predial function."""

from __future__ import annotations

import click

from .._config import find_config
from ._config_cmd import configuration_problems, report_problems
from ._exits import EXIT_USAGE
from ._output import err_console

__all__ = ["serve"]


@click.command()
@click.option(
    "--config",
    "config_path",
    type=click.Path(dir_okay=False),
    help="predial.toml (default: $PREDIAL_CONFIG, then ./predial.toml).",
)
@click.option("--host", help="Address to listen on (default: [service] host, 127.0.0.1).")
@click.option("--port", type=click.IntRange(0, 65535), help="Port (default: [service] port, 8000).")
@click.option(
    "--workers",
    type=click.IntRange(1, 64),
    help="Worker processes (default: [service] workers, 1).",
)
@click.option(
    "--access-log",
    type=click.Choice(["text", "json", "off"]),
    help="Access lines on stdout: logfmt text, JSON, or none (default: [service] access_log).",
)
@click.pass_context
def serve(
    ctx: click.Context,
    config_path: str | None,
    host: str | None,
    port: int | None,
    workers: int | None,
    access_log: str | None,
) -> None:
    """Serve the configured campaigns over HTTP: POST /v1/resolve before each dial.

    \b
    First checks the configuration as `predial config validate` does, building
    every campaign's adapter: exit 2 with every problem, one line each.
    SIGTERM drains: new requests get 503, in-flight ones finish, adapters close,
    exit 0. The contract: docs/service.md, or GET /openapi.json.
    """
    try:
        from ..service import _server as server
    except ImportError as error:
        raise click.UsageError(
            f"predial serve needs the server extra ({error.name} is missing): "
            "pip install 'predial[server]'"
        ) from None
    path = find_config(config_path)
    overrides = {
        key: value
        for key, value in (
            ("host", host),
            ("port", port),
            ("workers", workers),
            ("access_log", access_log),
        )
        if value is not None
    }
    # Every problem at once, as `predial config validate` finds them (the same check),
    # before anything is built to serve; a SIGTERM meanwhile stops it, exit 0.
    with server.stop_quietly_until_serving(_said) as stopped:
        checkup = configuration_problems(path, serving=True, overrides=overrides)
    if stopped:
        return
    if checkup.problems:
        report_problems(checkup.problems)
        ctx.exit(EXIT_USAGE)
    assert checkup.service is not None  # no problem, so the service's settings are valid
    # -v is the group's option; --debug implies the most detail.
    parent = ctx.parent.params if ctx.parent is not None else {}
    verbose = 2 if ctx.meta.get("predial.debug") else int(parent.get("verbose") or 0)
    server.run(path, checkup.service, verbose=verbose)


def _said(line: str) -> None:
    err_console().print(f"predial serve: {line}", markup=False, highlight=False)
