"""The do-not-call store (issue 15, work in progress): membership exactly as a set."""

from __future__ import annotations

from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from predial.compliance._dnc_store import DncStore

NUMBERS = st.integers(min_value=2_000_000_000, max_value=9_999_999_999).map(str)


@settings(max_examples=50, deadline=None)
@given(listed=st.lists(NUMBERS, max_size=200), probes=st.lists(NUMBERS, max_size=50))
def test_a_number_is_listed_exactly_when_it_was_imported(
    tmp_path_factory: object, listed: list[str], probes: list[str]
) -> None:
    path = Path(str(tmp_path_factory.mktemp("dnc"))) / "list.pdnc"  # type: ignore[attr-defined]
    assert DncStore.build(path, listed) == len(set(listed))
    store = DncStore(path)
    try:
        for number in [*listed, *probes]:
            assert (f"+1{number}" in store) is (number in set(listed))
            assert (number in store) is (number in set(listed))
        assert "+442079460000" not in store
        assert "not a number" not in store
    finally:
        store.close()
