"""Tests for hlg._get: the synchronous reference scheduler."""

from __future__ import annotations

import weakref
from operator import add
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hlg import (
    Alias,
    CycleError,
    DataNode,
    MissingKeyError,
    Task,
    TaskRef,
    get,
    toposort,
)


def inc(x: int) -> int:
    return x + 1


def total(*xs: int) -> int:
    return sum(xs)


def test_single_and_nested_keys() -> None:
    g = {
        "x": DataNode("x", 1),
        ("y", 0): Task(("y", 0), inc, TaskRef("x")),
        ("y", 1): Task(("y", 1), add, TaskRef(("y", 0)), TaskRef("x")),
        "z": Alias("z", ("y", 1)),
    }
    assert get(g, "z") == 3
    assert get(g, ("y", 0)) == 2
    assert get(g, [("y", 0), [["z"], "x"], []]) == [2, [[3], 1], []]


def test_missing_keys_are_named() -> None:
    g = {"y": Task("y", inc, TaskRef("x"))}
    with pytest.raises(MissingKeyError) as info:
        get(g, "y")
    assert str(info.value) == "key 'x' is not in the graph (needed by 'y')"
    with pytest.raises(MissingKeyError, match=r"key 'w' is not in the graph \(it was requested\)"):
        get(g, "w")


def test_cycle_is_reported_before_anything_runs() -> None:
    ran: list[str] = []

    def log(name: str, *deps: Any) -> str:
        ran.append(name)
        return name

    g = {
        "a": Task("a", log, "a"),
        "b": Task("b", log, "b", TaskRef("a"), TaskRef("d")),
        "c": Task("c", log, "c", TaskRef("b")),
        "d": Task("d", log, "d", TaskRef("c")),
        "e": Task("e", log, "e", TaskRef("a"), TaskRef("d")),
    }
    with pytest.raises(CycleError) as info:
        get(g, ["a", "e"])
    assert ran == []
    assert sorted(info.value.cycle) == ["b", "c", "d"]
    assert "the graph has a cycle: " in str(info.value)


def test_bad_graph_values() -> None:
    with pytest.raises(
        TypeError,
        match=r"graph value for key 'x' is of type tuple, not a graph node.*convert_legacy",
    ):
        get({"x": (inc, 1)}, "x")
    with pytest.raises(
        TypeError, match=r"graph value for key 'x' is of type int, not a graph node"
    ):
        get({"x": 1}, "x")
    with pytest.raises(ValueError, match="graph key 'x' holds a node whose key is 'y'"):
        get({"x": DataNode("y", 1)}, "x")
    with pytest.raises(TypeError, match="expected a key or a"):
        get({"x": DataNode("x", 1)}, {"x"})


def test_a_list_shaped_like_a_key_is_named() -> None:
    g = {("x", 0): DataNode(("x", 0), 1), "a": DataNode("a", 2)}
    with pytest.raises(
        TypeError,
        match=r"\['x', 0\] is a list, not a key: a key with indices is a tuple, \('x', 0\)",
    ):
        get(g, [["x", 0]])
    # lists of string keys and nested lists of keys stay lists of keys
    assert get(g, ["a", ("x", 0)]) == [2, 1]
    assert get(g, [["a"], [("x", 0)]]) == [[2], [1]]
    assert get(g, [["a", "a"]]) == [[2, 2]]


def test_exception_keeps_type_and_names_key() -> None:
    g = {"x": DataNode("x", 0), "y": Task("y", lambda v: 1 / v, TaskRef("x"))}
    with pytest.raises(ZeroDivisionError) as info:
        get(g, "y")
    assert any("'y'" in note for note in getattr(info.value, "__notes__", []))


class Blob:
    """A result whose lifetime the test can watch."""

    alive = 0
    peak = 0

    def __init__(self) -> None:
        Blob.alive += 1
        Blob.peak = max(Blob.peak, Blob.alive)
        weakref.finalize(self, Blob._gone)

    @staticmethod
    def _gone() -> None:
        Blob.alive -= 1


def step(prev: Blob | None) -> Blob:
    return Blob()


def test_intermediates_are_released() -> None:
    Blob.alive = Blob.peak = 0
    n = 200
    g: dict[Any, Any] = {("b", 0): Task(("b", 0), step, None)}
    for i in range(1, n):
        g[("b", i)] = Task(("b", i), step, TaskRef(("b", i - 1)))
    out = get(g, ("b", n - 1))
    assert isinstance(out, Blob)
    assert Blob.peak <= 2  # a chain holds at most the input and the output of one step
    del out
    assert Blob.alive == 0


def test_requested_intermediate_is_kept() -> None:
    g = {
        "a": DataNode("a", [1]),
        "b": Task("b", list, TaskRef("a")),
        "c": Task("c", len, TaskRef("b")),
    }
    assert get(g, ["c", "a", "b"]) == [1, [1], [1]]


def test_toposort_is_deterministic_depth_first() -> None:
    g = {
        "d": Task("d", total, TaskRef("b"), TaskRef("c")),
        "c": Task("c", total, TaskRef("a")),
        "b": Task("b", total, TaskRef("a")),
        "a": DataNode("a", 1),
    }
    assert list(toposort(g, ["d"])) == ["a", "b", "c", "d"]


@st.composite
def random_dags(draw: Any) -> tuple[dict[Any, Any], dict[Any, int]]:
    """A random DAG of sums over earlier keys, with its plain-Python evaluation."""
    n = draw(st.integers(1, 25))
    graph: dict[Any, Any] = {}
    expected: dict[Any, int] = {}
    keys: list[Any] = []
    for i in range(n):
        key = ("k", i) if draw(st.booleans()) else f"k{i}"
        if keys and draw(st.integers(0, 4)):
            deps = draw(st.lists(st.sampled_from(keys), min_size=1, max_size=4))
            const = draw(st.integers(-3, 3))
            if draw(st.booleans()):
                graph[key] = Task(key, total, const, *[TaskRef(d) for d in deps])
            else:
                graph[key] = Task(key, sum, [const, *[TaskRef(d) for d in deps]])
            expected[key] = const + sum(expected[d] for d in deps)
        elif keys and draw(st.booleans()):
            target = draw(st.sampled_from(keys))
            graph[key] = Alias(key, target)
            expected[key] = expected[target]
        else:
            value = draw(st.integers(-10, 10))
            graph[key] = DataNode(key, value)
            expected[key] = value
        keys.append(key)
    return graph, expected


@given(random_dags(), st.data())
def test_get_matches_plain_python(dag: Any, data: Any) -> None:
    graph, expected = dag
    wanted = data.draw(st.lists(st.sampled_from(list(graph)), min_size=1, max_size=5))
    assert get(graph, wanted) == [expected[k] for k in wanted]
    order = list(toposort(graph, wanted))
    position = {k: i for i, k in enumerate(order)}
    for key in order:
        assert all(position[d] < position[key] for d in graph[key].dependencies)
