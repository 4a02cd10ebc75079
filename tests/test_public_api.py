"""The public surface: every name exported, documented with a runnable example."""

from __future__ import annotations

import ast
import inspect
from pathlib import Path

import pytest

import hlg
import hlg.kinds
import hlg.testing
from hlg import layers

ROOT = Path(__file__).parent.parent
MODULES = (hlg, layers, hlg.testing, hlg.kinds)
PUBLIC = [(mod, name) for mod in MODULES for name in mod.__all__ if name != "__version__"]
NOT_CALLABLE_BY_DESIGN = {"Key", "Pass"}  # type aliases


@pytest.mark.parametrize(("module", "name"), PUBLIC, ids=lambda x: getattr(x, "__name__", x))
def test_public_name_has_a_runnable_example(module: object, name: str) -> None:
    obj = getattr(module, name)
    if name in NOT_CALLABLE_BY_DESIGN:
        return
    doc = inspect.getdoc(obj)
    assert doc, f"{name} has no docstring"
    assert ">>>" in doc, f"{name}'s docstring has no example"


@pytest.mark.parametrize(
    "path", sorted([*ROOT.glob("hlg/*.py"), *ROOT.glob("layers/*.py")]), ids=lambda p: p.name
)
def test_every_module_opens_with_a_one_line_docstring(path: Path) -> None:
    tree = ast.parse(path.read_text())
    doc = ast.get_docstring(tree)
    assert doc, f"{path.name} has no module docstring"
    first = tree.body[0]
    assert isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant)
    assert "\n" not in doc.split("\n\n")[0].strip(), f"{path.name}: first line is not one line"


# Applications of the built-in layers, not core: the demo command builds its graph with them.
APPLICATIONS = {"_demo.py", "_bench.py"}


def test_hlg_never_imports_layers() -> None:
    for path in ROOT.glob("hlg/*.py"):
        if path.name in APPLICATIONS:
            continue
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                assert not any(a.name.startswith(("layers", "hlg.layers")) for a in node.names), (
                    path
                )
            if isinstance(node, ast.ImportFrom):
                module = node.module or ""
                assert not module.startswith(("layers", "hlg.layers")), path
                if module == "hlg":
                    assert "layers" not in {a.name for a in node.names}, path


def test_all_is_sorted_and_complete() -> None:
    for mod in MODULES:
        assert list(mod.__all__) == sorted(mod.__all__), mod.__name__
        for name in mod.__all__:
            assert hasattr(mod, name), (mod.__name__, name)
