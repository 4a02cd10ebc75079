"""The scheduler side of a packed graph: PackedTask (key, dependencies, runspec) and PackedGraph.

Neither unpickles anything: a :class:`PackedTask` becomes a runnable node only in
:meth:`PackedTask.unpack`, on a worker, against its own graph's :class:`~hlg.Blobs`;
there the node's dependencies are checked against the ones the scheduler was told.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from typing import Any, final

from hlg._blobs import BlobRef, Blobs, PackContext
from hlg._blocks import BlockSet
from hlg._graph import HighLevelGraph, flatten_keys
from hlg._keys import Key
from hlg._layer import Layer
from hlg._task import Alias, DataNode, GraphNode, Task, TaskRef
from hlg._wire import PackError

__all__ = ["PackedGraph", "PackedTask"]


def _load_values(obj: Any, blobs: Blobs) -> Any:
    """Replace every ``BlobRef`` inside runspec fills by its unpickled value."""
    typ = type(obj)
    if typ is BlobRef:
        return blobs.load(obj.index)
    if typ is list:
        return [_load_values(x, blobs) for x in obj]
    return obj


@final
class PackedTask(GraphNode):
    """A task as the scheduler sees it: key, dependencies and an opaque runspec.

    It cannot run: a worker calls :meth:`unpack` (with its graph's blobs) to get the node.

    >>> import hlg
    >>> from operator import add
    >>> packed = hlg.PackedTask.from_task(hlg.Task("y", add, hlg.TaskRef("x"), 1))
    >>> packed.key, packed.dependencies
    ('y', frozenset({'x'}))
    >>> packed.unpack()({"x": 41})
    42
    """

    __slots__ = ("_deps", "blobs", "key", "runspec")
    key: Key
    _deps: tuple[Key, ...]
    runspec: tuple[Any, ...]
    blobs: Blobs | None

    def __init__(
        self,
        key: Key,
        dependencies: Iterable[Key],
        runspec: tuple[Any, ...],
        blobs: Blobs | None = None,
    ) -> None:
        deps = tuple(dependencies)
        self.key = key
        self._deps = deps if len(deps) < 2 else tuple(dict.fromkeys(deps))
        self.runspec = runspec
        self.blobs = blobs

    @classmethod
    def from_task(cls, task: Task) -> PackedTask:
        """Pack one task with its own blobs."""
        if task.key is None:
            raise ValueError("only a task with a key can be packed")
        ctx = PackContext()
        runspec = ("t", ctx.add(task.func), ctx.add((task.args, task.kwargs or {})))
        return cls(task.key, task.dependency_tuple, runspec, Blobs(ctx.blobs))

    @property
    def dependencies(self) -> frozenset[Key]:
        """The keys the task reads."""
        return frozenset(self._deps)

    @property
    def dependency_tuple(self) -> tuple[Key, ...]:
        """The keys the task reads, in order."""
        return self._deps

    def __call__(self, values: Mapping[Key, Any], /) -> Any:
        raise TypeError(
            f"PackedTask {self.key!r} cannot run as it is: call .unpack() on a worker first"
        )

    def unpack(self, blobs: Blobs | None = None) -> GraphNode:
        """Build the runnable node, unpickling its blobs (worker side only).

        ``blobs`` must be this task's graph's (same ``graph_id``); the node built must read
        exactly the keys the scheduler was told (``dependencies``).
        """
        source = blobs if blobs is not None else self.blobs
        if source is None:
            raise ValueError(f"PackedTask {self.key!r}: no blobs to unpack from")
        if (
            self.blobs is not None
            and source is not self.blobs
            and (type(source) is not Blobs or source.graph_id != self.blobs.graph_id)
        ):
            raise PackError(
                f"PackedTask {self.key!r}: the blobs given are not its graph's (graph ids differ)"
            )
        node = self._build(source)
        if node.key != self.key:
            raise PackError(f"PackedTask {self.key!r}: its payload builds key {node.key!r}")
        got = node.dependency_tuple
        if got != self._deps and frozenset(got) != frozenset(self._deps):
            extra = sorted(map(repr, frozenset(got) - frozenset(self._deps)))
            missing = sorted(map(repr, frozenset(self._deps) - frozenset(got)))
            raise PackError(
                f"PackedTask {self.key!r}: its payload reads {', '.join(extra) or 'no other'} "
                f"keys beyond its declared dependencies, and not {', '.join(missing) or '-'}"
            )
        return node

    def _build(self, source: Blobs) -> GraphNode:
        kind = self.runspec[0]
        if kind == "bw":  # blockwise, references given as keys in ``refmask`` holes
            _, template, fills, refmask = self.runspec
            node: GraphNode = source.filler(template, refmask)(
                self.key, [_load_values(f, source) for f in fills]
            )
            return node
        if kind == "bwg":  # blockwise, fills hold TaskRefs and nested lists
            _, template, fills = self.runspec
            spec = source.load_code(template)
            filled: GraphNode = spec.fill(self.key, [_load_values(f, source) for f in fills])
            return filled
        if kind == "t":
            _, func, args = self.runspec
            positional, keywords = source.load(args)
            return Task(self.key, source.load_code(func), *positional, **keywords)
        if kind == "d":  # a literal stays a literal: never searched for references
            return DataNode(self.key, source.load(self.runspec[1]))
        if kind == "a":
            return Alias(self.key, self.runspec[1])
        if kind == "n":
            node = source.load(self.runspec[1])
            if isinstance(node, Task):
                return node
            if not isinstance(node, GraphNode):
                raise PackError(f"PackedTask {self.key!r}: its payload is not a graph node")
            return Task(self.key, _NodeCall(node), {d: TaskRef(d) for d in node.dependency_tuple})
        raise ValueError(f"PackedTask {self.key!r}: unknown runspec kind {kind!r}")

    def substitute(self, subs: Mapping[Key, Key], key: Key | None = None) -> PackedTask:
        """Packed tasks are not rewritten: only a new key is supported."""
        if subs and any(d in subs for d in self._deps):
            raise ValueError("PackedTask dependencies cannot be renamed")
        return PackedTask(self.key if key is None else key, self._deps, self.runspec, self.blobs)

    def __eq__(self, other: object) -> bool:
        if type(other) is not PackedTask:
            return NotImplemented
        return self.key == other.key and self._deps == other._deps and self.runspec == other.runspec

    def __hash__(self) -> int:
        return hash((PackedTask, self.key))

    def __repr__(self) -> str:
        return f"PackedTask({self.key!r}, deps={list(self._deps)!r}, runspec={self.runspec[0]!r})"

    def __reduce__(self) -> tuple[Any, ...]:
        return (PackedTask, (self.key, self._deps, self.runspec, self.blobs))


@final
class _NodeCall:
    """Runs a graph node of a type hlg does not know, given its dependencies' values.

    The node is held as the task's function so that the task does not mistake it for
    an inline argument.
    """

    __slots__ = ("node",)

    def __init__(self, node: GraphNode) -> None:
        self.node = node

    def __call__(self, values: Mapping[Key, Any]) -> Any:
        return self.node(values)

    @property
    def __name__(self) -> str:
        return type(self.node).__name__

    def __reduce__(self) -> tuple[Any, ...]:
        return (_NodeCall, (self.node,))


class PackedGraph(Mapping[Key, PackedTask]):
    """A packed graph on the scheduler: a lazy ``Mapping[key, PackedTask]``.

    >>> import hlg
    >>> from operator import add
    >>> g = {"a": hlg.DataNode("a", 1), "b": hlg.Task("b", add, hlg.TaskRef("a"), 1)}
    >>> packed = hlg.unpack(hlg.pack(g))
    >>> len(packed), packed.dependencies("b"), packed.output_keys
    (2, frozenset({'a'}), ['a', 'b'])
    >>> hlg.get(packed, "b")
    2

    Built by :func:`unpack` from msgpack state alone; payloads stay bytes in ``blobs``.
    """

    def __init__(
        self,
        graph: HighLevelGraph,
        blobs: Blobs,
        outputs: list[tuple[str, Any]],
        meta: Mapping[str, str],
    ) -> None:
        self.graph = graph
        self.blobs = blobs
        self._outputs = outputs
        self.meta = dict(meta)

    @property
    def output_keys(self) -> list[Key]:
        """The requested keys (whole layers expanded to their keys)."""
        keys: list[Key] = []
        for what, value in self._outputs:
            if what == "layer":
                keys.extend(self.graph.layers[value])
            elif what == "box":
                name, box = value
                (prefix,) = self.graph.layers[name].prefixes
                keys.extend((prefix, *b) for b in box)
            else:
                keys.append(value)
        return keys

    def __getitem__(self, key: Key) -> PackedTask:
        node = self.graph[key]
        assert isinstance(node, PackedTask)
        return node

    def __iter__(self) -> Iterator[Key]:
        return iter(self.graph)

    def __len__(self) -> int:
        return len(self.graph)

    def __contains__(self, key: object) -> bool:
        return key in self.graph

    def __eq__(self, other: object) -> bool:
        return self is other

    def __hash__(self) -> int:
        return id(self)

    def dependencies(self, key: Key) -> frozenset[Key]:
        """The keys ``key`` reads (no task built when the layer is symbolic)."""
        return self.graph.key_dependencies(key)

    def cull(self, keys: Iterable[Key]) -> PackedGraph:
        """Keep what ``keys`` need; they become the outputs."""
        wanted = flatten_keys(keys)
        culled = self.graph.cull(wanted)
        return PackedGraph(culled, self.blobs, record_outputs(culled, wanted), self.meta)

    @property
    def layers(self) -> Mapping[str, Layer]:
        """The scheduler-side layers by name."""
        return self.graph.layers

    def describe(self) -> str:
        """The layer table (see :meth:`HighLevelGraph.describe`)."""
        return self.graph.describe()

    def unpacked(self) -> Mapping[Key, GraphNode]:
        """A worker's view: ``view[key]`` unpacks the task (unpickling its blobs)."""
        return _UnpackedView(self)

    def __repr__(self) -> str:
        return (
            f"<PackedGraph: {len(self.graph.layers)} layers, {len(self):,} tasks, "
            f"{len(self.blobs)} blobs ({self.blobs.nbytes():,} B)>"
        )


class _UnpackedView(Mapping[Key, GraphNode]):
    def __init__(self, packed: PackedGraph) -> None:
        self.packed = packed

    def __getitem__(self, key: Key) -> GraphNode:
        return self.packed[key].unpack(self.packed.blobs)

    def __iter__(self) -> Iterator[Key]:
        return iter(self.packed)

    def __len__(self) -> int:
        return len(self.packed)

    def __contains__(self, key: object) -> bool:
        return key in self.packed


def record_outputs(graph: HighLevelGraph, wanted: list[Key]) -> list[tuple[str, Any]]:
    """Requested keys recorded symbolically: ``("layer", name)`` for a whole layer,
    ``("box", (name, BlockSet))`` for a box of a layer of blocks, else ``("key", key)``.

    >>> import hlg
    >>> x = hlg.layers.blockwise(abs, "x", "ij", hlg.layers.BlockIndex((3, 4)), "ij")
    >>> g = hlg.HighLevelGraph({"x": x})
    >>> record_outputs(g, [("x", 1, j) for j in range(4)])
    [('box', ('x', BlockSet(2, boxes=[((1, 2), (0, 4))], points=0)))]
    >>> record_outputs(g, [("x", 0, 0), ("x", 2, 3)])
    [('key', ('x', 0, 0)), ('key', ('x', 2, 3))]
    """
    blocks, by_layer = graph.requested_blocks(wanted)
    out: list[tuple[str, Any]] = []
    for name, need in blocks.items():
        layer = graph.layers[name]
        if need == layer.block_set():
            out.append(("layer", name))
            continue
        (prefix,) = layer.prefixes
        out.extend(("box", (name, BlockSet.box(box))) for box in need.boxes)
        out.extend(("key", (prefix, *b)) for b in sorted(need.points))
    for name, keys in by_layer.items():
        if len(set(keys)) == len(graph.layers[name]):
            out.append(("layer", name))
        else:
            out.extend(("key", k) for k in dict.fromkeys(keys))
    return out
