"""Tests for hlg._order: a complete, topological, deterministic order holding few results."""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
from typing import Any

import dask.order
import pytest
from _spec import Spec, SymbolicSpecLayer, closure, make_node
from dask._task_spec import DataNode as DData
from dask._task_spec import Task as DTask
from dask._task_spec import TaskRef as DRef
from hypothesis import given
from hypothesis import strategies as st

import hlg
from hlg import CycleError, DataNode, HighLevelGraph, MissingKeyError, Task, TaskRef


def first(*xs: Any) -> Any:
    return xs[0]


@st.composite
def dags(draw: st.DrawFn) -> Spec:
    n = draw(st.integers(1, 40))
    spec: Spec = {}
    keys: list[Any] = []
    for i in range(n):
        key = ("n", i)
        deps: tuple[Any, ...] = ()
        if keys:
            deps = tuple(draw(st.lists(st.sampled_from(keys), max_size=4, unique=True)))
        spec[key] = (i, deps, "task" if deps else "data")
        keys.append(key)
    return spec


def sinks(spec: Spec) -> list[Any]:
    read = {d for _, deps, _ in spec.values() for d in deps}
    return [k for k in spec if k not in read]


def peak_held(
    deps: dict[Any, tuple[Any, ...]], priority: dict[Any, int], outputs: list[Any]
) -> int:
    """Results alive at once when tasks run one by one in ``priority`` order."""
    readers = dict.fromkeys(deps, 0)
    for ds in deps.values():
        for d in ds:
            readers[d] += 1
    keep = set(outputs)
    held = peak = 0
    for key in sorted(priority, key=priority.__getitem__):
        held += 1
        peak = max(peak, held)
        for d in deps[key]:
            readers[d] -= 1
            if readers[d] == 0 and d not in keep:
                held -= 1
    return peak


@given(dags(), st.data())
def test_order_is_complete_and_topological(spec: Spec, data: st.DataObject) -> None:
    graph = {k: make_node(k, v) for k, v in spec.items()}
    keys = data.draw(st.lists(st.sampled_from(list(spec)), min_size=1, max_size=3))
    prio = hlg.order(graph, keys)
    assert set(prio) == closure(spec, keys)
    assert sorted(prio.values()) == list(range(len(prio)))
    for key in prio:
        for dep in spec[key][1]:
            assert prio[dep] < prio[key]
    layer = SymbolicSpecLayer("n", spec)
    assert hlg.order(HighLevelGraph({"n": layer}), keys) == prio
    assert not layer.builds  # symbolic dependencies: no task built


def tree_spec(n: int, split: int) -> tuple[Spec, Any]:
    spec: Spec = {("x", i): (i, (), "data") for i in range(n)}
    level = list(spec)
    depth = 0
    while len(level) > 1:
        depth += 1
        nxt = []
        for j in range(0, len(level), split):
            key = (f"r{depth}", j // split)
            spec[key] = (j, tuple(level[j : j + split]), "task")
            nxt.append(key)
        level = nxt
    return spec, level[0]


def xxt_spec(n: int) -> tuple[Spec, Any]:
    """``(x + x.T).sum()`` on n x n blocks: add, per-block sum, then a 16-ary tree."""
    spec: Spec = {("x", i, j): (i * n + j, (), "data") for i in range(n) for j in range(n)}
    for i in range(n):
        for j in range(n):
            spec[("a", i, j)] = (0, (("x", i, j), ("x", j, i)), "task")
            spec[("s", i, j)] = (0, (("a", i, j),), "task")
    level = [("s", i, j) for i in range(n) for j in range(n)]
    depth = 0
    while len(level) > 1:
        depth += 1
        nxt = []
        for j in range(0, len(level), 16):
            key = (f"sum{depth}", j // 16)
            spec[key] = (0, tuple(level[j : j + 16]), "task")
            nxt.append(key)
        level = nxt
    return spec, level[0]


def random_spec(n: int, seed: int) -> Spec:
    rnd = random.Random(seed)
    spec: Spec = {}
    keys: list[Any] = []
    for i in range(n):
        key = ("n", i)
        if i < 5 or rnd.random() < 0.05:
            spec[key] = (i, (), "data")
        else:
            window = keys[max(0, i - 30) :]
            deps = tuple(dict.fromkeys(rnd.choice(window) for _ in range(rnd.randint(1, 4))))
            spec[key] = (i, deps, "task")
        keys.append(key)
    return spec


def dask_priorities(spec: Spec) -> dict[Any, int]:
    graph = {
        k: DData(k, tag) if not deps else DTask(k, first, *[DRef(d) for d in deps])
        for k, (tag, deps, _) in spec.items()
    }
    return {k: getattr(v, "priority", v) for k, v in dask.order.order(graph).items()}


def shuffle_spec(n: int) -> tuple[Spec, list[Any]]:
    from hlg import MaterializedLayer, layers

    inp = MaterializedLayer({("inp", i): DataNode(("inp", i), i) for i in range(n)}, "inp")
    out = layers.Shuffle("out", "inp", n, n, lambda p, k, s: [p] * k, lambda ps: ps, 8)
    spec: Spec = {}
    for layer in (inp, out):
        for key in layer:
            deps = layer.dependency_tuple(key)
            spec[key] = (0, deps, "task" if deps else "data")
    return spec, [("out", q) for q in range(n)]


@pytest.mark.parametrize(
    "shape",
    ["tree-10000/8", "xxt-40", "random-3000-1", "random-3000-2", "random-3000-3", "shuffle-200"],
)
def test_holds_no_more_results_than_dask_order(shape: str) -> None:
    if shape.startswith("tree"):
        spec, out = tree_spec(10_000, 8)
        outputs = [out]
    elif shape.startswith("xxt"):
        spec, out = xxt_spec(40)
        outputs = [out]
    elif shape.startswith("shuffle"):
        spec, outputs = shuffle_spec(200)
    else:
        _, n, seed = shape.split("-")
        spec = random_spec(int(n), int(seed))
        outputs = sinks(spec)
    graph = {k: make_node(k, v) for k, v in spec.items()}
    ours = hlg.order(graph, outputs)
    deps = {k: tuple(dict.fromkeys(v[1])) for k, v in spec.items()}
    assert peak_held(deps, ours, outputs) <= peak_held(deps, dask_priorities(spec), outputs)


def test_tree_reduction_holds_one_branch_per_level() -> None:
    spec, out = tree_spec(4096, 8)
    graph = {k: make_node(k, v) for k, v in spec.items()}
    deps = {k: v[1] for k, v in spec.items()}
    # depth-first: at most split results per level of the 4-level tree, plus the one running
    assert peak_held(deps, hlg.order(graph, out), [out]) <= 8 * 4 + 1


def test_finish_what_you_started() -> None:
    # y0 = x0 + x1 and y1 = x1 + x0: once x0 and x1 exist, both adds run before x2
    g = {
        "x0": DataNode("x0", 0),
        "x1": DataNode("x1", 1),
        "x2": DataNode("x2", 2),
        "y0": Task("y0", first, TaskRef("x0"), TaskRef("x1")),
        "y1": Task("y1", first, TaskRef("x1"), TaskRef("x0")),
        "z": Task("z", first, TaskRef("y0"), TaskRef("x2"), TaskRef("y1")),
    }
    assert list(hlg.order(g, "z")) == ["x0", "x1", "y0", "y1", "x2", "z"]


def test_errors_name_keys() -> None:
    with pytest.raises(CycleError, match=r"the graph has a cycle: 'a' -> 'b' -> 'a'"):
        hlg.order({"a": Task("a", first, TaskRef("b")), "b": Task("b", first, TaskRef("a"))}, "a")
    with pytest.raises(MissingKeyError, match=r"key 'x' is not in the graph \(needed by 'y'\)"):
        hlg.order({"y": Task("y", first, TaskRef("x"))}, "y")


def test_chain_of_10000_without_recursion() -> None:
    g: dict[Any, Any] = {("c", 0): DataNode(("c", 0), 0)}
    for i in range(1, 10_000):
        g[("c", i)] = Task(("c", i), first, TaskRef(("c", i - 1)))
    prio = hlg.order(g, ("c", 9999))
    assert [prio[("c", i)] for i in range(10_000)] == list(range(10_000))


def test_order_of_packed_graph_matches() -> None:
    spec = random_spec(300, 7)
    graph = {k: make_node(k, v) for k, v in spec.items()}
    outputs = sinks(spec)
    packed = hlg.unpack(hlg.pack(graph, outputs))
    assert hlg.order(packed, outputs) == hlg.order(graph, outputs)


_SEED_SCRIPT = """
import json, random
import hlg
from hlg import DataNode, Task, TaskRef
rnd = random.Random(3)
g, keys = {}, []
for i in range(500):
    key = ("n", i) if i % 2 else f"s{i}"
    deps = list(dict.fromkeys(rnd.choice(keys) for _ in range(rnd.randint(0, 3)))) if keys else []
    g[key] = Task(key, max, 0, *map(TaskRef, deps)) if deps else DataNode(key, i)
    keys.append(key)
read = {d for node in g.values() for d in node.dependencies}
prio = hlg.order(g, [k for k in keys if k not in read])
print(json.dumps([[k if isinstance(k, str) else list(k), v] for k, v in prio.items()]))
"""


def test_identical_across_hash_seeds() -> None:
    script = _SEED_SCRIPT
    outs = []
    for seed in ("0", "1", "12345"):
        env = {**os.environ, "PYTHONHASHSEED": seed}
        done = subprocess.run(
            [sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=60
        )
        assert done.returncode == 0, done.stderr
        outs.append(json.loads(done.stdout))
    assert outs[0] == outs[1] == outs[2]
