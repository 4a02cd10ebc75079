"""Benchmark hlg's task spec against ``dask._task_spec`` and a plain-CPython floor, side by side.

Run ``python benchmarks/bench_tasks.py [--n N] [--repeat R] [--shape S] [--markdown]``;
docs/benchmarks.md explains the table. Three graph shapes of N nodes each: ``chain``
(node i adds 1 to node i-1, keys ``("chain", i)``), ``fan-in`` (N/2 literal leaves, N/2
tasks each summing a list of 8 leaves) and ``tree`` (a binary ``add`` reduction). Every
timing is the best of R runs, the libraries interleaved in one process; the garbage
collector stays on (unless a row says "GC off") but objects alive before a measurement
are frozen out of it (``gc.freeze``), so each run pays for collecting only what it
allocates. Figures are per node, literal leaves included.
"""

from __future__ import annotations

import argparse
import gc
import math
import os
import pickle
import platform
import subprocess
import sys
import time
import tracemalloc
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, replace
from functools import partial
from importlib.metadata import version
from operator import add, pos
from typing import Any

import cloudpickle
from dask import _task_spec as dts
from dask.local import get_sync as dask_get  # what ``dask.get`` is

import hlg

Graph = dict[Any, Any]
FAN_K = 8  # references read by each fan-in task
LIBS = ("hlg", "dask", "plain")


# --------------------------------------------------------------------------------------
# Plain CPython floor: a slotted object per node, no dependency analysis at all.


class PlainRef:
    """A bare reference: one slot."""

    __slots__ = ("key",)

    def __init__(self, key: Any) -> None:
        self.key = key


class PlainData:
    """A bare literal node."""

    __slots__ = ("key", "value")

    def __init__(self, key: Any, value: Any) -> None:
        self.key = key
        self.value = value

    def __call__(self, values: dict[Any, Any]) -> Any:
        return self.value


def _plain_value(arg: Any, values: dict[Any, Any]) -> Any:
    if type(arg) is PlainRef:
        return values[arg.key]
    if type(arg) is list:
        return [values[ref.key] for ref in arg]
    return arg


class PlainTask:
    """A slotted task that stores its arguments and never looks at them until it runs."""

    __slots__ = ("args", "func", "key")

    def __init__(self, key: Any, func: Callable[..., Any], *args: Any) -> None:
        self.key = key
        self.func = func
        self.args = args

    def __call__(self, values: dict[Any, Any]) -> Any:
        return self.func(*[_plain_value(a, values) for a in self.args])


def plain_get(graph: Graph, keys: list[Any]) -> list[Any]:
    """Run every node in insertion order (topological for our shapes), keeping all results."""
    values: dict[Any, Any] = {}
    for key, node in graph.items():
        values[key] = node(values)
    return [values[k] for k in keys]


# --------------------------------------------------------------------------------------
# How each library spells graph nodes; the shape builders are shared by all of them.


def _legacy_task(key: Any, func: Callable[..., Any], *args: Any) -> tuple[Any, ...]:
    return (func, *args)


def _legacy_data(key: Any, value: Any) -> Any:
    return value


def _legacy_ref(key: Any) -> Any:
    return key


@dataclass(frozen=True)
class Lib:
    """The node constructors of one library."""

    name: str
    task: Callable[..., Any]
    ref: Callable[[Any], Any]
    data: Callable[[Any, Any], Any]
    # How a list of references becomes one argument; None: pass the plain list.
    wrap_refs: Callable[..., Any] | None = None


HLG = Lib("hlg", hlg.Task, hlg.TaskRef, hlg.DataNode)
# dask does not look inside plain lists (dask#11477): a list of refs must be a List node.
DASK = Lib("dask", dts.Task, dts.TaskRef, dts.DataNode, dts.List)
PLAIN = Lib("plain", PlainTask, PlainRef, PlainData)
LEGACY = Lib("legacy", _legacy_task, _legacy_ref, _legacy_data)
# The same dict and keys with None for every node: what "nodes only" memory subtracts.
KEYS_ONLY = Lib("keys", lambda key, func, *args: None, _legacy_ref, lambda key, value: None)
BUILD_LIBS = {"hlg": HLG, "dask": DASK, "plain": PLAIN}


def build_chain(lib: Lib, n: int) -> Graph:
    """Node i adds 1 to node i-1; node 0 is the literal 0."""
    task, ref = lib.task, lib.ref
    prev = ("chain", 0)
    graph = {prev: lib.data(prev, 0)}
    for i in range(1, n):
        key = ("chain", i)
        graph[key] = task(key, add, ref(prev), 1)
        prev = key
    return graph


def build_fan_in(lib: Lib, n: int) -> Graph:
    """n//2 literal leaves, then tasks that each ``sum`` a list of FAN_K leaf references."""
    task, ref, wrap = lib.task, lib.ref, lib.wrap_refs
    leaves = n // 2
    graph = {}
    for i in range(leaves):
        key = ("leaf", i)
        graph[key] = lib.data(key, i)
    for j in range(n - leaves):
        key = ("fan", j)
        refs = [ref(("leaf", (j * FAN_K + m) % leaves)) for m in range(FAN_K)]
        graph[key] = task(key, sum, refs if wrap is None else wrap(*refs))
    return graph


def build_tree(lib: Lib, n: int) -> Graph:
    """A binary ``add`` reduction over (n+1)//2 literal leaves (2·leaves - 1 nodes)."""
    task, ref = lib.task, lib.ref
    graph = {}
    level = []
    for i in range((n + 1) // 2):
        key = ("tree", 0, i)
        graph[key] = lib.data(key, i)
        level.append(key)
    depth = 0
    while len(level) > 1:
        depth += 1
        above = []
        for i in range(0, len(level) - 1, 2):
            key = ("tree", depth, i // 2)
            graph[key] = task(key, add, ref(level[i]), ref(level[i + 1]))
            above.append(key)
        if len(level) % 2:
            above.append(level[-1])
        level = above
    return graph


def outputs(graph: Graph) -> list[Any]:
    """The keys to compute: every fan-in task, or the last node (chain end, tree root)."""
    last = next(reversed(graph))
    if last[0] == "fan":
        return [k for k in graph if k[0] == "fan"]
    return [last]


SHAPES: dict[str, Callable[[Lib, int], Graph]] = {
    "chain": build_chain,
    "fan-in": build_fan_in,
    "tree": build_tree,
}


# --------------------------------------------------------------------------------------
# Measurement primitives.


def _time_once(fn: Callable[[], object], gc_off: bool) -> float:
    gc.collect()
    if gc_off:
        gc.disable()
    try:
        start = time.perf_counter()
        result = fn()
        elapsed = time.perf_counter() - start
    finally:
        if gc_off:
            gc.enable()
    del result  # freed outside the timed region
    return elapsed


def race(
    fns: Mapping[str, Callable[[], object]], repeat: int, gc_off: bool = False
) -> dict[str, float]:
    """Best time in seconds of each function over ``repeat`` interleaved rounds.

    Objects alive before the race (the fixtures: other graphs, pickled bytes) are frozen
    out of the collector, so a timed run pays only for the garbage collection of the
    objects it creates itself, whichever library's fixtures happen to be alive.
    """
    best = dict.fromkeys(fns, math.inf)
    names = list(fns)
    gc.collect()
    gc.freeze()
    try:
        for r in range(repeat):
            shift = r % len(names)  # rotate who goes first, so no library always runs cold
            for name in names[shift:] + names[:shift]:
                best[name] = min(best[name], _time_once(fns[name], gc_off))
    finally:
        gc.unfreeze()
    return best


def retained_bytes(build: Callable[[], Graph]) -> float:
    """Bytes still allocated after building (tracemalloc), per node."""
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    graph = build()
    gc.collect()
    after = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    return (after - before) / len(graph)


def tracked_objects(build: Callable[[], Graph]) -> float:
    """GC-tracked objects that the built graph adds, per node (after a full collection)."""
    gc.collect()
    before = len(gc.get_objects())
    graph = build()
    gc.collect()
    return (len(gc.get_objects()) - before) / len(graph)


def read_dependencies(graph: Graph) -> int:
    """Read ``.dependencies`` of every node; return how many keys they name in total."""
    total = 0
    for node in graph.values():
        total += len(node.dependencies)
    return total


def read_dependency_tuples(graph: Graph) -> int:
    """Like :func:`read_dependencies` with hlg's ``.dependency_tuple`` (what schedulers read)."""
    total = 0
    for node in graph.values():
        total += len(node.dependency_tuple)
    return total


# --------------------------------------------------------------------------------------
# The report.

TARGETS = {  # hlg/dask ratio to reach, from the issue
    "build, GC on": 0.5,
    "convert_legacy_graph": 0.5,
    "memory retained": 0.5,
    "pickle size": 1.0,
    "cloudpickle size": 1.0,
    "sync get": 0.25,
}


@dataclass
class Row:
    """One operation on one shape: the figure of each library."""

    operation: str
    shape: str
    unit: str
    values: dict[str, float]

    @property
    def ratio(self) -> float:
        return self.values["hlg"] / self.values["dask"]

    @property
    def status(self) -> str:
        target = TARGETS.get(self.operation)
        if target is None:
            return ""
        return "PASS" if self.ratio <= target else "MISS"

    def cells(self) -> list[str]:
        target = TARGETS.get(self.operation)
        return [
            self.operation,
            self.shape,
            self.unit,
            *(_fmt(self.values.get(lib)) for lib in LIBS),
            f"{self.ratio:.2f}",
            "" if target is None else f"≤ {target:g}",
            self.status,
        ]


HEADER = ["operation", "shape", "unit", *LIBS, "hlg/dask", "target", "status"]


def _fmt(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:.3g}" if value < 100 else f"{value:.0f}"


def per_task_us(seconds: dict[str, float], n: int) -> dict[str, float]:
    """Seconds for ``n`` nodes -> microseconds per node."""
    return {lib: s / n * 1e6 for lib, s in seconds.items()}


def render_text(rows: list[Row]) -> str:
    table = [HEADER] + [row.cells() for row in rows]
    widths = [max(len(line[i]) for line in table) for i in range(len(HEADER))]
    lines = [
        "  ".join(cell.ljust(w) for cell, w in zip(line, widths, strict=True)).rstrip()
        for line in table
    ]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def render_markdown(rows: list[Row]) -> str:
    table = [HEADER] + [row.cells() for row in rows]
    lines = ["| " + " | ".join(line) + " |" for line in table]
    lines.insert(1, "|" + "|".join("---" for _ in HEADER) + "|")
    return "\n".join(lines)


def _git_revision() -> str:
    """The commit of the hlg checkout, marked ``+dirty`` when hlg/ has local changes."""
    root = os.path.dirname(os.path.dirname(os.path.abspath(hlg.__file__)))
    try:
        head = subprocess.run(
            ["git", "-C", root, "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        changes = subprocess.run(
            ["git", "-C", root, "status", "--porcelain", "--", "hlg"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return head + ("+dirty" if changes else "")


def environment(n: int, repeat: int) -> str:
    """One paragraph naming the run, the machine and the versions (call it at the start)."""
    machine = (
        f"Python {platform.python_version()} on {platform.machine()} "
        f"({os.cpu_count()} CPUs, load average at start {os.getloadavg()[0]:.1f})"
    )
    versions = (
        f"hlg {version('hlg')} (git {_git_revision()}), dask {version('dask')}, "
        f"numpy {version('numpy')}, cloudpickle {version('cloudpickle')}"
    )
    return f"N={n} nodes per shape, best of {repeat}; {machine}; {versions}"


# --------------------------------------------------------------------------------------
# The benchmarks of one shape.


_START = time.perf_counter()


def _log(message: str) -> None:
    print(f"{time.perf_counter() - _START:6.1f} s  {message}", file=sys.stderr, flush=True)


def bench_build(shape: str, n: int, repeat: int) -> list[Row]:
    build = SHAPES[shape]
    fns = {name: partial(build, lib, n) for name, lib in BUILD_LIBS.items()}
    size = len(build(KEYS_ONLY, n))
    rows = []
    for label, gc_off in (("build, GC on", False), ("build, GC off", True)):
        seconds = race(fns, repeat, gc_off=gc_off)
        rows.append(Row(label, shape, "µs/task", per_task_us(seconds, size)))
    return rows


def bench_footprint(shape: str, n: int) -> list[Row]:
    build = SHAPES[shape]
    memory: dict[str, float] = {}
    objects: dict[str, float] = {}
    for name, lib in BUILD_LIBS.items():
        build(lib, 1000)  # warm up first-call caches so they are not counted
        memory[name] = retained_bytes(partial(build, lib, n))
        objects[name] = tracked_objects(partial(build, lib, n))
    keys_and_dict = retained_bytes(partial(build, KEYS_ONLY, n))
    nodes = {name: value - keys_and_dict for name, value in memory.items()}
    return [
        Row("memory retained", shape, "B/task", memory),
        Row("memory, nodes only", shape, "B/task", nodes),
        Row("GC-tracked objects", shape, "obj/task", objects),
    ]


def bench_dependencies(shape: str, graphs: dict[str, Graph], repeat: int) -> list[Row]:
    hlg_graph, dask_graph = graphs["hlg"], graphs["dask"]
    totals = {read_dependencies(hlg_graph), read_dependency_tuples(hlg_graph)}
    if totals != {read_dependencies(dask_graph)}:
        raise AssertionError(f"{shape}: dependency counts differ")
    variants = {"dependencies": read_dependencies, "dependency_tuple": read_dependency_tuples}
    rows = []
    for label, read in variants.items():
        fns = {
            "hlg": partial(read, hlg_graph),
            "dask": partial(read_dependencies, dask_graph),  # dask has only .dependencies
        }
        seconds = race(fns, repeat)
        rows.append(Row(label, shape, "µs/task", per_task_us(seconds, len(hlg_graph))))
    return rows


def _same_dependencies(a: Graph, b: Graph) -> bool:
    return a.keys() == b.keys() and all(set(a[k].dependencies) == set(b[k].dependencies) for k in a)


def bench_convert(shape: str, n: int, repeat: int) -> list[Row]:
    legacy = SHAPES[shape](LEGACY, n)
    converters = {"hlg": hlg.convert_legacy_graph, "dask": dts.convert_legacy_graph}
    if not _same_dependencies(converters["hlg"](legacy), converters["dask"](legacy)):
        raise AssertionError(f"{shape}: the converted graphs disagree on dependencies")
    fns = {name: partial(convert, legacy) for name, convert in converters.items()}
    rows = []
    for label, gc_off in (("convert_legacy_graph", False), ("convert, GC off", True)):
        seconds = race(fns, repeat, gc_off=gc_off)
        rows.append(Row(label, shape, "µs/task", per_task_us(seconds, len(legacy))))
    return rows


def cloudpickle_size(graph: Graph) -> float:
    """Bytes per node of ``cloudpickle.dumps`` (protocol 5)."""
    return len(cloudpickle.dumps(graph, protocol=5)) / len(graph)


def bench_pickle(shape: str, n: int, graphs: dict[str, Graph], repeat: int) -> list[Row]:
    size = len(graphs["hlg"])
    plain = SHAPES[shape](PLAIN, n)  # plain: sizes only
    blobs = {name: pickle.dumps(g, protocol=5) for name, g in graphs.items()}
    pickled = {name: len(blob) / size for name, blob in blobs.items()}
    pickled["plain"] = len(pickle.dumps(plain, protocol=5)) / size
    clouds = {name: cloudpickle_size(g) for name, g in [*graphs.items(), ("plain", plain)]}
    del plain
    timed = {
        "pickle.dumps": {k: partial(pickle.dumps, g, protocol=5) for k, g in graphs.items()},
        "pickle.loads": {k: partial(pickle.loads, b) for k, b in blobs.items()},
    }
    rows = [
        Row("pickle size", shape, "B/task", pickled),
        Row("cloudpickle size", shape, "B/task", clouds),
    ]
    for label, fns in timed.items():
        rows.append(Row(label, shape, "µs/task", per_task_us(race(fns, repeat), size)))
    return rows


def leaves_as_tasks(lib: Lib) -> Lib:
    """The same library, with literal leaves built as tasks ``pos(value)``.

    ``dask.get`` re-copies its cache of literal results for every task it prepares
    (``task.dependencies - set(cache)`` in ``dask.local.start_state_from_dask``), so
    literal leaves make it O(tasks x leaves). Leaves that are tasks keep it linear and
    the comparison about running tasks.
    """
    task = lib.task
    return replace(lib, data=lambda key, value: task(key, pos, value))


Runners = dict[str, Callable[[], Iterable[Any]]]


def get_runners(shape: str, n: int) -> tuple[Runners, int]:
    """Per library, a function computing the outputs of its ``shape`` graph; the size."""
    build = SHAPES[shape]
    graphs = {name: build(leaves_as_tasks(lib), n) for name, lib in BUILD_LIBS.items()}
    keys = outputs(graphs["hlg"])
    runners: Runners = {
        "hlg": partial(hlg.get, graphs["hlg"], keys),
        "dask": partial(dask_get, graphs["dask"], keys),
        "plain": partial(plain_get, graphs["plain"], keys),
    }
    return runners, len(graphs["hlg"])


def bench_get(shape: str, n: int, repeat: int) -> Row:
    # Check the results on a small graph: a full-size dask run costs seconds.
    results = [list(run()) for run in get_runners(shape, 4 * FAN_K)[0].values()]
    if any(result != results[0] for result in results):
        raise AssertionError(f"{shape}: the libraries computed different results")
    runners, size = get_runners(shape, n)
    return Row("sync get", shape, "µs/task", per_task_us(race(runners, repeat), size))


def bench_shape(shape: str, n: int, repeat: int) -> list[Row]:
    """Every measurement of one shape; graphs are built fresh and dropped at the end."""
    _log(f"[{shape}] build")
    rows = bench_build(shape, n, repeat)
    _log(f"[{shape}] memory and GC objects")
    rows += bench_footprint(shape, n)
    graphs = {name: SHAPES[shape](lib, n) for name, lib in (("hlg", HLG), ("dask", DASK))}
    _log(f"[{shape}] dependencies")
    rows += bench_dependencies(shape, graphs, repeat)
    _log(f"[{shape}] convert_legacy_graph")
    rows += bench_convert(shape, n, repeat)
    _log(f"[{shape}] pickle")
    rows += bench_pickle(shape, n, graphs, repeat)
    del graphs
    _log(f"[{shape}] sync get")
    rows.append(bench_get(shape, n, repeat))
    return rows


OPERATIONS = [
    "build, GC on",
    "build, GC off",
    "dependencies",
    "dependency_tuple",
    "convert_legacy_graph",
    "convert, GC off",
    "memory retained",
    "memory, nodes only",
    "GC-tracked objects",
    "pickle size",
    "cloudpickle size",
    "pickle.dumps",
    "pickle.loads",
    "sync get",
]


def main(argv: list[str] | None = None) -> None:
    """Parse the command line, run every shape, print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=100_000, help="nodes per shape (100000)")
    parser.add_argument("--repeat", type=int, default=5, help="runs per timing, best kept (5)")
    parser.add_argument("--markdown", action="store_true", help="print a markdown table")
    parser.add_argument(
        "--shape", choices=list(SHAPES), action="append", help="only these shapes (all)"
    )
    args = parser.parse_args(argv)
    if args.n < 2 * FAN_K or args.repeat < 1:
        parser.error(f"need --n >= {2 * FAN_K} and --repeat >= 1")
    header = environment(args.n, args.repeat)
    shapes = args.shape or list(SHAPES)
    rows = [row for shape in shapes for row in bench_shape(shape, args.n, args.repeat)]
    rows.sort(key=lambda row: (OPERATIONS.index(row.operation), list(SHAPES).index(row.shape)))
    render = render_markdown if args.markdown else render_text
    print(f"{header}; load average at end {os.getloadavg()[0]:.1f}")
    print()
    print(render(rows))
    _log("done")


if __name__ == "__main__":
    main()
