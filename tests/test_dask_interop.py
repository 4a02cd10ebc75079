"""hlg.from_dask / hlg.to_dask: the same values on both sides, checked against plain oracles."""

from __future__ import annotations

from operator import add, mul
from typing import Any

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

dask = pytest.importorskip("dask")

import dask.array as da  # noqa: E402
from _spec import Spec, make_node, oracle  # noqa: E402
from dask import _task_spec as ts  # noqa: E402

import hlg  # noqa: E402
from hlg import layers  # noqa: E402


@st.composite
def specs(draw: st.DrawFn) -> tuple[Spec, list[Any]]:
    spec: Spec = {}
    n = draw(st.integers(1, 12))
    for i in range(n):
        key: Any = draw(st.sampled_from([f"k{i}", ("k", i), ("t", i, "s")]))
        keys = list(spec)
        deps: list[Any] = []
        if keys:
            deps = draw(st.lists(st.sampled_from(keys), max_size=3, unique=True))
        kind = draw(st.sampled_from(["task", "nested", "alias", "twice"])) if deps else "data"
        if kind in ("alias", "twice"):
            deps = deps[:1]
        spec[key] = (i, tuple(deps), kind)
    outs = draw(st.lists(st.sampled_from(list(spec)), min_size=1, max_size=3, unique=True))
    return spec, outs


def legacy(spec: Spec) -> dict[Any, Any]:
    """The spec as a dask legacy tuple graph (``nested``: references inside a list)."""
    from _spec import combine

    out: dict[Any, Any] = {}
    for key, (tag, deps, kind) in spec.items():
        if kind == "data":
            out[key] = tag
        elif kind == "alias":
            out[key] = deps[0]
        elif kind == "twice":
            out[key] = (combine, tag, deps[0], deps[0])
        elif kind == "nested":
            out[key] = (_combine_items, tag, list(deps))
        else:
            out[key] = (combine, tag, *deps)
    return out


def _combine_items(tag: int, items: list[int]) -> int:
    from _spec import combine

    return combine(tag, *items)


@given(specs())
def test_to_dask_runs_on_dask_schedulers(case: tuple[Spec, list[Any]]) -> None:
    spec, outs = case
    graph = {k: make_node(k, e) for k, e in spec.items()}
    dsk = hlg.to_dask(graph)
    assert all(isinstance(v, ts.GraphNode) for v in dsk.values())
    assert list(dask.get(dsk, outs)) == oracle(spec, outs)
    assert list(dask.threaded.get(dsk, outs)) == oracle(spec, outs)


@given(specs())
def test_from_dask_of_legacy_graphs(case: tuple[Spec, list[Any]]) -> None:
    spec, outs = case
    dsk = legacy(spec)
    expected = oracle(spec, outs)
    assert list(dask.get(dsk, outs)) == expected  # the oracle and dask agree
    assert hlg.get(hlg.from_dask(dsk), outs) == expected
    task_spec = ts.convert_legacy_graph(dsk)
    assert hlg.get(hlg.from_dask(task_spec), outs) == expected


@given(specs())
def test_round_trip_hlg_dask_hlg(case: tuple[Spec, list[Any]]) -> None:
    spec, outs = case
    graph = {k: make_node(k, e) for k, e in spec.items()}
    back = hlg.from_dask(hlg.to_dask(graph))
    assert hlg.get(back, outs) == oracle(spec, outs)
    again = hlg.to_dask(back)
    assert list(dask.get(again, outs)) == oracle(spec, outs)


def chain(n: int, chunk: int = 1) -> Any:
    ones = da.ones((n, n), chunks=chunk)
    return (((ones + 1) * 2).T + ones).sum()


def test_dask_array_chain_blockwise_layers_stay_symbolic() -> None:
    y = chain(4)
    graph = hlg.from_dask(y)
    kinds = {name.split("-")[0]: layer.kind for name, layer in graph.layers.items()}
    assert kinds["add"] == kinds["mul"] == kinds["transpose"] == "blockwise"
    assert kinds["ones_like"] == "materialized"  # io_deps: converted task by task
    (value,) = hlg.get(graph, y.__dask_keys__())
    assert value == y.compute(scheduler="sync") == 4 * 4 * 5


@pytest.mark.parametrize(
    "make",
    [
        lambda x: x.dot(x.T),
        lambda x: x.mean(axis=0),
        lambda x: (x + x.T)[1:5, ::2],
        lambda x: da.concatenate([x, x * 2], axis=0).std(),
        lambda x: x.rechunk((3, 2)) + 1,
        lambda x: da.map_blocks(np.cumsum, x, axis=1),
    ],
    ids=["dot", "mean", "slice", "concat-std", "rechunk", "map_blocks"],
)
def test_dask_array_computations_equal(make: Any) -> None:
    data = np.arange(36.0).reshape(6, 6)
    x = da.from_array(data, chunks=2)
    y = make(x)
    graph = hlg.from_dask(y)
    blocks = hlg.get(graph, y.__dask_keys__())
    finalize, extra = y.__dask_postcompute__()
    np.testing.assert_allclose(finalize(blocks, *extra), y.compute(scheduler="sync"))
    dsk = hlg.to_dask(graph)  # and back: dask runs the converted graph
    np.testing.assert_allclose(
        finalize(dask.get(dsk, y.__dask_keys__()), *extra), y.compute(scheduler="sync")
    )


def test_dask_dataframe_groupby_equal() -> None:
    pd = pytest.importorskip("pandas")
    dd = pytest.importorskip("dask.dataframe")
    df = pd.DataFrame({"a": np.arange(40) % 7, "b": np.arange(40.0)})
    ddf = dd.from_pandas(df, npartitions=4)
    result = ddf.groupby("a").b.sum() + ddf.b.mean()
    result = result.optimize()
    graph = hlg.from_dask(result)
    parts = hlg.get(graph, result.__dask_keys__())
    finalize, extra = result.__dask_postcompute__()
    got = finalize(parts, *extra).sort_index()
    pd.testing.assert_series_equal(got, (df.groupby("a").b.sum() + df.b.mean()).sort_index())


def test_dask_delayed_and_annotations() -> None:
    with dask.annotate(retries=3):
        a = dask.delayed(add)(1, 2)
    b = dask.delayed(mul)(a, 10)
    graph = hlg.from_dask(b)
    assert hlg.get(graph, b.__dask_keys__()) == [30]
    annotated = [layer for layer in graph.layers.values() if layer.annotations]
    assert [dict(layer.annotations) for layer in annotated] == [{"retries": 3}]


def test_hlg_blockwise_to_dask_and_threads() -> None:
    x = layers.blockwise(np.full, "x", "ij", layers.ChunkShape(((2, 2), (3,))), "ij", 2.0, None)
    y = layers.blockwise(np.sum, "s", "i", "x", "ij", numblocks={"x": (2, 1)})
    graph = hlg.HighLevelGraph({"x": x, "s": y}, {"x": (), "s": ("x",)})
    dsk = hlg.to_dask(graph)
    got = dask.threaded.get(dsk, [("s", 0), ("s", 1)])
    assert (
        [float(v) for v in got]
        == [12.0, 12.0]
        == [float(v) for v in hlg.get(graph, [("s", 0), ("s", 1)])]
    )


def test_from_dask_refuses_other_objects() -> None:
    with pytest.raises(TypeError, match=r"hlg\.from_dask: expected a dask collection.*got int"):
        hlg.from_dask(3)
