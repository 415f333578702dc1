"""The do-not-call store: membership exactly as a set, damaged files refused."""

from __future__ import annotations

import os
import stat
import struct
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from predial.compliance import _dnc_store
from predial.compliance._dnc_store import DncStore, split_nanp
from predial.errors import ConfigurationError

NUMBERS = st.integers(min_value=2_000_000_000, max_value=9_999_999_999).map(str)


@settings(max_examples=50, deadline=None)
@given(listed=st.lists(NUMBERS, max_size=200), probes=st.lists(NUMBERS, max_size=50))
def test_a_number_is_listed_exactly_when_it_was_imported(
    tmp_path_factory: pytest.TempPathFactory, listed: list[str], probes: list[str]
) -> None:
    path = tmp_path_factory.mktemp("dnc") / "list.pdnc"
    assert DncStore.build(path, listed) == len(set(listed))
    with DncStore(path) as store:
        for number in [*listed, *probes]:
            assert (f"+1{number}" in store) is (number in set(listed))
            assert (number in store) is (number in set(listed))
        assert "+442079460000" not in store
        assert "not a number" not in store
        assert 12025550123 not in store
        assert sorted(store) == sorted({f"+1{number}" for number in listed})
        assert store.count == len(set(listed))


def test_split_nanp_reads_e164_and_national_forms_and_refuses_others() -> None:
    assert split_nanp("+12025550123") == (202, 5550123)
    assert split_nanp("12025550123") == (202, 5550123)
    assert split_nanp("2025550123") == (202, 5550123)
    for other in ("+442079460000", "+1202555012", "+1202555012x", "+1２０２5550123", ""):
        assert split_nanp(other) is None


def test_a_file_that_is_not_a_list_is_a_configuration_error_saying_what_to_do(
    tmp_path: Path,
) -> None:
    short = tmp_path / "short.pdnc"
    short.write_bytes(b"x" * 10)
    with pytest.raises(ConfigurationError, match=r"damaged \(too short\): re-import it"):
        DncStore(short)
    other = tmp_path / "other.pdnc"
    other.write_bytes(b"y" * 20_000)
    with pytest.raises(ConfigurationError, match="not a predial do-not-call list"):
        DncStore(other)


def test_a_block_past_the_end_of_the_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "list.pdnc"
    DncStore.build(path, ["2025550123"])
    data = path.read_bytes()
    path.unlink()  # (written read-only)
    path.write_bytes(data[: len(data) - 30])  # the metadata and the numbers cut
    with pytest.raises(ConfigurationError, match="area code 202 out of range"):
        DncStore(path)


def _exchange_start_at(path: Path, code: int, exchange: int) -> int:
    """The file offset of area code `code`'s start of `exchange`."""
    at = _dnc_store._INDEX + code * _dnc_store._ENTRY.size
    offset, _ = _dnc_store._ENTRY.unpack_from(path.read_bytes(), at)
    return int(offset) + 4 * exchange


@pytest.mark.parametrize(
    ("exchange", "value"),
    [(556, 0xFFFF_FFFF), (100, 1), (0, 1), (1000, 2), (1000, 4)],
    ids=["past-the-block", "decreasing", "first-not-0", "last-short", "last-past"],
)
def test_an_exchange_index_out_of_order_is_refused_at_open_not_at_dial_time(
    tmp_path: Path, exchange: int, value: int
) -> None:
    path = tmp_path / "national.pdnc"
    DncStore.build(path, ["2025550123", "2025550124", "2029990000"])
    data = bytearray(path.read_bytes())
    struct.pack_into("<I", data, _exchange_start_at(path, 202, exchange), value)
    path.unlink()
    path.write_bytes(bytes(data))
    with pytest.raises(ConfigurationError) as raised:
        DncStore(path)
    assert str(raised.value) == (
        f"do-not-call list file {path} is damaged (area code 202's exchange index out "
        "of order): re-import it (predial dnc import) or delete the file"
    )


def test_a_block_damaged_after_open_answers_listed_never_raises(tmp_path: Path) -> None:
    path = tmp_path / "national.pdnc"
    DncStore.build(path, ["2025550123", "2025550124"])
    with DncStore(path) as store:
        # Changed in place, same size (the map then reads the new bytes): what a
        # `cp` over the file does, which the read-only mode only stops for non-root.
        os.chmod(path, 0o644)
        with open(path, "r+b") as file:
            file.seek(_exchange_start_at(path, 202, 556))
            file.write(struct.pack("<I", 0xFFFF_FFFF))
        assert store.has(202, 5550123) is True  # fails closed
        assert "+12025550123" in store


def test_a_list_file_is_written_read_only(tmp_path: Path) -> None:
    path = tmp_path / "national.pdnc"
    DncStore.build(path, ["2025550123"])
    assert stat.S_IMODE(path.stat().st_mode) == 0o444
    DncStore.build(path, ["2025550124"])  # replaced by rename all the same
    assert stat.S_IMODE(path.stat().st_mode) == 0o444
    with DncStore(path) as store:
        assert list(store) == ["+12025550124"]
    if os.geteuid() != 0:  # root writes through any mode
        with pytest.raises(PermissionError):
            open(path, "wb")  # noqa: SIM115 (it never opens)


def test_a_list_that_cannot_be_read_is_a_configuration_error(tmp_path: Path) -> None:
    (tmp_path / "x.pdnc").mkdir()
    with pytest.raises(ConfigurationError, match=r"x\.pdnc cannot be read \(Is a directory\)"):
        DncStore(tmp_path / "x.pdnc")
