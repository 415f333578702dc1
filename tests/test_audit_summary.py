"""`predial audit summarize` and the reader behind it (`AuditSummary`): counts by
campaign, status, source, reason, hour and origin over a log and its rotated files;
a malformed line is counted and reported with its line number, never sinks the
summary."""

from __future__ import annotations

import json
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from click.testing import CliRunner
from hypothesis import given, settings
from hypothesis import strategies as st

from predial.cli._app import cli
from predial.compliance import AuditLog, AuditSummary, summarize_audit

KEY = "a-key-for-the-summary-tests-0123"
START = datetime(2026, 3, 8, 5, 30, tzinfo=UTC)


def run(*args: str) -> Any:
    return CliRunner().invoke(cli, list(args))


def write_log(path: Path, decisions: list[dict[str, Any]], **options: Any) -> None:
    moments = iter(START + timedelta(minutes=20 * index) for index in range(len(decisions)))
    with AuditLog(path, key=KEY, clock=lambda: next(moments), **options) as audit:
        for decision in decisions:
            values: dict[str, Any] = {
                "campaign": "spring",
                "external_id": "x1",
                "number": "+12025550123",
                "source": "crm",
                "status": "ok",
                "reason": "",
                "latency": 0.01,
            }
            values.update(decision)
            audit.decision(**values)
    assert audit.stats().written == len(decisions)


DECISIONS: list[dict[str, Any]] = [
    {},
    {"source": "cache"},
    {"source": "stored", "reason": "crm_timeout"},
    {"campaign": "autumn", "source": "stale", "reason": "crm_error"},
    {"campaign": "autumn", "status": "skip", "reason": "do_not_call_list", "source": "crm"},
    {"status": "retry_later", "reason": "outside_calling_window", "source": "cache"},
    {"status": "skip", "reason": "invalid_lead", "source": "", "campaign": ""},
]


def test_summarize_counts_every_dimension(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    write_log(path, DECISIONS)
    result = run("audit", "summarize", str(path), "--json")
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["records"] == 7
    assert summary["malformed"] == 0
    assert summary["campaigns"] == {"spring": 4, "autumn": 2, "": 1}
    assert summary["statuses"] == {"ok": 4, "skip": 2, "retry_later": 1}
    assert summary["sources"] == {
        "ok": {"crm": 1, "cache": 1, "stored": 1, "stale": 1},
        "skip": {"crm": 1, "": 1},
        "retry_later": {"cache": 1},
    }
    assert summary["reasons"] == {
        "ok": {"": 2, "crm_timeout": 1, "crm_error": 1},
        "skip": {"do_not_call_list": 1, "invalid_lead": 1},
        "retry_later": {"outside_calling_window": 1},
    }
    # Every 20 minutes from 05:30: 05:30, 05:50 | 06:10, 06:30, 06:50 | 07:10, 07:30.
    assert summary["hours"] == {
        "2026-03-08T05:00Z": 2,
        "2026-03-08T06:00Z": 3,
        "2026-03-08T07:00Z": 2,
    }
    assert summary["origins"] == {"library": 7}
    assert summary["first"] == "2026-03-08T05:30:00Z"
    assert summary["last"] == "2026-03-08T07:30:00Z"


def test_the_counts_are_the_resolvers_own(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    write_log(path, DECISIONS)
    assert summarize_audit(path).resolver_counts() == {
        "resolved": 4,
        "refused": 3,
        "stored": 1,
        "stale": 1,
        "fallbacks": {"crm_timeout": 1, "crm_error": 1},
        "refusals": {"do_not_call_list": 1, "invalid_lead": 1, "outside_calling_window": 1},
    }


def test_the_tables(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    write_log(path, DECISIONS)
    result = run("audit", "summarize", str(path))
    assert result.exit_code == 0, result.output
    out = result.stdout
    assert out.startswith("7 record(s), 2026-03-08 05:30:00Z to 2026-03-08 07:30:00Z; 0 malformed")
    for title in ("By status", "By campaign", "By source", "By reason", "By hour (UTC)"):
        assert title in out
    assert "outside_calling_window" in out
    assert "2026-03-08T06:00Z" in out
    assert "(none)" in out  # the empty campaign, shown as such
    assert result.stderr == ""


def test_a_malformed_line_is_counted_and_named_never_sinks_the_summary(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    write_log(path, DECISIONS[:3])
    lines = path.read_text().splitlines()
    record = json.loads(lines[0])
    bad = [
        "{not json +12025550123",
        json.dumps([1, 2]),
        json.dumps({**record, "status": "maybe"}),
        json.dumps({key: value for key, value in record.items() if key != "time"}),
        json.dumps({**record, "time": "2026-03-08T05:30:00"}),  # no offset
        json.dumps({**record, "campaign": 7}),
    ]
    mixed = [lines[0], bad[0], lines[1], *bad[1:], "", lines[2]]
    path.write_text("\n".join(mixed) + "\n")
    with path.open("ab") as stream:
        stream.write(b'{"time": "\xff"}\n')
    result = run("audit", "summarize", str(path))
    assert result.exit_code == 1
    assert result.stdout.startswith("3 record(s)")
    assert "; 7 malformed line(s)" in result.stdout
    problems = result.stderr.splitlines()
    assert problems == [
        f"malformed: {path}:2: not JSON at column 2",
        f"malformed: {path}:4: a JSON array, not an object (one record per line)",
        f"malformed: {path}:5: field 'status' is not one of ok, skip, retry_later",
        f"malformed: {path}:6: field 'time' is missing",
        f"malformed: {path}:7: field 'time' is not an ISO 8601 time with its offset (e.g. ...Z)",
        f"malformed: {path}:8: field 'campaign' is a JSON number; expected text",
        f"malformed: {path}:11: not UTF-8 text",
    ]
    assert "5550123" not in result.output  # the bad line is never quoted
    as_json = json.loads(run("audit", "summarize", str(path), "--json").stdout)
    assert as_json["records"] == 3
    assert [problem["line"] for problem in as_json["problems"]] == [2, 4, 5, 6, 7, 8, 11]


def test_a_log_and_its_rotated_files(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    write_log(
        path, [{"campaign": f"c{index % 3}"} for index in range(30)], max_bytes=2500, backups=50
    )
    files = sorted(str(file) for file in tmp_path.iterdir())
    assert len(files) > 2
    result = run("audit", "summarize", *files, "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["campaigns"] == {"c0": 10, "c1": 10, "c2": 10}


def test_a_missing_file_is_a_usage_error(tmp_path: Path) -> None:
    result = run("audit", "summarize", str(tmp_path / "nope.jsonl"))
    assert result.exit_code == 2
    assert "nope.jsonl" in result.stderr
    assert "does not exist" in result.stderr


def test_no_file_is_a_usage_error() -> None:
    result = run("audit", "summarize")
    assert result.exit_code == 2
    assert "FILES" in result.stderr


# -- the parser over generated records ---------------------------------------------------

texts = st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=12)
records = st.fixed_dictionaries(
    {
        "time": st.datetimes(
            min_value=datetime(2000, 1, 1),
            max_value=datetime(2100, 1, 1),
            timezones=st.just(UTC),
        ),
        "campaign": st.one_of(st.none(), texts),
        "status": st.sampled_from(["ok", "skip", "retry_later"]),
        "source": st.one_of(st.none(), st.sampled_from(["crm", "cache", "stale", "stored", ""])),
        "reason": st.one_of(st.none(), texts),
        "origin": st.sampled_from(["library", "service"]),
    }
)
garbage = st.one_of(
    st.text(max_size=30).filter(lambda text: text.strip() and not _is_object(text)),
    st.just("[]"),
    st.just('{"status": "ok"}'),
    st.just("{"),
)


def _is_object(text: str) -> bool:
    try:
        return isinstance(json.loads(text), dict)
    except ValueError:
        return False


def _line(record: dict[str, Any]) -> str:
    moment: datetime = record["time"]
    return json.dumps({**record, "time": moment.isoformat().replace("+00:00", "Z")})


@settings(max_examples=150, deadline=None)
@given(st.lists(st.one_of(records.map(lambda r: ("record", r)), garbage.map(lambda g: ("bad", g)))))
def test_the_reader_counts_what_was_written(items: list[tuple[str, Any]]) -> None:
    lines = [_line(value) if kind == "record" else value for kind, value in items]
    summary = AuditSummary()
    summary.add_lines(lines, file="gen")
    written = [value for kind, value in items if kind == "record"]
    assert summary.records == len(written)
    assert summary.campaigns == Counter(r["campaign"] or "" for r in written)
    assert summary.statuses == Counter(r["status"] for r in written)
    assert summary.origins == Counter(r["origin"] for r in written)
    assert summary.hours == Counter(f"{r['time']:%Y-%m-%dT%H}:00Z" for r in written)
    for status in ("ok", "skip", "retry_later"):
        expected = Counter(r["reason"] or "" for r in written if r["status"] == status)
        assert summary.reasons.get(status, Counter()) == expected
    bad_lines = [index + 1 for index, (kind, _) in enumerate(items) if kind == "bad"]
    assert summary.malformed == len(bad_lines)
    assert [problem.line for problem in summary.problems] == bad_lines[:100]
    assert all(problem.file == "gen" for problem in summary.problems)
    if written:
        assert summary.first == min(r["time"] for r in written)
        assert summary.last == max(r["time"] for r in written)


def test_a_line_nested_thousands_deep_is_a_malformed_line(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    write_log(path, DECISIONS[:1])
    with path.open("a") as stream:
        stream.write("[" * 3000 + "\n")
    result = run("audit", "summarize", str(path))
    assert result.exit_code == 1, result.output
    assert result.stdout.startswith("1 record(s)")
    assert result.stderr == f"malformed: {path}:2: not JSON (nested too deeply)\n"


def test_control_characters_in_records_are_escaped_in_the_tables(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    write_log(
        path,
        [{"campaign": "c\x00\x1b[31mRED", "reason": "r\u202egnp.exe", "source": "x\ny"}],
    )
    result = run("audit", "summarize", str(path))
    assert result.exit_code == 0, result.output
    out = result.stdout
    assert "\x1b" not in out
    assert "\x00" not in out
    assert "\u202e" not in out
    assert "c\\x00\\x1b[31mRED" in out
    assert "r\\u202egnp.exe" in out
    assert "x\\ny" in out
