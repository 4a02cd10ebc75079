"""The ``hlg bench`` command: the headline measurements beside dask, in one run, as ratios.

Each case times the same work in hlg and in dask on this machine in this process, and
reports both and their ratio (hlg / dask; below 1 means hlg is faster or smaller). The
table it prints with ``--markdown`` is the one in docs/benchmarks.md; ``--plots DIR``
writes the scaling plots embedded there (needs matplotlib, the ``bench`` extra). The
detailed suites live in the repository's ``benchmarks/`` directory.

Like the demo, this is an application of the built-in layers, not part of the core.
"""

from __future__ import annotations

import gc
import platform
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from operator import add, mul
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["Row", "headline", "markdown_table", "plots", "text_table"]


@dataclass
class Row:
    """One measurement: what, at which size, hlg's and dask's figure in ``unit``."""

    case: str
    size: str
    hlg: float
    dask: float | None
    unit: str

    @property
    def ratio(self) -> float | None:
        """hlg / dask (None when dask has no figure)."""
        return self.hlg / self.dask if self.dask else None


def _best(func: Callable[[], Any], repeat: int) -> float:
    """The best wall time of ``repeat`` calls, with the cyclic GC collected before each."""
    times = []
    for _ in range(repeat):
        gc.collect()
        start = time.perf_counter()
        func()
        times.append(time.perf_counter() - start)
    return min(times)


def _inc(x: int) -> int:
    return x + 1


def _chain_graphs(n: int) -> tuple[dict[Any, Any], dict[Any, Any]]:
    """A chain of ``n`` trivial tasks with tuple keys: (hlg graph, dask legacy graph)."""
    from hlg import DataNode, Task, TaskRef

    ours: dict[Any, Any] = {("c", 0): DataNode(("c", 0), 0)}
    legacy: dict[Any, Any] = {("c", 0): 0}
    for i in range(1, n):
        ours[("c", i)] = Task(("c", i), _inc, TaskRef(("c", i - 1)))
        legacy[("c", i)] = (_inc, ("c", i - 1))
    return ours, legacy


def _array_chain(n: int) -> Any:
    """hlg: the 4-layer chain ``(ones + 1) * 2`` transposed plus ones, on n by n blocks."""
    import hlg
    from hlg import layers

    nb = {"x": (n, n)}
    x = layers.blockwise(np.ones, "x", "ij", layers.ChunkShape(((1,) * n, (1,) * n)), "ij")
    a = layers.blockwise(add, "a", "ij", "x", "ij", 1, None, numblocks=nb)
    b = layers.blockwise(mul, "b", "ij", "a", "ij", 2, None, numblocks={"a": (n, n)})
    c = layers.blockwise(add, "c", "ij", "b", "ji", "x", "ij", numblocks={"b": (n, n), **nb})
    s = layers.blockwise(np.sum, "s", "", "c", "ij", numblocks={"c": (n, n)})
    return hlg.HighLevelGraph(
        {"x": x, "a": a, "b": b, "c": c, "s": s},
        {"a": ["x"], "b": ["a"], "c": ["b", "x"], "s": ["c"]},
    )


def _dask_array_chain(n: int) -> Any:
    import dask.array as da

    x = da.ones((n, n), chunks=(1, 1))
    return ((x + 1) * 2).T + x


def headline(quick: bool = False, repeat: int = 3) -> list[Row]:
    """Run the headline cases; ``quick`` uses small sizes (seconds, not minutes)."""
    import dask._task_spec as dts
    import dask.local
    import dask.order
    import dask.threaded
    from dask.array.optimization import optimize as dask_array_optimize

    import hlg
    from hlg import layers

    n_tasks = 20_000 if quick else 100_000
    side = 100 if quick else 300  # blocks per side of the array chain
    rows: list[Row] = []

    # -- tasks ---------------------------------------------------------------------------
    from hlg import DataNode, Task, TaskRef

    def build_hlg() -> Any:
        out: dict[Any, Any] = {("c", 0): DataNode(("c", 0), 0)}
        for i in range(1, n_tasks):
            out[("c", i)] = Task(("c", i), _inc, TaskRef(("c", i - 1)))
        return out

    def build_dask() -> Any:
        out: dict[Any, Any] = {("c", 0): dts.DataNode(("c", 0), 0)}
        for i in range(1, n_tasks):
            out[("c", i)] = dts.Task(("c", i), _inc, dts.TaskRef(("c", i - 1)))
        return out

    t_h = _best(build_hlg, repeat) / n_tasks
    t_d = _best(build_dask, repeat) / n_tasks
    rows.append(Row("build a chain of Tasks", f"{n_tasks:,}", t_h * 1e6, t_d * 1e6, "µs/task"))

    ours, legacy = _chain_graphs(n_tasks)
    t_h = _best(lambda: hlg.convert_legacy_graph(legacy), repeat) / n_tasks
    t_d = _best(lambda: dts.convert_legacy_graph(legacy), repeat) / n_tasks
    rows.append(Row("convert_legacy_graph", f"{n_tasks:,}", t_h * 1e6, t_d * 1e6, "µs/task"))

    last = ("c", n_tasks - 1)
    t_h = _best(lambda: hlg.get(ours, last), repeat) / n_tasks
    t_d = _best(lambda: dask.local.get_sync(legacy, last), repeat) / n_tasks
    rows.append(Row("sync get, trivial chain", f"{n_tasks:,}", t_h * 1e6, t_d * 1e6, "µs/task"))

    t_h = _best(lambda: hlg.compute(ours, last, scheduler="threads"), repeat) / n_tasks
    t_d = _best(lambda: dask.threaded.get(legacy, last), repeat) / n_tasks
    rows.append(Row("threads, trivial chain", f"{n_tasks:,}", t_h * 1e6, t_d * 1e6, "µs/task"))

    # -- ordering on an array graph ------------------------------------------------------
    graph = _array_chain(side)
    arr = _dask_array_chain(side)
    dask_dict = dict(arr.__dask_graph__())
    ntasks = len(dask_dict)
    t_h = _best(
        lambda: hlg.order(graph, [("c", i, j) for i in range(side) for j in range(side)]), repeat
    ) / len(graph)
    t_d = _best(lambda: dask.order.order(dask_dict), repeat) / ntasks
    rows.append(Row("order ((x + 1) * 2).T + x", f"{ntasks:,}", t_h * 1e6, t_d * 1e6, "µs/task"))

    # -- layers ----------------------------------------------------------------------------
    layer = graph.layers["a"]
    size = len(layer)

    def dask_layer() -> Any:
        x = _dask_array_chain(side)  # fresh: dask layers cache their materialization
        return x.__dask_graph__()

    fresh = [dask_layer() for _ in range(repeat)]

    def dask_dict_layer() -> Any:
        g = fresh.pop()
        name = next(n for n in g.layers if n.startswith("add-"))
        return dict(g.layers[name])

    t_d = _best(dask_dict_layer, repeat) / size
    t_h = _best(layer.materialize, repeat) / size
    rows.append(Row("blockwise x + 1: materialize()", f"{size:,}", t_h * 1e6, t_d * 1e6, "µs/task"))
    t_h = _best(lambda: dict(layer), repeat) / size
    rows.append(Row("blockwise x + 1: dict(layer)", f"{size:,}", t_h * 1e6, t_d * 1e6, "µs/task"))

    # -- culling -----------------------------------------------------------------------------
    key_h = ("c", side // 2, side // 3)
    key_d = (arr.name, side // 2, side // 3)
    dg = arr.__dask_graph__()
    t_h = _best(lambda: graph.cull([key_h]), repeat)
    t_d = _best(lambda: dg.cull({key_d}), repeat)
    rows.append(Row("cull to one key", f"{len(graph):,} tasks", t_h * 1e3, t_d * 1e3, "ms"))

    def hlg_reduce() -> Any:
        g = _array_chain(side)
        keys = [("s",)]
        optimized = hlg.optimize(g, keys, passes=[hlg.cull, layers.fuse_blockwise])
        return hlg.pack(optimized, keys)

    def dask_reduce() -> Any:
        total = _dask_array_chain(side).sum()
        graph = total.__dask_graph__()
        return dask_array_optimize(graph, total.__dask_keys__())  # type: ignore[no-untyped-call]

    t_h = _best(hlg_reduce, repeat)
    t_d = _best(dask_reduce, 1)
    rows.append(
        Row(
            "x.sum(): build + optimize (+ pack)",
            f"{side * side:,} blocks",
            t_h * 1e3,
            t_d * 1e3,
            "ms",
        )
    )

    # -- packing -------------------------------------------------------------------------------
    import cloudpickle

    packed = hlg.pack(graph)
    rows.append(
        Row(
            "packed bytes vs pickled dask graph",
            f"{len(graph):,} tasks",
            len(packed),
            len(cloudpickle.dumps(dask_dict)),
            "B",
        )
    )
    return rows


def _fmt(value: float | None) -> str:
    if value is None:
        return "-"
    if value >= 100:
        return f"{value:,.0f}"
    return f"{value:.3g}"


def text_table(rows: Iterable[Row]) -> str:
    """The rows as an aligned text table.

    >>> print(text_table([Row("cull to one key", "1,000 tasks", 0.05, 0.2, "ms")]))
    case             size         hlg   dask  unit  hlg/dask
    cull to one key  1,000 tasks  0.05  0.2   ms    0.25
    """
    header = ("case", "size", "hlg", "dask", "unit", "hlg/dask")
    body = [(r.case, r.size, _fmt(r.hlg), _fmt(r.dask), r.unit, _fmt(r.ratio)) for r in rows]
    table = [header, *body]
    widths = [max(len(row[i]) for row in table) for i in range(len(header))]
    return "\n".join(
        "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip()
        for row in table
    )


def markdown_table(rows: Iterable[Row]) -> str:
    """The rows as a markdown table, with the machine and versions underneath."""
    from importlib.metadata import version

    import hlg

    lines = [
        "| case | size | hlg | dask | unit | hlg / dask |",
        "|---|---|---:|---:|---|---:|",
    ]
    lines += [
        f"| {r.case} | {r.size} | {_fmt(r.hlg)} | {_fmt(r.dask)} | {r.unit} | {_fmt(r.ratio)} |"
        for r in rows
    ]
    lines += [
        "",
        f"Python {platform.python_version()}, hlg {hlg.__version__}, dask {version('dask')}, "
        f"numpy {np.__version__}; {platform.machine()}, {_cpus()} CPUs; "
        f"{time.strftime('%Y-%m-%d')}.",
    ]
    return "\n".join(lines)


def _cpus() -> int:
    import os

    return os.cpu_count() or 1


def plots(
    directory: Path, sizes: Iterable[int] = (1_000, 10_000, 100_000, 1_000_000)
) -> list[Path]:
    """Plot materialization time per task and packed bytes against task count, hlg and dask.

    The graph is the 4-layer array chain; ``sizes`` are task counts (rounded to squares).
    Needs matplotlib (``pip install 'hlg[bench]'``).
    """
    import cloudpickle
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    import hlg

    tasks_h, mat_h, bytes_h, tasks_d, mat_d, bytes_d = [], [], [], [], [], []
    for target in sizes:
        side = max(1, round((target / 4) ** 0.5))
        graph = _array_chain(side)
        del graph.layers["s"], graph.dependencies["s"]
        n = len(graph)
        tasks_h.append(n)
        mat_h.append(_best(graph.to_dict, 1) / n * 1e6)
        bytes_h.append(len(hlg.pack(graph)))
        dg = _dask_array_chain(side).__dask_graph__()
        nd = len(dg)
        tasks_d.append(nd)
        mat_d.append(_best(lambda: dict(dg), 1) / nd * 1e6)  # noqa: B023 - called at once
        bytes_d.append(len(cloudpickle.dumps(dict(dg))))
    directory.mkdir(parents=True, exist_ok=True)
    out = []
    for name, ylabel, hv, dv in (
        ("materialize.png", "materialize: µs per task", mat_h, mat_d),
        ("packed-bytes.png", "graph bytes (hlg: packed; dask: pickled dict)", bytes_h, bytes_d),
    ):
        fig, ax = plt.subplots(figsize=(6, 4), dpi=100)
        ax.plot(tasks_h, hv, "o-", label=f"hlg {hlg.__version__}")
        ax.plot(tasks_d, dv, "s--", label="dask (materialized graph)")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.yaxis.set_major_formatter(matplotlib.ticker.FormatStrFormatter("%g"))
        ax.yaxis.set_minor_formatter(matplotlib.ticker.FormatStrFormatter("%g"))
        ax.set_xlabel("tasks")
        ax.set_ylabel(ylabel)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend()
        fig.tight_layout()
        path = directory / name
        fig.savefig(path)
        plt.close(fig)
        out.append(path)
    return out
