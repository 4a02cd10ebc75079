"""hlg on dask.distributed beside dask.array: bytes, submit, scheduler and end-to-end times.

The computation is ``(((ones + 1) * 2).T + ones).sum()`` on an ``n x n`` grid of
one-element blocks. dask builds it with ``dask.array``; hlg with ``layers.blockwise``
(``ChunkShape`` for ``ones``) and a two-level sum (per row of blocks, then the rows), so
its graph has the same elementwise layers and ``2 n² + n + 1`` tasks of reduction fewer
than dask's tree — the task counts are printed beside the times.

* **bytes client → scheduler**: what ``Client._graph_to_futures`` measures before sending
  (the serialized expression: header plus frames); for dask the ``FinalizeCompute``
  expression ``client.compute`` sends, for hlg the ``PackedGraphExpr``. No cluster needed.
* **client build + serialize**: building the collection or graph, turning it into the
  expression and serializing it (best of ``--repeat``).
* **client submit** (with ``--cluster``): time for ``client.compute(...)`` to return a future.
* **scheduler receipt → first task**: from the scheduler's ``update-graph`` start to the
  first task's compute start in the task stream; also the scheduler's own
  ``update-graph`` duration (deserialize, materialize, order, create task states).
* **end to end**: ``client.compute(...).result()`` on a ``LocalCluster`` of 2 worker
  processes with 1 thread each, loopback only.
* **worker-side per task**: running every task of the expanded graph in one process,
  hlg's ``run_packed`` (unpack + run) against dask.array's own task nodes.

    python benchmarks/bench_distributed.py                        # bytes/submit, 10k and 100k
    python benchmarks/bench_distributed.py --cluster --e2e-blocks 10000 --markdown
"""

from __future__ import annotations

import argparse
import math
import platform
import sys
import time
from collections.abc import Callable
from operator import add, mul
from typing import Any

import dask
import dask.array as da
import distributed
import numpy as np
from dask._expr import FinalizeCompute
from dask._task_spec import convert_legacy_graph
from dask.base import collections_to_expr
from distributed.protocol import Serialized, serialize, to_serialize
from distributed.utils import nbytes

import hlg
from hlg import layers
from hlg._distributed import DaskCollection, PackedGraphExpr, expand, namespaced

from _common import best, ratio

Row = tuple[str, str, float, float | None, str]


def total(blocks: list[Any]) -> Any:
    """Sum a list of blocks (the contraction of the two-level sum)."""
    out = 0.0
    for b in blocks:
        out = out + np.sum(b)
    return out


def hlg_chain(n: int) -> tuple[hlg.HighLevelGraph, tuple[str]]:
    chunks = ((1,) * n, (1,) * n)
    nb = {"x": (n, n)}
    x = layers.blockwise(np.ones, "x", "ij", layers.ChunkShape(chunks), "ij")
    a = layers.blockwise(add, "a", "ij", "x", "ij", 1, None, numblocks=nb)
    b = layers.blockwise(mul, "b", "ij", "a", "ij", 2, None, numblocks={"a": (n, n)})
    c = layers.blockwise(add, "c", "ij", "b", "ji", "x", "ij", numblocks={"b": (n, n), **nb})
    r = layers.blockwise(total, "r", "i", "c", "ij", numblocks={"c": (n, n)})
    s = layers.blockwise(total, "s", "", "r", "i", numblocks={"r": (n,)})
    graph = hlg.HighLevelGraph(
        {"x": x, "a": a, "b": b, "c": c, "r": r, "s": s},
        {"a": ["x"], "b": ["a"], "c": ["b", "x"], "r": ["c"], "s": ["r"]},
    )
    # fused as dask fuses its blockwise layers: x, then (a, b, c) as one layer
    return hlg.optimize(graph, [("s",)], passes=[layers.fuse_blockwise]), ("s",)


def dask_chain(n: int) -> Any:
    ones = da.ones((n, n), chunks=(1, 1))
    return (((ones + 1) * 2).T + ones).sum()


def serialized_bytes(expr: Any) -> int:
    ser = Serialized(*serialize(to_serialize(expr), on_error="raise"))
    return int(sum(map(nbytes, [ser.header, *ser.frames])))


def dask_expr(n: int) -> Any:
    return FinalizeCompute(collections_to_expr([dask_chain(n)], True)).optimize()


def hlg_expr(n: int) -> Any:
    graph, key = hlg_chain(n)
    return PackedGraphExpr.from_graph(graph, key)


def offline(n: int, repeat: int) -> list[Row]:
    size = f"{n * n:,} blocks"
    rows: list[Row] = []
    h_bytes = serialized_bytes(hlg_expr(n))
    d_bytes = serialized_bytes(dask_expr(n))
    rows.append(("bytes client → scheduler", size, h_bytes, d_bytes, "B"))
    t_h = best(lambda: serialized_bytes(hlg_expr(n)), repeat)
    t_d = best(lambda: serialized_bytes(dask_expr(n)), repeat)
    rows.append(("client build + serialize", size, t_h * 1e3, t_d * 1e3, "ms"))
    return rows


def worker_side(n: int) -> list[Row]:
    """Run every task in one process, in one topological order, three ways.

    hlg's dask tasks (``run_packed``: unpack the blobs, build the task, run it), the same
    hlg tasks already built (run only: the difference is hlg's unpack cost), and
    dask.array's own task nodes (its reduction tree differs; for scale).
    """
    graph, key = hlg_chain(n)
    packed = hlg.unpack(hlg.pack(graph, key))
    h_dsk = expand(packed, "bench")
    plain = graph.to_dict()
    d_dsk = convert_legacy_graph(dict(dask_chain(n).__dask_graph__()))

    def run_all(dsk: dict[Any, Any], order: list[Any], rename: Callable[[Any], Any]) -> float:
        values: dict[Any, Any] = {}
        start = time.perf_counter()
        for k in order:  # a worker hands each task only its dependencies' values
            node = dsk[rename(k)]
            values[rename(k)] = node({d: values[d] for d in node.dependencies})
        return (time.perf_counter() - start) / len(order)

    h_order = list(hlg.toposort(plain, list(plain)))
    d_order = list(hlg.toposort(_as_hlg(d_dsk), list(d_dsk)))
    t_packed = min(run_all(h_dsk, h_order, lambda k: namespaced(k, "bench")) for _ in range(3))
    t_plain = min(run_all(plain, h_order, lambda k: k) for _ in range(3))
    t_dask = min(run_all(d_dsk, d_order, lambda k: k) for _ in range(3))
    size = f"{n * n:,} blocks"
    return [
        ("worker: hlg task via run_packed", size, t_packed * 1e6, t_dask * 1e6, "µs/task"),
        ("worker: same hlg task, already unpacked", size, t_plain * 1e6, t_dask * 1e6, "µs/task"),
        ("worker: hlg unpack cost (difference)", size, (t_packed - t_plain) * 1e6, None, "µs/task"),
    ]


def _as_hlg(dsk: dict[Any, Any]) -> dict[Any, Any]:
    # toposort reads .dependency_tuple / .dependencies: wrap dask nodes as hlg nodes
    return {
        k: hlg.Task(k, _noop, *[hlg.TaskRef(d) for d in sorted(v.dependencies, key=repr)])
        for k, v in dsk.items()
    }


def _noop(*args: Any) -> None:
    return None


def on_cluster(e2e: list[int]) -> list[Row]:
    rows: list[Row] = []
    with (
        distributed.LocalCluster(
            n_workers=2,
            threads_per_worker=1,
            processes=True,
            host="127.0.0.1",
            dashboard_address="127.0.0.1:0",
        ) as cluster,
        distributed.Client(cluster) as client,
    ):
        client.wait_for_workers(2)
        for n in sorted(e2e):
            size = f"{n * n:,} blocks"
            results: dict[str, dict[str, float]] = {}
            for name in ("hlg", "dask"):
                if name == "hlg":
                    graph, key = hlg_chain(n)
                    start = time.perf_counter()
                    coll = DaskCollection(graph, key)
                    fut = client.compute(coll)
                else:
                    start = time.perf_counter()
                    fut = client.compute(dask_chain(n))
                submitted = time.perf_counter() - start
                r: dict[str, float] = {"submit": submitted}
                with distributed.get_task_stream(client) as stream:
                    value = fut.result()
                r["e2e"] = time.perf_counter() - start
                assert float(np.sum(value)) == 5.0 * n * n, value
                first = min(
                    ss["start"]
                    for t in stream.data
                    for ss in t["startstops"]
                    if ss["action"] == "compute"
                )
                events = [
                    e
                    for _, e in client.get_events(client.id)
                    if e.get("action") == "update-graph" and "metrics" in e
                ]
                metrics = events[-1]["metrics"]
                r["first"] = first - metrics["start_timestamp_seconds"]
                r["update"] = metrics["duration_seconds"]
                r["tasks"] = len(stream.data)
                del fut
                results[name] = r
                client.run(lambda: None)  # settle
            h, d = results["hlg"], results["dask"]
            rows.append(
                ("client submit (client.compute)", size, h["submit"] * 1e3, d["submit"] * 1e3, "ms")
            )
            rows.append(
                ("scheduler update-graph", size, h["update"] * 1e3, d["update"] * 1e3, "ms")
            )
            rows.append(
                ("scheduler receipt → first task", size, h["first"] * 1e3, d["first"] * 1e3, "ms")
            )
            rows.append(("end to end (2 workers)", size, h["e2e"], d["e2e"], "s"))
            rows.append(("tasks run", size, h["tasks"], d["tasks"], "tasks"))
            rows.append(
                (
                    "end to end per task",
                    size,
                    h["e2e"] / h["tasks"] * 1e3,
                    d["e2e"] / d["tasks"] * 1e3,
                    "ms",
                )
            )
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--blocks", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--cluster", action="store_true", help="also run on a LocalCluster")
    parser.add_argument(
        "--e2e-blocks", type=int, nargs="*", default=[10_000], help="sizes run on the cluster"
    )
    parser.add_argument("--markdown", action="store_true")
    args = parser.parse_args(argv)
    sides = [math.isqrt(b) for b in args.blocks]
    e2e = [math.isqrt(b) for b in args.e2e_blocks]
    rows: list[Row] = []
    for n in sides:
        print(f"offline n={n}", file=sys.stderr)
        rows += offline(n, args.repeat)
    rows += worker_side(min(sides))
    if args.cluster and e2e:
        print("cluster", file=sys.stderr)
        rows += on_cluster(e2e)
    print(
        f"# {platform.machine()}, Python {platform.python_version()}, hlg {hlg.__version__}, "
        f"dask {dask.__version__}, distributed {distributed.__version__}, numpy {np.__version__}"
    )
    if args.markdown:
        print("| operation | size | hlg | dask | hlg/dask | unit |")
        print("|---|---|---|---|---|---|")
        for what, size, h, d, unit in rows:
            d_text = (
                "-" if d is None else f"{d:,.3f}" if unit not in ("B", "tasks") else f"{d:,.0f}"
            )
            h_text = f"{h:,.3f}" if unit not in ("B", "tasks") else f"{h:,.0f}"
            print(f"| {what} | {size} | {h_text} | {d_text} | {ratio(h, d)} | {unit} |")
    else:
        for what, size, h, d, unit in rows:
            print(f"{what:42} {size:>16} {h:14,.3f} {d or 0:14,.3f} {ratio(h, d):>8} {unit}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
