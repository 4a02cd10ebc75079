"""BlockSet against plain frozensets of block tuples (the oracle)."""

from __future__ import annotations

import itertools
import pickle
import subprocess
import sys
from typing import Any

import hypothesis.strategies as st
import pytest
from hypothesis import given

from hlg import BlockSet
from hlg._blocks import MAX_BOXES

SHAPE = (4, 3, 2)


@st.composite
def block_sets(draw: Any, ndim: int = 2) -> tuple[BlockSet, frozenset[tuple[int, ...]]]:
    """A block set built from random boxes and points, with its explicit oracle."""
    shape = SHAPE[:ndim]
    boxes = []
    for _ in range(draw(st.integers(0, 4))):
        box = []
        for n in shape:
            start = draw(st.integers(0, n - 1))
            box.append((start, draw(st.integers(start + 1, n))))
        boxes.append(tuple(box))
    points = draw(st.frozensets(st.tuples(*[st.integers(0, n - 1) for n in shape]), max_size=5))
    expected = frozenset(points).union(
        *[itertools.product(*[range(s, e) for s, e in b]) for b in boxes]
    )
    if draw(st.booleans()):
        return BlockSet.from_blocks(expected, ndim), expected
    return BlockSet(ndim, boxes, points), expected


@given(block_sets(), block_sets())
def test_algebra_matches_frozensets(a: Any, b: Any) -> None:
    (x, xs), (y, ys) = a, b
    assert set(x) == xs and len(x) == len(xs) and list(x) == sorted(xs)
    for probe in itertools.product(*[range(-1, n + 1) for n in SHAPE[:2]]):
        assert (probe in x) == (probe in xs)
    for got, want in [(x | y, xs | ys), (x & y, xs & ys), (x - y, xs - ys)]:
        assert set(got) == want and len(got) == len(want) and list(got) == sorted(want)
        assert not set(got.points) & {
            p for p in got if any(p in BlockSet(2, [bx]) for bx in got.boxes)
        }
    assert (x <= y) == (xs <= ys) and x.issubset(y) == (xs <= ys)
    assert (x == y) == (xs == ys) and x != xs and xs != x  # equal only to BlockSets
    assert x != y or (hash(x) == hash(y) and x.token("n") == y.token("n"))
    assert x.within(SHAPE[:2]) and (x.within((1, 1)) == all(p == (0, 0) for p in xs))


@given(block_sets(ndim=3))
def test_three_dimensions_and_pickle(a: Any) -> None:
    x, xs = a
    assert set(x) == xs and list(x) == sorted(xs)
    again = pickle.loads(pickle.dumps(x))
    assert again == x and again.boxes == x.boxes and again.token("n") == x.token("n")


def test_full_box_and_zero_dimensions() -> None:
    every = BlockSet.full((1000, 1000, 1000))
    assert len(every) == 10**9 and (999, 0, 5) in every and (1000, 0, 0) not in every
    assert (0, 0) not in every and "x" not in every and (0.5, 0, 0) not in every
    scalar = BlockSet.full(())
    assert len(scalar) == 1 and list(scalar) == [()] and () in scalar
    assert not BlockSet(2) and len(BlockSet.full((0, 3))) == 0


def test_rows_merge_into_a_slab() -> None:
    rows = BlockSet.box([(0, 1), (0, 5)]) | BlockSet.box([(1, 2), (0, 5)])
    assert rows.boxes == (((0, 2), (0, 5)),)


def test_too_many_boxes_become_points() -> None:
    diagonal = BlockSet(2, [((i, i + 1), (i, i + 1)) for i in range(MAX_BOXES + 1)])
    assert diagonal.boxes == () and len(diagonal.points) == MAX_BOXES + 1


def test_bad_input_is_named() -> None:
    with pytest.raises(ValueError, match=r"box \(\(0, 1\),\) does not have 2 axes"):
        BlockSet(2, [((0, 1),)])
    with pytest.raises(ValueError, match=r"block \(1,\) does not have 2 coordinates"):
        BlockSet.from_blocks([(1,)], 2)


def test_token_is_the_same_in_another_process() -> None:
    blocks = BlockSet(2, [((0, 2), (1, 3))], [(3, 0), (3, 2)])
    code = (
        "from hlg import BlockSet;"
        "print(BlockSet(2, [((0, 2), (1, 3))], [(3, 0), (3, 2)]).token('x'))"
    )
    for seed in ("1", "2"):
        out = subprocess.run(
            [sys.executable, "-c", code],
            capture_output=True,
            text=True,
            check=True,
            env={"PYTHONHASHSEED": seed},
        )
        assert out.stdout.strip() == blocks.token("x")
    assert blocks.token("x") != BlockSet(2, [((0, 2), (1, 3))], [(3, 0)]).token("x")
