"""An installed kind package: a scheduler process with it (and without the client's code)
expands the packed layer symbolically, without unpickling, and a worker runs it."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import hlg
from hlg import layers

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "examples" / "window-kind"

SCHEDULER = textwrap.dedent(
    """
    import importlib.util, sys
    import hlg
    from hlg.testing import no_unpickling

    data = open(sys.argv[1], "rb").read()
    with no_unpickling():
        packed = hlg.unpack(data)
        window = packed.layers["window"]
        deps = sorted(packed.dependencies(("window", 7)))
        culled = packed.cull([("window", 7)])
        print(type(window).__module__, window.kind, len(packed), deps, len(culled))
    import window_kind
    print(window_kind.__file__)
    print(importlib.util.find_spec("test_kind_package"), "client" in sys.modules)
    print(hlg.get(packed, ("window", 7)))  # the worker side: unpickles the template
    """
)


def test_installed_kind_expands_on_a_scheduler_without_the_client_code(tmp_path: Path) -> None:
    site = tmp_path / "site"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--quiet",
            "--disable-pip-version-check",
            "--no-deps",
            "--no-build-isolation",
            "--no-index",
            "--target",
            str(site),
            str(PACKAGE),
        ],
        check=True,
        capture_output=True,
        timeout=300,
    )
    assert list(site.glob("hlg_window_kind-*.dist-info/entry_points.txt"))
    sys.path.insert(0, str(PACKAGE))
    try:
        from window_kind import WindowSum
    finally:
        sys.path.remove(str(PACKAGE))
    n = 20
    numbers = layers.InputLayer("numbers", int, [str(i) for i in range(n)])
    window = WindowSum("window", "numbers", n, width=3)
    graph = hlg.HighLevelGraph({"numbers": numbers, "window": window}, {"window": ["numbers"]})
    data_file = tmp_path / "graph.hlg"
    data_file.write_bytes(hlg.pack(graph))
    script = tmp_path / "scheduler.py"
    script.write_text(SCHEDULER)
    workdir = tmp_path / "elsewhere"
    workdir.mkdir()
    proc = subprocess.run(
        [sys.executable, str(script), str(data_file)],
        cwd=workdir,
        env={"PYTHONPATH": str(site), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    deps = [("numbers", 5), ("numbers", 6), ("numbers", 7)]
    assert lines[0] == f"window_kind window-sum {2 * n} {deps} 4"
    assert lines[1].startswith(str(site))  # the installed package, not the source tree
    assert lines[2] == "None False"  # the client's code is not importable there
    assert lines[3] == str(5 + 6 + 7)
