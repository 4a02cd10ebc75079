"""Two layers producing one key with different tasks: refused at construction, merge,
validate and pack, never computed."""

from __future__ import annotations

from operator import add, mul, neg
from typing import Any

import pytest

import hlg
from hlg import (
    DataNode,
    HighLevelGraph,
    LayerCollisionError,
    MaterializedLayer,
    Task,
    TaskRef,
    get,
    layers,
)


def source() -> HighLevelGraph:
    x = MaterializedLayer({("a", i): DataNode(("a", i), i) for i in range(4)}, name="a")
    return HighLevelGraph({"a": x})


def on_source(layer: Any) -> HighLevelGraph:
    return HighLevelGraph.from_collections(layer.name, layer, [source()])


def x_with(func: Any, name: str | None = None, annotations: Any = None) -> Any:
    return layers.blockwise(
        func,
        "x",
        "i",
        "a",
        "i",
        numblocks={"a": (4,)},
        layer_name=name,
        layer_annotations=annotations,
    )


def test_merge_of_two_blockwise_layers_named_alike_is_refused() -> None:
    one, two = on_source(x_with(neg)), on_source(x_with(abs))
    assert get(one, ("x", 1)) == -1 and get(two, ("x", 1)) == 1  # the oracle: each alone
    with pytest.raises(LayerCollisionError, match=r"two different layers are named 'x'"):
        HighLevelGraph.merge(one, two)


def test_merge_of_equal_layers_named_alike_keeps_one() -> None:
    merged = HighLevelGraph.merge(on_source(x_with(neg)), on_source(x_with(neg)))
    assert sorted(merged.layers) == ["a", "x"]
    assert len(merged) == 8 and get(merged, ("x", 3)) == -3


def test_layers_with_other_annotations_under_one_name_are_refused() -> None:
    with pytest.raises(LayerCollisionError, match="named 'x'"):
        HighLevelGraph.merge(
            on_source(x_with(neg)), on_source(x_with(neg, annotations={"retries": 2}))
        )


def test_layers_of_other_names_emitting_one_prefix_are_refused() -> None:
    first = x_with(neg, name="x-1")
    second = x_with(abs, name="x-2")
    with pytest.raises(
        LayerCollisionError, match=r"layers 'x-1' and 'x-2' both produce key \('x', 0\)"
    ):
        HighLevelGraph.merge(on_source(first), on_source(second))
    with pytest.raises(LayerCollisionError, match="'x-1' and 'x-2'"):
        HighLevelGraph({"a": source().layers["a"], "x-1": first, "x-2": second})


def test_a_culled_layer_and_another_layer_of_that_output_are_refused() -> None:
    kept = on_source(x_with(neg)).cull([("x", 1)])
    with pytest.raises(LayerCollisionError, match=r"both produce key \('x', 1\)"):
        HighLevelGraph.merge(kept, on_source(x_with(abs)))


def test_cullings_of_one_layer_merge_and_count_each_key_once() -> None:
    g = on_source(x_with(neg))
    merged = HighLevelGraph.merge(g.cull([("x", 0), ("x", 1)]), g.cull([("x", 1), ("x", 2)]))
    assert len(merged) == 6 and sorted(merged) == sorted(g.cull([("x", 0), ("x", 1), ("x", 2)]))
    assert [get(merged, ("x", i)) for i in range(3)] == [0, -1, -2]
    merged.validate()


def test_layers_holding_equal_tasks_for_one_key_do_not_collide() -> None:
    a = MaterializedLayer({"k": Task("k", add, 1, 2)}, name="A")
    b = MaterializedLayer({"k": Task("k", add, 1, 2), "m": DataNode("m", 0)}, name="B")
    g = HighLevelGraph({"A": a, "B": b})
    assert len(g) == 2 and get(g, "k") == 3


def test_disjoint_layers_sharing_a_prefix_do_not_collide() -> None:
    low = MaterializedLayer({("p", i): DataNode(("p", i), i) for i in range(3)}, name="low")
    high = MaterializedLayer({("p", i): DataNode(("p", i), i) for i in range(3, 6)}, name="high")
    g = HighLevelGraph({"low": low, "high": high})
    assert [get(g, ("p", i)) for i in range(6)] == list(range(6))


def colliding() -> HighLevelGraph:
    """A graph that was valid when built, then edited (``layers`` is a public dict)."""
    g = on_source(x_with(neg))
    assert get(g, ("x", 2)) == -2
    g.layers["x-again"] = x_with(mul, name="x-again")
    g.dependencies["x-again"] = frozenset({"a"})
    return g


def test_validate_refuses_a_collision_made_after_construction() -> None:
    with pytest.raises(LayerCollisionError, match="'x' and 'x-again' both produce key"):
        colliding().validate()


def test_pack_refuses_a_collision() -> None:
    with pytest.raises(LayerCollisionError, match="'x' and 'x-again'"):
        hlg.pack(colliding())
    with pytest.raises(LayerCollisionError, match="'x' and 'x-again'"):
        hlg.pack(colliding(), [("x", 1)])


def test_from_collections_refuses_a_collision() -> None:
    one = on_source(x_with(neg))
    other = MaterializedLayer({("x", 0): Task(("x", 0), add, TaskRef(("a", 0)), 1)}, name="y")
    with pytest.raises(LayerCollisionError, match="'x' and 'y' both produce key"):
        HighLevelGraph.from_collections("y", other, [one])


def test_a_collision_error_is_a_value_error() -> None:
    assert issubclass(LayerCollisionError, ValueError)


def test_cullings_of_one_layer_pack_and_unpack() -> None:
    g = on_source(x_with(neg))
    merged = HighLevelGraph.merge(g.cull([("x", 0), ("x", 1)]), g.cull([("x", 1), ("x", 2)]))
    packed = hlg.unpack(hlg.pack(merged))  # the scheduler side rebuilds both layers
    assert sorted(packed) == sorted(merged)
    assert hlg.get(packed, [("x", 1), ("x", 2)]) == [-1, -2]


def test_big_symbolic_layers_are_compared_by_validate_and_pack() -> None:
    """Construction does not walk two big symbolic layers (it also runs on the scheduler,
    in unpack); validate() and pack do, and refuse."""
    n = 110  # 12,100 blocks: above what construction walks
    x1 = layers.blockwise(neg, "x", "ij", layers.BlockIndex((n, n)), "ij", layer_name="x1")
    x2 = layers.blockwise(abs, "x", "ij", layers.BlockIndex((n, n)), "ij", layer_name="x2")
    g = HighLevelGraph({"x1": x1, "x2": x2})
    with pytest.raises(LayerCollisionError, match=r"'x1' and 'x2' both produce key \('x', 0, 0\)"):
        g.validate()
    with pytest.raises(LayerCollisionError, match="'x1' and 'x2'"):
        hlg.pack(g)
