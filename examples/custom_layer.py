"""A collection author's own layer kind, packed symbolically: the window_kind example package.

The layer type and its kind live in ``examples/window-kind`` (an installable package
declaring its kind in the ``hlg.layers`` entry point group; ``.ci/setup`` installs it
with ``pip install -e``). Here a client builds, culls, checks, runs and packs a graph
with it: the packed layer is a few numbers and one blob whatever its size, and a
scheduler with the package installed expands it without unpickling (docs/kinds.md).
"""

from __future__ import annotations

import sys
import warnings
from pathlib import Path

import hlg
from hlg import layers
from hlg.testing import check_kind

try:
    import window_kind
except ImportError:  # a source checkout without the package installed
    sys.path.insert(0, str(Path(__file__).resolve().parent / "window-kind"))
    import window_kind

WindowSum = window_kind.WindowSum


def graph(n: int, width: int = 3) -> hlg.HighLevelGraph:
    numbers = layers.InputLayer("numbers", int, [str(i) for i in range(n)])
    window = WindowSum("window", "numbers", n, width)
    return hlg.HighLevelGraph({"numbers": numbers, "window": window}, {"window": ["numbers"]})


def main() -> int:
    g = graph(1000)
    print(g.describe())
    key = ("window", 500)
    small = g.cull([key])
    print(f"\nculled to {key}:\n{small.describe()}")
    assert hlg.get(g, key) == 498 + 499 + 500
    check_kind(window_kind.WINDOW_SUM, WindowSum("w", "numbers", 50, 4))
    print("\ncheck_kind(WINDOW_SUM, ...) passed")
    sizes = {}
    for n in (1_000, 1_000_000):
        window = WindowSum("window", "numbers", n, 3)
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # packed by its kind: no per-task fallback
            sizes[n] = len(hlg.pack(hlg.HighLevelGraph({"window": window})))
    print(f"packed window layer: {sizes} bytes by block count")
    assert sizes[1_000] <= sizes[1_000_000] <= sizes[1_000] + 8  # only integer widths differ
    packed = hlg.unpack(hlg.pack(g, [key]))
    print(f"packed and unpacked: {packed}")
    assert hlg.get(packed, key) == 1497
    print(f"window sum at 500 = {hlg.get(packed, key)} (expected 1497)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
