"""The `predial` command group: options shared by every command, and error handling."""

from __future__ import annotations

import errno
import logging
import os
import sys
import traceback
from typing import IO, Any

import click
from click.exceptions import NoArgsIsHelpError
from pydantic import ValidationError
from rich.markup import escape

from .._config import LINK_LOOP, validation_problems
from .._redaction import redact, safe_text
from ..errors import PredialError
from ._exits import EXIT_INTERNAL, EXIT_OK, EXIT_REFUSED, EXIT_USAGE
from ._output import err_console

__all__ = ["EXIT_OK", "EXIT_REFUSED", "EXIT_USAGE", "cli"]


# Errors that are the user's to fix: one line, no traceback (unless --debug).
_EXPECTED = (PredialError, OSError, ValueError)

# What a file parameter expects, by its name, for "is a directory; give ..."; any
# other file parameter is "a file".
_FILE_KINDS = {
    "config_path": "the predial.toml file",
    "config_file": "the predial.toml file",
    "leads_file": "a CSV or JSONL file of leads",
    "file": "a CSV or JSONL file of leads",
    "journal_path": "a file for the import journal",
    "rejects_path": "a CSV file for the rejected rows",
}


def _print_error(message: str) -> None:
    # Shown as text (a "[/]" in a file name is not markup).
    err_console().print(f"[bold red]error:[/] {escape(message)}", markup=True, highlight=False)


class _UsageLine(click.ClickException):
    """A usage error as one line (`error: --config: x is a directory; give ...`),
    instead of click's usage block."""

    exit_code = EXIT_USAGE

    def show(self, file: IO[Any] | None = None) -> None:
        _print_error(self.message)


def _param_name(param: click.Parameter) -> str:
    if isinstance(param, click.Option):
        return max(param.opts, key=len)
    return param.human_readable_name


def _usage_line(error: click.UsageError) -> _UsageLine:
    """click's usage error in one line. A wrong value is named by its option or
    argument; an error about the command line as a whole (a missing argument, an
    unknown option) points at the command's help, where the fix is."""
    if isinstance(error, click.BadParameter) and not isinstance(error, click.MissingParameter):
        hint = error.param_hint
        if hint is None and error.param is not None:
            hint = _param_name(error.param)
        if hint is not None and not isinstance(hint, str):
            hint = " / ".join(hint)
        message = error.message.rstrip(".")
        return _UsageLine(f"{hint}: {message}" if hint else message)
    text = error.format_message().rstrip(".")
    text = text[:1].lower() + text[1:]
    if error.ctx is not None:
        text += f" (see '{error.ctx.command_path} -h')"
    return _UsageLine(text)


class _FilePath(click.Path):
    """`click.Path(dir_okay=False)` whose refusal of a directory says, in one line,
    what to give instead."""

    def __init__(self, kind: str, path: click.Path) -> None:
        super().__init__(
            exists=path.exists,
            file_okay=path.file_okay,
            dir_okay=False,
            writable=path.writable,
            readable=path.readable,
            resolve_path=path.resolve_path,
            allow_dash=path.allow_dash,
            path_type=path.type,
            executable=path.executable,
        )
        self.kind = kind

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        if isinstance(value, str | os.PathLike):
            if os.path.isdir(value):
                self.fail(f"{os.fsdecode(value)} is a directory; give {self.kind}", param, ctx)
            if _link_loop(value):
                # Python's own checks take a loop for a missing file ("no such file").
                self.fail(f"{os.fsdecode(value)} {LINK_LOOP}", param, ctx)
        return super().convert(value, param, ctx)


def _link_loop(path: str | os.PathLike[str]) -> bool:
    try:
        os.stat(path)
    except OSError as error:
        return error.errno == errno.ELOOP
    except ValueError:  # a NUL in the name: click's own checks say what is wrong
        return False
    return False


def _set_debug(ctx: click.Context, param: click.Parameter, value: bool) -> None:
    if value:
        ctx.meta["predial.debug"] = True
        _apply_logging(ctx)


def _add_verbose(ctx: click.Context, param: click.Parameter, value: int) -> None:
    if value:
        # Counted with the group's own -v: the root's `verbose` is the total, which
        # is where commands (predial serve) read it.
        root = ctx.find_root()
        root.params["verbose"] = int(root.params.get("verbose") or 0) + value
        _apply_logging(ctx)


def _apply_logging(ctx: click.Context) -> None:
    verbose = int(ctx.find_root().params.get("verbose") or 0)
    debug = bool(ctx.meta.get("predial.debug"))
    _configure_logging(2 if debug and verbose == 0 else verbose)


def _adopt(command: click.Command) -> None:
    """Make what the group offers work wherever it is written: --debug and -v after
    the subcommand too (`predial resolve x.csv --debug`), and file parameters that
    answer a directory in one line."""
    taken = {name for param in command.params for name in getattr(param, "opts", ())}
    if "--debug" not in taken:
        command.params.append(
            click.Option(
                ["--debug"],
                is_flag=True,
                expose_value=False,
                is_eager=True,  # before any other parameter can fail
                callback=_set_debug,
                help="Show the traceback behind an error too (redacted).",
            )
        )
    if not taken & {"-v", "--verbose"}:
        command.params.append(
            click.Option(
                ["-v", "--verbose"],
                count=True,
                expose_value=False,
                is_eager=True,
                callback=_add_verbose,
                help="Log more (-v info, -vv debug) to stderr.",
            )
        )
    for param in command.params:
        kind = param.type
        if isinstance(kind, click.Path) and not kind.dir_okay and not isinstance(kind, _FilePath):
            param.type = _FilePath(_FILE_KINDS.get(param.name or "", "a file"), kind)
    if isinstance(command, click.Group):
        for sub in command.commands.values():
            _adopt(sub)


class _Group(click.Group):
    """Turns expected errors into one line on stderr and exit code 2; lets the
    group's options be written after the subcommand."""

    def add_command(self, cmd: click.Command, name: str | None = None) -> None:
        _adopt(cmd)
        super().add_command(cmd, name)

    def make_context(
        self,
        info_name: str | None,
        args: list[str],
        parent: click.Context | None = None,
        **extra: Any,
    ) -> click.Context:
        try:
            return super().make_context(info_name, args, parent, **extra)
        except NoArgsIsHelpError:
            raise  # `predial` alone shows the help
        except click.UsageError as error:
            raise _usage_line(error) from error

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except NoArgsIsHelpError:
            raise
        except click.UsageError as error:
            raise _usage_line(error) from error
        except _EXPECTED as error:
            if ctx.meta.get("predial.debug"):
                # The traceback as Python prints it, redacted as the logs are (an
                # exception's text may quote a number or a credential), then the
                # same line and exit code as without --debug.
                click.echo(_redacted_traceback(error), err=True)
            # predial's own messages already redact what they quote from adapters
            # and files; any other error's text is redacted here (numbers,
            # credentials).
            if isinstance(error, PredialError):
                message = safe_text(error)
            elif isinstance(error, ValidationError):
                # pydantic's block (title, `[type=...]`, a URL) as our one line.
                message = redact("; ".join(validation_problems(error)), limit=2000)
            else:
                message = redact(error, limit=2000)
            _print_error(message or type(error).__name__)
            ctx.exit(EXIT_USAGE)
        except (click.exceptions.Exit, click.exceptions.Abort, click.ClickException):
            raise  # click's own ways out (ctx.exit, Ctrl-C, its errors)
        except Exception as error:
            # A bug, in predial or in a plugin: the traceback is what a report needs,
            # redacted like every other text predial prints (Python's own would show
            # a number or a token an exception quoted).
            click.echo(_redacted_traceback(error), err=True)
            _print_error(
                f"internal error ({type(error).__name__}): a bug, not your input; "
                "please report it with the traceback above"
            )
            ctx.exit(EXIT_INTERNAL)


def _redacted_traceback(error: BaseException) -> str:
    try:
        text = "".join(traceback.format_exception(error))
    except Exception:  # a __str__ that raises: say so rather than lose the error line
        text = f"<the traceback of {type(error).__name__} could not be formatted>"
    return redact(text.rstrip("\n"), keep_newlines=True, limit=50_000)


# The library's pointer to a traceback it logs at DEBUG level (predial._fetcher), and
# what it means on the command line.
_LIBRARY_TRACEBACK = "(traceback at DEBUG level)"
_CLI_TRACEBACK = "(traceback with -vv or --debug)"


class _Formatter(logging.Formatter):
    """Log lines as the command line's user reads them: a library's "at DEBUG level"
    becomes the options that show it."""

    def format(self, record: logging.LogRecord) -> str:
        return super().format(record).replace(_LIBRARY_TRACEBACK, _CLI_TRACEBACK)


def _configure_logging(verbose: int) -> None:
    level = logging.WARNING if verbose == 0 else logging.INFO if verbose == 1 else logging.DEBUG
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_Formatter("%(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger("predial")
    root.handlers[:] = [handler]
    root.setLevel(level)
    root.propagate = False


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--debug", is_flag=True, help="Show the traceback behind an error too (redacted).")
@click.option("-v", "--verbose", count=True, help="Log more (-v info, -vv debug) to stderr.")
@click.version_option(package_name="predial")
@click.pass_context
def cli(ctx: click.Context, debug: bool, verbose: int) -> None:
    """predial: the right phone number for a lead, just before the dialer dials it.

    \b
    Exit codes: 0 every lead resolved, 1 some lead refused,
                2 usage, input or configuration error,
                70 a bug (the traceback, redacted, to report).
    --debug and -v may be given before or after the command.
    """
    ctx.meta["predial.debug"] = debug
    _configure_logging(2 if debug and verbose == 0 else verbose)


def _register() -> None:
    from . import _audit_cmd as audit_cmd
    from . import _check as check
    from . import _config_cmd as config_cmd
    from . import _dnc_cmd as dnc_cmd
    from . import _fake_lupitor_cmd as fake_lupitor_cmd
    from . import _import_cmd as import_cmd
    from . import _plugins_cmd as plugins_cmd
    from . import _resolve as resolve
    from . import _serve as serve

    cli.add_command(resolve.resolve)
    cli.add_command(import_cmd.import_)
    cli.add_command(plugins_cmd.plugins)
    cli.add_command(check.check)
    cli.add_command(config_cmd.config)
    cli.add_command(serve.serve)
    cli.add_command(fake_lupitor_cmd.fake_lupitor)
    cli.add_command(dnc_cmd.dnc)
    cli.add_command(audit_cmd.audit)


_register()
