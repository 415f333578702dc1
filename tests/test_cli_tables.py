"""Tables at any terminal width: a masked number, a reason code and a row number are
never cut (a narrow terminal drops columns, turns the result and the campaigns into
letters with a legend, then shows each lead as lines of its own), and the summary
breaks at its ` · `, never inside a phrase."""

from __future__ import annotations

import io
import json
import re
from collections import Counter
from functools import cache
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from hypothesis import given
from hypothesis import strategies as st
from rich.console import Console
from rich.text import Text

from predial.cli._app import cli
from predial.cli._output import (
    FitColumn,
    fitted_table,
    least_width,
    wrapped_phrases,
    wrapped_words,
)

EXAMPLES = Path(__file__).parent.parent / "examples"
CONFIG = str(EXAMPLES / "predial.toml")
LEADS = str(EXAMPLES / "leads.csv")
WIDTHS = [1, 20, 40, 60, 72, 80, 120]
#: Anything that looks like a masked number, with whatever is glued to it (a cut
#: one would keep its ellipsis).
MASKED_TOKEN = re.compile(r"\+?\d*\*\*\*[\d…]*")
FULL_NUMBER = re.compile(r"\+\d{9,}")
SUMMARY_START = ("resolved ", "refused ", "latency ")


def run(*args: str, width: int | None = None) -> Result:
    env = {"COLUMNS": str(width)} if width is not None else None
    return CliRunner().invoke(cli, list(args), env=env, catch_exceptions=False)


@cache
def example_leads() -> dict[int, dict[str, object]]:
    """The bundled example's leads as `--json` has them (masked), by row."""
    objects = map(
        json.loads, run("resolve", LEADS, "--config", CONFIG, "--json").stdout.splitlines()
    )
    return {int(item["row"]): item for item in objects}


@cache
def example_numbers() -> set[str]:
    """The bundled example's numbers in full (`--show-numbers`): never shown otherwise."""
    shown = run("resolve", LEADS, "--config", CONFIG, "--json", "--show-numbers").stdout
    return {json.loads(line).get("phoneNumber") for line in shown.splitlines()} - {None}


def lead_sections(stdout: str) -> dict[int, str]:
    """What the output shows of each lead: its table row, or its block of lines."""
    rows = {int(m[1]): m[0] for m in re.finditer(r"^ *(\d+) │.*$", stdout, re.M)}
    if rows:
        return rows
    starts = list(re.finditer(r"^row\s+(\d+)\n", stdout, re.M))
    ends = [m.start() for m in starts[1:]] + [summary_start(stdout)]
    return {int(m[1]): stdout[m.start() : end] for m, end in zip(starts, ends, strict=True)}


def summary_start(stdout: str) -> int:
    return re.search(r"^resolved \d+", stdout, re.M).start()  # type: ignore[union-attr]


def whole(token: str, text: str) -> bool:
    """`token` is in `text` with nothing of a number or a code glued to either end."""
    return re.search(rf"(?<![\w*+]){re.escape(token)}(?![\w*…])", text) is not None


@pytest.mark.parametrize("width", WIDTHS)
def test_the_resolve_table_never_cuts_a_number_a_reason_or_a_row(width: int) -> None:
    result = run("resolve", LEADS, "--config", CONFIG, width=width)
    assert result.exit_code == 1, result.output
    out = result.stdout
    leads = example_leads()
    sections = lead_sections(out)
    assert sorted(sections) == sorted(leads)  # every row number whole, each lead once
    for row, lead in leads.items():
        section = sections[row]
        number = lead.get("phoneNumber")
        reason = lead.get("reason") or lead.get("fallbackReason")
        if number:
            assert whole(str(number), section), (width, row, section)
        if reason:
            assert whole(str(reason), section), (width, row, section)
    expected = {str(lead["phoneNumber"]) for lead in leads.values() if lead.get("phoneNumber")}
    assert set(MASKED_TOKEN.findall(out)) <= expected  # none cut, none half-shown
    assert example_numbers()
    assert not any(number in out for number in example_numbers())
    assert not FULL_NUMBER.search(out)
    if width >= 40:  # past the very narrowest, nothing is left for the terminal to fold
        assert max(map(len, out.splitlines())) <= width


@pytest.mark.parametrize("width", WIDTHS)
def test_the_summary_breaks_at_its_separators(width: int) -> None:
    """Each line of the summary starts a phrase (resolved, refused, latency) or goes
    on after a comma; a reason code and its count are never apart."""
    out = run("resolve", LEADS, "--config", CONFIG, width=width).stdout
    lines = out[summary_start(out) :].splitlines()
    for before, line in zip(["·", *lines], lines, strict=False):
        assert line.startswith(SUMMARY_START) or (line.startswith("  ") and before.endswith(",")), (
            width,
            lines,
        )
    reasons = Counter(
        str(lead.get("reason")) for lead in example_leads().values() if not lead["resolved"]
    )
    for reason, count in reasons.items():
        assert any(re.search(rf"\b{reason} {count}\b", line) for line in lines), (reason, lines)


def test_the_summary_at_80_columns() -> None:
    out = run("resolve", LEADS, "--config", CONFIG, width=80).stdout
    lines = out[summary_start(out) :].splitlines()
    assert lines[0] == "resolved 13 (crm 8, stored 5)"
    assert lines[1].startswith("refused 7 (do_not_call 2, ")
    assert lines[-1].startswith("latency p50 ")
    assert all(len(line) <= 80 for line in lines)


def test_narrow_tables_say_what_their_letters_mean() -> None:
    """At 72 columns the campaigns and the results are letters, each explained above."""
    out = run("resolve", LEADS, "--config", CONFIG, width=72).stdout
    lines = out.splitlines()
    header = next(index for index, line in enumerate(lines) if "┃" in line)
    assert [cell.strip() for cell in lines[header].split("┃")] == [
        "row",
        "c",
        "ext",
        "number",
        "r",
        "reason",
    ]
    legends: dict[str, dict[str, str]] = {}
    current: dict[str, str] = {}
    for line in lines[:header]:
        named = re.match(r"(campaign|result) \((\w)\): (.*)", line)
        if named:
            current = legends.setdefault(named[2], {})
            line = named[3]
        for entry in line.strip().split(" · "):
            letter, meaning = entry.split(" ", 1)
            current[letter] = meaning
    assert legends["c"] == {"A": "cmp_crm_export", "B": "cmp_legacy"}
    assert legends["r"] == {
        "c": "crm",
        "s": "stored",
        "r": "refused (retry)",
        "k": "refused (skip)",
    }
    for row, line in lead_sections(out).items():
        lead = example_leads()[row]
        cells = [cell.strip() for cell in line.split("│")]
        assert legends["c"][cells[1]] == lead["campaignId"]
        verdict = "refused (retry)" if lead.get("retryable") else "refused (skip)"
        assert legends["r"][cells[4]] == (lead["source"] if lead["resolved"] else verdict)
        assert cells[2] == lead["externalId"] or (not cells[2] and not lead["externalId"])


def test_a_very_narrow_terminal_shows_each_lead_as_lines(tmp_path: Path) -> None:
    """One campaign, said once; an invalid row's problem whole (a table would cut it)."""
    (tmp_path / "crm.csv").write_text("id,mobile\nC-1,(202) 456-1111\n")
    (tmp_path / "predial.toml").write_text(
        '[[campaigns]]\nid = "c"\nadapter = "file"\ndefault_region = "US"\n'
        '[campaigns.settings]\npath = "crm.csv"\n'
    )
    (tmp_path / "leads.csv").write_text(
        "campaignId,externalId,phoneNumber\nc,C-1,\nc,,4155550123\n"
    )
    config = str(tmp_path / "predial.toml")
    out = run("resolve", str(tmp_path / "leads.csv"), "--config", config, width=40).stdout
    assert out.startswith("campaign c\nrow 2\n")
    sections = lead_sections(out)
    assert "  number: +1202***1111\n" in sections[2]
    assert "  source: crm\n" in sections[2]
    assert "campaign" not in sections[2]
    problem = " ".join(sections[3].split())
    assert "reason: phoneNumber must be in E.164 format: + and the country code" in problem
    assert "…" not in out


@pytest.fixture
def long_labels(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An adapter answering two phones, one with a long label."""
    (tmp_path / "long.py").write_text(
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
    (tmp_path / "predial.toml").write_text(
        '[resolver]\nplugins = ["long.py"]\n'
        '[[campaigns]]\nid = "c"\nadapter = "long"\ndefault_region = "US"\n'
    )
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("PREDIAL_CONFIG", raising=False)
    return tmp_path


@pytest.mark.parametrize("width", WIDTHS)
def test_check_never_cuts_a_number_or_a_verdict(long_labels: Path, width: int) -> None:
    result = run("check", "c", "C-1", width=width)
    assert result.exit_code == 0, result.output
    out = result.stdout
    assert set(MASKED_TOKEN.findall(out)) == {"+1900***0199", "+4420***0958"}
    for token in ("+1900***0199", "+4420***0958", "type_not_allowed"):
        assert whole(token, out), (width, out)
    assert "+19005550199" not in out
    assert "+442079460958" not in out
    assert re.search(r"^resolved \+4420\*\*\*0958", out, re.M) or width < 21
    if width >= 40:
        assert max(map(len, out.splitlines())) <= width


@pytest.mark.parametrize("width", WIDTHS)
def test_plugins_never_cuts_a_name_or_a_status(width: int) -> None:
    result = run("plugins", "--config", CONFIG, width=width)
    assert result.exit_code == 0, result.output
    listed = [
        json.loads(line)
        for line in run("plugins", "--config", CONFIG, "--json").stdout.split("\n")
        if line
    ]
    assert listed
    for plugin in listed:
        assert whole(plugin["name"], result.stdout), (width, plugin["name"])
    assert len(re.findall(r"\bactive\b", result.stdout)) == len(listed)
    if width >= 40:
        assert max(map(len, result.stdout.splitlines())) <= width


# -- the helpers, over any input -------------------------------------------------------

words = st.text(alphabet="ab*+1…", min_size=1, max_size=15)


@given(st.lists(words, max_size=12), st.integers(1, 40), st.integers(0, 4))
def test_wrapped_words_break_only_between_words(parts: list[str], width: int, hang: int) -> None:
    lines = [line.plain for line in wrapped_words(Text(" ".join(parts)), width, hang)]
    assert [word for line in lines for word in line.split()] == parts
    for line in lines:
        assert len(line) <= width or len(line.split()) == 1


@given(
    st.lists(st.lists(words, min_size=1, max_size=5), min_size=1, max_size=4),
    st.integers(1, 60),
    st.integers(0, 4),
)
def test_wrapped_phrases_break_at_separators_then_commas(
    phrases: list[list[str]], width: int, hang: int
) -> None:
    joined = [", ".join(pieces) for pieces in phrases]
    lines = wrapped_phrases(joined, width, hang=hang)
    # Every piece of every phrase is whole on one line, in order.
    flat = [piece for line in lines for part in line.split(" · ") for piece in part.split(", ")]
    assert [piece.strip().rstrip(",") for piece in flat] == [
        piece for pieces in phrases for piece in pieces
    ]
    for line in lines:
        body = line.strip().rstrip(",")
        assert len(line) <= width or (", " not in body and " · " not in body)


cells = st.text(alphabet="abc*+12 …", min_size=0, max_size=14)


@st.composite
def columns(draw: st.DrawFn) -> list[FitColumn]:
    rows = draw(st.integers(1, 4))
    made = []
    for index in range(draw(st.integers(1, 5))):
        kind = draw(st.sampled_from(["whole", "cut", "wrap"]))
        values = [
            f"{index}{value}".strip()
            for value in draw(st.lists(cells, min_size=rows, max_size=rows))
        ]
        made.append(
            FitColumn(
                f"h{index}",
                [Text(value) for value in values],
                floor=draw(st.integers(1, 8)) if kind == "cut" else None,
                wrap=kind == "wrap",
            )
        )
    return made


@given(columns(), st.integers(1, 90))
def test_a_fitted_table_fits_or_is_refused(made: list[FitColumn], width: int) -> None:
    """Never wider than the terminal; never-cut cells whole, wrapped words whole;
    refused (None) exactly when even the least widths do not fit."""
    fitted = fitted_table(made, width)
    assert (fitted is None) == (least_width(made) > width)
    if fitted is None:
        return
    out = io.StringIO()
    Console(file=out, width=width, color_system=None).print(fitted[0])
    shown = out.getvalue()
    assert max(map(len, shown.splitlines())) <= width
    for column in made:
        for cell in column.cells:
            if column.wrap:
                assert all(word in shown for word in cell.plain.split())
            elif column.floor is None:
                assert cell.plain in shown
