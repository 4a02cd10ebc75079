"""The kind registry across installed distributions: name clashes warn naming both, a kind
that fails to load says why (naming a local file that shadows a module), hlg's import names
a file shadowing its dependencies. Each case runs in a fresh process."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import hlg
from hlg import ArgSpec, Layer, Placeholder
from hlg.kinds import Kind, PackContext, UnpackContext


def fake_distribution(site: Path, name: str, entry_points: dict[str, str], code: str) -> None:
    """An installed distribution as importlib.metadata sees it: a module and a dist-info."""
    module = name.replace("-", "_")
    (site / f"{module}.py").write_text(textwrap.dedent(code))
    info = site / f"{module}-1.0.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 1.0\n")
    lines = "".join(f"{k} = {v}\n" for k, v in entry_points.items())
    (info / "entry_points.txt").write_text(f"[hlg.layers]\n{lines}")


def run(code: str, cwd: Path, site: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-W", "always", "-c", textwrap.dedent(code)],
        cwd=cwd,
        env={"PYTHONPATH": str(site), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=120,
    )


KIND_CODE = """
    class FakeKind:
        name, version = "blockwise", 1
        def handles(self, layer):
            return False
    KIND = FakeKind()
"""


def test_a_kind_name_declared_by_two_distributions_warns_naming_both(tmp_path: Path) -> None:
    site = tmp_path / "site"
    site.mkdir()
    fake_distribution(site, "fake-kinds", {"blockwise": "fake_kinds:KIND"}, KIND_CODE)
    proc = run(
        """
        import hlg
        kind = hlg.layer_kind("no-such-kind")  # loads the entry points
        print(type(hlg.layer_kind("blockwise")).__module__)
        """,
        tmp_path,
        site,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "hlg.layers._kinds"  # the built-in is kept
    assert "KindWarning" in proc.stderr
    assert (
        "distribution 'fake-kinds' declares layer kind 'blockwise' (fake_kinds:KIND), which "
        "distribution 'hlg' already registers" in proc.stderr
    )


class Ranged(Layer):
    kind = "needs-numpy"

    def __init__(self, name: str, n: int, template: object = None) -> None:
        super().__init__(name)
        self.n, self.template = n, template or ArgSpec(range, Placeholder(0))

    def __iter__(self):  # type: ignore[no-untyped-def]
        return ((self.name, i) for i in range(self.n))

    def __getitem__(self, key):  # type: ignore[no-untyped-def]
        return self.template.fill(key, [key[1]])  # type: ignore[union-attr]


class RangedKind(Kind[list[int]]):
    name, state_type, layer_type = "needs-numpy", list[int], Ranged

    def pack(self, layer: Layer, ctx: PackContext) -> list[int]:
        assert isinstance(layer, Ranged)
        return [layer.n, ctx.add(layer.template)]

    def rebuild(self, name: str, state: list[int], ctx: UnpackContext) -> Layer:
        return Ranged(name, state[0], ctx.template(state[1]))


def test_a_kind_that_fails_to_load_names_the_local_file_that_shadows_its_import(
    tmp_path: Path,
) -> None:
    site = tmp_path / "site"
    site.mkdir()
    fake_distribution(
        site,
        "numpy-kinds",
        {"needs-numpy": "numpy_kinds:KIND"},
        "import numpy\nKIND = numpy.ndarray  # fails when numpy is shadowed\n",
    )
    work = tmp_path / "work"
    work.mkdir()
    (work / "numpy.py").write_text("# a script that happens to be called numpy.py\n")
    hlg.register_layer_kind(RangedKind())
    (work / "graph.hlg").write_bytes(hlg.pack(hlg.HighLevelGraph({"r": Ranged("r", 3)})))
    proc = run(
        """
        import hlg
        try:
            hlg.unpack(open("graph.hlg", "rb").read())
        except hlg.PackError as err:
            print(err)
        """,
        work,
        site,
    )
    assert proc.returncode == 0, proc.stderr
    shadow = f"{work / 'numpy.py'} shadows the installed module 'numpy'"
    assert "layer 'r': unknown layer kind 'needs-numpy' (distribution 'numpy-kinds' fails" in (
        proc.stdout
    )
    assert shadow in proc.stdout and "rename that file" in proc.stdout
    assert "cannot load layer kind 'needs-numpy' of distribution 'numpy-kinds'" in proc.stderr


def test_a_local_file_shadowing_a_dependency_of_hlg_is_named(tmp_path: Path) -> None:
    (tmp_path / "msgspec.py").write_text("")
    proc = run("import hlg", tmp_path, tmp_path / "nothing")
    assert proc.returncode == 1
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith(
        f"ImportError: hlg needs the installed module 'msgspec', but {tmp_path / 'msgspec.py'} "
        "shadows it"
    )
    assert last.endswith("rename that file")
