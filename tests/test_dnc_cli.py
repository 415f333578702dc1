"""`predial dnc` through click's runner."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner

from predial.cli._app import cli


def run(*args: str, env: dict[str, str] | None = None) -> tuple[int, str, str]:
    result = CliRunner().invoke(cli, ["dnc", *args], env=env)
    return result.exit_code, result.stdout, result.stderr


def test_add_check_remove_with_masked_numbers(tmp_path: Path) -> None:
    d = str(tmp_path / "dnc")
    code, _, err = run("add", "+12025550123", "(303) 555-0100", "--dir", d, "--by", "agent-7")
    assert code == 0
    assert "2 added" in err
    code, out, _ = run("check", "+12025550123", "2025550199", "--dir", d)
    assert code == 1  # listed
    assert "+1202***0123: listed in internal (added " in out
    assert "by agent-7" in out
    assert "+1202***0199: not listed" in out
    assert "5550123" not in out
    code, out, _ = run("check", "2025550123", "--dir", d, "--show-numbers", "--json")
    record = json.loads(out)
    assert record["number"] == "+12025550123"
    assert record["lists"] == ["internal"]
    assert record["entries"]["internal"]["added_by"] == "agent-7"
    code, _, err = run("remove", "+12025550123", "--dir", d)
    assert code == 0
    assert "1 removed" in err
    assert run("check", "+12025550123", "--dir", d)[0] == 0


def test_the_directory_comes_from_the_environment(tmp_path: Path) -> None:
    env = {"PREDIAL_DNC_DIR": str(tmp_path)}
    assert run("add", "+12025550123", env=env)[0] == 0
    assert (tmp_path / "internal.pdnc").is_file()


def test_import_reports_bad_lines_and_exits_1_and_stats_lists_it(tmp_path: Path) -> None:
    d = str(tmp_path / "dnc")
    source = tmp_path / "202.txt"
    source.write_text("2025550100\n2025550101\nnope\n")
    code, _, err = run("import", str(source), "--dir", d)
    assert code == 1
    assert "national: 2 records read (full files), 1 bad line, 1 area code rebuilt" in err
    assert "202.txt line 3: not a 10-digit number" in err
    changes = tmp_path / "changes.txt"
    changes.write_text("2025550100,D\n")
    code, _, err = run("import", str(changes), "--dir", d, "--changes")
    assert code == 0
    assert "0 additions, 1 deletions" in err
    code, out, _ = run("stats", "--dir", d, "--json")
    stats = json.loads(out)
    assert stats["list"] == "national"
    assert stats["numbers"] == 1
    assert stats["version"] == 2
    assert stats["last_import"]["kind"] == "changes"
    code, out, _ = run("stats", "--dir", d)
    assert "national: 1 numbers" in out
    assert "last import" in out


def test_mistakes_are_one_line_saying_what_to_do(tmp_path: Path) -> None:
    d = str(tmp_path)
    code, _, err = run("check", "+12025550123", "--dir", d, "--list", "litigators")
    assert code == 2
    assert err.count("\n") == 1
    assert "'litigators' does not exist" in err
    assert "predial dnc add" in err
    code, _, err = run("add", "+442079460000", "--dir", d)
    assert code == 2
    assert "+4420***0000: not a US/NANP number" in err
    code, _, err = run("stats", "--dir", d)
    assert code == 2
    assert "no do-not-call lists in" in err
    code, _, err = run("remove", "+12025550123", "--dir", d)
    assert code == 2
    assert "'internal' does not exist" in err
