"""A campaign naming one of predial's own adapters that is not installed (or not
loaded) is told which distribution provides it and how to install it."""

from __future__ import annotations

import importlib.metadata
import tomllib
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from predial import Campaign, Resolver, UnknownAdapter
from predial._plugins import load_plugins
from predial.cli._app import cli

ROOT = Path(__file__).parent.parent
INSTALL = (
    "it comes with predial-hubspot, which is not installed: pip install -e "
    "plugins/predial-hubspot in a predial checkout"
)


@pytest.fixture
def uninstalled(monkeypatch: pytest.MonkeyPatch) -> None:
    """The first-party distributions as if not installed (this venv has them all)."""
    real = importlib.metadata.version

    def version(name: str) -> str:
        if name in UnknownAdapter.FIRST_PARTY.values():
            raise importlib.metadata.PackageNotFoundError(name)
        return real(name)

    monkeypatch.setattr(importlib.metadata, "version", version)


def refusal(adapter: str) -> str:
    """The message a resolver that loads no entry point gives a campaign of `adapter`."""
    with pytest.raises(UnknownAdapter) as caught:
        Resolver([Campaign("c", adapter)], load_entrypoints=False)
    return str(caught.value)


def test_the_table_is_the_first_party_plugins_of_the_repository() -> None:
    """FIRST_PARTY, the one table, names each plugins/* distribution's entry point."""
    found = {}
    for pyproject in sorted(ROOT.glob("plugins/*/pyproject.toml")):
        project = tomllib.loads(pyproject.read_text())["project"]
        assert pyproject.parent.name == project["name"]  # `pip install -e plugins/<dist>`
        for entry_point in project["entry-points"]["predial"]:
            found[entry_point] = project["name"]
    assert found == UnknownAdapter.FIRST_PARTY
    registry = load_plugins(environ={})  # and each registers the adapter of that name
    for adapter, distribution in UnknownAdapter.FIRST_PARTY.items():
        assert registry.adapter_spec(adapter).plugin.distribution == distribution


@pytest.mark.usefixtures("uninstalled")
@pytest.mark.parametrize("adapter", sorted(UnknownAdapter.FIRST_PARTY))
def test_a_first_party_adapter_not_installed_says_how_to_install_it(adapter: str) -> None:
    distribution = UnknownAdapter.FIRST_PARTY[adapter]
    assert refusal(adapter) == (
        f"Campaign('c').adapter: unknown adapter {adapter!r}: it comes with {distribution}, "
        f"which is not installed: pip install -e plugins/{distribution} in a predial "
        "checkout. Installed adapters: file"
    )
    # Never the name alone: it is not on PyPI, where anyone could publish it.
    assert f"pip install {distribution}" not in refusal(adapter)


@pytest.mark.usefixtures("uninstalled")
@pytest.mark.parametrize(
    ("typo", "meant"),
    [("hubspt", "hubspot"), ("salesforse", "salesforce"), ("pipedrve", "pipedrive")],
)
def test_did_you_mean_covers_first_party_adapters_not_installed(typo: str, meant: str) -> None:
    distribution = UnknownAdapter.FIRST_PARTY[meant]
    assert refusal(typo) == (
        f"Campaign('c').adapter: unknown adapter {typo!r}; did you mean {meant!r} "
        f"(pip install -e plugins/{distribution} in a predial checkout)? Installed "
        "adapters: file"
    )


def test_an_installed_first_party_adapter_is_suggested_plainly() -> None:
    """Loaded, it is one of the installed adapters: no install hint."""
    with pytest.raises(UnknownAdapter) as caught:
        load_plugins(environ={}).adapter_spec("hubspt")
    message = str(caught.value)
    assert "did you mean 'hubspot'? Installed adapters: " in message
    assert "pip install" not in message


def test_installed_but_left_out_is_not_told_to_install_it() -> None:
    """predial-hubspot is installed here; a registry that left it out says so."""
    with pytest.raises(UnknownAdapter) as caught:
        load_plugins(environ={"PREDIAL_DISABLE_PLUGINS": "hubspot"}).adapter_spec("hubspot")
    assert str(caught.value) == (
        "unknown adapter 'hubspot': predial-hubspot is installed but was not loaded (left "
        "out by PREDIAL_LOAD_PLUGINS, PREDIAL_DISABLE_PLUGINS or load_entrypoints=False, or "
        "failed: see predial plugins). Installed adapters: "
        + ", ".join(sorted(set(UnknownAdapter.FIRST_PARTY) - {"hubspot"} | {"acme", "file"}))
    )
    assert "(predial-hubspot is installed but not loaded: see predial plugins)?" in refusal(
        "hubspt"
    )


def test_an_unknown_name_far_from_any_gets_no_suggestion() -> None:
    assert refusal("zzz") == (
        "Campaign('c').adapter: unknown adapter 'zzz'; installed adapters: file"
    )


@pytest.fixture
def hubspot_campaign(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    (tmp_path / "predial.toml").write_text(
        '[[campaigns]]\nid = "spring"\nadapter = "hubspot"\n'
        '[campaigns.settings]\ntoken = "${HUBSPOT_TOKEN}"\n'
    )
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("PREDIAL_CONFIG", raising=False)
    return tmp_path


def run(*args: str) -> Result:
    # PREDIAL_LOAD_PLUGINS="" hides the installed plugins, as if not installed.
    env = {"PREDIAL_LOAD_PLUGINS": "", "HUBSPOT_TOKEN": "pat-test"}
    return CliRunner().invoke(cli, list(args), env=env, catch_exceptions=False)


@pytest.mark.usefixtures("hubspot_campaign", "uninstalled")
def test_config_validate_and_check_say_how_to_install_the_adapter() -> None:
    validated = run("config", "validate")
    assert validated.exit_code == 2, validated.output
    assert "campaigns[0].adapter: unknown adapter 'hubspot'" in validated.stderr
    assert INSTALL in validated.stderr
    # check says the campaign is misconfigured, and why: a configuration error (2).
    checked = run("check", "spring", "101", "--json")
    assert checked.exit_code == 2, checked.output
    assert "campaign 'spring' is misconfigured: " in checked.stderr
    assert INSTALL in " ".join(checked.output.split())
