"""Ordering: a topological priority for every needed task that keeps few results alive.

The order is a depth-first walk from the requested keys towards their inputs, following
each task's dependencies in argument order, with one rule on top — *finish what you
started*: whenever a task becomes runnable and running it would release a result (it is
the last reader of one of its inputs), it runs at once, and so on transitively. Such a
task never increases the number of results held, and the walk never leaves a partial
result waiting for work it has not begun.

:func:`plan` gives the schedulers the same order with compact per-task arrays: tasks are
numbered once, and dependencies, dependents and priorities are lists of ints.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from hlg._get import CycleError
from hlg._keys import Key
from hlg._source import GraphSource, default_keys, flatten_keys, source_of
from hlg._task import GraphNode

__all__ = ["Plan", "order", "plan"]


class Plan:
    """Every task a request needs, numbered in discovery order, with its priority.

    ``keys[i]`` is task ``i``'s key, ``deps[i]`` the tasks it reads and
    ``dependents[i]`` the tasks that read it (as numbers); ``priority[i]`` its place in
    the order (0 runs first) and ``by_priority[p]`` the task in place ``p``;
    ``outputs`` the requested tasks; ``nodes[i]`` the node when the graph is a plain
    mapping (built on demand for layered graphs, ``nodes`` is then None).
    """

    __slots__ = (
        "by_priority",
        "dependents",
        "deps",
        "keys",
        "nodes",
        "outputs",
        "priority",
        "source",
    )

    def __init__(
        self,
        source: GraphSource,
        keys: list[Key],
        deps: list[tuple[int, ...]],
        dependents: list[list[int]],
        nodes: list[GraphNode] | None,
        outputs: list[int],
    ) -> None:
        self.source = source
        self.keys = keys
        self.deps = deps
        self.dependents = dependents
        self.nodes = nodes
        self.outputs = outputs
        try:
            self.priority = _order(outputs, deps, dependents)
        except CycleError as err:
            raise CycleError([keys[i] for i in err.cycle]) from None
        by_priority = [0] * len(keys)
        for i, p in enumerate(self.priority):
            by_priority[p] = i
        self.by_priority = by_priority

    def __len__(self) -> int:
        return len(self.keys)

    def node(self, i: int) -> GraphNode:
        """The node of task ``i`` (built now for layered graphs)."""
        nodes = self.nodes
        return nodes[i] if nodes is not None else self.source.node(self.keys[i])


def _closure(source: GraphSource, roots: list[Key]) -> Plan:
    """Number every task the roots need; dependencies and dependents as numbers."""
    index: dict[Key, int] = {}
    keys: list[Key] = []
    raw: list[tuple[Key, ...]] = []
    nodes: list[GraphNode] | None = None
    if source.mapping is not None:
        nodes = []
        lookup = source.checked_node
        for root in roots:
            if root not in index:
                index[root] = len(keys)
                keys.append(root)
                node = lookup(root, None)
                nodes.append(node)
                raw.append(node.dependency_tuple)
    else:
        deps_of = source.dependencies
        for root in roots:
            if root not in index:
                index[root] = len(keys)
                keys.append(root)
                raw.append(deps_of(root, None))
    deps: list[tuple[int, ...]] = []
    i = 0
    while i < len(keys):
        out = []
        for dep in raw[i]:
            j = index.get(dep)
            if j is None:
                j = index[dep] = len(keys)
                keys.append(dep)
                if nodes is not None:
                    node = lookup(dep, keys[i])
                    nodes.append(node)
                    raw.append(node.dependency_tuple)
                else:
                    raw.append(deps_of(dep, keys[i]))
            out.append(j)
        deps.append(tuple(out))
        i += 1
    dependents: list[list[int]] = [[] for _ in keys]
    for i, ds in enumerate(deps):
        for d in ds:
            dependents[d].append(i)
    return Plan(source, keys, deps, dependents, nodes, [index[k] for k in roots])


def _order(roots: list[int], deps: list[tuple[int, ...]], dependents: list[list[int]]) -> list[int]:
    """The priority of every task (see the module docstring)."""
    n = len(deps)
    prio = [-1] * n
    count = 0
    waiting = [len(ds) for ds in deps]  # dependencies not yet ordered
    readers = [len(ts) for ts in dependents]  # dependents not yet ordered
    for root in roots:
        readers[root] += 1  # an output is never released
    for root in roots:
        if prio[root] >= 0:
            continue
        stack: list[tuple[int, Iterator[int]]] = [(root, iter(deps[root]))]
        on_stack = {root: None}
        while stack:
            key, pending = stack[-1]
            if prio[key] >= 0:  # ordered early by the rule below
                stack.pop()
                del on_stack[key]
                continue
            for dep in pending:
                if prio[dep] >= 0:
                    continue
                if dep in on_stack:
                    path = list(on_stack)
                    raise CycleError(path[path.index(dep) :])
                on_stack[dep] = None
                stack.append((dep, iter(deps[dep])))
                break
            else:
                stack.pop()
                del on_stack[key]
                # order ``key``, then whatever it makes runnable that releases a result
                work = [key]
                while work:
                    t = work.pop()
                    if prio[t] >= 0:
                        continue
                    prio[t] = count
                    count += 1
                    found: list[int] = []
                    for d in deps[t]:
                        left = readers[d] - 1
                        readers[d] = left
                        if left == 1:  # one reader left: running it would release ``d``
                            for last in dependents[d]:
                                if prio[last] < 0:
                                    if waiting[last] == 0:
                                        found.append(last)
                                    break
                    for r in dependents[t]:
                        left = waiting[r] - 1
                        waiting[r] = left
                        if left == 0:
                            for d in deps[r]:
                                if readers[d] == 1:
                                    found.append(r)
                                    break
                    if found:
                        found.reverse()
                        work.extend(found)
    return prio


def plan(graph: Any, keys: Any = None) -> Plan:
    """Order what ``keys`` need and lay it out for a scheduler."""
    source = source_of(graph)
    wanted: list[Key] = []
    flatten_keys(default_keys(graph) if keys is None else keys, wanted)
    return _closure(source, list(dict.fromkeys(wanted)))


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
    return {p.keys[i]: p.priority[i] for i in p.by_priority}
