"""The `predial` command's exit codes (a module of their own, so a command module
imports them without importing the group that registers every command)."""

from __future__ import annotations

__all__ = ["EXIT_INTERNAL", "EXIT_OK", "EXIT_REFUSED", "EXIT_USAGE"]

#: Every lead resolved (or every row accounted for).
EXIT_OK = 0
#: Some lead refused (or some row not settled).
EXIT_REFUSED = 1
#: A usage, input or configuration error: one line on stderr.
EXIT_USAGE = 2
#: A bug in predial or a plugin (EX_SOFTWARE): the redacted traceback, one line.
EXIT_INTERNAL = 70
