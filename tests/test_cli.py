"""Tests for the command line (hlg._cli) through real subprocesses, as a user runs it."""

from __future__ import annotations

import json
import subprocess
import sys
from operator import add
from pathlib import Path

import pytest

import hlg
from hlg import DataNode, Task, TaskRef

ROOT = Path(__file__).resolve().parents[1]


def run(
    *args: str, stdin: bytes | None = None, cwd: Path | None = None
) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [sys.executable, "-m", "hlg", *args],
        input=stdin,
        capture_output=True,
        timeout=120,
        cwd=cwd,
    )


@pytest.fixture
def packed_file(tmp_path: Path) -> Path:
    graph = {"a": DataNode("a", 1), "b": Task("b", add, TaskRef("a"), 1)}
    path = tmp_path / "graph.hlg"
    path.write_bytes(hlg.pack(graph, ["b"]))
    return path


@pytest.mark.parametrize("command", [[], ["inspect"], ["pack"], ["demo"], ["bench"]])
def test_every_help_shows_an_example(command: list[str]) -> None:
    result = run(*command, "--help")
    assert result.returncode == 0
    out = result.stdout.decode()
    assert "usage: hlg" in out
    assert "example:" in out
    assert any(f"hlg {name}" in out for name in ("inspect", "pack", "demo", "bench"))


def test_inspect_describes_layers_and_blobs(packed_file: Path) -> None:
    result = run("inspect", str(packed_file))
    assert result.returncode == 0, result.stderr
    out = result.stdout.decode()
    assert "1 layers, 2 tasks, 1 outputs" in out
    assert "materialized" in out
    assert "hlg_version" in out


def test_inspect_json_matches_the_unpacked_graph(packed_file: Path) -> None:
    result = run("inspect", "--json", str(packed_file))
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    packed = hlg.unpack(packed_file.read_bytes())
    assert summary["tasks"] == len(packed)
    assert summary["bytes"] == packed_file.stat().st_size
    assert [layer["name"] for layer in summary["layers"]] == list(packed.layers)
    assert summary["blobs"]["count"] == len(packed.blobs.data)


def test_inspect_reads_standard_input(packed_file: Path) -> None:
    result = run("inspect", "-", stdin=packed_file.read_bytes())
    assert result.returncode == 0, result.stderr
    assert b"2 tasks" in result.stdout


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "is not a valid packed graph"),
        (b"\x93not msgpack at all", "is not a valid packed graph"),
    ],
)
def test_inspect_refuses_malformed_input_in_one_line(
    data: bytes, message: str, tmp_path: Path
) -> None:
    path = tmp_path / "bad.hlg"
    path.write_bytes(data)
    result = run("inspect", str(path))
    assert result.returncode == 2
    err = result.stderr.decode()
    assert message in err and str(path) in err
    assert err.count("\n") == 1, err  # one line, no traceback


def test_inspect_truncated_pack_is_exit_2(packed_file: Path) -> None:
    data = packed_file.read_bytes()
    result = run("inspect", "-", stdin=data[: len(data) // 2])
    assert result.returncode == 2
    assert b"standard input is not a valid packed graph" in result.stderr


def test_inspect_missing_file_is_exit_2(tmp_path: Path) -> None:
    result = run("inspect", str(tmp_path / "nope.hlg"))
    assert result.returncode == 2
    assert b"cannot read" in result.stderr and b"nope.hlg" in result.stderr


def test_unknown_command_is_usage_error() -> None:
    result = run("bogus")
    assert result.returncode == 2
    assert b"invalid choice" in result.stderr


def test_pack_writes_a_graph_that_computes(tmp_path: Path) -> None:
    script = tmp_path / "build.py"
    script.write_text(
        "from operator import mul\n"
        "from hlg import DataNode, Task, TaskRef\n"
        "graph = {'x': DataNode('x', 6), 'y': Task('y', mul, TaskRef('x'), 7)}\n"
    )
    out = tmp_path / "g.hlg"
    result = run("pack", f"{script}:graph", "-o", str(out), "--key", "'y'")
    assert result.returncode == 0, result.stderr
    assert f"wrote {out}" in result.stdout.decode()
    assert hlg.get(hlg.unpack(out.read_bytes()), "y") == 42


def test_pack_calls_a_function_of_no_arguments(tmp_path: Path) -> None:
    out = tmp_path / "g.hlg"
    result = run("pack", f"{ROOT / 'examples' / 'pipeline.py'}:explicit_graph", "-o", str(out))
    assert result.returncode == 0, result.stderr
    assert len(hlg.unpack(out.read_bytes())) > 0


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("no-colon", "expected SCRIPT:OBJ"),
        ("missing.py:graph", "no such script: missing.py"),
        ("{script}:nothing", "defines no 'nothing'"),
        ("{script}:needs_args", "is a function that needs arguments"),
        ("{script}:number", "is of type int, not a graph"),
    ],
)
def test_pack_errors_name_the_problem(spec: str, message: str, tmp_path: Path) -> None:
    script = tmp_path / "s.py"
    script.write_text("number = 3\ndef needs_args(n):\n    return n\n")
    result = run("pack", spec.format(script=script), "-o", str(tmp_path / "o.hlg"), cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    assert message in result.stderr.decode()


def test_console_script_is_installed(packed_file: Path) -> None:
    script = Path(sys.executable).parent / "hlg"
    assert script.exists(), "the 'hlg' console script is not installed next to python"
    result = subprocess.run(
        [str(script), "inspect", str(packed_file)], capture_output=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    assert b"2 tasks" in result.stdout


def test_bench_quick_prints_every_case_beside_dask() -> None:
    result = run("bench", "--quick", "--repeat", "1")
    assert result.returncode == 0, result.stderr[-2000:]
    lines = result.stdout.decode().splitlines()
    assert lines[0].split() == ["case", "size", "hlg", "dask", "unit", "hlg/dask"]
    rows = lines[1:]
    assert len(rows) >= 10
    for row in rows:
        ratio = row.split()[-1]
        assert float(ratio.replace(",", "")) > 0, row  # both sides measured
