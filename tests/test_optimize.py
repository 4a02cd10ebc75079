"""Tests for hlg._optimize: passes never change results, never drop or alter annotations.

Results are checked against a plain-Python oracle over the generated graph's spec; the
annotations of every surviving key (and of every task fused into it) are checked against
the layer the key came from.
"""

from __future__ import annotations

import logging
import threading
from operator import add, mul
from typing import Any

import pytest
from _spec import Spec, SymbolicSpecLayer, closure, combine, make_node, oracle
from hypothesis import given
from hypothesis import strategies as st

import hlg
from hlg import (
    Alias,
    DataNode,
    HighLevelGraph,
    Layer,
    MaterializedLayer,
    Task,
    TaskRef,
    cull,
    fuse_linear,
    get,
    optimize,
)
from hlg._task import FusedCall

# A lazy layer over a spec, symbolic except ``__getitem__``, which counts builds.
CountingLayer = SymbolicSpecLayer


# -- random layered graphs with many linear chains ------------------------------------------

ANNOTATION_CHOICES: list[dict[str, Any]] = [
    {},
    {},
    {"retries": 1},
    {"retries": True},  # not the same annotation as retries=1
    {"priority": 1.0, "resources": {"GPU": 1}},
]


class Drawn:
    def __init__(self, graph: HighLevelGraph, spec: Spec) -> None:
        self.graph = graph
        self.spec = spec

    def lazy(self) -> list[CountingLayer]:
        return [lay for lay in self.graph.layers.values() if isinstance(lay, CountingLayer)]


@st.composite
def graphs_and_keys(draw: st.DrawFn) -> tuple[Drawn, list[Any]]:
    n_layers = draw(st.integers(1, 5))
    names = [f"L{i}" for i in range(n_layers)]
    spec: Spec = {}
    owner: dict[Any, str] = {}
    layer_keys: dict[str, list[Any]] = {}
    all_keys: list[Any] = []
    counter = 0
    for name in names:
        keys: list[Any] = []
        for _ in range(draw(st.integers(1, 6))):
            counter += 1
            prefix = draw(st.sampled_from(["a", "b", "shared"]))
            key: Any = draw(st.sampled_from([(prefix, counter), f"{prefix}{counter}"]))
            n_deps = draw(st.sampled_from([0, 1, 1, 1, 2, 3])) if all_keys else 0
            recent = all_keys[-4:]  # favour chains
            deps = (
                draw(
                    st.lists(
                        st.sampled_from(recent),
                        min_size=min(n_deps, len(recent)),
                        max_size=min(n_deps, len(recent)),
                        unique=True,
                    )
                )
                if n_deps
                else []
            )
            if len(deps) == 1:
                kind = draw(st.sampled_from(["task", "nested", "alias", "twice"]))
            else:
                kind = draw(st.sampled_from(["task", "nested"])) if deps else "data"
            spec[key] = (counter, tuple(deps), kind)
            owner[key] = name
            keys.append(key)
            all_keys.append(key)
        layer_keys[name] = keys
    layers: dict[str, Layer] = {}
    deps_of: dict[str, set[str]] = {}
    for name in names:
        sub = {k: spec[k] for k in layer_keys[name]}
        notes = draw(st.sampled_from(ANNOTATION_CHOICES))
        if draw(st.sampled_from(["mat", "mat", "mat", "lazy"])) == "mat":
            layers[name] = MaterializedLayer(
                {k: make_node(k, e) for k, e in sub.items()}, name=name, annotations=notes
            )
        else:
            layers[name] = CountingLayer(name, sub, annotations=notes)
        deps_of[name] = {owner[d] for e in sub.values() for d in e[1]} - {name}
    graph = HighLevelGraph(layers, {n: sorted(d) for n, d in deps_of.items()})
    wanted = draw(st.lists(st.sampled_from(all_keys), min_size=1, max_size=3, unique=True))
    return Drawn(graph, spec), wanted


def inner_keys(node: Any) -> list[Any]:
    """The keys of every original node a (possibly fused) node stands for."""
    func = getattr(node, "func", None)
    if isinstance(func, FusedCall):
        return [k for inner in func.nodes for k in inner_keys(inner)]
    return [node.key]


def snapshot(graph: HighLevelGraph) -> tuple[Any, ...]:
    return (
        list(graph.layers),
        dict(graph.dependencies),
        [dict(lay.annotations) for lay in graph.layers.values()],
        {k: graph[k] for k in graph},
    )


def check_optimized(drawn: Drawn, opt: HighLevelGraph, keys: list[Any]) -> None:
    graph = drawn.graph
    assert get(opt, keys) == oracle(drawn.spec, keys)
    opt.validate()
    for key in opt:
        layer = opt.layer_of(key)
        origin = graph.layer_of(key)
        assert layer.annotations == origin.annotations, key
        assert dict(layer.annotations) == dict(origin.annotations), key
        # Every task fused into this one came from a layer with the same annotations.
        for inner in inner_keys(opt[key]):
            assert dict(graph.layer_of(inner).annotations) == dict(layer.annotations), (
                key,
                inner,
            )
    listed = list(opt)
    assert len(listed) == len(set(listed)) == len(opt)
    assert set(listed) <= set(graph)


def refusals(graph: HighLevelGraph, keys: list[Any]) -> set[tuple[Any, Any]]:
    """The links fuse_linear may only refuse for annotations (its documented rule)."""
    mats = {n: lay for n, lay in graph.layers.items() if isinstance(lay, MaterializedLayer)}
    dependents = graph.dependents()
    protected = {n for n in mats if any(d not in mats for d in dependents[n])}
    owner = {k: n for n, lay in mats.items() for k in lay.tasks}
    readers: dict[Any, list[Any]] = {}
    for lay in mats.values():
        for key, node in lay.tasks.items():
            for dep in node.dependency_tuple:
                if dep in owner:
                    readers.setdefault(dep, []).append(key)
    out = set()
    for key, below in readers.items():
        if len(below) != 1 or key in keys or owner[key] in protected:
            continue
        (b,) = below
        if len(mats[owner[b]].tasks[b].dependency_tuple) != 1:
            continue
        if mats[owner[key]].annotations != mats[owner[b]].annotations:
            out.add((key, b))
    return out


PASS_CHOICES: list[Any] = [None, [cull], [fuse_linear], [cull, fuse_linear], [fuse_linear, cull]]


@given(graphs_and_keys())
def test_optimize_never_changes_results_or_annotations(case: tuple[Drawn, list[Any]]) -> None:
    drawn, keys = case
    before = snapshot(drawn.graph)
    for layer in drawn.lazy():
        layer.builds.clear()
    for passes in PASS_CHOICES:
        opt = optimize(drawn.graph, keys, passes)
        for layer in drawn.lazy():
            assert not layer.builds, f"optimize built tasks of lazy layer {layer.name}"
        check_optimized(drawn, opt, keys)
        if passes is None or cull in passes:
            assert set(opt) <= closure(drawn.spec, keys)
        for layer in drawn.lazy():
            layer.builds.clear()
    assert optimize(drawn.graph, keys, []) is drawn.graph
    for layer in drawn.lazy():
        layer.builds.clear()
    assert snapshot(drawn.graph) == before  # the input graph is left alone


@given(graphs_and_keys())
def test_optimize_is_deterministic_and_explains_every_refusal(
    case: tuple[Drawn, list[Any]],
) -> None:
    drawn, keys = case
    opt = optimize(drawn.graph, keys)
    again, why = optimize(drawn.graph, list(reversed(keys)), explain=True)
    assert list(again.layers) == list(opt.layers)
    assert again.dependencies == opt.dependencies
    assert again.to_dict() == opt.to_dict()
    culled = drawn.graph.cull(keys)
    expected = refusals(culled, keys)
    got: dict[tuple[Any, Any], str] = {}
    for message in why:
        for a, b in expected:
            if message.startswith(f"fuse_linear: not fusing {a!r} into {b!r}: "):
                got[a, b] = message
    assert len(why) == len(got), why  # every message names a refused link, once
    assert set(got) == expected
    for (a, b), message in got.items():
        # A refused link leaves the upper task in place, never inside the lower one's task.
        assert a in again
        assert all(not {a, b} <= set(inner_keys(again[k])) for k in again)
        notes_a, notes_b = culled.layer_of(a).annotations, culled.layer_of(b).annotations
        assert message.endswith(f": annotations differ ({dict(notes_a)} vs {dict(notes_b)})")


# -- fuse_linear on small graphs -------------------------------------------------------------


def chain_layers(
    notes_a: dict[str, Any] | None = None, notes_b: dict[str, Any] | None = None
) -> HighLevelGraph:
    a = MaterializedLayer(
        {
            ("a", 0): DataNode(("a", 0), 3),
            ("a", 1): Task(("a", 1), add, TaskRef(("a", 0)), 1),
        },
        name="A",
        annotations=notes_a,
    )
    b = MaterializedLayer(
        {
            ("b", 0): Task(("b", 0), mul, TaskRef(("a", 1)), 10),
            ("b", 1): Alias(("b", 1), ("b", 0)),
            "c": Task("c", add, TaskRef(("b", 1)), TaskRef(("b", 1))),
        },
        name="B",
        annotations=notes_b,
    )
    return HighLevelGraph({"A": a, "B": b}, {"B": ["A"]})


def test_fuse_linear_fuses_a_chain_across_layers_with_equal_annotations() -> None:
    g = chain_layers({"retries": 2}, {"retries": 2})
    opt, why = optimize(g, ["c"], explain=True)
    assert why == []
    assert list(opt) == ["c"]
    assert get(opt, "c") == 80
    (layer,) = opt.layers.values()
    assert layer.name.startswith("B-linear-")
    assert dict(layer.annotations) == {"retries": 2}
    assert inner_keys(opt["c"]) == [("a", 0), ("a", 1), ("b", 0), ("b", 1), "c"]
    assert list(optimize(g, ["c"]).layers) == list(opt.layers)  # deterministic name


def test_fuse_linear_keeps_requested_keys() -> None:
    g = chain_layers()
    opt = optimize(g, [("a", 1), "c"])
    assert set(opt) == {("a", 1), "c"}
    assert get(opt, [("a", 1), "c"]) == [4, 80]
    assert inner_keys(opt["c"]) == [("b", 0), ("b", 1), "c"]


def test_fusion_across_different_annotations_is_refused_and_explained() -> None:
    g = chain_layers({"retries": 1}, {})
    opt, why = optimize(g, ["c"], explain=True)
    assert why == [
        "fuse_linear: not fusing ('a', 1) into ('b', 0): annotations differ ({'retries': 1} vs {})"
    ]
    assert set(opt) == {("a", 1), "c"}
    assert dict(opt.layer_of(("a", 1)).annotations) == {"retries": 1}
    assert dict(opt.layer_of("c").annotations) == {}
    assert inner_keys(opt[("a", 1)]) == [("a", 0), ("a", 1)]
    assert inner_keys(opt["c"]) == [("b", 0), ("b", 1), "c"]
    assert get(opt, "c") == 80
    plain = optimize(g, ["c"])
    assert isinstance(plain, HighLevelGraph)
    assert list(plain.layers) == list(opt.layers)


@pytest.mark.parametrize(
    ("notes_a", "notes_b"),
    [
        ({"retries": 1}, {"retries": True}),
        ({"priority": 1}, {"priority": 1.0}),
        ({"workers": ["w"]}, {"workers": ["v"]}),
        ({"resources": {"GPU": 1}}, {"resources": {"GPU": 2}}),
        ({}, {"retries": 0}),
    ],
)
def test_near_equal_annotations_still_block_fusion(
    notes_a: dict[str, Any], notes_b: dict[str, Any]
) -> None:
    g = chain_layers(notes_a, notes_b)
    opt, why = optimize(g, ["c"], explain=True)
    assert len(why) == 1 and "('a', 1) into ('b', 0)" in why[0]
    assert dict(opt.layer_of(("a", 1)).annotations) == notes_a
    assert dict(opt.layer_of("c").annotations) == notes_b
    assert get(opt, "c") == 80


def test_explain_leaves_logging_as_it_was() -> None:
    logger = logging.getLogger("hlg.optimize")
    handlers, level = list(logger.handlers), logger.level
    optimize(chain_layers({"retries": 1}, {}), ["c"], explain=True)
    with pytest.raises(ZeroDivisionError):
        optimize(chain_layers(), ["c"], [lambda g, k: 1 / 0], explain=True)
    assert logger.handlers == handlers and logger.level == level


def test_explain_does_not_depend_on_logging_configuration(monkeypatch: pytest.MonkeyPatch) -> None:
    g = chain_layers({"retries": 1}, {})
    expected = optimize(g, ["c"], explain=True)[1]
    assert len(expected) == 1
    # logging.config.dictConfig() disables existing loggers by default; an application
    # silencing INFO logs must not make explain=True silently report nothing.
    monkeypatch.setattr(logging.getLogger("hlg.optimize"), "disabled", True)
    assert optimize(g, ["c"], explain=True)[1] == expected
    monkeypatch.undo()
    logging.disable(logging.INFO)
    try:
        assert optimize(g, ["c"], explain=True)[1] == expected
    finally:
        logging.disable(logging.NOTSET)


def test_explain_messages_belong_to_their_own_call() -> None:
    started, release = threading.Event(), threading.Event()

    def waiting_pass(graph: HighLevelGraph, keys: Any) -> HighLevelGraph:
        started.set()
        release.wait(10)
        return graph

    result: dict[str, Any] = {}

    def other_thread() -> None:
        result["out"] = optimize(chain_layers(), ["c"], [waiting_pass], explain=True)

    thread = threading.Thread(target=other_thread)
    thread.start()
    try:
        assert started.wait(10)
        _, why = optimize(chain_layers({"retries": 1}, {}), ["c"], explain=True)
    finally:
        release.set()
        thread.join(10)
    assert len(why) == 1
    assert result["out"][1] == []  # nothing was refused in the other call


def test_no_fusion_through_shared_or_multi_input_tasks() -> None:
    tasks = {
        "x": DataNode("x", 2),
        "y": DataNode("y", 5),
        "p": Task("p", add, TaskRef("x"), 1),  # read by q and r: not fused
        "q": Task("q", mul, TaskRef("p"), 2),
        "r": Task("r", mul, TaskRef("p"), 3),
        "s": Task("s", add, TaskRef("q"), TaskRef("y")),  # two inputs: q is not fused into s
    }
    g = HighLevelGraph({"m": MaterializedLayer(tasks, name="m")})
    opt = optimize(g, ["s", "r"])
    assert set(opt) == {"p", "q", "r", "s", "y"}
    assert inner_keys(opt["p"]) == ["x", "p"]
    assert get(opt, ["s", "r"]) == [11, 9]


def test_materialized_layer_read_by_a_lazy_layer_is_not_fused_away() -> None:
    a = MaterializedLayer(
        {"a0": DataNode("a0", 1), "a1": Task("a1", add, TaskRef("a0"), 1)}, name="A"
    )
    lazy_spec: Spec = {("z", 0): (5, ("a1",), "task")}
    z = CountingLayer("Z", lazy_spec)
    g = HighLevelGraph({"A": a, "Z": z}, {"Z": ["A"]})
    opt = optimize(g, [("z", 0)])
    assert set(opt) == {"a0", "a1", ("z", 0)}  # the lazy layer still reads "a1" by key
    assert get(opt, ("z", 0)) == combine(5, 2)
    assert dict(z.builds) == {("z", 0): 1}


def test_optimize_builds_no_task_of_lazy_layers() -> None:
    n = 1000
    spec_x: Spec = {("x", i): (i, (), "data") for i in range(n)}
    spec_y: Spec = {("y", i): (i, (("x", i), ("x", (i + 1) % n)), "task") for i in range(n)}
    x = CountingLayer("X", spec_x)
    y = CountingLayer("Y", spec_y, annotations={"priority": 3})
    end = MaterializedLayer(
        {"end": Task("end", add, TaskRef(("y", 7)), 1), "out": Alias("out", "end")}, name="E"
    )
    g = HighLevelGraph({"X": x, "Y": y, "E": end}, {"Y": ["X"], "E": ["Y"]})
    opt = optimize(g, ["out"])
    assert not x.builds and not y.builds
    assert set(opt) == {"out", ("y", 7), ("x", 7), ("x", 8)}
    assert dict(opt.layer_of(("y", 7)).annotations) == {"priority": 3}
    assert get(opt, "out") == oracle({**spec_x, **spec_y}, [("y", 7)])[0] + 1
    assert dict(x.builds) == {("x", 7): 1, ("x", 8): 1} and dict(y.builds) == {("y", 7): 1}


def test_optimize_inside_annotate_keeps_annotations() -> None:
    g = chain_layers({"retries": 1}, {"priority": 2})
    with hlg.annotate(retries=7, workers=["w"]):
        for passes in PASS_CHOICES:
            opt = optimize(g, ["c"], passes)
            for key in opt:
                assert dict(opt.layer_of(key).annotations) == dict(g.layer_of(key).annotations)


# -- optimize's arguments --------------------------------------------------------------------


def test_optimize_plain_dict_and_key_forms() -> None:
    dsk = {
        "a": DataNode("a", 1),
        "b": Task("b", add, TaskRef("a"), 1),
        ("c", 0): Task(("c", 0), add, TaskRef("b"), 10),
        "x": DataNode("x", 0),
    }
    g = optimize(dsk, ("c", 0))
    assert list(g) == [("c", 0)] and get(g, ("c", 0)) == 12
    g = optimize(dsk, [["b"], [("c", 0)]])
    assert set(g) == {"b", ("c", 0)}
    assert get(g, [["b"], [("c", 0)]]) == [[2], [12]]
    with pytest.raises(TypeError, match="expected a key"):
        optimize(dsk, {"b"})


def test_optimize_defaults_to_output_keys() -> None:
    g = chain_layers()
    opt = optimize(g)  # the output layer's keys: ("a", 1) is fused into ("b", 0)
    assert set(opt) == {("b", 0), ("b", 1), "c"}
    assert inner_keys(opt[("b", 0)]) == [("a", 0), ("a", 1), ("b", 0)]
    assert get(opt, [("b", 1), "c"]) == [40, 80]
    seen: list[Any] = []

    def spy(graph: HighLevelGraph, keys: Any) -> HighLevelGraph:
        seen.append(list(keys))
        return graph

    assert optimize(g, None, [spy]) is g
    assert seen == [[("b", 0), ("b", 1), "c"]]
    optimize(g, [[("b", 1)], "c"], [spy, spy])
    assert seen[1:] == [[("b", 1), "c"], [("b", 1), "c"]]


def test_each_pass_alone() -> None:
    g = chain_layers()
    culled = cull(g, [("b", 0)])
    assert set(culled) == {("a", 0), ("a", 1), ("b", 0)}
    assert get(culled, ("b", 0)) == 40
    fused = fuse_linear(g, ["c"])
    assert list(fused) == ["c"] and get(fused, "c") == 80
    assert fuse_linear(g, [("a", 0), ("a", 1), ("b", 0), ("b", 1), "c"]) is g
    lazy_only = HighLevelGraph({"Z": CountingLayer("Z", {"z": (1, (), "data")})})
    assert fuse_linear(lazy_only, ["z"]) is lazy_only


def test_a_pass_that_returns_no_graph_is_named() -> None:
    def forgets_to_return(graph: Any, keys: Any) -> None:
        graph.validate()

    with pytest.raises(
        TypeError,
        match=r"optimization pass .*forgets_to_return returned NoneType, not a HighLevelGraph",
    ):
        hlg.optimize({"a": DataNode("a", 1)}, "a", passes=[hlg.cull, forgets_to_return])
