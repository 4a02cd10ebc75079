"""Timing and table helpers shared by the benchmark scripts (imported as ``_common``).

The scripts run as ``python benchmarks/bench_x.py``, so this directory is on ``sys.path``.

>>> ratio(1.0, 4.0), ratio(1.0, None), number(3.14159), number(12345.6)
('0.250', '-', '3.142', '12,346')
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any


def best(func: Callable[[], Any], repeat: int) -> float:
    """The shortest of ``repeat`` wall times of ``func()``, in seconds."""
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        func()
        times.append(time.perf_counter() - start)
    return min(times)


def ratio(a: float, b: float | None, digits: int = 3) -> str:
    """``a / b`` with ``digits`` decimals, or ``-`` when there is no (or a zero) ``b``."""
    return "-" if not b else f"{a / b:.{digits}f}"


def number(value: float) -> str:
    """A measured value: three decimals below 100, whole numbers with separators above."""
    return f"{value:,.3f}" if value < 100 else f"{value:,.0f}"


def print_table(header: Sequence[str], rows: Sequence[Sequence[str]], markdown: bool) -> None:
    """Print ``rows`` under ``header``: a markdown table, or columns padded to align."""
    if markdown:
        print("| " + " | ".join(header) + " |")
        print("|" + "---|" * len(header))
        for row in rows:
            print("| " + " | ".join(row) + " |")
    else:
        table = [tuple(header), *map(tuple, rows)]
        widths = [max(len(r[i]) for r in table) for i in range(len(header))]
        for row in table:
            print("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)))
