"""Plugin files named in predial.toml's `[resolver] plugins` that fail: `predial
plugins` still shows its table with each failure and its reason, the others still
load, and a resolver refuses only the campaigns that needed the broken plugin."""

from __future__ import annotations

import json
import os
import pty
import re
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from predial import Lead, PluginLoadError, Resolver, Unresolvable
from predial.cli._app import cli

GOOD = """
import predial

class Good:
    name = "good"

    def fetch_phone(self, external_id):
        return "+12024561111"

@predial.hookimpl
def register_adapters(register):
    register(Good)
"""

SYNTAX_ERROR = "import predial\nclass Broken(:\n"
RAISING = "raise RuntimeError('needs the ACME_HOME folder; set it')\n"
NO_HOOK = "class Lonely:\n    name = 'lonely'\n    def fetch_phone(self, external_id): ...\n"

CONFIG = """
[resolver]
plugins = ["broken.py", "raising.py", "missing.py", "good.py", "predial_test_no_such_module"]

[[campaigns]]
id = "g"
adapter = "good"

[[campaigns]]
id = "b"
adapter = "broken"
"""

REASONS = {
    "broken.py": "importing 'broken.py' raised SyntaxError: invalid syntax",
    "raising.py": "importing 'raising.py' raised RuntimeError: needs the ACME_HOME folder; set it",
    "missing.py": "no such file 'missing.py'; fix the path (relative to the configuration) or "
    "remove it",
    "predial_test_no_such_module": "import failed: ModuleNotFoundError: No module named "
    "'predial_test_no_such_module'",
}


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A folder with a predial.toml naming a good plugin file beside four broken ones."""
    (tmp_path / "good.py").write_text(GOOD)
    (tmp_path / "broken.py").write_text(SYNTAX_ERROR)
    (tmp_path / "raising.py").write_text(RAISING)
    (tmp_path / "broken.toml").write_text(CONFIG)
    (tmp_path / "leads.csv").write_text("campaignId,externalId\ng,1\nb,2\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("PREDIAL_CONFIG", raising=False)
    return tmp_path


def run(*args: str) -> Result:
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


@pytest.mark.usefixtures("project")
def test_plugins_lists_broken_plugin_files_as_failed_and_loads_the_rest() -> None:
    result = run("plugins", "--config", "broken.toml")
    # As for an installed plugin that fails: the table, the reasons, exit code 0.
    assert result.exit_code == 0, result.output
    rows = {
        cells[0]: cells[1:]
        for cells in (
            [cell.strip() for cell in line.split("│")]
            for line in result.stdout.splitlines()
            if "│" in line
        )
    }
    assert rows["good.py"] == ["[resolver] plugins", "good", "active"]
    for name, reason in REASONS.items():
        assert rows[name] == ["[resolver] plugins", "", "failed"]
        assert f"{name} failed: {reason}" in result.stdout
    assert "hubspot" in rows  # installed plugins still listed
    assert "4 plugin(s) failed to load" in result.stderr
    assert "WARNING" not in result.stderr  # each failure once, in the listing


@pytest.mark.usefixtures("project")
def test_plugins_json_gives_each_failure_its_reason() -> None:
    result = run("plugins", "--config", "broken.toml", "--json")
    assert result.exit_code == 0, result.output
    listed = {item["name"]: item for item in map(json.loads, result.stdout.splitlines())}
    assert (listed["good.py"]["status"], listed["good.py"]["adapters"]) == ("active", ["good"])
    for name, reason in REASONS.items():
        assert (listed[name]["origin"], listed[name]["status"]) == ("config", "failed")
        assert reason in listed[name]["error"]


def test_a_configured_file_with_no_hook_is_failed_saying_what_to_add(project: Path) -> None:
    (project / "lonely.py").write_text(NO_HOOK)
    (project / "predial.toml").write_text('[resolver]\nplugins = ["lonely.py", "good.py"]\n')
    result = run("plugins", "--json")
    listed = {item["name"]: item for item in map(json.loads, result.stdout.splitlines())}
    assert listed["lonely.py"]["error"] == (
        "defines no hook: add `@predial.hookimpl def register_adapters(register)` calling "
        "register(YourAdapter)"
    )
    assert listed["good.py"]["status"] == "active"
    with pytest.raises(PluginLoadError, match=r"resolver\.plugins\[0\]: plugin 'lonely\.py'"):
        Resolver.from_config("predial.toml")


@pytest.mark.usefixtures("project")
def test_resolve_serves_the_other_campaigns_and_names_the_failure() -> None:
    """predial resolve (strict=False): campaign g resolves; b, whose adapter the broken
    file would have registered, is refused with the failed plugins named."""
    result = CliRunner().invoke(cli, ["resolve", "leads.csv", "--config", "broken.toml", "--json"])
    assert result.exit_code == 2, result.output  # a misconfigured campaign: the operator's to fix
    rows = {row["row"]: row for row in map(json.loads, result.stdout.splitlines())}
    assert (rows[2]["source"], rows[2]["phoneNumber"]) == ("crm", "+1202***1111")
    assert (rows[3]["reason"], rows[3]["retryable"]) == ("campaign_misconfigured", True)
    assert "plugins that failed to load: broken.py ([resolver] plugins)" in result.stderr
    assert REASONS["raising.py"] in result.stderr  # the warning says why


@pytest.mark.usefixtures("project")
def test_from_config_raises_when_strict_and_records_when_not() -> None:
    with pytest.raises(PluginLoadError) as caught:
        Resolver.from_config("broken.toml")
    assert str(caught.value).startswith(
        "broken.toml: resolver.plugins[0]: plugin 'broken.py' failed to load: "
        + REASONS["broken.py"]
    )
    with Resolver.from_config("broken.toml", strict=False) as resolver:
        failed = [info.name for info in resolver.registry.failures()]
        found = resolver.resolve_sync(Lead(campaign_id="g", external_id="1"))
        with pytest.raises(Unresolvable) as refused:
            resolver.resolve_sync(Lead(campaign_id="b", external_id="2"))
    assert failed == list(REASONS)
    assert found.phone_number == "+12024561111"
    assert refused.value.reason == "campaign_misconfigured"


def test_a_config_whose_campaign_lacks_a_variable_still_lists_its_plugins(project: Path) -> None:
    """Listing plugins needs no campaign's secret: a note, then the whole table."""
    (project / "predial.toml").write_text(
        '[resolver]\nplugins = ["good.py", "broken.py"]\n'
        '[[campaigns]]\nid = "g"\nadapter = "good"\n'
        '[campaigns.settings]\ntoken = "${PREDIAL_TEST_UNSET_TOKEN}"\n'
    )
    result = CliRunner().invoke(cli, ["plugins"], env={"PREDIAL_TEST_UNSET_TOKEN": None})
    assert result.exit_code == 0, result.output
    assert "PREDIAL_TEST_UNSET_TOKEN is not set; its [resolver] plugins are listed" in (
        " ".join(result.stderr.split())
    )
    assert re.search(r"good\.py +│ \[resolver\] plugins +│ good +│ active", result.stdout)
    assert "broken.py failed: importing 'broken.py' raised SyntaxError" in result.stdout


def in_terminal(*args: str, cwd: Path, columns: int = 80) -> str:
    """`predial ARGS` on a pseudo-terminal COLUMNS wide, as an operator sees it."""
    controller, terminal = pty.openpty()
    env = {**os.environ, "COLUMNS": str(columns), "NO_COLOR": "1", "TERM": "xterm"}
    env.pop("PREDIAL_CONFIG", None)
    process = subprocess.Popen(
        [sys.executable, "-m", "predial", *args],
        stdin=terminal,
        stdout=terminal,
        stderr=terminal,
        cwd=cwd,
        env=env,
    )
    os.close(terminal)
    output = b""
    while True:
        try:
            chunk = os.read(controller, 65536)
        except OSError:  # EIO: the terminal's other end is closed
            break
        if not chunk:
            break
        output += chunk
    os.close(controller)
    assert process.wait(timeout=60) == 0
    return re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", output.decode()).replace("\r\n", "\n")


def test_the_table_stays_readable_at_80_columns(project: Path) -> None:
    """No row is cut or wrapped at 80 columns: names, distributions with their
    versions and statuses whole; each reason on a line of its own below."""
    screen = in_terminal("plugins", "--config", "broken.toml", cwd=project)
    table = [line for line in screen.splitlines() if "│" in line or "┃" in line]
    assert all(len(line) <= 80 for line in table), table
    assert re.search(r"^ predial\.adapters\._builtin +│ builtin +│ file +│ active", screen, re.M)
    assert re.search(
        r"^ salesforce +│ predial-salesforce 0\.1\.0 +│ salesforce +│ active", screen, re.M
    )
    assert re.search(r"^ hubspot +│ predial-hubspot 0\.1\.0 +│ hubspot +│ active", screen, re.M)
    for name, reason in REASONS.items():
        assert re.search(rf"^ {re.escape(name)} +│ \[resolver\] plugins +│ +│ failed", screen, re.M)
        assert f"{name} failed: {reason}" in screen


def test_a_plugin_s_failure_never_shows_a_secret_or_a_number(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "secret.py").write_text(
        'raise RuntimeError("token=sk_live_abcdef1234567890 failed for +12025550123")\n'
    )
    (tmp_path / "plug.toml").write_text('[resolver]\nplugins = ["secret.py"]\n')
    monkeypatch.chdir(tmp_path)
    for args in (
        ("plugins", "--config", "plug.toml"),
        ("plugins", "--config", "plug.toml", "--json"),
    ):
        result = CliRunner().invoke(cli, list(args))
        assert "sk_live_abcdef1234567890" not in result.output
        assert "+12025550123" not in result.output
        assert "token=<redacted>" in result.output


def test_a_configured_module_whose_dir_raises_is_failed_and_the_rest_load(
    project: Path,
) -> None:
    (project / "odd.py").write_text("def __dir__():\n    raise RuntimeError('dir boom')\n")
    (project / "predial.toml").write_text('[resolver]\nplugins = ["odd.py", "good.py"]\n')
    result = run("plugins", "--json")
    assert result.exit_code == 0, result.output
    listed = {item["name"]: item for item in map(json.loads, result.stdout.splitlines())}
    assert listed["odd.py"]["error"] == "cannot be inspected: RuntimeError: dir boom"
    assert listed["good.py"]["status"] == "active"
