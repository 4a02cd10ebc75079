"""Small messages stay cheap to unpack: block sets, output boxes and culled reads.

Each test is a message of a few hundred bytes that once made unpack (or what a scheduler
asks of the result) run for seconds to minutes or allocate hundreds of megabytes. Each
runs in a child process with an address-space cap and a timeout (see
``test_pack_hardening``): the contract is "PackError or success, within seconds".
"""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from test_pack_hardening import bw_layer, in_child, producer, reader
from test_pack_safety import bw, envelope, unpack_error

import hlg
from hlg import BlockSet, HighLevelGraph, layers
from hlg.layers._blockwise import diagonal_steps, map_boxes
from hlg.layers._kinds import _Reads


def culled(state: list[Any], boxes: list[Any], points: Any = None) -> list[Any]:
    """A blockwise state with kept ``boxes`` (the ``output_boxes`` field) and points."""
    return [*state[:6], points, *state[7:], boxes]


def test_overlapping_output_boxes_are_refused() -> None:
    """20 axes of 2 blocks: 63 single-block boxes inside one full box."""
    ndim = 20
    singles = [[[i >> a & 1, (i >> a & 1) + 1] for a in range(ndim)] for i in range(63)]
    boxes = [*singles, [[0, 2]] * ndim]
    data = envelope([bw_layer("y", culled(producer([2] * ndim, output="y"), boxes))])
    assert len(data) < 5000
    out = in_child(data)
    assert out.startswith("PackError"), out
    assert "output boxes" in out and "overlap" in out


def test_disjoint_output_boxes_are_kept_as_boxes() -> None:
    """The same blocks as disjoint boxes unpack, and stay boxes (no enumeration)."""
    state = culled(producer([4, 4], output="y"), [[[0, 2], [0, 4]], [[2, 4], [0, 1]]])
    packed = hlg.unpack(envelope([bw_layer("y", state)]))
    (name,) = packed.graph.layers
    kept = packed.graph.layers[name].output_blocks  # type: ignore[attr-defined]
    assert not kept.points and len(kept) == 10
    assert set(packed) == {("y", i, j) for i in range(4) for j in range(4) if i < 2 or j < 1}


def test_fragmenting_unions_stay_bounded() -> None:
    """A box minus scattered single blocks in 12 dimensions: the splitting is capped, the
    result is still exact (the oracle: a frozenset of the blocks)."""
    ndim = 12
    singles = [tuple(i * 997 % 2**ndim >> a & 1 for a in range(ndim)) for i in range(40)]
    full = BlockSet.full((2,) * ndim)
    holes = BlockSet(ndim, [tuple((c, c + 1) for c in p) for p in singles])
    every = {tuple(i >> a & 1 for a in range(ndim)) for i in range(2**ndim)}
    assert set(full - holes) == every - set(singles)
    assert set(holes.union(full)) == every
    assert len(full - holes) == 2**ndim - 40 and not (full - holes).boxes  # enumerated
    many = [tuple((c, c + 1) for c in p) for p in sorted(every)]
    with pytest.raises(ValueError, match="more than 64 boxes"):
        BlockSet(ndim, many[::37], exact=True)  # never enumerated when exact


def test_repeated_output_boxes_are_counted_once() -> None:
    """2000 copies of one 10**6-block box: 10**6 output keys, not 2 * 10**9."""
    n = 1000
    box = ["box", ["x", [[0, n], [0, n]]]]
    data = envelope([bw_layer("x", producer([n, n]))], outputs=[box] * 2000)
    assert len(data) < 50_000
    out = in_child(data)
    assert out.split()[0] == "OK" and out.split()[2] == str(n * n), out


def test_output_boxes_are_united_per_layer() -> None:
    """Overlapping output boxes of one layer: each key once (oracle: a set of keys)."""
    boxes = [["box", ["x", [[0, 3], [0, 2]]]], ["box", ["x", [[1, 4], [1, 4]]]]]
    packed = hlg.unpack(envelope([bw_layer("x", producer([4, 4]))], outputs=boxes))
    want = {("x", i, j) for i in range(4) for j in range(4) if (i < 3 and j < 2) or i >= 1 <= j}
    assert sorted(packed.output_keys) == sorted(want)
    assert len(packed.output_keys) == len(set(packed.output_keys))


def test_outputs_of_a_listed_layer_are_not_repeated_by_its_boxes() -> None:
    outputs = [["box", ["x", [[0, 2], [0, 10]]]], ["layer", "x"], ["key", ["x", 0, 0]]]
    packed = hlg.unpack(envelope([bw_layer("x", producer([10, 10]))], outputs=outputs))
    assert sorted(packed.output_keys) == [("x", i, j) for i in range(10) for j in range(10)]


def test_a_culled_reader_projects_its_boxes() -> None:
    """y reads a whole x; y is culled to all of its 4.9 * 10**7 blocks but one."""
    n = 7_000
    y = culled(reader([n, n]), [[[0, n - 1], [0, n]], [[n - 1, n], [0, n - 1]]])
    data = envelope([bw_layer("x", producer([n, n])), bw_layer("y", y, ["x"])])
    assert len(data) < 400
    out = in_child(data)
    assert out.startswith("OK"), out


def test_a_culled_reader_of_block_values_projects_its_boxes() -> None:
    """y reads per-row values; y is culled to 10**8 blocks but one."""
    n = 10_000
    state = bw(
        out_ind=["i", "j"],
        args=[("block-values", [0] * n, ["i"]), ("block-index", [n, n], ["i", "j"])],
    )
    y = culled(state, [[[0, n - 1], [0, n]], [[n - 1, n], [0, n - 1]]])
    out = in_child(envelope([bw_layer("y", y)]))
    assert out.startswith("OK"), out


def test_a_diagonal_read_of_a_culled_producer_is_bounded() -> None:
    """y[i, j] reads x[i, i] for 10**8 blocks of y; x is culled."""
    n = 10_000
    x = culled(producer([n, n]), [[[0, n], [0, n]]])
    y = reader([n, n], ind=["i", "i"], new_axes={"j": n})
    data = envelope([bw_layer("x", x), bw_layer("y", y, ["x"])])
    assert len(data) < 500
    out = in_child(data)
    assert out.startswith(("OK", "PackError")), out


def test_a_diagonal_read_names_the_missing_block() -> None:
    """x culled to everything but (5, 5): the diagonal read of y finds exactly that."""
    x = culled(
        producer([8, 8]), [[[0, 5], [0, 8]], [[5, 6], [0, 5]], [[5, 6], [6, 8]], [[6, 8], [0, 8]]]
    )
    y = reader([8, 8], ind=["i", "i"], new_axes={"j": 3})
    err = unpack_error(envelope([bw_layer("x", x), bw_layer("y", y, ["x"])]))
    assert "reads ('x', 5, 5), which no layer it depends on produces" in str(err)
    x = culled(producer([8, 8]), [[[0, 8], [0, 8]]], [])
    assert len(hlg.unpack(envelope([bw_layer("x", x), bw_layer("y", y, ["x"])]))) == 64 + 24


boxes_2d = st.lists(
    st.tuples(st.integers(0, 4), st.integers(1, 3), st.integers(0, 2), st.integers(1, 2)),
    max_size=4,
).map(lambda rs: [((a, min(a + n, 5)), (b, min(b + m, 3))) for a, n, b, m in rs])
points_2d = st.lists(st.tuples(st.integers(0, 4), st.integers(0, 2)), max_size=5)


@given(boxes_2d, points_2d)
def test_diagonal_reads_map_exactly(boxes: list[Any], points: list[Any]) -> None:
    """map_blocks and map_boxes on a repeated index against a plain-Python oracle."""
    y = layers.blockwise(len, "y", "ij", "x", "ii", numblocks={"x": (5, 5)}, new_axes={"j": 3})
    blocks = BlockSet(2, boxes, points)
    want = {(i, i) for i, _ in blocks}
    assert set(y.argument_blocks(0, blocks)) == want
    (maps,) = y._maps
    mapped = {b for box in map_boxes(maps, blocks) for b in BlockSet.box(box)}
    assert mapped == want
    assert diagonal_steps(maps, blocks) <= sum(len(BlockSet.box(b)) for b in blocks.boxes)


@given(boxes_2d, points_2d)
def test_projected_reads_match_the_kept_blocks(boxes: list[Any], points: list[Any]) -> None:
    """What a culled reader reads of x (projection of its kept blocks), against listing
    every kept block's read."""
    y = layers.blockwise(len, "y", "ij", "x", "jk", numblocks={"x": (3, 2)}, new_axes={"i": 5})
    kept = BlockSet(2, boxes, points)
    culled_y = y._keeping(kept)
    ctx = hlg.UnpackContext(0, hlg.Limits(), hlg.Blobs([]))
    reads = _Reads(culled_y, 0, ctx, "here")
    want = {(j, k) for _, j in kept for k in range(2)}
    assert set(reads) == want and reads.size() == len(want)
    if want:
        assert reads.corner() == (max(j for j, _ in want), 1)


def test_a_shuffle_reading_a_culled_producer_is_bounded() -> None:
    """A shuffle of 10**7 partitions reads x culled to all of them: one box comparison."""
    n = 10**7
    x = layers.blockwise(len, "x", "i", layers.BlockIndex((n,)), "i")
    xc = x._keeping(BlockSet.full((n,)))
    sh = layers.Shuffle("sh", "x", n, 1, list, list, max_branch=32)
    graph = HighLevelGraph({xc.name: xc, "sh": sh}, {xc.name: (), "sh": (xc.name,)})
    data = hlg.pack(graph)
    assert len(data) < 2000
    out = in_child(data)
    assert out.startswith(("OK", "PackError")), out
    missing = x._keeping(BlockSet.box([(0, n - 1)]))
    graph = HighLevelGraph(
        {missing.name: missing, "sh": sh}, {missing.name: (), "sh": (missing.name,)}
    )
    out = in_child(hlg.pack(graph))
    assert out.startswith("PackError") and "partitions of 'x'" in out, out


def test_equal_block_sets_have_one_token_and_hash() -> None:
    """Equal sets described differently: one token, one culled-layer name, one hash."""
    full = BlockSet.full((2, 2))
    points = BlockSet(2, [], [(0, 0), (0, 1), (1, 0), (1, 1)])
    rows = BlockSet(2, [((0, 1), (0, 2))], [(1, 0), (1, 1)])
    assert full == points == rows
    assert len({full.token("x"), points.token("x"), rows.token("x")}) == 1
    assert len({hlg.tokenize(full), hlg.tokenize(points), hlg.tokenize(rows)}) == 1
    assert len({full, points, rows}) == 1
    x = layers.blockwise(len, "x", "ij", layers.BlockIndex((2, 2)), "ij")
    assert x._keeping(full).name == x._keeping(points).name
    assert full.token("x") != BlockSet.box([(0, 1), (0, 2)]).token("x")


def test_a_block_set_equals_only_block_sets() -> None:
    """The hash agrees with equality: a frozenset of the same blocks is another value."""
    full = BlockSet.full((2, 2))
    same = frozenset(full)
    assert full != same and same != full and set(full) == same
    assert len({full, same}) == 2
    assert BlockSet(2) == BlockSet(3) and hash(BlockSet(2)) == hash(BlockSet(3))
    assert BlockSet.full((2,)) != BlockSet.full((1, 2))
    assert (True, 0) not in BlockSet(2, [], [(1, 0)])
    assert (True, 0) not in BlockSet.full((2, 2)) and (1, 0) in BlockSet(2, [], [(1, 0)])


@given(st.lists(st.tuples(st.integers(0, 3), st.integers(0, 3), st.integers(0, 2)), max_size=20))
def test_canonical_boxes_depend_on_the_blocks_only(blocks: list[tuple[int, int, int]]) -> None:
    """Two descriptions of one set (points, and boxes from from_blocks and unions)."""
    a = BlockSet(3, [], blocks)
    b = BlockSet(3)
    for block in blocks:
        b = b | BlockSet.box([(c, c + 1) for c in block])
    assert set(a) == set(b) == set(blocks)
    assert a.canonical() == b.canonical() and a.token("n") == b.token("n")
    canonical = a.canonical()
    assert canonical is not None
    assert {p for box in canonical for p in BlockSet.box(box)} == set(blocks)
