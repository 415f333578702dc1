"""`predial serve`: the resolver as the HTTP predial function."""

from __future__ import annotations

import click
from pydantic import ValidationError

from .._wording import value_problem
from ..config import find_config, load_config
from ..errors import ConfigurationError

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
    Builds every campaign's adapter first and exits 2 on a bad configuration.
    SIGTERM drains: new requests get 503, in-flight ones finish, adapters close,
    exit 0. The contract: docs/service.md, or GET /openapi.json.
    """
    try:
        from ..service import server
    except ImportError as error:
        raise click.UsageError(
            f"predial serve needs the server extra ({error.name} is missing): "
            "pip install 'predial[server]'"
        ) from None
    path = find_config(config_path)
    config = load_config(path)
    service = config.checked_service()
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
    try:
        settings = service.model_validate({**service.model_dump(), **overrides})
    except ValidationError as error:
        # One line naming the option, like every other configuration error.
        raise ConfigurationError(
            "; ".join(
                f"--{str(item['loc'][0]).replace('_', '-') if item['loc'] else 'service'}: "
                f"{value_problem(item)}"
                for item in error.errors(include_url=False)
            )
        ) from None
    # -v is the group's option; --debug implies the most detail.
    parent = ctx.parent.params if ctx.parent is not None else {}
    verbose = 2 if ctx.meta.get("predial.debug") else int(parent.get("verbose") or 0)
    server.run(path, settings, verbose=verbose)
