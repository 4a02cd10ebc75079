"""The ``hlg`` command line: one ``main(argv) -> int`` behind ``python -m hlg`` and ``hlg``.

Exit status: 0 success, 1 the command ran and failed, 2 usage or bad input (a malformed
packed graph, a script that does not define the object asked for).
"""

from __future__ import annotations

import argparse
import json
import runpy
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

__all__ = ["main"]

_EPILOG = {
    "bench": """example:
  hlg bench --quick
  hlg bench --markdown > table.md
  hlg bench --quick --plots docs/img

Every figure is measured beside dask's in the same process and run; the last column
is hlg / dask (below 1: hlg is faster or smaller). Absolute times depend on the machine
and its load; the ratios are what to compare.""",
    "demo": """example:
  hlg demo                          # ~100,000 tasks, a scheduler process + 2 workers
  hlg demo --size small --scheduler threads
  hlg demo --scheduler tcp://127.0.0.1:8786   # on a running dask cluster

The demo reads partitions through an input layer, transforms them blockwise, shuffles
them by value, checks every partition and sums with a tree reduction; the graph is
optimized, packed, expanded by a scheduler that cannot unpickle, run, and checked
against numpy. Exit status 1 if the answer is wrong.""",
    "inspect": """example:
  hlg pack examples/pipeline.py:explicit_graph -o graph.hlg
  hlg inspect graph.hlg
  hlg inspect --json - < graph.hlg""",
    "pack": """example:
  hlg pack examples/pipeline.py:explicit_graph -o graph.hlg
  hlg pack my_graphs.py:build -o out.hlg --key "('total', 0)"

OBJ names a HighLevelGraph, a mapping of graph nodes, an object with __hlg_graph__, or
a function of no arguments that returns one of those.""",
}


class UsageError(Exception):
    """Bad input from the command line: reported in one line, exit status 2."""


def _read_input(path: str) -> bytes:
    if path == "-":
        return sys.stdin.buffer.read()
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise UsageError(f"cannot read {path}: {exc.strerror or exc}") from None


def _blob_sizes(packed: Any) -> list[int]:
    blobs = packed.blobs
    return [len(blobs.data[i]) for i in range(len(blobs.data))]


def inspect_summary(data: bytes) -> dict[str, Any]:
    """Describe a packed graph as plain data, without unpickling anything.

    >>> import hlg
    >>> from operator import add
    >>> from hlg import DataNode, Task, TaskRef
    >>> data = hlg.pack({"a": DataNode("a", 1), "b": Task("b", add, TaskRef("a"), 1)})
    >>> summary = inspect_summary(data)
    >>> summary["tasks"], [layer["kind"] for layer in summary["layers"]]
    (2, ['materialized'])
    """
    from hlg import unpack

    packed = unpack(data)
    graph = packed.graph
    layers = []
    for name in graph.topological_layers():
        layer = graph.layers[name]
        layers.append(
            {
                "name": name,
                "kind": layer.kind,
                "tasks": len(layer),
                "dependencies": sorted(graph.dependencies[name]),
                "annotations": dict(layer.annotations),
            }
        )
    sizes = _blob_sizes(packed)
    return {
        "bytes": len(data),
        "versions": dict(packed.meta),
        "tasks": sum(item["tasks"] for item in layers),
        "outputs": len(packed.output_keys),
        "layers": layers,
        "blobs": {"count": len(sizes), "bytes": sum(sizes), "largest": max(sizes, default=0)},
    }


def _format_summary(summary: dict[str, Any]) -> str:
    header = ("layer", "kind", "tasks", "dependencies", "annotations")
    rows = [header]
    for item in summary["layers"]:
        notes = ", ".join(f"{k}={v!r}" for k, v in item["annotations"].items()) or "-"
        rows.append(
            (
                item["name"],
                item["kind"],
                f"{item['tasks']:,}",
                ", ".join(item["dependencies"]) or "-",
                notes,
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    table = [
        "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip()
        for row in rows
    ]
    versions = ", ".join(f"{k} {v}" for k, v in summary["versions"].items())
    blobs = summary["blobs"]
    return "\n".join(
        [
            f"packed graph: {summary['bytes']:,} bytes, {len(summary['layers'])} layers, "
            f"{summary['tasks']:,} tasks, {summary['outputs']:,} outputs",
            f"packed by: {versions}",
            f"blobs: {blobs['count']} ({blobs['bytes']:,} bytes, largest {blobs['largest']:,})",
            "",
            *table,
        ]
    )


def _cmd_inspect(args: argparse.Namespace) -> int:
    from hlg import PackError

    data = _read_input(args.file)
    try:
        summary = inspect_summary(data)
    except PackError as exc:
        name = "standard input" if args.file == "-" else args.file
        raise UsageError(f"{name} is not a valid packed graph: {exc}") from None
    if args.json:
        print(json.dumps(summary, indent=2, default=repr))
    else:
        print(_format_summary(summary))
    return 0


def load_object(spec: str) -> Any:
    """Run ``SCRIPT`` and return its global ``OBJ`` (called if it is a function).

    ``spec`` is ``SCRIPT:OBJ``; errors name the script and the object.
    """
    script, sep, name = spec.rpartition(":")
    if not sep or not script or not name:
        raise UsageError(f"expected SCRIPT:OBJ, got {spec!r}")
    if not Path(script).is_file():
        raise UsageError(f"no such script: {script}")
    namespace = runpy.run_path(script, run_name="__hlg_pack__")
    if name not in namespace:
        raise UsageError(f"{script} defines no {name!r}")
    obj = namespace[name]
    if callable(obj) and not hasattr(obj, "__hlg_graph__") and not hasattr(obj, "layers"):
        import inspect

        try:
            inspect.signature(obj).bind()
        except TypeError:
            raise UsageError(
                f"{script}:{name} is a function that needs arguments; name an object or a "
                "function of no arguments"
            ) from None
        except ValueError:  # no signature (a builtin): just call it
            pass
        obj = obj()
    return obj


def _cmd_pack(args: argparse.Namespace) -> int:
    import ast

    from hlg import HighLevelGraph, pack

    obj = load_object(args.obj)
    if hasattr(obj, "__hlg_graph__"):
        obj = obj.__hlg_graph__()
    if not isinstance(obj, HighLevelGraph) and not hasattr(obj, "items"):
        raise UsageError(f"{args.obj} is of type {type(obj).__name__}, not a graph")
    keys = None
    if args.key:
        try:
            keys = [ast.literal_eval(k) for k in args.key]
        except (ValueError, SyntaxError):
            raise UsageError(
                f"--key takes Python literals, e.g. \"('x', 0)\"; got {args.key}"
            ) from None
    data = pack(obj, keys)
    Path(args.output).write_bytes(data)
    print(f"wrote {args.output}: {len(data):,} bytes")
    return 0


def _cmd_demo(args: argparse.Namespace) -> int:
    from hlg._demo import run_demo

    scheduler = args.scheduler
    if scheduler not in ("sync", "threads", "processes") and "://" not in scheduler:
        raise UsageError(
            f"--scheduler takes sync, threads, processes or a dask address such as "
            f"tcp://127.0.0.1:8786; got {scheduler!r}"
        )
    result = run_demo(
        args.size, scheduler=scheduler, workers=args.workers, progress=not args.no_progress
    )
    return 0 if result.ok else 1


def _cmd_bench(args: argparse.Namespace) -> int:
    try:
        import dask  # noqa: F401
    except ImportError:
        raise UsageError("hlg bench compares with dask: pip install 'hlg[distributed]'") from None
    from hlg._bench import headline, markdown_table, plots, text_table

    rows = headline(quick=args.quick, repeat=args.repeat)
    print(markdown_table(rows) if args.markdown else text_table(rows))
    if args.plots:
        try:
            import matplotlib  # noqa: F401
        except ImportError:
            raise UsageError("--plots needs matplotlib: pip install 'hlg[bench]'") from None
        sizes = (1_000, 10_000, 100_000) if args.quick else (1_000, 10_000, 100_000, 1_000_000)
        for path in plots(Path(args.plots), sizes):
            print(f"wrote {path}")
    return 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="hlg",
        description="High-level task graphs: run the demo, inspect and pack graphs.",
        epilog="example:\n  hlg demo --size small\n  hlg inspect graph.hlg\n  hlg demo --help",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    from hlg import __version__

    parser.add_argument("--version", action="version", version=f"hlg {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    def command(name: str, help: str, run: Callable[[argparse.Namespace], int]) -> Any:
        p = sub.add_parser(
            name,
            help=help,
            description=help,
            epilog=_EPILOG[name],
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        p.set_defaults(run=run)
        return p

    p = command("demo", "Run one checked computation through the whole pipeline.", _cmd_demo)
    p.add_argument(
        "--scheduler",
        default="processes",
        metavar="SCHEDULER",
        help="sync, threads, processes (default) or a dask scheduler address",
    )
    p.add_argument(
        "--size", choices=["small", "large"], default="large", help="1,000 or 11,000 partitions"
    )
    p.add_argument("--workers", type=int, default=None, help="worker count (default: CPUs)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")

    p = command("bench", "Measure hlg beside dask and print the ratio table.", _cmd_bench)
    p.add_argument("--quick", action="store_true", help="small sizes: seconds, not minutes")
    p.add_argument("--repeat", type=int, default=3, help="best of N runs (default 3)")
    p.add_argument("--markdown", action="store_true", help="print a markdown table")
    p.add_argument("--plots", metavar="DIR", help="also write the scaling plots into DIR")

    p = command("inspect", "Describe a packed graph without unpickling anything.", _cmd_inspect)
    p.add_argument("file", metavar="FILE", help="a file written by hlg.pack, or - for stdin")
    p.add_argument("--json", action="store_true", help="print JSON for machines")

    p = command("pack", "Pack a graph built by a Python script into a file.", _cmd_pack)
    p.add_argument("obj", metavar="SCRIPT:OBJ", help="the script and the object to pack")
    p.add_argument("-o", "--output", required=True, help="the file to write")
    p.add_argument("--key", action="append", help="an output key as a Python literal (repeatable)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``hlg`` command line with ``argv`` (default: ``sys.argv[1:]``).

    >>> import os, tempfile
    >>> import hlg
    >>> path = os.path.join(tempfile.mkdtemp(), "graph.hlg")
    >>> with open(path, "wb") as f:
    ...     _ = f.write(hlg.pack({"a": hlg.DataNode("a", 1)}))
    >>> main(["inspect", path])
    packed graph: ... bytes, 1 layers, 1 tasks, 1 outputs
    ...
    0
    """
    parser = _parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:
        return int(exc.code or 0)
    try:
        result: int = args.run(args)
        sys.stdout.flush()
    except UsageError as exc:
        print(f"hlg {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except BrokenPipeError:
        # The reader went away (``hlg inspect --json f | head``): stop quietly, and keep
        # the interpreter's own flush at exit from raising again.
        import os

        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
    return result
