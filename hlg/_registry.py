"""The layer-kind registry: kinds by name (built-ins, entry points) and the materialized kind.

A kind packs a layer type on the client and rebuilds it on a scheduler from msgpack
state alone. Kinds are found by name in this process's registry, filled by
:func:`register_layer_kind` and, on first need, by the entry point group ``hlg.layers``
of installed packages; a module path sent by a client is never imported.
"""

from __future__ import annotations

import importlib.metadata
import inspect
import threading
import warnings
from collections.abc import Iterable, Sequence
from typing import Any, Protocol

from hlg._blobs import BlobRef, Blobs, PackContext
from hlg._get import CycleError, postorder
from hlg._graph import HighLevelGraph
from hlg._keys import Key, key_prefix
from hlg._layer import Layer, MaterializedLayer
from hlg._packed import PackedTask
from hlg._shadow import describe_shadowing
from hlg._task import Alias, DataNode, GraphNode, Task, _scan
from hlg._wire import (
    LayerRecord,
    Limits,
    PackError,
    decode_key,
    decode_keys,
    decode_state,
    encode_key,
)

__all__ = [
    "RUNSPEC_VERSION",
    "BlobTemplate",
    "KindWarning",
    "LayerKind",
    "MaterializedKind",
    "UnpackContext",
    "kind_for",
    "kind_load_error",
    "layer_kind",
    "register_layer_kind",
    "template_runspec",
    "verify_layer",
]

#: The version of the runspec contract: ``("bwg", template_blob, fills)``, where a worker
#: calls ``blobs.load_code(template_blob).fill(key, fills)`` after replacing every
#: :class:`hlg.BlobRef` in ``fills`` (also inside lists) by its unpickled value.
RUNSPEC_VERSION = 1


def template_runspec(template: int, fills: Sequence[Any]) -> tuple[Any, ...]:
    """The runspec (version 1) of a task built by template blob ``template`` from ``fills``.

    On a worker, the template (any picklable object with ``fill(key, fills) -> node``,
    such as :class:`hlg.ArgSpec`) is unpickled once per computation; ``fills`` hold
    plain data, :class:`hlg.TaskRef` s (also in nested lists) and :class:`hlg.BlobRef` s.

    >>> from hlg import TaskRef
    >>> template_runspec(0, [TaskRef("x"), BlobRef(1)])
    ('bwg', 0, (TaskRef('x'), BlobRef(1)))
    """
    return ("bwg", template, tuple(fills))


class UnpackContext:
    """Scheduler side: what a kind needs to rebuild a layer from its state.

    ``limits`` (:class:`hlg.Limits`) bounds what a state may declare; ``blobs`` are the
    message's payloads (bytes, never unpickled here); :meth:`template`, :meth:`task`
    and :meth:`blob` build the scheduler-side tasks (see :mod:`hlg.kinds`); ``budget``
    is the work (keys visited) that checks which cannot be done symbolically may still
    spend; :meth:`spend` refuses past it, so unpack stays O(message).

    >>> ctx = UnpackContext(2, Limits(), Blobs([b"", b""]))
    >>> ctx.key(["x", 1], "here"), ctx.blob_index(1, "here")
    (('x', 1), 1)
    >>> ctx.blob_index(5, "layer 'y'")
    Traceback (most recent call last):
    ...
    hlg._wire.PackError: layer 'y': blob reference 5 out of range (0..2)
    """

    def __init__(self, nblobs: int, limits: Limits, blobs: Blobs, budget: int = 2**16) -> None:
        self.nblobs = nblobs
        self.limits = limits
        self.blobs = blobs
        self.budget = budget

    def blob_index(self, index: Any, where: str) -> int:
        """Check a blob reference."""
        if type(index) is not int or not 0 <= index < self.nblobs:
            raise PackError(f"{where}: blob reference {index!r} out of range (0..{self.nblobs})")
        return index

    def key(self, obj: Any, where: str) -> Key:
        """Decode one key."""
        return decode_key(obj, self.limits, where)

    def keys(self, objs: Any, where: str) -> list[Key]:
        """Decode a list of keys."""
        return decode_keys(objs, self.limits, where)

    def blob(self, index: Any, where: str) -> BlobRef:
        """A checked reference to blob ``index``, to put in a task's fills (a worker
        replaces it by the unpickled value)."""
        return BlobRef(self.blob_index(index, where))

    def template(self, index: Any, where: str = "template") -> BlobTemplate:
        """The template stored in blob ``index`` (checked), as a scheduler-side stand-in
        whose ``fill(key, fills)`` builds :class:`hlg.PackedTask` objects."""
        return BlobTemplate(self.blob_index(index, where), self.blobs)

    def task(
        self,
        key: Key,
        template: int | BlobTemplate,
        fills: Sequence[Any],
        dependencies: Iterable[Key] | None = None,
    ) -> PackedTask:
        """The packed task of ``key``, built on a worker by ``template.fill(key, fills)``.

        Its dependencies are the :class:`hlg.TaskRef` s inside ``fills`` unless given;
        a worker checks that the task it builds reads exactly those.

        >>> from hlg import TaskRef
        >>> ctx = UnpackContext(1, Limits(), Blobs([b""]))
        >>> ctx.task(("y", 0), 0, [[TaskRef(("x", 0)), TaskRef(("x", 1))]]).dependency_tuple
        (('x', 0), ('x', 1))
        """
        blob = template.blob if isinstance(template, BlobTemplate) else template
        return _packed_task(key, blob, fills, dependencies, self.blobs)

    def spend(self, work: int, where: str) -> None:
        """Take ``work`` key visits from the budget, or raise :class:`PackError`."""
        if work > self.budget:
            raise PackError(
                f"{where}: checking it would visit {work:,} keys one by one, more than this "
                f"message may cause ({self.budget:,} left); its kind must check symbolically"
            )
        self.budget -= work


def _packed_task(
    key: Key, blob: int, fills: Sequence[Any], dependencies: Iterable[Key] | None, blobs: Blobs
) -> PackedTask:
    if dependencies is None:
        found: list[Key] = []
        for fill in fills:
            _scan(fill, found)
        dependencies = found
    return PackedTask(key, dependencies, template_runspec(blob, fills), blobs)


class BlobTemplate:
    """A template known by its blob on the scheduler: ``fill`` builds a PackedTask.

    Made by :meth:`UnpackContext.template`; it stands where the client's layer holds its
    template object, so the same layer class builds packed tasks on a scheduler.

    >>> from hlg import TaskRef
    >>> ctx = UnpackContext(1, Limits(), Blobs([b""]))
    >>> ctx.template(0).fill(("y", 0), [TaskRef(("x", 0))])
    PackedTask(('y', 0), deps=[('x', 0)], runspec='bwg')
    """

    __slots__ = ("blob", "blobs")

    def __init__(self, blob: int, blobs: Blobs) -> None:
        self.blob = blob
        self.blobs = blobs

    def fill(self, key: Key, fills: Sequence[Any]) -> PackedTask:
        """The packed task of ``key``; its dependencies are the ``TaskRef`` s in ``fills``."""
        return _packed_task(key, self.blob, fills, None, self.blobs)

    def __reduce__(self) -> tuple[Any, ...]:
        return (BlobTemplate, (self.blob, self.blobs))

    def __eq__(self, other: object) -> bool:
        return type(other) is BlobTemplate and other.blob == self.blob

    def __hash__(self) -> int:
        return hash((BlobTemplate, self.blob))

    def __repr__(self) -> str:
        return f"BlobTemplate({self.blob})"


class LayerKind(Protocol):
    """A layer kind: how to pack a layer type and rebuild it on a scheduler.

    Subclass :class:`hlg.kinds.Kind` to write one (typed state, symbolic checks). The
    protocol itself: ``pack`` returns msgpack-able state (keys through
    :func:`hlg.kinds.encode_key`, user objects through ``ctx.add``); ``unpack`` rebuilds
    a layer whose items are :class:`PackedTask` objects, from the state alone, never
    unpickling. An optional ``verify(layer, graph, where, ctx)`` checks the keys the
    layer reads; without it every key's dependencies are checked one by one, within
    ``ctx.spend``.

    >>> import hlg
    >>> kind = hlg.layer_kind("materialized")
    >>> kind.name, kind.version, kind.handles(hlg.MaterializedLayer({}, name="m"))
    ('materialized', 1, True)
    """

    name: str
    version: int

    def handles(self, layer: Layer) -> bool: ...

    def pack(self, layer: Layer, ctx: PackContext) -> Any: ...

    def unpack(self, record: LayerRecord, ctx: UnpackContext) -> Layer: ...


_KINDS: dict[str, LayerKind] = {}
_ORIGINS: dict[str, str] = {}  # kind name -> the distribution (or module) that registered it
_LOAD_ERRORS: dict[str, str] = {}  # kind name -> why its entry point could not be loaded
_ENTRY_POINTS_LOADED = threading.Event()
_ENTRY_POINTS_LOCK = threading.Lock()


class KindWarning(UserWarning):
    """A layer kind problem that does not stop hlg: an unregistered layer type packed one
    task at a time, a kind name two distributions declare, an entry point that fails.

    Emitted through :mod:`warnings`, so the usual filters apply
    (``warnings.simplefilter("always", hlg.KindWarning)`` shows every occurrence).

    >>> issubclass(KindWarning, UserWarning)
    True
    """


def _origin_of(kind: object) -> str:
    """The distribution that provides ``kind``'s class, else its module."""
    module = type(kind).__module__
    top = module.split(".")[0]
    dists = _packages_distributions().get(top)
    return f"distribution {dists[0]!r}" if dists else f"module {module!r}"


_DISTRIBUTIONS: dict[str, list[str]] = {}


def _packages_distributions() -> dict[str, list[str]]:
    if not _DISTRIBUTIONS:
        _DISTRIBUTIONS.update(importlib.metadata.packages_distributions())
        _DISTRIBUTIONS.setdefault("", [])  # computed once, even when empty
    return _DISTRIBUTIONS


def register_layer_kind(kind: LayerKind) -> LayerKind:
    """Register a layer kind under ``kind.name`` in this process (replacing one of that
    name).

    Installed packages declare kinds in the entry point group ``hlg.layers`` instead, so
    that a scheduler finds them without being told.

    >>> kind = layer_kind("materialized")
    >>> register_layer_kind(kind) is kind
    True
    """
    _KINDS[kind.name] = kind
    _ORIGINS[kind.name] = _origin_of(kind)
    _LOAD_ERRORS.pop(kind.name, None)
    return kind


def _load_entry_points() -> None:
    """Load the entry points once; other threads wait until they are all registered."""
    if _ENTRY_POINTS_LOADED.is_set():
        return
    with _ENTRY_POINTS_LOCK:
        if _ENTRY_POINTS_LOADED.is_set():
            return
        entries = importlib.metadata.entry_points(group="hlg.layers")
        # hlg's own kinds first: another distribution cannot take a built-in name
        for entry in sorted(entries, key=lambda e: e.dist is None or e.dist.name != "hlg"):
            dist = entry.dist.name if entry.dist is not None else None
            origin = f"distribution {dist!r}" if dist else f"entry point {entry.value!r}"
            if entry.name in _KINDS:
                if _ORIGINS.get(entry.name) != origin and not _declares(entry, entry.name):
                    warnings.warn(
                        f"hlg: {origin} declares layer kind {entry.name!r} ({entry.value}), "
                        f"which {_ORIGINS.get(entry.name, 'another package')} already "
                        f"registers; the kind of {_ORIGINS.get(entry.name)} is kept. "
                        "Rename one of them: a kind name must be unique",
                        KindWarning,
                        stacklevel=3,
                    )
                continue
            try:
                kind = entry.load()
            except Exception as err:  # a broken plugin must not break every other kind
                reason = f"{type(err).__name__}: {err}"
                shadow = describe_shadowing()
                if shadow is not None:
                    reason += f" ({shadow})"
                _LOAD_ERRORS[entry.name] = f"{origin} fails to load it: {reason}"
                warnings.warn(
                    f"hlg: cannot load layer kind {entry.name!r} of {origin}: {reason}",
                    KindWarning,
                    stacklevel=3,
                )
                continue
            if entry.name in _KINDS:  # loading registered it (a package's own import)
                continue
            _KINDS[entry.name] = kind
            _ORIGINS[entry.name] = origin
        _ENTRY_POINTS_LOADED.set()  # only now: others waited on the lock until here


def _declares(entry: importlib.metadata.EntryPoint, name: str) -> bool:
    """Whether ``entry`` names the very kind registered as ``name`` (then it is no clash)."""
    try:
        return entry.load() is _KINDS[name]
    except Exception:
        return False


def kind_load_error(name: str) -> str | None:
    """Why the entry point declaring kind ``name`` could not be loaded, or None.

    >>> kind_load_error("blockwise") is None
    True
    """
    _load_entry_points()
    return _LOAD_ERRORS.get(name)


def layer_kind(name: str) -> LayerKind | None:
    """The registered kind called ``name`` (built-ins and entry points), or None.

    >>> layer_kind("blockwise").name, layer_kind("no-such-kind")
    ('blockwise', None)
    """
    kind = _KINDS.get(name)
    if kind is None:
        _load_entry_points()
        kind = _KINDS.get(name)
    return kind


def kind_for(layer: Layer) -> LayerKind | None:
    """The registered kind that packs ``layer``, or None."""
    kind = layer_kind(layer.kind)
    if kind is not None and kind.handles(layer):
        return kind
    return None


class MaterializedKind:
    """Explicit dicts of nodes: dependencies in msgpack, each task's payload in blobs."""

    name = "materialized"
    version = 1

    def handles(self, layer: Layer) -> bool:
        return type(layer) is MaterializedLayer

    def pack(self, layer: Layer, ctx: PackContext) -> Any:
        return [_pack_node(key, layer[key], ctx) for key in layer]

    def unpack(self, record: LayerRecord, ctx: UnpackContext) -> Layer:
        where = f"layer {record.name!r}"
        rows = decode_state(record.state, list[tuple[Any, list[Any], str, Any, Any]], record.name)
        limits = ctx.limits
        if len(rows) > limits.max_tasks:
            raise PackError(f"{where}: {len(rows)} tasks exceed the limit")
        tasks: dict[Key, GraphNode] = {}
        for raw_key, raw_deps, kind, a, b in rows:
            key = ctx.key(raw_key, where)
            if len(raw_deps) > limits.max_fan_in:
                raise PackError(
                    f"{where}: key {key!r} reads {len(raw_deps)} keys, beyond the fan-in "
                    f"limit of {limits.max_fan_in}"
                )
            deps = ctx.keys(raw_deps, f"{where}, key {key!r}")
            if kind == "t":
                runspec: tuple[Any, ...] = ("t", ctx.blob_index(a, where), ctx.blob_index(b, where))
            elif kind in ("d", "n"):
                runspec = (kind, ctx.blob_index(a, where))
            elif kind == "a":
                target = ctx.key(a, where)
                if deps != [target]:
                    raise PackError(f"{where}: alias {key!r} must depend on {target!r} alone")
                runspec = ("a", target)
            else:
                raise PackError(f"{where}: unknown task kind {kind!r} for key {key!r}")
            if key in tasks:
                raise PackError(f"{where}: key {key!r} appears twice")
            tasks[key] = PackedTask(key, deps, runspec, ctx.blobs)
        return MaterializedLayer(tasks, record.name)

    def edges(self, layer: Layer) -> int:
        """Dependency edges of the layer (explicit: the rows are in the message)."""
        return sum(len(layer.dependency_tuple(k)) for k in layer)

    def verify(self, layer: Layer, graph: HighLevelGraph, where: str, ctx: UnpackContext) -> None:
        """Every read is of a declared dependency layer or of the layer itself, and the
        layer's own keys read each other without a cycle (the rows are the message)."""
        _verify_per_key(layer, graph, where, ctx)


def _pack_node(key: Key, node: GraphNode, ctx: PackContext) -> list[Any]:
    deps = [encode_key(d) for d in node.dependency_tuple]
    if type(node) is Task:
        return [
            encode_key(key),
            deps,
            "t",
            ctx.add(node.func),
            ctx.add((node.args, node.kwargs or {})),
        ]
    if type(node) is DataNode:
        return [encode_key(key), deps, "d", ctx.add(node.value), None]
    if type(node) is Alias:
        return [encode_key(key), deps, "a", encode_key(node.target), None]
    return [encode_key(key), deps, "n", ctx.add(node), None]


register_layer_kind(MaterializedKind())


def owner_name(graph: HighLevelGraph, layer: Layer, key: Key) -> str | None:
    """The name of the layer serving ``key`` for a reader in ``layer``: the layer itself or
    one of its declared dependencies that holds it; None if there is none."""
    if key in layer:
        return layer.name
    allowed = graph.dependencies[layer.name]
    for name in graph._prefix_index().get(key_prefix(key), ()):  # layers of that prefix only
        if name in allowed and key in graph.layers[name]:
            return name
    return None


def _verify_per_key(layer: Layer, graph: HighLevelGraph, where: str, ctx: UnpackContext) -> None:
    reads_itself = False
    for key in layer:
        deps = layer.dependency_tuple(key)
        ctx.spend(len(deps) + 1, where)
        for dep in deps:
            owner = owner_name(graph, layer, dep)
            if owner is None:
                if dep in graph:
                    raise PackError(
                        f"{where}: key {key!r} reads {dep!r}, whose layer is not a declared "
                        "dependency"
                    )
                raise PackError(f"{where}: key {key!r} reads {dep!r}, which no layer produces")
            reads_itself = reads_itself or owner == layer.name
    if reads_itself:
        try:
            postorder(layer, lambda k: [d for d in layer.dependency_tuple(k) if d in layer])
        except CycleError as err:
            raise PackError(f"{where}: {err}") from None


def _takes_context(verify: Any) -> bool:
    try:
        return len(inspect.signature(verify).parameters) >= 4
    except (TypeError, ValueError):
        return False


def verify_layer(kind: LayerKind, layer: Layer, graph: HighLevelGraph, ctx: UnpackContext) -> None:
    """Check every key a layer reads exists in its declared dependencies: symbolically when
    the kind can, else key by key within the work budget."""
    where = f"layer {layer.name!r}"
    verify = getattr(kind, "verify", None)
    if verify is None:
        _verify_per_key(layer, graph, where, ctx)
    elif _takes_context(verify):
        verify(layer, graph, where, ctx)
    else:
        verify(layer, graph, where)
