"""Side-by-side benchmarks of hlg and dask graphs: cull, describe, materialize, fuse, pack.

The graph is the 4-layer elementwise chain ``ones -> +1 -> *2 -> transpose + x`` on an
``n x n`` grid of blocks, built with ``layers.blockwise`` for hlg and with
``dask.array`` for dask (whose graph has the same blockwise layers, with the transpose
as a layer of its own). Every figure is the best of ``--repeat`` runs, both libraries
measured in the same process; ratios are hlg / dask.

    python benchmarks/bench_graphs.py                 # 10,000 and 100,000 blocks
    python benchmarks/bench_graphs.py --blocks 1000000 --markdown
"""

from __future__ import annotations

import argparse
import gc
import math
import pickle
import platform
import sys
import tracemalloc
from operator import add, mul
from typing import Any

import cloudpickle
import dask
import dask.array as da
import numpy as np
from dask.array.optimization import optimize as dask_array_optimize

import hlg
from hlg import layers

from _common import best, number, print_table, ratio

Row = tuple[str, str, float, float | None, str]


def hlg_chain(n: int) -> hlg.HighLevelGraph:
    chunks = ((1,) * n, (1,) * n)
    nb = {"x": (n, n)}
    x = layers.blockwise(np.ones, "x", "ij", layers.ChunkShape(chunks), "ij")
    a = layers.blockwise(add, "a", "ij", "x", "ij", 1, None, numblocks=nb)
    b = layers.blockwise(mul, "b", "ij", "a", "ij", 2, None, numblocks={"a": (n, n)})
    c = layers.blockwise(add, "c", "ij", "b", "ji", "x", "ij", numblocks={"b": (n, n), "x": (n, n)})
    return hlg.HighLevelGraph(
        {"x": x, "a": a, "b": b, "c": c}, {"a": ["x"], "b": ["a"], "c": ["b", "x"]}
    )


def dask_chain(n: int) -> Any:
    x = da.ones((n, n), chunks=(1, 1))
    return ((x + 1) * 2).T + x


def dask_layers(n: int) -> dict[str, tuple[Any, str]]:
    """A fresh dask graph per call, with the names of its layers matching hlg's ``a``
    (``x + 1``, aligned) and ``c`` (``b.T + x``, the final layer)."""
    x = da.ones((n, n), chunks=(1, 1))
    a = x + 1
    c = (a * 2).T + x
    graph = c.__dask_graph__()
    return {"a": (graph, a.name), "c": (graph, c.name)}


def measure(n: int, repeat: int, dask_materialize: bool) -> list[Row]:
    blocks = n * n
    rows: list[Row] = []
    g = hlg_chain(n)
    arr = dask_chain(n)
    dg = arr.__dask_graph__()
    ntasks_h, ntasks_d = len(g), len(dg)
    key_h = ("c", n // 2, n // 3)
    key_d = (arr.name, n // 2, n // 3)

    # build + fuse + cull to one output block
    def hlg_build_optimize() -> Any:
        graph = hlg_chain(n)
        return hlg.optimize(graph, [key_h], passes=[layers.fuse_blockwise, hlg.cull])

    def dask_build_optimize() -> Any:
        array = dask_chain(n)
        return dask_array_optimize(array.__dask_graph__(), [key_d])

    t_h = best(hlg_build_optimize, repeat)
    t_d = best(dask_build_optimize, 1) if blocks <= 250_000 or dask_materialize else None
    rows.append(
        ("build + fuse + cull to 1 block", f"{blocks:,}", t_h * 1e3, t_d and t_d * 1e3, "ms")
    )

    # cull one key
    t_h = best(lambda: g.cull([key_h]), repeat)
    t_d = best(lambda: dg.cull({key_d}), repeat)
    rows.append(("cull 1 key", f"{ntasks_h:,} tasks", t_h * 1e3, t_d * 1e3, "ms"))

    # describe (dask: the cheapest equivalent, each layer's name and size)
    t_h = best(g.describe, repeat)
    t_d = best(lambda: [(k, len(v)) for k, v in dg.layers.items()], repeat)
    rows.append(("describe (layer table)", f"{ntasks_h:,} tasks", t_h * 1e3, t_d * 1e3, "ms"))

    # materialize every task (dask layers cache their materialization: use fresh graphs)
    t_h = best(g.to_dict, repeat) / ntasks_h
    t_d = None
    if blocks <= 250_000 or dask_materialize:
        fresh = [dask_chain(n).__dask_graph__() for _ in range(repeat)]
        t_d = best(lambda: dict(fresh.pop()), repeat) / ntasks_d
    rows.append(
        ("materialize all tasks", f"{ntasks_h:,} tasks", t_h * 1e6, t_d and t_d * 1e6, "µs/task")
    )

    # one Blockwise layer, the Mapping path users take (dict(layer): keys(), then one
    # __getitem__ per key) and the explicit materialize(); dask: dict of a fresh layer
    # (dask layers cache their materialization), tuple keys on both sides
    for name, what in (("a", "x + 1"), ("c", "b.T + x")):
        layer = g.layers[name]
        size = len(layer)
        t_dict = best(lambda layer=layer: dict(layer), repeat) / size
        t_mat = best(layer.materialize, repeat) / size
        t_d = None
        if blocks <= 250_000 or dask_materialize:
            fresh = [dask_layers(n)[name] for _ in range(repeat)]

            def dask_dict(fresh: list[tuple[Any, str]] = fresh) -> Any:
                graph, layer_name = fresh.pop()
                return dict(graph.layers[layer_name])

            t_d = best(dask_dict, repeat) / size
        for label, t_h in ((f"dict(layer) of {what}", t_dict), (f"{what}.materialize()", t_mat)):
            rows.append((label, f"{size:,} tasks", t_h * 1e6, t_d and t_d * 1e6, "µs/task"))

    # packing: bytes and client time
    data = hlg.pack(g)
    t_h = best(lambda: hlg.pack(hlg_chain(n)), repeat)
    dask_hlg_bytes = len(cloudpickle.dumps(dg))
    rows.append(
        ("packed bytes vs cloudpickle(dask HLG)", f"{blocks:,}", len(data), dask_hlg_bytes, "B")
    )
    if blocks <= 250_000 or dask_materialize:
        materialized = dict(dg)
        dict_bytes = len(cloudpickle.dumps(materialized))
        rows.append(
            ("packed bytes vs cloudpickle(dask dict)", f"{blocks:,}", len(data), dict_bytes, "B")
        )
        del materialized
    t_d = best(lambda: cloudpickle.dumps(dask_chain(n).__dask_graph__()), repeat)
    rows.append(
        ("build + pack vs build + cloudpickle(HLG)", f"{blocks:,}", t_h * 1e3, t_d * 1e3, "ms")
    )

    # scheduler side: unpack + expand every task
    def expand() -> Any:
        return hlg.unpack(data).graph.to_dict()

    t_h = best(expand, repeat) / ntasks_h
    t_d = None
    if blocks <= 250_000 or dask_materialize:
        t_d = best(lambda: dict(pickle.loads(cloudpickle.dumps(dask_chain(n).__dask_graph__()))), 1)
        t_d /= ntasks_d
    rows.append(
        ("unpack + expand per task", f"{ntasks_h:,} tasks", t_h * 1e6, t_d and t_d * 1e6, "µs/task")
    )

    # memory and GC-tracked objects of the expanded graph
    gc.collect()
    tracemalloc.start()
    expanded = expand()
    current, _ = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    per_task = current / ntasks_h
    del expanded
    gc.collect()
    before = len(gc.get_objects())
    expanded = expand()
    gc.collect()  # the first full collection untracks the innermost key tuples,
    gc.collect()  # the second the tuples holding them: the steady state
    tracked = (len(gc.get_objects()) - before) / ntasks_h
    del expanded
    mem_d = None
    if blocks <= 250_000 or dask_materialize:
        fresh = dask_chain(n).__dask_graph__()  # dask layers cache their materialization
        gc.collect()
        tracemalloc.start()
        materialized = dict(fresh)
        current, _ = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        mem_d = current / ntasks_d
        del materialized
    rows.append(("memory of expanded tasks", f"{ntasks_h:,} tasks", per_task, mem_d, "B/task"))
    rows.append(
        ("GC-tracked objects per expanded task", f"{ntasks_h:,} tasks", tracked, None, "objects")
    )
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--blocks", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument(
        "--dask-materialize",
        action="store_true",
        help="also materialize dask graphs above 250,000 blocks (slow)",
    )
    parser.add_argument("--markdown", action="store_true")
    args = parser.parse_args()
    print(
        f"# python {platform.python_version()}, {platform.machine()}, hlg {hlg.__version__}, "
        f"dask {dask.__version__}, numpy {np.__version__}, cloudpickle {cloudpickle.__version__}"
    )
    rows: list[Row] = []
    for blocks in args.blocks:
        n = math.isqrt(blocks)
        rows.extend(measure(n, args.repeat, args.dask_materialize))
    header = ("operation", "size", "hlg", "dask", "hlg/dask", "unit")
    table = [
        (op, size, number(h), "-" if d is None else number(d), ratio(h, d), unit)
        for op, size, h, d, unit in rows
    ]
    print_table(header, table, args.markdown)
    return 0


if __name__ == "__main__":
    sys.exit(main())
