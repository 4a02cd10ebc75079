"""Worst cases of the scheduler side: what a message of at most 64 KiB can cost at unpack,
and what one task built afterwards can cost, under the default ``hlg.Limits``.

Run ``python benchmarks/bench_unpack_bounds.py``; docs/protocol.md ("Threat model and
limits") records the table. Each case is a hostile-but-accepted (or refused-as-late-as-
possible) message built to maximise one cost; time is the best of 3 runs, memory the
peak traced by ``tracemalloc`` in a separate run. dask has no counterpart (its scheduler
unpickles the graph), so there is no side-by-side column here.
"""

from __future__ import annotations

import contextlib
import hashlib
import time
import tracemalloc
from collections.abc import Callable
from typing import Any

import msgspec

import hlg

MAX = 64 * 1024
enc = msgspec.msgpack.encode
BLOB = b"opaque"


def envelope(records: list[Any], outputs: Any = ()) -> bytes:
    body = [
        "0.1.0",
        "3.11.7",
        "3.1.3",
        records,
        [list(o) for o in outputs],
        [BLOB],
        [hashlib.blake2b(BLOB, digest_size=16).digest()],
    ]
    return enc([1, msgspec.Raw(enc(body))])


def record(name: str, kind: str, state: Any, deps: Any = ()) -> list[Any]:
    return [name, kind, 1, list(deps), {}, msgspec.Raw(enc(state))]


def bw(output: str, out_ind: list[str], args: list[Any], numblocks: Any = None, **kw: Any) -> Any:
    return [
        output,
        out_ind,
        args,
        numblocks or {},
        kw.get("new_axes", {}),
        False,
        kw.get("output_blocks"),
        0,
        len(args),
        [],
    ]


def fill(make: Callable[[int], bytes]) -> bytes:
    """The largest ``make(n)`` of at most MAX bytes (n found by doubling and bisection)."""
    lo, hi = 1, 2
    while len(make(hi)) <= MAX:
        lo, hi = hi, hi * 2
    while hi - lo > 1:
        mid = (lo + hi) // 2
        lo, hi = (mid, hi) if len(make(mid)) <= MAX else (lo, mid)
    return make(lo)


def materialized_rows(n: int) -> bytes:
    rows = [[["k", i], [], "d", 0, None] for i in range(n)]
    return envelope([record("m", "materialized", rows)])


def materialized_edges(n: int) -> bytes:
    rows = [["a", [], "d", 0, None], ["b", ["a"] * n, "d", 0, None]]
    return envelope([record("m", "materialized", rows)])


def many_layers(n: int) -> bytes:
    return envelope(
        [
            record(f"l{i}", "blockwise", bw(f"l{i}", ["i"], [["block-index", [2], ["i"]]]))
            for i in range(n)
        ]
    )


def declared_1e8() -> bytes:
    return envelope(
        [
            record(
                "x", "blockwise", bw("x", ["i", "j"], [["block-index", [10**4, 10**4], ["i", "j"]]])
            )
        ]
    )


def enumerated_reads(n: int) -> bytes:
    """A culled reader whose reads must be checked block by block against culled producers."""
    blocks = [[i] for i in range(n)]
    x = bw("x", ["i"], [["block-index", [10**6], ["i"]]], output_blocks=blocks)
    x2 = bw("x", ["i"], [["block-index", [10**6], ["i"]]], output_blocks=blocks[:1])
    y = bw("y", ["i"], [["name", "x", ["i"]]], {"x": [10**6]}, output_blocks=blocks)
    return envelope(
        [
            record("x1", "blockwise", x),
            record("x2", "blockwise", x2),
            record("y", "blockwise", y, ["x1", "x2"]),
        ]
    )


def fan_in_task() -> bytes:
    x = bw("x", ["j"], [["block-index", [10**5], ["j"]]])
    y = bw("y", [], [["name", "x", ["j"]]], {"x": [10**5]})
    return envelope([record("x", "blockwise", x), record("y", "blockwise", y, ["x"])])


def measure(run: Callable[[], Any]) -> tuple[float, float]:
    best = float("inf")
    for _ in range(3):
        start = time.perf_counter()
        with contextlib.suppress(hlg.PackError):
            run()
        best = min(best, time.perf_counter() - start)
    tracemalloc.start()
    with contextlib.suppress(hlg.PackError):
        run()
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return best, peak


def outcome(data: bytes) -> str:
    try:
        packed = hlg.unpack(data)
    except hlg.PackError as err:
        return f"PackError: {str(err)[:60]}…"
    return f"{len(packed):,} tasks"


def main() -> None:
    cases = {
        "materialized, one row per task": fill(materialized_rows),
        "materialized, one task with many deps": fill(materialized_edges),
        "many small blockwise layers": fill(many_layers),
        "blockwise declaring 10^8 tasks": declared_1e8(),
        "culled reads checked block by block": fill(enumerated_reads),
    }
    print("| message | bytes | outcome | unpack time | unpack peak memory |")
    print("|---|---:|---|---:|---:|")
    for name, data in cases.items():
        seconds, peak = measure(lambda data=data: hlg.unpack(data))
        cost = f"{seconds * 1e3:.1f} ms | {peak / 1e6:.1f} MB"
        print(f"| {name} | {len(data):,} | {outcome(data)} | {cost} |")
    packed = hlg.unpack(fan_in_task())
    key = ("y",)
    print()
    print("| per task, fan-in 10^5 (the default limit) | time | peak memory |")
    print("|---|---:|---:|")
    for name, run in {
        "packed.dependencies(key)": lambda: packed.dependencies(key),
        "packed[key]": lambda: packed[key],
        "packed.cull([key])": lambda: packed.cull([key]),
    }.items():
        seconds, peak = measure(run)
        print(f"| {name} | {seconds * 1e3:.1f} ms | {peak / 1e6:.1f} MB |")
    big = hlg.unpack(declared_1e8())
    print()
    print("| on the 10^8-task graph | time | peak memory |")
    print("|---|---:|---:|")
    for name, run in {
        "len, repr, describe": lambda: (len(big), repr(big), big.describe()),
        "first key of iter": lambda: next(iter(big)),
    }.items():
        seconds, peak = measure(run)
        print(f"| {name} | {seconds * 1e3:.2f} ms | {peak / 1e6:.3f} MB |")


if __name__ == "__main__":
    main()
