"""predial.toml: validation with key paths, secrets from the environment."""

from __future__ import annotations

from pathlib import Path

import pytest

from predial import ConfigurationError, Lead, Resolver, UnknownAdapter
from predial.config import load_config

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

    from predial.cli.app import cli

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
