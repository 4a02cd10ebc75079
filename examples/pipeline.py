"""The whole hlg pipeline on one page: tasks, legacy graphs, layers, fusion, shuffle,
reduction, packing."""

from __future__ import annotations

import sys
import time
from operator import add, mul

import numpy as np

import hlg
from hlg import Alias, DataNode, Task, TaskRef, layers
from hlg.testing import no_unpickling


def explicit_graph() -> dict[hlg.Key, hlg.GraphNode]:
    """A small graph written with explicit nodes: no guessing what is a key."""
    graph: dict[hlg.Key, hlg.GraphNode] = {
        "x": DataNode("x", 10),
        # "x" below is a literal string; TaskRef("x") is the value of key "x".
        ("y", 0): Task(("y", 0), add, TaskRef("x"), 1),
        ("y", 1): Task(("y", 1), mul, TaskRef("x"), 2),
        "label": Task("label", str.upper, "x"),
        "total": Task("total", sum, [TaskRef(("y", 0)), TaskRef(("y", 1))]),
        "result": Alias("result", "total"),
    }
    return graph


def legacy_graph() -> dict[object, object]:
    """The same computation as a dask-style dict of tuples."""
    return {
        "x": 10,
        ("y", 0): (add, "x", 1),
        ("y", 1): (mul, "x", 2),
        "total": (sum, [("y", 0), ("y", 1)]),
        "result": "total",
    }


def chain(n: int) -> dict[hlg.Key, hlg.GraphNode]:
    graph: dict[hlg.Key, hlg.GraphNode] = {("c", 0): DataNode(("c", 0), 0)}
    for i in range(1, n):
        graph[("c", i)] = Task(("c", i), add, TaskRef(("c", i - 1)), 1)
    return graph


def array_graph(n: int) -> hlg.HighLevelGraph:
    """The 4-layer blockwise chain ones -> +1 -> *2 -> transpose + x on n x n blocks."""
    chunks = ((2,) * n, (2,) * n)
    x = layers.blockwise(np.ones, "x", "ij", layers.ChunkShape(chunks), "ij")
    a = layers.blockwise(add, "a", "ij", "x", "ij", 1, None, numblocks={"x": (n, n)})
    b = layers.blockwise(mul, "b", "ij", "a", "ij", 2, None, numblocks={"a": (n, n)})
    c = layers.blockwise(add, "c", "ij", "b", "ji", "x", "ij", numblocks={"b": (n, n), "x": (n, n)})
    return hlg.HighLevelGraph(
        {"x": x, "a": a, "b": b, "c": c}, {"a": ["x"], "b": ["a"], "c": ["b", "x"]}
    )


def layered_pipeline() -> None:
    n = 1000
    start = time.perf_counter()
    graph = array_graph(n)
    key = ("c", 123, 456)
    optimized, why = hlg.optimize(
        graph, [key], passes=[layers.fuse_blockwise, hlg.cull], explain=True
    )
    elapsed = time.perf_counter() - start
    print(f"\n{len(graph):,}-task blockwise graph, before optimization:")
    print(graph.describe())
    print(f"\nbuilt, fused and culled to {key} in {elapsed * 1e3:.1f} ms:")
    print(optimized.describe())
    for reason in why:
        print("  refused:", reason)

    data = hlg.pack(graph)
    with no_unpickling():  # what a scheduler does: no user code is unpickled
        packed = hlg.unpack(data)
        culled = packed.cull([key])
        order = list(hlg.toposort(culled, [key]))
    print(f"\npacked the whole graph into {len(data):,} bytes; a scheduler unpacked it")
    print(f"({len(packed):,} tasks, none built) and culled it to {order},")
    print("without unpickling anything")
    block = hlg.get(culled, key)  # the worker side unpickles each blob once
    expected = (np.ones((2, 2)) + 1) * 2 + 1
    assert np.array_equal(block, expected), block
    print(f"block {key} computed from the packed graph:\n{block}")


def bucket_split(part: np.ndarray, k: int, stage: int) -> list[np.ndarray]:
    """Route each value to partition ``value % 1000``: digit ``stage`` (base k) picks the piece."""
    digit = part % 1000 // k**stage % k
    return [part[digit == j] for j in range(k)]


def chunk_sum(part: np.ndarray) -> int:
    return int(part.sum())


def add_all(values: list[int]) -> int:
    return sum(values)


def shuffle_and_reduce() -> None:
    """1,000 partitions of numbers, repartitioned by value and summed with a tree."""
    n = 1000
    start = time.perf_counter()
    data = layers.blockwise(partition_values, "data", "i", layers.BlockIndex((n,)), "i", n, None)
    shuf = layers.Shuffle("by-value", "data", n, n, bucket_split, np.concatenate)
    total = layers.TreeReduction("total", "by-value", n, chunk_sum, add_all, add_all)
    graph = hlg.HighLevelGraph(
        {"data": data, "by-value": shuf, "total": total},
        {"by-value": ["data"], "total": ["by-value"]},
    )
    built = time.perf_counter() - start
    print(f"\nshuffle of {n:,} partitions in {shuf.stages} stages of k={shuf.k}, then a tree sum:")
    print(graph.describe())
    one = graph.cull([("by-value", 7)])
    print(f"built in {built * 1e3:.1f} ms; culled to one output partition: {len(one):,} tasks")
    packed_bytes = hlg.pack(graph)
    with no_unpickling():
        packed = hlg.unpack(packed_bytes)
    print(f"packed into {len(packed_bytes):,} bytes ({len(packed):,} tasks on the scheduler)")
    part = hlg.get(one, ("by-value", 7))
    assert set((part % 1000).tolist()) <= {7}, part
    result = hlg.get(packed, ("total", 0))
    expected = sum(range(n * n))
    assert result == expected, (result, expected)
    print(f"partition 7 holds {len(part)} values, all = 7 mod 1000; the total is {result:,}")


def partition_values(block: tuple[int, ...], n: int) -> np.ndarray:
    """Partition ``i`` holds ``i * n … i * n + n - 1``."""
    return np.arange(block[0] * n, (block[0] + 1) * n)


def main() -> int:
    graph = explicit_graph()
    print("explicit graph:")
    for key, node in graph.items():
        print(f"  {key!r:12} {node!r}   depends on {sorted(map(str, node.dependencies))}")
    print("result, label =", hlg.get(graph, ["result", "label"]))

    converted = hlg.convert_legacy_graph(legacy_graph())
    print("\nlegacy graph converted:")
    for key, node in converted.items():
        print(f"  {key!r:12} {node!r}")
    legacy_result = hlg.get(converted, "result")
    print("result =", legacy_result)
    assert legacy_result == hlg.get(graph, "result") == 31

    n = 200_000
    start = time.perf_counter()
    big = chain(n)
    built = time.perf_counter()
    out = hlg.get(big, ("c", n - 1))
    done = time.perf_counter()
    print(
        f"\n{n:,}-task chain: built in {(built - start) / n * 1e6:.2f} µs/task, "
        f"ran in {(done - built) / n * 1e6:.2f} µs/task -> {out}"
    )
    assert out == n - 1
    print("token of the explicit graph:", hlg.tokenize(graph))
    layered_pipeline()
    shuffle_and_reduce()
    return 0


if __name__ == "__main__":
    sys.exit(main())
