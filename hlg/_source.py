"""What schedulers read from a graph, whatever its form: keys, dependencies, nodes, retries.

A graph reaches ``hlg.order`` and ``hlg.compute`` as a ``HighLevelGraph``, a
``PackedGraph``, a plain ``Mapping`` of nodes or a collection (``__hlg_graph__``). A
:class:`GraphSource` answers the three questions a scheduler asks of it — the
dependencies of a key (symbolically when the layer can), the node of a key (built when it
is about to run), and the ``retries`` annotation of a key's layer — and the nested key
structure of a request is flattened and rebuilt here.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from hlg._get import MissingKeyError, _flatten
from hlg._graph import HighLevelGraph, HLGCollection
from hlg._keys import Key, iskey
from hlg._packed import PackedGraph
from hlg._task import GraphNode, check_node

__all__ = ["GraphSource", "flatten_keys", "rebuild_keys", "source_of"]


def flatten_keys(keys: Any, out: list[Key]) -> None:
    """Append the keys of a key or a nested list/tuple of keys to ``out``.

    A tuple that is a key is a key; any other tuple nests, like a list.

    >>> out = []
    >>> flatten_keys([("x", 0), ["y", (["z"], "w")]], out)
    >>> out
    [('x', 0), 'y', 'z', 'w']
    """
    _flatten(keys, out)


def rebuild_keys(keys: Any, values: Mapping[Key, Any]) -> Any:
    """The results of ``keys`` in the nesting of ``keys``.

    >>> rebuild_keys([("x", 0), (["y"], "z")], {("x", 0): 1, "y": 2, "z": 3})
    [1, ([2], 3)]
    """
    if iskey(keys):
        return values[keys]
    if type(keys) is list:
        return [rebuild_keys(k, values) for k in keys]
    return tuple(rebuild_keys(k, values) for k in keys)


class GraphSource:
    """Dependencies, nodes and retries of one graph, read the cheapest way its form allows.

    >>> from hlg import DataNode, Task, TaskRef
    >>> src = source_of({"x": DataNode("x", 1), "y": Task("y", abs, TaskRef("x"))})
    >>> src.dependencies("y", None), src.retries("y")
    (('x',), 0)
    """

    __slots__ = ("dependencies", "graph", "mapping", "node", "packed")

    def __init__(self, graph: Mapping[Key, Any], packed: PackedGraph | None = None) -> None:
        self.graph = graph
        self.packed = packed
        self.dependencies: Callable[[Key, Key | None], tuple[Key, ...]]
        self.node: Callable[[Key], GraphNode]
        self.mapping: Mapping[Key, Any] | None
        if isinstance(graph, HighLevelGraph):
            self.mapping = None
            self.dependencies = self._layer_dependencies
            # a packed graph runs locally by unpacking each task as it becomes ready
            self.node = graph.__getitem__ if packed is None else packed.unpacked().__getitem__
        else:
            self.mapping = graph
            self.dependencies = self._node_dependencies
            self.node = self._checked_node

    def _layer_dependencies(self, key: Key, needed_by: Key | None) -> tuple[Key, ...]:
        graph = self.graph
        assert isinstance(graph, HighLevelGraph)
        layer = graph._find_layer(key) if iskey(key) else None
        if layer is None:
            raise MissingKeyError(key, needed_by)
        return layer.dependency_tuple(key)

    def checked_node(self, key: Key, needed_by: Key | None) -> GraphNode:
        """The node of ``key`` in a plain mapping, checked (missing keys named)."""
        try:
            node = self.graph[key]
        except (KeyError, TypeError):
            raise MissingKeyError(key, needed_by) from None
        return check_node(key, node, "graph")

    def _node_dependencies(self, key: Key, needed_by: Key | None) -> tuple[Key, ...]:
        return self.checked_node(key, needed_by).dependency_tuple

    def _checked_node(self, key: Key) -> GraphNode:
        return check_node(key, self.graph[key], "graph")

    def retries(self, key: Key) -> int:
        """How many times a failing ``key`` is re-run (its layer's ``retries`` annotation)."""
        graph = self.graph
        if not isinstance(graph, HighLevelGraph):
            return 0
        layer = graph.layer_of(key)
        value = layer.annotations.get("retries", 0)
        if value is None:
            return 0
        if type(value) is not int or value < 0:
            raise ValueError(
                f"layer {layer.name!r}: the 'retries' annotation must be an int >= 0; got {value!r}"
            )
        return value


def source_of(graph: Any) -> GraphSource:
    """The :class:`GraphSource` of a graph, a packed graph or a collection."""
    if isinstance(graph, PackedGraph):
        return GraphSource(graph.graph, graph)
    if isinstance(graph, HighLevelGraph):
        return GraphSource(graph)
    if isinstance(graph, HLGCollection) and not isinstance(graph, Mapping):
        return GraphSource(graph.__hlg_graph__())
    if isinstance(graph, Mapping):
        return GraphSource(graph)
    raise TypeError(
        f"expected a HighLevelGraph, a PackedGraph, a Mapping of graph nodes or a collection "
        f"with __hlg_graph__; got {type(graph).__name__}"
    )


def default_keys(graph: Any) -> list[Key]:
    """The outputs of a graph when no keys are given.

    A collection's keys are those of its layers; a packed graph's, its recorded outputs; a
    HighLevelGraph's, the keys of its output layers; a Mapping's, the keys nothing reads.
    """
    if isinstance(graph, PackedGraph):
        return graph.output_keys
    if isinstance(graph, HighLevelGraph):
        return graph.output_keys()
    if isinstance(graph, HLGCollection) and not isinstance(graph, Mapping):
        inner = graph.__hlg_graph__()
        return [key for name in graph.__hlg_layers__() for key in inner.layers[name]]
    read: set[Key] = set()
    for key, node in graph.items():
        read.update(check_node(key, node, "graph").dependency_tuple)
    return [key for key in graph if key not in read]
