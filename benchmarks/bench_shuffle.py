"""Side-by-side benchmarks of hlg's Shuffle and TreeReduction and dask's equivalents.

Shuffle: ``n -> n`` partitions with ``max_branch`` 32. dask's side is its staged task
shuffle (``dask.dataframe`` ``shuffle(..., shuffle_method="tasks")``): the graph builder
alone (``TaskShuffle._layer()``, legacy tuples) and the whole ``__dask_graph__()`` of the
shuffled collection (which also converts to Task objects). hlg's side is one
``layers.Shuffle`` layer: building it, culling it to one output partition, building
every task (``materialize``) and packing it.

Tree reduction: ``n`` partitions, ``split_every`` 8; dask's side is ``da.reduction``
(the graph of ``x.sum(split_every=8)`` over ``n`` chunks), hlg's one ``TreeReduction``.

Every figure is the best of ``--repeat`` runs, both libraries in the same process;
ratios are hlg / dask.

    python benchmarks/bench_shuffle.py                  # 1,000 and 10,000 partitions
    python benchmarks/bench_shuffle.py --partitions 1000 --repeat 5 --markdown
"""

from __future__ import annotations

import argparse
import gc
import platform
import sys
import time
from collections.abc import Callable
from typing import Any

import dask
import dask.array as da
import dask.dataframe as dd
import numpy as np
import pandas as pd
from dask.optimization import cull as dask_cull

import hlg
from hlg import layers

from _common import ratio

Row = tuple[str, int, str, str, str]


def split(part: Any, k: int, stage: int) -> list[Any]:
    return [part] * k


def concat(pieces: list[Any]) -> Any:
    return pieces


def best(func: Callable[[], Any], repeat: int) -> tuple[float, Any]:
    times = []
    result = None
    for _ in range(repeat):
        gc.collect()
        start = time.perf_counter()
        result = func()
        times.append(time.perf_counter() - start)
        if len(times) < repeat:
            result = None  # free the graph before the next run
    return min(times), result


def fmt(seconds: float) -> str:
    if seconds < 1e-3:
        return f"{seconds * 1e6:.0f} µs"
    if seconds < 1:
        return f"{seconds * 1e3:.1f} ms"
    return f"{seconds:.2f} s"


def dask_task_shuffle(n: int, max_branch: int) -> tuple[Any, Any]:
    """The shuffled collection and its TaskShuffle expression (the graph builder)."""
    frame = dd.from_pandas(pd.DataFrame({"x": np.arange(n)}), npartitions=n)
    with dask.config.set({"dataframe.shuffle.max_branch": max_branch}):
        shuffled = frame.shuffle("x", npartitions=n, shuffle_method="tasks")
    lowered = shuffled.expr.lower_completely()
    builder = next(e for e in lowered.walk() if type(e).__name__ == "TaskShuffle")
    return shuffled, builder


def shuffle_rows(n: int, max_branch: int, repeat: int) -> list[Row]:
    rows: list[Row] = []
    shuffled, builder = dask_task_shuffle(n, max_branch)
    t_dask_layer, dsk = best(builder._layer, repeat)
    t_dask_graph, full = best(lambda: dict(shuffled.__dask_graph__()), max(1, repeat // 2))
    dask_tasks = len(dsk)
    pieces = sum(1 for k in dsk if isinstance(k, tuple) and str(k[0]).startswith("split-"))
    out_key = (builder._name, n // 2)
    t_dask_cull, _ = best(lambda: dask_cull(dsk, [out_key]), repeat)
    culled_dask = len(dask_cull(dsk, [out_key])[0])
    del full

    def build() -> layers.Shuffle:
        return layers.Shuffle("y", "x", n, n, split, concat, max_branch=max_branch)

    t_build, layer = best(build, repeat)
    t_cull, culled = best(lambda: layer.cull([("y", n // 2)]), repeat)
    t_mat, tasks = best(layer.materialize, repeat)
    ntasks = len(tasks)
    del tasks
    src = layers.blockwise(np.arange, "x", "i", layers.BlockIndex((n,)), "i")
    graph = hlg.HighLevelGraph({"x": src, "y": layer}, {"y": ["x"]})
    t_pack, data = best(lambda: hlg.pack(graph), repeat)
    t_unpack, packed = best(lambda: hlg.unpack(data), repeat)
    per_h = t_mat / ntasks
    per_d = t_dask_layer / dask_tasks
    rows += [
        (
            "shuffle: tasks",
            n,
            f"{ntasks:,}",
            f"{dask_tasks:,} ({pieces:,} getitem)",
            ratio(ntasks, dask_tasks),
        ),
        (
            "shuffle: build the layer / dask builder",
            n,
            fmt(t_build),
            fmt(t_dask_layer),
            ratio(t_build, t_dask_layer),
        ),
        (
            "shuffle: materialize every task / dask builder",
            n,
            fmt(t_mat),
            fmt(t_dask_layer),
            ratio(t_mat, t_dask_layer),
        ),
        (
            "shuffle: per task, materialize / dask builder",
            n,
            fmt(per_h),
            fmt(per_d),
            ratio(per_h, per_d),
        ),
        ("shuffle: dask __dask_graph__() whole collection", n, "-", fmt(t_dask_graph), "-"),
        (
            "shuffle: cull to one output (tasks kept)",
            n,
            f"{fmt(t_cull)} ({len(culled[0]):,})",
            f"{fmt(t_dask_cull)} ({culled_dask:,})",
            ratio(t_cull, t_dask_cull),
        ),
        ("shuffle: pack input + shuffle (bytes)", n, f"{fmt(t_pack)} ({len(data):,} B)", "-", "-"),
        (
            "shuffle: unpack on the scheduler",
            n,
            f"{fmt(t_unpack)} ({len(packed):,} tasks)",
            "-",
            "-",
        ),
    ]
    return rows


def reduction_rows(n: int, split_every: int, repeat: int) -> list[Row]:
    x = da.ones(n, chunks=1)

    def dask_graph() -> dict[Any, Any]:
        return dict(x.sum(split_every=split_every).__dask_graph__())

    t_dask, dsk = best(dask_graph, repeat)
    dask_tasks = len(dsk) - n  # without the ones() chunks

    def build() -> layers.TreeReduction:
        return layers.TreeReduction("r", "x", n, np.sum, np.sum, np.sum, split_every=split_every)

    t_build, layer = best(build, repeat)
    t_mat, tasks = best(layer.materialize, repeat)
    src = layers.blockwise(np.ones, "x", "i", layers.BlockIndex((n,)), "i")
    data = hlg.pack(hlg.HighLevelGraph({"x": src, "r": layer}, {"r": ["x"]}))
    return [
        (
            "tree reduction: tasks",
            n,
            f"{len(tasks):,}",
            f"{dask_tasks:,}",
            ratio(len(tasks), dask_tasks),
        ),
        (
            "tree reduction: build + materialize / dask graph",
            n,
            fmt(t_build + t_mat),
            fmt(t_dask),
            ratio(t_build + t_mat, t_dask),
        ),
        ("tree reduction: packed bytes (input + reduction)", n, f"{len(data):,} B", "-", "-"),
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--partitions", type=int, nargs="+", default=[1000, 10_000])
    parser.add_argument("--max-branch", type=int, default=32)
    parser.add_argument("--split-every", type=int, default=8)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--markdown", action="store_true")
    args = parser.parse_args(argv)
    rows: list[Row] = []
    for n in args.partitions:
        rows += shuffle_rows(n, args.max_branch, args.repeat)
        rows += reduction_rows(n, args.split_every, args.repeat)
    print(
        f"python {platform.python_version()}, hlg {hlg.__version__}, dask {dask.__version__}, "
        f"pandas {pd.__version__}; best of {args.repeat}"
    )
    header = ("measure", "partitions", "hlg", "dask", "hlg / dask")
    if args.markdown:
        print("| " + " | ".join(header) + " |")
        print("|---|---:|---:|---:|---:|")
        for row in rows:
            print(f"| {row[0]} | {row[1]:,} | {row[2]} | {row[3]} | {row[4]} |")
    else:
        for row in rows:
            print(f"{row[0]:<50} {row[1]:>7,} {row[2]:>24} {row[3]:>28} {row[4]:>8}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
