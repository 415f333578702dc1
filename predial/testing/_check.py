"""`served_check`: `predial check` against a fake CRM served on 127.0.0.1.

The end-to-end test every adapter gets: serve the fake with uvicorn, write a
`predial.toml` with one campaign of the adapter pointing at it, and run the real
command, the way an operator trying a configuration would.

```python
with served_check(fake, "hubspot", {"token": "${HUBSPOT_TOKEN}"},
                  env={"HUBSPOT_TOKEN": "pat-test"}, directory=tmp_path) as check:
    check("101").found("hubspot")          # exit 0, the number from the CRM
    check("999").refused("not_found")      # exit 1, and why
```

Every run also checks that no value of `env` (the credentials) appears in the
command's output. A run that exits 2, a usage or configuration error rather than a
verdict on the lead (an adapter name no plugin registers, a setting the adapter
refuses), or that crashes, fails there and then with the command's output (and the
traceback), which says what is wrong.
Needs the `cli` and `server` extras (click, rich, uvicorn).
"""

from __future__ import annotations

import json
import os
import traceback
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ._serving import serve

__all__ = ["CheckRun", "served_check"]


@dataclass(frozen=True)
class CheckRun:
    """One `predial check --json`: its exit code, its output and the parsed trace."""

    exit_code: int
    output: str
    trace: dict[str, Any]

    def found(self, adapter: str | None = None) -> CheckRun:
        """Assert the CRM gave the lead a number (through `adapter`, if named)."""
        assert (self.exit_code, self.trace.get("source")) == (0, "crm"), self.output
        if adapter is not None:
            assert self.trace.get("adapter") == adapter, self.output
        return self

    def refused(self, reason: str) -> CheckRun:
        """Assert the lead was refused for `reason` (`"do_not_call"`, `"not_found"`, ...)."""
        assert (self.exit_code, self.trace.get("reason")) == (1, reason), self.output
        return self


def _string(text: str) -> str:
    """A TOML basic string: quotes, backslashes and control characters escaped,
    everything else (emoji included) as itself."""
    escaped = []
    for character in text:
        if character in ('"', "\\"):
            escaped.append("\\" + character)
        elif ord(character) < 0x20 or ord(character) == 0x7F:
            escaped.append(f"\\u{ord(character):04x}")
        else:
            escaped.append(character)
    return '"' + "".join(escaped) + '"'


def _toml(value: object) -> str:
    """`value` as a TOML value (strings, paths, numbers, booleans, lists, inline tables)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, (str, os.PathLike)):
        return _string(os.fspath(value) if not isinstance(value, str) else value)
    if isinstance(value, Mapping):
        return "{" + ", ".join(f"{_string(str(k))} = {_toml(v)}" for k, v in value.items()) + "}"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml(item) for item in value) + "]"
    raise TypeError(f"cannot write {type(value).__name__} to predial.toml")


def _traceback(exc_info: object) -> str:
    """The traceback of an exception the command did not handle, for the message."""
    if not isinstance(exc_info, tuple):
        return ""
    return "\n" + "".join(traceback.format_exception(*exc_info)).rstrip()


@contextmanager
def served_check(
    fake: Any,
    adapter: str,
    settings: Mapping[str, object],
    *,
    env: Mapping[str, str],
    directory: Path,
    default_region: str = "US",
    campaign_id: str = "check",
) -> Iterator[Callable[[str], CheckRun]]:
    """Serve `fake`, configure one campaign of `adapter` with `settings` and
    `base_url` pointing at it, and yield `check(external_id)`."""
    from click.testing import CliRunner

    from ..cli._app import cli

    with serve(fake) as base_url:
        config = directory / "predial.toml"
        lines = [
            "[[campaigns]]",
            f"id = {_toml(campaign_id)}",
            f"adapter = {_toml(adapter)}",
            f"default_region = {_toml(default_region)}",
            "[campaigns.settings]",
            # The fake's address, unless the settings name another (a proxy, say).
            *(
                f"{_string(key)} = {_toml(value)}"
                for key, value in {"base_url": base_url, **settings}.items()
            ),
        ]
        config.write_text("\n".join(lines) + "\n", encoding="utf-8")

        def check(external_id: str) -> CheckRun:
            arguments = ["check", campaign_id, external_id, "--config", str(config), "--json"]
            result = CliRunner().invoke(cli, arguments, env=dict(env))
            for name, secret in env.items():
                # Values under 6 characters would match by chance.
                if len(secret) >= 6:
                    assert secret not in result.output, f"predial check printed ${name}"
            command = f"predial check {campaign_id} {external_id} (adapter {adapter!r})"
            crashed = result.exception is not None and not isinstance(result.exception, SystemExit)
            if crashed or result.exit_code not in (0, 1):
                # Not a verdict on the lead: without the output, the test would fail
                # later on a comparison of exit codes that says nothing of why.
                raise AssertionError(
                    f"{command} exited {result.exit_code}:\n{result.output.rstrip()}"
                    + _traceback(result.exc_info if crashed else None)
                )
            try:  # the trace is the last line on stdout (warnings may go to stderr)
                trace = json.loads(result.stdout.strip().splitlines()[-1])
            except (ValueError, IndexError):
                raise AssertionError(
                    f"{command} printed no trace:\n{result.output.rstrip()}"
                ) from None
            return CheckRun(result.exit_code, result.output, trace)

        yield check
