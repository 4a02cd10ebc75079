"""Block sets: sets of block coordinates described by boxes, enumerated only when asked.

A layer whose keys are ``(prefix, *block)`` can be culled on a :class:`BlockSet` instead
of a list of keys. A block set is a union of disjoint *boxes* (a ``(start, stop)`` range
per axis; "all blocks" is one box) plus explicit *points* for what no box describes.
Membership, size, union, intersection, difference and subset tests cost O(boxes) — never
O(blocks) — except where explicit points are involved.
"""

from __future__ import annotations

import hashlib
import heapq
import itertools
import math
from collections.abc import Iterable, Iterator, Set
from operator import itemgetter
from typing import Any, final

__all__ = ["MAX_BOXES", "MAX_PIECES", "BlockSet", "Box"]

Block = tuple[int, ...]
Box = tuple[tuple[int, int], ...]
"""A ``(start, stop)`` range per axis."""

#: A block set never holds more boxes than this: beyond it, boxes become explicit points
#: (or, with ``exact=True``, the constructor refuses).
MAX_BOXES = 64

#: Splitting boxes against each other (union, difference, subset tests) never makes more
#: pieces than this: beyond it, the operation raises ValueError ("too fragmented").
MAX_PIECES = 4096


def _box_size(box: Box) -> int:
    return math.prod([stop - start for start, stop in box])


def _in_box(block: Block, box: Box) -> bool:
    return all(start <= c < stop for c, (start, stop) in zip(block, box, strict=True))


def _clip(a: Box, b: Box) -> Box | None:
    """The intersection of two boxes, or None when they do not overlap."""
    out = []
    for (s1, e1), (s2, e2) in zip(a, b, strict=True):
        start, stop = max(s1, s2), min(e1, e2)
        if start >= stop:
            return None
        out.append((start, stop))
    return tuple(out)


def _minus(a: Box, b: Box) -> list[Box]:
    """``a`` without ``b``, as disjoint boxes (at most two per axis)."""
    inner = _clip(a, b)
    if inner is None:
        return [a]
    pieces: list[Box] = []
    rest = list(a)
    for axis, ((start, stop), (lo, hi)) in enumerate(zip(a, inner, strict=True)):
        if start < lo:
            pieces.append((*rest[:axis], (start, lo), *rest[axis + 1 :]))
        if hi < stop:
            pieces.append((*rest[:axis], (hi, stop), *rest[axis + 1 :]))
        rest[axis] = (lo, hi)
    return pieces


def _merge_adjacent(boxes: list[Box]) -> list[Box]:
    """Join boxes that differ along one axis only and touch there (rows become slabs).

    Each pass groups the boxes by their ranges on every axis but one and joins touching
    neighbours of a group: O(boxes * axes) per pass, and a pass that joins nothing ends.
    """
    if len(boxes) < 2:
        return boxes
    ndim = len(boxes[0])
    changed = True
    while changed and len(boxes) > 1:
        changed = False
        for axis in range(ndim):
            groups: dict[Box, list[tuple[int, int]]] = {}
            for box in boxes:
                groups.setdefault(box[:axis] + box[axis + 1 :], []).append(box[axis])
            if len(groups) == len(boxes):
                continue  # no two boxes share the other axes
            out: list[Box] = []
            for rest, spans in groups.items():
                spans.sort()
                joined = [spans[0]]
                for start, stop in spans[1:]:
                    if joined[-1][1] == start:
                        joined[-1] = (joined[-1][0], stop)
                    else:
                        joined.append((start, stop))
                out.extend((*rest[:axis], span, *rest[axis:]) for span in joined)
            if len(out) < len(boxes):
                changed = True
            boxes = out
    return boxes


def _subtract(pieces: list[Box], boxes: Iterable[Box]) -> list[Box]:
    """``pieces`` (disjoint) without each of ``boxes``, refusing to fragment past
    :data:`MAX_PIECES` pieces (ValueError)."""
    for box in boxes:
        out: list[Box] = []
        for piece in pieces:
            out.extend(_minus(piece, box))
        if len(out) > MAX_PIECES:
            raise ValueError(
                f"block set too fragmented: splitting boxes gives more than {MAX_PIECES} pieces"
            )
        pieces = out
    return pieces


def _join(a: Box, b: Box) -> Box | None:
    differ = [axis for axis in range(len(a)) if a[axis] != b[axis]]
    if len(differ) != 1:
        return None
    (axis,) = differ
    (s1, e1), (s2, e2) = a[axis], b[axis]
    if e1 == s2:
        return (*a[:axis], (s1, e2), *a[axis + 1 :])
    if e2 == s1:
        return (*a[:axis], (s2, e1), *a[axis + 1 :])
    return None


def _canonical(boxes: list[Box], ndim: int, made: list[int]) -> list[Box]:
    """The coarsest slab partition of disjoint ``ndim``-axis ``boxes`` (see
    :meth:`BlockSet.canonical`): slabs along the first axis, each holding the same
    partition of the other axes, joined where they touch and agree. ``made`` counts
    the boxes looked at, refused past ``16 * MAX_PIECES`` (ValueError)."""
    if not boxes:
        return []
    if ndim == 0:
        return [()]
    cuts = sorted({b[0][0] for b in boxes} | {b[0][1] for b in boxes})
    slabs: list[tuple[int, int, list[Box]]] = []
    for lo, hi in itertools.pairwise(cuts):
        made[0] += len(boxes)
        if made[0] > 16 * MAX_PIECES:
            raise ValueError(f"more than {16 * MAX_PIECES} steps")
        inside = [b[1:] for b in boxes if b[0][0] <= lo and hi <= b[0][1]]
        section = _canonical(inside, ndim - 1, made)
        if not section:
            continue
        if slabs and slabs[-1][1] == lo and slabs[-1][2] == section:
            slabs[-1] = (slabs[-1][0], hi, section)
        else:
            slabs.append((lo, hi, section))
    return [((lo, hi), *rest) for lo, hi, section in slabs for rest in section]


def _box_blocks(box: Box) -> Iterator[Block]:
    return itertools.product(*[range(start, stop) for start, stop in box])


@final
class BlockSet(Set[Block]):
    """An immutable set of ``ndim``-dimensional blocks: disjoint boxes plus points.

    >>> every = BlockSet.full((1000, 1000))
    >>> len(every), (999, 3) in every, (1000, 0) in every
    (1000000, True, False)
    >>> row = BlockSet.box([(2, 3), (0, 1000)])
    >>> row <= every, len(every - row), row.boxes
    (True, 999000, (((2, 3), (0, 1000)),))
    >>> BlockSet.from_blocks([(0, 1), (1, 1), (0, 0), (1, 0)], 2).boxes  # a box after all
    (((0, 2), (0, 2)),)
    >>> sorted(BlockSet.from_blocks([(3, 1), (0, 0)], 2))
    [(0, 0), (3, 1)]

    It is a ``collections.abc.Set`` that equals only BlockSets (``set(a) == b`` compares
    with a frozenset; the hash then agrees with equality in O(boxes)). Membership takes
    integer coordinates (never bools). Iteration yields the blocks in lexicographic order.
    """

    __slots__ = ("boxes", "ndim", "points")
    ndim: int
    boxes: tuple[Box, ...]
    points: frozenset[Block]

    def __init__(
        self,
        ndim: int,
        boxes: Iterable[Box] = (),
        points: Iterable[Block] = (),
        *,
        exact: bool = False,
    ) -> None:
        # exact: never enumerate boxes into points (the scheduler side, where a box may
        # hold 10**8 blocks): more than MAX_BOXES boxes, or splitting past MAX_PIECES
        # pieces, raise ValueError instead.
        kept: list[Box] = []
        spill: list[Box] = []  # boxes past the splitting cap (enumerated, never exact)
        for box in boxes:
            box = tuple((int(s), int(e)) for s, e in box)
            if len(box) != ndim:
                raise ValueError(f"box {box} does not have {ndim} axes")
            if not _box_size(box):
                continue
            if spill:
                spill.append(box)
                continue
            try:
                kept.extend(_subtract([box], kept))
            except ValueError:
                if exact:
                    raise
                spill.append(box)
            if len(kept) > MAX_PIECES:
                if exact:
                    raise ValueError(
                        f"block set too fragmented: more than {MAX_PIECES} pieces of boxes"
                    )
                spill, kept = kept, []
        kept = _merge_adjacent(kept)
        pts = frozenset(points)
        if kept and pts:
            pts = frozenset(p for p in pts if not any(_in_box(p, b) for b in kept))
        if len(kept) > MAX_BOXES or spill:  # too fragmented to be worth describing
            if exact:
                raise ValueError(f"block set of more than {MAX_BOXES} boxes")
            pts = pts.union(*[_box_blocks(b) for b in kept + spill])
            kept = []
        self.ndim = ndim
        self.boxes = tuple(sorted(kept))
        self.points = pts

    # -- construction ---------------------------------------------------------------------

    @classmethod
    def _one_box(cls, box: Box) -> BlockSet:
        """One box known to be well formed: no normalization to do."""
        if not _box_size(box):
            return cls(len(box))
        new = cls.__new__(cls)
        new.ndim, new.boxes, new.points = len(box), (box,), frozenset()
        return new

    @classmethod
    def full(cls, shape: Iterable[int]) -> BlockSet:
        """Every block of a grid of ``shape`` blocks: one box."""
        return cls._one_box(tuple([(0, int(n)) for n in shape]))

    @classmethod
    def box(cls, ranges: Iterable[tuple[int, int]]) -> BlockSet:
        """The blocks of one box, given as a ``(start, stop)`` range per axis."""
        return cls._one_box(tuple([(int(s), int(e)) for s, e in ranges]))

    @classmethod
    def from_blocks(cls, blocks: Iterable[Block], ndim: int) -> BlockSet:
        """Explicit blocks; a set that fills its bounding box becomes that box (O(blocks)).

        >>> BlockSet.from_blocks([(0, 2), (1, 2)], 2)
        BlockSet(2, boxes=[((0, 2), (2, 3))], points=0)
        """
        pts = blocks if isinstance(blocks, frozenset) else frozenset(blocks)
        if not pts:
            return cls(ndim)
        if set(map(len, pts)) != {ndim}:
            bad = next(p for p in pts if len(p) != ndim)
            raise ValueError(f"block {bad!r} does not have {ndim} coordinates")
        bounds = tuple(
            (min(map(itemgetter(axis), pts)), max(map(itemgetter(axis), pts)) + 1)
            for axis in range(ndim)
        )
        if _box_size(bounds) == len(pts):
            return cls._one_box(bounds)
        return cls(ndim, (), pts)

    # -- the Set protocol -----------------------------------------------------------------

    def __contains__(self, block: object) -> bool:
        if type(block) is not tuple or len(block) != self.ndim:
            return False
        for c in block:  # integers (1.0 counts as 1, 0.5 never; True is no coordinate)
            if type(c) is not int and not (type(c) is float and c.is_integer()):
                return False
        if block in self.points:
            return True
        return any(_in_box(block, box) for box in self.boxes)

    def __len__(self) -> int:
        return sum(_box_size(b) for b in self.boxes) + len(self.points)

    def __iter__(self) -> Iterator[Block]:
        sources: list[Iterable[Block]] = [_box_blocks(b) for b in self.boxes]
        if self.points:
            sources.append(sorted(self.points))
        if len(sources) == 1:
            return iter(sources[0])
        return heapq.merge(*sources)

    def __bool__(self) -> bool:
        return bool(self.boxes or self.points)

    def __hash__(self) -> int:
        # O(boxes): equal block sets have equal sizes. A BlockSet equals only BlockSets
        # (not frozensets, whose hash would enumerate every block).
        return hash((BlockSet, len(self)))

    # -- algebra, symbolic on boxes ---------------------------------------------------------

    def union(self, other: BlockSet, *, exact: bool = False) -> BlockSet:
        """Blocks in either set (``exact``: as for the constructor, never enumerated)."""
        if not other:
            return self
        if not self:
            return other
        if self <= other:
            return other
        boxes, points = self.boxes + other.boxes, self.points | other.points
        return BlockSet(self.ndim, boxes, points, exact=exact)

    def intersection(self, other: BlockSet) -> BlockSet:
        """Blocks in both sets."""
        boxes = [c for a in self.boxes for b in other.boxes if (c := _clip(a, b)) is not None]
        points = {p for p in self.points if p in other} | {p for p in other.points if p in self}
        return BlockSet(self.ndim, boxes, points)

    def difference(self, other: BlockSet) -> BlockSet:
        """Blocks in this set and not in ``other``.

        Costs O(boxes²) plus, where ``other`` has explicit points inside this set's
        boxes, the blocks of the pieces those points fall in.
        """
        pieces = _subtract(list(self.boxes), other.boxes)
        points = {p for p in self.points if p not in other}
        if other.points:  # pieces holding explicit points of ``other`` are enumerated
            hit = [b for b in pieces if any(_in_box(p, b) for p in other.points)]
            if hit:
                pieces = [b for b in pieces if b not in hit]
                points.update(p for b in hit for p in _box_blocks(b) if p not in other.points)
        return BlockSet(self.ndim, pieces, points)

    def issubset(self, other: BlockSet) -> bool:
        """Whether every block of this set is in ``other`` (symbolic on boxes)."""
        return self.first_missing(other) is None

    def first_missing(self, other: BlockSet) -> Block | None:
        """A block of this set that ``other`` lacks, or None.

        Costs O(boxes²) plus at most ``len(other.points)`` blocks looked at: what
        ``other``'s boxes leave uncovered is only walked where its explicit points could
        cover it.

        >>> BlockSet.full((1000, 1000)).first_missing(BlockSet(2, [], [(0, 0), (0, 1)]))
        (0, 2)
        """
        for p in self.points:
            if p not in other:
                return p
        pieces = _subtract(list(self.boxes), other.boxes)
        budget = len(other.points)
        for piece in pieces:
            for block in _box_blocks(piece):  # each step finds a block or uses a point
                if block not in other.points:
                    return block
                budget -= 1
                if budget < 0:  # cannot happen: the points are distinct
                    return block
        return None

    def __le__(self, other: Set[Any]) -> bool:
        if isinstance(other, BlockSet):
            return self.issubset(other)
        return super().__le__(other)

    def __eq__(self, other: object) -> bool:
        """Equal to a BlockSet of the same blocks, never to another kind of set (so the
        hash agrees with equality without enumerating: compare ``set(a) == b``)."""
        if not isinstance(other, BlockSet):
            return NotImplemented
        if self.ndim != other.ndim:
            return not self and not other
        if self.boxes == other.boxes and self.points == other.points:
            return True
        return len(self) == len(other) and self.issubset(other)

    def __ne__(self, other: object) -> bool:
        equal = self.__eq__(other)
        return equal if equal is NotImplemented else not equal

    def __or__(self, other: Any) -> BlockSet:
        if isinstance(other, BlockSet):
            return self.union(other)
        return NotImplemented

    def __and__(self, other: Any) -> BlockSet:
        if isinstance(other, BlockSet):
            return self.intersection(other)
        return NotImplemented

    def __sub__(self, other: Any) -> BlockSet:
        if isinstance(other, BlockSet):
            return self.difference(other)
        return NotImplemented

    def within(self, shape: tuple[int, ...]) -> bool:
        """Whether every block lies in a grid of ``shape`` blocks (O(boxes + points))."""
        if len(shape) != self.ndim:
            return False
        grid = tuple((0, n) for n in shape)
        return all(_clip(b, grid) == b for b in self.boxes) and all(
            all(type(c) is int and 0 <= c < n for c, n in zip(p, shape, strict=True))
            for p in self.points
        )

    def canonical(self) -> tuple[Box, ...] | None:
        """The blocks as boxes that depend on the set only, not on how it was described
        (points count as one-block boxes), or None when there are more than
        ``4 * MAX_BOXES`` boxes and points or the sweep would look at more than
        ``16 * MAX_PIECES`` boxes (a set fragmented across many axes).

        Slabs along the first axis where the rest is the same are joined, recursively:
        the coarsest such partition, so equal sets give equal boxes.

        >>> BlockSet.full((2, 2)).canonical() == BlockSet.from_blocks(
        ...     [(0, 0), (0, 1), (1, 0), (1, 1)][:3], 2).union(BlockSet(2, [], [(1, 1)])
        ... ).canonical() == (((0, 2), (0, 2)),)
        True
        """
        pieces = list(self.boxes) + [tuple((c, c + 1) for c in p) for p in self.points]
        if len(pieces) > 4 * MAX_BOXES:
            return None
        try:
            return tuple(_canonical(pieces, self.ndim, [0]))
        except ValueError:
            return None

    def token(self, name: str) -> str:
        """A deterministic token of ``name`` and the set: of its :meth:`canonical` boxes,
        so equal sets described differently give one token; else (a set too fragmented
        for that) of its description, boxes as ranges and points order-independently.
        The cost is O(boxes + points) and never depends on the hash seed.
        """
        canonical = self.canonical()
        if canonical is not None:
            text = f"{name}:{self.ndim}:{canonical!r}"
            return hashlib.blake2b(text.encode(), digest_size=8).hexdigest()
        total = 0
        for p in self.points:
            digest = hashlib.blake2b(repr(p).encode(), digest_size=16).digest()
            total = (total + int.from_bytes(digest, "little")) % (1 << 128)
        text = f"{name}:{self.ndim}:{self.boxes!r}:{total}"
        return hashlib.blake2b(text.encode(), digest_size=8).hexdigest()

    def __hlg_tokenize__(self) -> object:
        """What :func:`hlg.tokenize` hashes: the set, not its description.

        >>> from hlg import tokenize
        >>> tokenize(BlockSet.full((2, 2))) == tokenize(
        ...     BlockSet(2, [], [(0, 0), (0, 1), (1, 0), (1, 1)]))
        True
        """
        return ("BlockSet", self.token(""))

    def __repr__(self) -> str:
        return f"BlockSet({self.ndim}, boxes={list(self.boxes)!r}, points={len(self.points)})"

    def __reduce__(self) -> tuple[Any, ...]:
        return (BlockSet, (self.ndim, self.boxes, self.points))
