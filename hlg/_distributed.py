"""The dask.distributed bridge: packed graphs that a dask scheduler expands without user code.

The client packs the graph (:func:`hlg.pack`) and sends it inside :class:`PackedGraphExpr`,
a ``dask._expr.Expr`` whose only operands are the packed bytes and a plain-data header.
distributed pickles the expression as dask's ``Expr._reconstruct`` plus this module's
class plus bytes; its scheduler unpickles it and calls ``__dask_graph__()`` (or
``_layer()``) and ``__dask_annotations__()`` there. Those calls unpack the graph from its
msgpack state (:func:`hlg.unpack`, no unpickling) and build one ``dask._task_spec.Task``
per key whose function is :func:`run_packed`, hlg's worker entry point, and whose user
payload is still bytes. Only a worker, running the task, unpickles it.

Keys are renamed per graph (``name`` becomes ``name-<token>``, the token a digest of the
packed bytes), so two graphs that use the same key names never meet on the scheduler.
This module imports dask and distributed; ``import hlg`` never imports it.
"""

from __future__ import annotations

import functools
import hashlib
import os
import pkgutil
import threading
from collections import OrderedDict
from collections.abc import Iterable, Mapping
from typing import Any, final

import dask.threaded
from dask._expr import Expr
from dask._task_spec import DataNode as DaskDataNode
from dask._task_spec import Task as DaskTask
from dask._task_spec import TaskRef as DaskTaskRef

from hlg import BlobRef, Blobs, Limits, PackedGraph, PackedTask, PackError, pack, unpack
from hlg._gc import gc_paused
from hlg._get import _flatten, _note
from hlg._graph import HighLevelGraph, HLGCollection
from hlg._keys import Key
from hlg._source import rebuild_keys
from hlg._task import GraphNode

__all__ = [
    "BRIDGE_PROTOCOL",
    "DaskCollection",
    "INLINE_BLOB_LIMIT",
    "PackedGraphExpr",
    "compute_on",
    "namespaced",
    "run_packed",
]

BRIDGE_PROTOCOL = 1
"""Version of the header and task layout below; client and scheduler must agree."""

INLINE_BLOB_LIMIT = 64 * 1024
"""Blobs up to this size travel inside each task that reads them; larger ones become one
dask key each (a ``DataNode`` holding the bytes) that the tasks depend on, so dask moves
them once per worker."""

# Annotations the dask scheduler acts on; other plain-data annotations reach
# ``TaskState.annotations`` unchanged (scheduler plugins read them there).
HONOURED = ("retries", "priority", "resources", "workers", "allow_other_workers")


def _hlg_version() -> str:
    from hlg import __version__

    return __version__


def namespaced(key: Key, token: str) -> Key:
    """The scheduler's name of ``key`` in the graph whose token is ``token``.

    >>> namespaced(("x", 0, 1), "ab12"), namespaced("y", "ab12")
    (('x-ab12', 0, 1), 'y-ab12')
    """
    if type(key) is tuple:
        return (f"{key[0]}-{token}", *key[1:])
    return f"{key}-{token}"


def bridge_limits() -> Limits:
    """The bounds the dask scheduler applies to a packed graph before expanding it.

    The dask scheduler holds a dask ``Task`` and its own state per key (about 1 KB and
    10 µs each here), so the defaults stop at graphs it can hold: 2,000,000 tasks and
    20,000,000 dependency edges. Set the dask config keys ``hlg.max-tasks`` and
    ``hlg.max-edges`` on the scheduler to change them.

    >>> bridge_limits().max_tasks, bridge_limits().max_edges
    (2000000, 20000000)
    """
    import dask.config

    return Limits(
        max_tasks=int(dask.config.get("hlg.max-tasks", 2_000_000)),
        max_edges=int(dask.config.get("hlg.max-edges", 20_000_000)),
    )


def graph_token(payload: bytes) -> str:
    """The namespace of a packed graph: a digest of its bytes (same bytes, same keys)."""
    return hashlib.blake2b(payload, digest_size=8).hexdigest()


# -- the worker side -------------------------------------------------------------------------


@final
class TaskSpec:
    """What one dask task carries to a worker: a packed task and its blobs' ids.

    ``inline`` holds the bytes of each small blob (``None`` where a large blob arrives as
    a dependency value instead); the runspec's blob numbers index these local lists.
    ``run`` names the submission the task belongs to: unpickled code is shared between
    the tasks of one submission on a worker, never with another submission's.
    """

    __slots__ = ("deps", "ids", "inline", "key", "run", "runspec")

    def __init__(
        self,
        key: Key,
        deps: tuple[Key, ...],
        runspec: tuple[Any, ...],
        inline: tuple[bytes | None, ...],
        ids: tuple[bytes, ...],
        run: str = "",
    ) -> None:
        self.key = key
        self.deps = deps
        self.runspec = runspec
        self.inline = inline
        self.ids = ids
        self.run = run

    def __reduce__(self) -> tuple[Any, ...]:
        return (TaskSpec, (self.key, self.deps, self.runspec, self.inline, self.ids, self.run))

    def __repr__(self) -> str:
        return f"TaskSpec({self.key!r}, runspec={self.runspec[0]!r})"


# Worker side: one Blobs object per submission and distinct tuple of blob ids, so the
# tasks of a layer (which read the same template) unpickle it once per worker process and
# submission. A template's constants live inside its unpickled code, so the cache is keyed
# by the submission too: a task that mutates a constant argument cannot reach another
# submission (even of an identical graph). Only code is cached inside a Blobs (data blobs
# are unpickled afresh on every load), and the cache is bounded by the bytes it holds.
_BLOBS: OrderedDict[tuple[str, tuple[bytes, ...]], Blobs] = OrderedDict()
_BLOBS_LOCK = threading.Lock()
_BLOBS_MAX_BYTES = 64 * 2**20
_BLOBS_MAX_COUNT = 4096
_blobs_bytes = 0


def _blobs_for(spec: TaskSpec, values: tuple[Any, ...]) -> Blobs:
    global _blobs_bytes
    entry = (spec.run, spec.ids)
    with _BLOBS_LOCK:
        found = _BLOBS.get(entry)
        if found is not None:
            _BLOBS.move_to_end(entry)
            return found
    large = iter(values)
    data = [next(large) if blob is None else blob for blob in spec.inline]
    blobs = Blobs(data, spec.ids)  # checks each blob against its id
    size = blobs.nbytes()
    if size <= _BLOBS_MAX_BYTES // 8:
        with _BLOBS_LOCK:
            if entry not in _BLOBS:
                _BLOBS[entry] = blobs
                _blobs_bytes += size
                while _BLOBS and (
                    _blobs_bytes > _BLOBS_MAX_BYTES or len(_BLOBS) > _BLOBS_MAX_COUNT
                ):
                    _, dropped = _BLOBS.popitem(last=False)
                    _blobs_bytes -= dropped.nbytes()
    return blobs


def run_packed(spec: TaskSpec, *values: Any) -> Any:
    """hlg's worker entry point: unpack one task (unpickling its blobs here) and run it.

    ``values`` are the large blobs the task reads (in the order of ``spec.inline``'s
    ``None`` entries), then the values of ``spec.deps``. An exception keeps its type and
    gets a note naming the hlg key.

    >>> import hlg
    >>> from operator import add
    >>> g = {"x": hlg.DataNode("x", 0), "y": hlg.Task("y", add, hlg.TaskRef("x"), 1)}
    >>> packed = hlg.unpack(hlg.pack(g))
    >>> blobs = packed.blobs
    >>> spec = TaskSpec("y", ("x",), packed["y"].runspec, tuple(blobs.data), tuple(blobs.ids))
    >>> run_packed(spec, 41)
    42
    """
    nlarge = spec.inline.count(None)
    blobs = _blobs_for(spec, values)
    try:
        node = PackedTask(spec.key, spec.deps, spec.runspec).unpack(blobs)
        return node(dict(zip(spec.deps, values[nlarge:], strict=True)))
    except Exception as err:
        _note(err, spec.key)
        raise


# -- the scheduler side ----------------------------------------------------------------------


def _localize(runspec: tuple[Any, ...], nblobs: int) -> tuple[tuple[Any, ...], list[int]]:
    """Renumber the blobs a runspec reads as 0, 1, …; return it with the global numbers.

    Unknown runspec kinds keep their numbers and read every blob (correct, heavier).
    """
    local: dict[int, int] = {}

    def idx(i: int) -> int:
        found = local.get(i)
        if found is None:
            found = local[i] = len(local)
        return found

    def fill(value: Any) -> Any:
        typ = type(value)
        if typ is BlobRef:
            return BlobRef(idx(value.index))
        if typ is list:
            return [fill(v) for v in value]
        return value

    kind = runspec[0]
    if kind in ("bw", "bwg"):
        new: tuple[Any, ...] = (kind, idx(runspec[1]), [fill(f) for f in runspec[2]])
        new += runspec[3:]
    elif kind == "t":
        new = ("t", idx(runspec[1]), idx(runspec[2]))
    elif kind in ("d", "n"):
        new = (kind, idx(runspec[1]))
    elif kind == "a":
        new = runspec
    else:
        return runspec, list(range(nblobs))
    return new, list(local)


def expand(
    packed: PackedGraph, token: str, inline_limit: int = INLINE_BLOB_LIMIT, run: str = ""
) -> dict[Key, Any]:
    """The dask graph of a packed graph: one ``dask._task_spec`` node per key.

    Runs on the dask scheduler; nothing is unpickled.

    >>> import hlg
    >>> from operator import add
    >>> g = {"x": hlg.DataNode("x", 1), "y": hlg.Task("y", add, hlg.TaskRef("x"), 1)}
    >>> dsk = expand(hlg.unpack(hlg.pack(g)), "t0")
    >>> sorted(dsk), sorted(dsk["y-t0"].dependencies)
    (['x-t0', 'y-t0'], ['x-t0'])
    """
    with gc_paused():  # many acyclic objects: no collector passes over them meanwhile
        return _expand(packed, token, inline_limit, run or token)


def _expand(packed: PackedGraph, token: str, inline_limit: int, run: str) -> dict[Key, Any]:
    blobs = packed.blobs
    nblobs = len(blobs)
    large_key: dict[int, Key] = {}
    dsk: dict[Key, Any] = {}
    for i, blob in enumerate(blobs.data):
        if len(blob) > inline_limit:
            # never of the form "<user name>-<token>", which every user key becomes
            large_key[i] = k = (f"hlg-blob-{token}-data", i)
            dsk[k] = DaskDataNode(k, blob)
    for key in packed:
        task = packed[key]
        runspec, used = _localize(task.runspec, nblobs)
        inline: list[bytes | None] = []
        refs: list[DaskTaskRef] = []
        for i in used:
            if i in large_key:
                inline.append(None)
                refs.append(DaskTaskRef(large_key[i]))
            else:
                inline.append(blobs.data[i])
        deps = task.dependency_tuple
        ids = tuple(blobs.ids[i] for i in used)
        spec = TaskSpec(key, deps, runspec, tuple(inline), ids, run)
        nskey = namespaced(key, token)
        dsk[nskey] = DaskTask(
            nskey, run_packed, spec, *refs, *[DaskTaskRef(namespaced(d, token)) for d in deps]
        )
    return dsk


def annotations_by_type(packed: PackedGraph, token: str) -> dict[str, dict[Key, Any]]:
    """Per-key annotations as the dask scheduler reads them: ``{name: {key: value}}``.

    >>> import hlg
    >>> layer = hlg.MaterializedLayer({"x": hlg.DataNode("x", 1)}, name="x")
    >>> g = hlg.HighLevelGraph({"x": layer.with_annotations(retries=2)})
    >>> annotations_by_type(hlg.unpack(hlg.pack(g)), "t0")
    {'retries': {'x-t0': 2}}
    """
    out: dict[str, dict[Key, Any]] = {}
    for layer in packed.layers.values():
        annotations = dict(layer.annotations)
        if not annotations:
            continue
        keys = [namespaced(k, token) for k in layer]
        for name, value in annotations.items():
            if name == "workers" and isinstance(value, str):
                value = [value]
            out.setdefault(name, {}).update(dict.fromkeys(keys, value))
    return out


def _whole_outputs(graph: HighLevelGraph | Mapping[Key, GraphNode], wanted: list[Key]) -> bool:
    """Whether ``wanted`` is every key of the graph's output layers (nothing to cull).

    Then the graph is packed as it is, outputs recorded by layer name: O(layers), where
    culling would visit every key of a layer that culls key by key.
    """
    if not isinstance(graph, HighLevelGraph):
        return False
    outputs = graph.output_layers()
    unique = set(wanted)
    if len(unique) != sum(len(graph.layers[name]) for name in outputs):
        return False
    names = set(outputs)
    return all(key in graph and graph.layer_of(key).name in names for key in unique)


class PackedGraphExpr(Expr):
    """A dask expression that holds only a packed hlg graph and a plain-data header.

    Expanded where dask materializes graphs — on the distributed scheduler — into dask
    tasks that run :func:`run_packed`. ``header`` is ``{"bridge": BRIDGE_PROTOCOL, "hlg":
    version, "token": namespace, "keys": [namespaced output keys]}``.

    >>> import hlg
    >>> expr = PackedGraphExpr.from_graph({"x": hlg.DataNode("x", 1)}, ["x"])
    >>> expr.__dask_keys__() == [namespaced("x", expr.token)]
    True
    >>> sorted(expr.__dask_graph__()) == expr.__dask_keys__()
    True
    """

    _parameters = ["payload", "header"]  # noqa: RUF012 (dask reads it from the class)
    # The unpacked graph is cached per process and never pickled along.
    _pickle_functools_cache = False

    @classmethod
    def from_graph(cls, graph: HighLevelGraph | Mapping[Key, GraphNode], keys: Any) -> Any:
        """Pack ``graph`` for ``keys`` (a key or nested list of keys) into an expression."""
        wanted: list[Key] = []
        _flatten(keys, wanted)
        payload = pack(graph) if _whole_outputs(graph, wanted) else pack(graph, keys)
        token = graph_token(payload)
        header = {
            "bridge": BRIDGE_PROTOCOL,
            "hlg": _hlg_version(),
            "token": token,
            "keys": [namespaced(k, token) for k in dict.fromkeys(wanted)],
            # this submission: worker-side caches of unpickled code are kept per run
            "run": os.urandom(8).hex(),
        }
        return cls(payload, header)

    @property
    def token(self) -> str:
        """The key namespace of this graph."""
        token: str = self.operands[1]["token"]
        return token

    def __dask_tokenize__(self) -> str:
        return f"hlg-{self.token}"

    @property
    def _funcname(self) -> str:
        return "hlg-packed-graph"

    @functools.cached_property
    def _packed(self) -> PackedGraph:
        header = self.operands[1]
        if not isinstance(header, dict) or header.get("bridge") != BRIDGE_PROTOCOL:
            got = header.get("bridge") if isinstance(header, dict) else header
            client = header.get("hlg") if isinstance(header, dict) else "unknown"
            raise PackError(
                f"hlg bridge protocol mismatch: the client (hlg {client}) sent protocol "
                f"{got!r}, this scheduler's hlg {_hlg_version()} reads protocol "
                f"{BRIDGE_PROTOCOL}; install the same hlg version on client, scheduler "
                "and workers"
            )
        payload = self.operands[0]
        if not isinstance(payload, bytes) or graph_token(payload) != header.get("token"):
            raise PackError(
                "hlg packed graph: the payload does not match the header's token "
                "(corrupted or altered on the way)"
            )
        return unpack(payload, limits=bridge_limits())

    def _build(self) -> dict[Key, Any]:
        return expand(self._packed, self.token, run=str(self.operands[1].get("run", "")))

    @functools.cached_property
    def _expanded(self) -> dict[Key, Any]:
        # distributed may ask twice per submission (an _ExprSequence and its operand)
        return self._build()

    def _layer(self) -> dict[Key, Any]:
        return self._expanded

    def __dask_graph__(self) -> dict[Key, Any]:
        return self._layer()

    def __dask_annotations__(self) -> dict[str, dict[Key, Any]]:
        return annotations_by_type(self._packed, self.token)

    def __dask_keys__(self) -> list[Key]:
        keys: list[Key] = list(self.operands[1]["keys"])
        return keys

    def finalize_compute(self) -> FinalizedPackedGraphExpr:
        """The same graph plus one task gathering the outputs in the requested nesting."""
        return FinalizedPackedGraphExpr(*self.operands)  # type: ignore[no-untyped-call]

    def dependencies(self) -> list[Any]:
        return []

    def _simplify_down(self) -> None:
        return None

    def _lower(self) -> None:
        return None

    def __str__(self) -> str:
        return f"PackedGraphExpr({self.token}, {len(self.operands[0]):,} B)"

    __repr__ = __str__


def _nest_values(structure: Any, keys: list[Key], *values: Any) -> Any:
    """Worker side of a finalized graph: the outputs' values in the requested nesting."""
    return rebuild_keys(structure, dict(zip(keys, values, strict=True)))


class FinalizedPackedGraphExpr(PackedGraphExpr):
    """A packed graph whose one output key holds every requested value, nested as asked.

    What ``client.compute`` and ``dask.compute`` run for a :class:`DaskCollection`.
    """

    @property
    def _funcname(self) -> str:
        return "hlg-finalize"

    def __dask_tokenize__(self) -> str:
        return f"hlg-finalize-{self.token}-out"

    @property
    def _final_key(self) -> str:
        # never of the form "<user name>-<token>", which every user key becomes
        return f"hlg-finalize-{self.token}-out"

    def _build(self) -> dict[Key, Any]:
        dsk = super()._build()
        header = self.operands[1]
        plain = list(dict.fromkeys(_flat(header["structure"])))
        key = self._final_key
        refs = [DaskTaskRef(namespaced(k, self.token)) for k in plain]
        dsk[key] = DaskTask(key, _nest_values, header["structure"], plain, *refs)
        return dsk

    def __dask_keys__(self) -> list[Key]:
        return [self._final_key]

    def finalize_compute(self) -> FinalizedPackedGraphExpr:
        return self


def _flat(keys: Any) -> list[Key]:
    out: list[Key] = []
    _flatten(keys, out)
    return out


class DaskCollection:
    """An hlg graph as a dask collection: ``client.compute(c)`` / ``dask.compute(c)`` run it.

    Its ``expr`` carries the packed graph, so on a distributed client the graph is
    expanded on the scheduler, as with :func:`compute_on`; with a local dask scheduler
    it is expanded in this process. The result is ``keys``' values, nested as given.

    >>> import dask, hlg
    >>> from operator import add
    >>> g = {"x": hlg.DataNode("x", 1), "y": hlg.Task("y", add, hlg.TaskRef("x"), 41)}
    >>> dask.compute(DaskCollection(g, ["y", ["x"]]), scheduler="sync")
    ([42, [1]],)
    """

    def __init__(self, graph: HighLevelGraph | Mapping[Key, GraphNode], keys: Any) -> None:
        expr = PackedGraphExpr.from_graph(graph, keys)
        header = {**expr.operands[1], "structure": keys}
        self.expr = FinalizedPackedGraphExpr(expr.operands[0], header)  # type: ignore[no-untyped-call]

    def __dask_graph__(self) -> dict[Key, Any]:
        return self.expr.__dask_graph__()

    def __dask_keys__(self) -> list[Key]:
        return self.expr.__dask_keys__()

    def __dask_tokenize__(self) -> str:
        return self.expr.__dask_tokenize__()

    def __dask_postcompute__(self) -> tuple[Any, tuple[()]]:
        return _first, ()

    def __dask_postpersist__(self) -> Any:
        raise NotImplementedError("hlg graphs are computed, not persisted, through dask")

    @staticmethod
    def __dask_optimize__(dsk: Any, keys: Any, **kwargs: Any) -> Any:
        return dsk

    __dask_scheduler__ = staticmethod(dask.threaded.get)

    def __repr__(self) -> str:
        return f"<hlg DaskCollection {self.expr.token}>"


def _first(results: Any) -> Any:
    return results[0]


# -- the client side -------------------------------------------------------------------------


def _probe_scheduler(client: Any) -> str | None:
    """The hlg version installed on the client's scheduler, or None if it has none."""
    try:
        version: str = client.run_on_scheduler(pkgutil.resolve_name, "hlg:__version__")
    except ImportError:
        return None
    return version


_SCHEDULER_HAS_HLG: dict[str, str] = {}


def _check_scheduler(client: Any) -> None:
    address = client.scheduler.address
    if address in _SCHEDULER_HAS_HLG:
        return
    version = _probe_scheduler(client)
    if version is None:
        raise RuntimeError(
            f"the dask scheduler at {address} does not have hlg installed: hlg graphs are "
            "expanded on the scheduler, so install hlg there (pip install 'hlg[distributed]')"
        )
    _SCHEDULER_HAS_HLG[address] = version


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
    """Run ``graph`` on the dask cluster of ``client``; return ``keys``' values, same nesting.

    ``graph`` is a HighLevelGraph, a mapping of graph nodes or a collection
    (``__hlg_graph__``); ``keys`` a key or nested lists/tuples of keys. The graph is packed
    on the client and expanded on the dask scheduler, which needs hlg but never the user's
    modules. The keyword arguments apply to every task (as in
    ``Client.get``); layer annotations take precedence.
    """
    if isinstance(graph, PackedGraph):
        raise TypeError(
            "hlg.compute_on: a PackedGraph is a graph already unpacked on a scheduler; pass "
            "the HighLevelGraph or mapping it was packed from"
        )
    if isinstance(graph, HLGCollection) and not isinstance(graph, Mapping):
        graph = graph.__hlg_graph__()
    _check_scheduler(client)
    expr = PackedGraphExpr.from_graph(graph, keys)
    token = expr.token
    scheduled: list[Key] = expr.__dask_keys__()
    results = client.get(
        expr,
        scheduled,
        retries=retries,
        priority=priority,
        resources=resources,
        workers=workers,
        allow_other_workers=allow_other_workers,
    )
    by_name = dict(zip(scheduled, results, strict=True))
    wanted: list[Key] = []
    _flatten(keys, wanted)
    values = {k: by_name[namespaced(k, token)] for k in wanted}
    return rebuild_keys(keys, values)
