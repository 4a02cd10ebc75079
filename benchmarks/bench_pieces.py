"""Bytes a shuffle moves through the processes scheduler: pieces against whole split outputs.

One run, three ways to run the same staged task shuffle of pandas partitions (made on the
workers, so the input never comes from the parent) on worker processes (``fork``):

* hlg's processes scheduler, each task sent only the pieces it reads;
* the same with piece transport switched off (every reader sent whole split outputs);
* ``dask.multiprocessing.get`` on dask's task shuffle (``shuffle_method="tasks"``, one
  ``getitem`` task per piece, each sent the whole split output).

For each: bytes the parent writes to workers during the run (hlg: ``send_bytes`` on the
pipes; dask: its ``func_dumps`` of task and data, per task), as a multiple of the pickled
input, and the wall time (best of ``--repeat``).

    python benchmarks/bench_pieces.py                 # the recorded run
    python benchmarks/bench_pieces.py --markdown      # a table for docs/benchmarks.md
"""

from __future__ import annotations

import argparse
import multiprocessing.connection
import os
import pickle
import platform
import sys
import time
from collections.abc import Callable
from typing import Any

import cloudpickle
import dask
import dask.dataframe as dd
import dask.multiprocessing
import numpy as np
import pandas as pd

import hlg
from hlg import layers
from hlg._pieces import PieceRoutes

ROWS = 20_000
_SENT = [0]  # bytes written by the parent (the counters below add to it)
_PARENT = os.getpid()


def make_part(i: int) -> pd.DataFrame:
    rng = np.random.default_rng(i)
    return pd.DataFrame({"x": rng.integers(0, 2**31, ROWS), "y": rng.random(ROWS)})


def make_split(nout: int) -> Callable[[pd.DataFrame, int, int], list[pd.DataFrame]]:
    def split(part: pd.DataFrame, k: int, s: int) -> list[pd.DataFrame]:
        digit = (part["x"].to_numpy() % nout) // k**s % k
        return [part[digit == j].reset_index(drop=True) for j in range(k)]

    return split


def concat(pieces: list[pd.DataFrame]) -> pd.DataFrame:
    return pd.concat(pieces, ignore_index=True)


def counting_dumps(obj: Any) -> bytes:
    data = cloudpickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)
    if os.getpid() == _PARENT:
        _SENT[0] += len(data)
    return data


def count_pipes() -> None:
    real = multiprocessing.connection.Connection.send_bytes

    def send_bytes(conn: Any, buf: Any, *args: Any) -> None:
        if os.getpid() == _PARENT:
            _SENT[0] += memoryview(buf).nbytes
        real(conn, buf, *args)

    multiprocessing.connection.Connection.send_bytes = send_bytes  # type: ignore[method-assign]


def hlg_graph(n: int, max_branch: int) -> tuple[hlg.HighLevelGraph, list[Any]]:
    parts = layers.blockwise(make_part, "inp", "i", layers.BlockIndex((n,)), "i")
    shuf = layers.Shuffle("out", "inp", n, n, make_split(n), concat, max_branch=max_branch)
    graph = hlg.HighLevelGraph({"inp": parts, "out": shuf}, {"out": ["inp"]})
    return graph, [("out", q) for q in range(n)]


def dask_graph(n: int, max_branch: int) -> tuple[dict[Any, Any], list[Any]]:
    frame = dd.from_map(make_part, range(n))
    with dask.config.set({"dataframe.shuffle.max_branch": max_branch}):
        shuffled = frame.shuffle("x", npartitions=n, shuffle_method="tasks")
    return dict(shuffled.__dask_graph__()), list(shuffled.__dask_keys__())


def measure(run: Callable[[], Any], repeat: int) -> tuple[int, float]:
    best = float("inf")
    sent = 0
    for _ in range(repeat):
        _SENT[0] = 0
        start = time.perf_counter()
        run()
        best = min(best, time.perf_counter() - start)
        sent = _SENT[0]
    return sent, best


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--partitions", type=int, default=64)
    parser.add_argument("--max-branch", type=int, default=8)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--markdown", action="store_true")
    args = parser.parse_args(argv)
    n, workers = args.partitions, args.workers
    count_pipes()
    data = sum(len(pickle.dumps(make_part(i), protocol=5)) for i in range(n))
    graph, keys = hlg_graph(n, args.max_branch)
    shuf = graph.layers["out"]
    assert isinstance(shuf, layers.Shuffle)
    packed = hlg.unpack(hlg.pack(graph, keys))

    def run_hlg() -> Any:
        return hlg.compute(packed, keys, scheduler="processes", num_workers=workers, context="fork")

    dsk, dkeys = dask_graph(n, args.max_branch)

    def run_dask() -> Any:
        return dask.multiprocessing.get(
            dsk, dkeys, num_workers=workers, func_dumps=counting_dumps, context="fork"
        )

    rows: list[tuple[str, int, int, float]] = []
    sent, seconds = measure(run_hlg, args.repeat)
    rows.append(("hlg processes, pieces", len(graph), sent, seconds))
    real_count = PieceRoutes.count
    PieceRoutes.count = lambda self, i: 0  # type: ignore[method-assign,assignment]
    try:
        sent, seconds = measure(run_hlg, args.repeat)
    finally:
        PieceRoutes.count = real_count  # type: ignore[method-assign]
    rows.append(("hlg processes, whole split outputs", len(graph), sent, seconds))
    sent, seconds = measure(run_dask, args.repeat)
    rows.append(("dask.multiprocessing.get, task shuffle", len(dsk), sent, seconds))

    print(
        f"python {platform.python_version()}, hlg {hlg.__version__}, dask {dask.__version__}, "
        f"pandas {pd.__version__}; {n} partitions of {ROWS:,} rows, max_branch "
        f"{args.max_branch} ({shuf.stages} stages of k={shuf.k}), {workers} fork workers; "
        f"pickled input {data:,} B; best of {args.repeat}"
    )
    header = ("run", "tasks", "bytes sent to workers", "x input", "wall time")
    if args.markdown:
        print("| " + " | ".join(header) + " |")
        print("|---|---:|---:|---:|---:|")
        for name, tasks, sent, seconds in rows:
            print(f"| {name} | {tasks:,} | {sent:,} | {sent / data:.2f} | {seconds:.2f} s |")
    else:
        for name, tasks, sent, seconds in rows:
            print(f"{name:<42} {tasks:>7,} {sent:>16,} {sent / data:>7.2f} {seconds:>8.2f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
