"""The example scripts of ``examples/`` imported as modules, for the tests that check them."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from typing import Any

EXAMPLES = Path(__file__).parent.parent / "examples"


def load_example(filename: str, module_name: str) -> Any:
    """Import ``examples/<filename>`` as ``module_name``, registered in ``sys.modules`` so
    that what it defines pickles by reference."""
    spec = importlib.util.spec_from_file_location(module_name, EXAMPLES / filename)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    spec.loader.exec_module(module)
    return module
