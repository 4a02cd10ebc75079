"""Peak memory and wall time of one large blockwise graph, hlg beside dask, 10^5 to 10^7 tasks.

The graph: a 4-layer blockwise chain over ``n x n`` tiny blocks (numpy float64 scalars) —
``x`` from a ``BlockIndex`` input, ``y = x + 1``, ``z = y * 2``, ``w = z.T + x`` — then
row sums (a blockwise contraction, ``s[i] = sum_j w[i, j]``) and a ``TreeReduction`` of
the ``n`` row sums to one value: ``4 n² + n + (tree)`` tasks, no fusion (every task is
scheduled). dask runs the same chain with ``dask.array`` (1 x 1 chunks) and ``.sum()``,
``optimize_graph=False``. Every case runs in a fresh subprocess that reports its peak RSS
(``resource.getrusage``, minus nothing: interpreter and imports included), wall time from
building the graph to the checked result, and for hlg the scheduler state (bytes of the
plan's and schedule's arrays, built once more after the run).

    python benchmarks/bench_scale.py                         # 10^5 and 10^6, hlg and dask
    python benchmarks/bench_scale.py --tasks 1e7 --cases hlg-sync hlg-threads
    python benchmarks/bench_scale.py --markdown              # a table for docs/benchmarks.md
    python benchmarks/bench_scale.py --markdown --tasks 1e6 1e7 --cases hlg-plan  # planning
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import resource
import subprocess
import sys
import time
from operator import add, mul
from typing import Any

import numpy as np

CASES = (
    "hlg-sync",
    "hlg-threads",
    "hlg-packed-sync",
    "hlg-packed-threads",
    "dask-sync",
    "dask-threads",
    "hlg-plan",
)


def side(tasks: float) -> int:
    """The block count per axis giving about ``tasks`` tasks."""
    return max(2, math.isqrt(int(tasks) // 4))


def make(block: tuple[int, int]) -> np.float64:
    i, j = block
    return np.float64((i + 2 * j) % 7)


def transpose_add(z: Any, x: Any) -> Any:
    return z.T + x


def row_sum(blocks: list[Any]) -> Any:
    return sum(blocks)


def expected(n: int) -> float:
    i, j = np.indices((n, n))
    return float(3 * ((i + 2 * j) % 7).sum() + 2 * n * n)


def hlg_graph(n: int) -> tuple[Any, Any]:
    import hlg
    from hlg import layers

    x = layers.blockwise(make, "x", "ij", layers.BlockIndex((n, n)), "ij")
    y = layers.blockwise(add, "y", "ij", "x", "ij", 1, None, numblocks={"x": (n, n)})
    z = layers.blockwise(mul, "z", "ij", "y", "ij", 2, None, numblocks={"y": (n, n)})
    w = layers.blockwise(
        transpose_add, "w", "ij", "z", "ji", "x", "ij", numblocks={"z": (n, n), "x": (n, n)}
    )
    s = layers.blockwise(row_sum, "s", "i", "w", "ij", numblocks={"w": (n, n)})
    total = layers.TreeReduction("total", "s", n, float, sum, sum, split_every=8)
    graph = hlg.HighLevelGraph(
        {"x": x, "y": y, "z": z, "w": w, "s": s, "total": total},
        {"x": (), "y": ("x",), "z": ("y",), "w": ("z", "x"), "s": ("w",), "total": ("s",)},
    )
    return graph, ("total", 0)


def run_case(case: str, n: int) -> dict[str, Any]:
    start = time.perf_counter()
    usage = resource.getrusage(resource.RUSAGE_SELF)
    cpu0 = usage.ru_utime + usage.ru_stime
    out: dict[str, Any] = {"case": case, "n": n}
    if case == "hlg-plan":  # planning alone: CPU time of the walk and of the order
        import hlg._order as order_module

        graph, key = hlg_graph(n)
        inner = order_module._order
        spent: list[float] = []

        def timed(*args: Any) -> None:
            t0 = time.process_time()
            inner(*args)
            spent.append(time.process_time() - t0)

        order_module._order = timed
        t0 = time.process_time()
        p = order_module.plan(graph, key)
        out.update(
            tasks=len(p), plan_cpu=time.process_time() - t0, order_cpu=spent[0], correct=True
        )
        out["wall"] = time.perf_counter() - start
        usage = resource.getrusage(resource.RUSAGE_SELF)
        out["cpu"] = usage.ru_utime + usage.ru_stime - cpu0
        out["maxrss"] = usage.ru_maxrss * 1024
        return out
    if case.startswith("hlg"):
        import hlg

        graph, key = hlg_graph(n)
        out["tasks"] = len(graph)
        if "packed" in case:
            graph = hlg.unpack(hlg.pack(graph, [key]))
        value = hlg.compute(graph, key, scheduler=case.rsplit("-", 1)[1])
    else:
        import dask
        import dask.array as da

        x = da.map_blocks(
            lambda b, block_info=None: np.full((1, 1), make(block_info[None]["chunk-location"])),
            da.empty((n, n), chunks=1),
            dtype=float,
        )
        w = (x + 1) * 2
        result = (w.T + x).sum()
        out["tasks"] = len(result.__dask_graph__())
        value = dask.compute(result, scheduler=case.rsplit("-", 1)[1], optimize_graph=False)[0]
    out["wall"] = time.perf_counter() - start
    out["correct"] = bool(float(value) == expected(n))
    usage = resource.getrusage(resource.RUSAGE_SELF)
    out["cpu"] = usage.ru_utime + usage.ru_stime - cpu0
    out["maxrss"] = usage.ru_maxrss * 1024
    if case == "hlg-sync":
        from hlg._order import plan
        from hlg._schedule import Schedule

        t0 = time.perf_counter()
        p = plan(graph, key)
        out["plan_time"] = time.perf_counter() - t0
        out["state"] = Schedule(p).nbytes()
        out["ntasks"] = len(p)
    return out


def child(case: str, n: int) -> dict[str, Any]:
    proc = subprocess.run(
        [sys.executable, __file__, "--child", case, "--side", str(n)],
        capture_output=True,
        text=True,
        check=False,
    )
    if proc.returncode:
        return {"case": case, "n": n, "error": proc.stderr.strip().splitlines()[-1:]}
    return json.loads(proc.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=float, nargs="*", default=[1e5, 1e6])
    parser.add_argument("--cases", nargs="*", default=list(CASES[:-1]), choices=CASES)
    parser.add_argument("--markdown", action="store_true")
    parser.add_argument("--child", choices=CASES, help=argparse.SUPPRESS)
    parser.add_argument("--side", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(run_case(args.child, args.side)))
        return
    print(
        f"# {platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}",
        file=sys.stderr,
    )
    rows = []
    for tasks in args.tasks:
        n = side(tasks)
        for case in args.cases:
            r = child(case, n)
            rows.append(r)
            print(json.dumps(r), file=sys.stderr)
    if args.markdown:
        print(
            "| case | tasks | wall (s) | CPU µs/task | peak RSS (MiB) | RSS B/task "
            "| state B/task | correct |"
        )
        print("|---|---:|---:|---:|---:|---:|---:|---|")
        for r in rows:
            if "error" in r:
                print(f"| {r['case']} | n={r['n']} | error: {r['error']} | | | | | |")
                continue
            t = r["tasks"]
            if "order_cpu" in r:
                print(
                    f"| plan only: walk + CSR + order (order alone {r['order_cpu'] / t * 1e6:.2f}"
                    f" µs/task) | {t:,} | {r['wall']:.1f} | {r['plan_cpu'] / t * 1e6:.2f} | "
                    f"{r['maxrss'] / 2**20:,.0f} | {r['maxrss'] / t:.0f} | | |"
                )
                continue
            state = f"{r['state'] / r['ntasks']:.1f}" if "state" in r else ""
            print(
                f"| {r['case']} | {t:,} | {r['wall']:.1f} | {r['cpu'] / t * 1e6:.2f} | "
                f"{r['maxrss'] / 2**20:,.0f} | {r['maxrss'] / t:.0f} | {state} | {r['correct']} |"
            )


if __name__ == "__main__":
    main()
