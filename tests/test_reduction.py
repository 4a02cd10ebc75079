"""Tests for layers.TreeReduction: results against functools.reduce (non-commutative),
level widths, symbolic answers, culling, packing and fusion after a reduction."""

from __future__ import annotations

import functools
import operator
import pickle
from typing import Any

import numpy as np
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

import hlg
from hlg import DataNode, HighLevelGraph, MaterializedLayer, layers
from hlg._layer import _closure
from hlg.layers._reduction import TreeTemplate
from hlg.testing import check_layer


def tag(part: str) -> str:
    return f"<{part}>"


def concat(values: list[str]) -> str:
    return "".join(values)


def bracket(values: list[str]) -> str:
    return "[" + "".join(values) + "]"


def data_layer(parts: list[Any], name: str = "s") -> MaterializedLayer:
    return MaterializedLayer({(name, i): DataNode((name, i), p) for i, p in enumerate(parts)}, name)


def reduction_graph(parts: list[Any], **kw: Any) -> HighLevelGraph:
    red = layers.TreeReduction("r", "s", len(parts), tag, concat, bracket, **kw)
    return HighLevelGraph({"s": data_layer(parts), "r": red}, {"r": ["s"]})


def widths(n: int, every: int) -> list[int]:
    out = [n]
    while out[-1] > 1 or len(out) == 1:
        out.append(-(-out[-1] // every))
    return out


@settings(max_examples=60, deadline=None)
@given(
    parts=st.lists(st.text(alphabet="abcxyz", max_size=3), min_size=1, max_size=300),
    split_every=st.integers(2, 12),
)
@example(parts=["a"], split_every=2)
@example(parts=list("abcdefghi"), split_every=3)
def test_equals_functools_reduce(parts: list[str], split_every: int) -> None:
    g = reduction_graph(parts, split_every=split_every)
    got = hlg.get(g, ("r", 0))
    assert got == "[" + functools.reduce(operator.add, map(tag, parts), "") + "]"
    red = g.layers["r"]
    assert [red.width(lv) for lv in range(red.depth + 1)] == widths(len(parts), split_every)
    assert len(red) == sum(widths(len(parts), split_every))


def test_numpy_sum_and_mean() -> None:
    rng = np.random.default_rng(3)
    parts = [rng.normal(size=rng.integers(1, 9)) for _ in range(37)]

    def chunk(a: np.ndarray) -> tuple[float, int]:
        return float(a.sum()), len(a)

    def combine(pairs: list[tuple[float, int]]) -> tuple[float, int]:
        return sum(p[0] for p in pairs), sum(p[1] for p in pairs)

    def mean(pairs: list[tuple[float, int]]) -> float:
        total, count = combine(pairs)
        return total / count

    red = layers.TreeReduction("m", "s", 37, chunk, combine, mean, split_every=4)
    g = HighLevelGraph({"s": data_layer(parts), "m": red}, {"m": ["s"]})
    assert hlg.get(g, ("m", 0)) == pytest.approx(np.concatenate(parts).mean())


def test_keys_and_dependencies() -> None:
    red = layers.TreeReduction("r", "s", 10, tag, concat, bracket, split_every=3)
    assert list(red)[:2] == [("r-chunk", 0), ("r-chunk", 1)]
    assert red.dependency_tuple(("r-combine", 1, 3)) == (("r-chunk", 9),)
    assert red.dependency_tuple(("r-combine", 2, 0)) == tuple(("r-combine", 1, g) for g in range(3))
    assert red.dependency_tuple(("r", 0)) == (("r-combine", 2, 0), ("r-combine", 2, 1))
    assert ("r", 1) not in red and ("r-combine", 3, 0) not in red and ("r-chunk", 10) not in red
    assert ("r", 0.0) in red and ("r-chunk", 2.0) in red
    one = layers.TreeReduction("o", "s", 1, tag, concat, bracket)
    assert list(one) == [("o-chunk", 0), ("o", 0)]


def test_split_every_is_checked() -> None:
    with pytest.raises(ValueError, match="split_every must be an int >= 2; got 1"):
        layers.TreeReduction("r", "s", 4, tag, concat, bracket, split_every=1)
    with pytest.raises(TypeError, match="combine must be callable; got 3"):
        layers.TreeReduction("r", "s", 4, tag, 3, bracket)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="npartitions must be an int >= 1; got 0"):
        layers.TreeReduction("r", "s", 0, tag, concat, bracket)


def test_symbolic_answers_build_no_task(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(self: Any, key: Any, *args: Any) -> Any:
        raise AssertionError(f"built {key!r}")

    red = layers.TreeReduction("r", "s", 5000, tag, concat, bracket, split_every=7)
    monkeypatch.setattr(TreeTemplate, "build", refuse)
    monkeypatch.setattr(TreeTemplate, "fill", refuse)
    keys = list(red)
    assert len(keys) == len(set(keys)) == len(red)
    for key in keys[::101]:
        assert key in red
        red.dependencies(key)
    culled, external = red.cull([("r-combine", 2, 3)])
    assert len(external) == 49 and len(culled) == 49 + 7 + 1


@settings(max_examples=40, deadline=None)
@given(n=st.integers(1, 200), every=st.integers(2, 6), data=st.data())
def test_cull_equals_closure(n: int, every: int, data: Any) -> None:
    red = layers.TreeReduction("r", "s", n, tag, concat, bracket, split_every=every)
    keys = data.draw(st.lists(st.sampled_from(list(red)), min_size=1, max_size=4))
    culled, external = red.cull(keys)
    kept, outside = _closure(red, keys)
    assert set(culled) == set(kept) and len(culled) == len(kept)
    assert external == outside
    for key in culled:
        assert culled.dependency_tuple(key) == red.dependency_tuple(key)
    tasks = culled.materialize()
    assert list(tasks) == list(culled)
    parts = [f"p{i}" for i in range(n)]
    g = HighLevelGraph({"s": data_layer(parts), "r": red}, {"r": ["s"]})
    assert hlg.get(g.cull(keys), keys) == hlg.get(g, keys)


def test_pickle_round_trip() -> None:
    red = layers.TreeReduction("r", "s", 30, tag, concat, bracket, split_every=4)
    culled, _ = red.cull([("r-combine", 1, 2)])
    for layer in (red, culled):
        again = pickle.loads(pickle.dumps(layer))
        assert list(again) == list(layer)


@pytest.mark.parametrize("keys", [None, [("r", 0)], [("r-combine", 1, 1)]])
def test_packed_round_trip(keys: Any) -> None:
    parts = [f"p{i}" for i in range(23)]
    g = reduction_graph(parts, split_every=3)
    packed = hlg.unpack(hlg.pack(g, keys))
    reference = g if keys is None else g.cull(keys)
    assert sorted(packed) == sorted(reference)
    for key in reference:
        assert packed.dependencies(key) == reference.key_dependencies(key)
        assert packed[key].unpack(packed.blobs) == reference[key]
    wanted = keys or [("r", 0)]
    assert hlg.get(packed, wanted) == hlg.get(g, wanted)


def test_packed_size_does_not_grow_with_partitions() -> None:
    def graph(n: int) -> HighLevelGraph:
        src = layers.blockwise(str, "s", "i", layers.BlockIndex((n,)), "i")
        red = layers.TreeReduction("r", "s", n, tag, concat, bracket)
        return HighLevelGraph({"s": src, "r": red}, {"r": ["s"]})

    assert len(hlg.pack(graph(1_000_000))) - len(hlg.pack(graph(10))) < 16


def test_blockwise_after_a_reduction_still_fuses() -> None:
    parts = [f"p{i}" for i in range(9)]
    red = layers.TreeReduction("r", "s", 9, tag, concat, bracket, split_every=2)
    up = layers.blockwise(str.upper, "up", "i", "r", "i", numblocks={"r": (1,)})
    ln = layers.blockwise(len, "len", "i", "up", "i", numblocks={"up": (1,)})
    g = HighLevelGraph(
        {"s": data_layer(parts), "r": red, "up": up, "len": ln},
        {"r": ["s"], "up": ["r"], "len": ["up"]},
    )
    fused = hlg.optimize(g, [("len", 0)], passes=[layers.fuse_blockwise])
    assert set(fused.layers) == {"s", "r", "len"}
    assert fused.layers["r"] is red
    assert hlg.get(fused, ("len", 0)) == len(hlg.get(g, ("r", 0))) == hlg.get(g, ("len", 0))
    linear = hlg.fuse_linear(g, [("len", 0)])
    assert linear.layers["r"] is red


@pytest.mark.parametrize(("n", "every"), [(1, 2), (10, 3), (300, 8)])
def test_check_layer(n: int, every: int) -> None:
    red = layers.TreeReduction("r", "s", n, tag, concat, bracket, split_every=every)
    check_layer(red)
    check_layer(red.cull([("r-chunk", n - 1), ("r", 0) if n == 1 else ("r-chunk", 0)])[0])
