"""Tests for hlg._keys: what is and is not a key."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from hlg import iskey, key_prefix, validate_key


@pytest.mark.parametrize(
    "obj",
    [
        "x",
        "",
        ("x",),
        ("x", 0),
        ("x", 1, 2),
        ("x", 1.5),
        ("x", "a", 3),
        np.str_("x"),
    ],
)
def test_keys(obj: object) -> None:
    assert iskey(obj)
    validate_key(obj)


@pytest.mark.parametrize(
    "obj",
    [
        1,
        1.0,
        True,
        None,
        (),
        (1, "x"),
        ("x", True),
        ("x", None),
        ("x", ("y", 1)),
        ["x", 1],
        b"x",
        ("x", [1]),
        ("x", np.int64(3)),
    ],
)
def test_not_keys(obj: object) -> None:
    assert not iskey(obj)
    with pytest.raises(TypeError, match="key must be a str or a tuple"):
        validate_key(obj)


def test_key_prefix() -> None:
    assert key_prefix("abc") == "abc"
    assert key_prefix(("abc", 1, 2)) == "abc"


items = st.one_of(st.integers(), st.floats(allow_nan=False), st.text())


@given(st.text(), st.lists(items, max_size=4))
def test_tuple_keys(name: str, rest: list[object]) -> None:
    assert iskey((name, *rest))
    assert not iskey((name, *rest, True))
