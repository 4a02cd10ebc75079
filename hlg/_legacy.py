"""Conversion of dask-style tuple graphs into explicit nodes, at the boundary only.

The rules (docs/legacy.md spells them out with examples), applied to each value, first
match wins:

1. A graph node (``Task``, ``DataNode``, ``Alias``) or a ``TaskRef`` is kept as it is.
2. A ``tuple`` (exactly ``tuple``) whose first item is callable is a task: its other
   items are converted by these rules and become the arguments. A ``dict`` argument of
   such a task is data: kept as it is, never searched for keys or tasks. This holds
   wherever the tuple stands, also inside a list or another tuple used as data.
3. A key (``hlg.iskey``) that is in the graph's keys is a reference: an ``Alias`` at the
   top level, a ``TaskRef`` inside a task. The reference holds the key as a plain
   ``str`` / ``tuple`` (a ``numpy.str_`` or a namedtuple equal to a key is a reference).
4. A ``list``, ``set``, ``frozenset``, other ``tuple`` or namedtuple is converted item
   by item and rebuilt with its own type (a namedtuple is never a task).
5. Anything else is a literal (a ``DataNode`` at the top level): a string that is not
   one of the graph's keys, and every ``dict`` (at the top level, as a task argument or
   inside a container), whose contents are never searched.

A graph key must be a key (``TypeError`` otherwise); a top-level value equal to its own
key (``{"a": "a"}``) and a node stored under another key raise ``ValueError``.
"""

from __future__ import annotations

from collections.abc import Container, Mapping
from typing import Any

from hlg._gc import gc_paused
from hlg._keys import Key, iskey
from hlg._task import (
    _ATOMIC,
    Alias,
    DataNode,
    GraphNode,
    Task,
    TaskRef,
    _remake,
    _scan,
    check_node,
)

__all__ = ["convert_legacy_graph", "convert_legacy_task"]


def _identity(value: Any) -> Any:
    """Return ``value``: the function of a top-level container that holds references."""
    return value


def convert_legacy_graph(
    dsk: Mapping[Any, Any], all_keys: Container[Any] | None = None
) -> dict[Key, GraphNode]:
    """Convert a dask-style graph ``{key: tuple-task | key | literal}`` to explicit nodes.

    ``all_keys`` (default: the graph's own keys) says which values count as keys: pass a
    larger container when the graph reads keys computed elsewhere.

    >>> from operator import add
    >>> g = convert_legacy_graph({"x": 1, "y": (add, "x", 10), "z": "y", "s": "text"})
    >>> g["y"]
    Task('y', add, TaskRef('x'), 10)
    >>> g["z"], g["s"]
    (Alias('z', 'y'), DataNode('s', 'text'))
    """
    if all_keys is None:
        all_keys = dsk.keys()
    out: dict[Key, GraphNode] = {}
    with gc_paused():
        for key, value in dsk.items():
            if not iskey(key):
                raise TypeError(
                    f"graph key {key!r} is not a key: keys are str or tuples "
                    "(str, int|float|str, ...)"
                )
            key = _plain_key(key)
            node = convert_legacy_task(key, value, all_keys)
            out[key] = check_node(
                key, node if isinstance(node, GraphNode) else DataNode(key, node), "graph"
            )
    return out


def convert_legacy_task(key: Key | None, task: Any, all_keys: Container[Any]) -> Any:
    """Convert one legacy value; return a node (with ``key``), a ``TaskRef`` or a literal.

    >>> from operator import add
    >>> convert_legacy_task("y", (add, "x", (add, "x", 1)), {"x"})
    Task('y', add, TaskRef('x'), Task(None, add, TaskRef('x'), 1))
    >>> convert_legacy_task(None, ["x", "w"], {"x"})
    [TaskRef('x'), 'w']
    >>> convert_legacy_task("y", "x", {"x"})
    Alias('y', 'x')
    """
    converted = _convert(task, all_keys, key)
    if key is None:
        return converted
    typ = type(converted)
    if typ is TaskRef:
        if converted.key == key:
            raise ValueError(
                f"graph key {key!r} is an alias of itself (its value is its own key); "
                "dask drops such entries, hlg refuses them: remove the entry"
            )
        return Alias(key, converted.key)
    if isinstance(converted, GraphNode):
        return converted if converted.key is not None else converted.substitute({}, key=key)
    if typ not in _ATOMIC and _scan(converted, []):
        return Task(key, _identity, converted)
    return converted


def _plain_key(key: Key) -> Key:
    """Return ``key`` as a plain ``str`` or ``tuple`` of plain items (``key`` passes iskey).

    >>> import numpy as np
    >>> _plain_key(np.str_("x")), _plain_key(("x", np.float64(1.5)))
    ('x', ('x', 1.5))
    """
    typ = type(key)
    if typ is str:
        return key
    if isinstance(key, str):
        return str(key)
    if typ is tuple and all(type(item) in _PLAIN for item in key):
        return key
    return tuple([_plain_item(item) for item in key])


def _plain_item(item: Any) -> str | int | float:
    if isinstance(item, str):
        return str(item)
    return float(item) if isinstance(item, float) else int(item)


_PLAIN = frozenset({str, int, float})


def _ref(key: Key) -> TaskRef:
    """A TaskRef for a key already checked here (skips the constructor's check)."""
    ref = TaskRef.__new__(TaskRef)
    ref.key = key
    return ref


def _convert(task: Any, all_keys: Container[Any], key: Key | None = None) -> Any:
    """Convert one value; a task tuple becomes a Task under ``key`` (None when nested)."""
    typ = type(task)
    if typ is str:  # the commonest argument: a key or a plain string
        return _ref(task) if task in all_keys else task
    if typ is tuple and task and callable(task[0]):
        args = [a if type(a) is dict else _convert(a, all_keys) for a in task[1:]]
        return Task(key, task[0], *args)
    if typ is TaskRef or isinstance(task, GraphNode):
        return task
    if iskey(task):
        try:
            if task in all_keys:
                return _ref(_plain_key(task))
        except TypeError:  # an unhashable container of keys cannot hold a key
            pass
        if isinstance(task, str):
            return task
    if typ is list:
        return [_convert(item, all_keys) for item in task]
    if typ is tuple:
        return tuple([_convert(item, all_keys) for item in task])
    if typ is set or typ is frozenset:
        return typ(_convert(item, all_keys) for item in task)
    if isinstance(task, tuple):  # namedtuples and other tuple subclasses
        return _remake(task, [_convert(item, all_keys) for item in task])
    return task
