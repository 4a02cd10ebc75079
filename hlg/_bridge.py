"""Public entry points to dask and dask.distributed, importing them only when called."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

from hlg._keys import Key
from hlg._task import GraphNode

if TYPE_CHECKING:
    from hlg._graph import HighLevelGraph

__all__ = ["compute_on", "dask_collection", "from_dask", "to_dask"]


def compute_on(
    client: Any,
    graph: Any,
    keys: Any,
    *,
    retries: int | None = None,
    priority: int = 0,
    resources: Mapping[str, float] | None = None,
    workers: Iterable[str] | str | None = None,
    allow_other_workers: bool | None = None,
) -> Any:
    """Run ``graph`` on the cluster of a ``distributed.Client``; return ``keys``' values.

    ``keys`` is a key or a nested list of keys; the result has the same nesting. The
    graph travels packed and is expanded on the dask scheduler, which needs hlg
    installed but never imports the user's modules; workers unpickle the payloads. Layer
    annotations (``retries``, ``priority``, ``resources``, ``workers``,
    ``allow_other_workers``) are honoured by the dask scheduler; the keyword arguments
    apply to every task, as in ``Client.get``. Needs ``pip install "hlg[distributed]"``.
    See docs/distributed.md.

    >>> import hlg, distributed
    >>> from operator import add
    >>> g = {"x": hlg.DataNode("x", 1), "y": hlg.Task("y", add, hlg.TaskRef("x"), 41)}
    >>> with distributed.Client(processes=False, dashboard_address=None) as client:
    ...     hlg.compute_on(client, g, ["y", ["x"]])
    [42, [1]]
    """
    from hlg._distributed import compute_on as run

    return run(
        client,
        graph,
        keys,
        retries=retries,
        priority=priority,
        resources=resources,
        workers=workers,
        allow_other_workers=allow_other_workers,
    )


def dask_collection(graph: HighLevelGraph | Mapping[Key, GraphNode], keys: Any) -> Any:
    """``graph`` as a dask collection: ``client.compute(c)``, ``dask.compute(c)`` run it.

    The collection's ``expr`` carries the packed graph, so a ``distributed.Client``
    expands it on the scheduler (as :func:`compute_on` does); dask's local schedulers
    expand it in this process. Its value is ``keys``' values, nested as given.

    >>> import dask, hlg
    >>> from operator import add
    >>> g = {"x": hlg.DataNode("x", 1), "y": hlg.Task("y", add, hlg.TaskRef("x"), 41)}
    >>> dask.compute(hlg.dask_collection(g, ["y", ["x"]]), scheduler="sync")
    ([42, [1]],)
    """
    from hlg._distributed import DaskCollection

    return DaskCollection(graph, keys)


def to_dask(graph: HighLevelGraph | Mapping[Key, GraphNode]) -> dict[Key, Any]:
    """A dict of ``dask._task_spec`` nodes that dask's schedulers run, same values as ``graph``.

    >>> import dask, hlg
    >>> from operator import add
    >>> g = {"x": hlg.DataNode("x", 1), "y": hlg.Task("y", add, hlg.TaskRef("x"), 1)}
    >>> dask.get(hlg.to_dask(g), ["x", "y"])
    (1, 2)
    """
    from hlg._dask import to_dask as convert

    return convert(graph)


def from_dask(obj: Any) -> HighLevelGraph:
    """An hlg graph computing what a dask collection, HighLevelGraph or dict graph computes.

    Keys are kept, so ``collection.__dask_keys__()`` names the outputs. A dask
    ``HighLevelGraph`` is converted layer by layer (keeping plain annotations), each dask
    task running inside one hlg ``Task``.

    >>> import hlg
    >>> import dask.array as da
    >>> x = da.ones((4, 4), chunks=2) + 1
    >>> blocks = hlg.get(hlg.from_dask(x), x.__dask_keys__())
    >>> [[int(b.sum()) for b in row] for row in blocks]
    [[8, 8], [8, 8]]
    """
    from hlg._dask import from_dask as convert

    return convert(obj)
