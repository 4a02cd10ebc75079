"""The public API for writing a layer kind: typed state, runspecs, symbolic checks of reads.

A *kind* packs one layer type on the client and rebuilds it on a scheduler from
msgpack state alone. Subclass :class:`Kind`:

* ``state_type``: a :class:`msgspec.Struct` class, the kind's wire state. ``pack``
  returns an instance; hlg encodes it and, on the scheduler, decodes it against that
  class with validation (a malformed state is a :class:`hlg.PackError` naming the field)
  before handing it to ``rebuild``.
* ``pack(layer, ctx)`` (client): the state, with user objects stored as blobs through
  ``ctx.add(obj)`` (an ``int`` index) and keys through :func:`encode_key`.
* ``rebuild(name, state, ctx)`` (scheduler): a layer answering ``len``, ``in``,
  iteration, dependencies and ``cull`` from the state, whose items are
  :class:`hlg.PackedTask` objects made with :meth:`UnpackContext.task` (a
  :data:`RUNSPEC_VERSION` runspec); it must never unpickle.
* ``reads(layer)``: the boxes of keys the layer reads (:class:`Reads`), so that the
  default ``verify`` checks them per box, not per key. Without it, verification visits
  every key within the message's work budget and refuses a large layer.

Register a kind with :func:`hlg.register_layer_kind` in the process, and in the
``hlg.layers`` entry point group of an installed package so that schedulers find it.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Iterable
from typing import Any, ClassVar, Generic, NamedTuple, TypeVar

from hlg._blobs import PackContext
from hlg._graph import HighLevelGraph
from hlg._keys import Key
from hlg._layer import Layer
from hlg._registry import (
    RUNSPEC_VERSION,
    BlobTemplate,
    UnpackContext,
    _verify_per_key,
    template_runspec,
)
from hlg._wire import LayerRecord, PackError, decode_state, encode_key

__all__ = [
    "BlobTemplate",
    "Kind",
    "PackContext",
    "RUNSPEC_VERSION",
    "Reads",
    "UnpackContext",
    "check_reads",
    "encode_key",
    "key_box",
    "template_runspec",
]

S = TypeVar("S")

#: Extra ``key_box`` finders for layer types that cannot carry the method (set by
#: ``hlg.layers`` for its built-in types).
BOX_FINDERS: list[Callable[[Layer, str], tuple[int, ...] | None]] = []


class Reads(NamedTuple):
    """The keys ``(prefix, *c)`` for every ``c`` with ``start[d] <= c[d] < shape[d]``
    (``start`` defaults to zeros), all read.

    Every key of the box must exist in a layer the reader depends on, and the layer
    reads no key outside its boxes.

    >>> Reads("x", (2, 3)).size, list(Reads("x", (4,), (2,)).each_key())
    (6, [('x', 2), ('x', 3)])
    """

    prefix: str
    shape: tuple[int, ...]
    start: tuple[int, ...] = ()

    def _ranges(self) -> list[range]:
        start = self.start or (0,) * len(self.shape)
        return [range(a, b) for a, b in zip(start, self.shape, strict=True)]

    @property
    def size(self) -> int:
        """How many keys the box holds."""
        return math.prod(len(r) for r in self._ranges())

    def each_key(self) -> Iterable[Key]:
        """The keys of the box, in C order."""
        return ((self.prefix, *c) for c in itertools.product(*self._ranges()))


def key_box(layer: Layer, prefix: str) -> tuple[int, ...] | None:
    """The shape ``s`` when ``layer``'s keys of ``prefix`` are exactly ``(prefix, *c)`` for
    every ``c`` in the box ``s``, or None when it cannot say without listing its keys.

    A layer says so with a ``key_box(prefix)`` method; the built-in layers know it.

    >>> from hlg import layers
    >>> x = layers.blockwise(len, "x", "ij", layers.BlockIndex((2, 3)), "ij")
    >>> key_box(x, "x"), key_box(x, "y")
    ((2, 3), None)
    """
    method = getattr(layer, "key_box", None)
    if method is not None:
        box = method(prefix)
        return None if box is None else tuple(box)
    for finder in BOX_FINDERS:
        found = finder(layer, prefix)
        if found is not None:
            return found
    return None


def check_reads(
    layer: Layer, graph: HighLevelGraph, reads: Iterable[Reads], where: str, ctx: UnpackContext
) -> None:
    """Check that every key of every box is produced by a layer ``layer`` depends on: per
    box against the producers' own boxes, key by key (budgeted) only when no box covers it.

    >>> import hlg
    >>> from hlg import layers
    >>> x = layers.blockwise(len, "x", "i", layers.BlockIndex((4,)), "i")
    >>> g = hlg.HighLevelGraph({"x": x, "y": hlg.MaterializedLayer({}, name="y")}, {"y": ["x"]})
    >>> ctx = UnpackContext(0, hlg.Limits(), hlg.Blobs([]))
    >>> check_reads(g.layers["y"], g, [Reads("x", (4,))], "layer 'y'", ctx)
    >>> check_reads(g.layers["y"], g, [Reads("x", (5,))], "layer 'y'", ctx)
    Traceback (most recent call last):
    ...
    hlg._wire.PackError: layer 'y': reads ('x', 4), which no layer it depends on produces
    """
    allowed = graph.dependencies[layer.name]
    index = graph._prefix_index()
    for box in reads:
        if box.size == 0:
            continue
        producers = [graph.layers[d] for d in index.get(box.prefix, ()) if d in allowed]
        if not producers:
            raise PackError(
                f"{where}: reads keys of {box.prefix!r}, which no layer it depends on produces"
            )
        covered = False
        for producer in producers:
            have = key_box(producer, box.prefix)
            if (
                have is not None
                and len(have) == len(box.shape)
                and all(n <= m for n, m in zip(box.shape, have, strict=True))
            ):
                covered = True
                break
        if covered:
            continue
        ctx.spend(box.size * len(producers), f"{where}, reads of {box.prefix!r}")
        for key in box.each_key():
            if not any(key in p for p in producers):
                raise PackError(f"{where}: reads {key!r}, which no layer it depends on produces")


class Kind(Generic[S]):
    """Base class of a layer kind with typed state (see the module docstring).

    >>> import hlg, msgspec
    >>> from hlg import ArgSpec, Placeholder, TaskRef
    >>> class RangeState(msgspec.Struct, array_like=True):
    ...     n: int
    ...     template: int
    >>> class Ranged(hlg.Layer):
    ...     kind = "ranged"
    ...     def __init__(self, name, n, template=None):
    ...         super().__init__(name)
    ...         self.n, self.template = n, template or ArgSpec(range, Placeholder(0))
    ...     def __iter__(self):
    ...         return ((self.name, i) for i in range(self.n))
    ...     def __len__(self):
    ...         return self.n
    ...     def __contains__(self, key):
    ...         return key in set(self)
    ...     def __getitem__(self, key):
    ...         if key not in self:
    ...             raise KeyError(key)
    ...         return self.template.fill(key, [key[1]])
    >>> class RangedKind(Kind[RangeState]):
    ...     name, state_type, layer_type = "ranged", RangeState, Ranged
    ...     def pack(self, layer, ctx):
    ...         return RangeState(layer.n, ctx.add(layer.template))
    ...     def rebuild(self, name, state, ctx):
    ...         return Ranged(name, state.n, ctx.template(state.template))
    ...     def reads(self, layer):
    ...         return []
    >>> _ = hlg.register_layer_kind(RangedKind())
    >>> packed = hlg.unpack(hlg.pack(hlg.HighLevelGraph({"r": Ranged("r", 3)})))
    >>> packed[("r", 2)], hlg.get(packed, ("r", 2))
    (PackedTask(('r', 2), deps=[], runspec='bwg'), range(0, 2))
    """

    #: The registered name, also the ``kind`` attribute of the layers it packs.
    name: str
    #: Bump it when the state layout changes: a scheduler refuses another version.
    version: int = 1
    #: The msgspec type of the state (a Struct class); hlg decodes against it.
    state_type: ClassVar[Any]
    #: The layer class packed by this kind (``handles`` checks the exact type).
    layer_type: ClassVar[type[Layer] | None] = None

    def handles(self, layer: Layer) -> bool:
        """Whether this kind packs ``layer`` (default: its type is ``layer_type``)."""
        return self.layer_type is not None and type(layer) is self.layer_type

    def pack(self, layer: Layer, ctx: PackContext) -> S:
        """Client side: the state of ``layer`` (blobs through ``ctx.add``)."""
        raise NotImplementedError(f"{type(self).__name__}.pack")

    def rebuild(self, name: str, state: S, ctx: UnpackContext) -> Layer:
        """Scheduler side: the layer called ``name`` from its decoded ``state``."""
        raise NotImplementedError(f"{type(self).__name__}.rebuild")

    def unpack(self, record: LayerRecord, ctx: UnpackContext) -> Layer:
        """Decode ``record.state`` against ``state_type`` and :meth:`rebuild` the layer."""
        state = decode_state(record.state, self.state_type, record.name)
        return self.rebuild(record.name, state, ctx)

    def reads(self, layer: Layer) -> Iterable[Reads] | None:
        """The boxes of keys ``layer`` reads from other layers (None: unknown, so every
        key is checked one by one). A layer reading its own keys must return None."""
        return None

    def verify(self, layer: Layer, graph: HighLevelGraph, where: str, ctx: UnpackContext) -> None:
        """Check that the keys the layer reads exist in the layers it declares as
        dependencies: per box from :meth:`reads`, else key by key within the budget."""
        reads = self.reads(layer)
        if reads is None:
            _verify_per_key(layer, graph, where, ctx)
            return
        boxes = list(reads)
        if any(box.prefix in layer.prefixes for box in boxes):
            _verify_per_key(layer, graph, where, ctx)  # its own keys: cycles, key by key
            return
        check_reads(layer, graph, boxes, where, ctx)
