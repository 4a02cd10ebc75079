"""Tests for hlg.testing: built-in kinds pass check_layer; each kind of lie is caught and named."""

from __future__ import annotations

import runpy
from collections.abc import Iterator
from operator import add
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import hlg
from hlg import BlockSet, DataNode, GraphNode, Key, Layer, MaterializedLayer, Task, TaskRef, layers
from hlg.testing import LayerCheckError, check_layer, no_unpickling

ROOT = Path(__file__).resolve().parents[1]


def builtin_layers() -> list[Layer]:
    x = layers.blockwise(np.ones, "x", "ij", layers.ChunkShape(((1,) * 3, (2,) * 4)), "ij")
    return [
        x,
        layers.blockwise(add, "t", "ij", "x", "ji", "x", "ij", numblocks={"x": (4, 4)}),
        layers.blockwise(sum, "s", "i", "x", "ij", numblocks={"x": (3, 4)}),
        layers.blockwise(add, "b", "ij", "x", "ij", "v", "j", numblocks={"x": (3, 4), "v": (1,)}),
        layers.InputLayer("read", str.upper, ["a", "b", "c"]),
        MaterializedLayer(
            {"a": DataNode("a", 1), "b": Task("b", add, TaskRef("a"), TaskRef("z"))}, name="m"
        ),
    ]


@pytest.mark.parametrize("layer", builtin_layers(), ids=lambda layer: layer.name)
def test_builtin_kinds_pass(layer: Layer) -> None:
    check_layer(layer)


def test_large_layer_is_sampled() -> None:
    n = 120
    x = layers.blockwise(add, "y", "ij", "x", "ij", 1, None, numblocks={"x": (n, n)})
    check_layer(x, max_keys=200)


def test_example_custom_layer_passes() -> None:
    namespace = runpy.run_path(str(ROOT / "examples" / "custom_layer.py"), run_name="example")
    check_layer(namespace["WindowSum"]("w", "numbers", 10, 3), pack=False)


class Counting(Layer):
    """A correct small layer whose methods the lies below override one at a time."""

    kind = "counting"

    def __init__(self, name: str = "c", n: int = 4) -> None:
        super().__init__(name)
        self.n = n

    def __iter__(self) -> Iterator[Key]:
        return ((self.name, i) for i in range(self.n))

    def __contains__(self, key: object) -> bool:
        return (
            type(key) is tuple
            and len(key) == 2
            and key[0] == self.name
            and type(key[1]) is int
            and 0 <= key[1] < self.n
        )

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, key: Key) -> GraphNode:
        if key not in self:
            raise KeyError(key)
        i: Any = key[1]
        deps = [TaskRef((self.name, i - 1))] if i else [TaskRef(("src", i))]
        return Task(key, sum, deps)


def test_the_correct_layer_passes() -> None:
    check_layer(Counting(), pack=False)


class WrongLen(Counting):
    def __len__(self) -> int:
        return self.n + 1


class WrongContains(Counting):
    def __contains__(self, key: object) -> bool:
        return isinstance(key, tuple)


class Duplicates(Counting):
    def __iter__(self) -> Iterator[Key]:
        yield from super().__iter__()
        yield (self.name, 0)


class WrongDependencies(Counting):
    def dependency_tuple(self, key: Key) -> tuple[Key, ...]:
        return ()


class WrongExternal(Counting):
    def cull(self, keys: Any) -> tuple[Layer, frozenset[Key]]:
        culled, _ = super().cull(keys)
        return culled, frozenset()


class KeepsAll(Counting):
    def cull(self, keys: Any) -> tuple[Layer, frozenset[Key]]:
        return self, frozenset({("src", 0)})


class WrongPrefixes(Counting):
    @property
    def prefixes(self) -> frozenset[str]:
        return frozenset({"other"})


class Blocks(Counting):
    """A layer of blocks with the default ``cull_blocks`` (enumerates, then culls)."""

    def block_set(self) -> BlockSet:
        return BlockSet.full((self.n,))


class BlocksWithoutReads(Blocks):
    def cull_blocks(self, blocks: BlockSet) -> tuple[Layer, dict[str, BlockSet], frozenset[Key]]:
        culled, _, _ = super().cull_blocks(blocks)
        return culled, {}, frozenset()


class BlocksKeepingAll(Blocks):
    def cull_blocks(self, blocks: BlockSet) -> tuple[Layer, dict[str, BlockSet], frozenset[Key]]:
        _, needs, external = super().cull_blocks(blocks)
        return self, needs, external


def test_a_layer_of_blocks_passes() -> None:
    check_layer(Blocks(), pack=False)


class WrongReads(Counting):
    def read_prefixes(self) -> frozenset[str]:
        return frozenset({"elsewhere"})  # forgets "src", which task 0 reads


class WrongKey(Counting):
    def __getitem__(self, key: Key) -> GraphNode:
        task = super().__getitem__(key)
        return Task(("elsewhere", 0), sum, [TaskRef(d) for d in task.dependency_tuple])


@pytest.mark.parametrize(
    ("layer", "message"),
    [
        (WrongLen(), "WrongLen 'c': __len__: says 5, iteration yields 4 keys"),
        (WrongContains(), "__contains__: says True for ('c\\x00absent', 0), which is not a key"),
        (Duplicates(), "__iter__: yields ('c', 0) twice"),
        (WrongDependencies(), "dependency_tuple(('c', 0)): says (), the task reads [('src', 0)]"),
        (WrongExternal(), "external keys [] differ from the kept tasks' reads [('src', 0)]"),
        (KeepsAll(), "keeps [('c', 3)] too much"),
        (WrongPrefixes(), "prefixes: misses ['c']"),
        (WrongKey(), "__getitem__(('c', 0)): builds a node keyed ('elsewhere', 0)"),
        (WrongReads(), "read_prefixes(): says ['elsewhere'], but the task of ('c', 0) reads"),
        (
            BlocksWithoutReads(),
            "cull_blocks([('c', 0), ('c', 1), ('c', 2), ('c', 3)]): reads [], but cull says "
            "[('src', 0)]",
        ),
        (BlocksKeepingAll(), ")]): keeps other keys than cull"),
    ],
    ids=lambda v: type(v).__name__ if isinstance(v, Layer) else "",
)
def test_each_lie_is_named(layer: Layer, message: str) -> None:
    with pytest.raises(LayerCheckError) as info:
        check_layer(layer, pack=False)
    assert message in str(info.value)


def test_pack_round_trip_runs_without_unpickling() -> None:
    # Packing an unregistered kind falls back to per-task payloads (with a warning).
    class Unregistered(Counting):
        kind = "unregistered"

    with pytest.warns(UserWarning, match="no registered layer kind packs"):
        check_layer(Unregistered(name="packed"))


def test_not_a_layer() -> None:
    with pytest.raises(TypeError, match=r"check_layer needs an hlg\.Layer; got dict"):
        check_layer({})  # type: ignore[arg-type]


def test_no_unpickling_blocks_every_entry_point() -> None:
    import pickle

    import cloudpickle

    data = pickle.dumps([1])
    with no_unpickling():
        for load in (pickle.loads, cloudpickle.loads):
            with pytest.raises(AssertionError, match="unpickling is disabled"):
                load(data)
        with pytest.raises(AssertionError):
            pickle.Unpickler(None)  # type: ignore[arg-type]
    assert pickle.loads(data) == [1]
    assert hlg.get({"a": DataNode("a", 1)}, "a") == 1
