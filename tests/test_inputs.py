"""Tests for hlg.layers._inputs: block providers, InputLayer and their use in blockwise."""

from __future__ import annotations

import itertools
import math
import pickle
from operator import getitem
from typing import Any

import cloudpickle
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import hlg
from hlg import TaskRef
from hlg.layers import (
    ArraySlice,
    BlockIndex,
    BlockProvider,
    BlockValues,
    Blockwise,
    ChunkShape,
    InputLayer,
    blockwise,
    normalize_chunks,
)

LETTERS = "ijk"


def collect(*args: Any, **kwargs: Any) -> Any:
    return (args, kwargs) if kwargs else args


def read(path: str, suffix: str = "") -> str:
    return f"data of {path}{suffix}"


def assemble(blocks: dict[tuple[int, ...], Any], numblocks: tuple[int, ...]) -> Any:
    """np.block of blocks keyed by block index."""

    def nest(prefix: tuple[int, ...]) -> Any:
        if len(prefix) == len(numblocks):
            return blocks[prefix]
        return [nest((*prefix, b)) for b in range(numblocks[len(prefix)])]

    return np.block(nest(()))


chunks_strategy = st.lists(
    st.lists(st.integers(0, 3), min_size=1, max_size=4).map(tuple), min_size=1, max_size=3
).map(tuple)


# -- providers against numpy ----------------------------------------------------------


@given(chunks_strategy)
def test_array_slices_reassemble_the_array(chunks: tuple[tuple[int, ...], ...]) -> None:
    shape = tuple(sum(c) for c in chunks)
    whole = np.arange(math.prod(shape)).reshape(shape)
    ind = LETTERS[: len(chunks)]
    layer = blockwise(getitem, "x", ind, whole, None, ArraySlice(chunks), ind)
    numblocks = tuple(len(c) for c in chunks)
    assert len(layer) == math.prod(numblocks)
    blocks = {}
    for key in layer:
        assert layer.dependencies(key) == frozenset()
        block = layer[key]({})
        assert block.shape == ChunkShape(chunks).value(key[1:])
        blocks[key[1:]] = block
    np.testing.assert_array_equal(assemble(blocks, numblocks), whole)


@given(chunks_strategy)
def test_provider_values_agree(chunks: tuple[tuple[int, ...], ...]) -> None:
    numblocks = tuple(len(c) for c in chunks)
    index, shapes, slices = BlockIndex(numblocks), ChunkShape(chunks), ArraySlice(chunks)
    assert index.numblocks == shapes.numblocks == slices.numblocks == numblocks
    starts = [np.cumsum((0, *c)) for c in chunks]
    for block in itertools.product(*map(range, numblocks)):
        assert index.value(block) == block
        shape = shapes.value(block)
        assert shape == tuple(chunks[d][b] for d, b in enumerate(block))
        sl = slices.value(block)
        assert all(type(s) is slice for s in sl)
        assert tuple(s.stop - s.start for s in sl) == shape
        assert tuple(s.start for s in sl) == tuple(int(starts[d][b]) for d, b in enumerate(block))


def test_doc_values() -> None:
    assert BlockIndex((2, 3)).value((1, 2)) == (1, 2)
    assert ChunkShape(((2, 2, 1), (3,))).value((2, 0)) == (1, 3)
    assert ArraySlice(((2, 2, 1), (3,))).value((1, 0)) == (slice(2, 4), slice(0, 3))
    assert ArraySlice(((2, 0, 1),)).value((1,)) == (slice(2, 2),)  # empty chunk
    assert BlockValues(["a", "b"]).value((1,)) == "b"


def test_ones_from_chunk_shape() -> None:
    chunks = ((2, 3), (1, 4, 2))
    layer = blockwise(np.ones, "x", "ij", ChunkShape(chunks), "ij")
    assert len(layer) == 6
    blocks = {}
    for key in layer:
        assert layer.dependencies(key) == frozenset()
        block = layer[key]({})
        i, j = key[1:]
        assert block.shape == (chunks[0][i], chunks[1][j])
        assert block.dtype == np.float64 and (block == 1).all()
        blocks[key[1:]] = block
    np.testing.assert_array_equal(assemble(blocks, (2, 3)), np.ones((5, 7)))
    assert hlg.get(hlg.HighLevelGraph({"x": layer}), ("x", 1, 2)).shape == (3, 2)


def test_provider_index_is_transposed_and_broadcast() -> None:
    layer = blockwise(collect, "z", "ij", BlockIndex((3, 2)), "ji")
    assert layer.shape == (2, 3)
    assert layer[("z", 1, 2)]({}) == ((2, 1),)
    bcast = blockwise(
        collect, "z", "ij", "x", "ij", BlockIndex((1, 2)), "ij", numblocks={"x": (3, 2)}
    )
    assert bcast.shape == (3, 2)
    assert bcast[("z", 2, 1)]({("x", 2, 1): "b"}) == ("b", (0, 1))
    assert bcast.dependencies(("z", 2, 1)) == {("x", 2, 1)}


def test_provider_contraction() -> None:
    chunks = ((2, 3), (1, 4, 2))
    layer = blockwise(collect, "z", "i", ArraySlice(chunks), "ij")
    assert layer[("z", 1)]({}) == (
        [(slice(2, 5), slice(0, 1)), (slice(2, 5), slice(1, 5)), (slice(2, 5), slice(5, 7))],
    )
    assert layer.dependencies(("z", 1)) == frozenset()


def test_providers_and_inputs_together() -> None:
    layer = blockwise(
        collect, "z", "ij", "x", "ij", ChunkShape(((1, 2), (3,))), "ij", numblocks={"x": (2, 1)}
    )
    assert layer[("z", 1, 0)]({("x", 1, 0): "blk"}) == ("blk", (2, 3))
    with pytest.raises(ValueError, match=r"index 'i' has 3 blocks .* but 2 in argument 1"):
        blockwise(collect, "z", "ij", "x", "ij", BlockIndex((2, 1)), "ij", numblocks={"x": (3, 1)})
    with pytest.raises(ValueError, match=r"argument 0 \(BlockIndex.*index 'i' has 1 letters"):
        blockwise(collect, "z", "i", BlockIndex((2, 1)), "i")


def test_zero_dimensional_provider() -> None:
    shape = ChunkShape([])
    assert shape.numblocks == () and shape.value(()) == ()
    layer = blockwise(collect, "z", "i", shape, "", BlockIndex((2,)), "i")
    assert [layer[k]({}) for k in layer] == [((), (0,)), ((), (1,))]
    contracted = blockwise(collect, "z", "i", ArraySlice([]), "", BlockIndex((2, 2)), "ij")
    assert contracted[("z", 1)]({}) == ((), [(1, 0), (1, 1)])


def test_custom_provider() -> None:
    class Squares(BlockProvider):
        kind = "squares"

        def __init__(self, n: int) -> None:
            self.numblocks = (n,)

        def value(self, block: tuple[int, ...]) -> int:
            return block[0] ** 2

        def _state(self) -> tuple[Any, ...]:
            return self.numblocks

    layer = blockwise(collect, "sq", "i", Squares(4), "i")
    assert [layer[k]({}) for k in layer] == [(0,), (1,), (4,), (9,)]
    with pytest.raises(NotImplementedError):
        BlockProvider().value((0,))


# -- bad arguments --------------------------------------------------------------------


@pytest.mark.parametrize("numblocks", [(0,), (2, -1), (1.0,), (True,), ("2",)], ids=repr)
def test_block_index_rejects_bad_counts(numblocks: Any) -> None:
    with pytest.raises(ValueError, match="BlockIndex numblocks must be ints >= 1"):
        BlockIndex(numblocks)


@pytest.mark.parametrize("cls", [ChunkShape, ArraySlice])
@pytest.mark.parametrize(
    "chunks", [[[2, -1]], [[]], [[2], [1.5]], [[True]], ["ab"], [[None]]], ids=repr
)
def test_chunk_providers_reject_bad_chunks(cls: Any, chunks: Any) -> None:
    with pytest.raises(ValueError, match=r"chunks along dimension \d must be non-negative ints"):
        cls(chunks)


@pytest.mark.parametrize("cls", [BlockIndex, ChunkShape, ArraySlice])
def test_providers_reject_non_sequences(cls: Any) -> None:
    with pytest.raises(TypeError):
        cls(5)


def test_normalize_chunks() -> None:
    assert normalize_chunks([[2, 2], (3,)]) == ((2, 2), (3,))
    with pytest.raises(ValueError, match=r"dimension 1 .*got \[\]"):
        normalize_chunks([[1], []])


def test_block_values_rejects_empty() -> None:
    with pytest.raises(ValueError, match="BlockValues needs at least one value"):
        BlockValues([])
    with pytest.raises(ValueError, match="BlockValues needs at least one value"):
        InputLayer("read", read, [])


def test_input_layer_bad_arguments() -> None:
    with pytest.raises(TypeError, match="ArgSpec func must be callable"):
        InputLayer("read", "not callable", ["a"])  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="a layer name must be a non-empty str"):
        InputLayer("", read, ["a"])


# -- equality, tokens, pickling -------------------------------------------------------


def test_provider_equality_hash_and_tokens() -> None:
    chunks = ((2, 2), (3,))
    assert ChunkShape(chunks) == ChunkShape([[2, 2], [3]])
    assert hash(ChunkShape(chunks)) == hash(ChunkShape([[2, 2], [3]]))
    assert ChunkShape(chunks) != ArraySlice(chunks)  # same state, another kind
    assert ChunkShape(chunks) != ChunkShape(((2, 2), (2, 1)))
    assert BlockIndex((2, 1)) == BlockIndex([2, 1]) != BlockIndex((1, 2))
    assert BlockValues(["a", "b"]) == BlockValues(("a", "b")) != BlockValues(["a"])
    assert hash(BlockValues(["a"])) == hash(BlockValues(["a"]))
    assert hlg.tokenize(ChunkShape(chunks)) == hlg.tokenize(ChunkShape([[2, 2], [3]]))
    assert hlg.tokenize(ChunkShape(chunks)) != hlg.tokenize(ArraySlice(chunks))
    assert hlg.tokenize(BlockIndex((2,))) != hlg.tokenize(BlockIndex((3,)))
    assert hlg.tokenize(BlockValues(["a"])) != hlg.tokenize(BlockValues(["b"]))
    assert repr(BlockIndex((2, 3))) == "BlockIndex((2, 3),)"
    assert repr(BlockValues(["a", "b"])) == "BlockValues(<2 values>)"


@pytest.mark.parametrize("dumps", [pickle.dumps, cloudpickle.dumps])
def test_providers_pickle(dumps: Any) -> None:
    providers = [
        BlockIndex((2, 3)),
        ChunkShape(((2, 0, 1), (3,))),
        ArraySlice(((2, 0, 1), (3,))),
        BlockValues(["a.csv", "b.csv", 3]),
    ]
    for provider in providers:
        copy = pickle.loads(dumps(provider))
        assert type(copy) is type(provider) and copy == provider
        assert copy.numblocks == provider.numblocks
        for block in itertools.product(*map(range, provider.numblocks)):
            assert copy.value(block) == provider.value(block)


# -- InputLayer -------------------------------------------------------------------------


def test_input_layer_keys_and_values() -> None:
    paths = ["a.csv", "b.csv", "c.csv"]
    layer = InputLayer("read", read, paths, suffix="!")
    assert isinstance(layer, Blockwise) and layer.kind == "input"
    assert layer.name == "read" and len(layer) == 3
    assert list(layer) == [("read", 0), ("read", 1), ("read", 2)]
    assert ("read", 3) not in layer and ("read", True) not in layer and "read" not in layer
    for i, key in enumerate(layer):
        assert layer.dependencies(key) == frozenset()
        assert layer[key]({}) == f"data of {paths[i]}!"
    g = hlg.HighLevelGraph({"read": layer})
    assert hlg.get(g, [("read", 2), ("read", 0)]) == ["data of c.csv!", "data of a.csv!"]


def test_input_layer_annotations_cull_and_pickle() -> None:
    layer = InputLayer("read", read, ["a", "b", "c", "d"], annotations={"retries": 3})
    assert layer.annotations == {"retries": 3}
    with hlg.annotate(priority=1):
        inside = InputLayer("read", read, ["a"])
    assert inside.annotations == {"priority": 1}
    culled, external = layer.cull([("read", 3), ("read", 1)])
    assert external == frozenset()
    assert list(culled) == [("read", 1), ("read", 3)]
    assert culled.kind == "input" and culled.annotations == {"retries": 3}
    assert culled.name != "read" and culled.prefixes == {"read"}
    assert culled[("read", 3)]({}) == "data of d"
    for dumps in (pickle.dumps, cloudpickle.dumps):
        copy = pickle.loads(dumps(culled))
        assert copy.kind == "input" and list(copy) == list(culled)
        assert copy.materialize() == culled.materialize()


def test_input_layer_taskref_kwarg_is_a_dependency() -> None:
    layer = InputLayer("read", read, ["a", "b"], suffix=TaskRef("ext"))
    for key in layer:
        assert layer.dependencies(key) == layer[key].dependencies == {"ext"}
    assert layer[("read", 1)]({"ext": ".csv"}) == "data of b.csv"


def test_input_layer_feeds_a_blockwise_consumer() -> None:
    src = InputLayer("read", read, ["a", "b"])
    up = blockwise(str.upper, "up", "i", "read", "i", numblocks={"read": (2,)})
    g = hlg.HighLevelGraph({"read": src, "up": up}, {"up": ["read"]})
    g.validate()
    assert hlg.get(g, [("up", 0), ("up", 1)]) == ["DATA OF A", "DATA OF B"]


def test_block_values_holds_opaque_objects() -> None:
    arrays = [np.arange(3), np.arange(3) * 2]
    layer = blockwise(np.sum, "s", "i", BlockValues(arrays), "i")
    assert [layer[k]({}) for k in layer] == [3, 6]
    assert hlg.tokenize(BlockValues(arrays)) == hlg.tokenize(BlockValues(arrays))


@pytest.mark.parametrize(
    "values",
    [[TaskRef("a"), TaskRef("b")], ["ok", [TaskRef("a")]], [{"k": TaskRef("a")}]],
    ids=["refs", "nested", "dict"],
)
def test_block_values_refuse_references(values: list[Any]) -> None:
    # regression: a TaskRef inside a BlockValues value used to reach the user function
    # on the fast path (no dependency) and to become a dependency on the contracted path
    # that layer.dependencies(key) did not report; references are now refused.
    bad = next(i for i, v in enumerate(values) if v != "ok")
    with pytest.raises(TypeError, match=f"BlockValues value {bad} holds a reference"):
        BlockValues(values)
    with pytest.raises(TypeError, match=f"BlockValues value {bad} holds a reference"):
        InputLayer("r", collect, values)
