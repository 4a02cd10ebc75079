"""A collection author's own layer kind: a sliding-window sum, written in a dozen lines.

The layer says only what identifies its family — its keys and how to build one task —
plus O(1) answers for ``len``, ``in`` and dependencies. It then culls, describes, runs and
packs like a built-in kind (packing falls back to per-task payloads, with one warning,
because the kind is not registered).
"""

from __future__ import annotations

import sys
import warnings
from collections.abc import Iterator
from typing import Any

import hlg
from hlg import GraphNode, Key, Layer, Task, TaskRef, layers


class WindowSum(Layer):
    """Block ``i`` is the sum of blocks ``i - width + 1 .. i`` of ``source``."""

    kind = "window-sum"

    def __init__(self, name: str, source: str, nblocks: int, width: int) -> None:
        super().__init__(name)
        self.source, self.nblocks, self.width = source, nblocks, width

    def __iter__(self) -> Iterator[Key]:
        return ((self.name, i) for i in range(self.nblocks))

    def __getitem__(self, key: Key) -> GraphNode:
        if key not in self:
            raise KeyError(key)
        return Task(key, sum, [TaskRef(k) for k in self.dependency_tuple(key)])

    # optional: symbolic answers instead of the defaults' walks over the keys
    def __len__(self) -> int:
        return self.nblocks

    def __contains__(self, key: object) -> bool:
        return (
            type(key) is tuple
            and len(key) == 2
            and key[0] == self.name
            and type(key[1]) is int
            and 0 <= key[1] < self.nblocks
        )

    def dependency_tuple(self, key: Key) -> tuple[Key, ...]:
        i: Any = key[1]
        return tuple((self.source, j) for j in range(max(0, i - self.width + 1), i + 1))


def main() -> int:
    n = 1000
    numbers = layers.InputLayer("numbers", int, [str(i) for i in range(n)])
    window = WindowSum("window", "numbers", n, width=3)
    graph = hlg.HighLevelGraph({"numbers": numbers, "window": window}, {"window": ["numbers"]})
    print(graph.describe())
    key = ("window", 500)
    small = graph.cull([key])
    print(f"\nculled to {key}: {sorted(small)}")
    assert hlg.get(graph, key) == 498 + 499 + 500
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        packed = hlg.unpack(hlg.pack(graph, [key]))
    print(f"packed and unpacked: {packed}; warning: {caught[0].message}")
    assert hlg.get(packed, key) == 1497
    print(f"window sum at 500 = {hlg.get(packed, key)} (expected 1497)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
