"""What a hostile review found in `predial config validate` and the configuration's
edges: secrets and numbers in printed problems, configured plugins validate must
accept as the runtime does, a validation that stays linear in the file's size,
TOML nested too deeply, rich's emoji codes, `--debug`'s exit code, literal secrets
written in disguise, and a symbolic link loop given as a file."""

from __future__ import annotations

import secrets
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from predial import PluginLoadError, Resolver
from predial.cli.app import cli

# What a failing plugin raises: a phone number and a credential.
BROKEN = 'raise RuntimeError("boom: call +12025551234 token=sk_live_abcdefSECRET")\n'

PLUGIN = """
import predial

class {cls}:
    name = "{name}"

    def __init__(self, **settings):
        pass

    async def fetch_phone(self, external_id):
        return "+12024561111"

@predial.hookimpl
def register_adapters(register):
    register({cls})
"""


def run(*args: str, env: dict[str, str | None] | None = None) -> Result:
    return CliRunner().invoke(cli, list(args), env=env, catch_exceptions=False, prog_name="predial")


@pytest.fixture
def folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("PREDIAL_CONFIG", raising=False)
    return tmp_path


def fresh_secret() -> str:
    """A secret no earlier test registered, shaped like nothing `redact` knows by its
    shape (short, no credential key before it): only its value can give it away."""
    return f"Zebra{secrets.token_hex(4)}q"


# -- 1. every printed problem is redacted -----------------------------------------


def test_validate_never_prints_a_failing_plugin_s_secret_or_number(folder: Path) -> None:
    (folder / "broken.py").write_text(BROKEN)
    (folder / "predial.toml").write_text('[resolver]\nplugins = ["broken.py"]\n')
    result = run("config", "validate")
    assert result.exit_code == 2
    assert "sk_live_abcdefSECRET" not in result.output
    assert "+12025551234" not in result.output
    assert "token=<redacted>" in result.stderr
    assert "+1202***1234" in result.stderr


def test_a_strict_resolver_s_plugin_load_error_is_redacted(folder: Path) -> None:
    (folder / "broken.py").write_text(BROKEN)
    (folder / "predial.toml").write_text('[resolver]\nplugins = ["broken.py"]\n')
    with pytest.raises(PluginLoadError) as caught:
        Resolver.from_config("predial.toml")
    text = str(caught.value)
    assert "sk_live_abcdefSECRET" not in text
    assert "+12025551234" not in text
    assert caught.value.reason.endswith("boom: call +1202***1234 token=<redacted>")


def test_plugin_load_error_redacts_what_it_is_given() -> None:
    error = PluginLoadError("p", "password: hunter2hunter2 for +12025551234", "x.toml: here")
    assert (
        str(error)
        == "x.toml: here: plugin 'p' failed to load: password: <redacted> for +1202***1234"
    )


@pytest.mark.parametrize("field", ["default_region", "adapter", "id"])
def test_a_secret_variable_in_another_setting_is_not_echoed(folder: Path, field: str) -> None:
    """A variable named like a secret (ACME_API_TOKEN) put in a setting that is not
    one: the problem that setting gets does not quote its value."""
    value = fresh_secret()
    (folder / "crm.csv").write_text("id,mobile\nC-1,+12024561111\n")
    campaign = {"id": '"a"', "adapter": '"file"', field: '"${ACME_API_TOKEN}"'}
    lines = "".join(f"{key} = {text}\n" for key, text in campaign.items())
    (folder / "predial.toml").write_text(
        f'[[campaigns]]\n{lines}[campaigns.settings]\npath = "crm.csv"\n'
    )
    result = run("config", "validate", env={"ACME_API_TOKEN": value})
    assert value not in result.output
    # The id is valid: the file is, and the line that lists its campaigns hides it.
    assert result.exit_code == (0 if field == "id" else 2), result.output
    assert "<redacted>" in result.output


def test_a_token_setting_s_value_used_elsewhere_is_not_echoed(folder: Path) -> None:
    """The value of a secret setting is a secret wherever else it is used, whatever
    its variable is called, and even when no adapter could be built with it."""
    value = fresh_secret()
    (folder / "predial.toml").write_text(
        '[[campaigns]]\nid = "a"\nadapter = "no-such-adapter"\ndefault_region = "${HS}"\n'
        '[campaigns.settings]\ntoken = "${HS}"\n'
    )
    result = run("config", "validate", env={"HS": value})
    assert result.exit_code == 2
    assert value not in result.output
    assert "default_region '<redacted>' is not a known region" in result.stderr


def test_a_problem_naming_a_phone_number_key_masks_it(folder: Path) -> None:
    (folder / "predial.toml").write_text('[resolver]\n"+12025551234" = 1\n')
    result = run("config", "validate")
    assert result.exit_code == 2
    assert "+12025551234" not in result.output
    assert '"+1202***1234": unknown setting' in result.stderr
