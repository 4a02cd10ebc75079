"""Tests for hlg._pack and hlg.layers._kinds: round trips, sizes, registry, worker caching."""

from __future__ import annotations

import pickle
import subprocess
import sys
import warnings
from collections.abc import Iterator
from operator import add, mul
from typing import Any

import cloudpickle
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import hlg
from hlg import DataNode, HighLevelGraph, Layer, Task, TaskRef, layers


def inc(x: int) -> int:
    return x + 1


def chain_graph(n: int) -> HighLevelGraph:
    """The 4-layer chain: ones -> +1 -> *2 -> transpose + x, on n x n blocks."""
    chunks = ((2,) * n, (2,) * n)
    nb = {"x": (n, n)}
    x = layers.blockwise(np.ones, "x", "ij", layers.ChunkShape(chunks), "ij")
    a = layers.blockwise(add, "a", "ij", "x", "ij", 1, None, numblocks=nb)
    b = layers.blockwise(mul, "b", "ij", "a", "ij", 2, None, numblocks={"a": (n, n)})
    c = layers.blockwise(add, "c", "ij", "b", "ji", "x", "ij", numblocks={"b": (n, n), "x": (n, n)})
    return HighLevelGraph(
        {"x": x, "a": a, "b": b, "c": c}, {"a": ["x"], "b": ["a"], "c": ["b", "x"]}
    )


def test_round_trip_blockwise_chain() -> None:
    g = chain_graph(3)
    packed = hlg.unpack(hlg.pack(g))
    assert sorted(packed) == sorted(g)
    assert packed.output_keys == list(g.layers["c"])
    for key in g:
        assert packed.dependencies(key) == g.key_dependencies(key)
        assert packed[key].dependencies == g[key].dependencies
        assert packed[key].unpack(packed.blobs) == g[key]
    keys = [("c", 0, 1), ("c", 2, 2)]
    for got, want in zip(hlg.get(packed, keys), hlg.get(g, keys), strict=True):
        np.testing.assert_array_equal(got, want)
    assert packed.meta["hlg_version"] == hlg.__version__
    assert packed.meta["cloudpickle_version"] == cloudpickle.__version__


def test_packed_size_does_not_grow_with_blocks() -> None:
    """One blob per template; only the chunk sizes (one int per row/column) grow."""
    small = hlg.pack(chain_graph(10))
    large = hlg.pack(chain_graph(1000))
    assert len(large) <= 64 * 1024
    assert len(hlg.unpack(small).blobs) == len(hlg.unpack(large).blobs) == 4
    assert len(large) - len(small) <= 2 * 990 * 2  # the chunks tuples, at most 2 B per entry


def test_fused_layer_is_one_blob() -> None:
    g = chain_graph(4)
    fused = hlg.optimize(g, list(g.layers["c"]), passes=[layers.fuse_blockwise])
    packed = hlg.unpack(hlg.pack(fused))
    # x (read twice: not fused) and c (a, b fused in): two templates
    assert len(packed.layers) == 2 and len(packed.blobs) == 2
    np.testing.assert_array_equal(hlg.get(packed, ("c", 1, 3)), hlg.get(g, ("c", 1, 3)))


def test_outputs_recorded_by_layer_name() -> None:
    g = chain_graph(50)
    everything = hlg.pack(g, list(g.layers["c"]))
    assert len(everything) < 4096  # 2,500 output keys recorded as one layer name
    some = hlg.unpack(hlg.pack(g, [("c", 1, 2), ("c", 3, 4)]))
    assert some.output_keys == [("c", 1, 2), ("c", 3, 4)]
    assert ("c", 0, 0) not in some  # culled before packing


def test_identical_payloads_are_stored_once() -> None:
    big = np.arange(10_000)
    tasks = {("t", i): Task(("t", i), np.sum, big) for i in range(50)}
    packed = hlg.unpack(hlg.pack(tasks))
    # one blob for np.sum, one for the (args, kwargs) pair holding the same array
    assert len(packed.blobs) == 2
    assert packed.blobs.nbytes() < 2 * big.nbytes


def test_keys_and_arguments_survive_exactly() -> None:
    keys = ["s", ("t", 0), ("t", 1.5), ("t", "a", 2), ("t", -3, 0.25, "z")]
    tasks: dict[Any, Any] = {}
    for i, k in enumerate(keys):
        tasks[k] = Task(k, list, ([1, (2, 3)], (4, [5]), TaskRef(keys[i - 1])) if i else ())
    packed = hlg.unpack(hlg.pack(tasks))
    assert set(packed) == set(keys)
    for k in keys:
        assert type(next(x for x in packed if x == k)) is type(k)
        assert packed[k].unpack(packed.blobs) == tasks[k]
    assert hlg.get(packed, ("t", 0)) == [[1, (2, 3)], (4, [5]), []]


def test_materialized_nodes_round_trip() -> None:
    fused = Task.fuse(Task("a", inc, TaskRef("x")), Task("b", inc, TaskRef("a")))
    g = {
        "x": DataNode("x", 1),
        "al": hlg.Alias("al", "x"),
        "b": fused,
        "kw": Task("kw", dict, a=TaskRef("x"), b=2),
        "lam": Task("lam", lambda v: v * 10, TaskRef("b")),
    }
    packed = hlg.unpack(hlg.pack(g))
    assert hlg.get(packed, ["al", "b", "kw", "lam"]) == [1, 3, {"a": 1, "b": 2}, 30]


def test_annotations_survive() -> None:
    g = chain_graph(2)
    g.layers["a"] = g.layers["a"].with_annotations(retries=3, resources={"GPU": 1})
    packed = hlg.unpack(hlg.pack(g))
    assert dict(packed.layers["a"].annotations) == {"retries": 3, "resources": {"GPU": 1}}
    assert dict(packed.layers["b"].annotations) == {}


class Countdown(Layer):
    """A layer kind nobody registered."""

    kind = "countdown"

    def __init__(self, n: int) -> None:
        super().__init__("cd")
        self.n = n

    def __iter__(self) -> Iterator[Any]:
        return (("cd", i) for i in range(self.n))

    def __getitem__(self, key: Any) -> Task:
        if key not in self:
            raise KeyError(key)
        return Task(key, inc, key[1])


def test_unregistered_layer_packs_with_a_warning_saying_how_to_fix_it() -> None:
    g = HighLevelGraph({"cd": Countdown(3)})
    with pytest.warns(hlg.KindWarning, match="layer type Countdown .kind 'countdown'.") as got:
        data = hlg.pack(g)
    message = str(got[0].message)
    assert "hlg.register_layer_kind(kind)" in message
    assert "'hlg.layers' entry point group" in message
    assert hlg.get(hlg.unpack(data), [("cd", 2)]) == [3]


def test_unregistered_layer_warning_obeys_the_warning_filters() -> None:
    g = HighLevelGraph({"cd": Countdown(3)})
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        hlg.pack(g)
        hlg.pack(g)
    assert [w.category for w in caught] == [hlg.KindWarning, hlg.KindWarning]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        warnings.simplefilter("ignore", hlg.KindWarning)  # inserted first: it wins
        hlg.pack(g)  # silenced by its category


def test_code_blobs_unpickled_once_per_computation(monkeypatch: pytest.MonkeyPatch) -> None:
    import hlg._blobs as pack_module

    calls: list[int] = []
    real = cloudpickle.loads

    def counting(data: bytes) -> Any:
        calls.append(len(data))
        return real(data)

    monkeypatch.setattr(pack_module.cloudpickle, "loads", counting)
    marker = np.random.default_rng(1).random(7)  # fresh content: not cached yet
    g = layers.blockwise(add, "m", "i", layers.BlockIndex((20,)), "i", marker, None)
    packed = hlg.unpack(hlg.pack(HighLevelGraph({"m": g})))
    for key in packed:
        packed[key].unpack(packed.blobs)
    assert len(calls) == 1  # one template blob, loaded once for 20 tasks


def test_block_values_are_one_blob_each() -> None:
    paths = [f"part-{i}.csv" for i in range(5)]
    read = layers.InputLayer("read", str.upper, paths)
    packed = hlg.unpack(hlg.pack(HighLevelGraph({"read": read})))
    assert len(packed.blobs) == 6  # the template + one per path
    assert hlg.get(packed, [("read", 4)]) == ["PART-4.CSV"]
    assert packed.layers["read"].kind == "input"


def test_task_pack() -> None:
    t = Task(("y", 1), add, TaskRef("x"), 10)
    packed = hlg.PackedTask.from_task(t)
    assert packed.dependencies == {"x"}
    assert packed.unpack() == t
    again = pickle.loads(pickle.dumps(packed))
    assert again.unpack()({"x": 1}) == 11
    with pytest.raises(TypeError, match="cannot run as it is"):
        packed({"x": 1})


def test_builtin_kinds_found_through_entry_points() -> None:
    code = (
        "import sys, hlg; k = hlg.layer_kind('blockwise'); "
        "print(k is not None, 'numpy' in sys.modules)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert out.split() == ["True", "False"]  # found without importing numpy


@st.composite
def materialized_graphs(draw: Any) -> tuple[dict[Any, Any], dict[Any, int]]:
    n = draw(st.integers(1, 15))
    graph: dict[Any, Any] = {}
    expected: dict[Any, int] = {}
    keys: list[Any] = []
    for i in range(n):
        key = draw(st.sampled_from([("k", i), f"k{i}", ("k", float(i) + 0.5, "s")]))
        if keys and draw(st.booleans()):
            deps = draw(st.lists(st.sampled_from(keys), min_size=1, max_size=3))
            graph[key] = Task(key, sum, [TaskRef(d) for d in deps])
            expected[key] = sum(expected[d] for d in deps)
        else:
            value = draw(st.integers(-5, 5))
            graph[key] = DataNode(key, value)
            expected[key] = value
        keys.append(key)
    return graph, expected


@given(materialized_graphs(), st.data())
def test_pack_round_trip_property(case: Any, data: Any) -> None:
    graph, expected = case
    wanted = data.draw(st.lists(st.sampled_from(list(graph)), min_size=1, max_size=4))
    packed = hlg.unpack(hlg.pack(graph, wanted))
    assert set(packed.output_keys) == set(wanted)
    assert hlg.get(packed, wanted) == [expected[k] for k in wanted]
    culled = packed.cull(wanted[:1])
    assert hlg.get(culled, wanted[:1]) == [expected[wanted[0]]]


@given(st.integers(1, 4), st.integers(1, 4), st.booleans())
def test_blockwise_pack_property(n: int, m: int, transpose: bool) -> None:
    x = layers.blockwise(
        np.full, "x", "ij", layers.ChunkShape(((1,) * n, (1,) * m)), "ij", 3.0, None
    )
    idx = layers.blockwise(lambda b: b[0] * 10 + b[1], "i", "ij", layers.BlockIndex((n, m)), "ij")
    if transpose and n == m:
        y = layers.blockwise(
            add, "y", "ij", "x", "ji", "i", "ij", numblocks={"x": (n, m), "i": (n, m)}
        )
    else:
        y = layers.blockwise(
            add, "y", "ij", "x", "ij", "i", "ij", numblocks={"x": (n, m), "i": (n, m)}
        )
    s = layers.blockwise(sum, "s", "i", "y", "ij", numblocks={"y": (n, m)})
    g = HighLevelGraph({"x": x, "i": idx, "y": y, "s": s}, {"y": ["x", "i"], "s": ["y"]})
    packed = hlg.unpack(hlg.pack(g))
    keys = list(g.layers["s"])
    for got, want in zip(hlg.get(packed, keys), hlg.get(g, keys), strict=True):
        np.testing.assert_array_equal(got, want)


def test_culled_input_layer_ships_only_the_values_it_reads() -> None:
    read = layers.InputLayer("read", str.upper, [f"part-{i}" for i in range(100)])
    packed = hlg.unpack(hlg.pack(HighLevelGraph({"read": read}), [("read", 7), ("read", 42)]))
    assert len(packed.blobs) == 3  # the template and the two values still read
    assert hlg.get(packed, [("read", 7), ("read", 42)]) == ["PART-7", "PART-42"]
    contracted = layers.blockwise("-".join, "j", "", layers.BlockValues(["a", "b", "c"]), "i")
    packed = hlg.unpack(hlg.pack(HighLevelGraph({"j": contracted}), [("j",)]))
    assert hlg.get(packed, ("j",)) == "a-b-c"
