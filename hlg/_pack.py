"""Packing: graphs become bytes on the client and PackedTasks on the scheduler.

``pack`` writes each layer's symbolic state as msgpack and every user object (functions,
constant arguments, per-partition inputs) as a cloudpickle *blob*, stored once by content.
``unpack`` rebuilds the layers from the msgpack state alone — blobs stay bytes — so a
scheduler learns keys, dependencies and sizes without importing or running user code.
Only :meth:`PackedTask.unpack`, on a worker, unpickles blobs (once per blob and process).
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import sys
import threading
import warnings
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any, Protocol, final

import cloudpickle

from hlg._annotations import Annotations
from hlg._get import _flatten
from hlg._graph import HighLevelGraph
from hlg._keys import Key, iskey
from hlg._layer import Layer, MaterializedLayer, single_layer_graph_name
from hlg._task import Alias, DataNode, GraphNode, Task, TaskRef
from hlg._wire import (
    Envelope,
    LayerRecord,
    Limits,
    PackError,
    decode,
    decode_key,
    decode_keys,
    decode_state,
    encode,
    encode_key,
    encode_state,
)

__all__ = [
    "BlobRef",
    "Blobs",
    "LayerKind",
    "PackContext",
    "PackedGraph",
    "PackedTask",
    "UnpackContext",
    "layer_kind",
    "pack",
    "register_layer_kind",
    "unpack",
]

_HLG_VERSION = "0.1.0"


def _blob_id(data: bytes) -> bytes:
    return hashlib.blake2b(data, digest_size=16).digest()


@final
class BlobRef:
    """A placeholder for blob number ``index`` inside a runspec (a value to unpickle).

    >>> BlobRef(3)
    BlobRef(3)
    """

    __slots__ = ("index",)
    index: int

    def __init__(self, index: int) -> None:
        self.index = index

    def __eq__(self, other: object) -> bool:
        return type(other) is BlobRef and other.index == self.index

    def __hash__(self) -> int:
        return hash((BlobRef, self.index))

    def __repr__(self) -> str:
        return f"BlobRef({self.index})"

    def __reduce__(self) -> tuple[Any, ...]:
        return (BlobRef, (self.index,))


# Worker side: unpickled *code* (functions, templates) by content id, shared by every
# graph in this process. Data blobs are cached per graph (per Blobs object) instead: a
# task that mutates its input must not change what another computation reads.
_LOADED: dict[bytes, Any] = {}
_LOADED_LOCK = threading.Lock()
_LOADED_MAX = 4096
_FILLERS: dict[tuple[bytes, int], Any] = {}


@final
class Blobs:
    """The payload blobs of one packed graph with their content ids.

    ``load(i)`` unpickles blob ``i`` — the only unpickling in hlg's packed path — once
    per graph; ``load_code(i)`` (functions, templates) once per process for the same
    content.

    >>> import pickle
    >>> blobs = Blobs([pickle.dumps({"a": 1})])
    >>> len(blobs), blobs.load(0)
    (1, {'a': 1})
    >>> blobs.load(0) is blobs.load(0)
    True
    """

    __slots__ = ("_cache", "data", "ids")

    def __init__(self, data: Sequence[bytes], ids: Sequence[bytes] | None = None) -> None:
        self.data = list(data)
        self.ids = [_blob_id(d) for d in self.data] if ids is None else list(ids)
        self._cache: dict[int, Any] = {}

    def __len__(self) -> int:
        return len(self.data)

    def load(self, index: int) -> Any:
        """Unpickle data blob ``index`` (cached for this graph)."""
        try:
            return self._cache[index]
        except KeyError:
            pass
        value = self._cache[index] = cloudpickle.loads(self.data[index])
        return value

    def load_code(self, index: int) -> Any:
        """Unpickle a function or template blob (cached for the process by content id)."""
        blob_id = self.ids[index]
        try:
            return _LOADED[blob_id]
        except KeyError:
            pass
        value = cloudpickle.loads(self.data[index])
        with _LOADED_LOCK:
            if len(_LOADED) >= _LOADED_MAX:
                _LOADED.pop(next(iter(_LOADED)))
            _LOADED[blob_id] = value
        return value

    def filler(self, index: int, refmask: int) -> Any:
        """The template of blob ``index``'s ``keys_filler(refmask)``, built once."""
        cache_key = (self.ids[index], refmask)
        found = _FILLERS.get(cache_key)
        if found is None:
            found = self.load_code(index).keys_filler(refmask)
            with _LOADED_LOCK:
                if len(_FILLERS) >= _LOADED_MAX:
                    _FILLERS.pop(next(iter(_FILLERS)))
                _FILLERS[cache_key] = found
        return found

    def nbytes(self) -> int:
        """Total size of the blobs."""
        return sum(len(d) for d in self.data)

    def __reduce__(self) -> tuple[Any, ...]:
        return (Blobs, (self.data, self.ids))


def _load_values(obj: Any, blobs: Blobs) -> Any:
    """Replace every ``BlobRef`` inside runspec fills by its unpickled value."""
    typ = type(obj)
    if typ is BlobRef:
        return blobs.load(obj.index)
    if typ is list:
        return [_load_values(x, blobs) for x in obj]
    return obj


@final
class PackedTask(GraphNode):
    """A task as the scheduler sees it: key, dependencies and an opaque runspec.

    It cannot run: a worker calls :meth:`unpack` to get the :class:`Task`.

    >>> import hlg
    >>> from operator import add
    >>> packed = hlg.Task("y", add, hlg.TaskRef("x"), 1).pack()
    >>> packed.key, packed.dependencies
    ('y', frozenset({'x'}))
    >>> packed.unpack()({"x": 41})
    42
    """

    __slots__ = ("_deps", "blobs", "key", "runspec")
    key: Key
    _deps: tuple[Key, ...]
    runspec: tuple[Any, ...]
    blobs: Blobs | None

    def __init__(
        self,
        key: Key,
        dependencies: Iterable[Key],
        runspec: tuple[Any, ...],
        blobs: Blobs | None = None,
    ) -> None:
        deps = tuple(dependencies)
        self.key = key
        self._deps = deps if len(deps) < 2 else tuple(dict.fromkeys(deps))
        self.runspec = runspec
        self.blobs = blobs

    @property
    def dependencies(self) -> frozenset[Key]:
        """The keys the task reads."""
        return frozenset(self._deps)

    @property
    def dependency_tuple(self) -> tuple[Key, ...]:
        """The keys the task reads, in order."""
        return self._deps

    def __call__(self, values: Mapping[Key, Any], /) -> Any:
        raise TypeError(
            f"PackedTask {self.key!r} cannot run as it is: call .unpack() on a worker first"
        )

    def unpack(self, blobs: Blobs | None = None) -> GraphNode:
        """Build the runnable node, unpickling its blobs (worker side only)."""
        source = blobs if blobs is not None else self.blobs
        if source is None:
            raise ValueError(f"PackedTask {self.key!r}: no blobs to unpack from")
        kind = self.runspec[0]
        if kind == "bw":  # blockwise, references given as keys in ``refmask`` holes
            _, template, fills, refmask = self.runspec
            node: GraphNode = source.filler(template, refmask)(
                self.key, [_load_values(f, source) for f in fills]
            )
            return node
        if kind == "bwg":  # blockwise, fills hold TaskRefs and nested lists
            _, template, fills = self.runspec
            spec = source.load_code(template)
            filled: GraphNode = spec.fill(self.key, [_load_values(f, source) for f in fills])
            return filled
        if kind == "t":
            _, func, args = self.runspec
            positional, keywords = source.load(args)
            return Task(self.key, source.load_code(func), *positional, **keywords)
        if kind == "d":  # a literal stays a literal: never searched for references
            return DataNode(self.key, source.load(self.runspec[1]))
        if kind == "a":
            return Alias(self.key, self.runspec[1])
        if kind == "n":
            node = source.load(self.runspec[1])
            if isinstance(node, Task):
                return node
            return Task(self.key, _NodeCall(node), {d: TaskRef(d) for d in self._deps})
        raise ValueError(f"PackedTask {self.key!r}: unknown runspec kind {kind!r}")

    def substitute(self, subs: Mapping[Key, Key], key: Key | None = None) -> PackedTask:
        """Packed tasks are not rewritten: only a new key is supported."""
        if subs and any(d in subs for d in self._deps):
            raise ValueError("PackedTask dependencies cannot be renamed")
        return PackedTask(self.key if key is None else key, self._deps, self.runspec, self.blobs)

    def __eq__(self, other: object) -> bool:
        if type(other) is not PackedTask:
            return NotImplemented
        return self.key == other.key and self._deps == other._deps and self.runspec == other.runspec

    def __hash__(self) -> int:
        return hash((PackedTask, self.key))

    def __repr__(self) -> str:
        return f"PackedTask({self.key!r}, deps={list(self._deps)!r}, runspec={self.runspec[0]!r})"

    def __reduce__(self) -> tuple[Any, ...]:
        return (PackedTask, (self.key, self._deps, self.runspec, self.blobs))


def _identity(value: Any) -> Any:
    return value


@final
class _NodeCall:
    """Runs a graph node of a type hlg does not know, given its dependencies' values.

    The node is held as the task's function so that the task does not mistake it for
    an inline argument.
    """

    __slots__ = ("node",)

    def __init__(self, node: GraphNode) -> None:
        self.node = node

    def __call__(self, values: Mapping[Key, Any]) -> Any:
        return self.node(values)

    @property
    def __name__(self) -> str:
        return type(self.node).__name__

    def __reduce__(self) -> tuple[Any, ...]:
        return (_NodeCall, (self.node,))


# -- the kind registry ---------------------------------------------------------------------


class PackContext:
    """Client side: stores blobs by content and keeps one blob per function per pack.

    >>> ctx = PackContext()
    >>> ctx.add(len) == ctx.add(len), ctx.add_bytes(b"x") == ctx.add_bytes(b"x")
    (True, True)
    >>> len(ctx.blobs)
    2
    """

    def __init__(self) -> None:
        self.blobs: list[bytes] = []
        self._index: dict[bytes, int] = {}
        self._by_object: dict[int, tuple[Any, int]] = {}

    def add_bytes(self, data: bytes) -> int:
        """Store ``data`` once; return its index."""
        index = self._index.get(data)
        if index is None:
            index = len(self.blobs)
            self._index[data] = index
            self.blobs.append(data)
        return index

    def add(self, obj: Any) -> int:
        """Pickle ``obj`` (once per object per pack) and store it; return its index."""
        cached = self._by_object.get(id(obj))
        if cached is not None and cached[0] is obj:
            return cached[1]
        index = self.add_bytes(cloudpickle.dumps(obj, protocol=5))
        self._by_object[id(obj)] = (obj, index)
        return index


class UnpackContext:
    """Scheduler side: what a kind needs to rebuild a layer from its state.

    >>> ctx = UnpackContext(2, Limits(), Blobs([b"", b""]))
    >>> ctx.key(["x", 1], "here"), ctx.blob_index(1, "here")
    (('x', 1), 1)
    >>> ctx.blob_index(5, "layer 'y'")
    Traceback (most recent call last):
    ...
    hlg._wire.PackError: layer 'y': blob reference 5 out of range (0..2)
    """

    def __init__(self, nblobs: int, limits: Limits, blobs: Blobs) -> None:
        self.nblobs = nblobs
        self.limits = limits
        self.blobs = blobs

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


class LayerKind(Protocol):
    """A layer kind: how to pack a layer type and rebuild it on a scheduler.

    ``pack`` returns msgpack-able state (keys through :func:`hlg._wire.encode_key`, user
    objects through ``ctx.add``); ``unpack`` rebuilds a layer whose items are
    :class:`PackedTask` objects, from the state alone, never unpickling. An optional
    ``verify(layer, graph, where)`` checks the keys the layer reads without building
    tasks; without it every key's dependencies are checked.

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
_ENTRY_POINTS_LOADED = False
_WARNED: set[type] = set()


def register_layer_kind(kind: LayerKind) -> LayerKind:
    """Register a layer kind under ``kind.name`` in this process.

    Installed packages declare kinds in the entry point group ``hlg.layers`` instead, so
    that a scheduler finds them without being told.

    >>> kind = layer_kind("materialized")
    >>> register_layer_kind(kind) is kind
    True
    """
    _KINDS[kind.name] = kind
    return kind


def _load_entry_points() -> None:
    global _ENTRY_POINTS_LOADED
    if _ENTRY_POINTS_LOADED:
        return
    _ENTRY_POINTS_LOADED = True
    for entry in importlib.metadata.entry_points(group="hlg.layers"):
        if entry.name in _KINDS:
            continue
        try:
            kind = entry.load()
        except Exception as err:  # a broken plugin must not break every other kind
            warnings.warn(f"hlg: cannot load layer kind {entry.name!r}: {err}", stacklevel=2)
            continue
        _KINDS.setdefault(entry.name, kind)


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
        if len(rows) > ctx.limits.max_tasks:
            raise PackError(f"{where}: {len(rows)} tasks exceed the limit")
        tasks: dict[Key, GraphNode] = {}
        for raw_key, raw_deps, kind, a, b in rows:
            key = ctx.key(raw_key, where)
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


def _kind_for(layer: Layer) -> LayerKind | None:
    kind = layer_kind(layer.kind)
    if kind is not None and kind.handles(layer):
        return kind
    return None


# -- pack and unpack ------------------------------------------------------------------------


def pack(graph: HighLevelGraph | Mapping[Key, GraphNode], keys: Any = None) -> bytes:
    """Pack ``graph`` for a scheduler: msgpack layer state plus payload blobs.

    ``keys`` (a key or nested list; default: all keys of the output layers) are the
    outputs; the graph is culled to them first. Outputs that make up a whole layer are
    recorded by the layer's name.

    >>> import hlg
    >>> from operator import add
    >>> g = {"x": hlg.DataNode("x", 1), "y": hlg.Task("y", add, hlg.TaskRef("x"), 1)}
    >>> packed = hlg.unpack(hlg.pack(g, "y"))
    >>> sorted(packed), packed.output_keys, packed.dependencies("y")
    (['x', 'y'], ['y'], frozenset({'x'}))
    """
    if not isinstance(graph, HighLevelGraph):
        single = MaterializedLayer(graph, single_layer_graph_name(graph))
        graph = HighLevelGraph({single.name: single}, {single.name: ()})
    if keys is not None:
        wanted: list[Key] = []
        _flatten(keys, wanted)
        graph = graph.cull(wanted)
        outputs = _outputs(graph, wanted)
    else:
        outputs = [("layer", name) for name in graph.output_layers()]
    ctx = PackContext()
    records = []
    for name in graph.topological_layers():
        layer = graph.layers[name]
        kind = _kind_for(layer)
        if kind is None:
            source: Layer = getattr(layer, "parent", layer)  # a culled view: its parent's type
            origin = type(source)
            if origin not in _WARNED:
                _WARNED.add(origin)
                warnings.warn(
                    f"hlg.pack: layer type {origin.__name__} (kind {source.kind!r}) is not a "
                    "registered layer kind; its tasks are materialized and packed one by one",
                    stacklevel=2,
                )
            layer = MaterializedLayer(layer.materialize(), name)
            kind = layer_kind("materialized")
            assert kind is not None
        annotations = dict(graph.layers[name].annotations)
        try:
            state = encode_state(kind.pack(layer, ctx))
            encode_state(annotations)  # fail here, naming the layer, not in the envelope
        except Exception as err:  # unpicklable payloads, integers beyond 64 bits, ...
            raise ValueError(
                f"hlg.pack: cannot pack layer {name!r} (kind {kind.name!r}): "
                f"{type(err).__name__}: {err}"
            ) from err
        records.append(
            LayerRecord(
                name=name,
                kind=kind.name,
                kind_version=kind.version,
                deps=sorted(graph.dependencies[name]),
                annotations=annotations,
                state=state,
            )
        )
    envelope = Envelope(
        hlg_version=_HLG_VERSION,
        python_version=".".join(map(str, sys.version_info[:3])),
        cloudpickle_version=cloudpickle.__version__,
        layers=records,
        outputs=outputs,
        blobs=ctx.blobs,
        blob_ids=[_blob_id(b) for b in ctx.blobs],
    )
    return encode(envelope)


def _outputs(graph: HighLevelGraph, wanted: list[Key]) -> list[tuple[str, Any]]:
    by_layer: dict[str, list[Key]] = {}
    for key in wanted:
        by_layer.setdefault(graph.layer_of(key).name, []).append(key)
    out: list[tuple[str, Any]] = []
    for name, keys in by_layer.items():
        if len(set(keys)) == len(graph.layers[name]):
            out.append(("layer", name))
        else:
            out.extend(("key", encode_key(k)) for k in dict.fromkeys(keys))
    return out


def unpack(data: bytes | bytearray | memoryview, limits: Limits | None = None) -> PackedGraph:
    """Rebuild a packed graph on a scheduler, from msgpack state only (no unpickling).

    Any malformed input raises :class:`hlg.PackError` naming the problem.

    >>> import hlg
    >>> packed = hlg.unpack(hlg.pack({"x": hlg.DataNode("x", 1)}))
    >>> list(packed), packed["x"]
    (['x'], PackedTask('x', deps=[], runspec='d'))
    >>> hlg.unpack(b"not a graph")
    Traceback (most recent call last):
    ...
    hlg._wire.PackError: not a packed hlg graph: ...
    """
    try:
        return _unpack(data, limits or Limits())
    except PackError:
        raise
    except RecursionError:
        raise PackError("malformed packed graph: nested too deeply") from None
    except Exception as err:  # the boundary: whatever a malformed input trips, say so
        raise PackError(f"malformed packed graph: {type(err).__name__}: {err}") from None


def _unpack(data: bytes | bytearray | memoryview, limits: Limits) -> PackedGraph:
    envelope = decode(data)
    if len(envelope.layers) > limits.max_layers:
        raise PackError(f"{len(envelope.layers)} layers exceed the limit of {limits.max_layers}")
    if len(envelope.blob_ids) != len(envelope.blobs):
        raise PackError(f"{len(envelope.blobs)} blobs but {len(envelope.blob_ids)} blob ids")
    for i, (blob, blob_id) in enumerate(zip(envelope.blobs, envelope.blob_ids, strict=True)):
        if _blob_id(blob) != blob_id:
            raise PackError(f"blob {i}: content does not match its id")
    blobs = Blobs(envelope.blobs, envelope.blob_ids)
    ctx = UnpackContext(len(blobs), limits, blobs)
    layers: dict[str, Layer] = {}
    deps: dict[str, list[str]] = {}
    kinds: dict[str, LayerKind] = {}
    total = 0
    for record in envelope.layers:
        if record.name in layers:
            raise PackError(f"layer {record.name!r} appears twice")
        kind = layer_kind(record.kind)
        if kind is None:
            raise PackError(
                f"layer {record.name!r}: unknown layer kind {record.kind!r} "
                "(no installed package registers it in the 'hlg.layers' entry point group)"
            )
        if record.kind_version != kind.version:
            raise PackError(
                f"layer {record.name!r}: kind {record.kind!r} version {record.kind_version}, "
                f"but this scheduler has version {kind.version}"
            )
        for dep in record.deps:
            if dep not in layers:
                raise PackError(
                    f"layer {record.name!r} depends on {dep!r}, which is not an earlier layer "
                    "(layers must come in topological order; a cycle cannot)"
                )
        try:
            layer = kind.unpack(record, ctx)
            layer.annotations = Annotations(record.annotations)  # exactly as on the wire
        except PackError:
            raise
        except (ValueError, TypeError, KeyError, IndexError, OverflowError) as err:
            raise PackError(f"layer {record.name!r}: {err}") from None
        if layer.name != record.name:
            raise PackError(f"layer {record.name!r}: its kind rebuilt it as {layer.name!r}")
        total += len(layer)
        if total > limits.max_tasks:
            raise PackError(f"the graph declares more than {limits.max_tasks} tasks")
        layers[record.name] = layer
        deps[record.name] = record.deps
        kinds[record.name] = kind
    try:
        graph = HighLevelGraph(layers, deps)
    except (ValueError, TypeError) as err:
        raise PackError(str(err)) from None
    for record in envelope.layers:
        _verify(kinds[record.name], graph.layers[record.name], graph)
    outputs = _decode_outputs(envelope.outputs, graph, limits)
    meta = {
        "hlg_version": envelope.hlg_version,
        "python_version": envelope.python_version,
        "cloudpickle_version": envelope.cloudpickle_version,
    }
    return PackedGraph(graph, blobs, outputs, meta)


def _verify(kind: LayerKind, layer: Layer, graph: HighLevelGraph) -> None:
    """Every key a layer reads must exist: the kind checks symbolically if it can."""
    where = f"layer {layer.name!r}"
    verify = getattr(kind, "verify", None)
    if verify is not None:
        verify(layer, graph, where)
        return
    for key in layer:
        for dep in layer.dependency_tuple(key):
            if dep not in layer and dep not in graph:
                raise PackError(f"{where}: key {key!r} reads {dep!r}, which no layer produces")


def _decode_outputs(
    raw: list[tuple[str, Any]], graph: HighLevelGraph, limits: Limits
) -> list[tuple[str, Any]]:
    outputs: list[tuple[str, Any]] = []
    for what, value in raw:
        if what == "layer":
            if type(value) is not str or value not in graph.layers:
                raise PackError(f"output layer {value!r} is not in the graph")
            outputs.append(("layer", value))
        elif what == "key":
            key = decode_key(value, limits, "outputs")
            if key not in graph:
                raise PackError(f"output key {key!r} is not in the graph")
            outputs.append(("key", key))
        else:
            raise PackError(f"outputs: unknown entry kind {what!r}")
    return outputs


class PackedGraph(Mapping[Key, PackedTask]):
    """A packed graph on the scheduler: a lazy ``Mapping[key, PackedTask]``.

    >>> import hlg
    >>> from operator import add
    >>> g = {"a": hlg.DataNode("a", 1), "b": hlg.Task("b", add, hlg.TaskRef("a"), 1)}
    >>> packed = hlg.unpack(hlg.pack(g))
    >>> len(packed), packed.dependencies("b"), packed.output_keys
    (2, frozenset({'a'}), ['a', 'b'])
    >>> hlg.get(packed, "b")
    2

    Built by :func:`unpack` from msgpack state alone; payloads stay bytes in ``blobs``.
    """

    def __init__(
        self,
        graph: HighLevelGraph,
        blobs: Blobs,
        outputs: list[tuple[str, Any]],
        meta: Mapping[str, str],
    ) -> None:
        self.graph = graph
        self.blobs = blobs
        self._outputs = outputs
        self.meta = dict(meta)

    @property
    def output_keys(self) -> list[Key]:
        """The requested keys (whole layers expanded to their keys)."""
        keys: list[Key] = []
        for what, value in self._outputs:
            if what == "layer":
                keys.extend(self.graph.layers[value])
            else:
                keys.append(value)
        return keys

    def __getitem__(self, key: Key) -> PackedTask:
        node = self.graph[key]
        assert isinstance(node, PackedTask)
        return node

    def __iter__(self) -> Iterator[Key]:
        return iter(self.graph)

    def __len__(self) -> int:
        return len(self.graph)

    def __contains__(self, key: object) -> bool:
        return key in self.graph

    def __eq__(self, other: object) -> bool:
        return self is other

    def __hash__(self) -> int:
        return id(self)

    def dependencies(self, key: Key) -> frozenset[Key]:
        """The keys ``key`` reads (no task built when the layer is symbolic)."""
        return self.graph.key_dependencies(key)

    def cull(self, keys: Iterable[Key]) -> PackedGraph:
        """Keep what ``keys`` need; they become the outputs."""
        wanted: list[Key] = [keys] if iskey(keys) else list(keys)  # type: ignore[list-item]
        culled = self.graph.cull(wanted)
        return PackedGraph(culled, self.blobs, [("key", k) for k in wanted], self.meta)

    @property
    def layers(self) -> Mapping[str, Layer]:
        """The scheduler-side layers by name."""
        return self.graph.layers

    def describe(self) -> str:
        """The layer table (see :meth:`HighLevelGraph.describe`)."""
        return self.graph.describe()

    def unpacked(self) -> Mapping[Key, GraphNode]:
        """A worker's view: ``view[key]`` unpacks the task (unpickling its blobs)."""
        return _UnpackedView(self)

    def __repr__(self) -> str:
        return (
            f"<PackedGraph: {len(self.graph.layers)} layers, {len(self):,} tasks, "
            f"{len(self.blobs)} blobs ({self.blobs.nbytes():,} B)>"
        )


class _UnpackedView(Mapping[Key, GraphNode]):
    def __init__(self, packed: PackedGraph) -> None:
        self.packed = packed

    def __getitem__(self, key: Key) -> GraphNode:
        return self.packed[key].unpack(self.packed.blobs)

    def __iter__(self) -> Iterator[Key]:
        return iter(self.packed)

    def __len__(self) -> int:
        return len(self.packed)

    def __contains__(self, key: object) -> bool:
        return key in self.packed


def pack_task(task: Task) -> PackedTask:
    """Pack one task with its own blobs (see :meth:`Task.pack`)."""
    if task.key is None:
        raise ValueError("only a task with a key can be packed")
    ctx = PackContext()
    runspec = ("t", ctx.add(task.func), ctx.add((task.args, task.kwargs or {})))
    return PackedTask(task.key, task.dependency_tuple, runspec, Blobs(ctx.blobs))
