"""Ordering: a topological priority for every needed task that keeps few results alive.

The order is a depth-first walk from the requested keys towards their inputs, following
each task's dependencies in argument order, with one rule on top — *finish what you
started*: whenever a task becomes runnable and running it would release a result (it is
the last reader of one of its inputs), it runs at once, and so on transitively. Such a
task never increases the number of results held, and the walk never leaves a partial
result waiting for work it has not begun.

:func:`plan` gives the schedulers the same order in compact arrays. Every needed task
has a *number*: a layer that numbers its keys itself (``Layer.position_span``: the
built-in kinds) gets a block of numbers, ``start + position``, so neither its keys nor
its tasks are stored — a key is computed from its number when the task is about to run.
Other keys (materialized layers, plain mappings) are numbered one by one. Dependencies
and dependents are CSR arrays of numbers (numpy, 4 bytes an edge), priorities and
counters numpy arrays indexed by number; see docs/design.md, "Scheduler state".
"""

from __future__ import annotations

from array import array
from bisect import bisect_right
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING, Any, TypeVar, overload

from hlg._get import CycleError, MissingKeyError
from hlg._keys import Key, iskey
from hlg._layer import Layer
from hlg._source import GraphSource, default_keys, flatten_keys, source_of
from hlg._task import GraphNode

if TYPE_CHECKING:
    import numpy as np

__all__ = ["Plan", "order", "plan"]

_T = TypeVar("_T")

# A layer numbers its keys by position only when its positions are not much sparser
# than its keys (a layer culled to a few blocks of a huge box is numbered per key).
_SPARSE = 4
_MAX_NUMBERS = 2**31 - 2  # numbers and edges are int32


class Plan:
    """Every task a request needs, numbered, with dependencies and a priority.

    ``key(i)`` is task ``i``'s key (computed from its position for symbolic layers),
    ``node(i)`` its node (built now, except for plain mappings whose nodes exist);
    ``deps(i)`` and ``readers(i)`` the numbers it reads and that read it (also as the
    views ``keys[i]`` and ``dependents[i]``; ``number(key)`` is the inverse of ``key``);
    ``priority[i]`` its place in the order (0 runs first; -1 for a number no needed task
    has) and ``by_priority[p]`` the task in place ``p``; ``outputs`` the requested tasks;
    ``len(plan)`` the number of needed tasks; ``nbytes()`` the size of the arrays.

    >>> from hlg import DataNode, Task, TaskRef
    >>> p = plan({"a": DataNode("a", 1), "b": Task("b", abs, TaskRef("a"))}, "b")
    >>> len(p), [p.key(i) for i in p.by_priority], list(p.deps(p.outputs[0]))
    (2, ['a', 'b'], [1])
    """

    __slots__ = (
        "_dep_off",
        "_dep_to",
        "_index",
        "_nodes",
        "_owners",
        "_perkey",
        "_start_of",
        "_starts",
        "_user_off",
        "_user_to",
        "arrays",
        "by_priority",
        "needed",
        "ntasks",
        "outputs",
        "priority",
        "source",
        "span",
    )

    def __init__(self, source: GraphSource, roots: list[Key]) -> None:
        import numpy as np  # imported when a graph is first planned: ``import hlg`` stays light

        self.source = source
        walk = _Walk(source)
        self.outputs = walk.run(roots)
        self._starts = walk.starts
        self._owners = walk.owners
        self._perkey = walk.perkey
        self._index = walk.index
        self._start_of = walk.start_of
        self._nodes = walk.nodes
        n = self.span = walk.n
        self.ntasks = len(walk.queue)
        del walk.queue
        src = np.frombuffer(walk.src, dtype=np.int32)
        dst = np.frombuffer(walk.dst, dtype=np.int32)
        self.needed = np.frombuffer(walk.seen, dtype=np.uint8)
        dep_off = np.zeros(n + 1, dtype=np.int32)
        np.cumsum(np.bincount(src, minlength=n), out=dep_off[1:])
        user_off = np.zeros(n + 1, dtype=np.int32)
        np.cumsum(np.bincount(dst, minlength=n), out=user_off[1:])
        # stable sorts keep each task's dependencies in argument order and each result's
        # readers in discovery order
        dep_to = dst[np.argsort(src, kind="stable")]
        user_to = src[np.argsort(dst, kind="stable")]
        del src, dst, walk
        self.arrays: dict[str, np.ndarray[Any, Any]] = {
            "dep_off": dep_off,
            "dep_to": dep_to,
            "user_off": user_off,
            "user_to": user_to,
        }
        self._dep_off = dep_off.data
        self._dep_to = dep_to.data
        self._user_off = user_off.data
        self._user_to = user_to.data
        prio = np.full(n, -1, dtype=np.int32)
        by_priority = np.zeros(self.ntasks, dtype=np.int32)
        try:
            _order(self, prio.data, by_priority.data)
        except CycleError as err:
            raise CycleError([self.key(i) for i in err.cycle]) from None
        self.arrays["priority"] = prio
        self.arrays["by_priority"] = by_priority
        self.priority = prio.data
        self.by_priority = by_priority.data

    def __len__(self) -> int:
        return self.ntasks

    def key(self, i: int) -> Key:
        """The key of task ``i``."""
        key = self._perkey.get(i)
        if key is None:
            j = bisect_right(self._starts, i) - 1
            return self._owners[j].position_key(i - self._starts[j])
        return key

    def node(self, i: int) -> GraphNode:
        """The node of task ``i`` (built now for layered graphs)."""
        nodes = self._nodes
        if nodes is not None:
            return nodes[i]
        if self.source.packed is None and i not in self._perkey:
            j = bisect_right(self._starts, i) - 1
            layer = self._owners[j]
            return layer[layer.position_key(i - self._starts[j])]
        return self.source.node(self.key(i))

    def item(self, i: int) -> tuple[Key, GraphNode]:
        """The key and the node of task ``i`` (the node built now for layered graphs)."""
        nodes = self._nodes
        if nodes is not None:
            return self._perkey[i], nodes[i]
        if i not in self._perkey:
            j = bisect_right(self._starts, i) - 1
            layer = self._owners[j]
            key = layer.position_key(i - self._starts[j])
            if self.source.packed is None:
                return key, layer[key]
            return key, self.source.node(key)
        key = self._perkey[i]
        return key, self.source.node(key)

    def deps(self, i: int) -> memoryview:
        """The numbers task ``i`` reads, in argument order."""
        return self._dep_to[self._dep_off[i] : self._dep_off[i + 1]]

    def readers(self, i: int) -> memoryview:
        """The numbers of the tasks that read task ``i``."""
        return self._user_to[self._user_off[i] : self._user_off[i + 1]]

    def number(self, key: Key) -> int:
        """The number of ``key``, a needed task (``ValueError`` otherwise)."""
        j = self._index.get(key) if iskey(key) else None
        if j is None and self._nodes is None and iskey(key):
            layer = self.source.graph._find_layer(key)  # type: ignore[attr-defined]
            start = -1 if layer is None else self._start_of.get(layer, -1)
            if start >= 0:
                j = start + int(layer.key_position(key))
        if j is None or not self.needed[j]:
            raise ValueError(f"{key!r} is not a task of this plan")
        return j

    @property
    def keys(self) -> _Numbered[Key]:
        """``keys[i]`` is ``key(i)``; ``keys.index(key)`` is ``number(key)``."""
        return _Numbered(self.key, self.span, self.number)

    @property
    def dependents(self) -> _Numbered[memoryview]:
        """``dependents[i]`` is ``readers(i)``."""
        return _Numbered(self.readers, self.span, None)

    def nbytes(self) -> int:
        """Bytes held by the plan's arrays (numbers, edges, priorities)."""
        return int(sum(a.nbytes for a in self.arrays.values()) + self.needed.nbytes)


class _Numbered(Sequence[_T]):
    """A read-only sequence view over task numbers, computed on access."""

    __slots__ = ("_get", "_index", "_len")

    def __init__(
        self, get: Callable[[int], _T], length: int, index: Callable[[Any], int] | None
    ) -> None:
        self._get = get
        self._len = length
        self._index = index

    @overload
    def __getitem__(self, i: int) -> _T: ...

    @overload
    def __getitem__(self, i: slice) -> Sequence[_T]: ...

    def __getitem__(self, i: int | slice) -> _T | Sequence[_T]:
        if isinstance(i, slice):
            return [self._get(j) for j in range(self._len)[i]]
        return self._get(i)

    def __len__(self) -> int:
        return self._len

    def index(self, value: Any, start: int = 0, stop: int | None = None) -> int:
        """The number of ``value`` (keys only)."""
        if self._index is None:
            raise TypeError("only keys can be looked up by value")
        return self._index(value)


class _Walk:
    """Breadth-first discovery of the needed tasks: numbers, and edges as two arrays."""

    def __init__(self, source: GraphSource) -> None:
        self.source = source
        self.n = 0
        self.starts: list[int] = []  # first number of each positional layer
        self.owners: list[Layer] = []
        self.start_of: dict[Layer, int] = {}  # -1: numbered per key
        self.index: dict[Key, int] = {}  # per-key numbers
        self.perkey: dict[int, Key] = {}
        self.nodes: dict[int, GraphNode] | None = {} if source.mapping is not None else None
        self.seen = bytearray()
        self.src = array("i")
        self.dst = array("i")
        self.queue = array("i")

    def _grow(self, count: int) -> int:
        start = self.n
        self.n += count
        if self.n > _MAX_NUMBERS:
            raise ValueError(f"hlg: a plan holds at most {_MAX_NUMBERS:,} task numbers")
        self.seen.extend(bytes(count))
        return start

    def _start(self, layer: Layer) -> int:
        span = layer.position_span()
        if span is not None and span <= _SPARSE * len(layer) + 1024:
            start = self._grow(span)
            self.starts.append(start)
            self.owners.append(layer)
        else:
            start = -1
        self.start_of[layer] = start
        return start

    def number(self, key: Key, needed_by: Key | None) -> int:
        """The number of ``key`` (allocated on first sight)."""
        nodes = self.nodes
        if nodes is None:
            graph: Any = self.source.graph
            layer = graph._find_layer(key)
            if layer is None:
                raise MissingKeyError(key, needed_by)
            start = self.start_of.get(layer)
            if start is None:
                start = self._start(layer)
            if start >= 0:
                return start + int(layer.key_position(key))
        j = self.index.get(key)
        if j is None:
            if nodes is not None:
                node = self.source.checked_node(key, needed_by)
            j = self.index[key] = self._grow(1)
            self.perkey[j] = key
            if nodes is not None:
                nodes[j] = node
        return j

    def run(self, roots: list[Key]) -> list[int]:
        """Number everything ``roots`` need; return the roots' numbers."""
        seen = self.seen
        queue = self.queue
        outputs = []
        for root in roots:
            if not iskey(root):
                raise MissingKeyError(root)
            j = self.number(root, None)
            outputs.append(j)
            if not seen[j]:
                seen[j] = 1
                queue.append(j)
        number = self.number
        start_of = self.start_of
        find: Any = getattr(self.source.graph, "_find_layer", None)
        src_append = self.src.append
        dst_append = self.dst.append
        queue_append = queue.append
        perkey = self.perkey
        nodes = self.nodes
        starts = self.starts
        owners = self.owners
        graph: Any = self.source.graph
        head = 0
        while head < len(queue):
            i = queue[head]
            head += 1
            if nodes is not None:
                deps = nodes[i].dependency_tuple
                key = perkey[i]
            else:
                known = perkey.get(i)
                if known is None:
                    j = bisect_right(starts, i) - 1
                    layer = owners[j]
                    key = layer.position_key(i - starts[j])
                else:
                    key = known
                    layer = graph._find_layer(key)
                deps = layer.dependency_tuple(key)
            for dep in deps:
                if nodes is None:  # the common case inline: a key of a positional layer
                    owner = find(dep)
                    start = -1 if owner is None else start_of.get(owner, -1)
                    j = start + owner.key_position(dep) if start >= 0 else number(dep, key)
                else:
                    j = number(dep, key)
                src_append(i)
                dst_append(j)
                if not seen[j]:
                    seen[j] = 1
                    queue_append(j)
        return outputs


def _order(plan: Plan, prio: memoryview, by_priority: memoryview) -> None:
    """Fill ``prio`` and ``by_priority`` (see the module docstring)."""
    import numpy as np

    dep_off, dep_to = plan._dep_off, plan._dep_to
    user_off, user_to = plan._user_off, plan._user_to
    arrays = plan.arrays
    waiting_np = np.diff(arrays["dep_off"]).astype(np.int32)  # dependencies not yet ordered
    readers_np = np.diff(arrays["user_off"]).astype(np.int32)  # dependents not yet ordered
    waiting = waiting_np.data
    readers = readers_np.data
    roots = plan.outputs
    for root in roots:
        readers[root] += 1  # an output is never released
    count = 0
    on_stack = bytearray(plan.span)  # 1 for the tasks on the walk's stack
    for root in roots:
        if prio[root] >= 0:
            continue
        stack: list[tuple[int, Iterator[int]]] = [
            (root, iter(dep_to[dep_off[root] : dep_off[root + 1]]))
        ]
        on_stack[root] = 1
        while stack:
            key, pending = stack[-1]
            if prio[key] >= 0:  # ordered early by the rule below
                stack.pop()
                on_stack[key] = 0
                continue
            for dep in pending:
                if prio[dep] >= 0:
                    continue
                if on_stack[dep]:
                    path = [k for k, _ in stack]
                    raise CycleError(path[path.index(dep) :])
                on_stack[dep] = 1
                stack.append((dep, iter(dep_to[dep_off[dep] : dep_off[dep + 1]])))
                break
            else:
                stack.pop()
                on_stack[key] = 0
                # order ``key``, then whatever it makes runnable that releases a result
                work = [key]
                while work:
                    t = work.pop()
                    if prio[t] >= 0:
                        continue
                    prio[t] = count
                    by_priority[count] = t
                    count += 1
                    found: list[int] | None = None  # allocated only when something is found
                    a, b = dep_off[t], dep_off[t + 1]
                    if a != b:
                        for d in dep_to[a:b]:
                            left = readers[d] - 1
                            readers[d] = left
                            if left == 1:  # one reader left: running it would release ``d``
                                for last in user_to[user_off[d] : user_off[d + 1]]:
                                    if prio[last] < 0:
                                        if waiting[last] == 0:
                                            if found is None:
                                                found = [last]
                                            else:
                                                found.append(last)
                                        break
                    a, b = user_off[t], user_off[t + 1]
                    if a != b:
                        for r in user_to[a:b]:
                            left = waiting[r] - 1
                            waiting[r] = left
                            if left == 0:
                                for d in dep_to[dep_off[r] : dep_off[r + 1]]:
                                    if readers[d] == 1:
                                        if found is None:
                                            found = [r]
                                        else:
                                            found.append(r)
                                        break
                    if found is not None:
                        found.reverse()
                        work.extend(found)


def plan(graph: Any, keys: Any = None) -> Plan:
    """Order what ``keys`` need and lay it out for a scheduler."""
    source = source_of(graph)
    wanted: list[Key] = []
    flatten_keys(default_keys(graph) if keys is None else keys, wanted)
    return Plan(source, list(dict.fromkeys(wanted)))


def order(graph: Any, keys: Any = None) -> dict[Key, int]:
    """Priorities for every task ``keys`` need: run smaller numbers first.

    The order is topological, identical in every process and under every hash seed, and
    keeps few results alive: it finishes what it started, depth-first towards the
    outputs. ``graph`` is a HighLevelGraph, a PackedGraph, a Mapping of nodes or a
    collection; ``keys`` a key or nested list of keys (default: the graph's outputs).
    Symbolic layers answer dependencies without building tasks; the cost is
    O(needed tasks + edges) time and memory.

    >>> from operator import add
    >>> from hlg import DataNode, Task, TaskRef
    >>> g = {
    ...     "a": DataNode("a", 1), "b": DataNode("b", 2),
    ...     "x": Task("x", add, TaskRef("a"), 1), "y": Task("y", add, TaskRef("b"), 1),
    ...     "z": Task("z", add, TaskRef("x"), TaskRef("y")),
    ... }
    >>> order(g, "z")
    {'a': 0, 'x': 1, 'b': 2, 'y': 3, 'z': 4}
    """
    p = plan(graph, keys)
    return {p.key(i): p.priority[i] for i in p.by_priority}
