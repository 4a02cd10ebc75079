"""A small blocked-array collection on numpy, built from hlg layers.

Every operation adds one symbolic layer: ``ones`` and ``from_array`` are blockwise
layers over input providers, elementwise operations and ``.T`` are blockwise layers,
``@`` is a blockwise contraction and ``.sum()`` contracts every block into one. Nothing
is materialized until ``compute()``, which fuses the blockwise chain, culls, and runs.
"""

from __future__ import annotations

import operator
import sys
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

import hlg
from hlg import layers

Chunks = tuple[tuple[int, ...], ...]


def _chunks(shape: Sequence[int], chunks: int | Sequence[int]) -> Chunks:
    """Regular chunks of size ``chunks`` (per dimension or for all) covering ``shape``."""
    sizes = [chunks] * len(shape) if isinstance(chunks, int) else list(chunks)
    out = []
    for n, c in zip(shape, sizes, strict=True):
        full, rest = divmod(n, c)
        out.append((c,) * full + ((rest,) if rest else ()) or (0,))
    return tuple(out)


class Array:
    """A 2-d (or 0-d) array cut into numpy blocks; keys are ``(name, i, j)``."""

    def __init__(self, graph: hlg.HighLevelGraph, name: str, chunks: Chunks) -> None:
        self.graph = graph
        self.name = name
        self.chunks = chunks

    # the collection protocol used by HighLevelGraph.from_collections
    def __hlg_graph__(self) -> hlg.HighLevelGraph:
        return self.graph

    def __hlg_layers__(self) -> Sequence[str]:
        return [self.graph.layer_of(next(iter(self.keys_flat()))).name]

    @property
    def numblocks(self) -> tuple[int, ...]:
        return tuple(len(c) for c in self.chunks)

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(sum(c) for c in self.chunks)

    @property
    def index(self) -> str:
        return "ij"[: len(self.chunks)]

    def keys(self) -> Any:
        """The block keys as nested lists, one level per dimension."""
        if not self.chunks:
            return (self.name,)
        return [
            [(self.name, i, j) for j in range(self.numblocks[1])]
            if len(self.chunks) == 2
            else (self.name, i)
            for i in range(self.numblocks[0])
        ]

    def keys_flat(self) -> list[hlg.Key]:
        keys = self.keys()
        if not isinstance(keys, list):
            return [keys]
        return [k for row in keys for k in (row if isinstance(row, list) else [row])]

    # -- operations -------------------------------------------------------------------

    def _new(
        self,
        op: str,
        func: Callable[..., Any],
        out_ind: str,
        pairs: Sequence[Any],
        inputs: Sequence[Array],
        chunks: Chunks,
        **kwargs: Any,
    ) -> Array:
        name = f"{op}-{hlg.tokenize(func, out_ind, pairs, [a.name for a in inputs], kwargs)}"
        numblocks = {a.name: a.numblocks for a in inputs}
        layer = layers.blockwise(func, name, out_ind, *pairs, numblocks=numblocks, **kwargs)
        graph = hlg.HighLevelGraph.from_collections(name, layer, inputs)
        return Array(graph, name, chunks)

    def _elementwise(self, op: Callable[[Any, Any], Any], other: Any) -> Array:
        if isinstance(other, Array):
            if other.chunks != self.chunks:
                raise ValueError(f"chunks differ: {self.chunks} vs {other.chunks}")
            pairs = [self.name, self.index, other.name, other.index]
            return self._new(op.__name__, op, self.index, pairs, [self, other], self.chunks)
        pairs = [self.name, self.index, other, None]
        return self._new(op.__name__, op, self.index, pairs, [self], self.chunks)

    def __add__(self, other: Any) -> Array:
        return self._elementwise(operator.add, other)

    def __mul__(self, other: Any) -> Array:
        return self._elementwise(operator.mul, other)

    def __sub__(self, other: Any) -> Array:
        return self._elementwise(operator.sub, other)

    @property
    def T(self) -> Array:
        chunks = self.chunks[::-1]
        return self._new("transpose", np.transpose, "ji", [self.name, "ij"], [self], chunks)

    def __matmul__(self, other: Array) -> Array:
        if self.chunks[1] != other.chunks[0]:
            raise ValueError(f"inner chunks differ: {self.chunks[1]} vs {other.chunks[0]}")
        pairs = [self.name, "ij", other.name, "jk"]
        chunks = (self.chunks[0], other.chunks[1])
        return self._new("matmul", _dot_blocks, "ik", pairs, [self, other], chunks)

    def sum(self) -> Array:
        """The sum of all elements, as a 0-d array of one block."""
        partial = self._new(
            "sum-block", np.sum, self.index, [self.name, self.index], [self], self.chunks
        )
        return partial._new("sum", _sum_nested, "", [partial.name, partial.index], [partial], ())

    # -- running ----------------------------------------------------------------------

    def optimized_graph(self) -> hlg.HighLevelGraph:
        return hlg.optimize(self.graph, self.keys(), passes=[layers.fuse_blockwise, hlg.cull])

    def compute(self, optimize: bool = True) -> np.ndarray:
        graph = self.optimized_graph() if optimize else self.graph
        blocks = hlg.get(graph, self.keys())
        if not self.chunks:
            return np.asarray(blocks)
        return np.block(blocks)


def _dot_blocks(left: list[np.ndarray], right: list[np.ndarray]) -> np.ndarray:
    return sum((a @ b for a, b in zip(left, right, strict=True)), start=np.zeros(()))


def _sum_nested(blocks: Any) -> Any:
    if isinstance(blocks, list):
        return sum(_sum_nested(b) for b in blocks)
    return blocks


def _single_layer_array(layer: hlg.Layer, name: str, chunks: Chunks) -> Array:
    return Array(hlg.HighLevelGraph({layer.name: layer}, {layer.name: ()}), name, chunks)


def ones(shape: Sequence[int], chunks: int | Sequence[int]) -> Array:
    """An array of ones: one symbolic layer, block shapes from ``ChunkShape``."""
    full = _chunks(shape, chunks)
    name = f"ones-{hlg.tokenize(full)}"
    index = "ij"[: len(full)]
    layer = layers.blockwise(np.ones, name, index, layers.ChunkShape(full), index)
    return _single_layer_array(layer, name, full)


def from_array(x: np.ndarray, chunks: int | Sequence[int]) -> Array:
    """Cut ``x`` into blocks: the array is one constant of the template, ``ArraySlice``
    gives each block its slices."""
    full = _chunks(x.shape, chunks)
    name = f"array-{hlg.tokenize(x, full)}"
    index = "ij"[: len(full)]
    layer = layers.blockwise(operator.getitem, name, index, x, None, layers.ArraySlice(full), index)
    return _single_layer_array(layer, name, full)


def main() -> int:
    rng = np.random.default_rng(0)
    x_np = rng.standard_normal((60, 40))
    x = from_array(x_np, (20, 10))
    y = ones((60, 40), (20, 10))
    z = (x + y) * 2 - x
    w = z.T @ z
    total = w.sum()
    print(total.graph.describe())
    optimized = total.optimized_graph()
    print("\nafter fuse_blockwise + cull:")
    print(optimized.describe())
    expected_w = ((x_np + 1) * 2 - x_np).T @ ((x_np + 1) * 2 - x_np)
    np.testing.assert_allclose(w.compute(), expected_w)
    np.testing.assert_allclose(total.compute(), expected_w.sum())
    np.testing.assert_allclose(total.compute(optimize=False), expected_w.sum())
    print(f"\nsum = {float(total.compute()):.6f} (numpy agrees)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
