"""The do-not-call store: membership exactly as a set, damaged files refused."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

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
    with pytest.raises(ConfigurationError, match="damaged.*import the list again"):
        DncStore(short)
    other = tmp_path / "other.pdnc"
    other.write_bytes(b"y" * 20_000)
    with pytest.raises(ConfigurationError, match="not a predial do-not-call list"):
        DncStore(other)


def test_a_block_past_the_end_of_the_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "list.pdnc"
    DncStore.build(path, ["2025550123"])
    data = path.read_bytes()
    path.write_bytes(data[: len(data) - 30])  # the metadata and the numbers cut
    with pytest.raises(ConfigurationError, match="area code 202 out of range"):
        DncStore(path)
