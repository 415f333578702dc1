"""A bug (in predial or a plugin) on the command line: the traceback a report needs,
redacted like everything predial prints, one line, and exit code 70."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from predial.cli import _resolve as resolve_command
from predial.cli._app import cli

CONFIG = str(Path(__file__).parent.parent / "examples" / "predial.toml")


def test_an_unexpected_exception_is_a_redacted_traceback_and_exit_70(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("while calling +12025551234 with token=sk_live_abcdef123456")

    monkeypatch.setattr(resolve_command.Resolver, "from_config", broken)
    result = CliRunner().invoke(
        cli, ["resolve", "--campaign", "c", "--external-id", "x", "--config", CONFIG]
    )
    assert result.exit_code == 70
    assert "Traceback (most recent call last)" in result.stderr
    assert "+12025551234" not in result.stderr
    assert "sk_live_abcdef123456" not in result.stderr
    assert "token=<redacted>" in result.stderr
    assert result.stderr.splitlines()[-1] == (
        "error: internal error (RuntimeError): a bug, not your input; please report it "
        "with the traceback above"
    )
