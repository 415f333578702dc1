"""The `predial` command group: options shared by every command, and error handling."""

from __future__ import annotations

import logging
import sys
from typing import Any

import click
from rich.markup import escape

from ..errors import PredialError
from ..redaction import redact, safe_text
from .output import err_console

__all__ = ["EXIT_OK", "EXIT_REFUSED", "EXIT_USAGE", "cli"]

EXIT_OK = 0
EXIT_REFUSED = 1
EXIT_USAGE = 2

# Errors that are the user's to fix: one line, no traceback (unless --debug).
_EXPECTED = (PredialError, OSError, ValueError)


class _Group(click.Group):
    """Turns expected errors into one line on stderr and exit code 2."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except _EXPECTED as error:
            if ctx.meta.get("predial.debug"):
                raise
            # Shown as text (a "[/]" in a file name is not markup). predial's own
            # messages already redact what they quote from adapters and files; any
            # other error's text is redacted here (numbers, credentials).
            if isinstance(error, PredialError):
                message = safe_text(error)
            else:
                message = redact(error, limit=2000)
            message = message or type(error).__name__
            err_console().print(
                f"[bold red]error:[/] {escape(message)}", markup=True, highlight=False
            )
            ctx.exit(EXIT_USAGE)


def _configure_logging(verbose: int) -> None:
    level = logging.WARNING if verbose == 0 else logging.INFO if verbose == 1 else logging.DEBUG
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger("predial")
    root.handlers[:] = [handler]
    root.setLevel(level)
    root.propagate = False


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--debug", is_flag=True, help="Show tracebacks instead of one-line errors.")
@click.option("-v", "--verbose", count=True, help="Log more (-v info, -vv debug) to stderr.")
@click.version_option(package_name="predial")
@click.pass_context
def cli(ctx: click.Context, debug: bool, verbose: int) -> None:
    """predial: the right phone number for a lead, just before the dialer dials it.

    \b
    Exit codes: 0 every lead resolved, 1 some lead refused,
                2 usage, input or configuration error.
    """
    ctx.meta["predial.debug"] = debug
    _configure_logging(2 if debug and verbose == 0 else verbose)


def _register() -> None:
    from . import check, config_cmd, import_cmd, plugins_cmd, resolve, serve

    cli.add_command(resolve.resolve)
    cli.add_command(import_cmd.import_)
    cli.add_command(plugins_cmd.plugins)
    cli.add_command(check.check)
    cli.add_command(config_cmd.config)
    cli.add_command(serve.serve)


_register()
