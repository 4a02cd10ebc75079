"""Tests for hlg._processes: a parent that never unpickles payloads, workers that may die."""

from __future__ import annotations

import multiprocessing
import os
import pickle
import signal
import subprocess
import sys
import threading
from operator import add
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import hlg
from hlg import DataNode, HighLevelGraph, MaterializedLayer, Task, TaskRef
from hlg._callbacks import CallbackGroup
from hlg._processes import run_packed


class Point:
    """A user type: unpickling it anywhere needs this module."""

    def __init__(self, x: int) -> None:
        self.x = x


def make_point(x: int) -> Point:
    return Point(x)


def move(p: Point, dx: int) -> Point:
    return Point(p.x + dx)


def read_x(p: Point) -> int:
    return p.x


def point_graph() -> dict[Any, Any]:
    g: dict[Any, Any] = {("p", 0): Task(("p", 0), make_point, 1)}
    for i in range(1, 30):
        g[("p", i)] = Task(("p", i), move, TaskRef(("p", i - 1)), i)
    g["a"] = Task("a", read_x, TaskRef(("p", 29)))
    g["b"] = Task("b", add, TaskRef("a"), TaskRef(("p", 3)))  # fails: int + Point
    g["c"] = Task("c", add, TaskRef("a"), 1)
    return g


@pytest.mark.parametrize("context", ["spawn", "fork"])
def test_parent_never_unpickles(context: str, request: pytest.FixtureRequest) -> None:
    packed = hlg.unpack(hlg.pack(point_graph(), ["c", ("p", 5)]))
    guard = request.getfixturevalue("no_unpickling_here")
    with pytest.raises(AssertionError, match="unpickled something"):
        pickle.loads(pickle.dumps(1))  # the guard works
    out = run_packed(packed, ["c", ("p", 5)], 2, CallbackGroup(()), context)
    assert set(out) == {"c", ("p", 5)}
    assert all(type(v) is bytes for v in out.values())  # outputs come back as bytes
    guard.undo()
    assert pickle.loads(out["c"]) == 2 + sum(range(30))
    assert pickle.loads(out[("p", 5)]).x == 1 + sum(range(6))


def test_outputs_are_unpickled_only_by_the_client_step() -> None:
    got = hlg.compute(point_graph(), ["c", ("p", 5)], scheduler="processes", num_workers=2)
    assert got[0] == 2 + sum(range(30))
    assert isinstance(got[1], Point) and got[1].x == 1 + sum(range(6))


def test_worker_error_keeps_type_key_and_remote_traceback() -> None:
    with pytest.raises(TypeError, match="unsupported operand") as info:
        hlg.compute(point_graph(), "b", scheduler="processes", num_workers=2, context="fork")
    notes = info.value.__notes__
    assert notes[0] == "hlg: raised while computing key 'b'"
    assert notes[1].startswith("hlg: traceback in the worker:\nTraceback")
    assert multiprocessing.active_children() == []


class Unpicklable(Exception):
    def __reduce__(self) -> Any:
        raise TypeError("no")


def raise_unpicklable() -> None:
    raise Unpicklable("odd")


def test_unpicklable_exception_becomes_a_runtime_error() -> None:
    with pytest.raises(RuntimeError, match="Unpicklable: odd"):
        hlg.compute({"u": Task("u", raise_unpicklable)}, "u", scheduler="processes")


def count_and_fail(path: str, succeed_at: int) -> int:
    calls = Path(path)
    n = len(calls.read_text()) + 1 if calls.exists() else 1
    calls.write_text("x" * n)
    if n < succeed_at:
        raise OSError(f"attempt {n}")
    return n


def test_retries_on_processes(tmp_path: Path) -> None:
    counter = str(tmp_path / "calls")
    layer = MaterializedLayer(
        {"f": Task("f", count_and_fail, counter, 3)}, "f", annotations={"retries": 2}
    )
    graph = HighLevelGraph({"f": layer})
    assert hlg.compute(graph, "f", scheduler="processes", context="fork") == 3
    os.remove(counter)
    short = HighLevelGraph({"f": layer.with_annotations(retries=1)})
    with pytest.raises(OSError, match="attempt 2"):
        hlg.compute(short, "f", scheduler="processes", context="fork")


def big_array(n: int) -> np.ndarray:
    return np.arange(n, dtype=np.float64)


def test_100_mb_array_through_processes() -> None:
    n = 100 * 2**20 // 8
    g = {
        "x": Task("x", big_array, n),
        "s": Task("s", np.sum, TaskRef("x")),
        "t": Task("t", np.max, TaskRef("x")),
    }
    s, t = hlg.compute(g, ["s", "t"], scheduler="processes", num_workers=2, context="fork")
    assert s == n * (n - 1) / 2 and t == n - 1


def test_pool_shut_down_on_return_and_on_error() -> None:
    before = threading.active_count()
    hlg.compute({"x": DataNode("x", 1)}, "x", scheduler="processes", context="fork")
    assert multiprocessing.active_children() == []
    with pytest.raises(TypeError):
        hlg.compute(point_graph(), "b", scheduler="processes", context="fork")
    assert multiprocessing.active_children() == []
    assert threading.active_count() == before


def test_unknown_start_method_is_named() -> None:
    with pytest.raises(ValueError, match=r"unknown process start method 'thread'"):
        hlg.compute({"x": DataNode("x", 1)}, "x", scheduler="processes", context="thread")


_KILLED = """
import os, signal, sys, time, multiprocessing
import hlg
from hlg import Task, TaskRef
def die_exit():
    os._exit(3)
def die_kill():
    os.kill(os.getpid(), signal.SIGKILL)
def slow(i):
    time.sleep(0.01)
    return i
for how in (die_exit, die_kill):
    g = {{("s", i): Task(("s", i), slow, i) for i in range(20)}}
    g["bad"] = Task("bad", how)
    g["all"] = Task("all", max, *[TaskRef(k) for k in list(g)])
    try:
        hlg.compute(g, "all", scheduler="processes", num_workers=2, context={context!r})
    except hlg.WorkerDiedError as err:
        print(err.exitcode, err.keys, "bad" in str(err), multiprocessing.active_children())
"""


@pytest.mark.parametrize("context", ["fork", "spawn"])
def test_killed_worker_fails_the_computation(context: str) -> None:
    done = subprocess.run(
        [sys.executable, "-c", _KILLED.format(context=context)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert len(lines) == 2, done.stdout + done.stderr
    assert lines[0].startswith("3 ") and lines[0].endswith("True []")
    assert lines[1].startswith(f"{-signal.SIGKILL} ") and lines[1].endswith("True []")


def test_worker_died_error_message() -> None:
    err = hlg.WorkerDiedError(7, 3, ["a", ("b", 1)])
    assert str(err) == "hlg: worker process 7 died (exit code 3) while running keys 'a', ('b', 1)"
    assert pickle.loads(pickle.dumps(err)).keys == ["a", ("b", 1)]


def index_sum(index: tuple[int, int]) -> int:
    return index[0] * 1000 + index[1]


def plus_one(x: int) -> int:
    return x + 1


def test_100000_blockwise_tasks_on_processes() -> None:
    from hlg import layers

    x = layers.blockwise(index_sum, "x", "ij", layers.BlockIndex((100, 500)), "ij")
    y = layers.blockwise(plus_one, "y", "ij", "x", "ij", numblocks={"x": (100, 500)})
    graph = HighLevelGraph({"x": x, "y": y}, {"y": ["x"]})
    keys = [("y", i, j) for i in range(100) for j in range(500)]
    got = hlg.compute(graph, keys, scheduler="processes", num_workers=2, context="fork")
    assert got == [i * 1000 + j + 1 for i in range(100) for j in range(500)]


_BIG_BOTH_WAYS = """
import time
import numpy as np
import hlg
from hlg import Task, TaskRef
def make(i):
    if i == 20:  # the second worker's batch starts late: it is busy when arguments come
        time.sleep(1.0)
    return np.full(200_000, float(i))
g = {}
for i in range(40):
    g[("big", i)] = Task(("big", i), make, i)
    g[("sum", i)] = Task(("sum", i), np.sum, TaskRef(("big", i)))
g["all"] = Task("all", sum, [TaskRef(("sum", i)) for i in range(40)])
print(hlg.compute(g, "all", scheduler="processes", num_workers=2, context="fork"))
"""


def test_large_results_both_ways_do_not_deadlock() -> None:
    # workers write large results while the parent sends large arguments: a parent that
    # wrote large messages to a busy worker would block with the worker blocked on it
    # (this hangs, killed by the timeout, without the busy-worker budget)
    done = subprocess.run(
        [sys.executable, "-c", _BIG_BOTH_WAYS], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert float(done.stdout) == 200_000 * sum(range(40))


def test_a_script_without_a_main_guard_is_told_why_its_workers_died(tmp_path: Path) -> None:
    script = tmp_path / "unguarded.py"
    script.write_text(
        "import hlg\n"
        "from operator import add\n"
        "g = {'x': hlg.DataNode('x', 1), 'y': hlg.Task('y', add, hlg.TaskRef('x'), 1)}\n"
        "print(hlg.compute(g, 'y', scheduler='processes', num_workers=1))\n"
    )
    proc = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, timeout=120, cwd=tmp_path
    )
    assert proc.returncode != 0
    assert 'if __name__ == "__main__":' in proc.stderr, proc.stderr[-2000:]
