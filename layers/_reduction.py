"""Tree reductions (chunk per partition, combine per group, aggregate) and their packing kind.

Level 0 applies ``chunk`` to each input partition: keys ``(name + "-chunk", i)``. Level
``l`` (``1 ≤ l < depth``) combines groups of ``split_every`` consecutive results of level
``l - 1``: keys ``(name + "-combine", l, g)``, ``ceil(n / split_every**l)`` of them. The
last level aggregates what is left into ``(name, 0)``. ``depth`` is the fewest levels
(at least 1) with ``split_every ** depth >= n``. Every group lists its children in
partition order, so a non-commutative ``combine`` is right.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
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
from hlg._blocks import MAX_BOXES
from hlg._gc import gc_paused
from hlg._task import _rebuild_task
from hlg.kinds import Kind
from hlg.layers._located import LocatedLayer, check_count, check_names, coordinate, pack_errors

__all__ = ["TREE_REDUCTION", "TreeReduction", "TreeReductionKind", "TreeTemplate", "tree_step"]

_CHUNK, _COMBINE, _AGGREGATE = 0, 1, 2


def tree_step(
    chunk: Callable[[Any], Any],
    combine: Callable[[list[Any]], Any],
    aggregate: Callable[[list[Any]], Any],
    mode: int,
    *inputs: Any,
) -> Any:
    """Run one reduction task: ``chunk`` of the one input, or ``combine`` / ``aggregate``
    of the list of inputs.

    >>> tree_step(str.upper, "".join, "+".join, 2, "ab", "cd")
    'ab+cd'
    """
    if mode == _CHUNK:
        return chunk(inputs[0])
    if mode == _COMBINE:
        return combine(list(inputs))
    return aggregate(list(inputs))


class TreeTemplate:
    """The constant part of a reduction's tasks (``chunk``, ``combine``, ``aggregate``).

    ``fill(key, [mode, *TaskRefs])`` builds a task as a worker does from a packed task;
    the layer calls :meth:`build` with plain keys.

    >>> task = TreeTemplate(abs, sum, sum).build(("r", 0), 2, [("c", 0), ("c", 1)])
    >>> task({("c", 0): 1, ("c", 1): 2})
    3
    """

    __slots__ = ("aggregate", "chunk", "combine")

    def __init__(
        self,
        chunk: Callable[[Any], Any],
        combine: Callable[[list[Any]], Any],
        aggregate: Callable[[list[Any]], Any],
    ) -> None:
        self.chunk = chunk
        self.combine = combine
        self.aggregate = aggregate

    def build(self, key: Key, mode: int, sources: Sequence[Key]) -> Task:
        """The task of ``key`` reading ``sources`` (plain keys) in order."""
        args = (self.chunk, self.combine, self.aggregate, mode, *sources)
        plan = ((1 << len(sources)) - 1) << 4
        return _rebuild_task(key, tree_step, args, None, tuple(sources), plan)

    def fill(self, key: Key, fills: Sequence[Any]) -> Task:
        """The task of ``key`` from ``[mode, *TaskRefs]``."""
        return self.build(key, fills[0], [ref.key for ref in fills[1:]])

    def __eq__(self, other: object) -> bool:
        return type(other) is TreeTemplate and all(
            a is b or a == b
            for a, b in zip(
                (self.chunk, self.combine, self.aggregate),
                (other.chunk, other.combine, other.aggregate),
                strict=True,
            )
        )

    def __hash__(self) -> int:
        return hash(TreeTemplate)

    def __repr__(self) -> str:
        return f"TreeTemplate({self.chunk!r}, {self.combine!r}, {self.aggregate!r})"

    def __reduce__(self) -> tuple[Any, ...]:
        return (TreeTemplate, (self.chunk, self.combine, self.aggregate))


def tree_depth(npartitions: int, split_every: int) -> int:
    """The number of levels above the chunks: the fewest (at least 1) that cover n.

    >>> tree_depth(1, 8), tree_depth(8, 8), tree_depth(9, 8), tree_depth(1000, 10)
    (1, 1, 2, 3)
    """
    depth = 1
    while split_every**depth < npartitions:
        depth += 1
    return depth


class TreeReduction(LocatedLayer):
    """A ``split_every``-ary reduction of ``npartitions`` partitions of ``input_name``.

    >>> import hlg
    >>> data = hlg.MaterializedLayer(
    ...     {("s", i): hlg.DataNode(("s", i), c) for i, c in enumerate("abcdefghij")}, "s"
    ... )
    >>> red = TreeReduction("r", "s", 10, str.upper, "".join, "".join, split_every=3)
    >>> red.depth, [red.width(lv) for lv in range(red.depth + 1)], len(red)
    (3, [10, 4, 2, 1], 17)
    >>> hlg.get(hlg.HighLevelGraph({"s": data, "r": red}, {"r": ["s"]}), ("r", 0))
    'ABCDEFGHIJ'
    """

    kind = "tree-reduction"

    def __init__(
        self,
        name: str,
        input_name: str,
        npartitions: int,
        chunk: Callable[[Any], Any],
        combine: Callable[[list[Any]], Any],
        aggregate: Callable[[list[Any]], Any],
        split_every: int = 8,
        annotations: Mapping[str, Any] | None = None,
    ) -> None:
        for what, func in [("chunk", chunk), ("combine", combine), ("aggregate", aggregate)]:
            if not callable(func):
                raise TypeError(f"TreeReduction {what} must be callable; got {func!r}")
        n = check_count("TreeReduction", npartitions, "npartitions", 1)
        every = check_count("TreeReduction", split_every, "split_every", 2)
        template = TreeTemplate(chunk, combine, aggregate)
        super().__init__(name, annotations)
        self._setup(name, input_name, n, every, template, None)

    @classmethod
    def _rebuild(
        cls,
        name: str,
        output: str,
        input_name: str,
        npartitions: int,
        split_every: int,
        template: Any,
        roots: Iterable[tuple[int, int]] | None,
        annotations: Mapping[str, Any],
    ) -> TreeReduction:
        layer = cls._blank(name, annotations)
        layer._setup(output, input_name, npartitions, split_every, template, roots)
        return layer

    def _setup(
        self,
        output: str,
        input_name: str,
        n: int,
        split_every: int,
        template: Any,
        roots: Iterable[tuple[int, int]] | None,
    ) -> None:
        check_names("TreeReduction", output, input_name, ["-chunk", "-combine"])
        self.output = output
        self.chunk_name = output + "-chunk"
        self.combine_name = output + "-combine"
        self.input_name = input_name
        self.npartitions = n
        self.split_every = split_every
        self.depth = tree_depth(n, split_every)
        self.template = template
        self._widths: list[int] = [-(-n // split_every**lv) for lv in range(self.depth + 1)]
        if roots is None:
            self.roots: frozenset[tuple[int, int]] | None = None
        else:
            found = frozenset(roots)
            for level, group in found:
                if not (0 <= level <= self.depth and 0 <= group < self._widths[level]):
                    raise ValueError(f"TreeReduction: ({level}, {group}) is not a node of the tree")
            # keep only the highest requested nodes: the others are inside their subtrees
            self.roots = frozenset(r for r in found if not self._covered(r, found))
        self.__dict__["_prefixes"] = frozenset({output, self.chunk_name, self.combine_name})

    def _covered(self, node: tuple[int, int], roots: frozenset[tuple[int, int]]) -> bool:
        level, group = node
        for above in range(level + 1, self.depth + 1):
            group //= self.split_every
            if (above, group) in roots:
                return True
        return False

    @property
    def whole(self) -> bool:
        """Whether the layer keeps its whole tree (it is not culled)."""
        return self.roots is None

    def width(self, level: int) -> int:
        """How many tasks level ``level`` of the whole tree has."""
        return self._widths[level]

    # -- keys -----------------------------------------------------------------------------

    def _locate(self, key: object) -> tuple[int, int] | None:
        if type(key) is not tuple or not key:
            return None
        head = key[0]
        if head == self.output and len(key) == 2 and type(key[1]) in (int, float) and key[1] == 0:
            node = (self.depth, 0)
        elif head == self.chunk_name and len(key) == 2:
            node = (0, coordinate(key[1]))  # type: ignore[assignment]
        elif head == self.combine_name and len(key) == 3:
            level = coordinate(key[1])
            if level is None or not 1 <= level < self.depth:
                return None
            node = (level, coordinate(key[2]))  # type: ignore[assignment]
        else:
            return None
        level, group = node
        if group is None or not 0 <= group < self._widths[level]:
            return None
        if (
            self.roots is not None
            and node not in self.roots
            and not self._covered(node, self.roots)
        ):
            return None
        return node

    def _key(self, level: int, group: int) -> Key:
        if level == self.depth:
            return (self.output, 0)
        if level == 0:
            return (self.chunk_name, group)
        return (self.combine_name, level, group)

    def _children(self, level: int, group: int) -> list[Key]:
        every = self.split_every
        stop = min((group + 1) * every, self._widths[level - 1])
        return [self._key(level - 1, g) for g in range(group * every, stop)]

    def _build(self, level: int, group: int) -> GraphNode:
        key = self._key(level, group)
        sources: list[Key]
        if level == 0:
            mode, sources = _CHUNK, [(self.input_name, group)]
        else:
            mode = _AGGREGATE if level == self.depth else _COMBINE
            sources = self._children(level, group)
        if type(self.template) is TreeTemplate:
            return self.template.build(key, mode, sources)
        return self.template.fill(key, [mode, *map(TaskRef, sources)])  # type: ignore[no-any-return]

    def _ranges(self, level: int) -> list[range]:
        """The groups of ``level`` the layer keeps, as sorted disjoint ranges."""
        if self.roots is None:
            return [range(self._widths[level])]
        out = []
        for root_level, root_group in self.roots:
            if root_level < level:
                continue
            span = self.split_every ** (root_level - level)
            stop = min((root_group + 1) * span, self._widths[level])
            out.append(range(root_group * span, stop))
        return sorted(out, key=lambda r: r.start)

    # -- the Layer protocol -------------------------------------------------------------

    def __len__(self) -> int:
        return sum(len(r) for level in range(self.depth + 1) for r in self._ranges(level))

    def __iter__(self) -> Iterator[Key]:
        for level in range(self.depth + 1):
            for groups in self._ranges(level):
                for group in groups:
                    yield self._key(level, group)

    def read_prefixes(self) -> frozenset[str]:
        """The one input layer's name: every task outside the layer reads ``input_name``."""
        return frozenset({self.input_name})

    def position_span(self) -> int:
        """Positions run level by level: level ``l``'s group ``g`` is at
        ``sum(widths below l) + g``.

        >>> red = TreeReduction("r", "s", 10, abs, sum, sum, split_every=3)
        >>> red.position_span(), red.key_position(("r-combine", 1, 2)), red.position_key(16)
        (17, 12, ('r', 0))
        """
        return sum(self._widths)

    def key_position(self, key: Key) -> int:
        """The position of ``key`` (a key of this layer)."""
        level, group = self._locate(key)  # type: ignore[misc]
        return sum(self._widths[:level]) + group

    def position_key(self, position: int) -> Key:
        """The key at ``position``."""
        level = 0
        while position >= self._widths[level]:
            position -= self._widths[level]
            level += 1
        return self._key(level, position)

    def dependency_tuple(self, key: Key) -> tuple[Key, ...]:
        """The keys ``key`` reads, in partition order."""
        node = self._locate(key)
        if node is None:
            raise KeyError(key)
        level, group = node
        if level == 0:
            return ((self.input_name, group),)
        return tuple(self._children(level, group))

    def materialize(self) -> dict[Key, GraphNode]:
        """Build every task."""
        out: dict[Key, GraphNode] = {}
        with gc_paused():
            for level in range(self.depth + 1):
                for groups in self._ranges(level):
                    for group in groups:
                        out[self._key(level, group)] = self._build(level, group)
        return out

    def cull(self, keys: Iterable[Key]) -> tuple[Layer, frozenset[Key]]:
        """Keep the subtrees of the requested keys, symbolically.

        >>> red = TreeReduction("r", "s", 100, abs, sum, sum, split_every=4)
        >>> culled, external = red.cull([("r-combine", 2, 1)])
        >>> len(culled), sorted(external)[:2], len(external)
        (21, [('s', 16), ('s', 17)], 16)
        """
        culled = self._keeping(keys)
        return culled, culled._inputs_read()

    def cull_keys(self, keys: Iterable[Key]) -> tuple[Layer, dict[str, BlockSet], frozenset[Key]]:
        """:meth:`cull`, with the input partitions read given as ranges (a BlockSet).

        >>> red = TreeReduction("r", "s", 10**6, abs, sum, sum)
        >>> culled, needs, other = red.cull_keys([("r", 0)])
        >>> culled is red, needs, other
        (True, {'s': BlockSet(1, boxes=[((0, 1000000),)], points=0)}, frozenset())
        """
        culled = self._keeping(keys)
        ranges = [((r.start, r.stop),) for r in culled._ranges(0) if len(r)]
        if len(ranges) > MAX_BOXES:  # as many boxes as keys would be: list them
            return culled, {}, culled._inputs_read()
        return culled, {self.input_name: BlockSet(1, ranges)}, frozenset()

    def _keeping(self, keys: Iterable[Key]) -> TreeReduction:
        """This layer, or the subtrees of the requested keys."""
        nodes = {node for node in map(self._locate, keys) if node is not None}
        if (self.depth, 0) in nodes and self.roots is None:
            return self
        culled = TreeReduction._rebuild(
            self.culled_name(self._key(*node) for node in nodes),
            self.output,
            self.input_name,
            self.npartitions,
            self.split_every,
            self.template,
            nodes,
            self.annotations,
        )
        if self.roots is not None and culled.roots == self.roots:
            return self
        return culled

    def _inputs_read(self) -> frozenset[Key]:
        name = self.input_name
        return frozenset([(name, i) for r in self._ranges(0) for i in r])

    def __repr__(self) -> str:
        return (
            f"<TreeReduction {self.name!r} {self.input_name}[{self.npartitions}] -> "
            f"({self.output!r}, 0); split_every={self.split_every}, depth {self.depth}; "
            f"{len(self):,} tasks>"
        )

    def __reduce__(self) -> tuple[Any, ...]:
        return (
            TreeReduction._rebuild,
            (
                self.name,
                self.output,
                self.input_name,
                self.npartitions,
                self.split_every,
                self.template,
                self.roots,
                self.annotations,
            ),
        )


# -- packing ----------------------------------------------------------------------------


class TreeReductionState(msgspec.Struct, array_like=True, frozen=True, gc=False):
    """The wire form of a TreeReduction layer (kind version 1)."""

    output: str
    input_name: str
    npartitions: int
    split_every: int
    template: int
    roots: list[tuple[int, int]] | None


class TreeReductionKind(Kind[TreeReductionState]):
    """The layer kind of :class:`TreeReduction` layers: four numbers and one template blob.

    >>> import hlg
    >>> hlg.layer_kind("tree-reduction").name
    'tree-reduction'
    """

    name = "tree-reduction"
    state_type = TreeReductionState
    layer_type = TreeReduction

    def pack(self, layer: Layer, ctx: PackContext) -> TreeReductionState:
        assert isinstance(layer, TreeReduction)
        return TreeReductionState(
            output=layer.output,
            input_name=layer.input_name,
            npartitions=layer.npartitions,
            split_every=layer.split_every,
            template=ctx.add(layer.template),
            roots=None if layer.roots is None else sorted(layer.roots),
        )

    def rebuild(self, name: str, state: TreeReductionState, ctx: UnpackContext) -> Layer:
        where = f"layer {name!r}"
        limit = ctx.limits.max_tasks
        if not 1 <= state.npartitions <= limit:
            raise PackError(f"{where}: npartitions {state.npartitions} out of bounds (1..{limit})")
        if state.split_every < 2:
            raise PackError(f"{where}: split_every {state.split_every} must be >= 2")
        fan_in = getattr(ctx.limits, "max_fan_in", None) or limit
        if min(state.split_every, state.npartitions) > fan_in:
            raise PackError(f"{where}: split_every {state.split_every} beyond the fan-in limit")
        if not state.output or not state.input_name:
            raise PackError(f"{where}: empty output or input name")
        # a tree has fewer than 2 n tasks and edges: the npartitions bound covers both
        if 2 * state.npartitions > limit:
            raise PackError(
                f"{where}: declares about {2 * state.npartitions} tasks, beyond {limit}"
            )
        template = ctx.template(state.template, where)
        with pack_errors(where):
            return TreeReduction._rebuild(
                name,
                state.output,
                state.input_name,
                state.npartitions,
                state.split_every,
                template,
                None if state.roots is None else [tuple(r) for r in state.roots],  # type: ignore[misc]
                {},
            )

    def edges(self, layer: Layer) -> int:
        """Dependency edges, bounded above: a tree has fewer than 2 n of them."""
        assert isinstance(layer, TreeReduction)
        return 2 * layer.npartitions

    def verify(self, layer: Layer, graph: HighLevelGraph, where: str, ctx: UnpackContext) -> None:
        """The input partitions exist (symbolically when their layer is whole)."""
        from hlg.layers._shuffle import check_partition_producer

        assert isinstance(layer, TreeReduction)
        check_partition_producer(graph, layer, layer.input_name, layer._ranges(0), where, ctx)


TREE_REDUCTION = TreeReductionKind()
