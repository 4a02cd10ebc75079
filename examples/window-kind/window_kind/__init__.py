"""window_kind: a sliding-window layer and the hlg kind that packs it to O(1) bytes.

Block ``i`` of a :class:`WindowSum` layer is the sum of blocks ``i - width + 1 .. i``
of its source. The layer answers ``len``, ``in``, dependencies and ``cull`` from four
numbers; :data:`WINDOW_SUM` packs those numbers (and the task template, as one blob)
and rebuilds the same layer class on a scheduler, where its tasks are
``hlg.PackedTask`` objects that stay bytes until a worker runs them.

>>> import hlg
>>> from hlg import layers
>>> numbers = layers.InputLayer("numbers", int, [str(i) for i in range(10)])
>>> window = WindowSum("window", "numbers", 10, width=3)
>>> graph = hlg.HighLevelGraph({"numbers": numbers, "window": window}, {"window": ["numbers"]})
>>> hlg.get(graph, ("window", 5))
12
>>> packed = hlg.unpack(hlg.pack(graph))
>>> packed.dependencies(("window", 5)) == {("numbers", 3), ("numbers", 4), ("numbers", 5)}
True
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

import msgspec

import hlg
from hlg import ArgSpec, GraphNode, Key, Layer, Placeholder, TaskRef
from hlg.kinds import Kind, PackContext, Reads, UnpackContext

__all__ = ["WINDOW_SUM", "WindowState", "WindowSum", "WindowSumKind"]


class WindowSum(Layer):
    """Key ``(output, i)`` (for ``i`` in ``range(start, stop)``) sums source blocks
    ``max(0, i - width + 1) .. i``. ``output`` defaults to the layer's name; a culled
    copy gets a new name and keeps ``output``, so its keys do not change."""

    kind = "window-sum"

    def __init__(
        self,
        name: str,
        source: str,
        nblocks: int,
        width: int,
        *,
        output: str | None = None,
        start: int = 0,
        stop: int | None = None,
        template: Any = None,
    ) -> None:
        super().__init__(name)
        self.output = name if output is None else output
        if width < 1:
            raise ValueError(f"WindowSum width must be >= 1; got {width}")
        self.source, self.nblocks, self.width = source, nblocks, width
        self.start, self.stop = start, nblocks if stop is None else stop
        # One template for every task: sum(<list of the window's blocks>). On a
        # scheduler it is the stand-in that builds hlg.PackedTask objects instead.
        self.template = template if template is not None else ArgSpec(sum, Placeholder(0))

    def __iter__(self) -> Iterator[Key]:
        return ((self.output, i) for i in range(self.start, self.stop))

    def __len__(self) -> int:
        return max(0, self.stop - self.start)

    def __contains__(self, key: object) -> bool:
        return (
            type(key) is tuple
            and len(key) == 2
            and key[0] == self.output
            and type(key[1]) is int
            and self.start <= key[1] < self.stop
        )

    def __getitem__(self, key: Key) -> GraphNode:
        if key not in self:
            raise KeyError(key)
        node: GraphNode = self.template.fill(
            key, [[TaskRef(k) for k in self.dependency_tuple(key)]]
        )
        return node

    def dependency_tuple(self, key: Key) -> tuple[Key, ...]:
        i: Any = key[1]
        return tuple((self.source, j) for j in range(max(0, i - self.width + 1), i + 1))

    def dependencies(self, key: Key) -> frozenset[Key]:
        return frozenset(self.dependency_tuple(key))

    @property
    def prefixes(self) -> frozenset[str]:
        return frozenset({self.output})

    def key_box(self, prefix: str) -> tuple[int, ...] | None:
        """The keys of ``prefix`` as a box of blocks, when they are all of ``0 .. n-1``."""
        whole = self.start == 0 and prefix == self.output
        return (self.stop,) if whole else None

    def cull(self, keys: Iterable[Key]) -> tuple[Layer, frozenset[Key]]:
        kept = sorted({k[1] for k in keys if k in self})  # type: ignore[index]
        if len(kept) == len(self):
            return self, self._reads(self.start, self.stop)
        if kept and kept[-1] - kept[0] + 1 == len(kept):  # contiguous: still four numbers
            start, stop = kept[0], kept[-1] + 1
            culled = WindowSum(
                self.culled_name([(self.output, i) for i in kept]),
                self.source,
                self.nblocks,
                self.width,
                output=self.output,
                start=start,
                stop=stop,
                template=self.template,
            )
            culled.annotations = self.annotations
            return culled, self._reads(start, stop)
        return super().cull(keys)

    def _reads(self, start: int, stop: int) -> frozenset[Key]:
        if stop <= start:
            return frozenset()
        return frozenset((self.source, j) for j in range(max(0, start - self.width + 1), stop))


class WindowState(msgspec.Struct, array_like=True, frozen=True):
    """The wire state of a WindowSum layer (kind version 1): a few numbers and a blob."""

    output: str
    source: str
    nblocks: int
    width: int
    start: int
    stop: int
    template: int  # blob index of the task template


class WindowSumKind(Kind[WindowState]):
    """Packs :class:`WindowSum` layers as a :class:`WindowState`."""

    name = "window-sum"
    version = 1
    state_type = WindowState
    layer_type = WindowSum

    def pack(self, layer: Layer, ctx: PackContext) -> WindowState:
        assert isinstance(layer, WindowSum)
        return WindowState(
            output=layer.output,
            source=layer.source,
            nblocks=layer.nblocks,
            width=layer.width,
            start=layer.start,
            stop=layer.stop,
            template=ctx.add(layer.template),
        )

    def rebuild(self, name: str, state: WindowState, ctx: UnpackContext) -> Layer:
        limit = ctx.limits.max_tasks
        if not 0 <= state.start <= state.stop <= state.nblocks <= limit:
            raise hlg.PackError(f"layer {name!r}: blocks {state.start}..{state.stop} out of range")
        if not 1 <= state.width <= ctx.limits.max_fan_in:
            raise hlg.PackError(f"layer {name!r}: width {state.width} beyond the fan-in limit")
        return WindowSum(
            name,
            state.source,
            state.nblocks,
            state.width,
            output=state.output,
            start=state.start,
            stop=state.stop,
            template=ctx.template(state.template),
        )

    def reads(self, layer: Layer) -> list[Reads]:
        assert isinstance(layer, WindowSum)
        if not len(layer):
            return []
        return [Reads(layer.source, (layer.stop,), (max(0, layer.start - layer.width + 1),))]

    def edges(self, layer: Layer) -> int:
        """At most ``width`` edges per task (counted towards ``hlg.Limits.max_edges``)."""
        assert isinstance(layer, WindowSum)
        return len(layer) * layer.width


WINDOW_SUM = WindowSumKind()
hlg.register_layer_kind(WINDOW_SUM)  # in this process; schedulers use the entry point
