"""Conversion between hlg graphs and dask graphs (collections, HighLevelGraphs, task dicts).

``to_dask`` gives a dict of ``dask._task_spec`` nodes that dask's schedulers run: literals
and aliases map to dask's own, every other node runs inside one dask ``Task`` that calls
the hlg node with its dependencies' values. ``from_dask`` goes the other way, layer by
layer for a dask ``HighLevelGraph`` — symbolic where a converter maps the layer exactly
(``hlg.dask_layers`` entry points; dask ``Blockwise`` is one), else task by task: a dask node runs
inside one hlg ``Task`` that calls it with its dependencies' values. This module imports
dask; ``import hlg`` never imports it.
"""

from __future__ import annotations

import importlib.metadata
import warnings
from collections.abc import Callable, Mapping
from typing import Any, final

from dask import _task_spec as ts
from dask.base import is_dask_collection
from dask.highlevelgraph import HighLevelGraph as DaskHighLevelGraph

from hlg._graph import HighLevelGraph
from hlg._keys import Key
from hlg._layer import Layer, MaterializedLayer
from hlg._task import Alias, DataNode, GraphNode, Task, TaskRef

__all__ = ["from_dask", "to_dask"]


class _RunNode:
    """Runs a node (called with a dict of its dependencies' values) from positional
    dependency values, in the order of ``deps``."""

    __slots__ = ("deps", "node")

    def __init__(self, node: Any, deps: tuple[Key, ...]) -> None:
        self.node = node
        self.deps = deps

    def __call__(self, *values: Any) -> Any:
        return self.node(dict(zip(self.deps, values, strict=True)))

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.node, self.deps))


@final
class _RunHlgNode(_RunNode):
    """Runs an hlg node from positional dependency values (the dask side of ``to_dask``)."""

    __slots__ = ()

    def __repr__(self) -> str:
        return f"hlg:{self.node!r}"


@final
class _RunDaskNode(_RunNode):
    """Runs a dask node from positional dependency values (the hlg side of ``from_dask``)."""

    __slots__ = ()

    @property
    def __name__(self) -> str:
        func = getattr(self.node, "func", None)
        return getattr(func, "__name__", type(self.node).__name__)

    def __repr__(self) -> str:
        return f"dask:{self.__name__}"


def _to_dask_node(key: Key, node: GraphNode) -> Any:
    if type(node) is DataNode:
        return ts.DataNode(key, node.value)
    if type(node) is Alias:
        return ts.Alias(key, node.target)
    deps = tuple(node.dependency_tuple)
    return ts.Task(key, _RunHlgNode(node, deps), *[ts.TaskRef(d) for d in deps])


def to_dask(graph: HighLevelGraph | Mapping[Key, GraphNode]) -> dict[Key, Any]:
    """A dict of ``dask._task_spec`` nodes computing the same values as ``graph``.

    Builds each hlg task once (the graph is materialized).

    >>> import dask, hlg
    >>> from operator import add
    >>> g = {"x": hlg.DataNode("x", 1), "y": hlg.Task("y", add, hlg.TaskRef("x"), 1)}
    >>> dsk = hlg.to_dask(g)
    >>> type(dsk["y"]).__module__, dask.get(dsk, "y")
    ('dask._task_spec', 2)
    """
    return {key: _to_dask_node(key, graph[key]) for key in graph}


def _from_dask_node(key: Key, node: Any) -> GraphNode:
    if isinstance(node, ts.DataNode):
        return DataNode(key, node.value)
    if isinstance(node, ts.Alias):
        target: Any = node.target
        return Alias(key, target)
    deps = tuple(sorted(node.dependencies, key=repr))
    return Task(key, _RunDaskNode(node, deps), *[TaskRef(d) for d in deps])


def _convert_layer(name: str, dsk: Mapping[Any, Any]) -> Layer:
    nodes = ts.convert_legacy_graph(dict(dsk))
    return MaterializedLayer({k: _from_dask_node(k, v) for k, v in nodes.items()}, name)


_CONVERTERS: list[Callable[[Any], Layer | None]] | None = None


def layer_converters() -> list[Callable[[Any], Layer | None]]:
    """Converters of dask layers to symbolic hlg layers (entry point group ``hlg.dask_layers``).

    Each takes a dask layer and returns an hlg layer computing the same keys, or None
    when it cannot convert that layer exactly.
    """
    global _CONVERTERS
    if _CONVERTERS is None:
        found = []
        for entry in importlib.metadata.entry_points(group="hlg.dask_layers"):
            try:
                found.append(entry.load())
            except Exception as err:  # noqa: PERF203 - a broken plugin must not break conversion
                warnings.warn(
                    f"hlg: cannot load dask layer converter {entry.name!r}: {err}", stacklevel=2
                )
        _CONVERTERS = found
    return _CONVERTERS


def _symbolic(dlayer: Any) -> Layer | None:
    for convert in layer_converters():
        layer = convert(dlayer)
        if layer is not None:
            return layer
    return None


def from_dask(obj: Any) -> HighLevelGraph:
    """An hlg graph computing the same values as a dask collection or graph.

    Accepts dask collections (array, dataframe, delayed, bag), a dask ``HighLevelGraph``
    (converted layer by layer, with its annotations) and dicts of legacy tuples or
    ``dask._task_spec`` nodes. Each dask task runs inside one hlg ``Task``; the keys stay
    the same, so ``obj.__dask_keys__()`` names the outputs.

    >>> import hlg
    >>> from operator import add
    >>> g = hlg.from_dask({"x": 1, "y": (add, "x", 10)})
    >>> hlg.get(g, "y")
    11
    """
    if is_dask_collection(obj):
        obj = obj.__dask_graph__()
    if isinstance(obj, DaskHighLevelGraph):
        layers: dict[str, Layer] = {}
        deps: dict[str, tuple[str, ...]] = {}
        all_keys = obj.get_all_external_keys()
        for name, dlayer in obj.layers.items():
            deps[name] = tuple(d for d in obj.dependencies.get(name, ()) if d in obj.layers)
            symbolic = _symbolic(dlayer)
            if symbolic is not None and symbolic.name == name:
                layers[name] = symbolic
                continue
            nodes = ts.convert_legacy_graph(dict(dlayer), all_keys)
            layer: Layer = MaterializedLayer(
                {k: _from_dask_node(k, v) for k, v in nodes.items()}, name
            )
            plain = {k: v for k, v in (dlayer.annotations or {}).items() if not callable(v)}
            if plain:
                layer = layer.with_annotations(**plain)
            layers[name] = layer
        return HighLevelGraph(layers, deps)
    if isinstance(obj, Mapping):
        layer = _convert_layer("from-dask", obj)
        return HighLevelGraph({layer.name: layer})
    raise TypeError(
        f"hlg.from_dask: expected a dask collection, a dask HighLevelGraph or a dict graph; "
        f"got {type(obj).__name__}"
    )
