"""Tests for layers.Shuffle: routing against plain-Python grouping, symbolic answers,
culling, the stage formula, the data each task reads, packing and fusion boundaries."""

from __future__ import annotations

import math
import pickle
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

import hlg
from hlg import DataNode, HighLevelGraph, MaterializedLayer, layers
from hlg._layer import _closure
from hlg.layers._shuffle import ShuffleTemplate
from hlg.testing import check_layer


def dest(x: int, nout: int) -> int:
    """The destination partition of record ``x`` (a hash of the value)."""
    return (x * 2654435761) % 2**32 % nout


def list_split(nout: int) -> Any:
    def split(part: list[int], k: int, s: int) -> list[list[int]]:
        pieces: list[list[int]] = [[] for _ in range(k)]
        for x in part:
            pieces[dest(x, nout) // k**s % k].append(x)
        return pieces

    return split


def list_concat(pieces: list[list[int]]) -> list[int]:
    return [x for piece in pieces for x in piece]


def inputs_layer(parts: list[Any], name: str = "inp") -> MaterializedLayer:
    return MaterializedLayer({(name, i): DataNode((name, i), p) for i, p in enumerate(parts)}, name)


def shuffle_graph(
    parts: list[Any], nout: int, split: Any, concat: Any, **kw: Any
) -> HighLevelGraph:
    layer = layers.Shuffle("out", "inp", len(parts), nout, split, concat, **kw)
    return HighLevelGraph({"inp": inputs_layer(parts), "out": layer}, {"out": ["inp"]})


def grouped(parts: list[list[int]], nout: int) -> list[list[int]]:
    """The oracle: every record in its destination, in input order."""
    out: list[list[int]] = [[] for _ in range(nout)]
    for part in parts:
        for x in part:
            out[dest(x, nout)].append(x)
    return out


def expected_tasks(nin: int, nout: int, max_branch: int) -> int:
    """The task-count formula of docs/layers.md, written out independently."""
    n = max(nin, nout)
    stages = max(1, math.ceil(math.log(n) / math.log(max_branch) - 1e-12)) if n > 1 else 1
    k = math.ceil(n ** (1 / stages) - 1e-9)
    total = nout
    for s in range(stages):
        total += min(nout, k**s) * math.ceil(nin / k**s)
    return total


PARTS = st.integers(1, 300).flatmap(
    lambda n: st.lists(st.lists(st.integers(0, 10**6), max_size=4), min_size=n, max_size=n)
)


@settings(max_examples=40, deadline=None)
@given(parts=PARTS, nout=st.integers(1, 300), max_branch=st.integers(2, 40))
@example(parts=[[1, 2, 3]], nout=1, max_branch=2)
@example(parts=[[5]] * 300, nout=1, max_branch=32)
@example(parts=[[7, 8]], nout=300, max_branch=32)
@example(parts=[[i] for i in range(1000 % 300 + 17)], nout=250, max_branch=3)
def test_hash_shuffle_matches_grouping(parts: list[list[int]], nout: int, max_branch: int) -> None:
    g = shuffle_graph(parts, nout, list_split(nout), list_concat, max_branch=max_branch)
    got = hlg.get(g, [("out", q) for q in range(nout)])
    assert got == grouped(parts, nout)
    layer = g.layers["out"]
    assert len(layer) == expected_tasks(len(parts), nout, max_branch)


@pytest.mark.parametrize(
    ("nin", "nout", "max_branch", "stages", "k"),
    [
        (1, 1, 32, 1, 1),
        (5, 3, 32, 1, 5),
        (32, 32, 32, 1, 32),
        (33, 2, 32, 2, 6),
        (1000, 1000, 32, 2, 32),
        (1024, 10, 32, 2, 32),
        (1025, 1, 32, 3, 11),
        (10_000, 10_000, 32, 3, 22),
        (2, 300, 2, 9, 2),
    ],
)
def test_stage_formula(nin: int, nout: int, max_branch: int, stages: int, k: int) -> None:
    layer = layers.Shuffle("y", "x", nin, nout, list, list, max_branch=max_branch)
    assert (layer.stages, layer.k) == (stages, k)
    assert len(layer) == expected_tasks(nin, nout, max_branch)
    assert max_branch ** (stages - 1) < max(nin, nout) <= max_branch**stages or stages == 1
    assert (k - 1) ** stages < max(nin, nout) <= k**stages


def test_task_count_is_far_below_dask() -> None:
    """1,000 -> 1,000 with max_branch 32: dask builds 71,864 tasks (2026.8)."""
    layer = layers.Shuffle("y", "x", 1000, 1000, list, list)
    assert len(layer) == 1000 + 1024 + 1000


def numpy_split(nout: int) -> Any:
    def split(part: np.ndarray, k: int, s: int) -> list[np.ndarray]:
        digit = (part % nout) // k**s % k
        return [part[digit == j] for j in range(k)]

    return split


@settings(max_examples=25, deadline=None)
@given(
    sizes=st.lists(st.integers(0, 6), min_size=1, max_size=120),
    nout=st.integers(1, 120),
    max_branch=st.integers(2, 16),
    seed=st.integers(0, 2**32 - 1),
)
def test_numpy_partitions(sizes: list[int], nout: int, max_branch: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    parts = [rng.integers(0, 1000, size=n) for n in sizes]
    g = shuffle_graph(parts, nout, numpy_split(nout), np.concatenate, max_branch=max_branch)
    got = hlg.get(g, [("out", q) for q in range(nout)])
    everything = np.concatenate(parts)
    for q, block in enumerate(got):
        np.testing.assert_array_equal(block, everything[everything % nout == q])


def test_pandas_partitions() -> None:
    pd = pytest.importorskip("pandas")
    rng = np.random.default_rng(0)
    frames = [
        pd.DataFrame({"key": rng.integers(0, 50, size=n), "v": rng.normal(size=n)})
        for n in [0, 3, 10, 1, 7, 4, 9]
    ]
    nout = 5

    def split(df: Any, k: int, s: int) -> list[Any]:
        digit = (df["key"] % nout) // k**s % k
        return [df[digit == j] for j in range(k)]

    def concat(pieces: list[Any]) -> Any:
        return pd.concat(pieces)

    g = shuffle_graph(frames, nout, split, concat, max_branch=2)
    everything = pd.concat(frames)
    for q, part in enumerate(hlg.get(g, [("out", q) for q in range(nout)])):
        pd.testing.assert_frame_equal(part, everything[everything["key"] % nout == q])


# -- symbolic answers -----------------------------------------------------------------------


@pytest.fixture
def no_task_builds(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[Any]]:
    built: list[Any] = []

    def refuse(self: Any, key: Any, *args: Any) -> Any:
        built.append(key)
        raise AssertionError(f"a task was built for {key!r}")

    monkeypatch.setattr(ShuffleTemplate, "build", refuse)
    monkeypatch.setattr(ShuffleTemplate, "fill", refuse)
    yield built


def test_symbolic_answers_build_no_task(no_task_builds: list[Any]) -> None:
    layer = layers.Shuffle("y", "x", 1000, 700, list, list)
    keys = list(layer)
    assert len(keys) == len(set(keys)) == len(layer)
    assert all(k in layer for k in keys[::37])
    for key in keys[::97]:
        layer.dependencies(key)
        layer.pieces(key)
    culled, external = layer.cull([("y", 5), ("y", 699)])
    assert len(culled) < len(layer) and len(external) == 1000
    list(culled)
    assert not no_task_builds


def test_getitem_builds_one_task() -> None:
    layer = layers.Shuffle("y", "x", 1000, 1000, list, list)
    calls: list[Any] = []
    original = ShuffleTemplate.build

    def counting(self: ShuffleTemplate, key: Any, *args: Any) -> Any:
        calls.append(key)
        return original(self, key, *args)

    ShuffleTemplate.build = counting  # type: ignore[method-assign]
    try:
        task = layer[("y", 17)]
    finally:
        ShuffleTemplate.build = original  # type: ignore[method-assign]
    assert calls == [("y", 17)]
    assert len(task.dependencies) == 32


@settings(max_examples=30, deadline=None)
@given(nin=st.integers(1, 200), nout=st.integers(1, 200), max_branch=st.integers(2, 12))
def test_symbolic_answers_agree_with_tasks(nin: int, nout: int, max_branch: int) -> None:
    layer = layers.Shuffle("y", "x", nin, nout, list, list, max_branch=max_branch)
    tasks = layer.materialize()
    assert list(tasks) == list(layer)
    for key, task in tasks.items():
        assert task.key == key
        assert layer.dependency_tuple(key) == task.dependency_tuple
        assert tuple(d for d, _ in layer.pieces(key)) == task.dependency_tuple
        for dep in task.dependencies:  # every dependency is a task of the layer or an input
            assert dep in layer or (dep[0] == "x" and 0 <= dep[1] < nin)
    # padding positions and foreign keys are not in the layer
    k, stages = layer.k, layer.stages
    assert ("y", nout) not in layer and ("y", -1) not in layer and ("y", 0.5) not in layer
    assert ("y-split", stages, 0) not in layer and ("y-split", 0, nin) not in layer
    assert ("y", 0.0) in layer and ("x", 0) not in layer and "y" not in layer
    assert sum(1 for _ in layer) == len(layer)
    for s in range(stages):
        assert layer.level_size(s) == min(nout, k**s) * -(-nin // k**s)


def test_data_each_task_reads() -> None:
    """Every record is read once per level: (stages + 1) x the input, not k x."""
    rng = np.random.default_rng(1)
    nin, nout = 300, 250
    parts = [list(rng.integers(0, 10**6, size=rng.integers(0, 30))) for _ in range(nin)]
    records = sum(map(len, parts))
    g = shuffle_graph(parts, nout, list_split(nout), list_concat, max_branch=8)
    layer = g.layers["out"]
    assert layer.k == 7 and layer.stages == 3
    values = dict(zip(list(g), hlg.get(g, list(g)), strict=True))
    read = 0
    for key in layer:
        for dep, piece in layer.pieces(key):
            read += len(values[dep]) if piece < 0 else len(values[dep][piece])
    assert read == (layer.stages + 1) * records


def test_tasks_touch_only_their_pieces() -> None:
    """A task given split outputs whose other pieces are poison never touches them."""

    class Poison:
        def __iter__(self) -> Any:
            raise AssertionError("a piece for another task was read")

        def __len__(self) -> int:
            raise AssertionError("a piece for another task was read")

    nout = 40
    g = shuffle_graph(
        [[i, i + 40] for i in range(40)], nout, list_split(nout), list_concat, max_branch=4
    )
    layer = g.layers["out"]
    values = dict(zip(list(g), hlg.get(g, list(g)), strict=True))
    for key in layer:
        task = layer[key]
        poisoned: dict[Any, Any] = {}
        for dep, piece in layer.pieces(key):
            if piece < 0:
                poisoned[dep] = values[dep]
            else:
                poisoned[dep] = [values[dep][j] if j == piece else Poison() for j in range(layer.k)]
        result = task(poisoned)
        if key[0] == "out":
            assert result == values[key]


def test_split_must_return_k_pieces() -> None:
    g = shuffle_graph([[1], [2]], 2, lambda part, k, s: [part], list_concat)
    with pytest.raises(ValueError, match=r"split returned 1 pieces at stage 0; .* k=2 pieces"):
        hlg.get(g, ("out", 0))
    g = shuffle_graph([[1], [2]], 2, lambda part, k, s: None, list_concat)
    with pytest.raises(ValueError, match="split returned a NoneType"):
        hlg.get(g, ("out", 0))


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"max_branch": 1}, ValueError, "max_branch must be an int >= 2; got 1"),
        ({"npartitions_in": 0}, ValueError, "npartitions_in must be an int >= 1; got 0"),
        ({"npartitions_out": True}, TypeError, "npartitions_out must be an int >= 1; got True"),
        ({"npartitions_out": 2.0}, TypeError, "npartitions_out must be an int"),
        ({"parts_out": [3]}, ValueError, r"parts_out: 3 is not an output partition \(0..2\)"),
        ({"split": 5}, TypeError, "split must be callable; got 5"),
        ({"input_name": "y-split"}, ValueError, "cannot read its own keys"),
        ({"input_name": ""}, TypeError, "input_name must be a non-empty str"),
    ],
)
def test_bad_arguments(kwargs: dict[str, Any], error: type, message: str) -> None:
    args: dict[str, Any] = {
        "name": "y",
        "input_name": "x",
        "npartitions_in": 3,
        "npartitions_out": 3,
        "split": list,
        "concat": list,
    }
    args.update(kwargs)
    with pytest.raises(error, match=message):
        layers.Shuffle(**args)


# -- culling --------------------------------------------------------------------------------


@settings(max_examples=30, deadline=None)
@given(
    nin=st.integers(1, 150),
    nout=st.integers(1, 150),
    max_branch=st.integers(2, 9),
    data=st.data(),
)
def test_culled_equals_closure_and_full(nin: int, nout: int, max_branch: int, data: Any) -> None:
    wanted = data.draw(st.sets(st.integers(0, nout - 1), min_size=1, max_size=5))
    parts = [[i, 3 * i + 1] for i in range(nin)]
    g = shuffle_graph(parts, nout, list_split(nout), list_concat, max_branch=max_branch)
    layer = g.layers["out"]
    keys = [("out", q) for q in sorted(wanted)]
    culled, external = layer.cull(keys)
    kept, outside = _closure(layer, keys)  # the generic closure, key by key: the oracle
    assert set(culled) == set(kept)
    assert len(culled) == len(kept)
    assert external == outside
    small = g.cull(keys)
    assert (
        hlg.get(small, keys)
        == hlg.get(g, keys)
        == [grouped(parts, nout)[q] for q in sorted(wanted)]
    )
    assert (culled is layer) == (len(wanted) == nout)


def test_parts_out_is_a_culled_shuffle() -> None:
    parts = [[i, i + 7] for i in range(20)]
    split = list_split(9)
    full = layers.Shuffle("out", "inp", 20, 9, split, list_concat, max_branch=3)
    some = layers.Shuffle("out", "inp", 20, 9, split, list_concat, max_branch=3, parts_out=[2, 8])
    assert set(some) == set(full.cull([("out", 2), ("out", 8)])[0])
    assert ("out", 3) not in some
    g = HighLevelGraph({"inp": inputs_layer(parts), "out": some}, {"out": ["inp"]})
    assert hlg.get(g, [("out", 2), ("out", 8)]) == [grouped(parts, 9)[2], grouped(parts, 9)[8]]


def test_cull_to_one_output_of_1000() -> None:
    layer = layers.Shuffle("y", "x", 1000, 1000, list, list)
    culled, external = layer.cull([("y", 123)])
    # all 1000 inputs hold records for partition 123: they are split once each; then
    # 32 positions of the second stage and the output itself
    assert len(culled) == 1000 + 32 + 1
    assert [culled.level_size(s) for s in range(3)] == [1000, 32, 1]
    assert len(external) == 1000


def test_cull_with_split_keys_falls_back_to_closure() -> None:
    layer = layers.Shuffle("y", "x", 40, 40, list, list, max_branch=4)
    key = ("y-split", 2, 5)
    culled, _ = layer.cull([key])
    assert set(culled) == set(_closure(layer, [key])[0])


def test_pickle_round_trip() -> None:
    layer = layers.Shuffle("y", "x", 30, 20, list, list_concat, max_branch=4, parts_out=[1, 2])
    again = pickle.loads(pickle.dumps(layer))
    assert list(again) == list(layer) and again.name == layer.name
    assert again[("y", 2)] == layer[("y", 2)]


# -- packing --------------------------------------------------------------------------------


def square_part(i: tuple[int, ...]) -> list[int]:
    return [i[0] * j for j in range(5)]


def packed_graph(nin: int, nout: int) -> HighLevelGraph:
    src = layers.blockwise(square_part, "src", "i", layers.BlockIndex((nin,)), "i")
    shuf = layers.Shuffle("out", "src", nin, nout, list_split(nout), list_concat, max_branch=5)
    return HighLevelGraph({"src": src, "out": shuf}, {"out": ["src"]})


@pytest.mark.parametrize("keys", [None, [("out", 3)], [("out", 0), ("out", 6)]])
def test_packed_round_trip(keys: Any) -> None:
    g = packed_graph(30, 7)
    packed = hlg.unpack(hlg.pack(g, keys))
    reference = g if keys is None else g.cull(keys)
    assert sorted(packed) == sorted(reference)
    for key in reference:
        assert packed.dependencies(key) == reference.key_dependencies(key)
        task = packed[key].unpack(packed.blobs)
        assert (task.key, task.dependency_tuple) == (key, reference[key].dependency_tuple)
    wanted = [("out", q) for q in range(7)] if keys is None else keys
    assert hlg.get(packed, wanted) == hlg.get(g, wanted)
    assert packed.layers[next(n for n in packed.layers if n.startswith("out"))].kind == "shuffle"


def test_packed_size_does_not_grow_with_partitions() -> None:
    small = hlg.pack(packed_graph(10, 10))
    large = hlg.pack(packed_graph(100_000, 100_000))
    assert len(large) - len(small) < 32  # a few wider integers


def test_culled_pack_ships_only_the_kept_outputs() -> None:
    g = packed_graph(1000, 1000)
    one = hlg.pack(g, [("out", 3)])
    two = hlg.pack(g, [("out", 3), ("out", 999)])
    assert 0 < len(two) - len(one) < 32  # one more output key and one more kept partition


# -- fusion never crosses a shuffle ---------------------------------------------------------


def test_fuse_blockwise_stops_at_a_shuffle() -> None:
    nin, nout = 6, 4
    src = layers.blockwise(square_part, "src", "i", layers.BlockIndex((nin,)), "i")
    pre = layers.blockwise(sum, "pre", "i", "src", "i", numblocks={"src": (nin,)})
    shuf = layers.Shuffle("shuf", "src", nin, nout, list_split(nout), list_concat, max_branch=2)
    post = layers.blockwise(sorted, "post", "i", "shuf", "i", numblocks={"shuf": (nout,)})
    last = layers.blockwise(len, "last", "i", "post", "i", numblocks={"post": (nout,)})
    g = HighLevelGraph(
        {"src": src, "pre": pre, "shuf": shuf, "post": post, "last": last},
        {"pre": ["src"], "shuf": ["src"], "post": ["shuf"], "last": ["post"]},
    )
    keys = [("last", q) for q in range(nout)] + [("pre", 0)]
    fused = hlg.optimize(g, keys, passes=[layers.fuse_blockwise])
    assert set(fused.layers) == {"src", "pre", "shuf", "last"}
    assert isinstance(fused.layers["shuf"], layers.Shuffle)
    assert hlg.get(fused, keys) == hlg.get(g, keys)


def test_fuse_linear_stops_at_a_shuffle() -> None:
    nin, nout = 5, 3
    chain: dict[Any, Any] = {}
    for i in range(nin):
        chain[("a", i)] = DataNode(("a", i), [i, i + 5])
        chain[("inp", i)] = hlg.Task(("inp", i), list_concat, [hlg.TaskRef(("a", i))])
    before = MaterializedLayer(chain, "before")
    shuf = layers.Shuffle("out", "inp", nin, nout, list_split(nout), list_concat, max_branch=2)
    after = MaterializedLayer(
        {("z", q): hlg.Task(("z", q), len, hlg.TaskRef(("out", q))) for q in range(nout)}, "after"
    )
    g = HighLevelGraph(
        {"before": before, "out": shuf, "after": after}, {"out": ["before"], "after": ["out"]}
    )
    keys = [("z", q) for q in range(nout)]
    fused = hlg.fuse_linear(g, keys)
    assert fused.layers["out"] is shuf
    assert all(("inp", i) in fused for i in range(nin))  # the shuffle's inputs stay
    assert all(("out", q) in fused for q in range(nout))
    assert (
        hlg.get(fused, keys)
        == hlg.get(g, keys)
        == [len(p) for p in grouped([[i, i + 5] for i in range(nin)], nout)]
    )


def test_describe_names_the_kind() -> None:
    g = packed_graph(8, 8)
    assert "shuffle" in g.describe()


@pytest.mark.parametrize(
    ("nin", "nout", "max_branch", "parts_out"),
    [(1, 1, 32, None), (7, 30, 3, None), (100, 40, 4, None), (50, 50, 5, [0, 17, 49])],
)
def test_check_layer(nin: int, nout: int, max_branch: int, parts_out: Any) -> None:
    layer = layers.Shuffle(
        "y", "x", nin, nout, list_concat, list_concat, max_branch=max_branch, parts_out=parts_out
    )
    check_layer(layer)


def test_packing_a_shuffle_culled_to_split_keys_says_why_it_is_materialized() -> None:
    import warnings

    import hlg

    graph = shuffle_graph(
        [[i, i + 40] for i in range(40)], 40, list_split(40), list_concat, max_branch=4
    )
    shuf = graph.layers["out"]
    split_key = next(k for k in shuf if k[0] != "out")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        packed = hlg.unpack(hlg.pack(graph, [split_key, ("out", 0)]))
    messages = [str(w.message) for w in caught]
    assert any("culled to keys its kind cannot describe" in m for m in messages), messages
    assert not any("no registered layer kind" in m for m in messages), messages
    assert hlg.get(packed, ("out", 0)) == hlg.get(graph, ("out", 0))
