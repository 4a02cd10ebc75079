"""Finding local files that shadow installed modules (a ``msgspec.py`` in the working directory).

Python puts the script's directory (or the working directory) first on ``sys.path``, so
a file there named like an installed module replaces it, and what breaks is reported as
a missing attribute far from the cause. These helpers name the shadowing file instead.
"""

from __future__ import annotations

import importlib
import importlib.machinery
import os
import sys
from pathlib import Path
from types import ModuleType

__all__ = ["check_dependencies", "describe_shadowing", "import_checked", "shadowing"]

#: Modules hlg itself imports from other distributions.
DEPENDENCIES = ("msgspec", "cloudpickle")


def _local_dirs() -> set[Path]:
    """The directories a plain ``import`` searches before the installed packages."""
    dirs = {Path(os.getcwd()).resolve()}
    if sys.path and sys.path[0]:
        dirs.add(Path(sys.path[0]).resolve())
    return dirs


def _home(path: Path) -> Path:
    return path.parent.parent if path.name == "__init__.py" else path.parent


def shadowing(name: str, module: ModuleType | None = None) -> tuple[str, str] | None:
    """``(local file, installed file)`` when module ``name`` was loaded from a local file
    while an installed module of that name exists elsewhere on ``sys.path``; else None.

    >>> shadowing("msgspec") is None
    True
    """
    module = module if module is not None else sys.modules.get(name)
    file = getattr(module, "__file__", None)
    if not file:
        return None
    path = Path(file).resolve()
    local = _local_dirs()
    if _home(path) not in local:
        return None
    others = [p for p in sys.path if p and Path(p).resolve() not in local]
    spec = importlib.machinery.PathFinder.find_spec(name, others)
    if spec is None or not spec.origin:
        return None
    return str(path), spec.origin


def describe_shadowing() -> str | None:
    """A sentence naming every imported top-level module shadowed by a local file, or None.

    >>> describe_shadowing() is None
    True
    """
    found = []
    for name, module in list(sys.modules.items()):
        if "." in name or module is None:
            continue
        hit = shadowing(name, module)
        if hit is not None:
            found.append(
                f"{hit[0]} shadows the installed module {name!r} ({hit[1]}); rename that file"
            )
    return "; ".join(found) or None


def import_checked(name: str, attribute: str) -> ModuleType:
    """Import ``name`` and check it has ``attribute``; a failure caused by a local file of
    that name raises an ImportError naming the file.

    >>> import_checked("msgspec", "Struct").__name__
    'msgspec'
    """
    try:
        module = importlib.import_module(name)
        getattr(module, attribute)
    except (ImportError, AttributeError) as err:
        hit = shadowing(name)
        if hit is None:
            raise
        raise ImportError(
            f"hlg needs the installed module {name!r}, but {hit[0]} shadows it (found first "
            f"on sys.path; the installed one is {hit[1]}): rename that file"
        ) from err
    return module


def check_dependencies() -> None:
    """Import hlg's dependencies, naming a local file that shadows one (run on import).

    >>> check_dependencies()
    """
    import_checked("msgspec", "Struct")
    import_checked("cloudpickle", "dumps")


check_dependencies()
