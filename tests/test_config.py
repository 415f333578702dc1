"""predial.toml: validation with key paths, secrets from the environment."""

from __future__ import annotations

import json
import re
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from predial import ConfigurationError, Lead, Resolver, UnknownAdapter
from predial._config import check_config, load_config, validation_problems

CRM = "id,mobile_phone\nC-1,(202) 456-1111\n"

GOOD = """
[resolver]
deadline = 2.5
label_preference = ["work", "mobile"]

[resolver.cache]
positive_ttl = 60

[[campaigns]]
id = "a"
adapter = "file"
default_region = "us"

[campaigns.policy]
allowed_regions = ["US"]

[campaigns.settings]
path = "crm.csv"
"""


def write(tmp_path: Path, text: str, name: str = "predial.toml") -> Path:
    (tmp_path / "crm.csv").write_text(CRM)
    path = tmp_path / name
    path.write_text(text)
    return path


def test_loads_campaigns_and_resolver_defaults(tmp_path: Path) -> None:
    """Every section lands where the resolver needs it."""
    config = load_config(write(tmp_path, GOOD), environ={})
    campaign = config.campaigns[0].campaign()
    assert campaign.default_region == "US"
    assert campaign.phone_policy().allowed_regions == frozenset({"US"})
    options = config.resolver_options()
    assert options["deadline"] == 2.5
    assert options["cache"].positive_ttl == 60
    assert options["label_preference"] == ("work", "mobile")


def test_relative_paths_are_read_from_the_config_directory(tmp_path: Path) -> None:
    """`path = "crm.csv"` means the file beside predial.toml, wherever the command runs."""
    config = load_config(write(tmp_path, GOOD), environ={})
    assert config.campaigns[0].settings["path"] == str(tmp_path / "crm.csv")


def test_from_config_resolves(tmp_path: Path) -> None:
    """Resolver.from_config builds a working resolver."""
    with Resolver.from_config(write(tmp_path, GOOD)) as resolver:
        resolution = resolver.resolve_sync(Lead(campaign_id="a", external_id="C-1"))
    assert resolution.phone_number == "+12024561111"


def test_environment_variables_are_substituted(tmp_path: Path) -> None:
    """`${VAR}` and `${VAR:-default}` are read from the environment."""
    text = GOOD + 'id_column = "${ID_COLUMN}"\nprimary = "${PRIMARY:-mobile}"\n'
    config = load_config(write(tmp_path, text), environ={"ID_COLUMN": "id"})
    settings = config.campaigns[0].settings
    assert (settings["id_column"], settings["primary"]) == ("id", "mobile")


def test_missing_variable_names_it_and_the_key(tmp_path: Path) -> None:
    """The error says which variable and where it is used."""
    text = GOOD + 'token = "${HUBSPOT_TOKEN}"\n'
    with pytest.raises(ConfigurationError) as caught:
        load_config(write(tmp_path, text), environ={})
    message = str(caught.value)
    assert "HUBSPOT_TOKEN" in message
    assert "campaigns[0].settings.token" in message
    assert "predial.toml" in message


@pytest.mark.parametrize("key", ["token", "client_secret", "api_key", "password", "refresh_token"])
def test_literal_secrets_are_refused(tmp_path: Path, key: str) -> None:
    """A secret written in the file is an error that says how to do it instead."""
    with pytest.raises(ConfigurationError, match=rf"campaigns\[0\]\.settings\.{key}.*environment"):
        load_config(write(tmp_path, GOOD + f'{key} = "abc123"\n'), environ={})


def test_invalid_toml_names_the_line(tmp_path: Path) -> None:
    """A syntax error points at its line."""
    with pytest.raises(ConfigurationError, match=r"invalid TOML.*line 3"):
        load_config(write(tmp_path, "[resolver]\ndeadline = 2\nthis is not toml\n"), environ={})


@pytest.mark.parametrize(
    ("extra", "path"),
    [
        ("[campaigns.polcy]\n", "campaigns[0].polcy"),
        ('[[campaigns]]\nid = "b"\nadapter = "file"\ndeadline = "soon"\n', "campaigns[1].deadline"),
        ('[[campaigns]]\nid = "b"\n', "campaigns[1].adapter"),
        (
            '[[campaigns]]\nid = "c"\nadapter = "file"\ndefault_region = "XX"\n',
            "campaigns[1].default_region",
        ),
    ],
)
def test_invalid_values_name_their_key_path(tmp_path: Path, extra: str, path: str) -> None:
    """Each validation error names the key path and what is wrong."""
    with pytest.raises(ConfigurationError) as caught:
        load_config(write(tmp_path, GOOD + extra), environ={})
    assert path in str(caught.value)


def test_duplicate_campaign_ids(tmp_path: Path) -> None:
    """Two campaigns with one id would shadow each other."""
    text = GOOD + '[[campaigns]]\nid = "a"\nadapter = "file"\n'
    with pytest.raises(ConfigurationError, match="appears twice"):
        load_config(write(tmp_path, text), environ={})


def test_missing_file(tmp_path: Path) -> None:
    """A missing config is one clear error."""
    with pytest.raises(ConfigurationError, match="no such configuration file"):
        load_config(tmp_path / "nope.toml")


def test_unknown_adapter_names_the_key_and_suggests(tmp_path: Path) -> None:
    """campaigns[0].adapter: unknown adapter 'fiel'; did you mean 'file'?"""
    path = write(tmp_path, GOOD.replace('adapter = "file"', 'adapter = "fiel"'))
    with pytest.raises(UnknownAdapter) as caught:
        Resolver.from_config(path)
    message = str(caught.value)
    assert "campaigns[0].adapter" in message
    assert "did you mean 'file'?" in message


def test_adapter_settings_errors_name_file_and_campaign(tmp_path: Path) -> None:
    """The file adapter refusing its settings points at campaigns[0].settings."""
    path = write(tmp_path, GOOD + 'id_column = "nope"\n')
    with pytest.raises(ConfigurationError) as caught:
        Resolver.from_config(path)
    message = str(caught.value)
    assert "campaigns[0].settings" in message
    assert "nope" in message


def test_plugin_files_are_loaded(tmp_path: Path) -> None:
    """resolver.plugins loads an adapter from a .py file beside the config."""
    (tmp_path / "my_adapter.py").write_text(
        "import predial\n"
        "class Fixed:\n"
        "    name = 'fixed'\n"
        "    def fetch_phone(self, external_id):\n"
        "        return '+12024561111'\n"
        "@predial.hookimpl\n"
        "def register_adapters(register):\n"
        "    register(Fixed)\n"
    )
    text = '[resolver]\nplugins = ["my_adapter.py"]\n[[campaigns]]\nid = "x"\nadapter = "fixed"\n'
    with Resolver.from_config(write(tmp_path, text)) as resolver:
        assert resolver.resolve_sync(Lead(campaign_id="x", external_id="1")).source == "crm"


def test_missing_plugin_file(tmp_path: Path) -> None:
    """A plugin file that is not there is named."""
    text = '[resolver]\nplugins = ["missing.py"]\n'
    with pytest.raises(ConfigurationError, match="missing.py"):
        Resolver.from_config(write(tmp_path, text))


SERVICE = """
[service]
webhook_secrets = ["${PREDIAL_TEST_WEBHOOK_SECRET}"]

[[service.keys]]
key = "${PREDIAL_TEST_DIALER_KEY}"
campaigns = ["%s"]
"""


def test_a_key_scoped_to_an_unknown_campaign_is_refused(tmp_path: Path) -> None:
    path = write(tmp_path, GOOD + SERVICE % "b")
    env = {"PREDIAL_TEST_DIALER_KEY": "k" * 20, "PREDIAL_TEST_WEBHOOK_SECRET": "whsec_" + "A" * 32}
    with pytest.raises(ConfigurationError, match=r"service\.keys\[0\]\.campaigns: 'b' is not"):
        load_config(path, env).checked_service()
    assert load_config(write(tmp_path, GOOD + SERVICE % "a"), env).checked_service().keys


def test_config_validate_checks_the_service_too(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from predial.cli._app import cli

    path = write(tmp_path, GOOD + SERVICE % "b")
    env = {"PREDIAL_TEST_DIALER_KEY": "k" * 20, "PREDIAL_TEST_WEBHOOK_SECRET": "whsec_" + "A" * 32}
    result = CliRunner(env=env).invoke(cli, ["config", "validate", str(path)])
    assert result.exit_code == 2
    assert "'b' is not a configured campaign" in result.output
    fixed = write(tmp_path, GOOD + SERVICE % "a")
    result = CliRunner(env=env).invoke(cli, ["config", "validate", str(fixed)])
    assert result.exit_code == 0, result.output
    assert "[service] on 127.0.0.1:8000: 1 key(s), 1 webhook secret(s)" in result.output


def test_the_service_secrets_are_needed_by_the_service_only(tmp_path: Path) -> None:
    """A dialer or an operator's CLI sharing the file does not hold the service's keys."""
    path = write(tmp_path, GOOD + SERVICE % "a")
    config = load_config(path, {})
    resolver = Resolver.from_config(path, environ={}, load_entrypoints=False)
    try:
        assert resolver.resolve_sync(Lead(campaign_id="a", external_id="C-1")).source == "crm"
    finally:
        resolver.close_sync()
    with pytest.raises(
        ConfigurationError, match=r"environment variable PREDIAL_TEST_\w+ is not set"
    ):
        config.checked_service()
    # The literal-secret check still covers [service].
    literal = GOOD + SERVICE.replace("${PREDIAL_TEST_DIALER_KEY}", "k" * 20) % "a"
    with pytest.raises(ConfigurationError, match=r"service\.keys\[0\]\.key: secrets are not"):
        load_config(write(tmp_path, literal), {})


# -- every problem at once, in predial's words -------------------------------------

# pydantic's own wording, and its class names, that an operator should never see.
PYDANTIC_WORDS = (
    *("input should", "extra inputs", "value error", "field required", "validation error"),
    *("instance of", "dictionary", "[type="),
)


def test_every_problem_is_reported_at_once(tmp_path: Path) -> None:
    """A missing variable, a typo and a bad value: all three, one line each, file order."""
    text = (
        GOOD.replace("deadline = 2.5", "deadlin = 2.5")
        + 'token = "${HUBSPOT_TOKEN}"\n'
        + '[[campaigns]]\nid = "b"\nadapter = "file"\ndeadline = "soon"\n'
    )
    with pytest.raises(ConfigurationError) as caught:
        load_config(write(tmp_path, text), environ={})
    lines = str(caught.value).splitlines()
    assert lines[0] == f"{tmp_path / 'predial.toml'}: 3 problems:"
    assert [line.strip() for line in lines[1:]] == [
        "resolver.deadlin: unknown setting; did you mean 'deadline'?",
        "campaigns[0].settings.token: environment variable HUBSPOT_TOKEN is not set",
        "campaigns[1].deadline: must be a number, not text",
    ]


@pytest.mark.parametrize(
    ("extra", "line"),
    [
        (
            "[resolver.cache]\npositve_ttl = 1\n",
            "resolver.cache.positve_ttl: unknown setting; did you mean 'positive_ttl'?",
        ),
        (
            '[resolver.breaker]\nfailure_threshold = "five"\n',
            "resolver.breaker.failure_threshold: must be a whole number, not text",
        ),
        ("[resolver.breaker]\nopen_for = 0\n", "resolver.breaker.open_for: must be greater than 0"),
        ("[resolver.retry]\nattempts = 0\n", "resolver.retry.attempts: must be at least 1"),
        (
            "[resolver.cache]\nstale_grace = -1.5\n",
            "resolver.cache.stale_grace: must be at least 0",
        ),
        ('[[campaigns]]\nid = ""\nadapter = "file"\n', "campaigns[1].id: must not be empty"),
        ('[[campaigns]]\nid = "b"\n', "campaigns[1].adapter: missing: this setting is required"),
        (
            '[[campaigns]]\nid = "b"\nadapter = "file"\n[campaigns.policy]\nstrictness = "loose"\n',
            "campaigns[1].policy.strictness: must be 'valid' or 'possible'",
        ),
        (
            '[[campaigns]]\nid = "b"\nadapter = "file"\nlabel_preference = "mobile"\n',
            "campaigns[1].label_preference: must be a list ([...]), not text",
        ),
        (
            '[[campaigns]]\nid = "b"\nadapter = "file"\n"odd key" = 1\n',
            'campaigns[1]."odd key": unknown setting; settings here: id, adapter, settings, default_region, policy, label_preference, deadline, cache, compliance',
        ),
        (
            '[[campaigns]]\nid = "a"\nadapter = "file"\n',
            "campaigns[1].id: campaign id 'a' appears twice (first at campaigns[0])",
        ),
        ("[servce]\nport = 1\n", "servce: unknown setting; did you mean 'service'?"),
    ],
)
def test_pydantic_wording_becomes_predials(tmp_path: Path, extra: str, line: str) -> None:
    """Each kind of mistake is said in predial's words, with its key path."""
    base = GOOD.replace("[resolver.cache]\npositive_ttl = 60\n", "")
    with pytest.raises(ConfigurationError) as caught:
        load_config(write(tmp_path, base + extra), environ={})
    message = str(caught.value)
    assert message == f"{tmp_path / 'predial.toml'}: {line}"
    assert not any(words in message.lower() for words in PYDANTIC_WORDS)


def test_a_missing_variable_does_not_hide_a_duplicate_or_a_service_typo(tmp_path: Path) -> None:
    text = (
        GOOD + 'token = "${HUBSPOT_TOKEN}"\n[[campaigns]]\nid = "a"\nadapter = "file"\n'
        "[service]\nprot = 8000\n"
    )
    checked = check_config(write(tmp_path, text), environ={})
    assert checked.config is None
    assert checked.problems == [
        "campaigns[0].settings.token: environment variable HUBSPOT_TOKEN is not set",
        "campaigns[1].id: campaign id 'a' appears twice (first at campaigns[0])",
        "service.prot: unknown setting; did you mean 'port'?",
    ]


def test_a_directory_is_not_a_configuration(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match=r"is a directory; give the predial.toml file"):
        load_config(tmp_path)


def test_validation_problems_words_any_model() -> None:
    """The translation serves other validated tables too (an adapter's settings)."""
    from pydantic import BaseModel, ConfigDict, ValidationError

    class Settings(BaseModel):
        model_config = ConfigDict(extra="forbid")
        token: str
        timeout: float = 1.0

    with pytest.raises(ValidationError) as caught:
        Settings.model_validate({"tokn": "x", "timeout": "soon"})
    assert validation_problems(caught.value, Settings, ("campaigns", 0, "settings")) == [
        "campaigns[0].settings.token: missing: this setting is required",
        "campaigns[0].settings.timeout: must be a number, not text",
        "campaigns[0].settings.tokn: unknown setting; did you mean 'token'?",
    ]


# Any table a user could write: known keys and near misses, any TOML value.
_KEYS = st.sampled_from(
    [
        *("resolver", "campaigns", "service", "deadline", "deadlin", "cache", "positive_ttl"),
        *("id", "adapter", "settings", "policy", "strictness", "keys", "key", "port", "url"),
        *("shared", "plugins", "default_region", "label_preference", "breaker", "attempts"),
    ]
) | st.text(st.characters(min_codepoint=32, max_codepoint=126), max_size=8)
_SCALARS = (
    st.booleans()
    | st.integers(-(2**63), 2**63 - 1)
    | st.floats()
    | st.text(st.characters(min_codepoint=32, max_codepoint=126), max_size=12)
    | st.sampled_from(["${UNSET_VAR}", "${UNSET_VAR:-x}", "file", "US", "valid", "redis://h"])
)
_VALUES = st.recursive(
    _SCALARS,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(_KEYS, inner, max_size=4),
    max_leaves=12,
)


def _toml(value: object) -> str:
    """`value` as a TOML inline value (tables inline, keys quoted)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return "nan" if value != value else repr(value).replace("inf", "inf")
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, list):
        return "[" + ", ".join(_toml(item) for item in value) + "]"
    assert isinstance(value, dict)
    return "{" + ", ".join(f"{json.dumps(k)} = {_toml(v)}" for k, v in value.items()) + "}"


_TABLE = st.dictionaries(_KEYS, _VALUES, max_size=6)


@given(
    st.fixed_dictionaries(
        {},
        optional={
            "resolver": _TABLE | _VALUES,
            "campaigns": st.lists(_TABLE, max_size=3) | _VALUES,
            "service": _TABLE | _VALUES,
            "deadline": _VALUES,
        },
    )
)
@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_any_table_gets_key_path_lines_never_a_traceback(table: dict[str, object]) -> None:
    """Whatever the file holds: a configuration, or problems that are each one line
    naming a key path, in predial's words."""
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "predial.toml"
        path.write_text("".join(f"{json.dumps(k)} = {_toml(v)}\n" for k, v in table.items()))
        checked = check_config(path, environ={})
        if checked.config is None:
            assert checked.problems
            with pytest.raises(ConfigurationError):
                load_config(path, environ={})
        for problem in checked.problems:
            assert "\n" not in problem
            assert re.match(r"^\S.*?: \S", problem), problem
            assert not any(words in problem.lower() for words in PYDANTIC_WORDS), problem
