"""The ``hlg demo`` command: one computation through every stage of hlg, checked against numpy.

The computation: ``n`` partitions of random integers are read through an input layer,
transformed by two blockwise layers, repartitioned by value with a staged ``Shuffle``,
checked per partition by a blockwise layer and summed by a ``TreeReduction``. The graph is
optimized (blockwise fusion, culling), packed, and sent to a *scheduler process* that
expands, orders and dispatches it to worker processes with every unpickling entry point
disabled in itself — only the workers unpickle. The result is checked against numpy.

This module is an application of the built-in layers, not part of the core: it is the one
module of ``hlg/`` that imports ``hlg.layers`` (besides the test kit), by design.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

__all__ = ["DemoResult", "build_graph", "expected_totals", "run_demo"]

SIZES = {"small": 1_000, "large": 11_000}
RECORDS = 64  # records per input partition
HIGH = 1 << 20  # values are drawn from range(HIGH)


def read_partition(seed: int) -> np.ndarray:
    """The input partition ``seed``: ``RECORDS`` integers from a seeded generator."""
    return np.random.default_rng(seed).integers(0, HIGH, size=RECORDS, dtype=np.int64)


def scale(part: np.ndarray) -> np.ndarray:
    """An elementwise step (fused with its neighbours by optimization)."""
    return part * 3


def offset(part: np.ndarray) -> np.ndarray:
    """Another elementwise step."""
    return part + 1


def route(part: np.ndarray, k: int, stage: int, n: int) -> list[np.ndarray]:
    """Shuffle split: a value goes to partition ``value % n``; digit ``stage`` picks the piece."""
    digit = part % n // k**stage % k
    return [part[digit == j] for j in range(k)]


def concat(pieces: list[np.ndarray]) -> np.ndarray:
    """Shuffle concat."""
    return np.concatenate(pieces) if pieces else np.empty(0, dtype=np.int64)


def check_partition(part: np.ndarray, block: tuple[int, ...], n: int) -> tuple[int, int, int]:
    """(records, their sum, records in the wrong partition) for output partition ``block``."""
    misplaced = int(np.count_nonzero(part % n != block[0]))
    return (len(part), int(part.sum()), misplaced)


def add_totals(values: list[tuple[int, int, int]]) -> tuple[int, int, int]:
    """Tree-reduction combine and aggregate: add the triples."""
    return (
        sum(v[0] for v in values),
        sum(v[1] for v in values),
        sum(v[2] for v in values),
    )


def identity(value: Any) -> Any:
    """Tree-reduction chunk step: the checked triple itself."""
    return value


def build_graph(n: int) -> Any:
    """The demo's HighLevelGraph over ``n`` partitions (about 9 tasks per partition).

    >>> graph = build_graph(10)
    >>> sorted(graph.layers)
    ['checked', 'offset', 'read', 'scale', 'shuffled', 'total']
    """
    from functools import partial

    from hlg import HighLevelGraph
    from hlg import layers as L

    read = L.InputLayer("read", read_partition, list(range(n)))
    scaled = L.blockwise(scale, "scale", "i", "read", "i", numblocks={"read": (n,)})
    shifted = L.blockwise(offset, "offset", "i", "scale", "i", numblocks={"scale": (n,)})
    shuffled = L.Shuffle("shuffled", "offset", n, n, partial(route, n=n), concat)
    checked = L.blockwise(
        check_partition,
        "checked",
        "i",
        "shuffled",
        "i",
        L.BlockIndex((n,)),
        "i",
        n,
        None,
        numblocks={"shuffled": (n,)},
    )
    total = L.TreeReduction("total", "checked", n, identity, add_totals, add_totals)
    return HighLevelGraph(
        {
            "read": read,
            "scale": scaled,
            "offset": shifted,
            "shuffled": shuffled,
            "checked": checked,
            "total": total,
        },
        {
            "scale": ["read"],
            "offset": ["scale"],
            "shuffled": ["offset"],
            "checked": ["shuffled"],
            "total": ["checked"],
        },
    )


def expected_totals(n: int) -> tuple[int, int, int]:
    """The answer computed by numpy alone: (records, sum, misplaced = 0).

    >>> expected_totals(2)
    (128, ..., 0)
    """
    values = np.concatenate([read_partition(i) for i in range(n)]) * 3 + 1
    return (len(values), int(values.sum()), 0)


# The scheduler process: reads packed bytes on stdin, expands and runs them with every
# unpickling entry point disabled in itself, writes the pickled outputs (still bytes) and
# its timings to stdout. Only its worker processes unpickle.
_SCHEDULER = r"""
import json, sys, time
import msgspec
import hlg
from hlg.testing import no_unpickling
from hlg._callbacks import CallbackGroup, ProgressBar
from hlg._processes import run_packed

data = sys.stdin.buffer.read()
options = json.loads(sys.argv[1])
with no_unpickling():
    start = time.perf_counter()
    packed = hlg.unpack(data)
    keys = packed.output_keys
    expanded = time.perf_counter()
    order = hlg.order(packed, keys)
    ordered = time.perf_counter()
    callbacks = [ProgressBar(file=sys.stderr)] if options["progress"] else []
    results = run_packed(packed, keys, options["workers"], CallbackGroup(callbacks))
    done = time.perf_counter()
timings = {
    "unpack": expanded - start,
    "order": ordered - expanded,
    "run": done - ordered,
    "tasks": len(order),
}
out = msgspec.msgpack.encode([timings, [[repr(k), v] for k, v in results.items()]])
sys.stdout.buffer.write(out)
"""


@dataclass
class DemoResult:
    """What the demo did: phases with their durations, sizes, and the checked answer."""

    partitions: int
    tasks_before: int = 0
    tasks_after: int = 0
    layers_before: int = 0
    layers_after: int = 0
    packed_bytes: int = 0
    scheduled_tasks: int = 0
    result: tuple[int, int, int] | None = None
    expected: tuple[int, int, int] | None = None
    phases: list[tuple[str, float]] = field(default_factory=list)
    where: str = ""

    @property
    def ok(self) -> bool:
        """The computed answer equals numpy's and no record landed in a wrong partition."""
        return self.result is not None and self.result == self.expected

    def table(self) -> str:
        """A short text report."""
        lines = [
            f"hlg demo: {self.partitions:,} partitions -> read, scale, offset (blockwise), "
            f"shuffle, check (blockwise), tree sum; run {self.where}",
            "",
            f"  layers         {self.layers_before} -> {self.layers_after} after optimization",
            f"  tasks          {self.tasks_before:,} -> {self.tasks_after:,} after optimization",
            f"  packed bytes   {self.packed_bytes:,}",
            f"  scheduled      {self.scheduled_tasks:,} tasks",
            "",
            "  phase                          time",
        ]
        for name, seconds in self.phases:
            lines.append(f"  {name:<28} {seconds * 1e3:9.1f} ms")
        if self.result is not None:
            records, total, misplaced = self.result
            lines += [
                "",
                f"  result: {records:,} records, sum {total:,}, {misplaced} misplaced",
                f"  numpy:  {self.expected[0]:,} records, sum {self.expected[1]:,}"
                if self.expected
                else "",
                f"  check:  {'OK' if self.ok else 'MISMATCH'}",
            ]
        return "\n".join(lines)


def _timed(result: DemoResult, name: str, func: Callable[[], Any]) -> Any:
    start = time.perf_counter()
    value = func()
    result.phases.append((name, time.perf_counter() - start))
    return value


def run_demo(
    size: str | int = "large",
    scheduler: str = "processes",
    workers: int | None = None,
    progress: bool = True,
    out: Callable[[str], None] = print,
) -> DemoResult:
    """Run the demo and return what it did; ``scheduler`` is ``processes`` (a separate
    scheduler process that cannot unpickle), ``threads``, ``sync``, or a dask scheduler
    address (``tcp://…``).

    >>> result = run_demo(40, scheduler="sync", progress=False, out=lambda s: None)
    >>> result.ok, result.result == expected_totals(40)
    (True, True)
    """
    import os
    import pickle

    import hlg
    from hlg import layers as L

    n = SIZES[size] if isinstance(size, str) else int(size)
    if n < 1:
        raise ValueError(f"the demo needs at least one partition; got {n}")
    workers = workers or os.cpu_count() or 1
    result = DemoResult(partitions=n)
    graph = _timed(result, "build graph", lambda: build_graph(n))
    result.layers_before, result.tasks_before = len(graph.layers), len(graph)
    keys = [("total", 0)]
    optimized = _timed(
        result,
        "optimize (fuse, cull)",
        lambda: hlg.optimize(graph, keys, passes=[L.fuse_blockwise, hlg.cull]),
    )
    result.layers_after, result.tasks_after = len(optimized.layers), len(optimized)
    out(optimized.describe())
    out("")
    data: bytes = _timed(result, "pack", lambda: hlg.pack(optimized, keys))
    result.packed_bytes = len(data)

    if scheduler == "processes":
        result.where = f"in a scheduler process that cannot unpickle, {workers} worker processes"
        options = json.dumps({"workers": workers, "progress": progress})
        proc = _timed(
            result,
            "scheduler process (total)",
            lambda: subprocess.run(
                [sys.executable, "-c", _SCHEDULER, options],
                input=data,
                stdout=subprocess.PIPE,
                stderr=None if progress else subprocess.PIPE,
                check=False,
            ),
        )
        if proc.returncode != 0:
            detail = proc.stderr.decode(errors="replace")[-2000:] if proc.stderr else ""
            raise RuntimeError(f"the scheduler process failed ({proc.returncode}){detail}")
        import msgspec

        timings, outputs = msgspec.msgpack.decode(proc.stdout)
        for name in ("unpack", "order", "run"):
            result.phases.append((f"  scheduler: {name}", timings[name]))
        result.scheduled_tasks = timings["tasks"]
        values = {k: pickle.loads(v) for k, v in outputs}
        result.result = tuple(values[repr(keys[0])])
    elif scheduler in ("threads", "sync"):
        result.where = f"with the {scheduler} scheduler on the packed graph"
        packed = _timed(result, "unpack", lambda: hlg.unpack(data))
        result.scheduled_tasks = len(packed)
        value = _timed(
            result,
            f"compute ({scheduler})",
            lambda: hlg.compute(
                packed, keys[0], scheduler=scheduler, num_workers=workers, progress=progress
            ),
        )
        result.result = tuple(value)
    else:
        result.where = f"on the dask cluster at {scheduler}"
        value = _timed(
            result, "compute (dask cluster)", lambda: _on_cluster(optimized, keys, scheduler)
        )
        result.result = tuple(value)
    result.expected = _timed(result, "check against numpy", lambda: expected_totals(n))
    out(result.table())
    return result


def _on_cluster(graph: Any, keys: Sequence[Any], address: str) -> Any:
    try:
        from distributed import Client
    except ImportError:
        raise RuntimeError(
            "running on a dask cluster needs distributed: pip install 'hlg[distributed]'"
        ) from None
    import hlg

    with Client(address) as client:  # type: ignore[no-untyped-call]
        # the graph is packed again on its way to the dask scheduler, which expands it
        return hlg.compute(graph, keys[0], scheduler=client)
