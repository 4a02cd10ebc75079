"""Shuffle layers (all-to-all repartitioning as a staged task shuffle) and their packing kind.

Positions ``0 … k**stages - 1`` are written in base ``k``, digit 0 least significant.
*Level* ``s`` holds the data after ``s`` routing stages: position ``p`` of level 0 is
input partition ``p``; stage ``s`` splits each position of level ``s`` by digit ``s`` of
the records' destinations and level ``s + 1`` position ``q`` gathers piece ``digit_s(q)``
from the positions that differ from ``q`` in digit ``s`` only. Level ``stages`` holds
the output partitions. A position exists (has a task) only when data can reach it:
``p = h * k**s + r`` with ``r < min(npartitions_out, k**s)`` and
``h < ceil(npartitions_in / k**s)``; padding positions have no task and no piece.

One task per position and level: level ``s < stages`` is key ``(name + "-split", s, p)``
and returns the ``k`` pieces of its data (the concatenation of its gathered pieces, or
the input partition at level 0); level ``stages`` is the output ``(name, q)``. Every
task reads one piece of each split output it depends on: :meth:`Shuffle.pieces` says
which, symbolically, and :meth:`Shuffle.piece_count` / :meth:`Shuffle.piece_of` are the
declaration the processes scheduler reads (see ``hlg/_pieces.py``) to send that piece
alone. The layer never builds a task for ``len``, ``in``, iteration, dependencies or
culling; ``layer[key]`` builds one task in O(k).
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable, Iterator, Mapping, Sequence
from itertools import repeat
from typing import Any

import msgspec

from hlg import (
    BlockSet,
    GraphNode,
    HighLevelGraph,
    Key,
    Layer,
    PackContext,
    PackError,
    Task,
    TaskRef,
    UnpackContext,
)
from hlg._gc import gc_paused
from hlg._task import _rebuild_task
from hlg.kinds import Kind
from hlg.layers._located import LocatedLayer, check_count, check_names, coordinate, pack_errors

__all__ = ["SHUFFLE", "Shuffle", "ShuffleKind", "ShuffleTemplate", "shuffle_plan", "shuffle_step"]


def shuffle_plan(
    npartitions_in: int, npartitions_out: int, max_branch: int = 32
) -> tuple[int, int]:
    """``(stages, k)`` of a shuffle: the fewest stages (at least 1) with
    ``max_branch ** stages >= n`` and the smallest ``k`` with ``k ** stages >= n``, where
    ``n = max(npartitions_in, npartitions_out)`` — exactly ``ceil(log(n) / log(max_branch))``
    and ``ceil(n ** (1 / stages))``, computed in integers.

    >>> shuffle_plan(1000, 1000, 32), shuffle_plan(10_000, 10_000, 32), shuffle_plan(5, 3)
    ((2, 32), (3, 22), (1, 5))
    """
    n = max(npartitions_in, npartitions_out)
    stages = 1
    while max_branch**stages < n:
        stages += 1
    k = max(1, round(n ** (1.0 / stages)))
    while k**stages < n:
        k += 1
    while k > 1 and (k - 1) ** stages >= n:
        k -= 1
    return stages, k


def shuffle_step(
    split: Callable[[Any, int, int], Sequence[Any]],
    concat: Callable[[list[Any]], Any],
    k: int,
    stage: int | None,
    piece: int | None,
    *inputs: Any,
) -> Any:
    """Run one shuffle task: gather piece ``piece`` of each split output in ``inputs``
    (or take the one input whole when ``piece`` is None), concatenate, then split the
    result for ``stage`` (or return it when ``stage`` is None).

    >>> split = lambda part, k, s: [[x for x in part if x % k == j] for j in range(k)]
    >>> shuffle_step(split, lambda ps: sum(ps, []), 2, 0, None, [1, 2, 3])
    [[2], [1, 3]]
    >>> shuffle_step(split, lambda ps: sum(ps, []), 2, None, 1, [[2], [1, 3]], [[4], [5]])
    [1, 3, 5]
    """
    part = inputs[0] if piece is None else concat([pieces[piece] for pieces in inputs])
    if stage is None:
        return part
    pieces = split(part, k, stage)
    try:
        count = len(pieces)
    except TypeError:
        count = -1
    if count != k:
        got = f"{count} pieces" if count >= 0 else f"a {type(pieces).__name__}"
        raise ValueError(
            f"Shuffle split returned {got} at stage {stage}; it must return a list of "
            f"k={k} pieces (piece j for digit j)"
        )
    return pieces


_FIRST_INPUT = 5  # shuffle_step's positional arguments before the inputs


class ShuffleTemplate:
    """The constant part of a shuffle's tasks (``split``, ``concat``, ``k``): one blob.

    ``fill(key, [stage, piece, *TaskRefs])`` builds the task, as a worker does from a
    packed task; the layer calls :meth:`build` with plain keys.

    >>> t = ShuffleTemplate(list, list, 2).build(("y", 0), None, 0, [("s", 0, 0), ("s", 0, 1)])
    >>> t.dependencies == {("s", 0, 0), ("s", 0, 1)}
    True
    """

    __slots__ = ("concat", "k", "split")

    def __init__(
        self,
        split: Callable[[Any, int, int], Sequence[Any]],
        concat: Callable[[list[Any]], Any],
        k: int,
    ) -> None:
        self.split = split
        self.concat = concat
        self.k = k

    def build(self, key: Key, stage: int | None, piece: int | None, sources: Sequence[Key]) -> Task:
        """The task of ``key`` reading ``sources`` (plain keys) in order."""
        args = (self.split, self.concat, self.k, stage, piece, *sources)
        plan = ((1 << len(sources)) - 1) << _FIRST_INPUT
        return _rebuild_task(key, shuffle_step, args, None, tuple(sources), plan)

    def fill(self, key: Key, fills: Sequence[Any]) -> Task:
        """The task of ``key`` from ``[stage, piece, *TaskRefs]``."""
        return self.build(key, fills[0], fills[1], [ref.key for ref in fills[2:]])

    def __eq__(self, other: object) -> bool:
        return (
            type(other) is ShuffleTemplate
            and other.k == self.k
            and (other.split is self.split or other.split == self.split)
            and (other.concat is self.concat or other.concat == self.concat)
        )

    def __hash__(self) -> int:
        return hash((ShuffleTemplate, self.k))

    def __repr__(self) -> str:
        return f"ShuffleTemplate({self.split!r}, {self.concat!r}, k={self.k})"

    def __reduce__(self) -> tuple[Any, ...]:
        return (ShuffleTemplate, (self.split, self.concat, self.k))


class Shuffle(LocatedLayer):
    """An all-to-all repartitioning of ``npartitions_in`` partitions of ``input_name``
    into ``npartitions_out`` partitions ``(name, q)``, as a staged task shuffle.

    ``split(part, k, s)`` returns ``k`` pieces of ``part``: piece ``j`` holds the records
    whose destination partition has digit ``s`` (base ``k``) equal to ``j``. ``concat``
    joins a list of pieces (in source order). ``parts_out`` keeps only those output
    partitions (and the tasks they need).

    >>> def split(part, k, s):
    ...     return [[x for x in part if x // k**s % k == j] for j in range(k)]
    >>> layer = Shuffle("out", "inp", 3, 4, split, lambda pieces: sum(pieces, []))
    >>> (layer.stages, layer.k), len(layer), sorted(layer.dependencies(("out", 1)))
    ((1, 4), 7, [('out-split', 0, 0), ('out-split', 0, 1), ('out-split', 0, 2)])
    >>> layer.pieces(("out", 1))
    ((('out-split', 0, 0), 1), (('out-split', 0, 1), 1), (('out-split', 0, 2), 1))
    >>> import hlg
    >>> data = hlg.MaterializedLayer(
    ...     {("inp", i): hlg.DataNode(("inp", i), [i, i + 3, i + 5]) for i in range(3)}, "inp"
    ... )
    >>> g = hlg.HighLevelGraph({"inp": data, "out": layer}, {"out": ["inp"]})
    >>> hlg.get(g, [("out", q) for q in range(4)])
    [[0, 4], [5, 1, 5], [6, 2], [3, 7]]
    """

    kind = "shuffle"
    _caches = LocatedLayer._caches | {"_offset_cache"}

    def __init__(
        self,
        name: str,
        input_name: str,
        npartitions_in: int,
        npartitions_out: int,
        split: Callable[[Any, int, int], Sequence[Any]],
        concat: Callable[[list[Any]], Any],
        max_branch: int = 32,
        parts_out: Iterable[int] | None = None,
        annotations: Mapping[str, Any] | None = None,
    ) -> None:
        if not callable(split):
            raise TypeError(f"Shuffle split must be callable; got {split!r}")
        if not callable(concat):
            raise TypeError(f"Shuffle concat must be callable; got {concat!r}")
        nin = check_count("Shuffle", npartitions_in, "npartitions_in", 1)
        nout = check_count("Shuffle", npartitions_out, "npartitions_out", 1)
        branch = check_count("Shuffle", max_branch, "max_branch", 2)
        template = ShuffleTemplate(split, concat, shuffle_plan(nin, nout, branch)[1])
        super().__init__(name, annotations)
        self._setup(name, input_name, nin, nout, branch, template, parts_out)

    @classmethod
    def _rebuild(
        cls,
        name: str,
        output: str,
        input_name: str,
        nin: int,
        nout: int,
        max_branch: int,
        template: Any,
        parts_out: Iterable[int] | None,
        annotations: Mapping[str, Any],
    ) -> Shuffle:
        layer = cls._blank(name, annotations)
        layer._setup(output, input_name, nin, nout, max_branch, template, parts_out)
        return layer

    def _setup(
        self,
        output: str,
        input_name: str,
        nin: int,
        nout: int,
        max_branch: int,
        template: Any,
        parts_out: Iterable[int] | None,
    ) -> None:
        check_names("Shuffle", output, input_name, ["-split"])
        self.output = output
        self.split_name = output + "-split"
        self.input_name = input_name
        self.npartitions_in = nin
        self.npartitions_out = nout
        self.max_branch = max_branch
        self.stages, self.k = shuffle_plan(nin, nout, max_branch)
        self.template = template
        self._direct = type(template) is ShuffleTemplate
        kept: frozenset[int] | None = None
        if parts_out is not None:
            kept = frozenset(parts_out)
            for q in kept:
                if type(q) is not int or not 0 <= q < nout:
                    raise ValueError(
                        f"Shuffle parts_out: {q!r} is not an output partition (0..{nout - 1})"
                    )
        self.parts_out = kept
        k = self.k
        self._pow = [k**s for s in range(self.stages + 1)]
        levels: list[tuple[Sequence[int], Collection[int], int]] = []
        for size in self._pow:
            heights = -(-nin // size)
            if kept is None:
                residues: Sequence[int] = range(min(nout, size))
                levels.append((residues, residues, heights))
            else:
                found = frozenset(q % size for q in kept)
                levels.append((tuple(sorted(found)), found, heights))
        self._levels = levels
        self.__dict__["_prefixes"] = frozenset({output, self.split_name})

    # -- structure ----------------------------------------------------------------------

    def level_size(self, level: int) -> int:
        """How many tasks level ``level`` has (``stages`` is the output level).

        >>> layer = Shuffle("y", "x", 1000, 1000, list, list)
        >>> [layer.level_size(s) for s in range(layer.stages + 1)]
        [1000, 1024, 1000]
        """
        residues, _, heights = self._levels[level]
        return len(residues) * heights

    def _locate(self, key: object) -> tuple[int, int] | None:
        """``(level, position)`` of a key of this layer, or None."""
        if type(key) is not tuple:
            return None
        if len(key) == 2 and key[0] == self.output:
            level = self.stages
            p = coordinate(key[1])
        elif len(key) == 3 and key[0] == self.split_name:
            s = coordinate(key[1])
            if s is None or not 0 <= s < self.stages:
                return None
            level = s
            p = coordinate(key[2])
        else:
            return None
        if p is None or p < 0:
            return None
        size = self._pow[level]
        _, members, heights = self._levels[level]
        if p // size >= heights or p % size not in members:
            return None
        return level, p

    def _key(self, level: int, p: int) -> Key:
        if level == self.stages:
            return (self.output, p)
        return (self.split_name, level, p)

    def _sources(self, level: int, p: int) -> tuple[list[Key], int]:
        """The level ``level - 1`` keys position ``p`` gathers from, and the piece index."""
        below = self._pow[level - 1]
        size = self._pow[level]
        base = p // size * size + p % below
        first = p // size * self.k
        count = min(self.k, self._levels[level - 1][2] - first)
        positions = range(base, base + count * below, below)
        sources = list(zip(repeat(self.split_name), repeat(level - 1), positions))
        return sources, p // below % self.k  # type: ignore[return-value]

    def pieces(self, key: Key) -> tuple[tuple[Key, int], ...]:
        """The pieces the task of ``key`` reads: ``(split output key, piece index)`` pairs.

        Level-0 tasks read their input partition whole: ``((input key, -1),)``.

        >>> layer = Shuffle("y", "x", 2, 2, list, list)
        >>> layer.pieces(("y-split", 0, 1)), layer.pieces(("y", 0))
        (((('x', 1), -1),), ((('y-split', 0, 0), 0), (('y-split', 0, 1), 0)))
        """
        where = self._locate(key)
        if where is None:
            raise KeyError(key)
        level, p = where
        if level == 0:
            return (((self.input_name, p), -1),)
        sources, piece = self._sources(level, p)
        return tuple((source, piece) for source in sources)

    def piece_count(self, key: Key) -> int:
        """How many pieces the result of ``key`` has: ``k`` for a split output (every
        reader takes one), 0 for an output partition (read whole).

        Together with :meth:`piece_of`, this is the declaration a scheduler moving
        results between processes reads to send each task only its pieces.

        >>> layer = Shuffle("y", "x", 3, 3, list, list)
        >>> layer.piece_count(("y-split", 0, 2)), layer.piece_count(("y", 2))
        (3, 0)
        """
        where = self._locate(key)
        if where is None:
            raise KeyError(key)
        return 0 if where[0] == self.stages else self.k

    def piece_of(self, key: Key, dependency: Key) -> int:
        """The piece of ``dependency`` that the task of ``key`` reads (-1: all of it, for
        a level-0 task and its input partition), in O(1).

        >>> layer = Shuffle("y", "x", 3, 3, list, list)
        >>> layer.piece_of(("y", 2), ("y-split", 0, 1)), layer.piece_of(("y-split", 0, 1), ("x", 1))
        (2, -1)
        >>> layer.piece_of(("y", 2), ("x", 1))
        Traceback (most recent call last):
        ...
        KeyError: "('y', 2) does not read ('x', 1)"
        """
        where = self._locate(key)
        if where is None:
            raise KeyError(key)
        level, p = where
        if level == 0:
            if dependency == (self.input_name, p):
                return -1
        else:
            found = self._locate(dependency)
            if found is not None and found[0] == level - 1:
                below = self._pow[level - 1]
                size = below * self.k
                source = found[1]
                if source // size == p // size and source % below == p % below:
                    return int(p // below % self.k)
        raise KeyError(f"{key!r} does not read {dependency!r}")

    def _build(self, level: int, p: int, below: list[Any] | None = None) -> GraphNode:
        """The task at ``p`` of ``level``; ``below`` (from materialize) holds the keys of
        the level below by position, so that tasks share key tuples."""
        key = self._key(level, p)
        stage = None if level == self.stages else level
        sources: list[Key]
        if level == 0:
            sources = [(self.input_name, p)]
            piece = None
        elif below:
            step = self._pow[level - 1]
            size = step * self.k
            base = p // size * size + p % step
            count = min(self.k, self._levels[level - 1][2] - p // size * self.k)
            sources = below[base : base + count * step : step]
            piece = p // step % self.k
        else:
            sources, piece = self._sources(level, p)
        if self._direct:
            return self.template.build(key, stage, piece, sources)  # type: ignore[no-any-return]
        return self.template.fill(key, [stage, piece, *map(TaskRef, sources)])  # type: ignore[no-any-return]

    # -- the Layer protocol -------------------------------------------------------------

    def __len__(self) -> int:
        return sum(self.level_size(s) for s in range(self.stages + 1))

    def __iter__(self) -> Iterator[Key]:
        for level in range(self.stages + 1):
            residues, _, heights = self._levels[level]
            size = self._pow[level]
            if level == self.stages:
                name = self.output
                for h in range(heights):
                    for r in residues:
                        yield (name, h * size + r)
            else:
                split = self.split_name
                for h in range(heights):
                    for r in residues:
                        yield (split, level, h * size + r)

    def _spans(self) -> list[int]:
        return [self._pow[lv] * self._levels[lv][2] for lv in range(self.stages + 1)]

    def _offsets(self) -> list[int]:
        """The first position of each level (derived from the levels once, then kept)."""
        found: list[int] | None = self.__dict__.get("_offset_cache")
        if found is None:
            found = [0]
            for span in self._spans():
                found.append(found[-1] + span)
            self.__dict__["_offset_cache"] = found
        return found

    def read_prefixes(self) -> frozenset[str]:
        """The one input layer's name: every task outside the layer reads ``input_name``."""
        return frozenset({self.input_name})

    def position_span(self) -> int:
        """Positions run level by level, each level ``p`` over ``0 … k**s * heights``
        (padding positions hold no key).

        >>> layer = Shuffle("y", "x", 3, 3, list, list, max_branch=2)
        >>> span = layer.position_span()
        >>> all(layer.position_key(layer.key_position(k)) == k for k in layer), span >= len(layer)
        (True, True)
        """
        return sum(self._spans())

    def key_position(self, key: Key) -> int:
        """The position of ``key`` (a key of this layer)."""
        level, p = self._locate(key)  # type: ignore[misc]
        return self._offsets()[level] + p

    def position_key(self, position: int) -> Key:
        """The key at ``position``."""
        for level, span in enumerate(self._spans()):
            if position < span:
                return self._key(level, position)
            position -= span
        raise IndexError(position)

    def dependency_tuple(self, key: Key) -> tuple[Key, ...]:
        """The keys ``key`` reads, from its position alone."""
        where = self._locate(key)
        if where is None:
            raise KeyError(key)
        level, p = where
        if level == 0:
            return ((self.input_name, p),)
        return tuple(self._sources(level, p)[0])

    def materialize(self) -> dict[Key, GraphNode]:
        """Build every task."""
        out: dict[Key, GraphNode] = {}
        with gc_paused():
            below: list[Any] = []  # the previous level's keys by position: shared tuples
            for level in range(self.stages + 1):
                residues, _, heights = self._levels[level]
                size = self._pow[level]
                keys: list[Any] = [None] * (heights * size)
                for h in range(heights):
                    for r in residues:
                        p = h * size + r
                        key = keys[p] = self._key(level, p)
                        out[key] = self._build(level, p, below)
                below = keys
        return out

    def cull(self, keys: Iterable[Key]) -> tuple[Layer, frozenset[Key]]:
        """Keep the output partitions among ``keys`` and the tasks they need, symbolically.

        >>> layer = Shuffle("y", "x", 1000, 1000, list, list)
        >>> culled, external = layer.cull([("y", 7)])
        >>> len(culled), len(external), culled.name.startswith("y-cull-")
        (1033, 1000, True)
        """
        listed = list(keys)
        culled = self._keeping(listed)
        if culled is None:  # split keys requested by name: the generic closure keeps them
            return Layer.cull(self, listed)
        return culled, culled._inputs_read()

    def cull_keys(self, keys: Iterable[Key]) -> tuple[Layer, dict[str, BlockSet], frozenset[Key]]:
        """:meth:`cull`, with the input partitions read given as one range (a BlockSet).

        >>> layer = Shuffle("y", "x", 1000, 1000, list, list)
        >>> culled, needs, other = layer.cull_keys([("y", 7)])
        >>> len(culled), needs, other
        (1033, {'x': BlockSet(1, boxes=[((0, 1000),)], points=0)}, frozenset())
        """
        listed = list(keys)
        culled = self._keeping(listed)
        if culled is None:
            return Layer.cull_keys(self, listed)
        if culled.parts_out is not None and not culled.parts_out:
            return culled, {}, frozenset()
        return culled, {self.input_name: BlockSet.full((self.npartitions_in,))}, frozenset()

    def _keeping(self, keys: list[Key]) -> Shuffle | None:
        """This layer, or the one keeping the requested output partitions (None when
        split keys are requested by name)."""
        outputs: set[int] = set()
        for key in keys:
            where = self._locate(key)
            if where is None:
                continue
            if where[0] != self.stages:
                return None
            outputs.add(where[1])
        if self.parts_out is None and len(outputs) == self.npartitions_out:
            return self
        if self.parts_out is not None and outputs == self.parts_out:
            return self
        name = self.culled_name((self.output, q) for q in outputs)
        return Shuffle._rebuild(
            name,
            self.output,
            self.input_name,
            self.npartitions_in,
            self.npartitions_out,
            self.max_branch,
            self.template,
            outputs,
            self.annotations,
        )

    def _inputs_read(self) -> frozenset[Key]:
        if self.parts_out is not None and not self.parts_out:
            return frozenset()
        name = self.input_name
        return frozenset([(name, p) for p in range(self.npartitions_in)])

    def __repr__(self) -> str:
        kept = "" if self.parts_out is None else f", {len(self.parts_out)} kept"
        return (
            f"<Shuffle {self.name!r} {self.input_name}[{self.npartitions_in}] -> "
            f"{self.output}[{self.npartitions_out}]; {self.stages} stages of k={self.k}"
            f"{kept}; {len(self):,} tasks>"
        )

    def __reduce__(self) -> tuple[Any, ...]:
        return (
            Shuffle._rebuild,
            (
                self.name,
                self.output,
                self.input_name,
                self.npartitions_in,
                self.npartitions_out,
                self.max_branch,
                self.template,
                self.parts_out,
                self.annotations,
            ),
        )


# -- packing ----------------------------------------------------------------------------


class ShuffleState(msgspec.Struct, array_like=True, frozen=True, gc=False):
    """The wire form of a Shuffle layer (kind version 1)."""

    output: str
    input_name: str
    npartitions_in: int
    npartitions_out: int
    max_branch: int
    template: int
    parts_out: list[int] | None


def _limit(limits: Any, name: str) -> int:
    """A limit by name; ``max_tasks`` bounds what this hlg's ``Limits`` does not name."""
    value = getattr(limits, name, None)
    return int(limits.max_tasks if value is None else value)


def check_partition_producer(
    graph: HighLevelGraph,
    reader: Layer,
    prefix: str,
    parts: Sequence[range],
    where: str,
    ctx: UnpackContext,
) -> None:
    """Check that keys ``(prefix, i)`` exist for ``i`` in ``parts``, in a layer ``reader``
    depends on: symbolically for whole layers, key by key (stopping at the first missing
    one, after a size check) otherwise: one producer with a block set by comparing sets,
    else key by key within ``ctx``'s work budget."""
    count = sum(len(r) for r in parts)
    if count == 0:
        return
    producers = [
        graph.layers[d]
        for d in graph.dependencies[reader.name]
        if prefix in graph.layers[d].prefixes
    ]
    if not producers:
        raise PackError(f"{where}: reads {prefix!r}, which no layer it depends on produces")
    top = max(r.stop for r in parts)
    known = [_partitions_of(p, prefix) for p in producers]
    if any(n is not None and n >= top for n in known):
        return  # one whole producer holds every partition read (others may be culled copies)
    if len(producers) == 1 and known[0] is not None:
        raise PackError(
            f"{where}: reads partitions of {prefix!r} up to {top - 1}, but layer "
            f"{producers[0].name!r} has {known[0]}"
        )
    if sum(len(p) for p in producers) < count:
        raise PackError(f"{where}: reads {count} partitions of {prefix!r}; its layers have fewer")
    kept = producers[0].block_set() if len(producers) == 1 else None
    if kept is not None and kept.ndim == 1 and prefix in producers[0].prefixes:
        for r in parts:  # compared as block sets: no walk over the partitions
            missing = BlockSet.box([(r.start, r.stop)]).first_missing(kept) if r else None
            if missing is not None:
                raise PackError(f"{where}: reads {(prefix, *missing)!r}, which is missing")
        return
    ctx.spend(count, f"{where}, partitions of {prefix!r}")
    for r in parts:
        for i in r:
            key = (prefix, i)
            if not any(key in p for p in producers):
                raise PackError(f"{where}: reads {key!r}, which is missing")


def _partitions_of(layer: Layer, prefix: str) -> int | None:
    """How many leading partitions ``(prefix, i)`` a whole symbolic layer has, or None."""
    from hlg.layers._blockwise import Blockwise
    from hlg.layers._reduction import TreeReduction

    if isinstance(layer, Blockwise) and layer.output == prefix and layer.output_blocks is None:
        return layer.shape[0] if len(layer.shape) == 1 else None
    if isinstance(layer, Shuffle) and layer.output == prefix and layer.parts_out is None:
        return layer.npartitions_out
    if isinstance(layer, TreeReduction) and layer.output == prefix and layer.whole:
        return 1
    return None


class ShuffleKind(Kind[ShuffleState]):
    """The layer kind of :class:`Shuffle` layers: a few numbers and one template blob.

    >>> import hlg
    >>> hlg.layer_kind("shuffle").name, hlg.layer_kind("shuffle").version
    ('shuffle', 1)
    """

    name = "shuffle"
    state_type = ShuffleState
    layer_type = Shuffle

    def pack(self, layer: Layer, ctx: PackContext) -> ShuffleState:
        assert isinstance(layer, Shuffle)
        kept = layer.parts_out
        return ShuffleState(
            output=layer.output,
            input_name=layer.input_name,
            npartitions_in=layer.npartitions_in,
            npartitions_out=layer.npartitions_out,
            max_branch=layer.max_branch,
            template=ctx.add(layer.template),
            parts_out=None if kept is None else sorted(kept),
        )

    def rebuild(self, name: str, state: ShuffleState, ctx: UnpackContext) -> Layer:
        where = f"layer {name!r}"
        limit = ctx.limits.max_tasks
        for what, n in [
            ("npartitions_in", state.npartitions_in),
            ("npartitions_out", state.npartitions_out),
        ]:
            if not 1 <= n <= limit:
                raise PackError(f"{where}: {what} {n} out of bounds (1..{limit})")
        if state.max_branch < 2:
            raise PackError(f"{where}: max_branch {state.max_branch} must be >= 2")
        if not state.output or not state.input_name:
            raise PackError(f"{where}: empty output or input name")
        stages, k = shuffle_plan(state.npartitions_in, state.npartitions_out, state.max_branch)
        fan_in = _limit(ctx.limits, "max_fan_in")
        if k > fan_in:
            raise PackError(
                f"{where}: each task reads {k} pieces, beyond the fan-in limit {fan_in}"
            )
        kept = state.parts_out
        if kept is not None:
            if len(kept) > state.npartitions_out:
                raise PackError(f"{where}: {len(kept)} kept partitions for {state.npartitions_out}")
            for q in kept:
                if not 0 <= q < state.npartitions_out:
                    raise PackError(f"{where}: kept output partition {q} is out of range")
        tasks, edges = _declared_size(state.npartitions_in, state.npartitions_out, stages, k, kept)
        if tasks > limit:
            raise PackError(f"{where}: declares {tasks} tasks, beyond the task limit {limit}")
        max_edges = _limit(ctx.limits, "max_edges")
        if edges > max_edges:
            raise PackError(f"{where}: declares {edges} edges, beyond the limit {max_edges}")
        template = ctx.template(state.template, where)
        with pack_errors(where):
            return Shuffle._rebuild(
                name,
                state.output,
                state.input_name,
                state.npartitions_in,
                state.npartitions_out,
                state.max_branch,
                template,
                kept,
                {},
            )

    def edges(self, layer: Layer) -> int:
        """Dependency edges, from the layer's numbers (counted towards ``Limits.max_edges``)."""
        assert isinstance(layer, Shuffle)
        kept = None if layer.parts_out is None else list(layer.parts_out)
        return _declared_size(
            layer.npartitions_in, layer.npartitions_out, layer.stages, layer.k, kept
        )[1]

    def verify(self, layer: Layer, graph: HighLevelGraph, where: str, ctx: UnpackContext) -> None:
        """The input partitions exist (symbolically when their layer is whole)."""
        assert isinstance(layer, Shuffle)
        empty = layer.parts_out is not None and not layer.parts_out
        parts = [] if empty else [range(layer.npartitions_in)]
        check_partition_producer(graph, layer, layer.input_name, parts, where, ctx)


def _declared_size(
    nin: int, nout: int, stages: int, k: int, kept: list[int] | None
) -> tuple[int, int]:
    """Tasks and edges a shuffle declares, from its numbers (kept outputs bound above
    by the whole layer): O(stages)."""
    tasks = edges = 0
    size = 1
    for level in range(stages + 1):
        heights = -(-nin // size)
        width = min(nout, size) if kept is None else min(len(kept), size, nout)
        count = width * heights
        tasks += count
        edges += count * (1 if level == 0 else k)
        size *= k
    return tasks, edges


SHUFFLE = ShuffleKind()
