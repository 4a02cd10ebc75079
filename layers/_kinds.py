"""Packing of Blockwise and input layers: symbolic state on the wire, one template blob.

On the client a Blockwise layer becomes its index structure (names, index strings,
block counts, provider numbers) plus one blob for its template and one blob per opaque
per-block input. On the scheduler the same :class:`Blockwise` class is rebuilt around a
:class:`BlobTemplate`, so keys, dependencies and culling work exactly as on the client
while every task it builds is a :class:`hlg.PackedTask` whose payload stays bytes.
This module imports no numpy and unpickles nothing.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import msgspec

from hlg import (
    BlobRef,
    Blobs,
    HighLevelGraph,
    Key,
    Layer,
    PackContext,
    PackedTask,
    PackError,
    UnpackContext,
)
from hlg._task import _scan
from hlg._wire import LayerRecord, decode_state, encode_key
from hlg.layers._blockwise import Blockwise
from hlg.layers._inputs import ArraySlice, BlockIndex, BlockProvider, BlockValues, ChunkShape

__all__ = ["BLOCKWISE", "INPUT", "BlobTemplate", "BlockwiseKind"]


class BlockwiseState(msgspec.Struct, array_like=True, frozen=True, gc=False):
    """The wire form of a Blockwise layer (kind version 1)."""

    output: str
    output_indices: list[str]
    args: list[tuple[str, Any, list[str]]]
    numblocks: dict[str, list[int]]
    new_axes: dict[str, int]
    concatenate: bool
    output_blocks: list[list[int]] | None
    template: int
    nholes: int
    constant_deps: list[Any]


_SYMBOLIC: dict[type, str] = {
    BlockIndex: "block-index",
    ChunkShape: "chunk-shape",
    ArraySlice: "array-slice",
    BlockValues: "block-values",
}


class BlobTemplate:
    """A template known only by its blob: builds PackedTasks instead of Tasks."""

    def __init__(self, blob: int, nholes: int, constant_deps: Sequence[Key], blobs: Blobs):
        self.blob = blob
        self.nholes = nholes
        self._constant_deps = tuple(constant_deps)
        self.blobs = blobs

    def constant_dependencies(self) -> tuple[Key, ...]:
        """The keys every task of the layer reads besides its fills."""
        return self._constant_deps

    def keys_filler(self, ref_holes: int) -> Callable[[Key, Sequence[Any]], PackedTask]:
        """Build PackedTasks whose ``ref_holes`` fills are plain keys."""
        refs = [i for i in range(self.nholes) if ref_holes >> i & 1]
        constant = self._constant_deps
        blob = self.blob
        blobs = self.blobs

        def make(key: Key, fills: Sequence[Any]) -> PackedTask:
            deps = [fills[i] for i in refs]
            deps.extend(constant)
            return PackedTask(key, deps, ("bw", blob, tuple(fills), ref_holes), blobs)

        return make

    def fill(self, key: Key, fills: Sequence[Any]) -> PackedTask:
        """Build a PackedTask whose fills hold ``TaskRef``s (possibly in nested lists)."""
        deps: list[Key] = []
        for f in fills:
            _scan(f, deps)
        deps.extend(self._constant_deps)
        return PackedTask(key, deps, ("bwg", self.blob, tuple(fills)), self.blobs)

    def __repr__(self) -> str:
        return f"BlobTemplate(blob={self.blob}, holes={self.nholes})"


class BlockwiseKind:
    """The layer kind of :class:`Blockwise` layers (``name`` "blockwise" or "input")."""

    version = 1

    def __init__(self, name: str) -> None:
        self.name = name

    def handles(self, layer: Layer) -> bool:
        return (
            isinstance(layer, Blockwise)
            and layer.kind == self.name
            and all(isinstance(t, str) or type(t) in _SYMBOLIC for t, _ in layer.indices)
        )

    def pack(self, layer: Layer, ctx: PackContext) -> Any:
        assert isinstance(layer, Blockwise)
        args: list[tuple[str, Any, list[str]]] = []
        for slot, (target, ind) in enumerate(layer.indices):
            needed = _needed_values(layer, slot) if isinstance(target, BlockValues) else None
            args.append((*_pack_target(target, ctx, needed), list(ind)))
        blocks = layer.output_blocks
        return BlockwiseState(
            output=layer.output,
            output_indices=list(layer.output_indices),
            args=args,
            numblocks={k: list(v) for k, v in layer.numblocks.items()},
            new_axes=dict(layer.new_axes),
            concatenate=layer.concatenate,
            output_blocks=None if blocks is None else [list(b) for b in sorted(blocks)],
            template=ctx.add(layer.template),
            nholes=len(layer.indices),
            constant_deps=[encode_key(k) for k in layer.template.constant_dependencies()],
        )

    def unpack(self, record: LayerRecord, ctx: UnpackContext) -> Layer:
        where = f"layer {record.name!r}"
        state: BlockwiseState = decode_state(record.state, BlockwiseState, record.name)
        if state.nholes != len(state.args):
            raise PackError(f"{where}: {state.nholes} holes for {len(state.args)} arguments")
        limit = ctx.limits.max_tasks
        ndim = ctx.limits.max_key_length
        for letter, n in state.new_axes.items():
            if not 1 <= n <= limit:
                raise PackError(f"{where}: new axis {letter!r} declares {n} blocks")
        if len(state.output_indices) > ndim or any(len(ind) > ndim for _, _, ind in state.args):
            raise PackError(f"{where}: more than {ndim} dimensions")
        indices = [
            (_unpack_target(kind, payload, ctx, where), tuple(ind))
            for kind, payload, ind in state.args
        ]
        names = {t for t, _ in indices if isinstance(t, str)}
        for name, counts in state.numblocks.items():
            if name not in names:
                raise PackError(
                    f"{where}: declares numblocks for {name!r}, which is not an argument"
                )
            _bounded_prod(counts, limit, ndim, f"{where}: numblocks of input {name!r}")
        template = BlobTemplate(
            ctx.blob_index(state.template, where),
            state.nholes,
            ctx.keys(state.constant_deps, where),
            ctx.blobs,
        )
        layer = Blockwise(
            state.output,
            tuple(state.output_indices),
            template,  # type: ignore[arg-type]
            indices,
            state.numblocks,
            state.new_axes,
            state.concatenate,
            name=record.name,
            kind=self.name,
        )
        _bounded_prod(layer.shape, limit, ndim, where)
        for slot in range(len(layer.indices)):
            if layer.fan_in(slot) > ctx.limits.max_tasks:
                raise PackError(
                    f"{where}: argument {slot} contracts over {layer.fan_in(slot)} blocks, "
                    "beyond the task limit"
                )
        if state.output_blocks is not None:
            blocks = [tuple(b) for b in state.output_blocks]
            for block in blocks:
                if len(block) != len(layer.shape) or not all(
                    type(c) is int and 0 <= c < n for c, n in zip(block, layer.shape, strict=True)
                ):
                    raise PackError(f"{where}: output block {list(block)} is out of range")
            layer = layer.replace(output_blocks=blocks)
        return layer

    def verify(self, layer: Layer, graph: HighLevelGraph, where: str) -> None:
        """Check that every key the layer reads exists, symbolically where possible."""
        assert isinstance(layer, Blockwise)
        for key in layer.template.constant_dependencies():
            if key not in graph:
                raise PackError(f"{where}: reads key {key!r}, which no layer produces")
        per_key = False
        for target, _ in layer.indices:
            if not isinstance(target, str):
                continue
            producers = [
                graph.layers[d]
                for d in graph.dependencies[layer.name]
                if target in graph.layers[d].prefixes
            ]
            if not producers:
                raise PackError(f"{where}: reads {target!r}, which no layer it depends on produces")
            producer = producers[0]
            if (
                len(producers) == 1
                and isinstance(producer, Blockwise)
                and producer.output_blocks is None
                and producer.output == target
            ):
                if producer.shape != layer.numblocks[target]:
                    raise PackError(
                        f"{where}: reads {target!r} as {layer.numblocks[target]} blocks, "
                        f"but layer {producer.name!r} has {producer.shape}"
                    )
            else:
                per_key = True
        if per_key:  # culled or materialized producers: check the keys read, one by one
            for key in layer:
                for dep in layer.dependency_tuple(key):
                    if dep not in graph:
                        raise PackError(f"{where}: key {key!r} reads {dep!r}, which is missing")


def _needed_values(layer: Blockwise, slot: int) -> set[int] | None:
    """The positions of a BlockValues argument that a culled layer still reads."""
    if layer.output_blocks is None:
        return None
    needed: set[int] = set()
    for block in layer.output_blocks:
        _collect_positions(layer.block_values_read(slot, block), needed)
    return needed


def _collect_positions(value: Any, out: set[int]) -> None:
    if type(value) is list:
        for item in value:
            _collect_positions(item, out)
    else:
        out.add(value[0])


def _pack_target(
    target: str | BlockProvider, ctx: PackContext, needed: set[int] | None = None
) -> tuple[str, Any]:
    if isinstance(target, str):
        return ("name", target)
    kind = _SYMBOLIC[type(target)]
    if isinstance(target, BlockValues):  # nil for values a culled layer no longer reads
        return (
            kind,
            [
                ctx.add(v) if needed is None or i in needed else None
                for i, v in enumerate(target.values)
            ],
        )
    if isinstance(target, BlockIndex):
        return (kind, list(target.numblocks))
    assert isinstance(target, (ChunkShape, ArraySlice))
    return (kind, [list(c) for c in target.chunks])


def _unpack_target(kind: str, payload: Any, ctx: UnpackContext, where: str) -> Any:
    if kind == "name":
        if type(payload) is not str:
            raise PackError(f"{where}: input name must be a str; got {payload!r}")
        return payload
    if kind == "block-values":
        if type(payload) is not list:
            raise PackError(f"{where}: block-values must list blob references")
        return BlockValues(
            [None if i is None else BlobRef(ctx.blob_index(i, where)) for i in payload]
        )
    if kind == "block-index":
        if type(payload) is not list:
            raise PackError(f"{where}: block-index numblocks must be a list of ints")
        _bounded_prod(_ints(payload, where), ctx.limits.max_tasks, ctx.limits.max_key_length, where)
        return BlockIndex(payload)
    if kind in ("chunk-shape", "array-slice"):
        if type(payload) is not list or not all(type(c) is list for c in payload):
            raise PackError(f"{where}: {kind} chunks must be a list of lists of ints")
        if len(payload) > ctx.limits.max_key_length:
            raise PackError(f"{where}: {kind} has more than {ctx.limits.max_key_length} dimensions")
        for c in payload:
            _ints(c, where)
        return ChunkShape(payload) if kind == "chunk-shape" else ArraySlice(payload)
    raise PackError(f"{where}: unknown argument kind {kind!r}")


def _bounded_prod(counts: Sequence[Any], limit: int, ndim: int, where: str) -> int:
    """The product of block counts, refused as soon as it passes ``limit`` (never a huge
    multiplication of hostile numbers)."""
    if len(counts) > ndim:
        raise PackError(f"{where}: more than {ndim} dimensions")
    total = 1
    for n in counts:
        if type(n) is not int or not 1 <= n <= limit:
            raise PackError(f"{where}: block count {n!r} out of bounds (1..{limit})")
        total *= n
        if total > limit:
            raise PackError(f"{where}: declares more than {limit} blocks, beyond the task limit")
    return total


def _ints(values: list[Any], where: str) -> list[int]:
    if not all(type(v) is int for v in values):
        raise PackError(f"{where}: expected ints; got {values!r}")
    return values


BLOCKWISE = BlockwiseKind("blockwise")
INPUT = BlockwiseKind("input")
