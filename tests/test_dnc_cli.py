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
    assert stats["index_bytes"] == stats["bytes"] - 4
    code, out, _ = run("stats", "--dir", d)
    assert f"national: 1 number, {stats['bytes']:,} bytes (index " in out
    assert "+ 4 per number), version 2" in out
    assert "bytes/number" not in out  # a handful of numbers: mostly the index
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


def test_stats_show_bytes_per_number_from_ten_thousand_numbers(tmp_path: Path) -> None:
    source = tmp_path / "202.txt"
    source.write_text("".join(f"202555{n:04d}\n" for n in range(10_000)))
    assert run("import", str(source), "--dir", str(tmp_path))[0] == 0
    code, out, _ = run("stats", "--dir", str(tmp_path))
    assert code == 0
    assert "national: 10,000 numbers, 56," in out
    assert " bytes (5.6" in out
    assert " bytes/number), version 1" in out


def test_remove_of_a_number_not_listed_is_reported_and_not_recorded(tmp_path: Path) -> None:
    d = str(tmp_path)
    assert run("add", "+12025550123", "--dir", d)[0] == 0
    code, _, err = run("remove", "+12025550199", "--dir", d)
    assert code == 0
    assert err == "internal: 0 removed, 1 not listed\n"
    history = (tmp_path / "internal.history.jsonl").read_text().splitlines()
    assert [json.loads(line)["action"] for line in history] == ["add"]


def test_a_stray_or_damaged_file_is_skipped_with_a_warning_when_no_list_is_named(
    tmp_path: Path,
) -> None:
    d = str(tmp_path)
    assert run("add", "+12025550123", "--dir", d)[0] == 0
    (tmp_path / "x.pdnc").mkdir()
    (tmp_path / "bad.pdnc").write_bytes(b"garbage")
    code, out, err = run("check", "+12025550123", "--dir", d)
    assert code == 1
    assert "+1202***0123: listed in internal" in out
    warnings = err.splitlines()
    assert len(warnings) == 2
    assert warnings[0].startswith("warning: skipped bad: do-not-call list file ")
    assert "is damaged (too short)" in warnings[0]
    assert warnings[1].startswith("warning: skipped x: do-not-call list 'x': ")
    assert "is not a file" in warnings[1]
    code, out, err = run("stats", "--dir", d)
    assert code == 0
    assert out.startswith("internal: 1 number, ")
    assert len(err.splitlines()) == 2
    # Named, a list must open.
    code, _, err = run("check", "+12025550123", "--dir", d, "--list", "bad")
    assert code == 2
    assert err.count("\n") == 1
    assert "is damaged" in err
    # Nothing readable at all: no check passes a number.
    (tmp_path / "internal.pdnc").unlink()
    code, _, err = run("check", "+12025550123", "--dir", d)
    assert code == 2
    assert f"no readable do-not-call lists in {d}" in err


def test_add_to_a_list_whose_file_is_a_folder_is_one_line(tmp_path: Path) -> None:
    (tmp_path / "dirlist.pdnc").mkdir()
    code, _, err = run("add", "+12025550123", "--dir", str(tmp_path), "--list", "dirlist")
    assert code == 2
    assert err.count("\n") == 1
    assert "is not a file (a directory?); move it out of the lists' directory" in err
    assert "Errno" not in err
    assert "partial" not in err
