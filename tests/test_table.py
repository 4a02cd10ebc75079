"""The partitioned-table example against pandas on the whole table, over random shapes."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from _examples import load_example
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

pd = pytest.importorskip("pandas")

import hlg  # noqa: E402

tb: Any = load_example("table.py", "hlg_table_example")

SHAPES = settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def frames(sizes: list[int], seed: int, keys: int) -> list[Any]:
    rng = np.random.default_rng(seed)
    return [
        pd.DataFrame(
            {
                "key": rng.integers(0, keys, size=n),
                "value": rng.integers(-50, 50, size=n),
                "weight": rng.integers(0, 20, size=n).astype("float64"),  # ties on purpose
            }
        )
        for n in sizes
    ]


SIZES = st.lists(st.integers(0, 25), min_size=1, max_size=12)


@SHAPES
@given(
    sizes=SIZES,
    seed=st.integers(0, 2**32 - 1),
    keys=st.integers(1, 30),
    nout=st.integers(1, 9),
    max_branch=st.integers(2, 5),
)
def test_groupby_sum_len_and_sum(
    sizes: list[int], seed: int, keys: int, nout: int, max_branch: int
) -> None:
    parts = frames(sizes, seed, keys)
    whole = pd.concat(parts, ignore_index=True)
    with tempfile.TemporaryDirectory() as folder:
        table = tb.Table.read_csv(tb.write_parts(Path(folder), parts), dtype=tb.DTYPES)
        grouped = table.map_partitions(tb.double_value).groupby_sum("key", nout, max_branch)
        got = grouped.compute().sort_index()
        want = tb.double_value(whole).groupby("key").sum()
        pd.testing.assert_frame_equal(got, want)
        assert grouped.npartitions == nout
        for part in grouped.partitions():  # each key lives in exactly one partition
            assert part.index.is_unique
        assert len(table) == len(whole)
        assert table.sum("value").compute() == whole["value"].sum()


@SHAPES
@given(
    sizes=SIZES,
    seed=st.integers(0, 2**32 - 1),
    nout=st.integers(1, 9),
    max_branch=st.integers(2, 5),
)
def test_sort_values(sizes: list[int], seed: int, nout: int, max_branch: int) -> None:
    parts = frames(sizes, seed, 10)
    whole = pd.concat(parts, ignore_index=True)
    with tempfile.TemporaryDirectory() as folder:
        table = tb.Table.read_csv(tb.write_parts(Path(folder), parts), dtype=tb.DTYPES)
        ordered = table.sort_values("weight", nout, max_branch)
        pieces = ordered.partitions()
    assert len(pieces) == nout
    got = pd.concat(pieces).reset_index(drop=True)
    want = whole.sort_values("weight", kind="stable").reset_index(drop=True)
    pd.testing.assert_frame_equal(got, want)


def test_graph_packs_and_runs_from_the_packed_form() -> None:
    parts = frames([5, 0, 9, 3], 1, 6)
    whole = pd.concat(parts, ignore_index=True)
    with tempfile.TemporaryDirectory() as folder:
        table = tb.Table.read_csv(tb.write_parts(Path(folder), parts), dtype=tb.DTYPES)
        grouped = table.groupby_sum("key", 3, 2)
        packed = hlg.unpack(hlg.pack(grouped.graph))
        got = pd.concat(hlg.get(packed, [(grouped.name, q) for q in range(3)])).sort_index()
    pd.testing.assert_frame_equal(got, whole.groupby("key").sum())
    assert {layer.kind for layer in packed.layers.values()} == {"input", "shuffle", "blockwise"}
