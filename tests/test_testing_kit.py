"""predial.testing's own helpers: the TOML writer of served_check."""

from __future__ import annotations

import tomllib
from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st

from predial.testing.check import _string, _toml

scalars = st.one_of(
    st.text(), st.integers(), st.booleans(), st.floats(allow_nan=False, allow_infinity=False)
)
values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=12,
)


@given(st.text(), values)
def test_any_setting_round_trips_through_toml(key: str, value: object) -> None:
    document = f"{_string(key)} = {_toml(value)}\n"
    assert tomllib.loads(document) == {key: value}


def test_paths_are_written_as_strings(tmp_path: Path) -> None:
    assert tomllib.loads(f"p = {_toml(tmp_path / 'token')}") == {"p": str(tmp_path / "token")}
