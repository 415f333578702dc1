"""A campaign missing from the configuration is the operator's mistake: `predial check`
and `predial resolve` say so in one line and exit 2, not "refused" (1)."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from predial.cli._app import cli

CONFIG = str(Path(__file__).parent.parent / "examples" / "predial.toml")


def run(*args: str) -> Result:
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


def test_check_of_an_unconfigured_campaign_exits_2_with_a_suggestion() -> None:
    result = run("check", "cmp_crm_exprt", "C-1001", "--config", CONFIG)
    assert result.exit_code == 2
    assert result.stdout == ""
    assert result.stderr.count("\n") == 1
    assert "no campaign 'cmp_crm_exprt' is configured; did you mean 'cmp_crm_export'?" in (
        result.stderr
    )
    assert "configured: cmp_crm_export, cmp_legacy" in result.stderr


def test_resolve_of_one_lead_of_an_unconfigured_campaign_exits_2() -> None:
    result = run("resolve", "--campaign", "nope", "--external-id", "C-1001", "--config", CONFIG)
    assert result.exit_code == 2
    assert "unknown_campaign" in result.stdout  # the row is still shown
    assert "error: no campaign 'nope' is configured" in result.stderr
    assert "1 lead not resolved" in result.stderr


def test_resolve_of_a_file_naming_unconfigured_campaigns_exits_2(tmp_path: Path) -> None:
    leads = tmp_path / "leads.csv"
    leads.write_text(
        "campaignId,externalId\ncmp_crm_export,C-1001\nnope,C-1\nnope,C-2\nother,C-3\n"
    )
    result = run("resolve", str(leads), "--config", CONFIG)
    assert result.exit_code == 2
    assert "(and 1 other campaign)" in result.stderr
    assert "3 leads not resolved" in result.stderr
    assert "+1202***1111" in result.stdout  # the configured campaign's lead resolved


def test_a_lead_as_the_api_lists_it_resolves_from_a_jsonl_file(tmp_path: Path) -> None:
    leads = tmp_path / "leads.jsonl"
    leads.write_text(
        '{"_id": "jh7abc", "campaignId": "cmp_crm_export", "externalId": "C-1001", '
        '"status": "raw", "attempts": 0, "_creationTime": 1703520000000, "priority": 0}\n'
    )
    result = run("resolve", str(leads), "--config", CONFIG)
    assert result.exit_code == 0, result.output
    assert "+1202***1111" in result.stdout


def test_a_campaign_whose_adapter_cannot_be_built_exits_2(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "predial.toml").write_text('[[campaigns]]\nid = "a"\nadapter = "nosuch"\n')
    monkeypatch.chdir(tmp_path)
    for args in (("check", "a", "X"), ("resolve", "--campaign", "a", "--external-id", "X")):
        result = run(*args)
        assert result.exit_code == 2, args
        assert "error: campaign 'a' is misconfigured: " in result.stderr
        assert "unknown adapter 'nosuch'" in result.stderr


def test_check_strips_a_campaign_id_as_the_lead_does() -> None:
    """Leads strip whitespace; check must look the campaign up by the stripped id."""
    result = run("check", "cmp_crm_export ", "C-1001", "--config", CONFIG)
    assert result.exit_code == 0, result.output
    assert "+1202***1111" in result.stdout
