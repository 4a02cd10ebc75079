"""Packing of Blockwise and input layers: symbolic state on the wire, one template blob.

On the client a Blockwise layer becomes its index structure (names, index strings,
block counts, provider numbers) plus one blob for its template and one blob per opaque
per-block input. On the scheduler the same :class:`Blockwise` class is rebuilt around a
:class:`BlobTemplate`, so keys, dependencies and culling work exactly as on the client
while every task it builds is a :class:`hlg.PackedTask` whose payload stays bytes.
This module imports no numpy and unpickles nothing.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import msgspec

from hlg import (
    BlobRef,
    Blobs,
    BlockSet,
    HighLevelGraph,
    Key,
    Layer,
    PackContext,
    PackedTask,
    PackError,
    UnpackContext,
)
from hlg._blocks import MAX_BOXES
from hlg._registry import owner_name
from hlg._task import _scan
from hlg._wire import encode_key
from hlg.kinds import BOX_FINDERS, Kind, key_box
from hlg.layers._blockwise import Blockwise, Zeros, diagonal_steps, map_boxes
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
    # Kept boxes of a culled layer (``[start, stop]`` per axis); ``output_blocks`` then
    # lists only the blocks no box describes.
    output_boxes: list[list[list[int]]] | None = None


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


class BlockwiseKind(Kind[BlockwiseState]):
    """The layer kind of :class:`Blockwise` layers (``name`` "blockwise" or "input").

    >>> import hlg
    >>> hlg.layer_kind("blockwise").state_type.__name__, hlg.layer_kind("input").version
    ('BlockwiseState', 1)
    """

    state_type = BlockwiseState

    def __init__(self, name: str) -> None:
        self.name = name

    def handles(self, layer: Layer) -> bool:
        return (
            isinstance(layer, Blockwise)
            and layer.kind == self.name
            and all(isinstance(t, str) or type(t) in _SYMBOLIC for t, _ in layer.indices)
        )

    def pack(self, layer: Layer, ctx: PackContext) -> BlockwiseState:
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
            output_blocks=None if blocks is None else [list(b) for b in sorted(blocks.points)],
            output_boxes=None if blocks is None else [[list(r) for r in b] for b in blocks.boxes],
            template=ctx.add(layer.template),
            nholes=len(layer.indices),
            constant_deps=[encode_key(k) for k in layer.template.constant_dependencies()],
        )

    def rebuild(self, name: str, state: BlockwiseState, ctx: UnpackContext) -> Layer:
        where = f"layer {name!r}"
        if state.nholes != len(state.args):
            raise PackError(f"{where}: {state.nholes} holes for {len(state.args)} arguments")
        limit = ctx.limits.max_tasks
        ndim = ctx.limits.max_key_length - 1  # a key is the output name plus one item per axis
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
        for arg_name, counts in state.numblocks.items():
            if arg_name not in names:
                raise PackError(
                    f"{where}: declares numblocks for {arg_name!r}, which is not an argument"
                )
            _bounded_prod(counts, limit, ndim, f"{where}: numblocks of input {arg_name!r}")
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
            name=name,
            kind=self.name,
        )
        _bounded_prod(layer.shape, limit, ndim, where)
        _check_fan_in(layer, ctx.limits.max_fan_in, where)
        if state.output_blocks is not None or state.output_boxes is not None:
            layer = layer.replace(output_blocks=_kept_blocks(state, layer.shape, where))
        return layer

    def edges(self, layer: Layer) -> int:
        """Dependency edges of the layer, from its structure: tasks times keys read."""
        assert isinstance(layer, Blockwise)
        return len(layer) * _reads_per_task(layer)

    def verify(self, layer: Layer, graph: HighLevelGraph, where: str, ctx: UnpackContext) -> None:
        """Check, per argument and without building tasks, that every key the layer reads
        is produced by a layer it declares as a dependency, and that no kept block reads
        a per-block value that was not shipped."""
        assert isinstance(layer, Blockwise)
        allowed = graph.dependencies[layer.name]
        for key in layer.template.constant_dependencies():
            if owner_name(graph, layer, key) in (None, layer.name):
                raise PackError(
                    f"{where}: reads key {key!r}, which no layer it depends on produces"
                )
        for slot, (target, _) in enumerate(layer.indices):
            if isinstance(target, BlockValues):
                _check_values_read(layer, slot, target, where)
            if not isinstance(target, str):
                continue
            producers = [  # through the prefix index: O(layers of that prefix)
                graph.layers[d] for d in graph._prefix_index().get(target, ()) if d in allowed
            ]
            if not producers:
                raise PackError(f"{where}: reads {target!r}, which no layer it depends on produces")
            culled = _culled_producer(producers, target)
            if culled is not None:  # compare block sets: no walk over the kept blocks
                _check_culled_read(layer, slot, culled, target, where, ctx)
                continue
            reads = _Reads(layer, slot, ctx, where)
            boxes = [box for p in producers if (box := _box_of(p, target)) is not None]
            if len(producers) == 1 and boxes and isinstance(producers[0], Blockwise):
                if boxes[0] != layer.numblocks[target]:
                    raise PackError(
                        f"{where}: reads {target!r} as {layer.numblocks[target]} blocks, "
                        f"but layer {producers[0].name!r} has {boxes[0]}"
                    )
                continue
            corner = reads.corner()
            if any(
                len(box) == len(corner) and all(c < n for c, n in zip(corner, box, strict=True))
                for box in boxes
            ):
                continue  # every block read lies in one producer's full box
            ctx.spend(reads.size(), f"{where}, argument {slot} ({target!r})")
            for coords in reads:
                key = (target, *coords)
                if not any(key in p for p in producers):
                    raise PackError(
                        f"{where}: reads {key!r}, which no layer it depends on produces"
                    )


def _culled_producer(producers: list[Layer], target: str) -> Blockwise | None:
    """The one producer of ``target`` when it is a culled Blockwise layer."""
    if len(producers) != 1:
        return None
    (producer,) = producers
    if isinstance(producer, Blockwise) and producer.output == target:
        return producer if producer.output_blocks is not None else None
    return None


def _check_culled_read(
    layer: Blockwise, slot: int, producer: Blockwise, target: str, where: str, ctx: UnpackContext
) -> None:
    """Every block argument ``slot`` reads is kept by the culled ``producer``: compared as
    block sets (O(boxes), explicit points aside), never block by block. A repeated index
    (a diagonal read) maps each box to one box per diagonal step: those are counted and
    spent from the budget first."""
    if producer.shape != layer.numblocks[target]:
        raise PackError(
            f"{where}: reads {target!r} as {layer.numblocks[target]} blocks, "
            f"but layer {producer.name!r} has {producer.shape}"
        )
    kept = producer.output_blocks
    assert kept is not None
    maps = layer._maps[slot]
    blocks = layer.block_set()
    steps = diagonal_steps(maps, blocks)
    if steps:  # each step is compared with every kept box
        work = steps * (1 + len(kept.boxes))
        ctx.spend(work, f"{where}, argument {slot} ({target!r}, a diagonal read)")
    try:
        missing = None
        for box in map_boxes(maps, blocks):  # one box per kept box, step or point
            missing = BlockSet.box(box).first_missing(kept)
            if missing is not None:
                break
    except ValueError as err:
        raise PackError(f"{where}: reading {target!r}: {err}") from None
    if missing is not None:
        key = (target, *missing)
        raise PackError(f"{where}: reads {key!r}, which no layer it depends on produces")


def _builtin_box(layer: Layer, prefix: str) -> tuple[int, ...] | None:
    """The key box of a built-in layer: an unculled Blockwise layer, a whole shuffle or
    tree reduction (see :func:`hlg.kinds.key_box`)."""
    if isinstance(layer, Blockwise):
        return layer.shape if layer.output == prefix and layer.output_blocks is None else None
    from hlg.layers._shuffle import _partitions_of  # whole shuffles and tree reductions

    partitions = _partitions_of(layer, prefix)
    return None if partitions is None else (partitions,)


_box_of = key_box
BOX_FINDERS.append(_builtin_box)


class _Reads:
    """The distinct blocks argument ``slot`` of a Blockwise layer reads, described per axis
    (output axes, broadcast axes, contracted ranges) without listing them.

    A culled layer's kept blocks are projected box by box onto the output axes the
    argument follows (a box projected is a box): O(boxes), never O(blocks). When the
    projected boxes overlap too intricately to unite exactly, the union is enumerated,
    after ``ctx.spend`` of their total size.
    """

    def __init__(self, layer: Blockwise, slot: int, ctx: UnpackContext, where: str) -> None:
        self.maps = layer._maps[slot]
        self.shape = layer.shape
        mapped = [m for m in self.maps if isinstance(m, int) and m >= 0]
        self.axes = sorted(set(mapped))  # output axes the argument follows (once each)
        self.projections: BlockSet | None = None
        kept = layer.output_blocks
        if kept is not None:
            boxes = [tuple(box[m] for m in self.axes) for box in kept.boxes]
            points = {tuple(p[m] for m in self.axes) for p in kept.points}
            try:
                self.projections = BlockSet(len(self.axes), boxes, points, exact=True)
            except ValueError:
                total = sum(math.prod(e - s for s, e in b) for b in boxes) + len(points)
                ctx.spend(total, f"{where}, argument {slot} (projecting the kept blocks)")
                self.projections = BlockSet(len(self.axes), boxes, points)

    def _axis(self, m: Any) -> Sequence[int]:
        if isinstance(m, int):
            return range(1) if m == -1 else range(self.shape[m])
        return range(1) if isinstance(m, Zeros) else m

    def size(self) -> int:
        """How many distinct blocks are read."""
        free = math.prod(
            len(self._axis(m)) for m in self.maps if not (isinstance(m, int) and m >= 0)
        )
        if self.projections is None:
            return free * math.prod(self.shape[m] for m in self.axes)
        return free * len(self.projections)

    def corner(self) -> tuple[int, ...]:
        """The largest coordinate read along each axis."""
        top: dict[int, int] = {}
        if self.projections is not None:
            for i, axis in enumerate(self.axes):
                top[axis] = max(
                    [b[i][1] - 1 for b in self.projections.boxes]
                    + [p[i] for p in self.projections.points],
                    default=0,
                )
        out: list[int] = []
        for axis_map in self.maps:
            if isinstance(axis_map, int) and axis_map >= 0 and self.projections is not None:
                out.append(top[axis_map])
            elif isinstance(axis_map, range):
                out.append(axis_map[-1])
            else:
                out.append(len(self._axis(axis_map)) - 1)
        return tuple(out)

    def __iter__(self) -> Iterator[tuple[int, ...]]:
        axes = [self._axis(m) for m in self.maps]
        if self.projections is None:
            yield from itertools.product(*axes)
            return
        where = {m: i for i, m in enumerate(self.axes)}
        free_axes = [i for i, m in enumerate(self.maps) if not (isinstance(m, int) and m >= 0)]
        for proj in self.projections:
            for rest in itertools.product(*(axes[i] for i in free_axes)):
                coords = [0] * len(self.maps)
                for i, m in enumerate(self.maps):
                    if isinstance(m, int) and m >= 0:
                        coords[i] = proj[where[m]]
                for i, c in zip(free_axes, rest, strict=True):
                    coords[i] = c
                yield tuple(coords)


def _reads_per_task(layer: Blockwise) -> int:
    """Keys one task reads at most: its references plus the template's constant keys."""
    refs = sum(layer.fan_in(s) for s, (t, _) in enumerate(layer.indices) if isinstance(t, str))
    return refs + len(layer.template.constant_dependencies())


def _check_fan_in(layer: Blockwise, limit: int, where: str) -> None:
    """Every argument's fan-in, and one task's reads in all, within ``limit``."""
    total = len(layer.template.constant_dependencies())
    for slot in range(len(layer.indices)):
        fan_in = layer.fan_in(slot)
        if fan_in > limit:
            raise PackError(
                f"{where}: argument {slot} contracts over {fan_in} blocks, beyond the "
                f"fan-in limit of {limit}"
            )
        total += fan_in
        if total > limit:
            raise PackError(
                f"{where}: one task reads {total}+ blocks and values, beyond the fan-in "
                f"limit of {limit}"
            )


def _positions_read(layer: Blockwise, slot: int) -> BlockSet | None:
    """The positions of a BlockValues argument that the kept blocks read (None: all), as
    a one-axis block set projected from the kept boxes (O(boxes + points))."""
    (m,) = layer._maps[slot]
    if not isinstance(m, int):
        return BlockSet.box([(0, 1)]) if isinstance(m, Zeros) else None
    if m == -1:
        return BlockSet.box([(0, 1)])
    kept = layer.output_blocks
    if kept is None:
        return None
    return BlockSet(1, [(b[m],) for b in kept.boxes], {(p[m],) for p in kept.points})


def _check_values_read(layer: Blockwise, slot: int, target: BlockValues, where: str) -> None:
    """No kept block reads a value that was not shipped: O(values) (the message's list)."""
    values = target.values
    read = _positions_read(layer, slot)
    for i, value in enumerate(values):
        if value is None and (read is None or (i,) in read):
            raise PackError(
                f"{where}: argument {slot} reads per-block value {i}, which was not shipped"
            )
    if read is not None and read.first_missing(BlockSet.box([(0, len(values))])) is not None:
        raise PackError(f"{where}: argument {slot} reads more per-block values than shipped")


def _kept_blocks(state: BlockwiseState, shape: tuple[int, ...], where: str) -> BlockSet:
    """The kept blocks of a culled layer, checked box by box (never enumerated): at most
    MAX_BOXES boxes, in range and pairwise disjoint, so building the set splits nothing."""
    boxes = state.output_boxes or []
    if len(boxes) > MAX_BOXES:
        raise PackError(f"{where}: {len(boxes)} output boxes exceed {MAX_BOXES}")
    checked = []
    for box in boxes:
        if len(box) != len(shape) or not all(
            type(r) is list
            and len(r) == 2
            and type(r[0]) is int
            and type(r[1]) is int
            and 0 <= r[0] < r[1] <= n
            for r, n in zip(box, shape, strict=True)
        ):
            raise PackError(f"{where}: output box {box} is out of range")
        checked.append(tuple((r[0], r[1]) for r in box))
    for i, a in enumerate(checked):  # at most MAX_BOXES**2 pairs
        for b in checked[:i]:
            if all(s1 < e2 and s2 < e1 for (s1, e1), (s2, e2) in zip(a, b, strict=True)):
                raise PackError(
                    f"{where}: output boxes overlap (kept boxes must be disjoint): "
                    f"{[list(r) for r in b]} and {[list(r) for r in a]}"
                )
    points = [tuple(b) for b in state.output_blocks or []]
    for block in points:
        if len(block) != len(shape) or not all(
            type(c) is int and 0 <= c < n for c, n in zip(block, shape, strict=True)
        ):
            raise PackError(f"{where}: output block {list(block)} is out of range")
    try:  # disjoint boxes: nothing to split, joining only shrinks them
        return BlockSet(len(shape), checked, points, exact=True)
    except ValueError as err:
        raise PackError(f"{where}: output boxes: {err}") from None


def _needed_values(layer: Blockwise, slot: int) -> BlockSet | None:
    """The blocks of a BlockValues argument that a culled layer still reads."""
    if layer.output_blocks is None:
        return None
    return layer.argument_blocks(slot, layer.output_blocks)


def _pack_target(
    target: str | BlockProvider, ctx: PackContext, needed: BlockSet | None = None
) -> tuple[str, Any]:
    if isinstance(target, str):
        return ("name", target)
    kind = _SYMBOLIC[type(target)]
    if isinstance(target, BlockValues):  # nil for values a culled layer no longer reads
        return (
            kind,
            [
                ctx.add(v) if needed is None or (i,) in needed else None
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
