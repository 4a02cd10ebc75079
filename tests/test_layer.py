"""Tests for hlg._layer: the Layer contract, its defaults, MaterializedLayer, annotations."""

from __future__ import annotations

import pickle
from collections.abc import Iterator
from operator import add
from typing import Any

import pytest

import hlg
from hlg import (
    Annotations,
    CulledLayer,
    DataNode,
    GraphNode,
    Layer,
    MaterializedLayer,
    Task,
    TaskRef,
)


class Running(Layer):
    """A minimal author-written layer: running sums, each key reads the previous one.

    Only ``__iter__`` and ``__getitem__`` are written; everything else is inherited.
    ``built`` counts task constructions.
    """

    kind = "running"

    def __init__(self, n: int, name: str = "run", **kw: Any) -> None:
        super().__init__(name, **kw)
        self.n = n
        self.built = 0

    def __iter__(self) -> Iterator[Any]:
        return ((self.name, i) for i in range(self.n))

    def __getitem__(self, key: Any) -> GraphNode:
        if not (
            isinstance(key, tuple)
            and len(key) == 2
            and key[0] == self.name
            and isinstance(key[1], int)
            and 0 <= key[1] < self.n
        ):
            raise KeyError(key)
        self.built += 1
        i = key[1]
        if i == 0:
            return Task(key, add, TaskRef(("base", 0)), 0)
        return Task(key, add, TaskRef((self.name, i - 1)), i)


def test_minimal_subclass_gets_correct_defaults() -> None:
    layer = Running(5)
    assert len(layer) == 5
    assert ("run", 4) in layer and ("run", 5) not in layer and "run" not in layer
    assert [1, 2] not in layer  # not a key: False, no error
    assert list(layer) == [("run", i) for i in range(5)]
    assert layer.prefixes == {"run"}
    assert layer.built == 0  # none of the above built a task
    assert layer.dependencies(("run", 3)) == {("run", 2)}
    assert layer.built == 1
    full = layer.materialize()
    assert len(full) == 5 and layer.built == 6
    values = {("base", 0): 100}
    for key in layer:
        values[key] = full[key](values)
    assert values[("run", 4)] == 100 + 0 + 1 + 2 + 3 + 4


def test_default_cull_keeps_the_closure_inside_the_layer() -> None:
    layer = Running(10)
    culled, external = layer.cull([("run", 2), ("other", 1)])
    assert isinstance(culled, CulledLayer)
    assert sorted(culled) == [("run", 0), ("run", 1), ("run", 2)]
    assert external == {("base", 0)}
    assert culled.name != layer.name and culled.name.startswith("run-cull-")
    assert culled.prefixes == {"run"}
    assert culled[("run", 1)] == layer[("run", 1)]
    with pytest.raises(KeyError):
        culled[("run", 5)]
    same, _ = layer.cull(list(layer))
    assert same is layer
    again, _ = Running(10).cull([("run", 2)])
    assert again.name == culled.name  # deterministic
    other, _ = Running(10).cull([("run", 3)])
    assert other.name != culled.name


def test_layer_equality_never_builds() -> None:
    a, b = Running(3), Running(3)
    assert a != b and a == a
    assert len({a, b}) == 2
    assert a.built == b.built == 0


def test_incomplete_subclass_says_what_is_missing() -> None:
    class Empty(Layer):
        pass

    with pytest.raises(NotImplementedError, match="Empty must implement __iter__"):
        list(Empty("e"))
    with pytest.raises(NotImplementedError, match="Empty must implement __getitem__"):
        Empty("e")["x"]
    with pytest.raises(TypeError, match="non-empty str"):
        Empty("")


def test_materialized_layer() -> None:
    tasks = {"a": DataNode("a", 1), ("b", 0): Task(("b", 0), add, TaskRef("a"), 1)}
    layer = MaterializedLayer(tasks)
    assert layer.name.startswith("materialized-")
    assert MaterializedLayer(dict(tasks)).name == layer.name
    assert layer.prefixes == {"a", "b"}
    assert layer.materialize() == tasks and layer.materialize() is not layer.tasks
    culled, external = layer.cull([("b", 0)])
    assert culled is layer and external == frozenset()
    only_a, _ = layer.cull(["a"])
    assert list(only_a) == ["a"] and isinstance(only_a, MaterializedLayer)
    with pytest.raises(TypeError, match=r"value for key .x. is of type tuple.*convert_legacy"):
        MaterializedLayer({"x": (add, 1, 2)})  # type: ignore[dict-item]
    with pytest.raises(ValueError, match="key 'x' holds a node whose key is 'y'"):
        MaterializedLayer({"x": DataNode("y", 1)})


def test_annotations_and_annotate() -> None:
    with hlg.annotate(retries=2):
        with hlg.annotate(priority=1, retries=3):
            inner = MaterializedLayer({"x": DataNode("x", 1)}, annotations={"workers": ["w1"]})
        outer = Running(2)
    plain = Running(2)
    assert inner.annotations == {"retries": 3, "priority": 1, "workers": ["w1"]}
    assert outer.annotations == {"retries": 2}
    assert plain.annotations == {}
    more = plain.with_annotations(resources={"GPU": 1})
    assert more.annotations == {"resources": {"GPU": 1}} and plain.annotations == {}
    with hlg.annotate(retries=9):
        culled, _ = inner.with_annotations(priority=5).cull(["x"])
    assert culled.annotations == {"retries": 3, "priority": 5, "workers": ["w1"]}
    with pytest.raises(TypeError, match="annotation 'priority' must be plain data"):
        Running(2, annotations={"priority": lambda key: 1})
    with pytest.raises(TypeError, match="dict keys must be str"):
        Annotations({"resources": {1: 2}})


def test_pickle_layers() -> None:
    layer = MaterializedLayer({"a": DataNode("a", 1)}, name="m", annotations={"retries": 1})
    back = pickle.loads(pickle.dumps(layer))
    assert back.name == "m" and back.tasks == layer.tasks and back.annotations == {"retries": 1}
    run = pickle.loads(pickle.dumps(Running(3)))
    assert list(run) == [("run", 0), ("run", 1), ("run", 2)]
