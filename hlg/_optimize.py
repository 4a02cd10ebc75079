"""Graph optimization: a list of passes ``(graph, keys) -> graph`` run in order.

Built-in passes: :func:`cull` (keep what the keys need) and :func:`fuse_linear` (chains of
tasks in materialized layers become one task). No pass drops or changes annotations: a
fusion that would join tasks with different annotations is refused, and the refusal is
reported through :func:`report_refusal`: logged on the ``hlg.optimize`` logger and, inside
``optimize(..., explain=True)``, collected for that call alone (whatever the logging setup).
"""

from __future__ import annotations

import contextvars
import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, Literal, overload

from hlg._get import _flatten
from hlg._graph import HighLevelGraph
from hlg._keys import Key
from hlg._layer import Layer, MaterializedLayer, _keyset_token, single_layer_graph_name
from hlg._task import GraphNode, Task

__all__ = ["Pass", "cull", "fuse_linear", "optimize", "report_refusal"]

logger = logging.getLogger("hlg.optimize")
_EXPLAIN: contextvars.ContextVar[list[str] | None] = contextvars.ContextVar(
    "hlg_explain", default=None
)


def report_refusal(message: str) -> None:
    """Say why a pass left something alone: logged, and kept for ``explain=True``.

    Passes written outside hlg call this too, so their reasons reach the caller of
    ``optimize(..., explain=True)`` — collected per call (per thread and context).

    >>> report_refusal("my_pass: not fusing 'a' into 'b': reasons")
    """
    collected = _EXPLAIN.get()
    if collected is not None:
        collected.append(message)
    logger.info("%s", message)


Pass = Callable[[HighLevelGraph, Sequence[Key]], HighLevelGraph]
"""An optimization pass: ``pass(graph, keys) -> graph``; ``keys`` must stay addressable."""


def cull(graph: HighLevelGraph, keys: Sequence[Key]) -> HighLevelGraph:
    """Keep only what ``keys`` need (see :meth:`HighLevelGraph.cull`).

    >>> from hlg import DataNode, MaterializedLayer
    >>> layer = MaterializedLayer({"a": DataNode("a", 1), "b": DataNode("b", 2)}, name="m")
    >>> list(cull(HighLevelGraph({"m": layer}), ["b"]))
    ['b']
    """
    return graph.cull(keys)


def fuse_linear(graph: HighLevelGraph, keys: Sequence[Key]) -> HighLevelGraph:
    """Fuse linear chains of tasks in materialized layers into single tasks.

    A link ``a -> b`` is fused when ``b`` is the only task reading ``a``, ``a`` is the
    only dependency of ``b``, ``a`` is not one of ``keys``, no symbolic layer reads
    ``a``'s layer, and both layers have equal annotations. The fused task keeps the key
    of the chain's last task.

    >>> from operator import add
    >>> from hlg import DataNode, Task, TaskRef, get
    >>> tasks = {"a": DataNode("a", 1), "b": Task("b", add, TaskRef("a"), 1)}
    >>> tasks["c"] = Task("c", add, TaskRef("b"), 1)
    >>> g = HighLevelGraph({"m": MaterializedLayer(tasks, name="m")})
    >>> fused = fuse_linear(g, ["c"])
    >>> list(fused), get(fused, "c")
    (['c'], 3)
    """
    mats = {n: lay for n, lay in graph.layers.items() if isinstance(lay, MaterializedLayer)}
    if not mats:
        return graph
    dependents = graph.dependents()
    protected = {n for n in mats if any(d not in mats for d in dependents[n])}
    owner: dict[Key, str] = {}
    for name, mat in mats.items():
        for key in mat.tasks:
            owner.setdefault(key, name)  # as the graph's lookup: the first layer wins
    readers: dict[Key, int] = {}
    child: dict[Key, Key] = {}
    for mat in mats.values():
        for key, node in mat.tasks.items():
            for dep in node.dependency_tuple:
                if dep in owner:
                    readers[dep] = readers.get(dep, 0) + 1
                    child[dep] = key
    outputs = set(keys)
    parent: dict[Key, Key] = {}  # fusable links, child -> parent
    for key, count in readers.items():
        if count != 1 or key in outputs or owner[key] in protected:
            continue
        below = child[key]
        if len(mats[owner[below]].tasks[below].dependency_tuple) != 1:
            continue
        above_notes = mats[owner[key]].annotations
        below_notes = mats[owner[below]].annotations
        if above_notes != below_notes:
            report_refusal(
                f"fuse_linear: not fusing {key!r} into {below!r}: annotations differ "
                f"({dict(above_notes)} vs {dict(below_notes)})"
            )
            continue
        parent[below] = key
    if not parent:
        return graph
    fused_away = set(parent.values())
    replacement: dict[Key, GraphNode] = {}
    for end in parent:
        if end in fused_away:
            continue  # not the end of its chain
        chain = [end]
        while chain[-1] in parent:
            chain.append(parent[chain[-1]])
        nodes = [mats[owner[k]].tasks[k] for k in reversed(chain)]
        replacement[end] = Task.fuse(*nodes, output=end)
    return _rebuild(graph, mats, fused_away, replacement)


def _rebuild(
    graph: HighLevelGraph,
    mats: Mapping[str, MaterializedLayer],
    removed: set[Key],
    replacement: Mapping[Key, GraphNode],
) -> HighLevelGraph:
    renamed: dict[str, str] = {}
    layers: dict[str, Layer] = {}
    for name, layer in graph.layers.items():
        if name not in mats or not any(k in removed or k in replacement for k in mats[name].tasks):
            layers[name] = layer
            renamed[name] = name
            continue
        tasks = {
            k: replacement.get(k, node) for k, node in mats[name].tasks.items() if k not in removed
        }
        if not tasks:
            continue
        new_name = f"{name}-linear-{_keyset_token(name, tasks)}"
        fused = MaterializedLayer(tasks, new_name)
        fused.annotations = layer.annotations  # exactly as before
        layers[new_name] = fused
        renamed[name] = new_name
    staged = HighLevelGraph(layers, {n: () for n in layers})
    deps: dict[str, set[str]] = {}
    for old, current in renamed.items():
        layer = layers[current]
        if old in mats:
            deps[current] = set()
            for key in layer:
                for dep in layer.dependency_tuple(key):
                    if dep not in layer:
                        deps[current].add(staged.layer_of(dep).name)
        else:
            deps[current] = {renamed[d] for d in graph.dependencies[old] if d in renamed}
    return HighLevelGraph(layers, deps)


@overload
def optimize(
    graph: HighLevelGraph | Mapping[Key, GraphNode],
    keys: Any = None,
    passes: Iterable[Pass] | None = None,
    *,
    explain: Literal[False] = False,
) -> HighLevelGraph: ...


@overload
def optimize(
    graph: HighLevelGraph | Mapping[Key, GraphNode],
    keys: Any = None,
    passes: Iterable[Pass] | None = None,
    *,
    explain: Literal[True],
) -> tuple[HighLevelGraph, list[str]]: ...


def optimize(
    graph: HighLevelGraph | Mapping[Key, GraphNode],
    keys: Any = None,
    passes: Iterable[Pass] | None = None,
    *,
    explain: bool = False,
) -> HighLevelGraph | tuple[HighLevelGraph, list[str]]:
    """Run ``passes`` (default: ``cull`` then ``fuse_linear``) over ``graph``.

    ``keys`` (a key or nested list of keys; default: every key of the output layers)
    stay addressable. A plain dict of nodes is wrapped into a one-layer graph first.
    With ``explain=True`` the result is ``(graph, messages)``, the messages saying why
    fusions were refused.

    >>> from operator import add
    >>> from hlg import DataNode, Task, TaskRef, get
    >>> dsk = {"a": DataNode("a", 1), "b": Task("b", add, TaskRef("a"), 1), "x": DataNode("x", 0)}
    >>> g = optimize(dsk, "b")
    >>> list(g), get(g, "b")
    (['b'], 2)
    """
    if not isinstance(graph, HighLevelGraph):
        layer = MaterializedLayer(graph, single_layer_graph_name(graph))
        graph = HighLevelGraph({layer.name: layer})
    if keys is None:
        wanted = graph.output_keys()
    else:
        wanted = []
        _flatten(keys, wanted)
    chosen: list[Pass] = [cull, fuse_linear] if passes is None else list(passes)
    messages: list[str] = []
    token = _EXPLAIN.set(messages) if explain else None
    try:
        for optimization in chosen:
            result: object = optimization(graph, wanted)
            if not isinstance(result, HighLevelGraph):
                name = getattr(optimization, "__qualname__", repr(optimization))
                raise TypeError(
                    f"optimization pass {name} returned {type(result).__name__}, not a "
                    "HighLevelGraph (a pass is (graph, keys) -> graph)"
                )
            graph = result
    finally:
        if token is not None:
            _EXPLAIN.reset(token)
    return (graph, messages) if explain else graph
