"""The blocked-array example against numpy: random shapes, chunks and expressions."""

from __future__ import annotations

from typing import Any

import numpy as np
from _examples import load_example
from hypothesis import given
from hypothesis import strategies as st

import hlg

ba: Any = load_example("blocked_array.py", "blocked_array")


@given(
    st.integers(1, 9),
    st.integers(1, 9),
    st.integers(1, 4),
    st.integers(1, 4),
    st.integers(0, 2**32 - 1),
)
def test_expressions_match_numpy(m: int, n: int, cm: int, cn: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    a_np = rng.standard_normal((m, n))
    b_np = rng.standard_normal((m, n))
    a = ba.from_array(a_np, (cm, cn))
    b = ba.from_array(b_np, (cm, cn))
    ones = ba.ones((m, n), (cm, cn))
    expr = (a + ones) * 3.0 - b
    expected = (a_np + 1) * 3.0 - b_np
    np.testing.assert_allclose(expr.compute(), expected)
    np.testing.assert_allclose(expr.compute(optimize=False), expected)
    np.testing.assert_allclose(expr.T.compute(), expected.T)
    gram = expr.T @ expr
    np.testing.assert_allclose(gram.compute(), expected.T @ expected, rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(gram.sum().compute(), (expected.T @ expected).sum(), rtol=1e-9)


def test_optimized_graph_is_smaller_and_symbolic() -> None:
    x = ba.ones((40, 40), (4, 4))
    y = ((x + 1) * 2 - x).T
    graph = y.graph
    optimized = y.optimized_graph()
    assert len(optimized.layers) < len(graph.layers)
    assert all(layer.kind == "blockwise" for layer in optimized.layers.values())
    np.testing.assert_array_equal(y.compute(), np.full((40, 40), 3.0))
    packed = hlg.unpack(hlg.pack(optimized, y.keys()))
    np.testing.assert_array_equal(np.block(hlg.get(packed, y.keys())), np.full((40, 40), 3.0))
