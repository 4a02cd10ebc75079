"""Running on dask.distributed: a local two-process cluster on loopback runs an hlg graph.

The graph — blockwise arithmetic over an array of blocks, a shuffle by value and a tree
reduction — is packed on the client and expanded by the dask scheduler, which keeps user
functions as bytes; the two worker processes unpickle and run them. The answer is
checked against numpy. On a real cluster, replace the LocalCluster with
``Client("tcp://scheduler:8786")``.
"""

from __future__ import annotations

import sys
import time
from operator import add, mul

import numpy as np

import hlg
from hlg import layers

N = 40  # partitions


def values(block: tuple[int, ...]) -> np.ndarray:
    """Partition ``i`` holds ``i * 25 … i * 25 + 24``."""
    return np.arange(block[0] * 25, (block[0] + 1) * 25)


def by_remainder(part: np.ndarray, k: int, stage: int) -> list[np.ndarray]:
    """Route each value to partition ``value % N``; digit ``stage`` (base k) picks the piece."""
    digit = part % N // k**stage % k
    return [part[digit == j] for j in range(k)]


def concat(pieces: list[np.ndarray]) -> np.ndarray:
    return np.concatenate(pieces) if pieces else np.empty(0, dtype=np.int64)


def misplaced(part: np.ndarray, block: tuple[int, ...]) -> int:
    return int(np.count_nonzero(part % N != block[0]))


def partition_sum(part: np.ndarray) -> int:
    return int(part.sum())


def add_all(items: list[int]) -> int:
    return sum(items)


def graph() -> hlg.HighLevelGraph:
    src = layers.blockwise(values, "src", "i", layers.BlockIndex((N,)), "i")
    nb = {"src": (N,)}
    a = layers.blockwise(mul, "a", "i", "src", "i", 3, None, numblocks=nb)
    b = layers.blockwise(add, "b", "i", "a", "i", 1, None, numblocks={"a": (N,)})
    shuffled = layers.Shuffle("by-rem", "b", N, N, by_remainder, concat, max_branch=8)
    wrong = layers.blockwise(
        misplaced, "wrong", "i", "by-rem", "i", layers.BlockIndex((N,)), "i",
        numblocks={"by-rem": (N,)},
    )  # fmt: skip
    total = layers.TreeReduction("total", "by-rem", N, partition_sum, add_all, add_all)
    return hlg.HighLevelGraph(
        {"src": src, "a": a, "b": b, "by-rem": shuffled, "wrong": wrong, "total": total},
        {"a": ["src"], "b": ["a"], "by-rem": ["b"], "wrong": ["by-rem"], "total": ["by-rem"]},
    )


def main() -> int:
    from distributed import Client, LocalCluster

    g = graph()
    keys = [("total", 0), [("wrong", i) for i in range(N)]]
    expected = int((np.arange(N * 25) * 3 + 1).sum())
    start = time.perf_counter()
    with (
        LocalCluster(
            n_workers=2,
            threads_per_worker=1,
            processes=True,
            host="127.0.0.1",
            dashboard_address="127.0.0.1:0",
        ) as cluster,
        Client(cluster) as client,
    ):
        started = time.perf_counter()
        total, wrong = hlg.compute(g, keys, scheduler=client)
        done = time.perf_counter()
    print(g.describe())
    print(
        f"\n{len(g):,} tasks on a 2-worker LocalCluster: total {total:,} "
        f"(numpy: {expected:,}), {sum(wrong)} values in a wrong partition"
    )
    print(f"cluster start {started - start:.1f} s, compute {done - started:.2f} s")
    ok = total == expected and sum(wrong) == 0
    print("check: OK" if ok else "check: MISMATCH")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
