"""Tests for streaming execution: symbolic layers numbered by position, tasks built when
ready, results identical to fully materialized execution."""

from __future__ import annotations

import sys
import threading
from pathlib import Path
from typing import Any

import numpy as np
from _spec import combine
from hypothesis import given, settings
from hypothesis import strategies as st

import hlg
from hlg import HighLevelGraph, Layer, MaterializedLayer, Task, TaskRef, layers
from hlg._order import plan
from hlg._schedule import Schedule
from hlg.layers import Blockwise

sys.path.insert(0, str(Path(__file__).parents[1] / "benchmarks"))


def make(tag: int, block: tuple[int, ...]) -> int:
    return combine(tag, *block)


def combine_items(tag: int, items: list[int]) -> int:
    return combine(tag, *items)


@st.composite
def mixed_graphs(draw: st.DrawFn) -> tuple[HighLevelGraph, list[Any], set[str]]:
    """Blockwise chains over a 2-d grid with materialized layers in between, a contraction
    to 1-d and sometimes a tree reduction; keys drawn from the last layers."""
    a, b = draw(st.integers(1, 4)), draw(st.integers(1, 4))
    if draw(st.booleans()):
        b = a  # square: transposes allowed
    out: dict[str, Layer] = {
        "x": layers.blockwise(make, "x", "ij", 0, None, layers.BlockIndex((a, b)), "ij")
    }
    deps: dict[str, tuple[str, ...]] = {"x": ()}
    materialized: set[str] = set()
    cur = "x"
    nb = {"x": (a, b)}
    for step in range(1, draw(st.integers(1, 4)) + 1):
        name = f"l{step}"
        kind = draw(st.sampled_from(["map", "transpose", "materialized", "hand"]))
        if kind == "transpose" and a != b:
            kind = "map"
        if kind == "hand":  # a hand-written layer reading a shifted block
            tasks = {
                (name, i, j): Task((name, i, j), combine, step, TaskRef((cur, i, (j + 1) % b)))
                for i in range(a)
                for j in range(b)
            }
            layer: Layer = MaterializedLayer(tasks, name)
            materialized.add(name)
        elif kind == "transpose":
            layer = layers.blockwise(
                combine,
                name,
                "ij",
                step,
                None,
                cur,
                "ji",
                "x",
                "ij",
                numblocks={cur: (a, b), "x": (a, b)},
            )
        else:
            layer = layers.blockwise(
                combine, name, "ij", step, None, cur, "ij", numblocks={cur: (a, b)}
            )
            if kind == "materialized":
                layer = MaterializedLayer(layer.materialize(), name)
                materialized.add(name)
        out[name] = layer
        deps[name] = (cur, "x") if kind == "transpose" else (cur,)
        nb[name] = (a, b)
        cur = name
    out["s"] = layers.blockwise(
        combine_items, "s", "i", 99, None, cur, "ij", numblocks={cur: (a, b)}
    )
    deps["s"] = (cur,)
    if draw(st.booleans()):
        out["r"] = layers.TreeReduction(
            "r", "s", a, abs, sum, max, split_every=draw(st.integers(2, 3))
        )
        deps["r"] = ("s",)
        keys: list[Any] = [("r", 0)]
    else:
        pool = [("s", i) for i in range(a)] + [(cur, i, j) for i in range(a) for j in range(b)]
        keys = draw(st.lists(st.sampled_from(pool), min_size=1, max_size=4))
    return HighLevelGraph(out, deps), keys, materialized


def materialized_copy(graph: HighLevelGraph) -> HighLevelGraph:
    return HighLevelGraph(
        {
            name: MaterializedLayer(layer.materialize(), name)
            for name, layer in graph.layers.items()
        },
        graph.dependencies,
    )


@settings(max_examples=60, deadline=None)
@given(mixed_graphs(), st.sampled_from(["sync", "threads", "packed"]))
def test_streamed_equals_materialized(drawn: Any, how: str) -> None:
    graph, keys, materialized = drawn
    expected = hlg.get(materialized_copy(graph), keys)  # the reference scheduler, per key
    assert hlg.compute(materialized_copy(graph), keys, scheduler="sync") == expected
    if how == "packed":
        got = hlg.compute(hlg.unpack(hlg.pack(graph, keys)), keys, scheduler="sync")
    else:
        got = hlg.compute(graph, keys, scheduler=how)
    assert got == expected
    # symbolic layers are numbered by position: only materialized keys are numbered one by one
    p = plan(graph, keys)
    assert {key[0] for key in p._perkey.values()} <= materialized
    assert len(p._owners) == len({layer.name for layer in p._owners})


@settings(max_examples=40, deadline=None)
@given(
    st.integers(1, 5),
    st.integers(1, 5),
    st.integers(2, 4),
    st.sampled_from(["blockwise", "input", "reduction", "shuffle", "culled"]),
)
def test_positions_round_trip(a: int, b: int, k: int, kind: str) -> None:
    layer: Layer
    if kind == "blockwise":
        layer = layers.blockwise(make, "x", "ij", 0, None, layers.BlockIndex((a, b)), "ij")
    elif kind == "input":
        layer = layers.InputLayer("x", abs, list(range(a * b)))
    elif kind == "reduction":
        layer = layers.TreeReduction("r", "s", a * b, abs, sum, sum, split_every=k)
    elif kind == "shuffle":
        layer = layers.Shuffle("y", "x", a, b * k, list, list, max_branch=k)
    else:
        full = layers.TreeReduction("r", "s", a * b + 3, abs, sum, sum, split_every=k)
        layer = full.cull([("r-chunk", a * b - 1)])[0]
    span = layer.position_span()
    assert span is not None
    positions = [layer.key_position(key) for key in layer]
    assert len(set(positions)) == len(positions) == len(layer) <= span
    assert all(0 <= p < span for p in positions)
    assert [layer.position_key(p) for p in positions] == list(layer)


def test_layers_without_positions_have_none() -> None:
    m = MaterializedLayer({"a": hlg.DataNode("a", 1)}, name="a")
    assert m.position_span() is None


# -- bounded memory ------------------------------------------------------------------------


LOCK = threading.Lock()


class Counting(Blockwise):
    """A blockwise layer that counts the tasks built and refuses to list its keys."""

    counts: list[int]  # built, run, most built and not yet run

    def __getitem__(self, key: Any) -> Any:
        c = self.counts
        with LOCK:
            c[0] += 1
            c[2] = max(c[2], c[0] - c[1])
        return super().__getitem__(key)

    def __iter__(self) -> Any:
        raise AssertionError("a scheduler iterated the keys of a symbolic layer")


def counting(layer: Blockwise, counts: list[int]) -> Counting:
    new = Counting.__new__(Counting)
    new.__dict__.update(layer.__dict__)
    new.counts = counts
    return new


def chain_graph(n: int, counts: list[int]) -> HighLevelGraph:
    """x -> y -> z -> w over n blocks, then a tree reduction: 4n + tree tasks."""

    def ran(value: int) -> int:
        with LOCK:
            counts[1] += 1
        return value + 1

    def first(block: tuple[int]) -> int:
        with LOCK:
            counts[1] += 1
        return block[0] % 3

    x = layers.blockwise(first, "x", "i", layers.BlockIndex((n,)), "i")
    y = layers.blockwise(ran, "y", "i", "x", "i", numblocks={"x": (n,)})
    z = layers.blockwise(ran, "z", "i", "y", "i", numblocks={"y": (n,)})
    w = layers.blockwise(ran, "w", "i", "z", "i", numblocks={"z": (n,)})
    total = layers.TreeReduction("t", "w", n, int, sum, sum, split_every=16)
    named = {"x": x, "y": y, "z": z, "w": w}
    return HighLevelGraph(
        {**{k: counting(v, counts) for k, v in named.items()}, "t": total},
        {"x": (), "y": ("x",), "z": ("y",), "w": ("z",), "t": ("w",)},
    )


def test_a_million_tasks_hold_few_built_tasks() -> None:
    n = 250_000
    counts = [0, 0, 0]
    graph = chain_graph(n, counts)
    expected = sum(i % 3 + 3 for i in range(n))
    assert hlg.compute(graph, ("t", 0), scheduler="sync") == expected
    assert counts[0] == counts[1] == 4 * n  # every task built once and run once
    assert counts[2] == 1  # one built task at a time


def test_threads_hold_few_built_tasks() -> None:
    n = 20_000
    counts = [0, 0, 0]
    graph = chain_graph(n, counts)
    assert hlg.compute(graph, ("t", 0), scheduler="threads", num_workers=2) == sum(
        i % 3 + 3 for i in range(n)
    )
    assert counts[0] == counts[1] == 4 * n
    assert counts[2] <= 2  # at most one built task per thread


def test_scheduler_state_is_compact() -> None:
    import bench_scale

    graph, key = bench_scale.hlg_graph(100)
    p = plan(graph, key)
    assert not p._perkey  # nothing numbered key by key
    assert len(p) == len(graph) == 4 * 100 * 100 + 100 + (100 + 13 + 2 + 1)
    state = Schedule(p).nbytes()
    assert state / len(p) <= 100
    assert hlg.compute(graph, key, scheduler="sync") == bench_scale.expected(100)


def test_sparse_culled_layer_is_numbered_per_key() -> None:
    x = layers.blockwise(make, "x", "ij", 0, None, layers.BlockIndex((100, 100)), "ij")
    graph = HighLevelGraph({"x": x}).cull([("x", 3, 4)])  # 1 of 10,000 positions kept
    p = plan(graph, [("x", 3, 4)])
    assert list(p._perkey.values()) == [("x", 3, 4)]
    assert p.span == 1
    assert hlg.compute(graph, ("x", 3, 4), scheduler="sync") == make(0, (3, 4))
    np.testing.assert_equal(p.needed, [1])
