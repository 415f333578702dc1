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
from predial.cli._app import cli

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


@pytest.mark.parametrize(
    "command",
    [["resolve", "--campaign", "a", "--external-id", "C-1"], ["check", "a", "C-1"], ["plugins"]],
)
def test_other_commands_loading_the_file_do_not_echo_a_secret_either(
    folder: Path, command: list[str]
) -> None:
    value = fresh_secret()
    (folder / "crm.csv").write_text("id,mobile\nC-1,+12024561111\n")
    (folder / "predial.toml").write_text(
        '[[campaigns]]\nid = "a"\nadapter = "file"\ndefault_region = "${ACME_API_TOKEN}"\n'
        '[campaigns.settings]\npath = "crm.csv"\n'
    )
    result = run(*command, env={"ACME_API_TOKEN": value})
    assert value not in result.output
    assert "default_region '<redacted>' is not a known region" in result.stderr


def test_a_problem_naming_a_phone_number_key_masks_it(folder: Path) -> None:
    (folder / "predial.toml").write_text('[resolver]\n"+12025551234" = 1\n')
    result = run("config", "validate")
    assert result.exit_code == 2
    assert "+12025551234" not in result.output
    assert '"+1202***1234": unknown setting' in result.stderr


# -- 2. config validate accepts the configured plugins the runtime accepts ---------


def two_plugin_folders(folder: Path) -> None:
    for sub, cls, name in (("a", "A", "alpha"), ("b", "B", "beta")):
        (folder / sub).mkdir()
        (folder / sub / "x.py").write_text(PLUGIN.format(cls=cls, name=name))


@pytest.mark.parametrize(
    ("plugins", "adapters"),
    [
        ('["a/x.py", "a/x.py", "./a/x.py"]', ["alpha"]),  # one file named three times
        ('["a/x.py", "b/x.py"]', ["alpha", "beta"]),  # two files with the same stem
    ],
)
def test_validate_plugins_and_resolve_accept_the_same_configured_files(
    folder: Path, plugins: str, adapters: list[str]
) -> None:
    two_plugin_folders(folder)
    campaigns = "".join(
        f'[[campaigns]]\nid = "c{index}"\nadapter = "{name}"\n'
        for index, name in enumerate(adapters)
    )
    (folder / "predial.toml").write_text(f"[resolver]\nplugins = {plugins}\n{campaigns}")
    validated = run("config", "validate")
    assert validated.exit_code == 0, validated.output
    assert validated.stdout.startswith(f"ok: predial.toml: {len(adapters)} campaign(s)")
    listed = run("plugins")
    assert listed.exit_code == 0, listed.output
    assert "failed" not in listed.output
    for index in range(len(adapters)):
        resolved = run("resolve", "--campaign", f"c{index}", "--external-id", "X")
        assert resolved.exit_code == 0, resolved.output
        assert "+1202***1111" in resolved.stdout


def test_same_stem_plugin_files_keep_their_own_modules(folder: Path) -> None:
    """Each file is a module of its own in sys.modules (one replacing the other would
    break whatever looks a class's module up: dataclasses, pickle, typing)."""
    import sys

    two_plugin_folders(folder)
    (folder / "predial.toml").write_text('[resolver]\nplugins = ["a/x.py", "b/x.py"]\n')
    with Resolver.from_config("predial.toml", load_entrypoints=False) as resolver:
        alpha = resolver.registry.adapter_class("alpha")
        beta = resolver.registry.adapter_class("beta")
    assert alpha.__module__ != beta.__module__
    assert sys.modules[alpha.__module__].A is alpha
    assert sys.modules[beta.__module__].B is beta


def test_validate_reports_every_failing_plugin_once(folder: Path) -> None:
    (folder / "broken.py").write_text(BROKEN)
    (folder / "predial.toml").write_text(
        '[resolver]\nplugins = ["broken.py", "missing.py", "broken.py", "no_such_module_xyz"]\n'
    )
    result = run("config", "validate")
    assert result.exit_code == 2
    lines = result.stderr.splitlines()
    assert len(lines) == 3, lines
    assert lines[0].startswith("error: predial.toml: resolver.plugins[0]: plugin 'broken.py'")
    assert lines[1].startswith("error: predial.toml: resolver.plugins[1]: plugin 'missing.py'")
    assert lines[2].startswith("error: predial.toml: resolver.plugins[3]: plugin 'no_such_mod")
    assert "already registered" not in result.stderr


# -- 3. validation stays linear in the file's size ---------------------------------


class Counted(int):
    """An index that counts how often it is compared or hashed."""

    calls = 0

    def __eq__(self, other: object) -> bool:
        Counted.calls += 1
        return int(self) == other

    def __hash__(self) -> int:
        Counted.calls += 1
        return int.__hash__(self)


def test_asking_where_variables_are_unset_costs_the_location_s_depth_not_their_number() -> None:
    from predial._config import _Unset

    count = 2000
    unset = _Unset()
    for index in range(count):
        unset.add(("campaigns", Counted(index), "settings", "path"))
    Counted.calls = 0
    for index in range(count):
        assert unset.covers(("campaigns", Counted(index), "settings", "path"))
        assert unset.covers(("campaigns", Counted(index)))  # a table holding one
        assert unset.covers(("campaigns", Counted(index), "settings", "path", 0))  # below one
        assert not unset.covers(("campaigns", Counted(index), "deadlin"))
        assert not unset.covers(("campaigns", Counted(count + index)))
    # A handful per question; walking every location would be millions.
    assert Counted.calls < 100 * count


def test_a_big_file_with_an_unset_variable_and_a_typo_in_every_campaign(folder: Path) -> None:
    count = 1000
    (folder / "predial.toml").write_text(
        "".join(
            f'[[campaigns]]\nid = "c{index}"\nadapter = "file"\ndeadlin = 1\n'
            f'[campaigns.settings]\npath = "${{PREDIAL_TEST_MISSING_{index}}}"\n'
            for index in range(count)
        )
    )
    result = run("config", "validate")
    assert result.exit_code == 2
    expected = []
    for index in range(count):
        expected += [
            f"error: predial.toml: campaigns[{index}].deadlin: unknown setting; did you mean "
            "'deadline'?",
            f"error: predial.toml: campaigns[{index}].settings.path: environment variable "
            f"PREDIAL_TEST_MISSING_{index} is not set",
        ]
    assert sorted(result.stderr.splitlines()) == sorted(expected)


# -- 4. TOML nested too deeply ------------------------------------------------------


def nested(levels: int, kind: str = "table") -> str:
    value = '"x"'
    for _ in range(levels):
        value = f"{{a = {value}}}" if kind == "table" else f"[{value}]"
    return value


@pytest.mark.parametrize(
    "text",
    [
        f"[resolver]\nx = {nested(400)}\n",  # deeper than tomllib can read
        # tomllib reads these; what reads the tables after it would recurse as deep
        f'[[campaigns]]\nid = "c"\nadapter = "file"\n[campaigns.settings]\n'
        f"token = {nested(480, 'array')}\n",
        f"[resolver]\nlabel_preference = {nested(100, 'array')}\n",
    ],
    ids=["tables-400", "arrays-480", "arrays-100"],
)
@pytest.mark.parametrize(
    "command",
    [
        ["config", "validate"],
        ["resolve", "--campaign", "c", "--external-id", "X"],
        ["check", "c", "X"],
    ],
)
def test_a_file_nested_too_deeply_is_one_line(folder: Path, text: str, command: list[str]) -> None:
    (folder / "predial.toml").write_text(text)
    result = run(*command)
    assert result.exit_code == 2, result.output
    assert result.output == "error: predial.toml: nested too deeply to read\n"


def test_nesting_a_setting_needs_is_read(folder: Path) -> None:
    (folder / "predial.toml").write_text(f"[resolver]\nx = {nested(40)}\n")
    result = run("config", "validate")
    assert result.exit_code == 2
    assert "resolver.x: unknown setting" in result.stderr


# -- 5. rich's emoji codes are text -------------------------------------------------


def test_emoji_codes_in_a_key_are_printed_as_written(folder: Path) -> None:
    (folder / "predial.toml").write_text('[resolver]\n":x: :thumbs_up:" = 1\n')
    result = run("config", "validate")
    assert result.exit_code == 2
    assert '":x: :thumbs_up:": unknown setting' in result.stderr
    assert "❌" not in result.output


def test_emoji_codes_in_an_adapter_s_message_are_printed_as_written(folder: Path) -> None:
    (folder / "crm.csv").write_text("root:x:0,mobile\nC-1,+12024561111\n")
    (folder / "predial.toml").write_text(
        '[[campaigns]]\nid = "c"\nadapter = "file"\n[campaigns.settings]\npath = "crm.csv"\n'
    )
    result = run("config", "validate")
    assert result.exit_code == 2
    assert "is not among the columns of crm.csv (root:x:0, mobile)" in result.stderr
    assert "❌" not in result.output


def test_emoji_codes_in_a_campaign_are_printed_as_written(folder: Path) -> None:
    (folder / "crm.csv").write_text("id,mobile\n:thumbs_up:,+12024561111\n")
    (folder / "predial.toml").write_text(
        '[[campaigns]]\nid = ":x:"\nadapter = "file"\n[campaigns.settings]\npath = "crm.csv"\n'
        'id_column = "id"\n'
    )
    validated = run("config", "validate")
    assert validated.exit_code == 0, validated.output
    assert validated.stdout == "ok: predial.toml: 1 campaign(s): :x: (file)\n"
    resolved = run("resolve", "--campaign", ":x:", "--external-id", ":thumbs_up:")
    assert resolved.exit_code == 0, resolved.output
    assert ":thumbs_up:" in resolved.stdout
    for output in (validated.output, resolved.output):
        assert "❌" not in output
        assert "👍" not in output


# -- 8. literal secrets in disguise ---------------------------------------------------

LITERAL = 'secrets are not written in the file; set an environment variable and write "${VARIABLE}"'
DEFAULT = (
    'a default for a secret is a secret written in the file; write "${VARIABLE}" without '
    '":-..." and set the variable'
)


@pytest.mark.parametrize(
    ("settings", "problem"),
    [
        ('token = "${PREDIAL_TEST_UNSET:-pat-literal}"', f"settings.token: {DEFAULT}"),
        ('token = "${PREDIAL_TEST_SET:-pat-literal}"', f"settings.token: {DEFAULT}"),
        ('headers = {X-Api-Key = "literal"}', f"settings.headers.X-Api-Key: {LITERAL}"),
        (
            'headers = {X-Api-Key = "${PREDIAL_TEST_SET:-literal}"}',
            f"settings.headers.X-Api-Key: {DEFAULT}",
        ),
        ('credentials = {user = "u1", other = "p1"}', f"settings.credentials.user: {LITERAL}"),
        (
            'credentials = {list = ["${PREDIAL_TEST_SET}", "literal"]}',
            f"settings.credentials.list[1]: {LITERAL}",
        ),
    ],
)
def test_a_secret_written_in_disguise_is_refused(folder: Path, settings: str, problem: str) -> None:
    (folder / "predial.toml").write_text(
        f'[[campaigns]]\nid = "c"\nadapter = "http"\n[campaigns.settings]\n{settings}\n'
    )
    result = run(
        "config", "validate", env={"PREDIAL_TEST_SET": "from-the-env", "PREDIAL_TEST_UNSET": None}
    )
    assert result.exit_code == 2
    assert f"error: predial.toml: campaigns[0].{problem}\n" in result.stderr
    assert "literal" not in result.stderr.replace("secrets are not written", "")


@pytest.mark.parametrize(
    ("service", "problem"),
    [
        ('[[service.keys]]\nkey = "${PREDIAL_TEST_UNSET:-dialer-key-1}"\n', "service.keys[0].key"),
        ('webhook_secrets = ["${PREDIAL_TEST_UNSET:-whsec-1}"]\n', "service.webhook_secrets[0]"),
    ],
)
def test_a_service_credential_with_a_default_is_refused(
    folder: Path, service: str, problem: str
) -> None:
    header = "" if service.startswith("[[") else "[service]\n"
    (folder / "predial.toml").write_text(header + service)
    result = run("config", "validate", env={"PREDIAL_TEST_UNSET": None})
    assert result.exit_code == 2
    assert f"error: predial.toml: {problem}: {DEFAULT}\n" in result.stderr


def test_secrets_from_the_environment_and_other_defaults_are_accepted(folder: Path) -> None:
    (folder / "crm.csv").write_text("id,mobile\nC-1,+12024561111\n")
    (folder / "predial.toml").write_text(
        '[[campaigns]]\nid = "c"\nadapter = "file"\ndefault_region = "${PREDIAL_TEST_UNSET:-US}"\n'
        '[campaigns.settings]\npath = "${PREDIAL_TEST_UNSET:-crm.csv}"\n'
        'id_column = "id"\n'
    )
    result = run("config", "validate", env={"PREDIAL_TEST_UNSET": None})
    assert result.exit_code == 0, result.output


# -- 9. a symbolic link loop given as a file ----------------------------------------

LOOP = "is a symbolic link loop (its links lead back to each other); give the file itself"


@pytest.mark.parametrize(
    ("args", "env", "line"),
    [
        (["resolve", "loop"], {}, f"error: LEADS_FILE: loop {LOOP}\n"),
        (
            ["resolve", "--config", "loop", "--campaign", "c", "--external-id", "X"],
            {},
            f"error: --config: loop {LOOP}\n",
        ),
        (["config", "validate", "loop"], {}, f"error: PATH: loop {LOOP}\n"),
        (["import", "loop", "--campaign", "c"], {}, f"error: FILE: loop {LOOP}\n"),
        (["check", "c", "X"], {"PREDIAL_CONFIG": "loop"}, f"error: loop: {LOOP}\n"),
    ],
)
def test_a_symbolic_link_loop_is_said_the_same_way_everywhere(
    folder: Path, args: list[str], env: dict[str, str | None], line: str
) -> None:
    (folder / "loop").symlink_to("loop2")
    (folder / "loop2").symlink_to("loop")
    result = run(*args, env=env)
    assert result.exit_code == 2
    assert result.output == line
