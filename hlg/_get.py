"""The synchronous reference scheduler: run a graph's needed nodes on the calling thread.

``get`` finds the nodes the requested keys need (reporting missing keys and cycles by
name before anything runs), runs them in a depth-first topological order and drops each
intermediate result as soon as its last dependent has run.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterable, Iterator, Mapping, Sequence
from typing import Any, TypeVar

from hlg._keys import Key, iskey
from hlg._task import GraphNode, check_node

__all__ = ["CycleError", "MissingKeyError", "get", "postorder", "toposort"]

T = TypeVar("T", bound=Hashable)


class CycleError(ValueError):
    """The graph has a cycle; ``cycle`` lists its keys, each depending on the next.

    >>> from hlg import Alias
    >>> get({"a": Alias("a", "b"), "b": Alias("b", "a")}, "a")
    Traceback (most recent call last):
    ...
    hlg._get.CycleError: the graph has a cycle: 'a' -> 'b' -> 'a'
    """

    def __init__(self, cycle: Sequence[Any]) -> None:
        self.cycle = list(cycle)
        path = " -> ".join(repr(k) for k in [*cycle, cycle[0]])
        super().__init__(f"the graph has a cycle: {path}")


class MissingKeyError(KeyError):
    """A key was requested or depended upon but is not in the graph.

    >>> from hlg import Task, TaskRef
    >>> get({"y": Task("y", abs, TaskRef("x"))}, "y")
    Traceback (most recent call last):
    ...
    hlg._get.MissingKeyError: key 'x' is not in the graph (needed by 'y')
    """

    def __init__(self, key: object, needed_by: object = None) -> None:
        super().__init__(key)
        self.key = key
        self.needed_by = needed_by

    def __str__(self) -> str:
        if self.needed_by is None:
            return f"key {self.key!r} is not in the graph (it was requested)"
        return f"key {self.key!r} is not in the graph (needed by {self.needed_by!r})"

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.key, self.needed_by))


def _flatten(keys: Any, out: list[Key]) -> None:
    if iskey(keys):
        out.append(keys)
    elif type(keys) is list or type(keys) is tuple:  # a tuple that is not a key nests
        if type(keys) is list and keys and iskey(tuple(keys)) and not all(iskey(k) for k in keys):
            raise TypeError(
                f"{keys!r} is a list, not a key: a key with indices is a tuple, {tuple(keys)!r}"
            )
        for k in keys:
            _flatten(k, out)
    else:
        raise TypeError(f"expected a key or a (nested) list or tuple of keys; got {keys!r}")


def _pack(keys: Any, values: Mapping[Key, Any]) -> Any:
    if iskey(keys):
        return values[keys]
    if type(keys) is list:
        return [_pack(k, values) for k in keys]
    return tuple(_pack(k, values) for k in keys)


def _lookup(graph: Mapping[Key, Any], key: Key, needed_by: Key | None) -> GraphNode:
    try:
        node = graph[key]
    except KeyError:
        raise MissingKeyError(key, needed_by) from None
    return check_node(key, node, "graph")


def postorder(roots: Iterable[T], children: Callable[[T], Iterable[T]]) -> list[T]:
    """Every node reachable from ``roots``, children before parents, by a depth-first walk
    in the order ``children`` gives (so never in hash order); a cycle raises CycleError.

    >>> postorder(["c"], {"c": ["a", "b"], "b": ["a"], "a": []}.__getitem__)
    ['a', 'b', 'c']
    """
    order: list[T] = []
    state: dict[T, int] = {}  # 1: on the stack, 2: done
    for root in roots:
        if root in state:
            continue
        stack: list[tuple[T, Iterator[T]]] = [(root, iter(children(root)))]
        state[root] = 1
        while stack:
            node, pending = stack[-1]
            for child in pending:
                mark = state.get(child)
                if mark is None:
                    state[child] = 1
                    stack.append((child, iter(children(child))))
                    break
                if mark == 1:
                    path = [n for n, _ in stack]
                    raise CycleError(path[path.index(child) :])
            else:
                stack.pop()
                state[node] = 2
                order.append(node)
    return order


def toposort(graph: Mapping[Key, Any], keys: Iterable[Key]) -> dict[Key, GraphNode]:
    """Return the nodes ``keys`` need, dependencies first, as an insertion-ordered dict.

    The order is a depth-first walk that follows arguments in order, so it never
    depends on hashing. Missing keys raise :class:`MissingKeyError` and cycles raise
    :class:`CycleError`, before anything runs.

    >>> from hlg import DataNode, Task, TaskRef
    >>> g = {"b": Task("b", abs, TaskRef("a")), "a": DataNode("a", -1), "c": DataNode("c", 0)}
    >>> list(toposort(g, ["b"]))
    ['a', 'b']
    """
    nodes: dict[Key, GraphNode] = {}
    on_stack: dict[Key, None] = {}
    for root in keys:
        if root in nodes:
            continue
        node = _lookup(graph, root, None)
        stack: list[tuple[Key, GraphNode, Iterator[Key]]] = [
            (root, node, iter(node.dependency_tuple))
        ]
        on_stack[root] = None
        while stack:
            key, node, deps = stack[-1]
            for dep in deps:
                if dep in nodes:
                    continue
                if dep in on_stack:
                    path = list(on_stack)
                    raise CycleError(path[path.index(dep) :])
                child = _lookup(graph, dep, key)
                on_stack[dep] = None
                stack.append((dep, child, iter(child.dependency_tuple)))
                break
            else:
                stack.pop()
                del on_stack[key]
                nodes[key] = node
    return nodes


def get(graph: Mapping[Key, Any], keys: Any) -> Any:
    """Compute ``keys`` from ``graph`` on the calling thread.

    ``keys`` is one key or nested lists/tuples of keys (a tuple that is a key is a key);
    the result has the same structure.
    Each intermediate result is released as soon as its last dependent has run. An
    exception from a task propagates unchanged, with a note naming the failing key.

    >>> from operator import add
    >>> from hlg import DataNode, Task, TaskRef
    >>> g = {"x": DataNode("x", 1), "y": Task("y", add, TaskRef("x"), 10)}
    >>> get(g, "y"), get(g, [["x"], "y"])
    (11, [[1], 11])
    """
    unpacked = getattr(graph, "unpacked", None)
    if callable(unpacked):  # a PackedGraph: run its tasks, unpacking each one
        graph = unpacked()
    wanted: list[Key] = []
    _flatten(keys, wanted)
    nodes = toposort(graph, wanted)
    remaining: dict[Key, int] = {}
    for node in nodes.values():
        for dep in node.dependency_tuple:
            remaining[dep] = remaining.get(dep, 0) + 1
    for key in wanted:  # requested results are never released
        remaining[key] = -1
    values: dict[Key, Any] = {}
    for key, node in nodes.items():
        try:
            values[key] = node(values)
        except Exception as err:
            _note(err, key)
            raise
        for dep in node.dependency_tuple:
            left = remaining[dep] - 1
            if left == 0:
                del values[dep]
            remaining[dep] = left
    return _pack(keys, values)


def _note(err: BaseException, key: Key) -> None:
    note = f"hlg: raised while computing key {key!r}"
    if hasattr(err, "add_note"):
        err.add_note(note)
    else:  # Python 3.10: keep the note where 3.11's traceback would show it
        err.__notes__ = [*getattr(err, "__notes__", []), note]  # type: ignore[attr-defined]
