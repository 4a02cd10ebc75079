"""Side-by-side benchmarks of culling: reductions over everything, rows, one key.

The graph is the chain ``o`` (chunk shapes) -> ``a = o + 1`` -> ``b = a * 2`` ->
``total`` (one blockwise contraction over every block of ``b``: the shape of
``x.sum()``) on an ``n x n`` grid of blocks; dask's is
``((da.ones((n, n), chunks=1) + 1) * 2).sum()``, whose reduction is a tree. Keys are
passed explicitly, as collections pass them. Every figure is the best of ``--repeat``
runs, both libraries measured in the same process; ratios are hlg / dask.

    python benchmarks/bench_cull.py                      # 10,000 / 100,000 / 1,000,000 blocks
    python benchmarks/bench_cull.py --blocks 10000 100000 1000000 4000000 \\
        --dask-max 100000 --markdown
"""

from __future__ import annotations

import argparse
import math
import pickle
import platform
import sys
from operator import add, mul
from typing import Any

import cloudpickle
import dask
import dask.array as da
import numpy as np
from dask.array.optimization import optimize as dask_array_optimize
from dask.core import flatten

import hlg
from hlg import layers

from _common import best, number, print_table, ratio

Row = tuple[str, str, float, float | None, str]
# ``total`` reads every block in one task: above 100,000 blocks that passes the default
# fan-in limit of unpack, so the scheduler side is told to accept it.
LIMITS = hlg.Limits(max_fan_in=10**7)


def hlg_sum_chain(n: int) -> hlg.HighLevelGraph:
    chunks = ((1,) * n, (1,) * n)
    nb = {"o": (n, n)}
    o = layers.blockwise(np.ones, "o", "ij", layers.ChunkShape(chunks), "ij")
    a = layers.blockwise(add, "a", "ij", "o", "ij", 1, None, numblocks=nb)
    b = layers.blockwise(mul, "b", "ij", "a", "ij", 2, None, numblocks={"a": (n, n)})
    total = layers.blockwise(np.sum, "total", "", "b", "ij", numblocks={"b": (n, n)})
    return hlg.HighLevelGraph(
        {"o": o, "a": a, "b": b, "total": total}, {"a": ["o"], "b": ["a"], "total": ["b"]}
    )


def hlg_elementwise_chain(n: int) -> hlg.HighLevelGraph:
    """Four elementwise layers of n x n blocks (4 n² tasks) for the one-key cull."""
    g = hlg_sum_chain(n)
    c = layers.blockwise(add, "c", "ij", "b", "ji", "o", "ij", numblocks={"b": (n, n), "o": (n, n)})
    kept = {k: v for k, v in g.layers.items() if k != "total"}
    deps = {k: v for k, v in g.dependencies.items() if k != "total"}
    return hlg.HighLevelGraph({**kept, "c": c}, {**deps, "c": ["b", "o"]})


def dask_sum(n: int) -> Any:
    return ((da.ones((n, n), chunks=1) + 1) * 2).sum()


def measure(n: int, repeat: int, dask_max: int, per_key_max: int) -> list[Row]:
    blocks = n * n
    size = f"{blocks:,} blocks"
    with_dask = blocks <= dask_max
    rows: list[Row] = []
    g = hlg_sum_chain(n)
    keys = [("total",)]
    passes = [hlg.cull, layers.fuse_blockwise]

    def hlg_pipeline() -> Any:
        optimized = hlg.optimize(g, keys, passes)
        return hlg.unpack(hlg.pack(optimized, keys), LIMITS).cull(keys)

    arr = dask_sum(n) if with_dask else None

    def dask_pipeline() -> Any:
        assert arr is not None
        dkeys = arr.__dask_keys__()
        optimized = dask_array_optimize(arr.__dask_graph__(), dkeys)
        return pickle.loads(cloudpickle.dumps(optimized))

    t_h = best(hlg_pipeline, repeat)
    t_d = best(dask_pipeline, 1) if with_dask else None
    rows.append(
        (
            "sum: optimize + pack(keys) + unpack + cull(keys)",
            size,
            t_h * 1e3,
            t_d and t_d * 1e3,
            "ms",
        )
    )
    t_h = best(lambda: g.cull(keys), repeat)
    t_d = None
    if with_dask:
        assert arr is not None
        dg, dkeys = arr.__dask_graph__(), set(flatten(arr.__dask_keys__()))
        t_d = best(lambda: dg.cull(dkeys), repeat)
    rows.append(("sum: graph.cull(keys)", size, t_h * 1e3, t_d and t_d * 1e3, "ms"))
    if blocks <= per_key_max:
        t_h = best(lambda: g._cull(keys, symbolic=False), 1)
        rows.append(("sum: per-key cull (the fallback)", size, t_h * 1e3, None, "ms"))

    # every block of b requested explicitly (x + 1 computed whole): O(keys) by nature
    every = [[("b", i, j) for j in range(n)] for i in range(n)]
    t_h = best(
        lambda: hlg.unpack(hlg.pack(hlg.optimize(g, every, passes), every), LIMITS).cull(every), 1
    )
    t_d = None
    if with_dask:
        b = (da.ones((n, n), chunks=1) + 1) * 2

        def dask_every() -> Any:
            optimized = dask_array_optimize(b.__dask_graph__(), b.__dask_keys__())
            return pickle.loads(cloudpickle.dumps(optimized))

        t_d = best(dask_every, 1)
    rows.append(
        (
            "all keys of b: optimize + pack(keys) + unpack + cull(keys)",
            size,
            t_h * 1e3,
            t_d and t_d * 1e3,
            "ms",
        )
    )

    # one row of blocks of b: explicit keys in, O(row) work
    row = [("b", n // 2, j) for j in range(n)]
    t_h = best(lambda: g.cull(row), repeat)
    t_d = None
    if with_dask:
        b = (da.ones((n, n), chunks=1) + 1) * 2
        bg = b.__dask_graph__()
        drow = {(b.name, n // 2, j) for j in range(n)}
        t_d = best(lambda: bg.cull(drow), repeat)
    rows.append((f"cull to one row ({n:,} keys)", size, t_h * 1e3, t_d and t_d * 1e3, "ms"))
    t_h = best(lambda: hlg.unpack(hlg.pack(g, row), LIMITS).cull(row), repeat)
    rows.append((f"pack(row) + unpack + cull(row) ({n:,} keys)", size, t_h * 1e3, None, "ms"))
    return rows


def one_key(n: int, repeat: int) -> Row:
    g = hlg_elementwise_chain(n)
    key = ("c", n // 2, n // 3)
    t_h = best(lambda: g.cull([key]), repeat)
    x = da.ones((n, n), chunks=1)  # dask culls its blockwise layers symbolically too
    arr = ((x + 1) * 2).T + x
    dg = arr.__dask_graph__()
    t_d = best(lambda: dg.cull({(arr.name, n // 2, n // 3)}), repeat)
    return ("cull to one key", f"{len(g):,} tasks", t_h * 1e3, t_d and t_d * 1e3, "ms")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--blocks", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--dask-max", type=int, default=40_000, help="largest size run on dask")
    parser.add_argument(
        "--per-key-max", type=int, default=100_000, help="largest size culled key by key too"
    )
    parser.add_argument("--markdown", action="store_true")
    args = parser.parse_args()
    print(
        f"# python {platform.python_version()}, {platform.machine()}, hlg {hlg.__version__}, "
        f"dask {dask.__version__}, numpy {np.__version__}"
    )
    rows: list[Row] = []
    for blocks in args.blocks:
        rows.extend(measure(math.isqrt(blocks), args.repeat, args.dask_max, args.per_key_max))
    rows.append(one_key(1000, args.repeat))
    header = ("operation", "size", "hlg", "dask", "hlg/dask", "unit")
    table = [
        (op, size, number(h), "-" if d is None else number(d), ratio(h, d, 4), unit)
        for op, size, h, d, unit in rows
    ]
    print_table(header, table, args.markdown)
    return 0


if __name__ == "__main__":
    sys.exit(main())
