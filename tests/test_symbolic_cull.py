"""Symbolic culling on block sets agrees with the per-key cull, and enumerates no keys."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from typing import Any

import hypothesis.strategies as st
import pytest
from _spec import reachable
from hypothesis import given

import hlg
from hlg import BlockSet, HighLevelGraph, layers
from hlg.layers import BlockIndex, Blockwise

MOD = 2**61 - 1
LETTERS = "ijkl"


def fold(value: Any) -> int:
    """An order-sensitive digest of nested lists / tuples of ints."""
    if isinstance(value, (list, tuple)):
        acc = 17 + 5 * isinstance(value, list)
        for i, item in enumerate(value):
            acc = (acc * 1_000_003 + (i + 3) * fold(item)) % MOD
        return acc
    return int(value) % MOD


def mix(tag: int, *args: Any) -> int:
    return fold([tag, *args])


def box_keys(prefix: str, box: list[tuple[int, int]]) -> list[Any]:
    return [(prefix, *b) for b in itertools.product(*[range(s, e) for s, e in box])]


@st.composite
def blockwise_graphs(draw: Any) -> HighLevelGraph:
    """Random DAGs of Blockwise layers: transposes, contractions (including over every
    block), broadcasting, repeated indices (diagonals), new axes and 0-d layers."""
    dims = {c: draw(st.integers(1, 3)) for c in LETTERS}
    made: dict[str, Blockwise] = {}
    deps: dict[str, list[str]] = {}
    for k in range(draw(st.integers(1, 5))):
        name = f"l{k}"
        out = draw(st.lists(st.sampled_from(LETTERS), max_size=3, unique=True))
        pairs: list[Any] = []
        numblocks: dict[str, tuple[int, ...]] = {}
        reads: list[str] = []
        n_args = 0 if not made else draw(st.integers(1, 2))
        for _ in range(n_args):
            producer = made[draw(st.sampled_from(sorted(made)))]
            letters = []
            for count in producer.shape:
                ok = [c for c in LETTERS if count in (1, dims[c])]
                letters.append(draw(st.sampled_from(ok)))
            seen: dict[str, int] = {}
            if any(seen.setdefault(c, n) != n for c, n in zip(letters, producer.shape)):
                continue  # a repeated letter must see one block count
            pairs += [producer.output, "".join(letters)]
            numblocks[producer.output] = producer.shape
            reads.append(producer.name)
        if not pairs or draw(st.booleans()):
            letters = draw(st.lists(st.sampled_from(LETTERS), min_size=1, max_size=2, unique=True))
            pairs += [BlockIndex(tuple(dims[c] for c in letters)), "".join(letters)]
        covered = {c for ind in pairs[1::2] for c in ind}
        new_axes = {c: (1,) * dims[c] for c in out if c not in covered}
        made[name] = layers.blockwise(
            mix, name, "".join(out), k, None, *pairs, numblocks=numblocks, new_axes=new_axes
        )
        deps[name] = sorted(set(reads))
    return HighLevelGraph(dict(made), deps)


@st.composite
def selections(draw: Any, graph: HighLevelGraph) -> Any:
    """Keys to cull to: whole layers, random boxes, random key subsets, nested lists."""
    keys: list[Any] = []
    names = sorted(graph.layers)
    for name in draw(st.lists(st.sampled_from(names), min_size=1, max_size=3, unique=True)):
        layer = graph.layers[name]
        assert isinstance(layer, Blockwise)
        how = draw(st.sampled_from(["all", "box", "subset"]))
        if how == "all":
            keys.append(list(layer))
        elif how == "box":
            box = []
            for n in layer.shape:
                start = draw(st.integers(0, n - 1))
                box.append((start, draw(st.integers(start + 1, n))))
            keys.append(box_keys(name, box))
        else:
            every = list(layer)
            keys.append(draw(st.lists(st.sampled_from(every), min_size=1, max_size=len(every))))
    return keys if draw(st.booleans()) else [k for group in keys for k in group]


def oracle_closure(graph: HighLevelGraph, keys: list[Any]) -> set[Any]:
    """Every key the keys need, walked key by key through the original graph."""
    return reachable(keys, graph.key_dependencies)


def by_prefix(graph: HighLevelGraph) -> dict[str, set[Any]]:
    return {next(iter(layer.prefixes)): set(layer) for layer in graph.layers.values()}


@given(st.data())
def test_symbolic_cull_equals_per_key_cull(data: Any) -> None:
    graph = data.draw(blockwise_graphs())
    nested = data.draw(selections(graph))
    flat = list(_flat(nested))
    symbolic = graph.cull(nested)
    per_key = graph._cull(nested, symbolic=False)
    expected = oracle_closure(graph, flat)
    assert set(symbolic) == set(per_key) == expected
    assert len(symbolic) == len(expected)
    assert by_prefix(symbolic) == by_prefix(per_key)
    symbolic.validate()
    values = hlg.get(graph, flat)
    assert hlg.get(symbolic, flat) == hlg.get(per_key, flat) == values
    packed = hlg.unpack(hlg.pack(graph, nested))
    assert set(packed) == expected and sorted(packed.output_keys) == sorted(set(flat))
    assert hlg.get(packed, flat) == values
    again = packed.cull(nested)
    assert set(again) == expected and sorted(again.output_keys) == sorted(set(flat))


@given(st.data())
def test_layer_cull_blocks_equals_layer_cull(data: Any) -> None:
    graph = data.draw(blockwise_graphs())
    name = data.draw(st.sampled_from(sorted(graph.layers)))
    layer = graph.layers[name]
    assert isinstance(layer, Blockwise)
    (chosen,) = data.draw(selections(HighLevelGraph({name: layer}, {name: ()})).filter(bool))[:1]
    keys = chosen if isinstance(chosen, list) else [chosen]
    blocks = BlockSet.from_blocks([k[1:] for k in keys], len(layer.shape))
    culled, needs, external = layer.cull_blocks(blocks)
    reference, reference_external = layer.cull(keys)
    assert set(culled) == set(reference) == set(keys)
    needed = {(prefix, *b) for prefix, bs in needs.items() for b in bs} | external
    assert needed == reference_external
    if culled is not layer:  # a culled Blockwise keeps its blocks symbolically
        assert isinstance(culled, Blockwise) and culled.output_blocks == blocks


def _flat(keys: Any) -> Iterator[Any]:
    if isinstance(keys, list):
        for k in keys:
            yield from _flat(k)
    else:
        yield keys


# -- no key is enumerated when whole layers or boxes are kept ----------------------------


def chain(rows: int, cols: int) -> HighLevelGraph:
    """o (block index) -> a = o + 1 -> b = a * 2 -> total, a contraction over every block."""
    nb = (rows, cols)
    o = layers.blockwise(fold, "o", "ij", BlockIndex(nb), "ij")
    a = layers.blockwise(mix, "a", "ij", 1, None, "o", "ij", numblocks={"o": nb})
    b = layers.blockwise(mix, "b", "ij", 2, None, "a", "ij", numblocks={"a": nb})
    t = layers.blockwise(fold, "total", "", "b", "ij", numblocks={"b": nb})
    return HighLevelGraph(
        {"o": o, "a": a, "b": b, "total": t}, {"a": ["o"], "b": ["a"], "total": ["b"]}
    )


@pytest.fixture
def enumerations(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Record every per-key call a cull could make on Blockwise layers and block sets."""
    calls: list[str] = []

    def spy(cls: type, method: str) -> None:
        original = getattr(cls, method)

        def wrapper(self: Any, *args: Any, **kwargs: Any) -> Any:
            calls.append(f"{cls.__name__}.{method}")
            return original(self, *args, **kwargs)

        monkeypatch.setattr(cls, method, wrapper)

    for method in ("__iter__", "dependency_tuple", "dependencies", "cull", "__getitem__"):
        spy(Blockwise, method)
    spy(BlockSet, "__iter__")
    return calls


def test_keeping_everything_enumerates_no_key(enumerations: list[str]) -> None:
    graph = chain(300, 300)
    culled = graph.cull([("total",)])
    optimized = hlg.optimize(graph, [("total",)], [hlg.cull, layers.fuse_blockwise])
    packed = hlg.unpack(hlg.pack(optimized, [("total",)]))
    again = packed.cull([("total",)])
    assert enumerations == []
    assert list(culled.layers) == list(graph.layers)  # nothing dropped, nothing renamed
    assert list(again.layers) == ["b", "total"]


def test_keeping_a_box_enumerates_no_key(enumerations: list[str]) -> None:
    graph = chain(300, 300)
    row = box_keys("b", [(7, 8), (0, 300)])
    culled = graph.cull(row)
    packed = hlg.unpack(hlg.pack(graph, row))
    again = packed.cull(row)
    assert enumerations == []
    for g in (culled, packed.graph, again.graph):
        for name in ("o", "a", "b"):
            (layer,) = [lay for lay in g.layers.values() if name in lay.prefixes]
            assert isinstance(layer, Blockwise)
            assert layer.output_blocks is not None
            assert layer.output_blocks.boxes == (((7, 8), (0, 300)),)
    assert [what for what, _ in packed._outputs] == ["layer"]  # the culled layer is the row


def test_requested_boxes_are_recorded_as_boxes(enumerations: list[str]) -> None:
    graph = chain(300, 300)
    wanted = [box_keys("a", [(7, 8), (0, 300)]), box_keys("b", [(8, 9), (0, 300)])]
    packed = hlg.unpack(hlg.pack(graph, wanted))
    assert enumerations == []
    outputs = dict(packed._outputs)
    assert sorted(outputs) == ["box", "layer"] and outputs["layer"].startswith("b-cull-")
    name, box = outputs["box"]
    assert name.startswith("a-cull-") and box == BlockSet.box([(7, 8), (0, 300)])
    assert packed.graph.layers[name].output_blocks == BlockSet.box([(7, 9), (0, 300)])
    assert sorted(packed.output_keys) == sorted(wanted[0] + wanted[1])


def test_chain_values_after_symbolic_cull() -> None:
    graph = chain(3, 4)
    culled = graph.cull(("total",))
    assert hlg.get(culled, ("total",)) == hlg.get(
        graph._cull(("total",), symbolic=False), ("total",)
    )
    row = box_keys("b", [(1, 2), (0, 4)])
    assert len(graph.cull(row)) == 3 * 4
    assert hlg.get(graph.cull(row), row) == hlg.get(graph, row)


def test_cull_accepts_nested_key_lists() -> None:
    graph = chain(2, 3)
    nested = [[("b", i, j) for j in range(3)] for i in range(2)]  # __dask_keys__() shape
    assert set(graph.cull(nested)) == set(graph.cull([k for row in nested for k in row]))
    assert set(graph.cull([nested, [("total",)]])) == set(graph)


def test_missing_keys_are_named() -> None:
    graph = chain(2, 3)
    with pytest.raises(hlg.MissingKeyError, match=r"key \('b', 2, 0\) is not in the graph"):
        graph.cull([("b", 0, 0), ("b", 2, 0)])
    with pytest.raises(hlg.MissingKeyError, match=r"key \('b', 0\) is not in the graph"):
        graph.cull([("b", 0)])
    with pytest.raises(TypeError, match="expected a key or a"):
        graph.cull([("b", 0, 0), 3])


def test_a_layer_that_only_knows_keys_reads_blocks() -> None:
    """A per-key layer between block layers: blocks go to keys and back."""
    graph = chain(3, 3)
    reader = hlg.MaterializedLayer(
        {"r": hlg.Task("r", mix, 0, hlg.TaskRef(("b", 1, 2)), hlg.TaskRef(("b", 0, 0)))},
        name="r",
    )
    g = HighLevelGraph({**graph.layers, "r": reader}, {**graph.dependencies, "r": ["b"]})
    culled = g.cull("r")
    assert set(culled) == {"r"} | {(n, i, j) for n in "oab" for i, j in [(1, 2), (0, 0)]}
    assert hlg.get(culled, "r") == hlg.get(g, "r")


def test_keys_compare_by_value_and_order_does_not_matter() -> None:
    graph = chain(3, 4)
    assert set(graph.cull([("b", 1.0, 0)])) == set(graph.cull([("b", 1, 0)]))
    in_order = box_keys("b", [(0, 2), (1, 3)])
    shuffled = in_order[::-1] + in_order[:1]  # same box: reversed, one key twice
    assert graph.cull(shuffled).layers.keys() == graph.cull(in_order).layers.keys()
    with pytest.raises(hlg.MissingKeyError, match=r"\('b', 0\.5, 0\)"):
        graph.cull([("b", 0.5, 0)])


# -- tree reductions and shuffles read their input as ranges ------------------------------


def _parts(i: int) -> list[int]:
    return [i, i * 7 + 1, i * 13 + 2]


def _split(part: list[int], k: int, s: int) -> list[list[int]]:
    pieces: list[list[int]] = [[] for _ in range(k)]
    for x in part:
        pieces[x // k**s % k].append(x)
    return pieces


def _concat(pieces: list[list[int]]) -> list[int]:
    return sorted(x for piece in pieces for x in piece)


def reading_graph(n: int, nout: int, every: int) -> HighLevelGraph:
    """x (blockwise, 1-d) -> t = TreeReduction(x), s = Shuffle(x)."""
    x = layers.blockwise(lambda b: _parts(b[0]), "x", "i", BlockIndex((n,)), "i")
    t = layers.TreeReduction("t", "x", n, sum, sum, sum, split_every=every)
    s = layers.Shuffle("s", "x", n, nout, _split, _concat, max_branch=every)
    return HighLevelGraph({"x": x, "t": t, "s": s}, {"t": ["x"], "s": ["x"]})


@given(st.data())
def test_reductions_and_shuffles_cull_like_the_per_key_path(data: Any) -> None:
    n = data.draw(st.integers(1, 40))
    nout = data.draw(st.integers(1, 12))
    graph = reading_graph(n, nout, data.draw(st.integers(2, 5)))
    every = [k for name in ("t", "s") for k in graph.layers[name]]
    keys = data.draw(st.lists(st.sampled_from(every), min_size=1, max_size=6))
    symbolic, per_key = graph.cull(keys), graph._cull(keys, symbolic=False)
    assert set(symbolic) == set(per_key) == oracle_closure(graph, keys)
    assert hlg.get(symbolic, keys) == hlg.get(per_key, keys) == hlg.get(graph, keys)


def test_a_tree_sum_over_a_million_blocks_enumerates_no_key(enumerations: list[str]) -> None:
    graph = reading_graph(10**6, 4, 8)
    culled = graph.cull([("t", 0)])
    assert enumerations == []
    assert sorted(culled.layers) == ["t", "x"]  # both whole: nothing renamed
    part = graph.cull([("t-combine", 1, 3)])  # one subtree: a range of x
    (x_layer,) = [lay for lay in part.layers.values() if "x" in lay.prefixes]
    assert isinstance(x_layer, Blockwise) and x_layer.output_blocks == BlockSet.box([(24, 32)])
    shuffled = graph.cull([("s", 2)])
    assert sorted(n.split("-")[0] for n in shuffled.layers) == ["s", "x"]
    assert enumerations == []
