"""The scheduler side stays bounded by its input, and worker caches carry no state.

Each test below reproduces one way a small pack could make unpack (or what a scheduler
asks of the result) run for hours or exhaust memory, or make a worker compute something
else than the client. Expensive cases run in a child process with an address-space cap
and a wall-clock timeout: the contract is "PackError or success, within seconds, within
bounded memory", and anything else — a MemoryError, a hang, another exception — fails.
"""

from __future__ import annotations

import gc
import math
import pickle
import resource
import subprocess
import sys
import weakref
from operator import add
from pathlib import Path
from typing import Any

import cloudpickle
import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_pack_safety import bw, envelope, layer, mat, peak_memory, unpack_error

import hlg
import hlg._blobs
from hlg import (
    DataNode,
    HighLevelGraph,
    MaterializedLayer,
    PackedTask,
    PackError,
    Task,
    TaskRef,
    layers,
)

ROOT = Path(__file__).resolve().parent.parent
CHILD_MEMORY = 1_500_000_000  # address space of a child, bytes
CHILD_SECONDS = 60  # generous: the contract is seconds, the machine is shared

CHILD = r"""
import sys, hlg
data = sys.stdin.buffer.read()
try:
    packed = hlg.unpack(data)
    n = len(packed)
    repr(packed); packed.describe()
    first = next(iter(packed))
    packed.dependencies(first); packed[first]; packed.cull([first])
    outs = packed.output_keys
    print("OK", n, len(outs))
except hlg.PackError as err:
    print("PackError", str(err)[:300])
"""


def _cap_memory() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (CHILD_MEMORY, CHILD_MEMORY))


def in_child(data: bytes, code: str = CHILD) -> str:
    """Run ``code`` on ``data`` (stdin) in a capped child; its one line of output."""
    try:
        done = subprocess.run(
            [sys.executable, "-c", code],
            input=data,
            capture_output=True,
            timeout=CHILD_SECONDS,
            preexec_fn=_cap_memory,
            cwd=ROOT,
            check=False,
        )
    except subprocess.TimeoutExpired:
        raise AssertionError(f"no answer within {CHILD_SECONDS} s") from None
    out = done.stdout.decode().strip()
    assert done.returncode == 0 and out, done.stderr.decode()[-2000:]
    return out


def bw_layer(name: str, state: list[Any], deps: Any = ()) -> list[Any]:
    return layer(name, "blockwise", state, deps)


def reader(
    numblocks: list[int], out_ind: Any = ("i", "j"), ind: Any = ("i", "j"), **kw: Any
) -> Any:
    return bw(
        out_ind=list(out_ind), args=[("name", "x", list(ind))], numblocks={"x": numblocks}, **kw
    )


def producer(shape: list[int], output: str = "x", **kw: Any) -> Any:
    letters = [f"a{i}" for i in range(len(shape))]
    return bw(output=output, out_ind=letters, args=[("block-index", shape, letters)], **kw)


# -- 1. unpack cost grows with edges ---------------------------------------------------------


def test_two_producers_of_one_prefix_are_checked_symbolically() -> None:
    """2.5 * 10**7 blocks read from a prefix two layers produce: no per-key walk."""
    n = 5000
    data = envelope(
        [
            bw_layer("x1", producer([n, n])),
            bw_layer("x2", producer([n, n])),
            bw_layer("y", reader([n, n]), ["x1", "x2"]),
        ]
    )
    assert len(data) < 300
    out = in_child(data)
    assert out.startswith("PackError"), out  # two big layers sharing "x"
    assert "sharing 'x'" in out


def test_a_full_producer_covers_the_reads_of_a_culled_copy() -> None:
    """A full layer and a culled copy share a prefix: reads are covered by the full box."""
    data = envelope(
        [
            bw_layer("x", producer([100, 100])),
            bw_layer("x-cull-1", producer([100, 100], output_blocks=[[0, 0], [1, 1]])),
            bw_layer("y", reader([100, 100]), ["x", "x-cull-1"]),
        ]
    )
    with peak_memory(5 * 10**6, 30.0):
        packed = hlg.unpack(data)
    assert len(packed) == 2 * 10**4
    assert packed.dependencies(("y", 99, 99)) == {("x", 99, 99)}


def test_culled_producers_are_checked_against_the_blocks_read() -> None:
    """Two culled producers: the blocks a culled reader reads must be among theirs."""
    x1 = producer([10], output_blocks=[[0], [1]])
    x2 = producer([10], output_blocks=[[5]])
    good = envelope(
        [
            bw_layer("x1", x1),
            bw_layer("x2", x2),
            bw_layer("y", reader([10], ["i"], ["i"], output_blocks=[[1], [5]]), ["x1", "x2"]),
        ]
    )
    assert sorted(hlg.unpack(good)) == [("x", 0), ("x", 1), ("x", 5), ("y", 1), ("y", 5)]
    bad = envelope(
        [
            bw_layer("x1", x1),
            bw_layer("x2", x2),
            bw_layer("y", reader([10], ["i"], ["i"], output_blocks=[[1], [6]]), ["x1", "x2"]),
        ]
    )
    assert "reads ('x', 6), which no layer it depends on produces" in str(unpack_error(bad))


def test_edges_beyond_the_limit_are_refused() -> None:
    """10**5 tasks each reading 50,000 broadcast blocks: 5 * 10**9 edges from ~200 bytes."""
    state = bw(
        out_ind=["i"],
        args=[("name", "x", ["i", "j"]), ("block-index", [10**5], ["i"])],
        numblocks={"x": [1, 50_000]},
    )
    data = envelope([bw_layer("x", producer([1, 50_000])), bw_layer("y", state, ["x"])])
    assert len(data) < 250
    out = in_child(data)
    assert "the graph declares more than 1000000000 dependency edges" in out, out
    err = unpack_error(data, hlg.Limits(max_edges=10**6))
    assert "more than 1000000 dependency edges" in str(err)


def test_no_memory_error_escapes_under_an_address_space_cap() -> None:
    big = 10**12
    for state in [
        reader([big], ["i"], ["i"]),
        reader([10**6, 10**6]),
        reader([10**4, 10**4], [], ["i", "j"]),
    ]:
        out = in_child(envelope([bw_layer("x", producer([2])), bw_layer("y", state, ["x"])]))
        assert out.startswith("PackError"), out


# -- 2. fan-in ---------------------------------------------------------------------------------


def test_fan_in_beyond_the_limit_is_refused() -> None:
    data = envelope(
        [bw_layer("x", producer([10**7])), bw_layer("y", reader([10**7], [], ["j"]), ["x"])]
    )
    assert len(data) < 250
    out = in_child(data)
    assert "contracts over 10000000 blocks, beyond the fan-in limit of 100000" in out, out


def test_fan_in_adds_up_over_arguments() -> None:
    """Many arguments, each within the limit, multiply the reads of one task."""
    args = [("block-index", [60_000], ["j"])] * 2
    err = unpack_error(envelope([bw_layer("y", bw(out_ind=[], args=args))]))
    assert "one task reads 120000+ blocks and values, beyond the fan-in limit" in str(err)


def test_materialized_fan_in_is_limited() -> None:
    rows = [("a", [], "d", 0, None), ("b", ["a"] * 5, "d", 0, None)]
    err = unpack_error(envelope([layer("m", "materialized", mat(*rows))]), hlg.Limits(max_fan_in=4))
    assert "key 'b' reads 5 keys, beyond the fan-in limit of 4" in str(err)


# -- 3. duplicated outputs ---------------------------------------------------------------------


def test_an_output_layer_listed_twice_is_refused() -> None:
    outputs = [("layer", "x")] * 1000
    data = envelope([bw_layer("x", producer([1000]))], outputs=outputs)
    assert "output layer 'x' is listed twice" in str(unpack_error(data))


def test_output_keys_are_listed_once() -> None:
    outputs = [("key", ["x", 1]), ("key", ["x", 1]), ("layer", "x"), ("key", ["x", 2])]
    packed = hlg.unpack(envelope([bw_layer("x", producer([3]))], outputs=outputs))
    assert packed.output_keys == [("x", 0), ("x", 1), ("x", 2)]


# -- 4. len, iteration and repr of layers sharing a prefix ------------------------------------


def test_len_of_layers_sharing_a_prefix_allocates_nothing_per_key() -> None:
    data = envelope(
        [
            bw_layer("x", producer([10**6])),
            bw_layer("x-cull-1", producer([10**6], output_blocks=[[3], [10**6 - 1]])),
            bw_layer("z", producer([2], output="z", output_blocks=[[0]])),
        ]
    )
    packed = hlg.unpack(data)
    with peak_memory(10**6, 30.0):
        assert len(packed) == 10**6 + 1
        assert "1,000,001 tasks" in repr(packed)


def test_len_of_two_prefix_groups_counts_each_largest_whole() -> None:
    """Two groups of layers sharing a prefix, each led by a 4 * 10**7-task layer: len must
    not walk either large layer (that would take minutes)."""
    half = 4 * 10**7
    data = envelope(
        [
            bw_layer("x", producer([half])),
            bw_layer("x-cull-1", producer([half], output_blocks=[[1]])),
            bw_layer("z", producer([half], output="z")),
            bw_layer("z-cull-1", producer([half], output="z", output_blocks=[[2]])),
        ]
    )
    assert in_child(data) == f"OK {2 * half} 0"


@given(
    st.lists(
        st.lists(st.integers(0, 9), max_size=10).map(lambda b: sorted(set(b))),
        min_size=1,
        max_size=4,
    )
)
@settings(max_examples=60, deadline=None)
def test_len_and_iter_of_overlapping_layers_match_a_set(kept: list[list[int]]) -> None:
    """Oracle: the union of the layers' keys as a Python set."""
    records = [
        bw_layer(f"x{n}", producer([10], output_blocks=[[b] for b in blocks]))
        for n, blocks in enumerate(kept)
    ]
    packed = hlg.unpack(envelope(records))
    union = {("x", b) for blocks in kept for b in blocks}
    listed = list(packed)
    assert len(packed) == len(union) == len(listed)
    assert set(listed) == union


# -- 5. lazy iteration -------------------------------------------------------------------------


def test_iteration_is_lazy() -> None:
    code = r"""
import sys, tracemalloc, hlg
packed = hlg.unpack(sys.stdin.buffer.read())
tracemalloc.start()
keys = iter(packed)
first = [next(keys) for _ in range(3)]
print("OK", first, tracemalloc.get_traced_memory()[1])
"""
    out = in_child(envelope([bw_layer("x", producer([10**8]))]), code)
    assert out.startswith("OK [('x', 0), ('x', 1), ('x', 2)]"), out
    assert int(out.split()[-1]) < 100_000, out


# -- 6. undeclared reads and cross-layer cycles ------------------------------------------------


def test_undeclared_reads_are_refused_at_unpack() -> None:
    rows_a = mat(("a", [], "d", 0, None))
    rows_b = mat(("b", ["a"], "d", 0, None))
    data = envelope([layer("a", "materialized", rows_a), layer("b", "materialized", rows_b)])
    err = unpack_error(data)
    assert "key 'b' reads 'a', whose layer is not a declared dependency" in str(err)
    constant = envelope(
        [layer("a", "materialized", rows_a), bw_layer("y", bw(constant_deps=["a"]))]
    )
    assert "reads key 'a', which no layer it depends on produces" in str(unpack_error(constant))


def test_a_read_of_a_later_layer_is_refused() -> None:
    """Layer a reads b's key while b reads a: undeclared, so no cycle across layers."""
    data = envelope(
        [
            layer("a", "materialized", mat(("a", ["b"], "d", 0, None))),
            layer("b", "materialized", mat(("b", ["a"], "d", 0, None)), ["a"]),
        ]
    )
    assert "key 'a' reads 'b'" in str(unpack_error(data))


def test_cycles_inside_a_layer_are_refused() -> None:
    rows = mat(("a", ["b"], "d", 0, None), ("b", ["a"], "d", 0, None))
    assert "cycle" in str(unpack_error(envelope([layer("m", "materialized", rows)]))).lower()


# -- 7. culled names -------------------------------------------------------------------------


def _collision_graph() -> tuple[HighLevelGraph, str]:
    a = MaterializedLayer({("a", i): DataNode(("a", i), i) for i in range(2)}, name="a")
    culled_name = next(iter(HighLevelGraph({"a": a}).cull([("a", 0)]).layers))
    c = MaterializedLayer({("c", 0): DataNode(("c", 0), 10)}, name=culled_name)
    return HighLevelGraph({"a": a, culled_name: c}, {"a": (), culled_name: ()}), culled_name


def test_culled_layer_names_never_collide() -> None:
    graph, taken = _collision_graph()
    culled = graph.cull([("a", 0), ("c", 0)])
    assert sorted(culled) == [("a", 0), ("c", 0)]
    assert taken in culled.layers and len(culled.layers) == 2
    assert hlg.get(culled, [("a", 0), ("c", 0)]) == [0, 10]
    packed = hlg.unpack(hlg.pack(graph)).cull([("a", 0), ("c", 0)])
    assert sorted(packed) == [("a", 0), ("c", 0)]


# -- 8. the registry under concurrent first use ----------------------------------------------


def test_first_unpacks_in_many_threads_find_the_builtin_kinds() -> None:
    code = r"""
import sys, threading, hlg
data = sys.stdin.buffer.read()
barrier = threading.Barrier(8)
errors = []
def run():
    barrier.wait()
    try:
        hlg.unpack(data)
    except Exception as err:
        errors.append(repr(err))
threads = [threading.Thread(target=run) for _ in range(8)]
[t.start() for t in threads]; [t.join() for t in threads]
print("OK" if not errors else errors[0])
"""
    data = envelope([bw_layer("x", producer([4]))])
    for _ in range(3):  # a fresh process each time: the registry starts empty
        assert in_child(data, code) == "OK"


# -- 9. forged blob ids ------------------------------------------------------------------------


def test_blobs_verify_their_ids() -> None:
    honest, evil = cloudpickle.dumps(len), cloudpickle.dumps(sum)
    with pytest.raises(PackError, match="blob 0: content does not match its id"):
        hlg.Blobs([evil], [hlg._blobs.blob_id(honest)])
    with pytest.raises(PackError, match="1 blobs but 2 blob ids"):
        hlg.Blobs([evil], [b"a", b"b"])


def test_unpickling_a_forged_packed_graph_fails() -> None:
    packed = hlg.unpack(hlg.pack({"x": DataNode("x", 1)}))
    blobs = packed["x"].blobs
    assert blobs is not None
    forged = pickle.dumps(blobs).replace(blobs.data[0], blobs.data[0][:-1] + b"\x00")
    with pytest.raises(PackError, match="does not match its id"):
        pickle.loads(forged)


# -- 10 and 11. worker caches ------------------------------------------------------------------


def accumulate(acc: list[int], i: tuple[int, ...]) -> list[int]:
    acc.extend([2 * i[0] + 1, 2 * i[0] + 2])
    return list(acc)


def _accumulating_graph() -> HighLevelGraph:
    x = layers.blockwise(accumulate, "x", "i", [], None, layers.BlockIndex((1,)), "i")
    return HighLevelGraph({"x": x})


def test_template_constants_do_not_leak_between_computations() -> None:
    client = [hlg.get(_accumulating_graph(), ("x", 0)) for _ in range(3)]
    worker = [hlg.get(hlg.unpack(hlg.pack(_accumulating_graph())), ("x", 0)) for _ in range(3)]
    assert client == worker == [[1, 2]] * 3


class Marker:
    """A constant whose lifetime a weak reference can follow."""

    def __call__(self, i: tuple[int, ...]) -> int:
        return i[0]


def test_nothing_unpickled_outlives_its_computation() -> None:
    packed = hlg.unpack(
        hlg.pack(
            HighLevelGraph(
                {"m": layers.blockwise(Marker(), "m", "i", layers.BlockIndex((3,)), "i")}
            )
        )
    )
    template = packed.blobs.load_code(packed.layers["m"].template.blob)  # type: ignore[attr-defined]
    ref = weakref.ref(template.func)
    assert hlg.get(packed, [("m", 2)]) == [2]
    del template, packed
    gc.collect()
    assert ref() is None


def test_data_blobs_are_fresh_per_use_and_code_cache_is_bounded(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    blobs = hlg.Blobs([cloudpickle.dumps([1, 2]), cloudpickle.dumps(Marker())])
    assert blobs.load(0) == [1, 2] and blobs.load(0) is not blobs.load(0)
    assert blobs.load_code(1) is blobs.load_code(1)
    monkeypatch.setattr(hlg._blobs, "CODE_CACHE_BYTES", 0)
    small = hlg.Blobs([cloudpickle.dumps(Marker())])
    assert small.load_code(0) is not small.load_code(0)  # beyond the bound: not kept


# -- 12. another graph's blobs -----------------------------------------------------------------


def test_a_packed_task_refuses_another_graphs_blobs() -> None:
    one = hlg.unpack(hlg.pack({"y": Task("y", add, 1, 2)}))
    two = hlg.unpack(hlg.pack({"y": Task("y", max, 1, 2)}))
    with pytest.raises(PackError, match="PackedTask 'y': the blobs given are not its graph's"):
        one["y"].unpack(two.blobs)
    assert one["y"].unpack(pickle.loads(pickle.dumps(one.blobs)))({}) == 3


# -- 13. worker-side dependencies against the wire's -------------------------------------------


def test_payload_reading_undeclared_keys_is_refused_on_the_worker() -> None:
    blobs = [
        cloudpickle.dumps(1),
        cloudpickle.dumps(add),
        cloudpickle.dumps(((TaskRef("a"), 1), {})),
    ]
    rows = mat(("a", [], "d", 0, None), ("b", [], "t", 1, 2))
    packed = hlg.unpack(envelope([layer("m", "materialized", rows)], blobs=blobs))
    with pytest.raises(PackError, match=r"PackedTask 'b': its payload reads 'a'"):
        packed["b"].unpack(packed.blobs)
    forged = PackedTask("b", ["zz"], ("t", 1, 2), hlg.Blobs(blobs))
    with pytest.raises(PackError, match=r"reads 'a' keys beyond .*and not 'zz'"):
        forged.unpack()


# -- 14. client-valid graphs -----------------------------------------------------------------


def test_a_64_dimensional_blockwise_round_trips() -> None:
    index = tuple(f"d{i}" for i in range(64))
    x = layers.blockwise(len, "x", index, layers.BlockIndex((2,) + (1,) * 63), index)
    key = ("x", 1, *([0] * 63))
    packed = hlg.unpack(hlg.pack(HighLevelGraph({"x": x}), [key]))  # the key itself is sent
    assert list(packed) == [key] and packed.output_keys == [key]
    assert hlg.get(packed, key) == 64
    m = MaterializedLayer({key: DataNode(key, 1)}, name="m")  # the key on the wire, as is
    assert list(hlg.unpack(hlg.pack(HighLevelGraph({"m": m})))) == [key]


def test_nan_is_not_a_key_anywhere() -> None:
    assert not hlg.iskey(("x", math.nan))
    with pytest.raises(TypeError):
        DataNode(("x", math.nan), 1)
    data = envelope([layer("m", "materialized", mat((["x", math.nan], [], "d", 0, None)))])
    assert "is not a key" in str(unpack_error(data))


# -- 15. nil block values ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("output_blocks", "error"),
    [
        (None, "argument 0 reads per-block value 0, which was not shipped"),
        ([[0]], "argument 0 reads per-block value 0, which was not shipped"),
        ([[1]], None),
    ],
)
def test_nil_block_values_are_never_read(output_blocks: Any, error: str | None) -> None:
    state = bw(args=[("block-values", [None, 0], ["i"])], output_blocks=output_blocks)
    data = envelope([layer("y", "input", state)])
    if error is None:
        assert list(hlg.unpack(data)) == [("y", 1)]
    else:
        assert error in str(unpack_error(data))


# -- fuzz: edge-heavy structures ------------------------------------------------------------

LETTERS = "ijk"


@st.composite
def edge_heavy(draw: st.DrawFn) -> tuple[bytes, int]:
    """A producer of prefix "x" (sometimes two, sometimes culled) and a reader with
    broadcast, contraction and culling: small messages declaring many edges."""
    ndim = draw(st.integers(1, 3))
    scale = draw(st.sampled_from([3, 50, 10**3, 10**5]))
    shape = [draw(st.sampled_from([1, 2, scale])) for _ in range(ndim)]
    records = []
    deps = []
    for n in range(draw(st.integers(1, 2))):
        cull = draw(st.booleans())
        blocks = None
        if cull:
            blocks = [
                [draw(st.integers(0, s - 1)) for s in shape] for _ in range(draw(st.integers(0, 3)))
            ]
        records.append(bw_layer(f"x{n}", producer(shape, output_blocks=blocks)))
        deps.append(f"x{n}")
    ind = list(LETTERS[:ndim])
    out = [c for c in ind if draw(st.booleans())]
    numblocks = [s if draw(st.integers(0, 4)) else 1 for s in shape]
    blocks = None
    if draw(st.booleans()):
        dims = dict(zip(ind, numblocks, strict=True))
        blocks = [
            [draw(st.integers(0, dims[c] - 1)) for c in out] for _ in range(draw(st.integers(0, 3)))
        ]
    reader_state = reader(numblocks, out, ind, output_blocks=blocks)
    records.append(bw_layer("y", reader_state, deps))
    return envelope(records), math.prod(shape)


@given(edge_heavy())
@settings(deadline=None, suppress_health_check=[HealthCheck.too_slow])  # the profile sets examples
def test_fuzz_edge_heavy_structures(case: tuple[bytes, int]) -> None:
    """PackError or a consistent graph; unpack allocates O(message), never per edge.
    Small accepted graphs are checked key by key against the graph itself (the oracle:
    every dependency of every key is a key of the graph)."""
    data, size = case
    with peak_memory(20 * 10**6, 60.0):
        try:
            packed = hlg.unpack(data)
        except PackError:
            return
        n = len(packed)
    if size <= 10**4:
        for key in packed:
            for dep in packed.dependencies(key):
                assert dep in packed, (key, dep)
        packed.graph.validate()
        assert n == len(set(packed))


# -- kinds without a symbolic verify -------------------------------------------------------------


class Countdown(hlg.Layer):
    """Keys ``(name, i)`` for ``i < n``; key i reads key i - 1 of the same layer."""

    kind = "countdown-test"

    def __init__(self, name: str, n: int) -> None:
        super().__init__(name)
        self.n = n

    def __len__(self) -> int:
        return self.n

    def __contains__(self, key: object) -> bool:
        return (
            type(key) is tuple and len(key) == 2 and key[0] == self.name and key[1] in range(self.n)
        )

    def __iter__(self) -> Any:
        return ((self.name, i) for i in range(self.n))

    def __getitem__(self, key: Any) -> Any:
        return PackedTask(key, self.dependency_tuple(key), ("a", key))

    def dependency_tuple(self, key: Any) -> tuple[Any, ...]:
        return () if key[1] == 0 else ((self.name, key[1] - 1),)


class CountdownKind:
    """A registered kind with no ``verify`` and no symbolic ``prefixes``: unpack checks
    its keys one by one, within the budget."""

    name = "countdown-test"
    version = 1

    def handles(self, layer: hlg.Layer) -> bool:
        return isinstance(layer, Countdown)

    def pack(self, layer: hlg.Layer, ctx: hlg.PackContext) -> Any:
        assert isinstance(layer, Countdown)
        return layer.n

    def unpack(self, record: Any, ctx: hlg.UnpackContext) -> hlg.Layer:
        return Countdown(record.name, msgspec.msgpack.decode(record.state, type=int))


def test_a_kind_without_verify_is_checked_within_the_budget() -> None:
    hlg.register_layer_kind(CountdownKind())
    small = hlg.unpack(envelope([layer("c", "countdown-test", 1000)]))
    assert len(small) == 1000 and small.dependencies(("c", 5)) == {("c", 4)}
    big = envelope([layer("c", "countdown-test", 10**8)])
    with peak_memory(5 * 10**6, 60.0):
        err = unpack_error(big)
    assert "layer 'c' (its key prefixes): checking it would visit 100,000,000 keys" in str(err)


def test_partition_readers_are_checked_against_a_whole_producer_symbolically() -> None:
    """A shuffle or tree reduction reading 10**8 partitions of a prefix that a whole layer
    and a culled copy of it both produce: the whole layer covers them, no key walk."""
    code = r"""
import hlg
from hlg import layers, DataNode, HighLevelGraph, MaterializedLayer
from hlg.layers._shuffle import check_partition_producer
x = layers.blockwise(len, "x", "i", layers.BlockIndex((10**8,)), "i")
xc = x.cull([("x", 0)])[0]
r = MaterializedLayer({"r": DataNode("r", 1)}, name="r")
g = HighLevelGraph({"x": x, xc.name: xc, "r": r}, {"x": (), xc.name: (), "r": ("x", xc.name)})
ctx = hlg.UnpackContext(0, hlg.Limits(), hlg.Blobs([]))
check_partition_producer(g, r, "x", [range(10**8)], "here", ctx)
print("OK")
"""
    assert in_child(b"", code) == "OK"


def test_edges_add_up_over_layers_of_every_kind() -> None:
    """Two shuffles, each within ``max_edges``, together beyond it; the count bounds the
    real edges (the oracle: every task's dependencies, counted after building them)."""
    src = layers.blockwise(len, "src", "i", layers.BlockIndex((100,)), "i")
    one = layers.Shuffle("s1", "src", 100, 100, list, list, max_branch=10)
    two = layers.Shuffle("s2", "src", 100, 100, list, list, max_branch=10)
    graph = HighLevelGraph(
        {"src": src, "s1": one, "s2": two}, {"src": (), "s1": ("src",), "s2": ("src",)}
    )
    kind = hlg.layer_kind("shuffle")
    declared = kind.edges(one)  # type: ignore[union-attr]
    real = sum(len(one.dependency_tuple(k)) for k in one)
    assert real <= declared
    data = hlg.pack(graph)
    assert len(hlg.unpack(data, hlg.Limits(max_edges=2 * declared))) == len(graph)
    err = unpack_error(data, hlg.Limits(max_edges=declared + declared // 2))
    assert "layer 's2': the graph declares more than" in str(err)


def test_a_blockwise_reading_a_whole_shuffle_is_checked_as_a_box() -> None:
    """300,000 partitions of a shuffle read by a blockwise layer: more than the key-visit
    budget of a small message, so only the box comparison can accept it."""
    n = 300_000
    src = layers.blockwise(len, "src", "i", layers.BlockIndex((n,)), "i")
    shuf = layers.Shuffle("sh", "src", n, n, list, list, max_branch=1000)
    out = layers.blockwise(len, "out", "i", "sh", "i", numblocks={"sh": (n,)})
    graph = HighLevelGraph(
        {"src": src, "sh": shuf, "out": out}, {"src": (), "sh": ("src",), "out": ("sh",)}
    )
    data = hlg.pack(graph)
    assert len(data) < 5000
    packed = hlg.unpack(data)
    assert packed.dependencies(("out", n - 1)) == {("sh", n - 1)}
