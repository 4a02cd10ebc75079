"""Tests for hlg.layers._fuse: each fusion rule on a small graph, and property tests."""

from __future__ import annotations

import functools
import operator
import pickle
from collections.abc import Iterator, Sequence
from operator import add, mul, neg
from typing import Any

import cloudpickle
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import hlg
import hlg._argspec
import hlg._task
from hlg import ArgSpec, HighLevelGraph, MaterializedLayer, Placeholder, Task, TaskRef
from hlg.layers import ArraySlice, BlockIndex, Blockwise, InputLayer, blockwise, fuse_blockwise


def first(block: tuple[int, ...]) -> int:
    return block[0]


def pair(a: Any, b: Any) -> tuple[Any, Any]:
    return (a, b)


def total(*args: Any) -> Any:
    """Sum of everything, nested lists included."""
    out = 0
    for a in args:
        out = out + (total(*a) if isinstance(a, list) else a)
    return out


def optimize(graph: HighLevelGraph, keys: Any, passes: Sequence[Any] | None = None) -> Any:
    return hlg.optimize(
        graph, keys, passes=[fuse_blockwise] if passes is None else passes, explain=True
    )


def graph_of(*layer_list: hlg.Layer, deps: dict[str, list[str]] | None = None) -> HighLevelGraph:
    return HighLevelGraph({lay.name: lay for lay in layer_list}, deps or {})


def src(name: str = "x", n: int = 4, annotations: Any = None) -> Blockwise:
    """Block i of ``name`` is i."""
    return blockwise(first, name, "i", BlockIndex((n,)), "i", layer_annotations=annotations)


def unary(func: Any, name: str, dep: str, n: int = 4, annotations: Any = None) -> Blockwise:
    return blockwise(
        func, name, "i", dep, "i", numblocks={dep: (n,)}, layer_annotations=annotations
    )


def same_results(a: HighLevelGraph, b: HighLevelGraph, keys: list[Any]) -> Any:
    left, right = hlg.get(a, keys), hlg.get(b, keys)
    assert left == right
    return left


# -- the rules, one by one ----------------------------------------------------------------


def test_chain_fuses_into_one_layer_with_one_template() -> None:
    x = src()
    y = unary(neg, "y", "x")
    z = blockwise(mul, "z", "i", "y", "i", 3, None, numblocks={"y": (4,)})
    g = graph_of(x, y, z, deps={"y": ["x"], "z": ["y"]})
    keys = list(z)
    fused, messages = optimize(g, keys)
    assert messages == []
    assert list(fused.layers) == ["z"]
    assert fused.dependencies == {"z": frozenset()}
    layer = fused.layers["z"]
    assert isinstance(layer, Blockwise) and layer.name == "z" and list(layer) == keys
    assert layer.template == ArgSpec(mul, ArgSpec(neg, ArgSpec(first, Placeholder(0))), 3)
    assert layer.indices == ((BlockIndex((4,)), ("i",)),)
    assert same_results(fused, g, keys) == [0, -3, -6, -9]
    for key in keys:
        assert layer.dependencies(key) == frozenset()
    # the input graph is left alone
    assert list(g.layers) == ["x", "y", "z"] and g.layers["z"] is z


def test_chain_with_upstream_materialized_layer() -> None:
    base = MaterializedLayer({("b", i): Task(("b", i), add, i, 10) for i in range(3)}, name="b")
    y = unary(neg, "y", "b", n=3)
    z = unary(abs, "z", "y", n=3)
    g = graph_of(base, y, z, deps={"y": ["b"], "z": ["y"]})
    fused, messages = optimize(g, list(z))
    assert messages == []
    assert list(fused.layers) == ["b", "z"]
    assert fused.dependencies["z"] == {"b"}
    assert fused.layers["z"].dependencies(("z", 2)) == {("b", 2)}
    assert same_results(fused, g, list(z)) == [10, 11, 12]
    fused.validate()


def test_a_dependent_the_keys_do_not_need_does_not_block_fusion() -> None:
    x = src()
    y = unary(neg, "y", "x")
    a = unary(abs, "a", "y")
    b = blockwise(mul, "b", "i", "y", "i", 2, None, numblocks={"y": (4,)})
    unused = unary(neg, "u", "b")  # reads b, which only the unrequested b reads
    g = graph_of(x, y, a, b, unused, deps={"y": ["x"], "a": ["y"], "b": ["y"], "u": ["b"]})
    keys = list(a)
    fused, messages = optimize(g, keys)
    assert messages == []
    assert list(fused.layers) == ["a"]  # b (and u reading it) dropped: nothing needs them
    assert same_results(fused, g, keys) == [0, 1, 2, 3]
    fused.validate()
    # fuse, then cull: the same result as cull, then fuse
    culled_first, _ = optimize(hlg.cull(g, keys), keys)
    assert list(culled_first.layers) == list(hlg.cull(fused, keys).layers) == ["a"]


def test_stops_at_a_layer_with_several_dependents() -> None:
    x = src()
    y = unary(neg, "y", "x")
    a = unary(abs, "a", "y")
    b = blockwise(mul, "b", "i", "y", "i", 2, None, numblocks={"y": (4,)})
    g = graph_of(x, y, a, b, deps={"y": ["x"], "a": ["y"], "b": ["y"]})
    keys = [*a, *b]
    fused, messages = optimize(g, keys)
    assert sorted(fused.layers) == ["a", "b", "y"]
    assert "fuse_blockwise: not fusing 'y' into 'a': it has several dependents (a, b)" in messages
    assert "fuse_blockwise: not fusing 'y' into 'b': it has several dependents (a, b)" in messages
    assert fused.layers["y"].template == ArgSpec(neg, ArgSpec(first, Placeholder(0)))
    assert fused.dependencies == {"y": frozenset(), "a": {"y"}, "b": {"y"}}
    assert same_results(fused, g, keys) == [0, 1, 2, 3, 0, -2, -4, -6]


def test_stops_at_a_requested_output_layer() -> None:
    x = src()
    y = unary(neg, "y", "x")
    z = unary(abs, "z", "y")
    g = graph_of(x, y, z, deps={"y": ["x"], "z": ["y"]})
    keys = [("z", 1), ("y", 2)]
    fused, messages = optimize(g, keys)
    assert messages == ["fuse_blockwise: not fusing 'y' into 'z': its keys are requested outputs"]
    assert list(fused.layers) == ["y", "z"]  # x still fused into y
    assert same_results(fused, g, keys) == [1, -2]
    # and then culling keeps what the keys need
    culled, _ = optimize(g, keys, passes=[fuse_blockwise, hlg.cull])
    assert sorted(culled) == [("y", 1), ("y", 2), ("z", 1)]
    assert same_results(culled, g, keys) == [1, -2]


def test_stops_where_the_consumer_contracts() -> None:
    y = blockwise(sum, "y", "ij", BlockIndex((2, 3)), "ij")
    s = blockwise(total, "s", "i", "y", "ij", numblocks={"y": (2, 3)})
    g = graph_of(y, s, deps={"s": ["y"]})
    fused, messages = optimize(g, list(s))
    assert messages == [
        "fuse_blockwise: not fusing 'y' into 's': the consumer contracts over it "
        "(a reduction boundary)"
    ]
    assert list(fused.layers) == ["y", "s"]
    assert same_results(fused, g, list(s)) == [3, 6]


def sum_of_sums(blocks: list[tuple[int, ...]]) -> int:
    return sum(sum(b) for b in blocks)


def test_stops_at_a_producer_that_contracts() -> None:
    p = blockwise(sum_of_sums, "p", "i", BlockIndex((2, 3)), "ij")
    q = unary(neg, "q", "p", n=2)
    g = graph_of(p, q, deps={"q": ["p"]})
    fused, messages = optimize(g, list(q))
    assert messages == [
        "fuse_blockwise: not fusing 'p' into 'q': it contracts over its inputs "
        "(a reduction boundary)"
    ]
    assert list(fused.layers) == ["p", "q"]
    assert same_results(fused, g, list(q)) == [-3, -6]


def test_stops_where_the_consumer_contracts_with_concatenate() -> None:
    y = blockwise(np.full, "y", "ij", (2, 2), None, BlockIndex((2, 3)), "ij")
    s = blockwise(np.sum, "s", "i", "y", "ij", numblocks={"y": (2, 3)}, concatenate=True, axis=1)
    g = graph_of(y, s, deps={"s": ["y"]})
    fused, messages = optimize(g, list(s))
    assert "the consumer contracts over it" in messages[0]
    got = hlg.get(fused, list(s))
    np.testing.assert_array_equal(got, hlg.get(g, list(s)))
    # block (0, j) is [[0, j], [0, j]]; row sums over j = 0, 1, 2
    np.testing.assert_array_equal(got[0], [3, 3])
    np.testing.assert_array_equal(got[1], [6, 6])


def test_stops_at_an_input_read_with_different_index_patterns() -> None:
    y = blockwise(sum, "y", "ij", BlockIndex((3, 3)), "ij")
    z = blockwise(operator.sub, "z", "ij", "y", "ij", "y", "ji", numblocks={"y": (3, 3)})
    g = graph_of(y, z, deps={"z": ["y"]})
    fused, messages = optimize(g, list(z))
    assert messages == [
        "fuse_blockwise: not fusing 'y' into 'z': the consumer reads it with different "
        "index patterns (ij, ji)"
    ]
    assert list(fused.layers) == ["y", "z"]
    assert same_results(fused, g, list(z)) == [0] * 9


def test_stops_at_an_input_read_twice() -> None:
    y = src("y", 3)
    z = blockwise(add, "z", "i", "y", "i", "y", "i", numblocks={"y": (3,)})
    g = graph_of(y, z, deps={"z": ["y"]})
    fused, messages = optimize(g, list(z))
    assert messages == ["fuse_blockwise: not fusing 'y' into 'z': the consumer reads it twice (i)"]
    assert same_results(fused, g, list(z)) == [0, 2, 4]


def test_stops_at_a_constant_reference_to_the_producer() -> None:
    y = src("y", 3)
    z = blockwise(add, "z", "i", "y", "i", TaskRef(("y", 0)), None, numblocks={"y": (3,)})
    g = graph_of(y, z, deps={"z": ["y"]})
    fused, messages = optimize(g, list(z))
    assert messages == [
        "fuse_blockwise: not fusing 'y' into 'z': the consumer also reads it through a "
        "constant reference"
    ]
    assert same_results(fused, g, list(z)) == [0, 1, 2]


def test_stops_at_different_annotations() -> None:
    x = src(annotations={"retries": 2})
    y = unary(neg, "y", "x", annotations={"retries": 2})
    with hlg.annotate(priority=5):
        z = unary(abs, "z", "y")
    g = graph_of(x, y, z, deps={"y": ["x"], "z": ["y"]})
    fused, messages = optimize(g, list(z))
    assert messages == [
        "fuse_blockwise: not fusing 'y' into 'z': annotations differ "
        "({'retries': 2} vs {'priority': 5})"
    ]
    assert list(fused.layers) == ["y", "z"]  # x (same annotations) fused into y
    assert fused.layers["y"].annotations == {"retries": 2}
    assert fused.layers["z"].annotations == {"priority": 5}
    assert same_results(fused, g, list(z)) == [0, 1, 2, 3]


def test_equal_annotations_fuse_and_are_kept() -> None:
    with hlg.annotate(resources={"GPU": 1}):
        x = src()
        y = unary(neg, "y", "x")
    g = graph_of(x, y, deps={"y": ["x"]})
    fused, messages = optimize(g, list(y))
    assert messages == [] and list(fused.layers) == ["y"]
    assert fused.layers["y"].annotations == {"resources": {"GPU": 1}}


def test_fuses_a_culled_producer_that_keeps_what_the_consumer_reads() -> None:
    x = src()
    y = unary(neg, "y", "x")
    z = unary(abs, "z", "y")
    g = graph_of(x, y, z, deps={"y": ["x"], "z": ["y"]})
    keys = [("z", 1)]
    fused, messages = optimize(g, keys, passes=[hlg.cull, fuse_blockwise])
    assert messages == [] and len(fused.layers) == 1 and list(fused) == keys
    assert same_results(fused, g, keys) == [1]
    # fusing first, then culling, gives the same one small layer
    good, messages = optimize(g, keys, passes=[fuse_blockwise, hlg.cull])
    assert messages == [] and len(good.layers) == 1 and list(good) == keys
    assert same_results(good, g, keys) == [1]


def test_stops_at_a_producer_culled_below_what_the_consumer_reads() -> None:
    x = src()
    y = unary(neg, "y", "x")
    z = unary(abs, "z", "y")
    small = graph_of(x, y, deps={"y": ["x"]}).cull([("y", 1)])
    g = HighLevelGraph({**small.layers, "z": z}, {**small.dependencies, "z": small.output_layers()})
    fused, messages = optimize(g, [("z", 0)])
    (message,) = messages
    assert message.startswith("fuse_blockwise: not fusing 'y-cull-")
    assert message.endswith("into 'z': it is culled to fewer blocks than the consumer reads")
    assert len(fused.layers) == 2  # x fused into the culled y, which z cannot absorb


def test_stops_at_a_producer_that_adds_axes() -> None:
    p = blockwise(first, "p", "ij", BlockIndex((2,)), "i", new_axes={"j": 1})
    q = blockwise(neg, "q", "ij", "p", "ij", numblocks={"p": (2, 1)})
    g = graph_of(p, q, deps={"q": ["p"]})
    fused, messages = optimize(g, list(q))
    assert messages == ["fuse_blockwise: not fusing 'p' into 'q': it adds new axes"]
    assert same_results(fused, g, list(q)) == [0, -1]


def test_stops_where_block_counts_differ() -> None:
    p = src("p", 1)
    q = blockwise(pair, "q", "i", "p", "i", BlockIndex((3,)), "i", numblocks={"p": (1,)})
    g = graph_of(p, q, deps={"q": ["p"]})
    fused, messages = optimize(g, list(q))
    assert messages == []  # a broadcast producer fuses
    assert same_results(fused, g, list(q)) == [(0, (0,)), (0, (1,)), (0, (2,))]
    # a consumer that expects other counts than the producer has
    bad = blockwise(neg, "q", "i", "p", "i", numblocks={"p": (4,)})
    fused, messages = optimize(graph_of(p, bad, deps={"q": ["p"]}), [("q", 0)])
    assert messages == [
        "fuse_blockwise: not fusing 'p' into 'q': block counts differ (the consumer "
        "expects (4,), the producer has (1,))"
    ]


def test_unculled_broadcast_producer_fuses_into_a_culled_consumer() -> None:
    p = src("p", 1)
    q = blockwise(pair, "q", "i", "p", "i", BlockIndex((3,)), "i", numblocks={"p": (1,)})
    g = graph_of(p, q, deps={"q": ["p"]})
    fused, messages = optimize(g, [("q", 2)], passes=[hlg.cull, fuse_blockwise])
    assert messages == []
    (layer,) = fused.layers.values()
    assert layer.name.startswith("q-cull-") and set(layer.output_blocks) == {(2,)}
    assert list(fused) == [("q", 2)]
    assert hlg.get(fused, ("q", 2)) == (0, (2,))


def test_fused_layer_pickles() -> None:
    x = src()
    y = unary(neg, "y", "x")
    z = blockwise(mul, "z", "i", "y", "i", 3, None, numblocks={"y": (4,)})
    fused = fuse_blockwise(graph_of(x, y, z, deps={"y": ["x"], "z": ["y"]}), [("z", 0)])
    layer = fused.layers["z"]
    for dumps in (pickle.dumps, cloudpickle.dumps):
        copy = pickle.loads(dumps(layer))
        assert copy.template == layer.template
        assert copy.materialize() == layer.materialize()
        assert [copy[k]({}) for k in copy] == [0, -3, -6, -9]


def test_input_layer_fuses_into_its_consumer() -> None:
    read = InputLayer("read", str.upper, ["a", "b", "c"])
    up = blockwise(operator.add, "up", "i", "read", "i", "!", None, numblocks={"read": (3,)})
    g = graph_of(read, up, deps={"up": ["read"]})
    fused, messages = optimize(g, list(up))
    assert messages == [] and list(fused.layers) == ["up"]
    layer = fused.layers["up"]
    assert layer.kind == "blockwise"
    assert layer.template == ArgSpec(operator.add, ArgSpec(str.upper, Placeholder(0)), "!")
    assert same_results(fused, g, list(up)) == ["A!", "B!", "C!"]


def test_input_layer_transposed_into_a_2d_consumer() -> None:
    read = InputLayer("read", first, [(0,), (1,), (2,)])
    z = blockwise(pair, "z", "ij", "read", "j", BlockIndex((2, 3)), "ij", numblocks={"read": (3,)})
    g = graph_of(read, z, deps={"z": ["read"]})
    fused, messages = optimize(g, list(z))
    assert messages == [] and list(fused.layers) == ["z"]
    result = same_results(fused, g, list(z))
    assert result == [(j, (i, j)) for i in range(2) for j in range(3)]


def test_tree_fuses_fully() -> None:
    a = src("a", 3)
    b = blockwise(mul, "b", "i", BlockIndex((3,)), "i", 2, None)
    pa = unary(neg, "pa", "a", n=3)
    pb = blockwise(len, "pb", "i", "b", "i", numblocks={"b": (3,)})
    c = blockwise(add, "c", "i", "pa", "i", "pb", "i", numblocks={"pa": (3,), "pb": (3,)})
    g = graph_of(a, b, pa, pb, c, deps={"pa": ["a"], "pb": ["b"], "c": ["pa", "pb"]})
    fused, messages = optimize(g, list(c))
    assert messages == []
    assert list(fused.layers) == ["c"]
    layer = fused.layers["c"]
    assert len(layer.indices) == 2  # the two providers
    assert layer.template.nholes == 2
    assert same_results(fused, g, list(c)) == [2, 1, 0]


def test_transposed_chain_fuses_with_correct_values() -> None:
    x = blockwise(tuple, "x", "ij", BlockIndex((2, 3)), "ij")
    y = blockwise(tuple, "y", "ij", "x", "ji", numblocks={"x": (2, 3)})  # shape (3, 2)
    z = blockwise(
        operator.add, "z", "ij", "y", "ji", BlockIndex((2, 3)), "ij", numblocks={"y": (3, 2)}
    )
    g = graph_of(x, y, z, deps={"y": ["x"], "z": ["y"]})
    fused, messages = optimize(g, list(z))
    assert messages == [] and list(fused.layers) == ["z"]
    assert fused.layers["z"].indices == (
        (BlockIndex((2, 3)), ("i", "j")),
        (BlockIndex((2, 3)), ("i", "j")),
    )
    assert same_results(fused, g, list(z)) == [(i, j, i, j) for i in range(2) for j in range(3)]


def test_diagonal_read_of_a_producer() -> None:
    x = blockwise(tuple, "x", "ij", BlockIndex((3, 3)), "ji")
    d = blockwise(tuple, "d", "i", "x", "ii", numblocks={"x": (3, 3)})
    g = graph_of(x, d, deps={"d": ["x"]})
    fused, messages = optimize(g, list(d))
    assert messages == [] and list(fused.layers) == ["d"]
    assert same_results(fused, g, list(d)) == [(0, 0), (1, 1), (2, 2)]


def test_fusion_keeps_keyword_references_and_layer_dependencies() -> None:
    base = MaterializedLayer({"c": hlg.DataNode("c", 100)}, name="const")
    x = src()
    y = blockwise(add, "y", "i", "x", "i", TaskRef("c"), None, numblocks={"x": (4,)})
    z = unary(neg, "z", "y")
    g = graph_of(base, x, y, z, deps={"y": ["x", "const"], "z": ["y"]})
    fused, messages = optimize(g, list(z))
    assert messages == [] and list(fused.layers) == ["const", "z"]
    assert fused.dependencies["z"] == {"const"}
    assert all(fused.layers["z"].dependencies(k) == {"c"} for k in z)
    assert same_results(fused, g, list(z)) == [-100, -101, -102, -103]
    fused.validate()


def test_fuse_on_a_graph_without_blockwise_layers() -> None:
    m = MaterializedLayer({"a": hlg.DataNode("a", 1)}, name="m")
    g = graph_of(m)
    fused, messages = optimize(g, ["a"])
    assert list(fused.layers) == ["m"] and messages == []


# -- cost does not depend on the number of blocks -----------------------------------------


def chain(n: int) -> HighLevelGraph:
    x = blockwise(first, "x", "i", BlockIndex((n,)), "i")
    y = blockwise(neg, "y", "i", "x", "i", numblocks={"x": (n,)})
    z = blockwise(
        add, "z", "i", "y", "i", 5, None, numblocks={"y": (n,)}, layer_annotations={"a": 1}
    )
    y = y.with_annotations(a=1)
    x = x.with_annotations(a=1)
    return graph_of(x, y, z, deps={"y": ["x"], "z": ["y"]})


@pytest.fixture
def no_iteration(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Fail if a task is built or a Blockwise layer's keys are listed."""

    def forbidden(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("fusion must not build tasks or list keys")

    monkeypatch.setattr(hlg._task, "_rebuild_task", forbidden)
    monkeypatch.setattr(hlg._argspec, "_rebuild_task", forbidden)
    monkeypatch.setattr(Blockwise, "__iter__", forbidden)
    monkeypatch.setattr(Blockwise, "materialize", forbidden)
    yield


def test_fused_template_does_not_depend_on_block_count(no_iteration: None) -> None:
    small = fuse_blockwise(chain(10), [("z", 0)])
    large = fuse_blockwise(chain(10**6), [("z", 0)])
    assert list(small.layers) == list(large.layers) == ["z"]
    s, big = small.layers["z"], large.layers["z"]
    assert s.template == big.template
    assert s.output_indices == big.output_indices
    assert [ind for _, ind in s.indices] == [ind for _, ind in big.indices]
    assert s.shape == (10,) and big.shape == (10**6,)
    assert big.annotations == {"a": 1}


def test_large_fused_layer_builds_one_task() -> None:
    large = fuse_blockwise(chain(10**6), [("z", 999_999)])
    assert hlg.get(large, ("z", 999_999)) == -999_994
    assert len(large) == 10**6


# -- property: random chains and trees of elementwise layers ------------------------------


def take(slices: tuple[slice, ...], whole: np.ndarray) -> np.ndarray:
    return whole[slices]


OPS = {"add": np.add, "sub": np.subtract, "mul": np.multiply}


def combine(op: str, flags: tuple[bool, ...], *blocks: np.ndarray) -> np.ndarray:
    blocks_t = [b.T if t else b for b, t in zip(blocks, flags)]
    return functools.reduce(OPS[op], blocks_t)


@st.composite
def elementwise_graphs(draw: Any) -> tuple[HighLevelGraph, str, np.ndarray, tuple[int, ...]]:
    """A random DAG of 2-d elementwise layers; returns graph, root, oracle, root numblocks."""
    chunks = tuple(draw(st.lists(st.integers(1, 2), min_size=1, max_size=3)))
    notes = st.sampled_from([{}, {}, {"priority": 1}])
    rng = np.random.default_rng(draw(st.integers(0, 2**16)))
    arrays: dict[str, np.ndarray] = {}
    built: dict[str, Blockwise] = {}
    deps: dict[str, list[str]] = {}
    n_leaves = draw(st.integers(1, 3))
    for k in range(n_leaves):
        form = draw(st.sampled_from(["full", "full", "row", "col"]))
        shape_chunks = {
            "full": (chunks, chunks),
            "row": ((1,), chunks),
            "col": (chunks, (1,)),
        }[form]
        shape = tuple(sum(c) for c in shape_chunks)
        whole = rng.integers(-5, 5, size=shape)
        name = f"leaf{k}"
        built[name] = blockwise(
            take,
            name,
            "ij",
            ArraySlice(shape_chunks),
            "ij",
            whole,
            None,
            layer_annotations=draw(notes),
        )
        arrays[name] = whole
        deps[name] = []
    for k in range(draw(st.integers(1, 5))):
        names = list(built)
        n_children = draw(st.integers(1, 2))
        # mostly read recent layers (chains), sometimes older ones (shared producers)
        children = [
            draw(st.sampled_from(names[-2:] if draw(st.booleans()) else names))
            for _ in range(n_children)
        ]
        flags = tuple(draw(st.booleans()) for _ in children)
        op = draw(st.sampled_from(sorted(OPS)))
        pairs: list[Any] = [op, None, flags, None]
        for child, flag in zip(children, flags):
            pairs += [child, "ji" if flag else "ij"]
        name = f"op{k}"
        built[name] = blockwise(
            combine,
            name,
            "ij",
            *pairs,
            numblocks={c: built[c].shape for c in children},
            layer_annotations=draw(notes),
        )
        arrays[name] = functools.reduce(
            OPS[op], [arrays[c].T if f else arrays[c] for c, f in zip(children, flags)]
        )
        deps[name] = sorted(set(children))
    root = name
    graph = HighLevelGraph(built, deps)
    return graph, root, arrays[root], built[root].shape


def assemble(values: list[np.ndarray], shape: tuple[int, ...]) -> np.ndarray:
    rows = [values[i * shape[1] : (i + 1) * shape[1]] for i in range(shape[0])]
    return np.block(rows)


@given(elementwise_graphs(), st.data())
def test_fusion_preserves_results_and_annotations(case: Any, data: Any) -> None:
    graph, root, oracle, shape = case
    keys = list(graph.layers[root])
    optimized, messages = optimize(graph, keys)
    assert len(optimized.layers) <= len(graph.layers)
    assert root in optimized.layers
    for name, layer in optimized.layers.items():
        assert name in graph.layers
        assert layer.annotations == graph.layers[name].annotations
        assert list(layer) == list(graph.layers[name])
    optimized.validate()
    for m in messages:
        assert m.startswith("fuse_blockwise: not fusing ")
    original = hlg.get(graph, keys)
    fused = hlg.get(optimized, keys)
    for a, b in zip(original, fused):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(assemble(fused, shape), oracle)
    # fuse then cull, for some of the keys
    some = data.draw(st.lists(st.sampled_from(keys), min_size=1, max_size=3, unique=True))
    small, _ = optimize(graph, some, passes=[fuse_blockwise, hlg.cull])
    assert set(small) >= set(some)
    for a, b in zip(hlg.get(small, some), hlg.get(graph, some)):
        np.testing.assert_array_equal(a, b)
    for name, layer in small.layers.items():
        source = name.split("-cull-")[0]
        assert layer.annotations == graph.layers[source].annotations


@given(elementwise_graphs())
def test_every_unfused_producer_has_a_logged_reason(case: Any) -> None:
    graph, root, _, _ = case
    keys = list(graph.layers[root])
    stripped = HighLevelGraph(
        {n: _strip(lay) for n, lay in graph.layers.items()}, graph.dependencies
    )
    optimized, messages = optimize(stripped, keys)
    dependents = stripped.dependents()
    needed, stack = {root}, [root]
    while stack:
        for dep in stripped.dependencies[stack.pop()]:
            if dep not in needed:
                needed.add(dep)
                stack.append(dep)
    # every surviving non-root layer the keys need must have a reason to survive (the
    # pass does not fuse layers the keys do not need)
    for name in optimized.layers:
        if name == root or not dependents[name] or name not in needed:
            continue
        assert any(f"not fusing {name!r}" in m for m in messages), (name, messages)


def _strip(layer: Blockwise) -> Blockwise:
    new = layer.replace()
    new.annotations = hlg.Annotations({})
    return new


# -- property: general index patterns (contractions, broadcasting, new axes) ----------------


def collect(*args: Any) -> tuple[Any, ...]:
    return args


@st.composite
def pattern_graphs(draw: Any) -> tuple[HighLevelGraph, str]:
    """A random DAG of blockwise layers with arbitrary index patterns over BlockIndex leaves."""
    built: dict[str, Blockwise] = {}
    deps: dict[str, list[str]] = {}
    for k in range(draw(st.integers(1, 2))):
        ndim = draw(st.integers(1, 2))
        shape = tuple(draw(st.integers(1, 3)) for _ in range(ndim))
        letters = "".join(draw(st.permutations("ab"[:ndim])))
        name = f"leaf{k}"
        built[name] = blockwise(collect, name, "ab"[:ndim], BlockIndex(shape), letters)
        deps[name] = []
    for k in range(draw(st.integers(1, 4))):
        names = list(built)
        children = [names[-1]]  # mostly chains, sometimes trees and shared producers
        if draw(st.booleans()):
            children.append(draw(st.sampled_from(names)))
        out = "abc"[: draw(st.integers(1, 3))]
        pool = out + "xy" if draw(st.integers(0, 2)) == 0 else out
        dims: dict[str, int] = {}
        pairs: list[Any] = []
        for child in children:
            ind = []
            for n in built[child].shape:
                ok = [c for c in pool if c not in ind and (n == 1 or dims.get(c, 1) in (1, n))]
                if not ok:
                    break
                ind.append(draw(st.sampled_from(ok)))
                if n != 1:
                    dims[ind[-1]] = n
            else:
                pairs += [child, "".join(ind)]
        if not pairs:
            continue
        used = {c for ind in pairs[1::2] for c in ind}
        new_axes: dict[str, Any] = {}
        for c in out:
            if c not in used:
                new_axes[c] = draw(st.sampled_from([1, (2, 2), (1, 1, 1)]))
        if draw(st.booleans()):
            pairs = ["const", None, *pairs]
        name = f"op{k}"
        readers = sorted(set(pairs[::2]) - {"const"})
        built[name] = blockwise(
            collect,
            name,
            out,
            *pairs,
            numblocks={c: built[c].shape for c in readers},
            new_axes=new_axes,
        )
        deps[name] = readers
    root = list(built)[-1]
    return HighLevelGraph(built, deps), root


@given(pattern_graphs(), st.data())
def test_fusion_of_general_patterns_preserves_results(case: Any, data: Any) -> None:
    graph, root = case
    keys = list(graph.layers[root])
    optimized, _ = optimize(graph, keys)
    optimized.validate()
    assert hlg.get(optimized, keys) == hlg.get(graph, keys)
    for name, layer in optimized.layers.items():
        assert list(layer) == list(graph.layers[name])
    # request a key of some other layer too: it must survive
    other = data.draw(st.sampled_from(list(graph.layers)))
    extra = [*keys, next(iter(graph.layers[other]))]
    optimized, _ = optimize(graph, extra, passes=[fuse_blockwise, hlg.cull])
    assert hlg.get(optimized, extra) == hlg.get(graph, extra)
