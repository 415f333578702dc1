"""The `predial` command, through click's runner: every command, exit code and error path."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from predial.cli._app import cli

EXAMPLES = Path(__file__).parent.parent / "examples"
CONFIG = str(EXAMPLES / "predial.toml")
LEADS = str(EXAMPLES / "leads.csv")
FULL_NUMBER = re.compile(r"\+\d{9,}")


def run(*args: str, env: dict[str, str] | None = None) -> Result:
    return CliRunner().invoke(cli, list(args), env=env, catch_exceptions=False, prog_name="predial")


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A working directory with a small CRM export and a predial.toml."""
    (tmp_path / "crm.csv").write_text("id,mobile\nC-1,(202) 456-1111\nC-2,+15555551234\n")
    (tmp_path / "predial.toml").write_text(
        '[[campaigns]]\nid = "c"\nadapter = "file"\ndefault_region = "US"\n'
        '[campaigns.settings]\npath = "crm.csv"\n'
    )
    (tmp_path / "leads.csv").write_text("campaignId,externalId\nc,C-1\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("PREDIAL_CONFIG", raising=False)
    return tmp_path


def test_resolve_prints_every_lead_and_a_summary() -> None:
    """The bundled example: a row per lead, masked numbers, a summary; some refused -> 1."""
    result = run("resolve", LEADS, "--config", CONFIG)
    assert result.exit_code == 1
    lines = result.stdout.splitlines()
    assert sum(1 for line in lines if re.match(r"\s*\d+\s+│", line)) == 20
    assert "+1202***1111" in result.stdout
    assert not FULL_NUMBER.search(result.stdout)
    assert re.search(r"resolved \d+ \(crm \d+, stored \d+\)", result.stdout)
    assert "latency p50" in result.stdout


def test_resolve_all_resolved_exits_0(project: Path) -> None:
    """Every lead resolved: exit code 0."""
    result = run("resolve", "leads.csv")
    assert result.exit_code == 0, result.output
    assert "+1202***1111" in result.stdout


def test_show_numbers_prints_them_in_full(project: Path) -> None:
    """--show-numbers is the only way to see a full number."""
    result = run("resolve", "leads.csv", "--show-numbers")
    assert "+12024561111" in result.stdout


def test_resolve_json_is_one_object_per_lead() -> None:
    """--json: one JSON object per lead on stdout, the summary on stderr."""
    result = run("resolve", LEADS, "--config", CONFIG, "--json")
    objects = [json.loads(line) for line in result.stdout.splitlines()]
    assert len(objects) == 20
    by_row = {item["row"]: item for item in objects}
    assert by_row[2]["source"] == "crm"
    assert by_row[2]["phoneNumber"] == "+1202***1111"
    assert by_row[10]["reason"] == "do_not_call"
    assert by_row[10]["retryable"] is False
    assert by_row[20]["reason"] == "unavailable"
    assert by_row[20]["retryable"] is True
    assert "resolved" in result.stderr


def test_resolve_one_lead(project: Path) -> None:
    """--external-id with --campaign resolves a single lead."""
    result = run("resolve", "--campaign", "c", "--external-id", "C-1", "--json")
    assert result.exit_code == 0
    assert json.loads(result.stdout)["source"] == "crm"


def test_resolve_one_refused_lead_exits_1(project: Path) -> None:
    """A refused lead: exit 1, reason shown."""
    result = run("resolve", "--campaign", "c", "--external-id", "C-2")
    assert result.exit_code == 1
    assert "invalid_number" in result.stdout


def test_resolve_needs_a_file_or_an_id(project: Path) -> None:
    """Neither a file nor an id is a usage error (exit 2)."""
    result = run("resolve")
    assert result.exit_code == 2
    assert "LEADS_FILE" in result.stderr


def test_missing_leads_file(project: Path) -> None:
    """One clear line, exit 2, no traceback."""
    result = run("resolve", "nope.csv")
    assert result.exit_code == 2
    assert "nope.csv: no such file" in result.stderr
    assert "Traceback" not in result.output


def test_unreadable_csv(project: Path) -> None:
    """A binary file is refused as a whole."""
    (project / "leads.csv").write_bytes(b"\x00\x01PK\x03\x04garbage")
    result = run("resolve", "leads.csv")
    assert result.exit_code == 2
    assert "binary" in result.stderr


def test_missing_column(project: Path) -> None:
    """A leads file without campaignId (and no --campaign) names the column."""
    (project / "leads.csv").write_text("externalId\nC-1\n")
    result = run("resolve", "leads.csv")
    assert result.exit_code == 2
    assert "missing column campaignId" in result.stderr
    assert run("resolve", "leads.csv", "--campaign", "c").exit_code == 0


def test_invalid_rows_are_refused_not_fatal(project: Path) -> None:
    """A bad row is shown with its problem; the others resolve."""
    (project / "leads.csv").write_text("campaignId,externalId,priority\nc,C-1,1\nc,C-1,999\n")
    result = run("resolve", "leads.csv", "--json")
    rows = [json.loads(line) for line in result.stdout.splitlines()]
    assert rows[0]["resolved"] is True
    assert (rows[1]["reason"], rows[1]["column"]) == ("invalid_lead", "priority")
    assert result.exit_code == 1


def test_unknown_adapter_hint(project: Path) -> None:
    """A misspelt adapter: did you mean, with the installed list."""
    config = project / "predial.toml"
    config.write_text(config.read_text().replace('adapter = "file"', 'adapter = "fille"'))
    result = run("config", "validate")
    assert result.exit_code == 2
    assert "did you mean 'file'?" in result.stderr
    assert "campaigns[0].adapter" in result.stderr


def test_missing_environment_variable(project: Path) -> None:
    """A ${VAR} that is not set is named with its key."""
    config = project / "predial.toml"
    config.write_text(config.read_text() + 'id_column = "${CRM_ID_COLUMN}"\n')
    result = run("resolve", "leads.csv")
    assert result.exit_code == 2
    assert "CRM_ID_COLUMN is not set" in result.stderr
    assert "campaigns[0].settings.id_column" in result.stderr


def test_invalid_toml_shows_its_line(project: Path) -> None:
    """A TOML syntax error names the line."""
    (project / "predial.toml").write_text('[[campaigns]]\nid = "c"\nadapter = file\n')
    result = run("config", "validate")
    assert result.exit_code == 2
    assert "line 3" in result.stderr


def test_missing_config(project: Path) -> None:
    """No predial.toml where one is expected."""
    (project / "predial.toml").unlink()
    result = run("resolve", "leads.csv")
    assert result.exit_code == 2
    assert "no such configuration file" in result.stderr


def test_debug_shows_the_traceback(project: Path) -> None:
    """--debug lets the exception through, for a bug report."""
    (project / "predial.toml").unlink()
    result = CliRunner().invoke(cli, ["--debug", "resolve", "leads.csv"])
    assert result.exit_code != 0
    assert result.exception is not None


def test_config_validate_ok(project: Path) -> None:
    """A good config: one line saying what it holds."""
    result = run("config", "validate", "predial.toml")
    assert result.exit_code == 0
    assert "1 campaign(s): c (file)" in result.stdout


def test_plugins_lists_the_builtin_adapter() -> None:
    """The file adapter is a plugin like any other."""
    result = run("plugins", "--json")
    assert result.exit_code == 0
    plugins = [json.loads(line) for line in result.stdout.splitlines()]
    builtin = next(p for p in plugins if p["origin"] == "builtin")
    assert (builtin["adapters"], builtin["status"]) == (["file"], "active")
    assert "file" in run("plugins").stdout


def test_check_traces_one_resolution() -> None:
    """check: adapter, attempts with timings, raw answer and verdicts, all masked."""
    result = run("check", "cmp_crm_export", "C-1002", "--config", CONFIG)
    assert result.exit_code == 0
    out = result.stdout
    assert "adapter file" in out
    assert "CrmContact: mobile: +4474***3456, home: +4412***5678" in out
    assert "accepted +4474***3456" in out
    assert "resolved +4474***3456 from crm" in out
    assert not FULL_NUMBER.search(out)


def test_check_shows_retries_and_the_refusal() -> None:
    """An unreachable CRM: each attempt's error, then the retryable refusal, exit 1."""
    result = run("check", "cmp_legacy", "L-1", "--config", CONFIG, "--json")
    assert result.exit_code == 1
    trace = json.loads(result.stdout)
    assert len(trace["attempts"]) == 2
    assert "AdapterUnavailable" in trace["attempts"][0]["error"]
    assert (trace["reason"], trace["retryable"]) == ("unavailable", True)


def test_check_shows_policy_refusals() -> None:
    """Every phone tried is listed with the policy's verdict."""
    result = run("check", "cmp_crm_export", "C-1009", "--config", CONFIG, "--json")
    trace = json.loads(result.stdout)
    assert [v["reason"] for v in trace["verdicts"]] == ["not_assigned"]
    assert trace["reason"] == "invalid_number"


def test_no_secret_and_no_full_number_in_any_output(
    project: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Secrets from the environment and full numbers never reach output or logs."""
    secret = "s3cr3t-token-value"
    (project / "adapter.py").write_text(
        "import predial\n"
        "class Secretive:\n"
        "    name = 'secretive'\n"
        "    def __init__(self, token):\n"
        "        self.token = token\n"
        "    def fetch_phone(self, external_id):\n"
        "        raise predial.AdapterUnavailable('503 from https://crm.example/contacts')\n"
        "@predial.hookimpl\n"
        "def register_adapters(register):\n"
        "    register(Secretive)\n"
    )
    (project / "predial.toml").write_text(
        '[resolver]\nplugins = ["adapter.py"]\n'
        '[[campaigns]]\nid = "s"\nadapter = "secretive"\n'
        '[campaigns.settings]\ntoken = "${CRM_TOKEN}"\n'
        '[[campaigns]]\nid = "c"\nadapter = "file"\ndefault_region = "US"\n'
        '[campaigns.settings]\npath = "crm.csv"\n'
    )
    (project / "leads.csv").write_text(
        "campaignId,externalId,phoneNumber\ns,X,+12024561414\nc,C-1,\nc,C-2,+12024561414\nc,,+19005550199\n"
    )
    env = {"CRM_TOKEN": secret}
    outputs = [
        run("-vv", "resolve", "leads.csv", env=env),
        run("-vv", "resolve", "leads.csv", "--json", env=env),
        run("-vv", "check", "s", "X", "--phone", "+12024561414", env=env),
        run("-vv", "check", "c", "C-2", env=env),
        run("config", "validate", env=env),
        run("plugins", env=env),
    ]
    for result in outputs:
        text = result.stdout + result.stderr
        assert secret not in text
        assert not FULL_NUMBER.search(text), text
    assert secret not in caplog.text
    assert not FULL_NUMBER.search(caplog.text)


def test_broken_plugin_is_shown_and_does_not_stop_resolve(
    project: Path, tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A plugin that fails to import: 'failed' in plugins, resolve still works."""
    site = tmp_path_factory.mktemp("site")
    (site / "predial_test_clibroken.py").write_text("raise ImportError('needs libfoo')\n")
    info = site / "predial_clibroken-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: predial-clibroken\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text("[predial]\nclibroken = predial_test_clibroken\n")
    monkeypatch.syspath_prepend(str(site))
    listed = run("plugins", "--json")
    broken = next(json.loads(line) for line in listed.stdout.splitlines() if "clibroken" in line)
    assert broken["status"] == "failed"
    assert "needs libfoo" in broken["error"]
    assert "failed" in run("plugins").stdout
    resolved = run("resolve", "leads.csv")
    assert resolved.exit_code == 0
    assert "+1202***1111" in resolved.stdout


def test_check_redacts_an_adapters_exception_text(project: Path) -> None:
    """An adapter's exception quoting a token and a number: `check` shows neither, in
    the table or as JSON, and --show-numbers never shows the token."""
    token = "sk_live_" + "0123456789abcdef" * 3
    (project / "adapter.py").write_text(
        "import predial\n"
        "class Leaky:\n"
        "    name = 'leaky'\n"
        "    def fetch_phone(self, external_id):\n"
        f"        raise RuntimeError('[/] [bold] GET /contacts?token={token} for +12024561111: '\n"
        f"                           'Authorization: Bearer {token}')\n"
        "@predial.hookimpl\n"
        "def register_adapters(register):\n"
        "    register(Leaky)\n"
    )
    (project / "predial.toml").write_text(
        '[resolver]\nplugins = ["adapter.py"]\n[[campaigns]]\nid = "l"\nadapter = "leaky"\n'
    )
    table = run("check", "l", "X")
    as_json = run("check", "l", "X", "--json")
    shown = run("check", "l", "X", "--show-numbers")
    for result in (table, as_json, shown):
        assert result.exit_code == 1, result.output
        assert token not in result.output
        assert "RuntimeError" in result.output
    for result in (table, as_json):
        assert not FULL_NUMBER.search(result.output)
    assert "[/] [bold]" in table.output  # shown as text, not read as markup


ODD_ADAPTER = """
import asyncio
import predial


class Flag:
    def __bool__(self):
        raise ValueError("ambiguous")


class Phones:
    def __iter__(self):
        raise RuntimeError("iter boom")


class Odd:
    name = "odd"

    async def fetch_phone(self, external_id):
        if external_id == "flag":
            return predial.CrmContact(phones=[predial.CrmPhone("+12024561111")], do_not_call=Flag())
        if external_id == "phones":
            return predial.CrmContact(phones=Phones())
        if external_id == "dicts":
            return predial.CrmContact(phones=[{"number": "+12024561111"}])
        if external_id == "surrogate":
            raise RuntimeError("bad \\ud800 text \\u202e\\u2028FAKE LOG LINE")
        if external_id == "surrogate-phone":
            return predial.CrmContact(phones=[predial.CrmPhone("+1202\\ud8004561111")])
        if external_id == "label":
            return predial.CrmContact(
                phones=[predial.CrmPhone("+12024561111", "token=sk_live_SECRET123 +1 202 456 1414")],
                state="token=sk_live_SECRET123",
            )
        while True:  # "stubborn": ignores every cancellation
            try:
                await asyncio.sleep(60)
            except asyncio.CancelledError:
                pass


@predial.hookimpl
def register_adapters(register):
    register(Odd)
"""


@pytest.fixture
def odd_project(project: Path) -> Path:
    (project / "odd.py").write_text(ODD_ADAPTER)
    (project / "predial.toml").write_text(
        '[resolver]\nplugins = ["odd.py"]\ndeadline = 0.5\n'
        '[[campaigns]]\nid = "o"\nadapter = "odd"\ndefault_region = "US"\n'
    )
    return project


@pytest.mark.parametrize(
    "external_id", ["flag", "phones", "dicts", "label", "surrogate", "surrogate-phone"]
)
def test_check_shows_answers_it_cannot_read_without_crashing(
    odd_project: Path, external_id: str
) -> None:
    """check describes malformed answers (flags that raise, phones that are not a list of
    phones) as it can, redacted, and gives the refusal; no traceback."""
    for args in ([], ["--json"], ["--show-numbers"]):
        result = run("check", "o", external_id, *args)
        assert result.exit_code == (0 if external_id == "label" else 1), result.output
        assert "Traceback" not in result.output
        assert "FAKE LOG LINE" not in result.output.splitlines()[-1:]
        assert "sk_live_SECRET123" not in result.output
        if "--show-numbers" not in args:
            assert not FULL_NUMBER.search(result.stdout)


@pytest.mark.parametrize(
    "command",
    [["check", "o", "stubborn"], ["resolve", "--campaign", "o", "--external-id", "stubborn"]],
)
def test_a_command_exits_though_an_adapter_ignores_its_cancellation(
    odd_project: Path, command: list[str]
) -> None:
    """The command answers at the deadline and exits, leaving the stubborn fetch behind."""
    import subprocess
    import sys

    done = subprocess.run(
        [sys.executable, "-m", "predial", *command],
        capture_output=True,
        text=True,
        timeout=30,
        cwd=odd_project,
    )
    assert done.returncode == 1, done.stderr
    assert "timeout" in done.stdout
    assert "Task was destroyed" not in done.stderr


def test_predials_own_error_messages_are_not_redacted(project: Path) -> None:
    """A configuration error naming a secret setting is printed whole."""
    (project / "predial.toml").write_text(
        '[[campaigns]]\nid = "c"\nadapter = "file"\n[campaigns.settings]\n'
        'path = "crm.csv"\ntoken = "literal-value"\n'
    )
    result = run("config", "validate")
    assert result.exit_code == 2
    assert "secrets are not written" in result.output
    assert "literal-value" not in result.output


# -- issue 13, operators: every problem at once; options anywhere; one-line usage errors


def test_config_validate_lists_every_problem_one_line_each(
    project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A missing variable does not hide a misspelt adapter or a typo: all shown, exit 2."""
    (project / "predial.toml").write_text(
        "[resolver]\ndeadlin = 2\n"
        '[[campaigns]]\nid = "c"\nadapter = "file"\ndefault_region = "US"\n'
        '[campaigns.settings]\npath = "crm.csv"\n'
        '[[campaigns]]\nid = "h"\nadapter = "hubspt"\n'
        '[campaigns.settings]\ntoken = "${HUBSPOT_TOKEN}"\n'
        '[[campaigns]]\nid = "d"\nadapter = "file"\n'
        '[campaigns.settings]\npath = "crm.csv"\nid_column = "nope"\n'
    )
    monkeypatch.delenv("HUBSPOT_TOKEN", raising=False)
    result = run("config", "validate")
    assert result.exit_code == 2
    lines = result.stderr.splitlines()
    assert lines[:3] == [
        "error: predial.toml: resolver.deadlin: unknown setting; did you mean 'deadline'?",
        "error: predial.toml: campaigns[1].settings.token: environment variable HUBSPOT_TOKEN "
        "is not set",
        "error: predial.toml: campaigns[1].adapter: unknown adapter 'hubspt'; did you mean "
        f"'hubspot'?{lines[2].split('?', 1)[1]}",
    ]
    assert lines[3].startswith("error: predial.toml: campaigns[2].settings: adapter 'file'")
    assert "nope" in lines[3]
    assert len(lines) == 4
    assert result.stdout == ""
    assert "Traceback" not in result.output


def test_config_validate_takes_config_like_the_other_commands(project: Path) -> None:
    """`--config PATH` as everywhere else; the positional PATH still works."""
    (project / "other.toml").write_text((project / "predial.toml").read_text())
    (project / "predial.toml").unlink()
    for args in (
        ["--config", "other.toml"],
        ["other.toml"],
        ["other.toml", "--config", "other.toml"],
    ):
        result = run("config", "validate", *args)
        assert result.exit_code == 0, result.output
        assert "ok: other.toml: 1 campaign(s): c (file)" in result.stdout
    result = run("config", "validate", "a.toml", "--config", "other.toml")
    assert result.exit_code == 2
    assert result.stderr.count("\n") == 1
    assert "two files given" in result.stderr


def test_resolve_names_every_configuration_problem(project: Path) -> None:
    """Loading the file anywhere (here predial resolve) says all that is wrong, in our words."""
    config = project / "predial.toml"
    config.write_text(
        config.read_text()
        .replace("default_region", "default_regin")
        .replace('adapter = "file"', 'adapter = "file"\ndeadline = "x"')
    )
    result = run("resolve", "leads.csv")
    assert result.exit_code == 2
    assert result.stderr.splitlines() == [
        "error: predial.toml: 2 problems:",
        "  campaigns[0].deadline: must be a number, not text",
        "  campaigns[0].default_regin: unknown setting; did you mean 'default_region'?",
    ]


def test_debug_works_after_the_subcommand(project: Path) -> None:
    """`predial resolve x.csv --debug` shows the traceback as `predial --debug resolve`
    does, and exits 2 as it would without --debug."""
    (project / "predial.toml").unlink()
    without = CliRunner().invoke(cli, ["resolve", "leads.csv"])
    assert without.exit_code == 2
    assert "Traceback" not in without.stderr
    for args in (["resolve", "leads.csv", "--debug"], ["--debug", "resolve", "leads.csv"]):
        result = CliRunner().invoke(cli, args)
        assert result.exit_code == 2, result.output
        assert result.stderr.startswith("Traceback (most recent call last):\n")
        assert "predial.errors.ConfigurationError: predial.toml: no such configuration" in (
            result.stderr
        )
        # The same line as without --debug, after the traceback.
        assert result.stderr.endswith(without.stderr)


def test_debug_s_traceback_is_redacted() -> None:
    """An exception's text in the traceback is redacted as the logs are: no number,
    no credential; the exit code is still 2."""
    import click

    from predial.cli._app import _Group

    @click.group(cls=_Group)
    @click.option("--debug", is_flag=True)
    @click.pass_context
    def group(ctx: click.Context, debug: bool) -> None:
        ctx.meta["predial.debug"] = debug

    @group.command()
    def fail() -> None:
        raise ValueError("call +12025551234 with token=sk_live_abcdefSECRET")

    for args in (["--debug", "fail"], ["fail"]):
        result = CliRunner().invoke(group, args)
        assert result.exit_code == 2, result.output
        assert "sk_live_abcdefSECRET" not in result.output
        assert "+12025551234" not in result.output
        assert result.stderr.endswith("error: call +1202***1234 with token=<redacted>\n")
        assert ("Traceback (most recent call last):" in result.stderr) == (args[0] == "--debug")


def test_verbose_works_after_the_subcommand(project: Path) -> None:
    """-v after the subcommand counts with the group's own -v: -v -v is debug logging."""
    import logging

    logger = logging.getLogger("predial")
    before = (logger.level, list(logger.handlers), logger.propagate)
    try:
        assert run("resolve", "leads.csv", "-v").exit_code == 0
        assert logger.level == logging.INFO
        assert run("-v", "resolve", "leads.csv", "-v").exit_code == 0
        assert logger.level == logging.DEBUG
        assert run("resolve", "leads.csv").exit_code == 0
        assert logger.level == logging.WARNING
    finally:
        logger.setLevel(before[0])
        logger.handlers[:] = before[1]
        logger.propagate = before[2]


@pytest.mark.parametrize(
    ("args", "line"),
    [
        (
            ["resolve", "{dir}"],
            "error: LEADS_FILE: {dir} is a directory; give a CSV or JSONL file of leads",
        ),
        (
            ["resolve", "leads.csv", "--config", "{dir}"],
            "error: --config: {dir} is a directory; give the predial.toml file",
        ),
        (
            ["import", "{dir}", "--campaign", "c"],
            "error: FILE: {dir} is a directory; give a CSV or JSONL file of leads",
        ),
        (
            ["config", "validate", "{dir}"],
            "error: PATH: {dir} is a directory; give the predial.toml file",
        ),
        (
            ["check", "c", "C-1", "--config", "{dir}"],
            "error: --config: {dir} is a directory; give the predial.toml file",
        ),
    ],
)
def test_a_directory_given_as_a_file_is_one_line(project: Path, args: list[str], line: str) -> None:
    """No four-line usage block: one line naming the option, exit 2."""
    (project / "somedir").mkdir()
    result = run(*[arg.format(dir="somedir") for arg in args])
    assert result.exit_code == 2
    assert result.stderr == line.format(dir="somedir") + "\n"


def test_a_directory_as_predial_config_is_one_line(project: Path) -> None:
    (project / "somedir").mkdir()
    result = run("resolve", "leads.csv", env={"PREDIAL_CONFIG": "somedir"})
    assert result.exit_code == 2
    assert result.stderr == (
        "error: somedir: is a directory; give the predial.toml file (e.g. dir/predial.toml)\n"
    )


@pytest.mark.parametrize(
    ("args", "line"),
    [
        (["import", "leads.csv"], "error: missing option '--campaign' (see 'predial import -h')"),
        (
            ["resolve", "leads.csv", "--jsn"],
            "error: no such option '--jsn'. Did you mean '--json'? (see 'predial resolve -h')",
        ),
        (
            ["reslove"],
            "error: no such command 'reslove'. Did you mean 'resolve'? (see 'predial -h')",
        ),
        (
            ["resolve", "leads.csv", "--concurrency", "0"],
            "error: --concurrency: 0 is not in the range 1<=x<=1000",
        ),
        (
            ["resolve"],
            "error: give a LEADS_FILE or --external-id (with --campaign), not both (see 'predial resolve -h')",
        ),
    ],
)
def test_usage_errors_are_one_line(project: Path, args: list[str], line: str) -> None:
    result = run(*args)
    assert result.exit_code == 2
    assert result.stderr == line + "\n"
    assert "Usage:" not in result.output


def test_no_command_still_shows_the_help() -> None:
    result = CliRunner().invoke(cli, [])
    assert "Usage:" in result.output
    assert "resolve" in result.output


def test_the_example_in_a_message_survives_masking(project: Path) -> None:
    """`e.g. +14155550123` is shown whole (it is nobody's number); real numbers stay masked."""
    (project / "leads.csv").write_text(
        "campaignId,externalId,phoneNumber\nc,C-1,4155550123\nc,C-1,\n"
    )
    for args in ([], ["--json"]):
        result = run("resolve", "leads.csv", *args)
        assert result.exit_code == 1
        assert "(e.g. +14155550123)" in result.stdout
        assert "+1415***0123" not in result.stdout
        assert "+1202***1111" in result.stdout
        assert "+12024561111" not in result.stdout


def test_a_lead_given_on_the_command_line_is_refused_in_one_line(project: Path) -> None:
    """pydantic's block (title, [type=...], a URL) becomes one line naming the field."""
    result = run("check", "c", "C-1", "--phone", "4155550123")
    assert result.exit_code == 2
    assert result.stderr.startswith(
        "error: --phone: phoneNumber must be in E.164 format: + and the country code "
        "(e.g. +14155550123)"
    )
    assert result.stderr.count("\n") == 1
    for pydantics in ("validation error", "[type=", "pydantic.dev", "\\n"):
        assert pydantics not in result.stderr


# -- tables at 80 columns -------------------------------------------------------------

MASKED = re.compile(r"\+\d{4}\*\*\*\d{4}")


def _table_rows(stdout: str) -> list[str]:
    return [line for line in stdout.splitlines() if re.match(r"\s*\d+\s+│", line)]


@pytest.mark.parametrize("width", [80, 120])
def test_the_resolve_table_is_readable_at_any_width(width: int) -> None:
    """Every row one line within the width; masked numbers, campaigns and reason codes whole."""
    result = run("resolve", LEADS, "--config", CONFIG, env={"COLUMNS": str(width)})
    assert result.exit_code == 1
    rows = _table_rows(result.stdout)
    assert len(rows) == 20
    table = result.stdout.split("resolved ", 1)[0]
    assert max(len(line) for line in table.splitlines()) <= width
    assert "…" not in table
    leads = run("resolve", LEADS, "--config", CONFIG, "--json").stdout.splitlines()
    by_row = {str(item["row"]): item for item in map(json.loads, leads)}
    for line in rows:  # each row shows its lead's number, reason code and campaign whole
        item = by_row[line.split()[0]]
        assert (item.get("phoneNumber") or "") in line
        assert (item.get("reason") or item.get("fallbackReason") or "") in line
        assert item["campaignId"] in line
    if width == 120:  # room for everything, as before
        assert re.search(r"mode .* ms\s*$", table.splitlines()[0])
        assert "refused (retry)" in table
    else:  # the timings and the mode go first; a refusal says retry or skip
        assert " ms" not in table.splitlines()[0]
        assert " retry " in table
        assert " skip " in table


def test_one_campaign_is_said_once_and_a_long_problem_is_cut(project: Path) -> None:
    (project / "leads.csv").write_text("campaignId,externalId,phoneNumber\nc,C-1,\nc,,4155550123\n")
    result = run("resolve", "leads.csv", env={"COLUMNS": "80"})
    lines = result.stdout.splitlines()
    assert lines[0] == "campaign c"
    assert "campaign" not in lines[1]
    rows = _table_rows(result.stdout)
    assert len(rows) == 2
    assert "+1202***1111" in rows[0]
    assert rows[1].rstrip().endswith("…")
    assert "phoneNumber must be in E.164 format" in rows[1]
    assert "--json shows them whole" in result.stdout
    assert max(len(line) for line in lines[:4]) <= 80


def test_check_tables_keep_numbers_whole_at_80_columns(project: Path) -> None:
    (project / "long.py").write_text(
        "import predial\n"
        "from predial._models import CrmContact, CrmPhone\n"
        "class Long:\n"
        "    name = 'long'\n"
        "    def fetch_phone(self, external_id):\n"
        "        return CrmContact(phones=[\n"
        "            CrmPhone('+1 900 555 0199', 'Mobile Phone Number (preferred by the customer)',"
        " True),\n"
        "            CrmPhone('+44 20 7946 0958', 'home', False),\n"
        "        ])\n"
        "@predial.hookimpl\n"
        "def register_adapters(register):\n"
        "    register(Long)\n"
    )
    (project / "predial.toml").write_text(
        '[resolver]\nplugins = ["long.py"]\n'
        '[[campaigns]]\nid = "c"\nadapter = "long"\ndefault_region = "US"\n'
    )
    result = run("check", "c", "C-1", env={"COLUMNS": "80"})
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert max(len(line) for line in lines) <= 80
    policy = lines[lines.index(next(line for line in lines if "phone policy" in line)) :]
    mobile = next(line for line in policy if "+1900***0199" in line)
    assert "Mobile Phone Number" in mobile
    assert "…" in mobile  # the label is cut, on one line
    assert "refused type_not_allowed" in mobile
    assert any("accepted +4420***0958" in line for line in policy)
    assert all(len(MASKED.findall(line)) == line.count("***") for line in lines)


# -- issue 13, the first hour: what a new user trips over


def test_config_validate_checks_the_settings_of_a_campaign_with_other_problems(
    project: Path,
) -> None:
    """A typo in a campaign's own keys does not hide its adapter's misspelt setting,
    nor does a duplicate id hide the second campaign's."""
    (project / "predial.toml").write_text(
        '[[campaigns]]\nid = "c"\nadapter = "file"\ndefault_regoin = "US"\n'
        '[campaigns.settings]\npath = "crm.csv"\nid_colum = "id"\n'
        '[[campaigns]]\nid = "c"\nadapter = "file"\n'
        '[campaigns.settings]\npath = "crm.csv"\nphone_column = "mobile"\n'
    )
    result = run("config", "validate")
    assert result.exit_code == 2
    lines = result.stderr.splitlines()
    assert lines[0] == (
        "error: predial.toml: campaigns[0].default_regoin: unknown setting; did you mean "
        "'default_region'?"
    )
    assert lines[1].startswith(
        "error: predial.toml: campaigns[0].settings.id_colum: adapter 'file' has no such "
        "setting; did you mean 'id_column'?"
    )
    assert lines[2].startswith("error: predial.toml: campaigns[1].id: campaign id 'c' appears")
    assert lines[3].startswith(
        "error: predial.toml: campaigns[1].settings.phone_column: adapter 'file' has no such "
        "setting; did you mean 'phone_columns'?"
    )
    assert len(lines) == 4


def test_config_validate_leaves_settings_with_an_unset_variable_alone(
    project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Incomplete settings are not built (the stand-in would mislead): the variable is
    the one problem said of them, whatever else is wrong with the campaign."""
    monkeypatch.delenv("CRM_ID_COLUMN", raising=False)
    (project / "predial.toml").write_text(
        '[[campaigns]]\nid = "c"\nadapter = "file"\ndefault_regoin = "US"\n'
        '[campaigns.settings]\npath = "crm.csv"\nid_colum = "${CRM_ID_COLUMN}"\n'
    )
    result = run("config", "validate")
    assert result.exit_code == 2
    assert result.stderr.splitlines() == [
        "error: predial.toml: campaigns[0].settings.id_colum: environment variable "
        "CRM_ID_COLUMN is not set",
        "error: predial.toml: campaigns[0].default_regoin: unknown setting; did you mean "
        "'default_region'?",
    ]


@pytest.mark.parametrize(
    ("service", "line"),
    [
        (
            'host = "0.0.0.0"\nallow_unauthenticated = true\n',
            "error: predial.toml: service.allow_unauthenticated: allowed on a loopback address "
            "only, not 0.0.0.0: add [[service.keys]] or webhook_secrets, or listen on 127.0.0.1",
        ),
        (
            "port = 8080\n",
            "error: predial.toml: service: no credentials are configured; add [[service.keys]] "
            "or webhook_secrets (or, on 127.0.0.1 only, allow_unauthenticated = true)",
        ),
        (
            'allow_unauthenticated = true\nforwarded_allow_ips = ["10.0.0.1"]\n',
            "error: predial.toml: service.allow_unauthenticated with forwarded_allow_ips: a "
            "proxy forwards requests from elsewhere, which must authenticate; add "
            "[[service.keys]] or webhook_secrets",
        ),
    ],
)
def test_config_validate_refuses_the_service_settings_serve_refuses(
    project: Path, service: str, line: str
) -> None:
    """What `predial serve` would refuse is a problem for `config validate` too, not `ok:`."""
    config = project / "predial.toml"
    config.write_text(config.read_text() + "[service]\n" + service)
    result = run("config", "validate")
    assert result.exit_code == 2
    assert result.stderr.splitlines() == [line]
    assert result.stdout == ""


def test_config_validate_accepts_unauthenticated_callers_on_loopback(project: Path) -> None:
    config = project / "predial.toml"
    config.write_text(config.read_text() + "[service]\nallow_unauthenticated = true\nport = 0\n")
    result = run("config", "validate")
    assert result.exit_code == 0, result.output
    assert "ok: [service] on 127.0.0.1:0" in result.stdout


def test_config_validate_checks_the_service_when_the_rest_has_problems(project: Path) -> None:
    config = project / "predial.toml"
    config.write_text(
        config.read_text().replace("default_region", "default_regin")
        + '[service]\nhost = "0.0.0.0"\nallow_unauthenticated = true\n'
    )
    result = run("config", "validate")
    assert result.exit_code == 2
    lines = result.stderr.splitlines()
    assert len(lines) == 2
    assert lines[0].startswith("error: predial.toml: campaigns[0].default_regin: unknown")
    assert lines[1].startswith("error: predial.toml: service.allow_unauthenticated: allowed on")


@pytest.mark.parametrize(
    "args",
    [
        ["resolve", "--campaign", "x", "--external-id", "y"],
        ["check", "x", "y"],
        ["config", "validate"],
        ["serve"],
    ],
)
def test_a_missing_configuration_says_how_to_give_one(project: Path, args: list[str]) -> None:
    """A new user's first command without a predial.toml: one line saying what to do."""
    (project / "predial.toml").unlink()
    result = run(*args)
    assert result.exit_code == 2
    assert result.stderr.splitlines() == [
        "error: predial.toml: no such configuration file; give one with --config PATH or "
        "$PREDIAL_CONFIG (examples/predial.toml in predial's repository is a starting point)"
    ]


def test_a_missing_file_named_by_predial_config_says_so(project: Path) -> None:
    result = run("resolve", "leads.csv", env={"PREDIAL_CONFIG": "elsewhere.toml"})
    assert result.exit_code == 2
    assert result.stderr.splitlines() == [
        "error: elsewhere.toml: no such configuration file (named by $PREDIAL_CONFIG); fix "
        "or unset PREDIAL_CONFIG, or give the file with --config PATH"
    ]


BROKEN_ADAPTER = (
    "import predial\n"
    "class Broken:\n"
    "    name = 'broken'\n"
    "    def fetch_phone(self, external_id):\n"
    "        raise RuntimeError('the CRM client fell over')\n"
    "@predial.hookimpl\n"
    "def register_adapters(register):\n"
    "    register(Broken)\n"
)


def test_an_adapters_traceback_is_pointed_at_by_the_options_that_show_it(project: Path) -> None:
    """The library logs "(traceback at DEBUG level)"; the command line says how to see it."""
    (project / "adapter.py").write_text(BROKEN_ADAPTER)
    (project / "predial.toml").write_text(
        '[resolver]\nplugins = ["adapter.py"]\n[[campaigns]]\nid = "b"\nadapter = "broken"\n'
    )
    (project / "leads.csv").write_text("campaignId,externalId\nb,X-1\n")
    result = run("resolve", "leads.csv")
    assert result.exit_code == 1, result.output
    logged = [line for line in result.stderr.splitlines() if "raised RuntimeError" in line]
    assert len(logged) == 1, result.stderr
    assert logged[0].endswith("treated as unavailable (traceback with -vv or --debug)")
    assert "Traceback" not in result.stderr
    shown = run("resolve", "leads.csv", "-vv")
    assert "Traceback (most recent call last)" in shown.stderr
    assert "the CRM client fell over" in shown.stderr


def test_an_unconfigured_campaign_says_to_check_the_config_file(project: Path) -> None:
    """Not "check --config", which reads like the `predial check` command."""
    checked = run("check", "nope", "C-1")
    assert checked.exit_code == 2
    assert checked.stderr.rstrip().endswith("; check the --config file")
    resolved = run("resolve", "--campaign", "nope", "--external-id", "C-1")
    assert resolved.exit_code == 2
    assert resolved.stderr.rstrip().endswith(
        "fix the configuration (predial config validate) or check the --config file"
    )


PICKY_ADAPTER = (
    "import predial\n"
    "class Picky:\n"
    "    name = 'picky'\n"
    "    def __init__(self, token):\n"
    "        raise TypeError(f'token {token} is not for this portal')\n"
    "    def fetch_phone(self, external_id):\n"
    "        return None\n"
    "@predial.hookimpl\n"
    "def register_adapters(register):\n"
    "    register(Picky)\n"
)


def test_config_validate_debug_logs_each_problems_traceback(
    project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """--debug (or -vv) shows the exception behind each problem, as other commands
    do: here an adapter's own TypeError, redacted (it quotes the token)."""
    token = "pat-" + "9f8e7d6c5b4a" * 3
    monkeypatch.setenv("PICKY_TOKEN", token)
    (project / "adapter.py").write_text(PICKY_ADAPTER)
    config = project / "predial.toml"
    config.write_text(
        '[resolver]\nplugins = ["adapter.py", "missing.py"]\n'
        + config.read_text().replace('path = "crm.csv"', 'path = "crm.csv"\nid_colum = "id"')
        + '[[campaigns]]\nid = "p"\nadapter = "picky"\n'
        '[campaigns.settings]\ntoken = "${PICKY_TOKEN}"\n'
    )
    plain = run("config", "validate")
    assert plain.exit_code == 2
    errors = [line for line in plain.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 3
    assert "Traceback" not in plain.stderr
    for args in (["config", "validate", "--debug"], ["--debug", "config", "validate"]):
        debug = run(*args)
        assert debug.exit_code == 2
        assert [line for line in debug.stderr.splitlines() if line.startswith("error: ")] == (
            errors
        )
        text = debug.stderr
        assert text.count("Traceback (most recent call last)") >= 2, text
        assert "TypeError: FileAdapter.__init__() got an unexpected keyword argument" in text
        assert "raise TypeError(f'token {token} is not for this portal')" in text
        assert "TypeError: token " in text
        assert token not in text


def test_plugins_lists_a_plugins_do_not_call_sources(project: Path) -> None:
    (project / "scrub.py").write_text(
        "import predial\n\n"
        "@predial.hookimpl\n"
        "def register_dnc_sources(register):\n"
        "    register('litigators', lambda number: False)\n"
    )
    config = project / "predial.toml"
    config.write_text('[resolver]\nplugins = ["scrub.py"]\n' + config.read_text())
    result = run("plugins", "--json")
    assert result.exit_code == 0, result.output
    plugins = [json.loads(line) for line in result.stdout.splitlines()]
    scrub = next(p for p in plugins if p["name"].endswith("scrub.py"))
    assert (scrub["dnc_sources"], scrub["status"]) == (["litigators"], "active")
    assert "dnc:litigators" in run("plugins").stdout
