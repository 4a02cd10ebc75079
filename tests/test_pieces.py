"""Tests for piece transport (hlg._pieces, the processes driver): a shuffle on processes
computes what hlg.get and plain Python compute, the parent never unpickles, and each task
is sent only its pieces — counted in bytes through the pipes."""

from __future__ import annotations

import multiprocessing.connection
import os
import pickle
from typing import Any

import numpy as np
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

import hlg
from hlg import DataNode, HighLevelGraph, MaterializedLayer, Task, TaskRef, layers
from hlg._callbacks import CallbackGroup
from hlg._order import plan
from hlg._pieces import MissingPieceError, PieceRoutes, PieceView
from hlg._processes import _dump_pieces, run_packed


def dest(x: int, nout: int) -> int:
    """The destination partition of record ``x`` (a hash of the value)."""
    return (x * 2654435761) % 2**32 % nout


class ListSplit:
    """Split a list of ints by digit ``s`` (base ``k``) of each record's destination."""

    def __init__(self, nout: int) -> None:
        self.nout = nout

    def __call__(self, part: list[int], k: int, s: int) -> list[list[int]]:
        pieces: list[list[int]] = [[] for _ in range(k)]
        for x in part:
            pieces[dest(x, self.nout) // k**s % k].append(x)
        return pieces


def list_concat(pieces: list[list[int]]) -> list[int]:
    return [x for piece in pieces for x in piece]


def grouped(parts: list[list[int]], nout: int) -> list[list[int]]:
    """The oracle: every record in its destination partition, in input order."""
    out: list[list[int]] = [[] for _ in range(nout)]
    for part in parts:
        for x in part:
            out[dest(x, nout)].append(x)
    return out


def shuffle_graph(
    parts: list[Any], nout: int, split: Any, concat: Any, **kw: Any
) -> HighLevelGraph:
    data = MaterializedLayer(
        {("inp", i): DataNode(("inp", i), p) for i, p in enumerate(parts)}, "inp"
    )
    shuf = layers.Shuffle("out", "inp", len(parts), nout, split, concat, **kw)
    return HighLevelGraph({"inp": data, "out": shuf}, {"out": ["inp"]})


def outputs(nout: int) -> list[Any]:
    return [("out", q) for q in range(nout)]


class SentBytes:
    """Bytes this process writes into pipes (``Connection.send_bytes``), once patched."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.total = 0
        parent = os.getpid()
        real = multiprocessing.connection.Connection.send_bytes
        counter = self

        def send_bytes(conn: Any, buf: Any, *args: Any) -> None:
            if os.getpid() == parent:
                counter.total += memoryview(buf).nbytes
            real(conn, buf, *args)

        monkeypatch.setattr(multiprocessing.connection.Connection, "send_bytes", send_bytes)


# -- results -------------------------------------------------------------------------------

PARTS = st.integers(1, 12).flatmap(
    lambda n: st.lists(st.lists(st.integers(0, 10**6), max_size=5), min_size=n, max_size=n)
)


@settings(max_examples=12, deadline=None)
@given(parts=PARTS, nout=st.integers(1, 12), max_branch=st.integers(2, 4))
@example(parts=[[1, 2, 3], [4], [], [5, 6]], nout=9, max_branch=2)  # 3 stages, padding
@example(parts=[[i] for i in range(9)], nout=2, max_branch=3)  # n_in > n_out
def test_shuffle_on_fork_matches_get_and_grouping(
    parts: list[list[int]], nout: int, max_branch: int
) -> None:
    g = shuffle_graph(parts, nout, ListSplit(nout), list_concat, max_branch=max_branch)
    want = grouped(parts, nout)
    assert hlg.get(g, outputs(nout)) == want
    got = hlg.compute(g, outputs(nout), scheduler="processes", num_workers=2, context="fork")
    assert got == want


@pytest.mark.parametrize(("nin", "nout", "max_branch"), [(7, 3, 2)])
def test_shuffle_on_spawn_matches_grouping(nin: int, nout: int, max_branch: int) -> None:
    parts = [[7 * i + j for j in range(i % 4)] for i in range(nin)]
    g = shuffle_graph(parts, nout, ListSplit(nout), list_concat, max_branch=max_branch)
    got = hlg.compute(g, outputs(nout), scheduler="processes", num_workers=2, context="spawn")
    assert got == grouped(parts, nout) == hlg.get(g, outputs(nout))


def test_culled_shuffle_on_processes() -> None:
    parts = [list(range(i, 60, 7)) for i in range(7)]
    g = shuffle_graph(parts, 9, ListSplit(9), list_concat, max_branch=3)
    keys = [("out", 4), ("out", 0)]
    got = hlg.compute(g, keys, scheduler="processes", num_workers=2, context="fork")
    want = grouped(parts, 9)
    assert got == [want[4], want[0]]


@pytest.mark.parametrize("context", ["spawn", "fork"])
def test_parent_never_unpickles_a_shuffle(context: str, request: pytest.FixtureRequest) -> None:
    parts = [[5 * i + j for j in range(6)] for i in range(6)]
    g = shuffle_graph(parts, 5, ListSplit(5), list_concat, max_branch=2)
    packed = hlg.unpack(hlg.pack(g, outputs(5)))
    guard = request.getfixturevalue("no_unpickling_here")
    with pytest.raises(AssertionError, match="unpickled something"):
        pickle.loads(pickle.dumps(1))  # the guard works
    out = run_packed(packed, outputs(5), 2, CallbackGroup(()), context)
    assert all(type(v) is bytes for v in out.values())
    guard.undo()
    assert [pickle.loads(out[k]) for k in outputs(5)] == grouped(parts, 5)


def test_split_outputs_read_whole_travel_whole() -> None:
    """A split output that is requested, or read by a task that does not declare a piece,
    is sent whole (and computed right)."""
    parts = [[1, 2, 3, 4], [5, 6], [7]]
    g = shuffle_graph(parts, 4, ListSplit(4), list_concat, max_branch=2)
    whole = Task("whole", list_concat, TaskRef(("out-split", 0, 1)))
    g2 = HighLevelGraph(
        {**g.layers, "whole": MaterializedLayer({"whole": whole}, "whole")},
        {**g.dependencies, "whole": ["out"]},
    )
    split_key = ("out-split", 1, 2)
    keys = ["whole", split_key, *outputs(4)]
    p = plan(g2, keys)
    routes = PieceRoutes(g2, p.keys, p.dependents, p.outputs)
    count = {p.keys[i]: routes.count(i) for i in range(len(p))}
    assert count[("out-split", 0, 1)] == 0  # "whole" reads it all
    assert count[split_key] == 0  # requested
    assert count[("out-split", 0, 0)] == 2  # read by piece only
    assert count[("out", 0)] == count[("inp", 0)] == 0
    want = hlg.get(g2, keys)
    assert want[0] == list_concat(ListSplit(4)([5, 6], 2, 0))
    assert hlg.compute(g2, keys, scheduler="processes", num_workers=2, context="fork") == want


def test_routes_cost_nothing_without_declarations() -> None:
    g = {"a": DataNode("a", [1, 2]), "b": Task("b", len, TaskRef("a"))}
    p = plan(g, ["b"])
    assert not PieceRoutes(None, p.keys, p.dependents, p.outputs).active
    p2 = plan(hlg.unpack(hlg.pack(g)), ["b"])
    packed = p2.source.packed
    assert packed is not None
    routes = PieceRoutes(packed.graph, p2.keys, p2.dependents, p2.outputs)
    assert not routes.active and routes.count(0) == 0


def frame_split(part: Any, k: int, s: int) -> list[Any]:
    digit = part["x"].to_numpy() % 5 // k**s % k
    return [part[digit == j] for j in range(k)]


def frame_concat(pieces: list[Any]) -> Any:
    import pandas as pd

    return pd.concat(pieces)


def test_pandas_shuffle_on_processes() -> None:
    pd = pytest.importorskip("pandas")
    frames = [pd.DataFrame({"x": range(i, 40, 3), "y": float(i)}) for i in range(3)]
    g = shuffle_graph(frames, 5, frame_split, frame_concat, max_branch=2)
    got = hlg.compute(g, outputs(5), scheduler="processes", num_workers=2, context="fork")
    whole = pd.concat(frames)
    for q, part in enumerate(got):  # the oracle: pandas on the whole table, input order kept
        pd.testing.assert_frame_equal(part, whole[whole["x"] % 5 == q])


# -- declarations ----------------------------------------------------------------------------


@settings(max_examples=40, deadline=None)
@given(
    nin=st.integers(1, 40),
    nout=st.integers(1, 40),
    max_branch=st.integers(2, 6),
    keep=st.none() | st.sets(st.integers(0, 39), max_size=4),
)
def test_piece_of_agrees_with_pieces(
    nin: int, nout: int, max_branch: int, keep: set[int] | None
) -> None:
    parts_out = None if keep is None else {q % nout for q in keep}
    layer = layers.Shuffle("y", "x", nin, nout, list, list, max_branch, parts_out)
    for key in layer:
        declared = dict(layer.pieces(key))
        assert tuple(declared) == layer.dependency_tuple(key)
        for dep, piece in declared.items():
            assert layer.piece_of(key, dep) == piece
            count = layer.piece_count(dep) if dep in layer else 0
            assert (piece >= 0) == (count > 0)  # split outputs are read by piece only
            assert piece < max(count, 1)
        assert layer.piece_count(key) == (0 if key[0] == "y" else layer.k)
    # keys that are not dependencies are refused by name
    for first in layer:
        with pytest.raises(KeyError, match="does not read"):
            layer.piece_of(first, ("x", nin))
        break
    with pytest.raises(KeyError):
        layer.piece_count(("y", nout))


def test_piece_of_refuses_a_split_output_it_does_not_read() -> None:
    layer = layers.Shuffle("y", "x", 9, 9, list, list, 3)  # 2 stages of k=3
    assert layer.piece_of(("y-split", 1, 4), ("y-split", 0, 5)) == 1  # digit 0 of 4
    assert layer.piece_of(("y", 5), ("y-split", 1, 8)) == 1  # digit 1 of 5
    with pytest.raises(KeyError, match=r"does not read \('y-split', 0, 7\)"):
        layer.piece_of(("y-split", 1, 4), ("y-split", 0, 7))  # differs in digit 1
    with pytest.raises(KeyError, match="does not read"):
        layer.piece_of(("y", 4), ("y-split", 0, 4))  # a level below its sources


def test_piece_view() -> None:
    v = PieceView(("y", 1), ("s", 0), 3, 1, [4, 5])
    assert len(v) == 3 and v[1] == [4, 5] and v[-2] == [4, 5] and v[np.int64(1)] == [4, 5]
    with pytest.raises(MissingPieceError, match="it read piece True"):
        v[True]
    with pytest.raises(
        MissingPieceError, match=r"sent only piece 1 of \('s', 0\); it read piece 2"
    ):
        v[2]
    with pytest.raises(MissingPieceError, match="it read all of it"):
        list(v)
    with pytest.raises(MissingPieceError, match="it read piece slice"):
        v[0:2]
    err = MissingPieceError("y", "x", 1, 0)
    assert str(pickle.loads(pickle.dumps(err))) == str(err)


def test_dump_pieces_checks_the_declared_count() -> None:
    assert [pickle.loads(b) for b in _dump_pieces("k", ([1], [2]), 2)] == [[1], [2]]
    with pytest.raises(ValueError, match=r"task 'k' returned 3 pieces; .* declares 2"):
        _dump_pieces("k", [1, 2, 3], 2)
    with pytest.raises(ValueError, match=r"task 'k' returned a int; .* declares 2"):
        _dump_pieces("k", 5, 2)


def test_a_wrong_piece_declaration_is_an_error_not_a_wrong_answer(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    parts = [[1, 2, 3, 4], [5, 6], [7]]
    g = shuffle_graph(parts, 4, ListSplit(4), list_concat, max_branch=2)
    real = layers.Shuffle.piece_of

    def off_by_one(self: Any, key: Any, dep: Any) -> int:
        j = real(self, key, dep)
        return j if j < 0 else (j + 1) % self.k

    monkeypatch.setattr(layers.Shuffle, "piece_of", off_by_one)
    with pytest.raises(MissingPieceError, match=r"task \('out-split', 1, \d\) was sent only"):
        hlg.compute(g, outputs(4), scheduler="processes", num_workers=1, context="fork")
    monkeypatch.setattr(layers.Shuffle, "piece_of", lambda self, key, dep: 5)
    with pytest.raises(ValueError, match=r"reads piece 5 of \('out-split', 0, \d\), which has 2"):
        hlg.compute(g, outputs(4), scheduler="processes", num_workers=1, context="fork")


# -- bytes moved ------------------------------------------------------------------------------


def array_split(part: np.ndarray, k: int, s: int) -> list[np.ndarray]:
    digit = part // k**s % k
    return [part[digit == j] for j in range(k)]


def array_concat(pieces: list[np.ndarray]) -> np.ndarray:
    return np.concatenate(pieces)


def test_each_task_is_sent_only_its_pieces(monkeypatch: pytest.MonkeyPatch) -> None:
    """The parent's writes into the pipes: about (stages + 1) times the input, not k times."""
    nparts = 16
    rng = np.random.default_rng(5)
    sizes = rng.integers(2_000, 50_000, nparts)  # pieces of 4 to 100 KB: inline and frames
    parts = [rng.integers(0, nparts, size) for size in sizes]  # a record is its destination
    g = shuffle_graph(parts, nparts, array_split, array_concat, max_branch=4)
    shuf = g.layers["out"]
    assert isinstance(shuf, layers.Shuffle)
    stages, k = shuf.stages, shuf.k
    assert (stages, k) == (2, 4)
    packed = hlg.unpack(hlg.pack(g, outputs(nparts)))
    data = sum(len(pickle.dumps(p, protocol=5)) for p in parts)

    def sent(pieces: bool) -> tuple[int, list[Any]]:
        with monkeypatch.context() as m:
            if not pieces:
                m.setattr(PieceRoutes, "count", lambda self, i: 0)
            counter = SentBytes(m)
            out = run_packed(packed, outputs(nparts), 2, CallbackGroup(()), "fork")
            return counter.total, [pickle.loads(out[key]) for key in outputs(nparts)]

    by_piece, got = sent(True)
    whole, got_whole = sent(False)
    print(f"pickled input {data:,} B; sent by piece {by_piece:,} B, whole {whole:,} B")
    for q in range(nparts):
        want = np.concatenate([p[p == q] for p in parts])  # the oracle: input order kept
        np.testing.assert_array_equal(got[q], want)
        np.testing.assert_array_equal(got_whole[q], want)
    overhead = 2_000 * len(plan(packed, outputs(nparts)))  # headers: generous per task
    assert by_piece <= (stages + 1) * data * 1.05 + overhead
    # forwarding whole split outputs sends each one to k readers at every stage
    assert whole >= (1 + stages * k) * data * 0.95
    assert whole > 2.5 * by_piece
