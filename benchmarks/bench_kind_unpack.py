"""Unpacking a 1,000,000-block custom kind: verified per box (``Kind.reads``) vs key by key.

Run ``python benchmarks/bench_kind_unpack.py`` (with ``examples/window-kind`` installed,
as ``.ci/setup`` does); docs/kinds.md records the table. The layer is the example
package's ``WindowSum`` over a 1,000,000-block symbolic source. Without ``reads`` the
default ``verify`` visits every key: within the message's work budget that is refused,
and with the budget lifted (the cost before the budget existed) it takes seconds. dask
has no counterpart (its scheduler unpickles the graph), so there is no dask column.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

import hlg
from hlg import layers

try:
    import window_kind
except ImportError:
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "examples" / "window-kind"))
    import window_kind

N = 1_000_000


class NoReads(window_kind.WindowSumKind):
    """The same kind without ``reads``: verification falls back to key by key."""

    def reads(self, layer: hlg.Layer) -> None:
        return None


def best(func: Any, repeat: int = 3) -> tuple[float, Any]:
    times, result = [], None
    for _ in range(repeat):
        start = time.perf_counter()
        try:
            result = func()
        except hlg.PackError as err:
            result = err
        times.append(time.perf_counter() - start)
    return min(times), result


def main() -> None:
    source = layers.blockwise(int, "numbers", "i", layers.BlockIndex((N,)), "i")
    window = window_kind.WindowSum("window", "numbers", N, width=3)
    graph = hlg.HighLevelGraph({"numbers": source, "window": window}, {"window": ["numbers"]})
    data = hlg.pack(graph)
    print(f"message: {len(data)} bytes for {len(graph):,} tasks\n")
    print("| verify of the custom kind | unpack time | outcome |")
    print("|---|---:|---|")
    t, out = best(lambda: hlg.unpack(data))
    print(f"| per box (`reads`) | {t * 1e3:.2f} ms | {len(out):,} tasks |")
    hlg.register_layer_kind(NoReads())
    t, out = best(lambda: hlg.unpack(data))
    outcome = f"refused: {out}" if isinstance(out, hlg.PackError) else "accepted"
    print(f"| key by key, within the budget | {t * 1e3:.2f} ms | {outcome} |")
    import hlg._pack as pack_module

    pack_module.WORK_BASE = 10**9  # lift the budget: the cost of an unbounded key walk
    t, out = best(lambda: hlg.unpack(data), repeat=1)
    print(f"| key by key, budget lifted | {t * 1e3:.0f} ms | {len(out):,} tasks |")
    hlg.register_layer_kind(window_kind.WINDOW_SUM)


if __name__ == "__main__":
    main()
