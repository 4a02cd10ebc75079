"""Tests for hlg._graph (HighLevelGraph), culling, layers in graphs and annotations.

Values are checked against a plain-Python oracle that evaluates the graph's spec
(tag, dependencies, node kind) recursively without using hlg at all.
"""

from __future__ import annotations

import json
import os
import pickle
import re
import shutil
import subprocess
import sys
import textwrap
from collections import Counter
from collections.abc import Callable, Iterator
from operator import add
from pathlib import Path
from typing import Any

import pytest
from _spec import Spec, SpecLayer, SymbolicSpecLayer, closure, combine, make_node, oracle
from hypothesis import given
from hypothesis import strategies as st

import hlg
from hlg import (
    Alias,
    Annotations,
    CulledLayer,
    CycleError,
    DataNode,
    HighLevelGraph,
    Layer,
    MaterializedLayer,
    MissingKeyError,
    Task,
    TaskRef,
    get,
    key_prefix,
)

ROOT = Path(__file__).resolve().parents[1]

# -- layers that count what they build ------------------------------------------------------


class RangeLayer(Layer):
    """Keys ``(prefix, i)``, i < n, answered arithmetically; counts builds and key queries."""

    kind = "range"

    def __init__(
        self,
        name: str,
        n: int,
        deps: Callable[[int], tuple[Any, ...]] = lambda i: (),
        prefix: str | None = None,
        annotations: Any = None,
    ) -> None:
        super().__init__(name, annotations)
        self.n = n
        self.deps_of = deps
        self.prefix = name if prefix is None else prefix
        self.builds: Counter[Any] = Counter()
        self.iterations = 0
        self.asked: set[Any] = set()  # keys of ours that membership/dependency calls named

    def _index(self, key: object) -> int | None:
        if (
            type(key) is tuple
            and len(key) == 2
            and key[0] == self.prefix
            and type(key[1]) is int
            and 0 <= key[1] < self.n
        ):
            return key[1]
        return None

    def __iter__(self) -> Iterator[Any]:
        self.iterations += 1
        return ((self.prefix, i) for i in range(self.n))

    def __len__(self) -> int:
        return self.n

    def __contains__(self, key: object) -> bool:
        found = self._index(key) is not None
        if found:
            self.asked.add(key)
        return found

    def dependency_tuple(self, key: Any) -> tuple[Any, ...]:
        i = self._index(key)
        if i is None:
            raise KeyError(key)
        self.asked.add(key)
        return tuple(self.deps_of(i))

    def dependencies(self, key: Any) -> frozenset[Any]:
        return frozenset(self.dependency_tuple(key))

    @property
    def prefixes(self) -> frozenset[str]:
        return frozenset({self.prefix})

    def __getitem__(self, key: Any) -> Task:
        i = self._index(key)
        if i is None:
            raise KeyError(key)
        self.builds[key] += 1
        return Task(key, combine, i, *[TaskRef(d) for d in self.deps_of(i)])


class TouchCountingMaterialized(MaterializedLayer):
    """A MaterializedLayer recording every per-key access that goes through its methods."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.iterations = 0
        self.touched: set[Any] = set()

    def __iter__(self) -> Iterator[Any]:
        self.iterations += 1
        return super().__iter__()

    def __contains__(self, key: object) -> bool:
        self.touched.add(key)
        return super().__contains__(key)

    def dependency_tuple(self, key: Any) -> tuple[Any, ...]:
        self.touched.add(key)
        return super().dependency_tuple(key)

    def __getitem__(self, key: Any) -> Any:
        self.touched.add(key)
        return super().__getitem__(key)


# -- random layered graphs ------------------------------------------------------------------

PREFIXES = ["p", "q", "shared", "x-y"]
ANNOTATION_CHOICES: list[dict[str, Any]] = [
    {},
    {"retries": 1},
    {"retries": 2},
    {"priority": 1, "resources": {"GPU": 1}},
]


class Drawn:
    """A generated graph with its spec, per-layer keys and the layers that count builds."""

    def __init__(self, graph: HighLevelGraph, spec: Spec, layer_keys: dict[str, list[Any]]) -> None:
        self.graph = graph
        self.spec = spec
        self.layer_keys = layer_keys

    def lazy(self, cls: type = SymbolicSpecLayer) -> list[Any]:
        return [lay for lay in self.graph.layers.values() if type(lay) is cls]

    def reset(self) -> None:
        for lay in self.graph.layers.values():
            if isinstance(lay, SpecLayer):
                lay.builds.clear()


@st.composite
def layered_graphs(draw: st.DrawFn) -> Drawn:
    n_layers = draw(st.integers(1, 5))
    spec: Spec = {}
    layer_keys: dict[str, list[Any]] = {}
    owner: dict[Any, str] = {}
    counter = 0
    names = [f"layer{i}" for i in range(n_layers)]
    for name in names:
        keys: list[Any] = []
        for _ in range(draw(st.integers(1, 6))):
            counter += 1
            form = draw(st.sampled_from(["tuple", "tuple3", "str"]))
            prefix = draw(st.sampled_from(PREFIXES))
            if form == "str":
                key: Any = f"{prefix}-{counter}"
            elif form == "tuple":
                key = (prefix, counter)
            else:
                key = (prefix, counter, draw(st.sampled_from([0.5, "s", -3])))
            candidates = [k for ks in layer_keys.values() for k in ks] + keys
            deps: list[Any] = []
            if candidates:
                deps = draw(st.lists(st.sampled_from(candidates), max_size=3, unique=True))
            kind = draw(st.sampled_from(["task", "nested", "alias"])) if deps else "data"
            if kind == "alias":
                deps = deps[:1]
            spec[key] = (counter, tuple(deps), kind)
            keys.append(key)
            owner[key] = name
        layer_keys[name] = keys
    layers: dict[str, Layer] = {}
    layer_deps: dict[str, set[str]] = {}
    for i, name in enumerate(names):
        sub = {k: spec[k] for k in layer_keys[name]}
        notes = draw(st.sampled_from(ANNOTATION_CHOICES))
        flavour = draw(st.sampled_from(["mat", "mat", "symbolic", "default"]))
        if flavour == "mat":
            layer: Layer = MaterializedLayer(
                {k: make_node(k, e) for k, e in sub.items()}, name=name, annotations=notes
            )
        elif flavour == "symbolic":
            layer = SymbolicSpecLayer(name, sub, annotations=notes)
        else:
            layer = SpecLayer(name, sub, annotations=notes)
        layers[name] = layer
        needed = {owner[d] for k in sub for d in sub[k][1]} - {name}
        extra = set(draw(st.lists(st.sampled_from(names[:i]), max_size=2))) if i else set()
        layer_deps[name] = needed | extra
    order = draw(st.permutations(names))  # insertion order must not matter
    graph = HighLevelGraph({n: layers[n] for n in order}, {n: sorted(layer_deps[n]) for n in order})
    return Drawn(graph, spec, layer_keys)


@st.composite
def graphs_and_keys(draw: st.DrawFn) -> tuple[Drawn, list[Any]]:
    drawn = draw(layered_graphs())
    keys = draw(
        st.lists(st.sampled_from(sorted(drawn.spec, key=repr)), min_size=1, max_size=4, unique=True)
    )
    return drawn, keys


def check_mapping(graph: HighLevelGraph) -> None:
    """len, in and iteration agree with to_dict(); no key is listed twice."""
    as_dict = graph.to_dict()
    listed = list(graph)
    assert len(listed) == len(set(listed)), "iteration lists a key twice"
    assert set(listed) == set(as_dict)
    assert len(graph) == len(as_dict)
    for key, node in as_dict.items():
        assert key in graph
        assert node.key == key
        assert graph[key] == node
    merged: dict[Any, Any] = {}
    for layer in graph.layers.values():
        mat = layer.materialize()
        assert set(mat) == set(layer)
        assert len(mat) == len(layer)
        merged.update(mat)
    assert merged == as_dict


# -- property tests -----------------------------------------------------------------------


@given(graphs_and_keys())
def test_cull_then_get_matches_full_graph_and_oracle(case: tuple[Drawn, list[Any]]) -> None:
    drawn, keys = case
    graph, spec = drawn.graph, drawn.spec
    graph.validate()
    expected = oracle(spec, keys)
    assert get(graph, keys) == expected

    drawn.reset()
    culled = graph.cull(keys)
    for layer in drawn.lazy(SymbolicSpecLayer):
        assert not layer.builds, f"cull built tasks of symbolic layer {layer.name}"
    needed = closure(spec, keys)
    assert set(culled) == needed
    assert len(culled) == len(needed)
    culled.validate()

    drawn.reset()
    assert get(culled, keys) == expected
    # Running the culled graph builds exactly the needed tasks of lazy layers, each once.
    for layer in drawn.lazy(SymbolicSpecLayer) + drawn.lazy(SpecLayer):
        wanted = needed & set(layer.spec)
        if isinstance(layer, SymbolicSpecLayer):
            assert dict(layer.builds) == dict.fromkeys(wanted, 1)
        else:
            assert set(layer.builds) <= wanted

    every_kept = sorted(needed, key=repr)
    assert get(culled, every_kept) == get(graph, every_kept) == oracle(spec, every_kept)

    for key in culled:
        new_layer = culled.layer_of(key)
        old_layer = graph.layer_of(key)
        assert new_layer.annotations == old_layer.annotations
        assert dict(new_layer.annotations) == dict(old_layer.annotations)
        assert key_prefix(key) in new_layer.prefixes
        assert new_layer.name in culled.layers
        if len(new_layer) < len(old_layer):
            assert new_layer.name != old_layer.name  # a smaller layer has a new name
        else:
            assert new_layer is old_layer
    check_mapping(graph)
    check_mapping(culled)


@given(graphs_and_keys(), st.data())
def test_culled_names_are_deterministic_and_distinct(
    case: tuple[Drawn, list[Any]], data: st.DataObject
) -> None:
    drawn, keys = case
    graph = drawn.graph
    first = graph.cull(keys)
    again = graph.cull(list(reversed(keys)) + keys[:1])
    assert list(first.layers) == list(again.layers)
    assert first.dependencies == again.dependencies
    assert list(first.cull(keys).layers) == list(first.layers)  # culling again: no change

    other_keys = data.draw(
        st.lists(st.sampled_from(sorted(drawn.spec, key=repr)), min_size=1, max_size=4)
    )
    second = graph.cull(other_keys)

    def kept_by_origin(g: HighLevelGraph) -> dict[str, tuple[str, frozenset[Any]]]:
        out = {}
        for name, layer in g.layers.items():
            origin = graph.layer_of(next(iter(layer))).name
            out[origin] = (name, frozenset(layer))
        return out

    a, b = kept_by_origin(first), kept_by_origin(second)
    for origin in set(a) & set(b):
        (name_a, kept_a), (name_b, kept_b) = a[origin], b[origin]
        assert (name_a == name_b) == (kept_a == kept_b)

    merged = HighLevelGraph.merge(first, second)
    both = keys + [k for k in other_keys if k not in keys]
    assert get(merged, both) == oracle(drawn.spec, both)
    assert set(merged) == closure(drawn.spec, both)
    # (listing shared keys once and validate() of merged graphs: see the example tests below)


@given(graphs_and_keys())
def test_mapping_protocol_and_inferred_dependencies(case: tuple[Drawn, list[Any]]) -> None:
    drawn, _ = case
    graph = drawn.graph
    check_mapping(graph)
    assert len(graph) == len(drawn.spec)
    assert set(graph) == set(drawn.spec)
    # Layers come out in topological order: each key after the keys it reads in other layers.
    position = {name: i for i, name in enumerate(graph.topological_layers())}
    for name, deps in graph.dependencies.items():
        for dep in deps:
            assert position[dep] < position[name]
    for key in drawn.spec:
        assert graph.key_dependencies(key) == frozenset(drawn.spec[key][1])
    for missing in [("p", -1), "nope", ("shared", 10**6), ("x-y", 1, 2.5)]:
        assert missing not in graph
        with pytest.raises(KeyError):
            graph[missing]
    for not_a_key in [1, None, ["p", 1], ("p", True), (), {"p": 1}]:
        assert not_a_key not in graph
    # Layer dependencies inferred from the keys: exactly the layers the keys read.
    drawn.reset()
    inferred = HighLevelGraph(graph.layers)
    inferred.validate()
    for name in graph.layers:
        assert inferred.dependencies[name] <= graph.dependencies[name]
        reads = {
            graph.layer_of(d).name for k in drawn.layer_keys[name] for d in drawn.spec[k][1]
        } - {name}
        assert inferred.dependencies[name] == reads
    for layer in drawn.lazy(SymbolicSpecLayer):
        assert not layer.builds


# -- laziness ----------------------------------------------------------------------------


def test_lazy_access_builds_no_task() -> None:
    x = RangeLayer("x-layer", 50, prefix="x")
    y = RangeLayer("y-layer", 50, deps=lambda i: (("x", i), ("x", (i + 1) % 50)), prefix="y")
    g = HighLevelGraph({"y-layer": y, "x-layer": x}, {"y-layer": ["x-layer"]})
    assert len(g) == 100
    assert ("y", 3) in g and ("x", 49) in g
    assert ("y", 50) not in g and ("z", 0) not in g and "y" not in g
    assert sorted(g) == sorted([("x", i) for i in range(50)] + [("y", i) for i in range(50)])
    assert "y-layer" in g.describe()
    assert "y-layer" in g._repr_html_()
    assert "y-layer" in g.to_dot()
    assert "100" in repr(g)
    assert g.key_dependencies(("y", 49)) == {("x", 49), ("x", 0)}
    g.validate()
    HighLevelGraph(g.layers).validate()  # dependency inference
    assert not x.builds and not y.builds

    x.iterations = y.iterations = 0
    culled = g.cull([("y", 7), ("y", 8)])
    assert not x.builds and not y.builds
    assert x.iterations == y.iterations == 0
    assert x.asked | y.asked >= {("y", 7), ("y", 8), ("x", 7), ("x", 8), ("x", 9)}
    assert sorted(culled) == [("x", 7), ("x", 8), ("x", 9), ("y", 7), ("y", 8)]
    small_y = culled.layer_of(("y", 7))
    assert isinstance(small_y, CulledLayer)
    assert small_y.name.startswith("y-layer-cull-") and small_y.prefixes == {"y"}
    assert ("y", 9) not in culled and ("y", 8) in culled

    x.iterations = y.iterations = 0
    assert g[("y", 4)].key == ("y", 4)
    assert dict(y.builds) == {("y", 4): 1} and not x.builds
    y.builds.clear()
    assert get(culled, ("y", 7)) == combine(7, combine(7), combine(8))
    assert dict(y.builds) == {("y", 7): 1}
    assert dict(x.builds) == {("x", 7): 1, ("x", 8): 1}
    assert x.iterations == y.iterations == 0

    x.builds.clear()
    y.builds.clear()
    assert get(g, [("y", 1), ("y", 2)]) == [
        combine(1, combine(1), combine(2)),
        combine(2, combine(2), combine(3)),
    ]
    assert dict(x.builds) == {("x", 1): 1, ("x", 2): 1, ("x", 3): 1}
    assert dict(y.builds) == {("y", 1): 1, ("y", 2): 1}

    x.builds.clear()
    assert len(g.to_dict()) == 100
    assert dict(x.builds) == {("x", i): 1 for i in range(50)}


def test_default_layer_methods_iterate_but_build_only_when_asked_for_dependencies() -> None:
    spec: Spec = {("a", i): (i, (), "data") for i in range(5)}
    spec["b"] = (9, (("a", 1), ("a", 3)), "task")
    lay = SpecLayer("lay", spec)
    g = HighLevelGraph({"lay": lay}, {})
    assert len(g) == 6 and ("a", 4) in g and "b" in g and ("a", 5) not in g
    assert set(g) == set(spec)
    assert "lay" in g.describe()
    assert not lay.builds
    assert get(g, "b") == oracle(spec, ["b"])[0]
    assert dict(lay.builds) == {"b": 1, ("a", 1): 1, ("a", 3): 1}


def test_cull_of_200k_task_graph_touches_only_kept_keys() -> None:
    n = 200_000
    x = TouchCountingMaterialized(
        {("x", i): DataNode(("x", i), i) for i in range(n)}, name="x-data"
    )
    y = RangeLayer("y-layer", n, deps=lambda i: (("x", i), ("x", (i + 1) % n)), prefix="y")
    z = RangeLayer("z-layer", n, deps=lambda i: (("y", i),), prefix="z")
    g = HighLevelGraph(
        {"x-data": x, "y-layer": y, "z-layer": z}, {"y-layer": ["x-data"], "z-layer": ["y-layer"]}
    )
    assert len(g) == 3 * n
    culled = g.cull([("z", n - 1)])
    kept = {("z", n - 1), ("y", n - 1), ("x", n - 1), ("x", 0)}
    assert set(culled) == kept
    assert x.iterations == y.iterations == z.iterations == 0
    assert not y.builds and not z.builds
    assert x.touched <= kept
    assert y.asked <= kept and z.asked <= kept
    assert {type(lay) for lay in culled.layers.values()} == {MaterializedLayer, CulledLayer}
    assert get(culled, ("z", n - 1)) == combine(n - 1, combine(n - 1, n - 1, 0))
    assert dict(y.builds) == {("y", n - 1): 1} and dict(z.builds) == {("z", n - 1): 1}
    assert x.iterations == y.iterations == z.iterations == 0


# -- culling names ------------------------------------------------------------------------


def chain_graph() -> HighLevelGraph:
    a = MaterializedLayer({("a", i): DataNode(("a", i), i) for i in range(4)}, name="a")
    b = MaterializedLayer(
        {("b", i): Task(("b", i), add, TaskRef(("a", i)), TaskRef(("a", i + 1))) for i in range(3)},
        name="b",
    )
    return HighLevelGraph({"a": a, "b": b}, {"b": ["a"]})


def test_culled_layers_get_new_deterministic_names() -> None:
    g = chain_graph()
    one = g.cull([("b", 0)])
    assert set(one.layers).isdisjoint({"a", "b"})
    assert list(one.layers) == list(g.cull([("b", 0)]).layers)
    assert [key_prefix(k) for k in one] == ["a", "a", "b"]
    other = g.cull([("b", 1)])
    assert set(one.layers).isdisjoint(other.layers)
    assert list(g.cull([("b", 0), ("b", 1), ("b", 2)]).layers) == ["a", "b"]  # kept whole
    assert list(g.cull([("b", 1), ("b", 0)]).layers) == list(g.cull([("b", 0), ("b", 1)]).layers)


def test_merging_differently_culled_graphs_keeps_both() -> None:
    g = chain_graph()
    one, other = g.cull([("b", 0)]), g.cull([("b", 1)])
    merged = HighLevelGraph.merge(one, other)
    assert len(merged.layers) == 4
    assert get(merged, [("b", 0), ("b", 1)]) == [1, 3]
    assert get(merged, ("b", 1)) == 3
    assert merged.cull([("b", 1)]).to_dict() == g.cull([("b", 1)]).to_dict()
    assert merged.cull([("b", 0), ("b", 1)]).to_dict() == g.cull([("b", 0), ("b", 1)]).to_dict()


def test_merged_graph_lists_a_shared_key_once() -> None:
    g = chain_graph()
    # Both culled copies of layer "a" hold ("a", 1): the mapping must still list it once.
    merged = HighLevelGraph.merge(g.cull([("b", 0)]), g.cull([("b", 1)]))
    assert sorted(merged) == [("a", 0), ("a", 1), ("a", 2), ("b", 0), ("b", 1)]
    assert len(merged) == len(merged.to_dict()) == 5


def test_validate_accepts_merged_graphs_that_share_keys() -> None:
    g = chain_graph()
    # Key ("a", 1) is held by two layers; each reader declares the one it was built on.
    HighLevelGraph.merge(g.cull([("b", 0)]), g.cull([("b", 1)])).validate()
    HighLevelGraph.merge(g.cull([("b", 0)]), g).validate()


BUILD_SRC = textwrap.dedent(
    """
    import json
    from operator import add
    from hlg import DataNode, HighLevelGraph, MaterializedLayer, Task, TaskRef, optimize

    a = MaterializedLayer(
        {**{("a", i, "s"): DataNode(("a", i, "s"), i) for i in range(6)},
         **{f"str-{i}": DataNode(f"str-{i}", i) for i in range(6)}},
        name="a-layer",
    )
    b = MaterializedLayer(
        {("b", i): Task(("b", i), add, TaskRef(("a", i, "s")), TaskRef(f"str-{i}"))
         for i in range(6)},
        name="b-layer",
    )
    g = HighLevelGraph({"a-layer": a, "b-layer": b}, {"b-layer": ["a-layer"]})
    keys = set([("b", 1), ("b", 4), "str-5"])  # set order depends on the hash seed
    names = {
        "cull": list(g.cull(keys).layers),
        "optimize": sorted(optimize(g, sorted(keys, key=repr)).layers),
    }
    """
)


def test_culled_names_do_not_depend_on_hash_seed() -> None:
    namespace: dict[str, Any] = {}
    exec(BUILD_SRC, namespace)
    here = namespace["names"]
    assert all(name.startswith(("a-layer-", "b-layer-")) for name in here["cull"])
    for seed in ("1", "12345"):
        env = {**os.environ, "PYTHONHASHSEED": seed}
        out = subprocess.run(
            [sys.executable, "-c", BUILD_SRC + "\nprint(json.dumps(names))"],
            capture_output=True,
            text=True,
            env=env,
            cwd=ROOT,
            check=True,
        )
        assert json.loads(out.stdout) == here


# -- validate -----------------------------------------------------------------------------


def test_validate_names_missing_keys() -> None:
    a = MaterializedLayer({"a": DataNode("a", 1)}, name="a")
    b = MaterializedLayer({("b", 0): Task(("b", 0), add, TaskRef("a"), TaskRef("gone"))}, name="b")
    g = HighLevelGraph({"a": a, "b": b}, {"b": ["a"]})
    with pytest.raises(MissingKeyError) as info:
        g.validate()
    assert str(info.value) == "key 'gone' is not in the graph (needed by ('b', 0))"
    with pytest.raises(MissingKeyError) as info:
        g.cull([("b", 0)])
    assert info.value.key == "gone"
    with pytest.raises(
        MissingKeyError, match=r"key 'nope' is not in the graph \(it was requested\)"
    ):
        g.cull(["nope"])


def test_validate_names_cycles_inside_a_layer() -> None:
    tasks = {
        "a": DataNode("a", 1),
        "b": Task("b", add, TaskRef("a"), TaskRef("d")),
        "c": Task("c", abs, TaskRef("b")),
        "d": Alias("d", "c"),
    }
    g = HighLevelGraph({"m": MaterializedLayer(tasks, name="m")})
    with pytest.raises(CycleError) as info:
        g.validate()
    assert str(info.value) == "the graph has a cycle: 'b' -> 'd' -> 'c' -> 'b'"
    assert info.value.cycle == ["b", "d", "c"]


def test_validate_names_a_task_reading_itself() -> None:
    g = HighLevelGraph({"m": MaterializedLayer({"a": Task("a", abs, TaskRef("a"))}, name="m")})
    with pytest.raises(CycleError, match=r"^the graph has a cycle: 'a' -> 'a'$"):
        g.validate()


def test_validate_names_cycles_between_layers() -> None:
    a = MaterializedLayer({"a": Task("a", abs, TaskRef("b"))}, name="A")
    b = MaterializedLayer({"b": Task("b", abs, TaskRef("a"))}, name="B")
    g = HighLevelGraph({"A": a, "B": b}, {"A": ["B"], "B": ["A"]})
    with pytest.raises(CycleError) as info:
        g.validate()
    assert str(info.value) == "the graph has a cycle: 'A' -> 'B' -> 'A'"


def test_validate_rejects_undeclared_layer_dependency() -> None:
    a = MaterializedLayer({"a": DataNode("a", 1)}, name="A")
    c = MaterializedLayer({"c": DataNode("c", 2)}, name="C")
    b = MaterializedLayer({"b": Task("b", add, TaskRef("a"), TaskRef("c"))}, name="B")
    g = HighLevelGraph({"A": a, "B": b, "C": c}, {"B": ["A"]})
    with pytest.raises(ValueError) as info:
        g.validate()
    assert str(info.value) == (
        "key 'b' of layer 'B' reads 'c' of layer 'C', but 'B' does not depend on 'C'"
    )


def test_construction_rejects_bad_layer_names_and_dependencies() -> None:
    a = MaterializedLayer({"a": DataNode("a", 1)}, name="A")
    with pytest.raises(ValueError, match=r"^layer stored under 'X' is named 'A'$"):
        HighLevelGraph({"X": a})
    with pytest.raises(ValueError, match=r"^layer 'A' depends on 'Z', which is not a layer$"):
        HighLevelGraph({"A": a}, {"A": ["Z"]})
    with pytest.raises(ValueError, match=r"dependencies name layers that are not in the graph"):
        HighLevelGraph({"A": a}, {"A": [], "Q": []})
    with pytest.raises(TypeError, match=r"layer 'A' is a list, not an hlg\.Layer"):
        HighLevelGraph({"A": [DataNode("a", 1)]})  # type: ignore[dict-item]
    with pytest.raises(TypeError, match=r"convert dask-style graphs"):
        HighLevelGraph({"A": {"a": (abs, 1)}})  # a legacy tuple, not a node


def test_a_plain_mapping_layer_is_wrapped() -> None:
    """As in dask, a dict of nodes stands for a materialized layer of that name."""
    g = HighLevelGraph({"a": {"x": DataNode("x", 1)}, "b": {"y": Task("y", abs, TaskRef("x"))}})
    assert isinstance(g.layers["a"], MaterializedLayer) and g.layers["a"].name == "a"
    assert g.dependencies == {"a": frozenset(), "b": frozenset({"a"})}
    assert get(g, "y") == 1


def test_validate_reports_a_dependency_on_a_layer_that_is_not_there() -> None:
    # ``layers`` and ``dependencies`` are public dicts; validate() is the check to run after
    # editing them and must say what is wrong, not fail with a bare KeyError.
    g = chain_graph()
    g.dependencies["b"] = frozenset({"a", "zz"})
    with pytest.raises(ValueError, match="zz"):
        g.validate()


# -- describe, html, dot, visualize --------------------------------------------------------


def small_graph() -> HighLevelGraph:
    a = MaterializedLayer({("a", i): DataNode(("a", i), i) for i in range(3)}, name="a")
    b = RangeLayer(
        "b",
        1200,
        deps=lambda i: (("a", i % 3),),
        annotations={"retries": 2, "resources": {"GPU": 1}},
    )
    c = MaterializedLayer({"c": Task("c", add, TaskRef(("b", 0)), TaskRef(("a", 0)))}, name="c")
    return HighLevelGraph({"c": c, "b": b, "a": a}, {"c": ["b", "a"], "b": ["a"]})


def test_describe_exact_text() -> None:
    g = small_graph()
    assert g.describe() == (
        "layer  kind          tasks  dependencies  annotations\n"
        "a      materialized  3      -             -\n"
        "b      range         1,200  a             retries=2, resources={'GPU': 1}\n"
        "c      materialized  1      a, b          -"
    )
    assert not g.layers["b"].builds  # type: ignore[attr-defined]
    assert repr(g) == "<HighLevelGraph: 3 layers, 1,204 tasks>"


def test_repr_html_names_every_layer_escaped() -> None:
    g = small_graph()
    html = g._repr_html_()
    for name in g.layers:
        assert f"<td>{name}</td>" in html
    assert "1,200" in html and "3 layers" in html
    odd = MaterializedLayer({"k": DataNode("k", 1)}, name="<b>&")
    assert "<td>&lt;b&gt;&amp;</td>" in HighLevelGraph({"<b>&": odd})._repr_html_()


def test_to_dot_lists_layers_and_edges() -> None:
    dot = small_graph().to_dot()
    assert dot.startswith("digraph") and dot.rstrip().endswith("}")
    for edge in ('"a" -> "b";', '"a" -> "c";', '"b" -> "c";'):
        assert edge in dot
    assert dot.count("->") == 3
    for name in "abc":
        assert re.search(rf'^\s*"{name}" \[label="{name}\\n', dot, re.M)


def test_to_dot_quotes_odd_layer_names() -> None:
    odd = MaterializedLayer({"k": DataNode("k", 1)}, name='say "hi"\\')
    dot = HighLevelGraph({odd.name: odd}).to_dot()
    quoted = r'"(?:[^"\\]|\\.)*"'  # a DOT double-quoted string
    node_lines = [line.strip() for line in dot.splitlines() if "label=" in line]
    assert len(node_lines) == 1
    assert re.fullmatch(rf"{quoted} \[label={quoted}\];", node_lines[0]), node_lines[0]


def test_visualize_without_graphviz(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(shutil, "which", lambda *args, **kwargs: None)
    with pytest.raises(RuntimeError, match="graphviz"):
        small_graph().visualize(tmp_path / "g.svg")
    assert not (tmp_path / "g.svg").exists()


@pytest.mark.skipif(shutil.which("dot") is None, reason="graphviz's dot is not installed")
def test_visualize_writes_a_file(tmp_path: Path) -> None:
    out = small_graph().visualize(tmp_path / "g.svg")
    assert Path(out) == tmp_path / "g.svg"
    text = out.read_text()
    assert "<svg" in text
    for name in ("a", "b", "c"):
        assert f">{name}<" in text


@pytest.mark.skipif(shutil.which("dot") is None, reason="graphviz's dot is not installed")
def test_visualize_odd_layer_names(tmp_path: Path) -> None:
    odd = MaterializedLayer({"k": DataNode("k", 1)}, name='say "hi"')
    out = HighLevelGraph({odd.name: odd}).visualize(tmp_path / "odd.svg")
    assert "say" in out.read_text()


# -- from_collections and merge ------------------------------------------------------------


class Collection:
    def __init__(self, graph: HighLevelGraph, names: list[str]) -> None:
        self.graph = graph
        self.names = names

    def __hlg_graph__(self) -> HighLevelGraph:
        return self.graph

    def __hlg_layers__(self) -> list[str]:
        return self.names


def test_from_collections_with_graph_dependency() -> None:
    base = chain_graph()
    c = MaterializedLayer(
        {("c", i): Task(("c", i), add, TaskRef(("b", i)), 100) for i in range(3)}, name="c"
    )
    g = HighLevelGraph.from_collections("c", c, [base])
    assert list(g.layers) == ["a", "b", "c"]
    assert g.dependencies == {"a": frozenset(), "b": {"a"}, "c": {"b"}}
    g.validate()
    assert get(g, [("c", 0), ("c", 2)]) == [101, 105]
    with pytest.raises(ValueError, match="not 'd'"):
        HighLevelGraph.from_collections("d", c, [base])
    with pytest.raises(TypeError, match="neither a HighLevelGraph nor a collection"):
        HighLevelGraph.from_collections("c", c, [{"x": 1}])


def test_from_collections_with_protocol_objects() -> None:
    base = chain_graph()
    coll = Collection(base, ["a"])  # reads a layer that is not the graph's output
    assert isinstance(coll, hlg.HLGCollection)
    extra = HighLevelGraph({"e": MaterializedLayer({"e": DataNode("e", 1000)}, name="e")})
    d = MaterializedLayer({"d": Task("d", add, TaskRef(("a", 3)), TaskRef("e"))}, name="d")
    g = HighLevelGraph.from_collections("d", d, [coll, extra])
    assert g.dependencies["d"] == {"a", "e"}
    g.validate()
    assert get(g, "d") == 1003
    assert set(g.cull(["d"])) == {"d", ("a", 3), "e"}
    bad = Collection(base, ["nope"])
    with pytest.raises(ValueError, match="nope"):
        HighLevelGraph.from_collections("d", d, [bad])


def test_merge() -> None:
    base = chain_graph()
    c = MaterializedLayer({"c": Task("c", add, TaskRef(("b", 2)), 1)}, name="c")
    d = MaterializedLayer({"d": Task("d", add, TaskRef(("a", 0)), 2)}, name="d")
    g1 = HighLevelGraph.from_collections("c", c, [base])
    g2 = HighLevelGraph.from_collections("d", d, [base])
    merged = HighLevelGraph.merge(g1, g2)
    assert sorted(merged.layers) == ["a", "b", "c", "d"]
    assert merged.layers["a"] is base.layers["a"]
    assert merged.dependencies == {"a": frozenset(), "b": {"a"}, "c": {"b"}, "d": {"b"}}
    assert merged.output_layers() == ["c", "d"]
    assert get(merged, ["c", "d"]) == [6, 2]
    check_mapping(merged)
    assert len(HighLevelGraph.merge()) == 0
    assert list(HighLevelGraph.merge(g1).layers) == list(g1.layers)


# -- pickling -----------------------------------------------------------------------------


def test_pickle_materialized_layer() -> None:
    tasks = {
        ("x", 0, "a"): DataNode(("x", 0, "a"), [1, 2]),
        "y": Task("y", add, TaskRef(("x", 0, "a")), [3]),
    }
    layer = MaterializedLayer(tasks, name="m", annotations={"retries": 2, "r": {"GPU": [1, 2]}})
    back = pickle.loads(pickle.dumps(layer))
    assert type(back) is MaterializedLayer
    assert back.name == "m" and back.kind == "materialized"
    assert back.annotations == layer.annotations
    assert back.materialize() == tasks
    assert back.prefixes == {"x", "y"}
    assert back["y"]({("x", 0, "a"): [1, 2]}) == [1, 2, 3]


def test_pickle_graph() -> None:
    g2 = HighLevelGraph.merge(chain_graph().cull([("b", 0)]), chain_graph())
    _ = ("a", 0) in g2  # build the prefix index before pickling
    for graph in (chain_graph(), g2):
        back = pickle.loads(pickle.dumps(graph))
        assert list(back.layers) == list(graph.layers)
        assert back.dependencies == graph.dependencies
        assert back.to_dict() == graph.to_dict()
        assert get(back, [("b", 0), ("b", 2)]) == [1, 5]
        assert [lay.annotations for lay in back.layers.values()] == [
            lay.annotations for lay in graph.layers.values()
        ]
    pickle.loads(pickle.dumps(chain_graph())).validate()


def test_pickle_annotations() -> None:
    ann = Annotations({"retries": 2, "resources": {"GPU": 1.5}, "workers": ["a", "b"], "x": None})
    back = pickle.loads(pickle.dumps(ann))
    assert type(back) is Annotations
    assert back == ann and hash(back) == hash(ann)
    assert dict(back) == dict(ann)
    assert pickle.loads(pickle.dumps(Annotations())) == Annotations() == {}


# -- annotations --------------------------------------------------------------------------


def test_annotate_nesting() -> None:
    def layer() -> MaterializedLayer:
        return MaterializedLayer({"k": DataNode("k", 1)}, name="k")

    assert dict(layer().annotations) == {}
    with hlg.annotate(retries=1, priority=5):
        outer = layer()
        with hlg.annotate(retries=3, resources={"GPU": 1}):
            inner = layer()
            explicit = MaterializedLayer(
                {"k": DataNode("k", 1)}, name="k", annotations={"priority": 0}
            )
            lazy = RangeLayer("r", 2)
        after = layer()
    assert dict(outer.annotations) == {"retries": 1, "priority": 5}
    assert dict(inner.annotations) == {"retries": 3, "priority": 5, "resources": {"GPU": 1}}
    assert dict(explicit.annotations) == {"retries": 3, "priority": 0, "resources": {"GPU": 1}}
    assert dict(lazy.annotations) == dict(inner.annotations)
    assert dict(after.annotations) == dict(outer.annotations)
    assert dict(layer().annotations) == {}


def test_annotations_survive_cull_inside_another_annotate_block() -> None:
    g = small_graph()
    with hlg.annotate(retries=9, priority=1):
        culled = g.cull(["c"])
        renamed = g.layers["a"].with_annotations(workers=["w1"])
    for name, layer in culled.layers.items():
        origin = g.layer_of(next(iter(layer)))
        assert dict(layer.annotations) == dict(origin.annotations), name
    assert dict(renamed.annotations) == {"workers": ["w1"]}
    assert dict(g.layers["a"].annotations) == {}


def test_annotations_must_be_plain_data() -> None:
    bad_values: list[Any] = [print, object(), {1, 2}, b"bytes", [1, object()], {"GPU": {1}}, 1j]
    for bad in bad_values:
        with pytest.raises(TypeError, match="plain data"):
            Annotations({"x": bad})
        with pytest.raises(TypeError, match="plain data"), hlg.annotate(x=bad):
            pass  # pragma: no cover - never reached
        with pytest.raises(TypeError, match="plain data"):
            MaterializedLayer({"k": DataNode("k", 1)}, annotations={"x": bad})
        with pytest.raises(TypeError, match="plain data"):
            chain_graph().layers["a"].with_annotations(x=bad)
    with pytest.raises(TypeError, match="dict keys must be str"):
        Annotations({"resources": {1: 2}})
    with pytest.raises(TypeError, match="names must be str"):
        Annotations({1: 2})  # type: ignore[dict-item]
    # A refused block leaves no annotations behind.
    assert dict(MaterializedLayer({"k": DataNode("k", 1)}).annotations) == {}


def test_annotations_compare_exactly() -> None:
    assert Annotations({"r": 1}) == {"r": 1}
    assert Annotations({"r": 1}) != Annotations({"r": True})
    assert Annotations({"r": 1}) != Annotations({"r": 1.0})
    # the wire format has no tuples: a tuple is stored as a list, so packing keeps it equal
    assert Annotations({"r": (1, (2,))})["r"] == [1, [2]]
    assert Annotations({"r": [1]}) == Annotations({"r": (1,)})
    assert Annotations({"a": 1, "b": 2}) == Annotations({"b": 2, "a": 1})
    assert hash(Annotations({"a": 1, "b": {"x": [1]}})) == hash(
        Annotations({"b": {"x": [1]}, "a": 1})
    )


def test_annotations_are_read_only_and_keep_their_hash() -> None:
    resources = {"GPU": 1}
    ann = Annotations({"resources": resources})
    before = hash(ann)
    resources["GPU"] = 2  # the caller's dict, changed after the fact
    assert ann["resources"] == {"GPU": 1}
    assert hash(ann) == before
    with pytest.raises(TypeError):
        ann["resources"] = 3  # type: ignore[index]


def test_layer_dependencies_inferred_from_read_prefixes_without_walking_keys() -> None:
    from hlg import TaskRef, layers

    n = 300
    x = layers.blockwise(abs, "x", "ij", layers.BlockIndex((n, n)), "ij")
    c = MaterializedLayer({("c", 0): DataNode(("c", 0), 1)}, name="c")
    y = layers.blockwise(
        add, "y", "ij", "x", "ji", TaskRef(("c", 0)), None, numblocks={"x": (n, n)}
    )
    s = layers.Shuffle("s", "y", n * n, 10, lambda p, k, st: [p] * k, list)
    r = layers.TreeReduction("r", "s", 10, len, sum, sum)
    culled, _ = y.cull([("y", 0, 1)])
    symbolic = {"x": x, "c": c, "y": y, "s": s, "r": r}
    walked: dict[str, set[str]] = {}
    for layer in symbolic.values():
        assert layer is c or layer.read_prefixes() is not None
    from unittest import mock

    def refuse(self: Any, *args: Any) -> Any:
        raise AssertionError(f"layer {self.name!r} was walked key by key")

    with (
        mock.patch.object(type(x), "__iter__", refuse),
        mock.patch.object(type(x), "dependency_tuple", refuse),
        mock.patch.object(type(s), "__iter__", refuse),
        mock.patch.object(type(r), "__iter__", refuse),
    ):
        graph = HighLevelGraph(symbolic)
    assert graph.dependencies == {
        "x": frozenset(),
        "c": frozenset(),
        "y": frozenset({"x", "c"}),
        "s": frozenset({"y"}),
        "r": frozenset({"s"}),
    }
    # the same answer as walking every key, on a small copy of each shape
    small = HighLevelGraph({culled.name: culled, "x": x, "c": c})
    for name, layer in small.layers.items():
        walked[name] = {
            small.layer_of(d).name
            for k in layer
            for d in layer.dependency_tuple(k)
            if d not in layer
        }
    assert {k: set(v) for k, v in small.dependencies.items()} == walked
