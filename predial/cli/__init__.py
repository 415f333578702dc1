"""The `predial` command. It needs the `cli` extra (click and rich):

    pip install 'predial[cli]'

Exit codes: 0 every lead resolved; 1 some lead refused; 2 a usage, input or
configuration error (one line on stderr; `--debug` shows the traceback).
"""

from __future__ import annotations

import sys

__all__ = ["main"]


def main() -> None:
    try:
        from ._app import cli
    except KeyboardInterrupt:  # Ctrl-C while the command is still loading
        print("interrupted before anything was done", file=sys.stderr)
        raise SystemExit(130) from None
    except ImportError as error:
        if error.name in ("click", "rich"):
            print(
                "error: the predial command needs its extra: pip install 'predial[cli]'",
                file=sys.stderr,
            )
            raise SystemExit(2) from None
        raise
    cli(prog_name="predial")
