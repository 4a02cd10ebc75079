"""Equal objects have equal tokens: tasks, layers and graphs, in every process and seed."""

from __future__ import annotations

import os
import pickle
import subprocess
import sys
import textwrap
from operator import add, neg
from typing import Any

from _spec import Spec, make_node
from hypothesis import given, settings
from hypothesis import strategies as st

from hlg import (
    DataNode,
    HighLevelGraph,
    MaterializedLayer,
    Task,
    TaskRef,
    get,
    layers,
    tokenize,
)

KEYS = st.one_of(
    st.sampled_from(["a", "b", "c", "d"]),
    st.tuples(st.sampled_from(["x", "y"]), st.integers(0, 3)),
)

# A description of an argument, built into objects twice (once with dicts and sets
# filled in reverse order), so that equal objects come from separate constructions.
LEAVES = st.one_of(
    st.integers(-3, 3).map(lambda v: ("int", v)),
    st.sampled_from([0.0, -0.0, 1.5]).map(lambda v: ("float", v)),
    st.sampled_from(["a", "x", ""]).map(lambda v: ("str", v)),
    KEYS.map(lambda k: ("ref", k)),
)
DESCRIPTIONS = st.recursive(
    LEAVES,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3).map(lambda xs: ("list", xs)),
        st.lists(inner, max_size=3).map(lambda xs: ("tuple", xs)),
        st.dictionaries(st.sampled_from("pqr"), inner, max_size=3).map(
            lambda d: ("dict", list(d.items()))
        ),
        st.lists(st.one_of(KEYS.map(lambda k: ("ref", k)), st.integers(0, 3)), max_size=4).map(
            lambda xs: ("set", xs)
        ),
        st.lists(inner, max_size=2).map(lambda xs: ("task", xs)),
    ),
    max_leaves=8,
)


def build(desc: Any, reverse: bool) -> Any:
    tag, body = desc
    if tag in ("int", "float", "str"):
        return body
    if tag == "ref":
        return TaskRef(body)
    if tag == "list":
        return [build(d, reverse) for d in body]
    if tag == "tuple":
        return tuple(build(d, reverse) for d in body)
    if tag == "dict":
        items = [(k, build(d, reverse)) for k, d in body]
        return dict(reversed(items) if reverse else items)
    if tag == "set":
        items = [TaskRef(x[1]) if isinstance(x, tuple) else x for x in body]
        return set(reversed(items) if reverse else items)
    assert tag == "task"
    return Task(None, _pack_args, *[build(d, reverse) for d in body])


def _pack_args(*args: Any) -> tuple[Any, ...]:
    return args


TASKS = st.tuples(KEYS, st.lists(DESCRIPTIONS, max_size=4), st.sampled_from([None, "kw"]))


def build_task(spec: Any, reverse: bool) -> Task:
    key, args, kw = spec
    built = [build(d, reverse) for d in args]
    if kw is None:
        return Task(key, _pack_args, *built)
    return Task(key, _pack_args, *built[1:], kw=built[0] if built else None)


@given(TASKS)
def test_equal_tasks_have_equal_tokens(spec: Any) -> None:
    a, b = build_task(spec, False), build_task(spec, True)
    assert a == b
    assert tokenize(a) == tokenize(b)
    copy = pickle.loads(pickle.dumps(a))
    assert copy == a and tokenize(copy) == tokenize(a)
    assert tokenize(a.substitute({}, key=a.key)) == tokenize(a)


@given(TASKS, TASKS)
def test_tasks_equal_implies_tokens_equal(one: Any, two: Any) -> None:
    a, b = build_task(one, False), build_task(two, True)
    if a == b:
        assert tokenize(a) == tokenize(b)
    else:  # and, the other way round, a token tells apart what equality tells apart
        assert tokenize(a) != tokenize(b)


def test_the_reported_cases() -> None:
    refs = [TaskRef("b"), TaskRef("c"), TaskRef("d")]
    a = Task("k", sorted, set(refs))
    b = Task("k", sorted, set(reversed(refs)))
    assert a == b and tokenize(a) == tokenize(b)
    assert a.dependency_tuple == ("b", "c", "d")  # references in a set: sorted, not hashed
    d1 = Task("k", dict, {"p": TaskRef("x"), "q": TaskRef("y")})
    d2 = Task("k", dict, {"q": TaskRef("y"), "p": TaskRef("x")})
    assert d1 == d2 and tokenize(d1) == tokenize(d2)
    assert Task("k", abs, 0.0) != Task("k", abs, -0.0)  # they tokenize differently too
    assert Task("k", list, {1}) != Task("k", list, {1.0})


def test_numpy_arguments_of_other_dtypes_are_not_equal() -> None:
    import numpy as np

    a = Task("k", sum, np.arange(3))
    assert a == Task("k", sum, np.arange(3))
    assert a != Task("k", sum, np.arange(3.0))
    assert a != Task("k", sum, np.arange(3).reshape(3, 1))


def _graph(spec: Spec) -> HighLevelGraph:
    """One layer per key (layers of one prefix share the prefix index), unnamed: named by
    the token of their content."""
    layers = [MaterializedLayer({key: make_node(key, entry)}) for key, entry in spec.items()]
    return HighLevelGraph({layer.name: layer for layer in layers})


@st.composite
def specs(draw: st.DrawFn) -> Spec:
    n = draw(st.integers(1, 12))
    spec: Spec = {}
    keys: list[Any] = []
    for i in range(n):
        key: Any = f"s{i}" if draw(st.booleans()) else (draw(st.sampled_from("pq")), i)
        deps = tuple(draw(st.lists(st.sampled_from(keys), max_size=3))) if keys else ()
        kind = "data" if not deps else draw(st.sampled_from(["task", "nested", "twice"]))
        spec[key] = (draw(st.integers(0, 9)), deps if kind != "twice" else deps[:1], kind)
        keys.append(key)
    return spec


@given(specs())
@settings(max_examples=50)
def test_graph_and_layer_tokens_ignore_caches(spec: Spec) -> None:
    g = _graph(spec)
    before = tokenize(g)
    layer_tokens = {name: tokenize(layer) for name, layer in g.layers.items()}
    for key in spec:  # lookups fill the prefix index and the layers' caches
        assert key in g
        g[key]
        g.layer_of(key).prefixes
    g.validate()
    list(g)
    assert tokenize(g) == before
    assert {name: tokenize(layer) for name, layer in g.layers.items()} == layer_tokens
    again = _graph(dict(reversed(spec.items())))  # built anew, in another order
    assert tokenize(again) == before
    assert {name: tokenize(layer) for name, layer in again.layers.items()} == layer_tokens


def test_blockwise_tokens_ignore_the_cached_plan() -> None:
    a = layers.blockwise(neg, "y", "i", "x", "i", numblocks={"x": (3,)})
    b = layers.blockwise(neg, "y", "i", "x", "i", numblocks={"x": (3,)})
    token = tokenize(a)
    assert a[("y", 1)] == b[("y", 1)]
    assert dict(a) == a.materialize() == b.materialize()
    assert tokenize(a) == tokenize(b) == token
    assert tokenize(layers.blockwise(abs, "y", "i", "x", "i", numblocks={"x": (3,)})) != token


SCRIPT = textwrap.dedent(
    """
    import pickle
    from operator import add
    import hlg
    from hlg import DataNode, HighLevelGraph, MaterializedLayer, Task, TaskRef, tokenize

    refs = {TaskRef("b"), TaskRef("c"), TaskRef("d"), TaskRef(("e", 1))}
    t = Task("k", sorted, refs)
    d = Task("m", dict, {"p": TaskRef("x"), "q": {TaskRef("y"), TaskRef("z")}})
    a = MaterializedLayer({k: DataNode(k, 1) for k in ["b", "c", "d", ("e", 1), "x", "y", "z"]})
    layer = MaterializedLayer({"k": t, "m": d})
    g = HighLevelGraph({a.name: a, layer.name: layer})
    before = tokenize(g)
    g["k"]
    culled = g.cull(["k"])
    u = Task("u", add, TaskRef("b"), 1)
    fused = Task.fuse(u, Task("v", sorted, {TaskRef("u"), TaskRef("c")}))
    print(tokenize(t), tokenize(d), t.dependency_tuple, layer.name, a.name)
    print(before == tokenize(g), tokenize(g), sorted(culled.layers), tokenize(fused))
    print(fused.dependency_tuple, pickle.dumps(fused.func.nodes[-1].dependency_tuple))
    """
)


def test_tokens_and_names_do_not_depend_on_the_hash_seed() -> None:
    outputs = set()
    for seed in ("0", "1", "2", "987"):
        env = {**os.environ, "PYTHONHASHSEED": seed}
        proc = subprocess.run(
            [sys.executable, "-c", SCRIPT],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        )
        outputs.add(proc.stdout)
    assert len(outputs) == 1, outputs
    assert "True" in outputs.pop()  # the token of the graph survived a lookup


def test_blockwise_with_a_constant_reference_builds_the_hand_built_task() -> None:
    z = layers.blockwise(add, "z", "i", "x", "i", TaskRef(("c", 0)), None, numblocks={"x": (2,)})
    built = z[("z", 1)]
    by_hand = Task(("z", 1), add, TaskRef(("x", 1)), TaskRef(("c", 0)))
    assert built == by_hand and tokenize(built) == tokenize(by_hand)
    assert built.dependency_tuple == by_hand.dependency_tuple == (("x", 1), ("c", 0))
    g = HighLevelGraph(
        {
            "x": {("x", i): DataNode(("x", i), i) for i in range(2)},
            "c": {("c", 0): DataNode(("c", 0), 100)},
            "z": z,
        }
    )
    assert get(g, ("z", 1)) == 101
