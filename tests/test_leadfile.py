"""Reading leads files: per-row errors, whole-file errors, never a crash."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from predial import InputFileError
from predial._leadfile import LeadRow, LeadRowError, read_leads


def test_reads_camel_and_snake_case_columns(tmp_path: Path) -> None:
    """Either spelling of the lead fields works; metadata is JSON."""
    path = tmp_path / "leads.csv"
    path.write_text('campaign_id,externalId,priority,metadata\nc,x,5,"{""a"": 1}"\n')
    [row] = list(read_leads(path))
    assert isinstance(row, LeadRow)
    assert (row.lead.campaign_id, row.lead.priority, row.lead.metadata) == ("c", 5, {"a": 1})


def test_bad_rows_name_their_line_and_column(tmp_path: Path) -> None:
    """A bad row is an error for that row only, with its line and column."""
    path = tmp_path / "leads.csv"
    path.write_text(
        "campaignId,externalId,phoneNumber,priority\n"
        "c,x1,,1\n"
        "c,,,2\n"
        "c,x3,(202) 456-1111,3\n"
        "c,x4,,200\n"
        "c,x5,,5\n"
    )
    rows = list(read_leads(path))
    errors = [row for row in rows if isinstance(row, LeadRowError)]
    assert [(e.line, e.field) for e in errors] == [(3, None), (4, "phoneNumber"), (5, "priority")]
    assert "At least one of phoneNumber or externalId" in errors[0].message
    assert sum(isinstance(row, LeadRow) for row in rows) == 2


def test_default_campaign_fills_rows_without_one(tmp_path: Path) -> None:
    """Without a campaignId column, the given campaign is used."""
    path = tmp_path / "leads.csv"
    path.write_text("externalId\nx\n")
    [row] = list(read_leads(path, campaign_id="cmp"))
    assert isinstance(row, LeadRow)
    assert row.lead.campaign_id == "cmp"


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("externalId\nx\n", "missing column campaignId"),
        ("campaignId,name\nc,Ada\n", "phoneNumber or an externalId"),
        ("", "empty"),
        (b"\x00\x01\x02PK\x03\x04", "binary"),
    ],
)
def test_whole_file_problems_are_one_clear_error(
    tmp_path: Path, content: str | bytes, message: str
) -> None:
    """Missing columns, empty or binary files: one InputFileError naming the file."""
    path = tmp_path / "leads.csv"
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content)
    with pytest.raises(InputFileError, match=message):
        list(read_leads(path))


def test_missing_file(tmp_path: Path) -> None:
    """A path that does not exist."""
    with pytest.raises(InputFileError, match="no such file"):
        list(read_leads(tmp_path / "nope.csv"))


def test_jsonl_rows(tmp_path: Path) -> None:
    """JSON Lines: each object names its own fields; a broken line is a row error."""
    path = tmp_path / "leads.jsonl"
    path.write_text(
        '{"campaignId": "c", "externalId": "x"}\nnot json\n[1]\n\n{"campaignId": "c", "phoneNumber": "+12024561111"}\n'
    )
    rows = list(read_leads(path))
    assert [type(row).__name__ for row in rows] == [
        "LeadRow",
        "LeadRowError",
        "LeadRowError",
        "LeadRow",
    ]


@settings(
    max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    content=st.one_of(
        st.binary(max_size=400),
        st.text(
            alphabet=st.sampled_from('campaignId,externalId,phoneNumber;\t"\n\r x+0123456789é\x00'),
            max_size=300,
        ),
    ),
    encoding=st.sampled_from(["utf-8", "utf-8-sig", "cp1252", "utf-16"]),
)
def test_any_file_gives_rows_or_one_clear_error(
    tmp_path: Path, content: bytes | str, encoding: str
) -> None:
    """Whatever the bytes, reading yields rows and row errors, or raises InputFileError."""
    path = tmp_path / "fuzz.csv"
    if isinstance(content, str):
        try:
            content = content.encode(encoding)
        except UnicodeEncodeError:
            content = content.encode("utf-8")
    path.write_bytes(content)
    try:
        rows = list(read_leads(path))
    except InputFileError:
        return
    assert all(isinstance(row, LeadRow | LeadRowError) for row in rows)
