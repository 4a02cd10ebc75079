"""Side-by-side benchmarks of hlg's schedulers and ordering against dask's, in one run.

Three parts, each figure the best of ``--repeat`` runs, ratios hlg / dask:

* scheduling overhead per task on trivial tasks (``inc``/``add`` on ints): ``hlg.compute``
  sync / threads / processes against ``dask.get`` / ``dask.threaded.get`` /
  ``dask.multiprocessing.get``, on the same graph shapes (chain, binary tree, wide);
* ordering: ``hlg.order`` against ``dask.order.order`` — time per task and the peak number
  of results held when the tasks run one by one in that order (simulated identically);
* a numpy workload, ``(x + x.T).sum()`` on blocks of 500 x 500 (blocks made with
  GIL-releasing ufuncs), with threads, against ``dask.array`` with its threaded scheduler
  (and both single-threaded).

    python benchmarks/bench_schedulers.py             # the recorded run
    python benchmarks/bench_schedulers.py --markdown  # tables for docs/benchmarks.md
    python benchmarks/bench_schedulers.py --quick     # smaller sizes, one repeat
"""

from __future__ import annotations

import argparse
import os
import platform
import random
import sys
from operator import add
from typing import Any

import dask
import dask.array as da
import dask.multiprocessing
import dask.order
import dask.threaded
import numpy as np
from dask._task_spec import DataNode as DData
from dask._task_spec import Task as DTask
from dask._task_spec import TaskRef as DRef

import hlg
from hlg import layers

from _common import best

Row = tuple[str, str, float, float, str]


def inc(x: int) -> int:
    return x + 1


def first(*xs: Any) -> Any:
    return xs[0]


# -- graph shapes, built by one function for both libraries --------------------------------


def chain(n: int, T: Any, R: Any, D: Any) -> tuple[dict[Any, Any], Any]:
    g = {("c", 0): D(("c", 0), 0)}
    for i in range(1, n):
        g[("c", i)] = T(("c", i), inc, R(("c", i - 1)))
    return g, ("c", n - 1)


def tree(n: int, T: Any, R: Any, D: Any) -> tuple[dict[Any, Any], Any]:
    g: dict[Any, Any] = {}
    level = []
    for i in range(n // 2):
        g[("l", i)] = T(("l", i), inc, i)
        level.append(("l", i))
    depth = 0
    while len(level) > 1:
        depth += 1
        nxt = []
        for j in range(0, len(level) - 1, 2):
            key = (f"t{depth}", j // 2)
            g[key] = T(key, add, R(level[j]), R(level[j + 1]))
            nxt.append(key)
        if len(level) % 2:
            nxt.append(level[-1])
        level = nxt
    return g, level[0]


def wide(n: int, T: Any, R: Any, D: Any) -> tuple[dict[Any, Any], Any]:
    """n/2 independent pairs literal -> inc, all read by one final task in groups of 100."""
    g: dict[Any, Any] = {}
    half = n // 2
    for i in range(half):
        g[("a", i)] = D(("a", i), i)
        g[("b", i)] = T(("b", i), inc, R(("a", i)))
    groups = []
    for j in range(0, half, 100):
        key = ("g", j)
        g[key] = T(key, first, *[R(("b", i)) for i in range(j, min(half, j + 100))])
        groups.append(key)
    g["out"] = T("out", first, *[R(k) for k in groups])
    return g, "out"


SHAPES = {"chain": chain, "tree": tree, "wide": wide}


def overhead(n: int, repeat: int) -> list[Row]:
    rows: list[Row] = []
    for name, shape in SHAPES.items():
        hg, hk = shape(n, hlg.Task, hlg.TaskRef, hlg.DataNode)
        dg, dk = shape(n, DTask, DRef, DData)
        assert hlg.compute(hg, hk, scheduler="sync") == dask.get(dg, dk)
        size = f"{len(hg):,}"
        pairs = [
            ("sync", "dask.get", dask.get),
            ("threads", "dask.threaded.get", dask.threaded.get),
        ]
        for ours, theirs, get in pairs:
            t_h = best(lambda g=hg, k=hk, s=ours: hlg.compute(g, k, scheduler=s), repeat)
            t_d = best(lambda g=dg, k=dk, f=get: f(g, k), repeat)
            t_h, t_d = t_h / len(hg), t_d / len(dg)
            rows.append((f"{name}: {ours} vs {theirs}", size, t_h * 1e6, t_d * 1e6, "µs/task"))
        print(f"  {name} local done", file=sys.stderr)
    return rows


def processes(n_proc: int, repeat: int) -> list[Row]:
    rows: list[Row] = []
    workers = os.cpu_count() or 1
    one_h = {"x": hlg.Task("x", inc, 1)}
    one_d = {"x": DTask("x", inc, 1)}
    start_h = best(lambda: hlg.compute(one_h, "x", scheduler="processes"), repeat)
    start_d = best(lambda: dask.multiprocessing.get(one_d, "x", num_workers=workers), repeat)
    rows.append(("processes: start-up (1 task)", "1", start_h * 1e3, start_d * 1e3, "ms"))
    for name, shape in SHAPES.items():
        hg, hk = shape(n_proc, hlg.Task, hlg.TaskRef, hlg.DataNode)
        dg, dk = shape(n_proc, DTask, DRef, DData)
        size = f"{len(hg):,}"
        packed = hlg.unpack(hlg.pack(hg, [hk]))
        t_d = best(
            lambda dg=dg, dk=dk: dask.multiprocessing.get(dg, dk, num_workers=workers), repeat
        )
        t_e = best(lambda hg=hg, hk=hk: hlg.compute(hg, hk, scheduler="processes"), repeat)
        t_p = best(lambda p=packed, hk=hk: hlg.compute(p, hk, scheduler="processes"), repeat)
        per_d = (t_d - start_d) / len(dg) * 1e6
        rows.append(
            (
                f"{name}: processes, dict (packs) vs dask.multiprocessing.get",
                size,
                (t_e - start_h) / len(hg) * 1e6,
                per_d,
                "µs/task",
            )
        )
        rows.append(
            (
                f"{name}: processes, PackedGraph vs dask.multiprocessing.get",
                size,
                (t_p - start_h) / len(hg) * 1e6,
                per_d,
                "µs/task",
            )
        )
        print(f"  {name} processes done", file=sys.stderr)
    return rows


# -- ordering -------------------------------------------------------------------------------


Spec = dict[Any, tuple[Any, ...]]


def tree_spec(n: int, split: int) -> tuple[Spec, list[Any]]:
    spec: Spec = {("x", i): () for i in range(n)}
    level = list(spec)
    depth = 0
    while len(level) > 1:
        depth += 1
        nxt = []
        for j in range(0, len(level), split):
            key = (f"r{depth}", j // split)
            spec[key] = tuple(level[j : j + split])
            nxt.append(key)
        level = nxt
    return spec, level


def xxt_spec(n: int) -> tuple[Spec, list[Any]]:
    """(x + x.T).sum() on n x n blocks: add, per-block sum, then a 16-ary tree (as dask)."""
    spec: Spec = {("x", i, j): () for i in range(n) for j in range(n)}
    for i in range(n):
        for j in range(n):
            spec[("a", i, j)] = (("x", i, j), ("x", j, i)) if i != j else (("x", i, j),)
            spec[("s", i, j)] = (("a", i, j),)
    level = [("s", i, j) for i in range(n) for j in range(n)]
    depth = 0
    while len(level) > 1:
        depth += 1
        nxt = []
        for j in range(0, len(level), 16):
            key = (f"sum{depth}", j // 16)
            spec[key] = tuple(level[j : j + 16])
            nxt.append(key)
        level = nxt
    return spec, level


def random_spec(n: int, seed: int) -> tuple[Spec, list[Any]]:
    rnd = random.Random(seed)
    spec: Spec = {}
    keys: list[Any] = []
    for i in range(n):
        key = ("n", i)
        if i < 10 or rnd.random() < 0.05:
            spec[key] = ()
        else:
            window = keys[max(0, i - 50) :]
            spec[key] = tuple(dict.fromkeys(rnd.choice(window) for _ in range(rnd.randint(1, 4))))
        keys.append(key)
    read = {d for deps in spec.values() for d in deps}
    return spec, [k for k in spec if k not in read]


def shuffle_spec(n: int) -> tuple[Spec, list[Any]]:
    """The tasks of an n -> n ``layers.Shuffle`` (max_branch 32) over n literal partitions."""
    inp = hlg.MaterializedLayer({("inp", i): hlg.DataNode(("inp", i), i) for i in range(n)}, "inp")
    out = layers.Shuffle("out", "inp", n, n, _split, _concat)
    graph = hlg.HighLevelGraph({"inp": inp, "out": out}, {"out": ["inp"]})
    spec: Spec = {}
    for layer in graph.layers.values():
        for key in layer:
            spec[key] = layer.dependency_tuple(key)
    return spec, [("out", q) for q in range(n)]


def _split(part: Any, k: int, stage: int) -> list[Any]:
    return [part] * k


def _concat(parts: list[Any]) -> Any:
    return parts


def peak_held(spec: Spec, priority: dict[Any, int], outputs: list[Any]) -> int:
    readers = dict.fromkeys(spec, 0)
    for deps in spec.values():
        for d in deps:
            readers[d] += 1
    keep = set(outputs)
    held = peak = 0
    for key in sorted(priority, key=priority.__getitem__):
        held += 1
        peak = max(peak, held)
        for d in spec[key]:
            readers[d] -= 1
            if readers[d] == 0 and d not in keep:
                held -= 1
    return peak


def ordering(repeat: int, scale: int) -> list[Row]:
    rows: list[Row] = []
    shapes = {
        f"tree reduction, {10_000 // scale:,} chunks, split 8": tree_spec(10_000 // scale, 8),
        f"(x + x.T).sum(), {100 // scale}x{100 // scale} blocks": xxt_spec(100 // scale),
        "random DAG": random_spec(20_000 // scale, 1),
        f"shuffle, {1_000 // scale:,} partitions": shuffle_spec(1_000 // scale),
    }
    for name, (spec, outputs) in shapes.items():
        hg = {
            k: hlg.DataNode(k, 0) if not deps else hlg.Task(k, first, *map(hlg.TaskRef, deps))
            for k, deps in spec.items()
        }
        dg = {
            k: DData(k, 0) if not deps else DTask(k, first, *map(DRef, deps))
            for k, deps in spec.items()
        }
        size = f"{len(spec):,}"
        t_h = best(lambda hg=hg, outputs=outputs: hlg.order(hg, outputs), repeat)
        t_d = best(lambda dg=dg: dask.order.order(dg), repeat)
        ours = hlg.order(hg, outputs)
        theirs = {k: getattr(v, "priority", v) for k, v in dask.order.order(dg).items()}
        rows.append(
            (f"order time: {name}", size, t_h / len(spec) * 1e6, t_d / len(spec) * 1e6, "µs/task")
        )
        rows.append(
            (
                f"peak results held: {name}",
                size,
                peak_held(spec, ours, outputs),
                peak_held(spec, theirs, outputs),
                "results",
            )
        )
        print(f"  order {name} done", file=sys.stderr)
    return rows


# -- numpy workload -------------------------------------------------------------------------


def block(index: tuple[int, int], size: int) -> np.ndarray:
    """A block made by GIL-releasing numpy work (ufuncs on a large array)."""
    base = np.arange(size * size, dtype=np.float64).reshape(size, size)
    return np.sin(base * (index[0] + 1) + index[1]) * np.cos(base)


def make_block(size: int, block_id: Any = None) -> np.ndarray:
    return block(block_id, size)


def total(*parts: float) -> float:
    return float(sum(parts))


def numpy_workload(n: int, size: int, repeat: int) -> list[Row]:
    nb = n // size
    x = layers.blockwise(block, "x", "ij", layers.BlockIndex((nb, nb)), "ij", size, None)
    y = layers.blockwise(add, "y", "ij", "x", "ij", "x", "ji", numblocks={"x": (nb, nb)})
    s = layers.blockwise(np.sum, "s", "ij", "y", "ij", numblocks={"y": (nb, nb)})
    parts = [hlg.TaskRef(("s", i, j)) for i in range(nb) for j in range(nb)]
    t = hlg.MaterializedLayer({("t", 0): hlg.Task(("t", 0), total, *parts)}, "t")
    graph = hlg.HighLevelGraph(
        {"x": x, "y": y, "s": s, "t": t}, {"y": ["x"], "s": ["y"], "t": ["s"]}
    )
    arr = da.map_blocks(make_block, size, chunks=((size,) * nb, (size,) * nb), dtype=float)
    expr = (arr + arr.T).sum()
    ours = hlg.compute(graph, ("t", 0))
    theirs = float(expr.compute(scheduler="threads"))
    assert abs(ours - theirs) < 1e-6 * max(1.0, abs(theirs)), (ours, theirs)
    rows: list[Row] = []
    label = f"{n:,}x{n:,} in {size}x{size} blocks"
    for sched in ("threads", "sync"):
        t_h = best(lambda s=sched: hlg.compute(graph, ("t", 0), scheduler=s), repeat)
        t_d = best(lambda s=sched: expr.compute(scheduler=s), repeat)
        rows.append((f"(x + x.T).sum(), {sched}", label, t_h * 1e3, t_d * 1e3, "ms"))
    return rows


def render(rows: list[Row], markdown: bool) -> str:
    lines = []
    if markdown:
        lines.append("| measurement | size | hlg | dask | hlg / dask | unit |")
        lines.append("|---|---:|---:|---:|---:|---|")
    for what, size, h, d, unit in rows:
        r = f"{h / d:.3f}" if d else "-"
        fh = f"{h:,.0f}" if unit == "results" else f"{h:,.2f}"
        fd = f"{d:,.0f}" if unit == "results" else f"{d:,.2f}"
        if markdown:
            lines.append(f"| {what} | {size} | {fh} | {fd} | {r} | {unit} |")
        else:
            lines.append(f"{what:<62} {size:>10} {fh:>12} {fd:>12} {r:>8}  {unit}")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=100_000, help="tasks for sync and threads")
    parser.add_argument("--n-processes", type=int, default=20_000, help="tasks for processes")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="small sizes, one repeat")
    parser.add_argument("--markdown", action="store_true")
    parser.add_argument(
        "--parts",
        nargs="+",
        default=["overhead", "processes", "order", "numpy"],
        help="what to run",
    )
    args = parser.parse_args()
    scale = 1
    if args.quick:
        args.n, args.n_processes, args.repeat, scale = 10_000, 2_000, 1, 4
    print(
        f"# {platform.python_implementation()} {platform.python_version()}, "
        f"{os.cpu_count()} CPUs, hlg {hlg.__version__}, dask {dask.__version__}, "
        f"numpy {np.__version__}",
    )
    rows: list[Row] = []
    if "overhead" in args.parts:
        rows += overhead(args.n, args.repeat)
    if "processes" in args.parts:
        rows += processes(args.n_processes, args.repeat)
    if "order" in args.parts:
        rows += ordering(args.repeat, scale)
    if "numpy" in args.parts:
        rows += numpy_workload(4_000 // scale, 500, args.repeat)
    print(render(rows, args.markdown))
    return 0


if __name__ == "__main__":
    sys.exit(main())
