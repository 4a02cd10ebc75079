"""The public kind API: built-in kinds and the example package pass check_kind; lies are named."""

from __future__ import annotations

import sys
import warnings
from operator import add
from pathlib import Path
from typing import Any

import msgspec
import pytest

import hlg
from hlg import ArgSpec, DataNode, Layer, MaterializedLayer, Placeholder, Task, TaskRef, layers
from hlg.kinds import Kind, PackContext, Reads, UnpackContext
from hlg.testing import LayerCheckError, check_kind

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "examples" / "window-kind"))  # importable even if not installed
from window_kind import WINDOW_SUM, WindowState, WindowSum, WindowSumKind  # noqa: E402


def builtin_cases() -> list[tuple[str, Layer]]:
    x = layers.blockwise(add, "x", "ij", layers.BlockIndex((3, 4)), "ij", 1, None)
    return [
        ("blockwise", x),
        ("blockwise", layers.blockwise(sum, "s", "i", "x", "ij", numblocks={"x": (3, 4)})),
        ("input", layers.InputLayer("read", str.upper, ["a", "b", "c"])),
        ("shuffle", layers.Shuffle("y", "x", 7, 5, list, list, max_branch=2)),
        ("tree-reduction", layers.TreeReduction("t", "x", 9, sum, sum, sum, split_every=3)),
    ]


@pytest.mark.parametrize(("name", "layer"), builtin_cases(), ids=lambda v: getattr(v, "name", v))
def test_builtin_kinds_pass_check_kind(name: str, layer: Layer) -> None:
    kind = hlg.layer_kind(name)
    assert kind is not None
    check_kind(kind, layer)


def test_materialized_kind_passes_as_a_per_key_kind() -> None:
    m = MaterializedLayer({"a": DataNode("a", 1), "b": Task("b", add, TaskRef("a"), 1)}, name="m")
    kind = hlg.layer_kind("materialized")
    check_kind(kind, m, symbolic=False)  # its message lists every task: per key by nature


@pytest.mark.parametrize("width", [1, 3, 50])
def test_window_kind_passes_check_kind(width: int) -> None:
    check_kind(WINDOW_SUM, WindowSum("w", "numbers", 40, width))
    check_kind(WINDOW_SUM, WindowSum("w", "numbers", 40, width, start=5, stop=9))


def window_graph(n: int, width: int = 3) -> hlg.HighLevelGraph:
    numbers = layers.InputLayer("numbers", int, [str(i) for i in range(n)])
    window = WindowSum("window", "numbers", n, width)
    return hlg.HighLevelGraph({"numbers": numbers, "window": window}, {"window": ["numbers"]})


def test_window_kind_packs_to_constant_size_and_computes_like_python() -> None:
    sizes = []
    for n in (1000, 50_000):  # block counts of the same msgpack width
        g = window_graph(n)
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # no fallback to materialized tasks
            data = hlg.pack(g)
        packed = hlg.unpack(data)
        assert packed.layers["window"].kind == "window-sum"
        key = ("window", n - 1)
        assert hlg.get(packed, key) == sum(range(n - 3, n))  # the oracle: plain Python
        sizes.append(len(hlg.pack(hlg.HighLevelGraph({"window": g.layers["window"]}))))
    assert sizes[0] == sizes[1]


def test_culled_window_stays_symbolic_and_describe_names_its_kind() -> None:
    g = window_graph(100)
    small = g.cull([("window", 50), ("window", 51)])
    assert (
        small.layers[next(n for n in small.layers if n.startswith("window"))].kind == "window-sum"
    )
    assert "window-sum" in small.describe()
    sparse = g.cull([("window", 10), ("window", 50)])  # not contiguous: a culled view
    assert "window-sum" in sparse.describe() and "culled" not in sparse.describe()


class Squares(Layer):
    """A small layer for the lies below: block i is i * i, read from nothing."""

    kind = "squares"

    def __init__(self, name: str, n: int, template: Any = None) -> None:
        super().__init__(name)
        self.n = n
        self.template = template or ArgSpec(pow, Placeholder(0), 2)

    def __iter__(self) -> Any:
        return ((self.name, i) for i in range(self.n))

    def __len__(self) -> int:
        return self.n

    def __contains__(self, key: object) -> bool:
        return (
            type(key) is tuple and len(key) == 2 and key[0] == self.name and key[1] in range(self.n)
        )

    def __getitem__(self, key: Any) -> Any:
        if key not in self:
            raise KeyError(key)
        return self.template.fill(key, [key[1]])

    @property
    def prefixes(self) -> frozenset[str]:
        return frozenset({self.name})


class SquaresState(msgspec.Struct, array_like=True):
    n: int
    template: int


class SquaresKind(Kind[SquaresState]):
    name = "squares"
    state_type = SquaresState
    layer_type = Squares

    def pack(self, layer: Layer, ctx: PackContext) -> SquaresState:
        assert isinstance(layer, Squares)
        return SquaresState(layer.n, ctx.add(layer.template))

    def rebuild(self, name: str, state: SquaresState, ctx: UnpackContext) -> Layer:
        return Squares(name, state.n, ctx.template(state.template))

    def reads(self, layer: Layer) -> list[Reads]:
        return []


class OffByOne(SquaresKind):
    def rebuild(self, name: str, state: SquaresState, ctx: UnpackContext) -> Layer:
        return Squares(name, state.n + 1, ctx.template(state.template))


class NoReads(SquaresKind):
    def reads(self, layer: Layer) -> None:
        return None


class WrongState(SquaresKind):
    def pack(self, layer: Layer, ctx: PackContext) -> Any:
        return [1, 2]


def test_a_correct_custom_kind_passes() -> None:
    check_kind(SquaresKind(), Squares("sq", 5))


@pytest.mark.parametrize(
    ("kind", "message"),
    [
        (OffByOne(), "Squares 'sq': unpack: 6 tasks after unpacking, 5 before"),
        (NoReads(), "NoReads checks the keys the layer reads one by one on unpack"),
        (WrongState(), "WrongState.pack returned a list, not its state_type SquaresState"),
    ],
    ids=lambda v: type(v).__name__ if not isinstance(v, str) else "",
)
def test_each_kind_lie_is_named(kind: Kind[Any], message: str) -> None:
    with pytest.raises((LayerCheckError, ValueError)) as info:
        check_kind(kind, Squares("sq", 5))
    assert message in str(info.value)


def test_check_kind_leaves_the_registry_as_it_was() -> None:
    before = hlg.layer_kind("squares")
    check_kind(SquaresKind(), Squares("sq", 3))
    assert hlg.layer_kind("squares") is before


def test_state_is_decoded_against_the_declared_struct() -> None:
    kind = SquaresKind()
    hlg.register_layer_kind(kind)
    data = hlg.pack(hlg.HighLevelGraph({"sq": Squares("sq", 3)}))
    raw = msgspec.msgpack.decode(data)
    raw[1][3][0][5] = ["three", 0]  # the layer's state
    bad = msgspec.msgpack.encode([raw[0], msgspec.Raw(msgspec.msgpack.encode(raw[1]))])
    with pytest.raises(
        hlg.PackError, match=r"layer 'sq': malformed state: Expected `int`, got `str`"
    ):
        hlg.unpack(bad)


def test_reads_are_checked_per_box_and_refused_when_missing() -> None:
    g = window_graph(5)
    short = hlg.HighLevelGraph(
        {"numbers": g.layers["numbers"], "window": WindowSum("window", "numbers", 6, 2)},
        {"window": ["numbers"]},
    )
    with pytest.raises(
        hlg.PackError, match=r"layer 'window': reads \('numbers', 5\), which no layer"
    ):
        hlg.unpack(hlg.pack(short))


def test_window_kind_class_is_a_kind() -> None:
    assert isinstance(WINDOW_SUM, WindowSumKind) and WINDOW_SUM.state_type is WindowState


def test_window_kind_docstring_examples_run() -> None:
    import doctest

    import window_kind

    result = doctest.testmod(window_kind, optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0 and result.failed == 0
