"""``hlg.compute``: pick a local scheduler, run a graph, return results in the keys' nesting."""

from __future__ import annotations

import os
from collections.abc import Iterable
from typing import Any

from hlg._callbacks import Callback, CallbackGroup, ProgressBar
from hlg._order import plan as make_plan
from hlg._source import default_keys, rebuild_keys
from hlg._sync import run_sync
from hlg._threads import run_threads

__all__ = ["SCHEDULERS", "compute"]

SCHEDULERS = ("threads", "sync", "processes")


def compute(
    graph: Any,
    keys: Any = None,
    scheduler: Any = "threads",
    num_workers: int | None = None,
    callbacks: Iterable[Callback] = (),
    progress: bool | None = None,
    **options: Any,
) -> Any:
    """Compute ``keys`` of ``graph`` with a local scheduler.

    ``graph`` is a HighLevelGraph, a PackedGraph, a Mapping of graph nodes or a
    collection (``__hlg_graph__``/``__hlg_layers__``); ``keys`` a key or nested
    lists/tuples of keys (a tuple that is a key is a key), the result having the same
    nesting (default: the graph's or collection's outputs, as a list). ``scheduler`` is
    ``"threads"`` (default), ``"sync"`` or ``"processes"``; ``num_workers`` defaults to
    the CPU count.
    ``callbacks`` are :class:`hlg.Callback` instances; ``progress=True`` adds a tqdm bar
    on stderr. The processes scheduler takes ``context="spawn"`` (default) or ``"fork"``.
    A ``distributed.Client`` as ``scheduler`` runs the graph on its dask cluster
    (:func:`hlg.compute_on`; ``options`` are its keywords, e.g. ``retries``).

    >>> from operator import add
    >>> from hlg import DataNode, Task, TaskRef
    >>> g = {"x": DataNode("x", 1), "y": Task("y", add, TaskRef("x"), 10)}
    >>> compute(g, ["y", (["x"], "y")])
    [11, ([1], 11)]
    >>> compute(g, "y", scheduler="sync")
    11
    """
    if not isinstance(scheduler, str):  # a distributed.Client: run on its cluster
        from hlg._bridge import compute_on

        if num_workers is not None or callbacks or progress:
            raise TypeError("num_workers, callbacks and progress apply to local schedulers only")
        return compute_on(
            scheduler, graph, default_keys(graph) if keys is None else keys, **options
        )
    if scheduler not in SCHEDULERS:
        raise ValueError(f"unknown scheduler {scheduler!r}; expected one of {SCHEDULERS}")
    unknown = set(options) - ({"context"} if scheduler == "processes" else set())
    if unknown:
        raise TypeError(f"hlg.compute: unexpected options for {scheduler!r}: {sorted(unknown)}")
    if num_workers is None:
        num_workers = os.cpu_count() or 1
    elif type(num_workers) is not int or num_workers < 1:
        raise ValueError(f"num_workers must be a positive int; got {num_workers!r}")
    if keys is None:
        keys = default_keys(graph)
    group = CallbackGroup(callbacks)
    if progress:
        group.active.append(ProgressBar())
    if scheduler == "processes":
        from hlg._processes import compute_processes

        return compute_processes(graph, keys, num_workers, group, **options)
    plan = make_plan(graph, keys)
    wanted = [plan.key(i) for i in plan.outputs]
    ok = False
    if group:
        group.start(wanted, len(plan))
    try:
        if scheduler == "sync":
            values = run_sync(plan, group)
        else:
            values = run_threads(plan, num_workers, group)
        ok = True
    finally:
        if group:
            group.finish(ok)
    return rebuild_keys(keys, values)
