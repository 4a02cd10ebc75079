"""Tests for hlg.compute: every scheduler against a plain-Python oracle, failures, callbacks."""

from __future__ import annotations

import itertools
import os
import subprocess
import sys
import threading
import time
import warnings
from operator import add
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from _spec import Spec, make_node, oracle
from hypothesis import given, settings
from hypothesis import strategies as st

import hlg
from hlg import Alias, DataNode, HighLevelGraph, MaterializedLayer, Task, TaskRef

LOCAL = ["sync", "threads"]
ALL = ["sync", "threads", "processes"]


def inc(x: int) -> int:
    return x + 1


def total(*xs: int) -> int:
    return sum(xs)


def boom(*_: Any) -> None:
    raise ZeroDivisionError("boom")


# -- random graphs: every scheduler agrees with hlg.get and the oracle -----------------------


@st.composite
def specs(draw: st.DrawFn) -> tuple[Spec, list[Any], list[list[Any]]]:
    n = draw(st.integers(1, 25))
    spec: Spec = {}
    keys: list[Any] = []
    for i in range(n):
        key: Any = ("n", i) if i % 3 else f"s{i}"
        deps: tuple[Any, ...] = ()
        if keys:
            deps = tuple(draw(st.lists(st.sampled_from(keys), max_size=3, unique=True)))
        kind = draw(st.sampled_from(["task", "nested", "alias", "twice"])) if deps else "data"
        if kind in ("alias", "twice"):
            deps = deps[:1]
        spec[key] = (draw(st.integers(0, 1000)), deps, kind)
        keys.append(key)
    wanted = draw(st.lists(st.sampled_from(keys), min_size=1, max_size=4))
    cut = sorted(draw(st.lists(st.integers(1, n - 1), max_size=2, unique=True))) if n > 1 else []
    bounds = [0, *cut, n]
    layers = [keys[a:b] for a, b in itertools.pairwise(bounds)]
    return spec, wanted, layers


def layered(spec: Spec, layers: list[list[Any]], annotate: bool) -> HighLevelGraph:
    owner = {k: f"L{i}" for i, ks in enumerate(layers) for k in ks}
    out: dict[str, MaterializedLayer] = {}
    deps: dict[str, set[str]] = {}
    for i, ks in enumerate(layers):
        name = f"L{i}"
        notes = {"retries": 1, "priority": i} if annotate else None
        out[name] = MaterializedLayer({k: make_node(k, spec[k]) for k in ks}, name, notes)
        deps[name] = {owner[d] for k in ks for d in spec[k][1] if owner[d] != name}
    return HighLevelGraph(out, deps)


@settings(max_examples=40)
@given(specs(), st.sampled_from(["dict", "layers", "annotated", "packed"]))
def test_schedulers_agree_on_random_graphs(drawn: Any, form: str) -> None:
    spec, wanted, layers = drawn
    expected = oracle(spec, wanted)
    graph: Any = {k: make_node(k, v) for k, v in spec.items()}
    if form in ("layers", "annotated"):
        graph = layered(spec, layers, form == "annotated")
    elif form == "packed":
        graph = hlg.unpack(hlg.pack(layered(spec, layers, True), wanted))
    assert hlg.get(graph, wanted) == expected
    for scheduler in LOCAL:
        assert hlg.compute(graph, wanted, scheduler=scheduler, num_workers=3) == expected


@settings(max_examples=8)
@given(specs())
def test_processes_agree_on_random_graphs(drawn: Any) -> None:
    spec, wanted, layers = drawn
    graph = layered(spec, layers, True)
    expected = oracle(spec, wanted)
    assert hlg.compute(graph, wanted, scheduler="processes", num_workers=2, context="fork") == (
        expected
    )
    packed = hlg.unpack(hlg.pack(graph, wanted))
    assert hlg.compute(packed, wanted, scheduler="processes", num_workers=2, context="fork") == (
        expected
    )


# -- API -----------------------------------------------------------------------------------


def small_graph() -> dict[Any, Any]:
    return {
        "x": DataNode("x", 1),
        ("y", 0): Task(("y", 0), inc, TaskRef("x")),
        ("y", 1): Task(("y", 1), add, TaskRef(("y", 0)), TaskRef("x")),
        "z": Alias("z", ("y", 1)),
    }


@pytest.mark.parametrize("scheduler", ALL)
def test_nesting_of_keys(scheduler: str) -> None:
    g = small_graph()
    opts = {"context": "fork"} if scheduler == "processes" else {}
    got = hlg.compute(g, [("y", 0), (["z"], "x"), []], scheduler=scheduler, **opts)
    assert got == [2, ([3], 1), []]
    assert hlg.compute(g, "z", scheduler=scheduler, **opts) == 3


def test_default_keys_and_collections() -> None:
    g = small_graph()
    assert hlg.compute(g) == [3]  # the keys nothing reads
    layer = MaterializedLayer(g, "g")
    graph = HighLevelGraph({"g": layer})

    class Box:
        def __hlg_graph__(self) -> HighLevelGraph:
            return graph

        def __hlg_layers__(self) -> list[str]:
            return ["g"]

    assert hlg.compute(Box(), scheduler="sync") == [1, 2, 3, 3]
    assert hlg.compute(Box(), "z") == 3
    packed = hlg.unpack(hlg.pack(graph, ["z"]))
    assert hlg.compute(packed) == [3]


def test_bad_arguments_are_named() -> None:
    with pytest.raises(ValueError, match=r"unknown scheduler 'dask'; expected one of"):
        hlg.compute(small_graph(), "z", scheduler="dask")
    with pytest.raises(ValueError, match=r"num_workers must be a positive int; got 0"):
        hlg.compute(small_graph(), "z", num_workers=0)
    with pytest.raises(TypeError, match=r"unexpected options for 'threads': \['context'\]"):
        hlg.compute(small_graph(), "z", context="fork")
    with pytest.raises(TypeError, match=r"expected a HighLevelGraph, a PackedGraph, a Mapping"):
        hlg.compute(42, "z")
    with pytest.raises(hlg.MissingKeyError, match=r"key 'q' is not in the graph"):
        hlg.compute(small_graph(), "q")


def test_get_accepts_tuples_and_packed_graphs() -> None:
    g = small_graph()
    assert hlg.get(g, (["z"], "x")) == ([3], 1)
    assert hlg.get(hlg.unpack(hlg.pack(g, ["z"])), "z") == 3


# -- threads run in parallel ---------------------------------------------------------------


def test_threads_run_ready_tasks_concurrently() -> None:
    barrier = threading.Barrier(3, timeout=10)

    def meet(i: int) -> int:
        barrier.wait()  # only returns when three tasks wait at once
        return i

    g = {("m", i): Task(("m", i), meet, i) for i in range(3)}
    assert hlg.compute(g, list(g), num_workers=3) == [0, 1, 2]


def test_threads_numpy_blockwise_result() -> None:
    from hlg import layers

    x = layers.blockwise(np.ones, "x", "ij", layers.ChunkShape(((50,) * 4, (50,) * 4)), "ij")
    y = layers.blockwise(add, "y", "ij", "x", "ij", "x", "ji", numblocks={"x": (4, 4)})
    s = layers.blockwise(np.sum, "s", "ij", "y", "ij", numblocks={"y": (4, 4)})
    graph = HighLevelGraph({"x": x, "y": y, "s": s}, {"y": ["x"], "s": ["y"]})
    keys = [("s", i, j) for i in range(4) for j in range(4)]
    assert sum(hlg.compute(graph, keys, num_workers=4)) == 2.0 * 200 * 200


# -- failures ------------------------------------------------------------------------------


def threads_alive() -> int:
    return sum(1 for t in threading.enumerate() if t.name.startswith("hlg-"))


@pytest.mark.parametrize("scheduler", LOCAL)
def test_first_failure_keeps_type_traceback_and_key(scheduler: str) -> None:
    ran: list[int] = []

    def record(i: int) -> int:
        ran.append(i)
        return i

    g: dict[Any, Any] = {"bad": Task("bad", boom)}
    for i in range(50):
        g[("ok", i)] = Task(("ok", i), record, i)
    g["all"] = Task("all", total, TaskRef("bad"), *[TaskRef(("ok", i)) for i in range(50)])
    with pytest.raises(ZeroDivisionError, match="boom") as info:
        hlg.compute(g, "all", scheduler=scheduler, num_workers=2)
    assert "hlg: raised while computing key 'bad'" in info.value.__notes__
    assert info.traceback[-1].name == "boom"
    assert len(ran) < 50  # the rest was cancelled
    assert threads_alive() == 0


@pytest.mark.parametrize("scheduler", LOCAL)
def test_retries_rerun_failing_tasks(scheduler: str) -> None:
    calls: list[int] = []

    def flaky() -> str:
        calls.append(1)
        if len(calls) < 3:
            raise OSError("flaky")
        return "ok"

    layer = MaterializedLayer({"f": Task("f", flaky)}, "f", {"retries": 2})
    assert hlg.compute(HighLevelGraph({"f": layer}), "f", scheduler=scheduler) == "ok"
    assert len(calls) == 3
    calls.clear()
    once = MaterializedLayer({"f": Task("f", flaky)}, "f", {"retries": 1})
    with pytest.raises(OSError, match="flaky"):
        hlg.compute(HighLevelGraph({"f": once}), "f", scheduler=scheduler)
    assert len(calls) == 2


def test_bad_retries_annotation_is_named() -> None:
    layer = MaterializedLayer({"f": Task("f", boom)}, "f", {"retries": "two"})
    with pytest.raises(ValueError, match=r"layer 'f': the 'retries' annotation must be an int"):
        hlg.compute(HighLevelGraph({"f": layer}), "f", scheduler="sync")


_INTERRUPT = """
import os, signal, sys, threading, time
import hlg
from hlg import Task
def slow(i):
    time.sleep(0.05)
    return i
g = {{("s", i): Task(("s", i), slow, i) for i in range(10_000)}}
threading.Timer(0.5, lambda: os.kill(os.getpid(), signal.SIGINT)).start()
start = time.monotonic()
try:
    hlg.compute(g, list(g), scheduler={scheduler!r}, num_workers=2)
except KeyboardInterrupt:
    import multiprocessing
    left = [t.name for t in threading.enumerate() if t.name.startswith("hlg-")]
    print("interrupted", round(time.monotonic() - start), left, multiprocessing.active_children())
"""


@pytest.mark.parametrize("scheduler", ALL)
def test_keyboard_interrupt_stops_and_cleans_up(scheduler: str) -> None:
    script = _INTERRUPT.format(scheduler=scheduler)
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split()[0] == "interrupted"
    assert done.stdout.rstrip().endswith("[] []")  # no thread, no child process left


# -- callbacks and progress ----------------------------------------------------------------


class Recorder(hlg.Callback):
    def __init__(self) -> None:
        self.events: list[tuple[Any, ...]] = []

    def start(self, keys: Any, ntasks: int) -> None:
        self.events.append(("start", list(keys), ntasks))

    def task_start(self, key: Any) -> None:
        self.events.append(("task_start", key))

    def task_finish(self, key: Any, duration: float) -> None:
        assert duration >= 0
        self.events.append(("task_finish", key))

    def error(self, key: Any, exception: BaseException) -> None:
        self.events.append(("error", key, type(exception).__name__))

    def finish(self, ok: bool) -> None:
        self.events.append(("finish", ok))


@pytest.mark.parametrize("scheduler", ALL)
def test_callbacks_see_every_task(scheduler: str) -> None:
    rec = Recorder()
    opts = {"context": "fork"} if scheduler == "processes" else {}
    assert hlg.compute(small_graph(), "z", scheduler=scheduler, callbacks=[rec], **opts) == 3
    assert rec.events[0] == ("start", ["z"], 4)
    assert rec.events[-1] == ("finish", True)
    starts = [e[1] for e in rec.events if e[0] == "task_start"]
    finishes = [e[1] for e in rec.events if e[0] == "task_finish"]
    assert sorted(starts, key=repr) == sorted(finishes, key=repr) == sorted(small_graph(), key=repr)
    for key in finishes:  # a task finishes after it started and after its dependencies
        at = rec.events.index(("task_finish", key))
        assert rec.events.index(("task_start", key)) < at
        for dep in small_graph()[key].dependencies:
            assert rec.events.index(("task_finish", dep)) < at

    rec = Recorder()
    with pytest.raises(ZeroDivisionError):
        hlg.compute({"b": Task("b", boom)}, "b", scheduler=scheduler, callbacks=[rec], **opts)
    assert ("error", "b", "ZeroDivisionError") in rec.events
    assert rec.events[-1] == ("finish", False)


def test_a_raising_callback_does_not_change_results() -> None:
    class Bad(hlg.Callback):
        def task_finish(self, key: Any, duration: float) -> None:
            raise RuntimeError("callback bug")

    rec = Recorder()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert hlg.compute(small_graph(), "z", callbacks=[Bad(), rec]) == 3
    assert [str(w.message) for w in caught] == [
        "hlg: callback Bad.task_finish raised RuntimeError: callback bug; "
        "it is switched off for this computation"
    ]
    assert rec.events[-1] == ("finish", True)
    with pytest.raises(TypeError, match=r"callbacks must be hlg.Callback instances; got 3"):
        hlg.compute(small_graph(), "z", callbacks=[3])  # type: ignore[list-item]


def test_progress_bar_on_stderr(capsys: pytest.CaptureFixture[str]) -> None:
    assert hlg.compute(small_graph(), "z", progress=True) == 3
    captured = capsys.readouterr()
    assert captured.out == ""
    assert "4/4" in captured.err
    assert hlg.compute(small_graph(), "z") == 3
    assert capsys.readouterr().err == ""  # off by default


# -- stress --------------------------------------------------------------------------------


@pytest.mark.parametrize("scheduler", LOCAL)
def test_100000_tasks(scheduler: str) -> None:
    g: dict[Any, Any] = {}
    for i in range(50_000):
        g[("a", i)] = DataNode(("a", i), i)
        g[("b", i)] = Task(("b", i), inc, TaskRef(("a", i)))
    out = hlg.compute(g, [("b", i) for i in range(50_000)], scheduler=scheduler)
    assert out == list(range(1, 50_001))


def chain(n: int) -> dict[Any, Any]:
    g: dict[Any, Any] = {("c", 0): DataNode(("c", 0), 0)}
    for i in range(1, n):
        g[("c", i)] = Task(("c", i), inc, TaskRef(("c", i - 1)))
    return g


def fan_in(n: int) -> dict[Any, Any]:
    g: dict[Any, Any] = {("f", i): Task(("f", i), inc, i) for i in range(n)}
    g["sum"] = Task("sum", total, *[TaskRef(("f", i)) for i in range(n)])
    return g


@pytest.mark.parametrize("scheduler", ALL)
def test_chain_and_fan_in_of_10000(scheduler: str) -> None:
    opts = {"context": "fork"} if scheduler == "processes" else {}
    assert hlg.compute(chain(10_000), ("c", 9999), scheduler=scheduler, **opts) == 9999
    expected = sum(range(1, 10_001))
    assert hlg.compute(fan_in(10_000), "sum", scheduler=scheduler, **opts) == expected


def test_no_thread_left_after_success(tmp_path: Path) -> None:
    before = threading.active_count()
    hlg.compute(fan_in(100), "sum", num_workers=4)
    assert threading.active_count() == before
    assert threads_alive() == 0
    assert os.getpid() > 0 and time.monotonic() > 0


# -- order and release ----------------------------------------------------------------------


class Counted:
    """An object that knows how many of its kind are alive."""

    alive = 0
    peak = 0

    def __init__(self, value: int) -> None:
        self.value = value
        Counted.alive += 1
        Counted.peak = max(Counted.peak, Counted.alive)

    def __del__(self) -> None:
        Counted.alive -= 1


def leaf(i: int) -> Counted:
    return Counted(i)


def merge(*parts: Counted) -> Counted:
    return Counted(sum(p.value for p in parts))


def counted_tree(n: int, split: int) -> tuple[dict[Any, Any], Any]:
    g: dict[Any, Any] = {("l", i): Task(("l", i), leaf, i) for i in range(n)}
    level = list(g)
    depth = 0
    while len(level) > 1:
        depth += 1
        nxt = []
        for j in range(0, len(level), split):
            key = (f"m{depth}", j // split)
            g[key] = Task(key, merge, *[TaskRef(k) for k in level[j : j + split]])
            nxt.append(key)
        level = nxt
    return g, level[0]


@pytest.mark.parametrize("scheduler", LOCAL)
def test_results_are_released_after_their_last_reader(scheduler: str) -> None:
    g, out = counted_tree(512, 8)  # three levels of 8-ary merges
    Counted.alive = Counted.peak = 0
    result = hlg.compute(g, out, scheduler=scheduler, num_workers=1)
    assert result.value == sum(range(512))
    del result
    assert Counted.alive == 0
    # one branch per level (8 results each, plus the one being built), never the 512 leaves
    assert Counted.peak <= 3 * 8 + 1


def test_sync_runs_tasks_in_priority_order() -> None:
    g, out = counted_tree(64, 4)
    started: list[Any] = []

    class Starts(hlg.Callback):
        def task_start(self, key: Any) -> None:
            started.append(key)

    hlg.compute(g, out, scheduler="sync", callbacks=[Starts()])
    prio = hlg.order(g, out)
    assert started == sorted(prio, key=prio.__getitem__)
