"""Blockwise layers: einsum-style index notation over blocks, one template per layer.

``blockwise(func, "z", "ij", "x", "ij", "y", "ji", numblocks=...)`` says that block
``(i, j)`` of ``z`` is ``func(x[i, j], y[j, i])``. An index missing from the output is
contracted (the argument is the list of blocks along it, or their concatenation), an
input with one block along an index is broadcast, and ``new_axes`` adds output
dimensions. The layer keeps one :class:`hlg.ArgSpec`; keys, dependencies and culling
are computed from block coordinates, and one task is built per ``layer[key]``.
"""

from __future__ import annotations

import inspect
import itertools
import math
import operator
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from functools import partial
from typing import Any

from hlg import ArgSpec, BlockSet, GraphNode, Key, Layer, Placeholder, TaskRef, key_prefix
from hlg._blocks import MAX_BOXES, Box, _box_blocks
from hlg._gc import gc_paused
from hlg.layers._inputs import BlockProvider

__all__ = ["Blockwise", "blockwise", "concatenate_axes", "diagonal_steps", "map_boxes"]

Index = tuple[str, ...]
# One axis of an argument: an output position (>= 0), -1 for "always block 0", or the
# block numbers to list along a contracted index.
AxisMap = int | Sequence[int]


class Zeros(Sequence[int]):
    """``n`` zeros without storing them: a broadcast input along a contracted index."""

    __slots__ = ("n",)

    def __init__(self, n: int) -> None:
        self.n = n

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: Any) -> Any:
        if isinstance(i, slice):
            return [0] * len(range(self.n)[i])
        if not -self.n <= i < self.n:
            raise IndexError(i)
        return 0

    def __iter__(self) -> Iterator[int]:
        return itertools.repeat(0, self.n)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Zeros) and other.n == self.n

    def __hash__(self) -> int:
        return hash((Zeros, self.n))

    def __repr__(self) -> str:
        return f"Zeros({self.n})"


def concatenate_axes(arrays: Any, axes: Sequence[int]) -> Any:
    """Concatenate a nested list of numpy blocks: nesting level ``n`` along ``axes[n]``.

    >>> import numpy as np
    >>> a = np.ones((2, 2))
    >>> concatenate_axes([[a, a], [a, a]], [0, 1]).shape
    (4, 4)
    >>> concatenate_axes([a, 2 * a], [1]).shape
    (2, 4)
    """

    if not axes:
        return arrays
    return _concatenate(arrays, list(axes), len(axes))


def _concatenate(arrays: Any, axes: list[int], depth: int) -> Any:
    import numpy as np

    if not axes:
        if isinstance(arrays, list):
            raise ValueError(
                f"concatenate_axes: lists are nested deeper than the {depth} axes given; "
                "give one axis per nesting level"
            )
        return arrays
    if not isinstance(arrays, list):
        raise ValueError(
            f"concatenate_axes: expected lists nested {depth} deep (one level per axis); "
            f"found a {type(arrays).__name__} at level {depth - len(axes)}"
        )
    parts = [_concatenate(a, axes[1:], depth) for a in arrays]
    return np.concatenate(parts, axis=axes[0])


def _as_index(ind: object, what: Callable[[], str]) -> Index:
    if isinstance(ind, str):
        return tuple(ind)
    if isinstance(ind, tuple) and all(isinstance(i, str) for i in ind):
        return ind
    raise ValueError(f"{what()}: an index must be a str like 'ij' or a tuple of str; got {ind!r}")


def _counts(values: Sequence[Any]) -> tuple[Any, ...]:
    """Block counts as ints where they are int-like (numpy integers); others are kept for
    the check that names the argument."""
    return tuple(_as_count(v) for v in values)


def _as_count(value: Any) -> Any:
    if isinstance(value, bool) or not hasattr(value, "__index__"):
        return value
    return operator.index(value)


def _describe(position: int, target: object) -> str:
    return f"argument {position} ({target!r})"


class Blockwise(Layer):
    """A blockwise layer: one template, keys ``(output, *block)``.

    >>> from operator import add
    >>> from hlg import ArgSpec, Placeholder
    >>> layer = Blockwise("z", "i", ArgSpec(add, Placeholder(0), 1), [("x", "i")], {"x": (3,)})
    >>> len(layer), layer.dependencies(("z", 2)), layer[("z", 2)]({("x", 2): 41})
    (3, frozenset({('x', 2)}), 42)

    Build it with :func:`blockwise`; this constructor takes the normalized parts:
    ``template`` has ``Placeholder(i)`` for ``indices[i]``, a pair ``(target, index)``
    whose target is an input name (its blocks are references) or a
    :class:`~hlg.layers.BlockProvider`.
    """

    kind = "blockwise"

    def __init__(
        self,
        output: str,
        output_indices: str | Index,
        template: ArgSpec,
        indices: Sequence[tuple[str | BlockProvider, str | Index]],
        numblocks: Mapping[str, Sequence[int]],
        new_axes: Mapping[str, int] | None = None,
        concatenate: bool = False,
        output_blocks: Iterable[tuple[int, ...]] | None = None,
        name: str | None = None,
        annotations: Mapping[str, Any] | None = None,
        kind: str | None = None,
        argument_numbers: Sequence[int] | None = None,
    ) -> None:
        super().__init__(name or output, annotations)
        # How error messages number the indexed arguments: by default their position
        # here; ``blockwise`` passes their position among all its pairs.
        self._numbers = tuple(argument_numbers or range(len(indices)))
        if kind is not None:
            self.kind = kind  # type: ignore[misc]
        self.output = output
        self.output_indices = _as_index(output_indices, lambda: "output")
        if len(set(self.output_indices)) != len(self.output_indices):
            raise ValueError(f"output index {output_indices!r} repeats a letter")
        self.template = template
        self.indices = tuple(
            (target, _as_index(ind, partial(_describe, self._numbers[i], target)))
            for i, (target, ind) in enumerate(indices)
        )
        self.numblocks = {k: _counts(v) for k, v in numblocks.items()}
        self.new_axes = dict(new_axes or {})
        self.concatenate = bool(concatenate)
        self.dims = self._dims()
        self.shape = tuple(self.dims[i] for i in self.output_indices)
        self.output_blocks = None if output_blocks is None else self._check_blocks(output_blocks)
        self._maps = tuple(self._axis_maps(i) for i in range(len(self.indices)))
        self._constant_deps = template.constant_dependencies()
        self._lineage = object()  # shared with the layers culled from this one
        self._simple = self._simple_plan()
        self._aligned: tuple[str, ...] | None = None  # the input names, when all are aligned
        if self._simple is not None and all(
            is_ref and getter is None for _, getter, is_ref in self._simple[0]
        ):
            self._aligned = tuple(target for target, _, _ in self._simple[0])
        refs = None  # (input name, getter) per argument, when every argument is a block
        if self._simple is not None and all(is_ref for _, _, is_ref in self._simple[0]):
            refs = tuple((target, getter) for target, getter, _ in self._simple[0])
        # what __getitem__ reads first, in one attribute
        self._fast: tuple[int, str, tuple[int, ...], Any, Any, Any] = (
            len(self.shape) + 1,
            self.output,
            self.shape,
            self._aligned,
            refs,
            None if self._simple is None else self._simple[2],
        )
        self.__dict__["_prefixes"] = frozenset({output})

    # -- structure --------------------------------------------------------------------

    def _describe(self, position: int) -> str:
        return _describe(self._numbers[position], self.indices[position][0])

    def _check_blocks(self, blocks: Iterable[tuple[int, ...]]) -> BlockSet:
        """The kept output blocks as a BlockSet, each checked against the layer's shape."""
        if isinstance(blocks, BlockSet):
            if not blocks.within(self.shape):
                raise ValueError(f"output blocks {blocks!r} are not blocks of shape {self.shape}")
            return blocks
        listed = list(blocks)
        for block in listed:
            if (
                type(block) is not tuple
                or len(block) != len(self.shape)
                or not all(
                    type(c) is int and 0 <= c < n for c, n in zip(block, self.shape, strict=True)
                )
            ):
                raise ValueError(f"output block {block!r} is not a block of shape {self.shape}")
        return BlockSet.from_blocks(listed, len(self.shape))

    def _blocks_of(self, position: int) -> tuple[int, ...]:
        target, ind = self.indices[position]
        if isinstance(target, BlockProvider):
            blocks = target.numblocks
        elif isinstance(target, str):
            if target not in self.numblocks:
                raise ValueError(f"{self._describe(position)}: no numblocks given")
            blocks = self.numblocks[target]
        else:
            raise TypeError(
                f"{self._describe(position)}: an indexed argument must be an input name "
                "(str) or a BlockProvider"
            )
        if len(blocks) != len(ind):
            raise ValueError(
                f"{self._describe(position)}: index {''.join(ind)!r} has {len(ind)} "
                f"letters but the input has {len(blocks)} dimensions (numblocks {blocks})"
            )
        if any(type(n) is not int or n < 1 for n in blocks):
            raise ValueError(f"{self._describe(position)}: numblocks must be ints >= 1")
        return blocks

    def _dims(self) -> dict[str, int]:
        dims: dict[str, int] = {}
        source: dict[str, int] = {}
        for position in range(len(self.indices)):
            _, ind = self.indices[position]
            for letter, n in zip(ind, self._blocks_of(position), strict=True):
                seen = dims.get(letter)
                if seen is None or seen == 1:
                    dims[letter] = n
                    source[letter] = position
                elif n not in (1, seen):
                    raise ValueError(
                        f"index {letter!r} has {seen} blocks in "
                        f"{self._describe(source[letter])} but {n} in "
                        f"{self._describe(position)}"
                    )
        for letter, n in self.new_axes.items():
            if letter in dims:
                raise ValueError(f"new axis {letter!r} is also an index of an input")
            if type(n) is not int or n < 1:
                raise ValueError(f"new axis {letter!r}: block count must be an int >= 1")
            dims[letter] = n
        for letter in self.output_indices:
            if letter not in dims:
                raise ValueError(
                    f"output index {letter!r} appears in no argument and not in new_axes"
                )
        return dims

    def _axis_maps(self, position: int) -> tuple[AxisMap, ...]:
        _, ind = self.indices[position]
        out_pos = {letter: p for p, letter in enumerate(self.output_indices)}
        maps: list[AxisMap] = []
        for letter, n in zip(ind, self._blocks_of(position), strict=True):
            if letter in out_pos:
                maps.append(-1 if n == 1 else out_pos[letter])
            elif n == 1:
                maps.append(Zeros(1 if self.concatenate else self.dims[letter]))
            else:
                maps.append(range(n))  # O(1) memory whatever the declared count
        return tuple(maps)

    def _simple_plan(self) -> tuple[tuple[Any, ...], int, Any] | None:
        """Without contraction: per hole (target, getter, is_ref), ref bitmask, filler."""
        plan: list[tuple[Any, ...]] = []
        refs = 0
        ndim = len(self.output_indices)
        for hole, ((target, _), maps) in enumerate(zip(self.indices, self._maps, strict=True)):
            if any(not isinstance(m, int) for m in maps):
                return None
            picks = tuple(ndim if m == -1 else m for m in maps if isinstance(m, int))
            getter: Callable[[tuple[int, ...]], tuple[int, ...]] | None
            if picks == tuple(range(ndim)):
                getter = None
            elif not picks:  # a 0-d input: its one block is always ()
                getter = _empty
            elif len(picks) == 1:
                (only,) = picks
                getter = _single(only)
            else:
                getter = operator.itemgetter(*picks)
            if isinstance(target, str):
                refs |= 1 << hole
            plan.append((target, getter, isinstance(target, str)))
        return tuple(plan), refs, self.template.keys_filler(refs)

    def _build(self, key: Key, block: tuple[int, ...]) -> GraphNode:
        """Build the task of ``key`` (known to be in the layer) at ``block``."""
        simple = self._simple
        if simple is None:
            fills = [self._fill(p, block) for p in range(len(self.indices))]
            return self.template.fill(key, fills)
        holes, _, filler = simple
        aligned = self._aligned
        if aligned is not None:  # every argument a block of the output's coordinates
            return filler(key, [(target, *block) for target in aligned])  # type: ignore[no-any-return]
        padded = (*block, 0)
        fills = [
            (
                (target, *(block if getter is None else getter(padded)))
                if is_ref
                else target.value(block if getter is None else getter(padded))
            )
            for target, getter, is_ref in holes
        ]
        task: GraphNode = filler(key, fills)
        return task

    def materialize(self) -> dict[Key, GraphNode]:
        """Build every task, without re-checking keys the layer itself produced."""
        out: dict[Key, GraphNode] = {}
        _, _, _, aligned, refs, filler = self._fast
        with gc_paused():
            if aligned is not None:
                for key in self:
                    block = key[1:]
                    out[key] = filler(key, [(t, *block) for t in aligned])
            elif refs is not None:
                for key in self:
                    block = key[1:]
                    padded = (*block, 0)
                    fills = [(t, *(block if g is None else g(padded))) for t, g in refs]
                    out[key] = filler(key, fills)
            else:
                for key in self:
                    out[key] = self._build(key, key[1:])  # type: ignore[arg-type]
        return out

    def block_values_read(self, position: int, block: tuple[int, ...]) -> Any:
        """The provider coordinates argument ``position`` reads for output ``block``: one
        tuple, or nested lists of them along contracted indices."""
        return _nested(self._maps[position], block, (), tuple)

    def fan_in(self, position: int) -> int:
        """How many blocks of argument ``position`` one task reads (1 without contraction)."""
        return math.prod([len(m) for m in self._maps[position] if not isinstance(m, int)])

    def contracted_axes(self, position: int) -> list[int]:
        """The axes of argument ``position`` whose index is not in the output."""
        return [a for a, m in enumerate(self._maps[position]) if not isinstance(m, int)]

    # -- the Layer protocol -------------------------------------------------------------

    def __len__(self) -> int:
        if self.output_blocks is not None:
            return len(self.output_blocks)
        return math.prod(self.shape)

    def __contains__(self, key: object) -> bool:
        if type(key) is not tuple or len(key) != len(self.shape) + 1 or key[0] != self.output:
            return False
        for c, n in zip(key[1:], self.shape, strict=True):
            if type(c) is not int and not (type(c) is float and c.is_integer()):
                return False  # keys compare by value: ("x", 1.0) is ("x", 1)
            if not 0 <= c < n:
                return False
        return self.output_blocks is None or key[1:] in self.output_blocks

    def __iter__(self) -> Iterator[Key]:
        head = (self.output,)
        if self.output_blocks is not None:
            return (head + block for block in self.output_blocks)
        return (head + block for block in _box(self.shape))

    def __getitem__(self, key: Key) -> GraphNode:
        # The common case inline (a tuple key of int coordinates, as iteration yields):
        # ``dict(layer)`` calls this once per key, so its checks are the per-task cost.
        length, output, shape, aligned, refs, filler = self._fast
        if type(key) is tuple and len(key) == length and key[0] == output:
            block = key[1:]
            for c, n in zip(block, shape):  # noqa: B905 - lengths checked above
                if type(c) is not int or c < 0 or c >= n:
                    break
            else:
                kept = self.output_blocks  # culled copies share _fast: always check
                if kept is None or block in kept:
                    if aligned is not None:  # _build's first case, inlined
                        return filler(key, [(t, *block) for t in aligned])  # type: ignore[no-any-return]
                    if refs is not None:  # every argument a block: permuted or broadcast
                        padded = (*block, 0)
                        fills = [(t, *(block if g is None else g(padded))) for t, g in refs]
                        return filler(key, fills)  # type: ignore[no-any-return]
                    return self._build(key, block)  # type: ignore[arg-type]
        if key not in self:
            raise KeyError(key)
        return self._build(key, tuple([int(c) for c in key[1:]]))

    def read_prefixes(self) -> frozenset[str]:
        """The inputs read by block (their names) and the constant references' prefixes.

        >>> from operator import add
        >>> from hlg import TaskRef
        >>> layer = blockwise(add, "z", "i", "x", "i", TaskRef(("c", 0)), None,
        ...                   numblocks={"x": (3,)})
        >>> sorted(layer.read_prefixes())
        ['c', 'x']
        """
        names = {target for target, _ in self.indices if isinstance(target, str)}
        names.update(key_prefix(k) for k in self._constant_deps)
        return frozenset(names)

    def position_span(self) -> int:
        """Positions are output blocks in C order over the whole block shape.

        >>> from operator import neg
        >>> layer = blockwise(neg, "y", "ij", "x", "ij", numblocks={"x": (2, 3)})
        >>> layer.position_span(), layer.key_position(("y", 1, 2)), layer.position_key(4)
        (6, 5, ('y', 1, 1))
        """
        return math.prod(self.shape)

    def key_position(self, key: Key) -> int:
        """The C-order index of the block of ``key`` (a key of this layer)."""
        shape = self.shape
        if len(shape) == 1:
            return int(key[1])
        if len(shape) == 2:
            return int(key[1]) * shape[1] + int(key[2])
        position = 0
        for c, n in zip(key[1:], shape):  # noqa: B905
            position = position * n + int(c)
        return position

    def position_key(self, position: int) -> Key:
        """The key of the block at C-order index ``position``."""
        shape = self.shape
        if len(shape) == 1:
            return (self.output, position)
        if len(shape) == 2:
            i, j = divmod(position, shape[1])
            return (self.output, i, j)
        coords = []
        for n in reversed(shape):
            position, c = divmod(position, n)
            coords.append(c)
        return (self.output, *reversed(coords))

    def _fill(self, position: int, block: tuple[int, ...]) -> Any:
        target, _ = self.indices[position]
        maps = self._maps[position]
        if isinstance(target, BlockProvider):
            return _nested(maps, block, (), target.value)
        return _nested(maps, block, (target,), TaskRef)

    def dependency_tuple(self, key: Key) -> tuple[Key, ...]:
        """The input blocks ``key`` reads, computed from its coordinates."""
        if key not in self:
            raise KeyError(key)
        block: tuple[int, ...] = key[1:]  # type: ignore[assignment]
        deps: list[Key] = []
        for (target, _), maps in zip(self.indices, self._maps, strict=True):
            if isinstance(target, str):
                _collect(maps, block, (target,), deps)
        deps.extend(self._constant_deps)
        return tuple(dict.fromkeys(deps))

    def dependencies(self, key: Key) -> frozenset[Key]:
        """The input blocks ``key`` reads, as a frozenset."""
        return frozenset(self.dependency_tuple(key))

    def cull(self, keys: Iterable[Key]) -> tuple[Layer, frozenset[Key]]:
        """Keep the output blocks of ``keys`` (the per-key path); no task is built."""
        blocks = {tuple([int(c) for c in k[1:]]) for k in keys if k in self}
        external: set[Key] = set()
        for block in blocks:
            external.update(self.dependency_tuple((self.output, *block)))
        if len(blocks) == len(self):
            return self, frozenset(external)
        return self._keeping(BlockSet.from_blocks(blocks, len(self.shape))), frozenset(external)

    def block_set(self) -> BlockSet:
        """The layer's output blocks: every block of its shape, or the culled ones."""
        if self.output_blocks is not None:
            return self.output_blocks
        full = self.__dict__.get("_full_blocks")
        if full is None:
            full = self.__dict__["_full_blocks"] = BlockSet.full(self.shape)
        return full

    def cull_blocks(self, blocks: BlockSet) -> tuple[Layer, dict[str, BlockSet], frozenset[Key]]:
        """Keep ``blocks`` and say which input blocks they read, by input name.

        The set is mapped through the index structure without enumerating keys: boxes
        map to boxes (an elementwise or transposed index keeps its range, a contracted
        index needs its full range, a broadcast input block 0, and output axes an input
        does not have are dropped). Explicit points map point by point; so do boxes of
        an input that repeats an output index (a diagonal is not a box).
        """
        own = self.block_set()
        kept = blocks if blocks.issubset(own) else blocks.intersection(own)
        needs: dict[str, BlockSet] = {}
        for (target, _), maps in zip(self.indices, self._maps, strict=True):
            if isinstance(target, str):
                mapped = self.map_blocks(maps, kept)
                seen = needs.get(target)
                needs[target] = mapped if seen is None else seen.union(mapped)
        external = frozenset(self._constant_deps) if kept else frozenset()
        if len(kept) == len(own):
            return self, needs, external
        return self._keeping(kept), needs, external

    def argument_blocks(self, position: int, blocks: BlockSet) -> BlockSet:
        """The blocks of argument ``position`` that output ``blocks`` read."""
        return self.map_blocks(self._maps[position], blocks)

    @staticmethod
    def map_blocks(maps: tuple[AxisMap, ...], blocks: BlockSet) -> BlockSet:
        """Map output blocks to the blocks one argument reads, through its axis maps.

        A box maps to a box, or, along a repeated index (a diagonal), to one box per
        diagonal step (see :func:`map_boxes`): never block by block.

        >>> Blockwise.map_blocks((0, 0), BlockSet.box([(1, 4), (0, 1000)]))
        BlockSet(2, boxes=[((1, 2), (1, 2)), ((2, 3), (2, 3)), ((3, 4), (3, 4))], points=0)
        """
        ranges = _ranges(maps)
        boxes = list(map_boxes(maps, BlockSet(blocks.ndim, blocks.boxes)))
        points: set[tuple[int, ...]] = set()
        if len(boxes) > MAX_BOXES:  # a long diagonal: its blocks, not boxes to split
            points.update(itertools.chain.from_iterable(map(_box_blocks, boxes)))
            boxes = []
        for block in blocks.points:
            _map_point(ranges, block, points)
        return BlockSet(len(maps), boxes, points)

    def _keeping(self, blocks: BlockSet) -> Blockwise:
        """This layer restricted to ``blocks``, renamed after them."""
        culled = Blockwise.__new__(Blockwise)  # same structure: only blocks and name change
        culled.__dict__.update(self.__dict__)
        culled.output_blocks = blocks
        culled.name = f"{self.name}-cull-{blocks.token(self.name)}"
        return culled

    def _family(self) -> object:
        return self._lineage

    def __hlg_tokenize__(self) -> object:
        """The constructor's parts and the annotations (no cached plan).

        >>> from operator import neg
        >>> from hlg import tokenize
        >>> a = blockwise(neg, "y", "i", "x", "i", numblocks={"x": (3,)})
        >>> b = blockwise(neg, "y", "i", "x", "i", numblocks={"x": (3,)})
        >>> tokenize(a) == tokenize(b), tokenize(a) == tokenize(a.replace(output="z"))
        (True, False)
        """
        return ("Blockwise", self._parts(), dict(self.annotations))

    def replace(self, **changes: Any) -> Blockwise:
        """A copy with some constructor arguments changed (annotations kept exactly)."""
        parts = self._parts()
        parts.update(changes)
        if "indices" in changes and "argument_numbers" not in changes:
            parts["argument_numbers"] = None  # other arguments: number them afresh
        new = Blockwise(**parts)
        new.annotations = self.annotations
        return new

    def __repr__(self) -> str:
        args = ", ".join(f"{t!r}:{''.join(i)}" for t, i in self.indices)
        return (
            f"<Blockwise {self.name!r} {self.output}[{''.join(self.output_indices)}] <- "
            f"{args}; {len(self):,} blocks>"
        )

    def __reduce__(self) -> tuple[Any, ...]:
        return (_rebuild_blockwise, (self._parts(), self.annotations))

    def _parts(self) -> dict[str, Any]:
        return {
            "output": self.output,
            "output_indices": self.output_indices,
            "template": self.template,
            "indices": self.indices,
            "numblocks": self.numblocks,
            "new_axes": self.new_axes,
            "concatenate": self.concatenate,
            "output_blocks": self.output_blocks,
            "name": self.name,
            "kind": self.kind,
            "argument_numbers": self._numbers,
        }


def _rebuild_blockwise(parts: dict[str, Any], annotations: Mapping[str, Any]) -> Blockwise:
    layer = Blockwise(**parts)
    layer.annotations = annotations  # type: ignore[assignment]
    return layer


def _box(shape: tuple[int, ...]) -> Iterator[tuple[int, ...]]:
    """Every block of ``shape`` in C order, lazily (``itertools.product`` would first copy
    each range into a tuple)."""
    if not shape:
        yield ()
        return
    head, rest = range(shape[0]), shape[1:]
    if not rest:
        for i in head:
            yield (i,)
        return
    for i in head:
        for tail in _box(rest):
            yield (i, *tail)


def _ranges(maps: tuple[AxisMap, ...]) -> list[tuple[int, int] | int]:
    """Per argument axis: the output axis it follows, or a fixed ``(start, stop)`` range."""
    ranges: list[tuple[int, int] | int] = []
    for m in maps:
        if isinstance(m, int):
            ranges.append((0, 1) if m == -1 else m)
        elif isinstance(m, Zeros):
            ranges.append((0, 1))
        else:
            ranges.append((m[0], m[-1] + 1) if len(m) else (0, 0))
    return ranges


def _repeated(maps: tuple[AxisMap, ...]) -> list[int]:
    used = [m for m in maps if isinstance(m, int) and m >= 0 and not isinstance(m, bool)]
    return sorted({m for m in used if used.count(m) > 1})


def diagonal_steps(maps: tuple[AxisMap, ...], blocks: BlockSet) -> int:
    """How many boxes :func:`map_boxes` yields for the boxes of ``blocks`` that span a
    repeated index by more than one block (O(boxes)); 0 without a repeated index.

    >>> diagonal_steps((0, 0, 1), BlockSet.box([(0, 100), (0, 10**6)]))
    100
    """
    repeated = _repeated(maps)
    if not repeated:
        return 0
    return sum(
        math.prod(box[m][1] - box[m][0] for m in repeated)
        for box in blocks.boxes
        if any(box[m][1] - box[m][0] > 1 for m in repeated)
    )


def map_boxes(maps: tuple[AxisMap, ...], blocks: BlockSet) -> Iterator[Box]:
    """The argument boxes that the boxes and points of ``blocks`` read: one per box, or one
    per step of each repeated index the box spans (the other axes stay ranges), and one
    per point. Lazy: a caller counts the steps first (:func:`diagonal_steps`).

    >>> list(map_boxes((0, 0, -1), BlockSet(2, [((1, 3), (0, 9))], [(7, 0)])))
    [((1, 2), (1, 2), (0, 1)), ((2, 3), (2, 3), (0, 1)), ((7, 8), (7, 8), (0, 1))]
    """
    ranges = _ranges(maps)
    repeated = _repeated(maps)
    for box in blocks.boxes:
        spans = [m for m in repeated if box[m][1] - box[m][0] > 1]
        for steps in itertools.product(*[range(*box[m]) for m in spans]):
            fixed = {i: box[i] for i in range(len(box))}
            fixed.update({m: (c, c + 1) for m, c in zip(spans, steps, strict=True)})
            yield tuple(fixed[r] if isinstance(r, int) else r for r in ranges)
    for block in blocks.points:
        yield tuple((block[r], block[r] + 1) if isinstance(r, int) else r for r in ranges)


def _map_point(
    ranges: list[tuple[int, int] | int], block: tuple[int, ...], out: set[tuple[int, ...]]
) -> None:
    """Add the argument blocks one output block reads (ranges along contracted axes)."""
    axes = [range(block[r], block[r] + 1) if isinstance(r, int) else range(*r) for r in ranges]
    out.update(itertools.product(*axes))


def _empty(block: tuple[int, ...]) -> tuple[int, ...]:
    return ()


def _single(position: int) -> Callable[[tuple[int, ...]], tuple[int, ...]]:
    def pick(block: tuple[int, ...]) -> tuple[int, ...]:
        return (block[position],)

    return pick


def _nested(
    maps: tuple[AxisMap, ...],
    block: tuple[int, ...],
    head: tuple[Any, ...],
    make: Callable[[Any], Any],
) -> Any:
    """The value for one argument: ``make(key)`` or nested lists along contracted axes."""
    coords = list(head)
    for axis, m in enumerate(maps):
        if not isinstance(m, int):
            rest = maps[axis + 1 :]
            return [_nested(rest, block, (*coords, c), make) for c in m]
        coords.append(0 if m == -1 else block[m])
    return make(tuple(coords))


def _collect(
    maps: tuple[AxisMap, ...], block: tuple[int, ...], head: tuple[Any, ...], out: list[Key]
) -> None:
    coords = list(head)
    for axis, m in enumerate(maps):
        if not isinstance(m, int):
            for c in m:
                _collect(maps[axis + 1 :], block, (*coords, c), out)
            return
        coords.append(0 if m == -1 else block[m])
    out.append(tuple(coords))


_LAYER_OPTIONS = {"name": "layer_name", "annotations": "layer_annotations"}


def _check_layer_keywords(func: Callable[..., Any], kwargs: Mapping[str, Any]) -> None:
    """Refuse ``name=``/``annotations=`` that ``func`` does not take: they were meant for
    the layer (``layer_name=``/``layer_annotations=``), and would fail only when run."""
    misplaced = [k for k in _LAYER_OPTIONS if k in kwargs]
    if not misplaced:
        return
    try:
        signature = inspect.signature(func)
    except (TypeError, ValueError):  # not introspectable: the keyword goes to func
        return
    params = signature.parameters
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return
    for k in misplaced:
        param = params.get(k)
        if param is None or param.kind is inspect.Parameter.POSITIONAL_ONLY:
            raise TypeError(
                f"blockwise: keyword {k!r} goes to {getattr(func, '__name__', func)!r}, "
                f"which does not take it; name the layer's option {_LAYER_OPTIONS[k]}="
            )


def blockwise(
    func: Callable[..., Any],
    out_name: str,
    out_ind: str | Index,
    *args: Any,
    numblocks: Mapping[str, Sequence[int]] | None = None,
    new_axes: Mapping[str, int | tuple[int, ...]] | None = None,
    concatenate: bool | Callable[..., Any] | None = None,
    layer_name: str | None = None,
    layer_annotations: Mapping[str, Any] | None = None,
    func_kwargs: Mapping[str, Any] | None = None,
    **kwargs: Any,
) -> Blockwise:
    """Build a :class:`Blockwise` layer from ``(argument, index)`` pairs.

    Each pair is an input name with its index string (its blocks are read), a
    :class:`~hlg.layers.BlockProvider` with its index string, or ``(literal, None)`` for a
    constant. ``numblocks`` maps each input name to its block counts. ``new_axes`` maps
    new output indices to their chunks: an int (one block) or a tuple of chunk sizes
    (one block each). ``concatenate=True`` turns contracted lists into one block with
    :func:`concatenate_axes`; a callable ``f(blocks, axes)`` does it your way.
    ``**kwargs`` go to ``func``; they may hold ``TaskRef``s. The builder's own options are
    keyword-only and spelled so that they do not collide with a function's keywords:
    ``layer_name`` (default ``out_name``) and ``layer_annotations`` name and annotate the
    layer, so ``name=`` or ``annotations=`` reach ``func``; ``func_kwargs`` passes any
    keyword to ``func``, even one spelled like an option (``numblocks``, ...).
    A 0-d output (``out_ind=""``) has the single key ``(out_name,)``, a tuple.

    >>> from operator import add
    >>> nb = {"x": (2, 3), "y": (3, 2)}
    >>> layer = blockwise(add, "z", "ij", "x", "ij", "y", "ji", numblocks=nb)
    >>> len(layer), layer[("z", 0, 1)]
    (6, Task(('z', 0, 1), add, TaskRef(('x', 0, 1)), TaskRef(('y', 1, 0))))
    >>> dot = blockwise(sum, "s", "i", "x", "ij", numblocks={"x": (2, 3)})
    >>> dot[("s", 1)]
    Task(('s', 1), sum, [TaskRef(('x', 1, 0)), TaskRef(('x', 1, 1)), TaskRef(('x', 1, 2))])
    >>> def label(block, name="?"):
    ...     return f"{name}: {block}"
    >>> named = blockwise(label, "n", "i", "x", "i", numblocks={"x": (2,)}, name="x",
    ...                   layer_name="labels")
    >>> named.name, named[("n", 1)]
    ('labels', Task(('n', 1), label, TaskRef(('x', 1)), name='x'))
    """
    if len(args) % 2:
        raise ValueError(
            f"blockwise takes (argument, index) pairs; got {len(args)} items, an odd number"
        )
    concat_func: Callable[..., Any] | None
    if concatenate is True:
        concat_func = concatenate_axes
    elif callable(concatenate):
        concat_func = concatenate
    else:
        concat_func = None
    pairs = list(zip(args[::2], args[1::2], strict=True))
    indices: list[tuple[str | BlockProvider, str | Index]] = []
    numbers: list[int] = []
    for position, (arg, ind) in enumerate(pairs):
        if ind is None:
            continue
        if not isinstance(arg, (str, BlockProvider)):
            raise TypeError(
                f"{_describe(position, arg)}: an indexed argument must be an input name "
                "(str) or a BlockProvider; pass constants as (value, None)"
            )
        indices.append((arg, ind))
        numbers.append(position)
    axes = {k: (len(v) if isinstance(v, (tuple, list)) else 1) for k, v in (new_axes or {}).items()}
    names = {a for a, _ in indices if isinstance(a, str)}
    _check_layer_keywords(func, kwargs)
    if func_kwargs:
        both = sorted(set(func_kwargs) & set(kwargs))
        if both:
            raise TypeError(f"blockwise: keywords {both} given both directly and in func_kwargs")
        kwargs = {**kwargs, **func_kwargs}
    if numblocks is not None and not isinstance(numblocks, Mapping):
        raise TypeError(
            f"blockwise: numblocks must map each input name to its block counts, like "
            f"{{'x': (2, 3)}}; got {numblocks!r}"
        )
    given = dict(numblocks or {})
    for k, v in given.items():
        if isinstance(v, (str, bytes)) or not isinstance(v, Iterable):
            raise TypeError(
                f"blockwise: numblocks[{k!r}] must be a sequence of block counts, one per "
                f"dimension, like (2, 3); got {v!r}"
            )
    unknown = set(given) - names
    if unknown:
        raise ValueError(f"numblocks names inputs that are not arguments: {sorted(unknown)}")
    # Build a provisional layer with a flat template to learn the contracted axes.
    flat = ArgSpec(func, *[Placeholder(i) for i in range(len(indices))])
    probe = Blockwise(
        out_name, out_ind, flat, indices, given, axes, bool(concat_func), argument_numbers=numbers
    )
    call_args: list[Any] = []
    slot = 0
    for arg, ind in pairs:
        if ind is None:
            call_args.append(arg)
            continue
        contracted = probe.contracted_axes(slot)
        if concat_func is not None and contracted:
            call_args.append(ArgSpec(concat_func, Placeholder(slot), contracted))
        else:
            call_args.append(Placeholder(slot))
        slot += 1
    template = ArgSpec(func, *call_args, **kwargs)
    return Blockwise(
        out_name,
        out_ind,
        template,
        indices,
        given,
        axes,
        bool(concat_func),
        name=layer_name,
        annotations=layer_annotations,
        argument_numbers=numbers,
    )
