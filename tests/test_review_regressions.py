"""Regression tests for problems found in review: each pins the behaviour now promised."""

from __future__ import annotations

import subprocess
import sys
from collections import OrderedDict, defaultdict, deque
from operator import add
from typing import Any

import pytest

import hlg
from hlg import (
    ArgSpec,
    DataNode,
    HighLevelGraph,
    MaterializedLayer,
    Placeholder,
    Task,
    TaskRef,
    layers,
)


def append_99(x: list[int]) -> int:
    x.append(99)
    return len(x)


def test_data_blobs_are_not_shared_between_computations() -> None:
    data = hlg.pack({"x": DataNode("x", [1, 2]), "y": Task("y", append_99, TaskRef("x"))}, "y")
    assert [hlg.get(hlg.unpack(data), "y") for _ in range(3)] == [3, 3, 3]


def test_packed_literals_stay_literal() -> None:
    g = {"x": DataNode("x", [TaskRef("a")]), "t": DataNode("t", Task(None, len, "abc"))}
    packed = hlg.unpack(hlg.pack(g))
    assert hlg.get(packed, ["x", "t"]) == hlg.get(g, ["x", "t"])
    assert packed["x"].unpack(packed.blobs) == DataNode("x", [TaskRef("a")])


def test_nested_call_without_holes_runs() -> None:
    assert ArgSpec(add, ArgSpec(int, "5"), Placeholder(0)).fill("k", [1])({}) == 6
    z = layers.blockwise(lambda: 5, "z", "")
    w = layers.blockwise(add, "w", "", "z", "", 1, None, numblocks={"z": ()})
    g = HighLevelGraph({"z": z, "w": w}, {"w": ["z"]})
    assert hlg.get(layers.fuse_blockwise(g, [("w",)]), ("w",)) == hlg.get(g, ("w",)) == 6


def test_materialized_layers_with_other_tasks_get_other_names() -> None:
    a = MaterializedLayer({"x": DataNode("x", 1)})
    b = MaterializedLayer({"x": DataNode("x", 2)})
    assert a.name != b.name
    # other names, but one key with two different tasks: refused, never "first one wins"
    with pytest.raises(hlg.LayerCollisionError, match="both produce key 'x'"):
        HighLevelGraph.merge(HighLevelGraph({a.name: a}), HighLevelGraph({b.name: b}))


def test_tuple_annotations_survive_packing() -> None:
    layer = MaterializedLayer(
        {"x": DataNode("x", 1)}, name="L", annotations={"resources": ("GPU", 1)}
    )
    packed = hlg.unpack(hlg.pack(HighLevelGraph({"L": layer})))
    assert packed.layers["L"].annotations == layer.annotations


def test_fuse_linear_reads_the_key_the_graph_reads() -> None:
    a = MaterializedLayer({"x": DataNode("x", 1)}, name="A")
    b = MaterializedLayer({"x": DataNode("x", 2)}, name="B")
    c = MaterializedLayer({"y": Task("y", add, TaskRef("x"), 0)}, name="C")
    # Two layers holding "x" with different tasks: which one "y" reads was a guess; such
    # a graph is refused when it is built.
    with pytest.raises(hlg.LayerCollisionError, match="layers 'A' and 'B' both produce key 'x'"):
        HighLevelGraph({"A": a, "B": b, "C": c}, {"C": ["A"]})
    same = MaterializedLayer({"x": DataNode("x", 1)}, name="B")  # equal tasks: no collision
    g = HighLevelGraph({"A": a, "B": same, "C": c}, {"C": ["A"]})
    assert hlg.get(hlg.fuse_linear(g, ["y"]), "y") == hlg.get(g, "y") == 1


@pytest.mark.parametrize("container", [OrderedDict, deque, lambda x: type("L", (list,), {})(x)])
def test_references_in_containers_that_are_not_rebuilt_are_refused(container: Any) -> None:
    value = container({"a": TaskRef("x")} if container is OrderedDict else [TaskRef("x")])
    with pytest.raises(TypeError, match="would reach the function unresolved"):
        Task("y", list, value)


SCRIPT = """
import hashlib, hlg
from operator import add
from hlg import DataNode, HighLevelGraph, MaterializedLayer, Task, TaskRef
a = MaterializedLayer({("a", i): DataNode(("a", i), i) for i in range(20)}, name="a")
b = MaterializedLayer({"b": Task("b", sum, [TaskRef(("a", i)) for i in range(0, 20, 2)])}, name="b")
g = HighLevelGraph({"a": a, "b": b}, {"b": ["a"]})
culled = g.cull(["b"])
print(list(culled), hashlib.md5(hlg.pack(g, "b")).hexdigest())
"""


def test_cull_and_pack_do_not_depend_on_the_hash_seed() -> None:
    outputs = {
        subprocess.run(
            [sys.executable, "-c", SCRIPT],
            env={"PYTHONHASHSEED": seed, "PATH": ""},
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        for seed in ("1", "2", "3")
    }
    assert len(outputs) == 1, outputs


def test_tokens_of_builtin_methods_and_containers() -> None:
    assert hlg.normalize_token("abc".upper) == ("method", ("str", "abc"), "upper")
    assert hlg.tokenize(deque([1])) != hlg.tokenize(deque([2]))
    assert hlg.tokenize(defaultdict(list)) != hlg.tokenize(defaultdict(int))


def test_cull_names_an_undeclared_layer_dependency() -> None:
    a = MaterializedLayer({"a": Task("a", abs, TaskRef("b"))}, name="A")
    b = MaterializedLayer({"b": DataNode("b", -1)}, name="B")
    g = HighLevelGraph({"A": a, "B": b}, {"A": [], "B": []})
    with pytest.raises(ValueError, match=r"layers \['B'\] hold keys that other layers read"):
        g.cull(["a"])


def test_packed_graph_cull_takes_one_key() -> None:
    packed = hlg.unpack(hlg.pack({("x", 0): DataNode(("x", 0), 1), "y": DataNode("y", 2)}))
    assert list(packed.cull(("x", 0))) == [("x", 0)]


def test_blockwise_output_blocks_and_new_axes_lists() -> None:
    spec = ArgSpec(abs, Placeholder(0))
    with pytest.raises(ValueError, match=r"output block \(99,\) is not a block of shape \(3,\)"):
        layers.Blockwise("z", "i", spec, [("x", "i")], {"x": (3,)}, output_blocks=[(99,)])
    z = layers.blockwise(lambda: 1, "z", "i", new_axes={"i": [2, 2]})
    assert z.shape == (2,)


def test_pack_failures_name_the_layer() -> None:
    import threading

    with pytest.raises(ValueError, match=r"cannot pack layer .* TypeError: cannot pickle"):
        hlg.pack({"x": Task("x", print, threading.Lock())})
    big = ("x", 2**70)
    with pytest.raises(ValueError, match=r"cannot pack layer .*OverflowError"):
        hlg.pack({big: DataNode(big, 1)})
