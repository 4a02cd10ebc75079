"""pack and unpack: graphs become bytes on the client and a PackedGraph on the scheduler.

``pack`` writes each layer's symbolic state as msgpack and every user object (functions,
constant arguments, per-partition inputs) as a cloudpickle *blob*, stored once by content.
``unpack`` rebuilds the layers from the msgpack state alone — blobs stay bytes — so a
scheduler learns keys, dependencies and sizes without importing or running user code.
Its cost is bounded by the message and :class:`hlg.Limits`: every check of a symbolic
layer is symbolic, and what must be checked key by key draws on a work budget
proportional to the message's size.
"""

from __future__ import annotations

import sys
import warnings
from collections.abc import Mapping
from typing import Any

import cloudpickle

from hlg._annotations import Annotations
from hlg._blobs import BlobRef, Blobs, PackContext, blob_id
from hlg._blocks import BlockSet
from hlg._graph import HighLevelGraph, check_collisions, flatten_keys
from hlg._keys import Key, key_prefix
from hlg._layer import Layer, MaterializedLayer, single_layer_graph_name
from hlg._packed import PackedGraph, PackedTask, record_outputs
from hlg._registry import (
    KindWarning,
    LayerKind,
    UnpackContext,
    kind_for,
    kind_load_error,
    layer_kind,
    register_layer_kind,
    verify_layer,
)
from hlg._task import GraphNode
from hlg._wire import (
    Envelope,
    LayerRecord,
    Limits,
    PackError,
    decode,
    decode_key,
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

#: Key visits unpack may spend per message byte on checks that are not symbolic.
WORK_PER_BYTE = 2
#: ... plus this many for any message.
WORK_BASE = 2**16


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
    check_collisions(graph)  # two layers, one key, different tasks: never packed
    if keys is not None:
        wanted = flatten_keys(keys)
        graph = graph.cull(wanted)
        outputs = [_encode_output(*entry) for entry in record_outputs(graph, wanted)]
    else:
        outputs = [("layer", name) for name in graph.output_layers()]
    ctx = PackContext()
    records = []
    for name in graph.topological_layers():
        layer = graph.layers[name]
        kind = kind_for(layer)
        if kind is None:
            source: Layer = getattr(layer, "parent", layer)  # a culled view: its parent's type
            if source is not layer and kind_for(source) is not None:
                message = (
                    f"hlg.pack: layer {name!r} is a {type(source).__name__} (kind "
                    f"{source.kind!r}) culled to keys its kind cannot describe (for example "
                    "intermediate keys), so its kept tasks are materialized and packed one by "
                    "one. Request the layer's output keys to keep it symbolic"
                )
            else:
                message = (
                    f"hlg.pack: no registered layer kind packs layer type "
                    f"{type(source).__name__} (kind {source.kind!r}), so its tasks are "
                    "materialized and packed one by one. To pack it symbolically, write an "
                    "hlg.kinds.Kind for it and register it with hlg.register_layer_kind(kind) "
                    "in this process and in the 'hlg.layers' entry point group of its package, "
                    "so that schedulers find it (docs/kinds.md)"
                )
            warnings.warn(
                message,
                KindWarning,
                stacklevel=2,
            )
            layer = MaterializedLayer(layer.materialize(), name)
            kind = layer_kind("materialized")
            assert kind is not None
        annotations = dict(graph.layers[name].annotations)
        try:
            packed_state = kind.pack(layer, ctx)
            state_type = getattr(kind, "state_type", None)
            if isinstance(state_type, type) and not isinstance(packed_state, state_type):
                raise TypeError(
                    f"{type(kind).__name__}.pack returned a {type(packed_state).__name__}, "
                    f"not its state_type {state_type.__name__}"
                )
            state = encode_state(packed_state)
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
        blob_ids=[blob_id(b) for b in ctx.blobs],
    )
    return encode(envelope)


def _encode_output(what: str, value: Any) -> tuple[str, Any]:
    """One output entry on the wire (see docs/protocol.md)."""
    if what == "key":
        return ("key", encode_key(value))
    if what == "box":
        name, box = value
        return ("box", [name, [list(r) for r in box.boxes[0]]])
    return (what, value)


def unpack(data: bytes | bytearray | memoryview, limits: Limits | None = None) -> PackedGraph:
    """Rebuild a packed graph on a scheduler, from msgpack state only (no unpickling).

    Any malformed, inconsistent or oversized input raises :class:`hlg.PackError` naming
    the problem; the work done is bounded by the size of ``data`` and by ``limits``.

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
    except MemoryError:
        raise PackError("packed graph: out of memory while unpacking") from None
    except Exception as err:  # the boundary: whatever a malformed input trips, say so
        raise PackError(f"malformed packed graph: {type(err).__name__}: {err}") from None


def _unpack(data: bytes | bytearray | memoryview, limits: Limits) -> PackedGraph:
    envelope = decode(data)
    if len(envelope.layers) > limits.max_layers:
        raise PackError(f"{len(envelope.layers)} layers exceed the limit of {limits.max_layers}")
    blobs = Blobs(envelope.blobs, envelope.blob_ids)  # verifies every id
    ctx = UnpackContext(len(blobs), limits, blobs, WORK_BASE + WORK_PER_BYTE * len(data))
    layers: dict[str, Layer] = {}
    deps: dict[str, list[str]] = {}
    kinds: dict[str, LayerKind] = {}
    total = 0
    edges = 0
    for record in envelope.layers:
        if record.name in layers:
            raise PackError(f"layer {record.name!r} appears twice")
        kind = layer_kind(record.kind)
        if kind is None:
            failed = kind_load_error(record.kind)
            raise PackError(
                f"layer {record.name!r}: unknown layer kind {record.kind!r} ("
                + (
                    failed
                    or "no installed package registers it in the 'hlg.layers' entry point group"
                )
                + ")"
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
        if "_prefixes" not in layer.__dict__ and type(layer).prefixes is Layer.prefixes:
            # the default finds a layer's key prefixes by iterating its keys: budgeted
            ctx.spend(len(layer), f"layer {record.name!r} (its key prefixes)")
        count_edges = getattr(kind, "edges", None)
        if count_edges is not None:
            edges += count_edges(layer)
            if edges > limits.max_edges:
                raise PackError(
                    f"layer {record.name!r}: the graph declares more than {limits.max_edges} "
                    "dependency edges"
                )
        layers[record.name] = layer
        deps[record.name] = record.deps
        kinds[record.name] = kind
    try:
        graph = HighLevelGraph(layers, deps)
    except (ValueError, TypeError) as err:
        raise PackError(str(err)) from None
    _check_shared_prefixes(graph, ctx)
    for record in envelope.layers:
        verify_layer(kinds[record.name], graph.layers[record.name], graph, ctx)
    outputs = _decode_outputs(envelope.outputs, graph, ctx)
    meta = {
        "hlg_version": envelope.hlg_version,
        "python_version": envelope.python_version,
        "cloudpickle_version": envelope.cloudpickle_version,
    }
    return PackedGraph(graph, blobs, outputs, meta)


def _decode_box(value: Any, graph: HighLevelGraph) -> tuple[str, BlockSet]:
    """An output box ``[layer name, [[start, stop], ...]]``, checked without enumerating."""
    if type(value) is not list or len(value) != 2 or type(value[0]) is not str:
        raise PackError(f"output box {value!r} must be [layer name, ranges]")
    name, ranges = value
    layer = graph.layers.get(name)
    own = None if layer is None else layer.block_set()
    if own is None:
        raise PackError(f"output box: {name!r} is not a layer of blocks in the graph")
    if (
        type(ranges) is not list
        or len(ranges) != own.ndim
        or not all(
            type(r) is list and len(r) == 2 and all(type(c) is int for c in r) and r[0] < r[1]
            for r in ranges
        )
    ):
        raise PackError(f"output box of layer {name!r}: {ranges!r} is not {own.ndim} ranges")
    box = BlockSet.box([(r[0], r[1]) for r in ranges])
    if not box.issubset(own):
        raise PackError(f"output box of layer {name!r}: {ranges!r} holds blocks not in the layer")
    return name, box


def _check_shared_prefixes(graph: HighLevelGraph, ctx: UnpackContext) -> None:
    """Layers sharing a key prefix may hold the same keys; counting their union checks
    each key of every layer of a group but the largest against the group's other layers:
    that must stay O(message)."""
    groups: dict[str, list[Layer]] = {}
    for layer in graph.layers.values():
        for prefix in layer.prefixes:
            groups.setdefault(prefix, []).append(layer)
    for prefix, members in groups.items():
        if len(members) > 1:
            sizes = sorted(len(m) for m in members)  # each key checked against the group
            where = f"layers {[m.name for m in members]} sharing {prefix!r}"
            ctx.spend(sum(sizes[:-1]) * len(members), where)


def _decode_outputs(
    raw: list[tuple[str, Any]], graph: HighLevelGraph, ctx: UnpackContext
) -> list[tuple[str, Any]]:
    """Output entries, each layer once and each key once (not also through its layer or
    a box): the boxes of one layer are united into one block set (never enumerated), and
    the keys requested in all stay within ``Limits.max_tasks``."""
    limits = ctx.limits
    layer_names: dict[str, None] = {}
    keys: dict[Key, None] = {}
    boxes: list[tuple[str, BlockSet]] = []
    for what, value in raw:
        if what == "layer":
            if type(value) is not str or value not in graph.layers:
                raise PackError(f"output layer {value!r} is not in the graph")
            if value in layer_names:
                raise PackError(f"output layer {value!r} is listed twice")
            layer_names[value] = None
        elif what == "box":
            boxes.append(_decode_box(value, graph))
        elif what == "key":
            key = decode_key(value, limits, "outputs")
            if key not in graph:
                raise PackError(f"output key {key!r} is not in the graph")
            keys[key] = None
        else:
            raise PackError(f"outputs: unknown entry kind {what!r}")
    by_prefix: dict[str, list[Layer]] = {}
    for name in layer_names:
        for prefix in graph.layers[name].prefixes:
            by_prefix.setdefault(prefix, []).append(graph.layers[name])
    outputs: list[tuple[str, Any]] = [("layer", name) for name in layer_names]
    total = sum(len(graph.layers[name]) for name in layer_names)
    united: dict[str, BlockSet] = {}  # the boxes of each layer as one set: keys once
    for name, box in boxes:
        if name not in layer_names:
            try:
                united[name] = united[name].union(box, exact=True) if name in united else box
            except ValueError as err:
                raise PackError(f"output boxes of layer {name!r}: {err}") from None
    total += sum(len(blocks) for blocks in united.values()) + len(keys)
    if total > limits.max_tasks:
        raise PackError(
            f"outputs: {total} keys requested, beyond the task limit {limits.max_tasks}"
        )
    outputs.extend(("box", (name, blocks)) for name, blocks in united.items())
    ctx.spend(len(keys) * max(map(len, by_prefix.values()), default=0), "outputs")
    in_boxes: dict[str, list[BlockSet]] = {}
    for name, blocks in united.items():
        (prefix,) = graph.layers[name].prefixes
        in_boxes.setdefault(prefix, []).append(blocks)
    outputs.extend(
        ("key", key)
        for key in keys
        if not any(key in layer for layer in by_prefix.get(key_prefix(key), ()))
        and not (
            type(key) is tuple
            and any(key[1:] in blocks for blocks in in_boxes.get(key_prefix(key), ()))
        )
    )
    return outputs
