"""FTC registry downloads: parsers (hypothesis), full files, change lists applied
incrementally (only the touched area codes rebuilt), bounded-memory spilling."""

from __future__ import annotations

import gzip
import zipfile
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from predial.compliance import _dnc_import
from predial.compliance._dnc_import import import_files, parse_change, parse_number
from predial.compliance._dnc_store import DncStore

AREAS = st.integers(min_value=200, max_value=999)
SUBSCRIBERS = st.integers(min_value=0, max_value=9_999_999)


@st.composite
def written(draw: st.DrawFn, area: int, subscriber: int) -> str:
    """A number as a file might write it: separators, quotes, a leading 1."""
    digits = f"{area:03d}{subscriber:07d}"
    style = draw(st.sampled_from(["plain", "dashes", "comma", "parens", "dots"]))
    text = {
        "plain": digits,
        "dashes": f"{digits[:3]}-{digits[3:6]}-{digits[6:]}",
        "comma": f"{digits[:3]},{digits[3:]}",
        "parens": f"({digits[:3]}) {digits[3:6]}-{digits[6:]}",
        "dots": f"{digits[:3]}.{digits[3:6]}.{digits[6:]}",
    }[style]
    if draw(st.booleans()):
        text = "1" + text if style in ("plain", "comma") else "1 " + text
    if draw(st.booleans()):
        text = f'"{text}"'
    return text + draw(st.sampled_from(["", " ", "\r"]))


@settings(max_examples=200)
@given(data=st.data(), area=AREAS, subscriber=SUBSCRIBERS)
def test_a_full_file_line_in_any_documented_form_reads_as_its_number(
    data: st.DataObject, area: int, subscriber: int
) -> None:
    assert parse_number(data.draw(written(area, subscriber))) == (area, subscriber)


@settings(max_examples=200)
@given(text=st.text(max_size=20))
def test_a_line_is_a_number_or_a_value_error_never_anything_else(text: str) -> None:
    try:
        area, subscriber = parse_number(text)
    except ValueError as error:
        message = str(error)
        assert message
    else:
        assert 200 <= area <= 999
        assert 0 <= subscriber < 10_000_000


def test_bad_lines_say_what_is_wrong() -> None:
    for text, reason in [
        ("", "no number"),
        ("202555012", "9 digits"),
        ("1234567890", "not a NANP area code"),
        ("20255501234", "11 digits"),
        ("phone", "not a 10-digit number"),
    ]:
        with pytest.raises(ValueError, match=reason):
            parse_number(text)


@settings(max_examples=200)
@given(
    data=st.data(),
    area=AREAS,
    subscriber=SUBSCRIBERS,
    added=st.booleans(),
    flag_first=st.booleans(),
    date=st.sampled_from([None, "2026-12-01", "12/01/2026", "20261201", "2026-12-01 03:00:00"]),
)
def test_a_change_record_reads_in_any_field_order(
    data: st.DataObject,
    area: int,
    subscriber: int,
    added: bool,
    flag_first: bool,
    date: str | None,
) -> None:
    flag = data.draw(
        st.sampled_from(["A", "a", "ADD", "Addition"] if added else ["D", "d", "DELETE", "del"])
    )
    digits = f"{area:03d}{subscriber:07d}"
    number = data.draw(st.sampled_from([digits, f"{digits[:3]},{digits[3:]}", f'"{digits}"']))
    fields = [flag, number] if flag_first else [number, flag]
    if date is not None:
        fields.append(date)
    assert parse_change(",".join(fields)) == (added, area, subscriber)


def test_a_change_record_without_one_flag_is_refused() -> None:
    with pytest.raises(ValueError, match="no addition/deletion flag"):
        parse_change("2025550123")
    with pytest.raises(ValueError, match="more than one"):
        parse_change("2025550123,A,D")
    with pytest.raises(ValueError, match="no number"):
        parse_change("A,2026-12-01")


def _codes(path: Path) -> dict[int, bytes]:
    with DncStore(path) as store:
        return {code: bytes(store.block(code) or b"") for code in store.counts()}


def test_a_full_import_reads_every_form_counts_bad_lines_and_keeps_going(tmp_path: Path) -> None:
    source = tmp_path / "202.txt"
    source.write_text(
        "2025550100\n202-555-0101\n(202) 555-0102\n202,5550103\nnot a number\n"
        '\n20255501\n"2025550104"\n12025550105\n2025550106,A\n'
    )
    target = tmp_path / "national.pdnc"
    report = import_files(target, [source])
    assert report.records == 6
    assert report.total == 6
    assert report.bad == 3
    assert [(bad.line, bad.reason) for bad in report.bad_lines] == [
        (5, "not a 10-digit number"),
        (7, "8 digits, not 10"),
        (10, "a change-list record; import those with --changes"),
    ]
    with DncStore(target) as store:
        assert all(f"+1202555010{n}" in store for n in range(6))
        assert store.meta["last_import"]["files"] == ["202.txt"]
        assert store.meta["last_import"]["total"] == 6


def test_a_full_file_replaces_its_area_codes_only(tmp_path: Path) -> None:
    target = tmp_path / "national.pdnc"
    (tmp_path / "a.txt").write_text("2025550100\n3035550100\n")
    import_files(target, [tmp_path / "a.txt"])
    (tmp_path / "b.txt").write_text("2025550199\n")
    report = import_files(target, [tmp_path / "b.txt"])
    assert report.area_codes == [202]
    with DncStore(target) as store:
        assert "+12025550199" in store
        assert "+13035550100" in store
        assert "+12025550100" not in store  # the new full file for 202 replaced it
        assert store.generation == 2


def test_a_change_list_rebuilds_only_the_area_codes_it_touches(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = tmp_path / "national.pdnc"
    full = tmp_path / "full.txt"
    full.write_text("".join(f"{code}555{n:04d}\n" for code in (202, 303, 404) for n in range(50)))
    import_files(target, [full])
    before = _codes(target)
    rebuilt = []
    original = _dnc_import._rebuild_area

    def spy(code: int, *args: object) -> object:
        rebuilt.append(code)
        return original(code, *args)  # type: ignore[arg-type]

    monkeypatch.setattr(_dnc_import, "_rebuild_area", spy)
    changes = tmp_path / "changes.csv"
    changes.write_text("3035550000,D,2026-12-01\n3035559999,A,2026-12-01\n")
    report = import_files(target, [changes], changes=True)
    assert rebuilt == [303]
    assert report.area_codes == [303]
    assert (report.additions, report.deletions) == (1, 1)
    after = _codes(target)
    assert after[202] == before[202]
    assert after[404] == before[404]
    assert after[303] != before[303]
    with DncStore(target) as store:
        assert "+13035550000" not in store
        assert "+13035559999" in store
        assert store.count == 150


@settings(max_examples=40, deadline=None)
@given(
    start=st.sets(st.integers(min_value=0, max_value=199), max_size=40),
    ops=st.lists(st.tuples(st.booleans(), st.integers(min_value=0, max_value=199)), max_size=60),
)
def test_a_change_list_leaves_the_list_as_a_set_would(
    tmp_path_factory: pytest.TempPathFactory, start: set[int], ops: list[tuple[bool, int]]
) -> None:
    root = tmp_path_factory.mktemp("changes")
    target = root / "list.pdnc"
    # Two area codes, so some changes land in one and not the other.
    as_number = {n: f"{202 + n % 2}555{n:04d}" for n in range(200)}
    (root / "full.txt").write_text("".join(as_number[n] + "\n" for n in start))
    import_files(target, [root / "full.txt"])
    (root / "changes.txt").write_text(
        "".join(f"{as_number[n]},{'A' if added else 'D'}\n" for added, n in ops)
    )
    import_files(target, [root / "changes.txt"], changes=True)
    expected = set(start)
    for added, n in ops:
        (expected.add if added else expected.discard)(n)
    with DncStore(target) as store:
        assert {n for n in range(200) if as_number[n] in store} == expected


def test_spilled_to_disk_or_held_in_memory_the_list_is_the_same(tmp_path: Path) -> None:
    source = tmp_path / "mixed.txt"
    source.write_text("".join(f"{200 + n % 7}{(n * 7919) % 10_000_000:07d}\n" for n in range(3000)))
    import_files(tmp_path / "memory.pdnc", [source])
    import_files(tmp_path / "spilled.pdnc", [source], buffer_numbers=100)
    assert (tmp_path / "memory.pdnc").read_bytes()[:12_032] == (
        tmp_path / "spilled.pdnc"
    ).read_bytes()[:12_032]
    assert _codes(tmp_path / "memory.pdnc") == _codes(tmp_path / "spilled.pdnc")
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no leftovers


def test_compressed_downloads_are_read_as_they_are(tmp_path: Path) -> None:
    with gzip.open(tmp_path / "202.txt.gz", "wt") as out:
        out.write("2025550100\n2025550101")  # no final newline
    with zipfile.ZipFile(tmp_path / "ftc.zip", "w") as archive:
        archive.writestr("303.txt", "3035550100\n")
        archive.writestr("404.txt", "4045550100\r\n4045550101\r\n")
    report = import_files(tmp_path / "l.pdnc", [tmp_path / "202.txt.gz", tmp_path / "ftc.zip"])
    assert report.total == 5
    assert report.bad == 0
    assert report.area_codes == [202, 303, 404]


def test_progress_reaches_the_bytes_of_every_file(tmp_path: Path) -> None:
    files = []
    for code in (202, 303):
        path = tmp_path / f"{code}.txt"
        path.write_text("".join(f"{code}555{n:04d}\n" for n in range(100)))
        files.append(path)
    seen: list[tuple[int, int]] = []
    import_files(
        tmp_path / "l.pdnc", files, progress=lambda done, total: seen.append((done, total))
    )
    total = sum(path.stat().st_size for path in files)
    assert seen[-1] == (total, total)
    assert [done for done, _ in seen] == sorted(done for done, _ in seen)


def test_a_byte_order_mark_at_the_start_of_a_file_is_passed_over(tmp_path: Path) -> None:
    full = tmp_path / "202.txt"
    full.write_bytes(b"\xef\xbb\xbf2025550001\r\n2025550002\r\n")  # a Windows export
    target = tmp_path / "l.pdnc"
    report = import_files(target, [full])
    assert (report.records, report.bad, report.bad_lines) == (2, 0, [])
    changes = tmp_path / "changes.csv"
    changes.write_bytes("\ufeff2025550001,D\n2025550003,A\n".encode())
    report = import_files(target, [changes], changes=True)
    assert (report.additions, report.deletions, report.bad) == (1, 1, 0)
    packed = tmp_path / "203.txt.gz"
    packed.write_bytes(gzip.compress(b"\xef\xbb\xbf2035550001\n"))
    assert import_files(target, [packed]).bad == 0
    with DncStore(target) as store:
        assert sorted(store) == ["+12025550002", "+12025550003", "+12035550001"]
