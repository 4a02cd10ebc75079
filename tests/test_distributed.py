"""hlg on dask.distributed: a stock scheduler that cannot import user code still runs graphs."""

from __future__ import annotations

import importlib
import pkgutil
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from operator import add
from pathlib import Path
from typing import Any

import numpy as np
import pytest

distributed = pytest.importorskip("distributed")

from _cluster import dask_cluster  # noqa: E402

import hlg  # noqa: E402
from hlg import layers  # noqa: E402
from hlg._distributed import (  # noqa: E402
    BRIDGE_PROTOCOL,
    PackedGraphExpr,
    annotations_by_type,
    compute_on,
    expand,
    namespaced,
)
from hlg._distributed import graph_token as _graph_token  # noqa: E402

MODULE = "hlg_proof_user_functions"
SOURCE = textwrap.dedent(
    '''
    """User functions that only the workers (and the client) can import."""
    import os

    def seed(index, scale):
        return (index[0] + 1) * scale

    def inc(x):
        return x + 1

    def total(xs):
        return sum(xs)

    def fail(x):
        return x / 0

    def where(x):
        from distributed import get_worker
        return get_worker().address

    def flaky(x, path):
        # fails until it has been called twice (the count lives in a file)
        n = int(open(path).read()) if os.path.exists(path) else 0
        with open(path, "w") as f:
            f.write(str(n + 1))
        if n < 2:
            raise OSError(f"flaky attempt {n}")
        return x

    def die_once(x, path):
        if not os.path.exists(path):
            open(path, "w").close()
            os._exit(1)
        return x

    def die(x):
        os._exit(1)
    '''
)


@pytest.fixture(scope="module")
def user_module(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Any, Path]]:
    where = tmp_path_factory.mktemp("user-code")
    (where / f"{MODULE}.py").write_text(SOURCE)
    sys.path.insert(0, str(where))
    try:
        yield importlib.import_module(MODULE), where
    finally:
        sys.path.remove(str(where))
        sys.modules.pop(MODULE, None)


@pytest.fixture(scope="module")
def client(
    user_module: tuple[Any, Path], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Any]:
    _, code_dir = user_module
    workdir = tmp_path_factory.mktemp("cluster")
    env = {"DASK_DISTRIBUTED__SCHEDULER__ALLOWED_FAILURES": "1"}
    with (
        dask_cluster(
            workdir, scheduler_path=None, worker_path=str(code_dir), scheduler_env=env
        ) as address,
        distributed.Client(address, timeout=60) as c,
    ):
        c.wait_for_workers(2, timeout=90)
        yield c


def chain(mod: Any, n: int = 6) -> tuple[hlg.HighLevelGraph, Any]:
    x = layers.blockwise(mod.seed, "x", "i", layers.BlockIndex((n,)), "i", 10, None)
    y = layers.blockwise(mod.inc, "y", "i", "x", "i", numblocks={"x": (n,)})
    s = layers.blockwise(mod.total, "s", "", "y", "i", numblocks={"y": (n,)})
    graph = hlg.HighLevelGraph({"x": x, "y": y, "s": s}, {"x": (), "y": ("x",), "s": ("y",)})
    expected = sum((i + 1) * 10 + 1 for i in range(n))
    return graph, expected


def test_scheduler_without_user_code_runs_hlg_but_not_dask(
    client: Any, user_module: tuple[Any, Path]
) -> None:
    mod, _ = user_module
    # the setup is what it claims: the scheduler cannot import the module, workers can
    with pytest.raises(ModuleNotFoundError, match=MODULE):
        client.run_on_scheduler(pkgutil.resolve_name, f"{MODULE}:inc")
    assert set(client.run(pkgutil.resolve_name, f"{MODULE}:inc").values()) == {mod.inc}

    graph, expected = chain(mod)
    assert compute_on(client, graph, [("s",), [("y", 0), ("y", 5)]]) == [expected, [11, 61]]
    assert hlg.compute(graph, (("s",), [("y", 1)]), scheduler=client) == (expected, [21])
    assert hlg.compute(graph, scheduler=client) == [expected]  # the output layer's keys
    assert hlg.get(graph, ("s",)) == expected

    # plain dask, same functions, same scheduler: the scheduler must unpickle them
    with pytest.raises(RuntimeError, match="Error during deserialization of the task graph"):
        client.get({"a": 1, "b": (mod.inc, "a")}, "b")


def test_graphs_with_equal_key_names_do_not_collide(
    client: Any, user_module: tuple[Any, Path]
) -> None:
    mod, _ = user_module
    g1, e1 = chain(mod, 3)
    g2, e2 = chain(mod, 4)
    assert compute_on(client, g1, ("s",)) == e1
    assert compute_on(client, g2, ("s",)) == e2
    assert (
        PackedGraphExpr.from_graph(g1, ("s",)).token != PackedGraphExpr.from_graph(g2, ("s",)).token
    )


def test_task_error_keeps_type_and_names_the_key(
    client: Any, user_module: tuple[Any, Path]
) -> None:
    mod, _ = user_module
    graph, _ = chain(mod, 3)
    bad = layers.blockwise(mod.fail, "bad", "i", "y", "i", numblocks={"y": (3,)})
    graph = hlg.HighLevelGraph({**graph.layers, "bad": bad}, {**graph.dependencies, "bad": ("y",)})
    with pytest.raises(ZeroDivisionError) as info:
        compute_on(client, graph, ("bad", 1))
    assert "hlg: raised while computing key ('bad', 1)" in info.value.__notes__


def test_worker_annotation_is_honoured(client: Any, user_module: tuple[Any, Path]) -> None:
    mod, _ = user_module
    target = sorted(client.scheduler_info()["workers"])[1]
    where = layers.blockwise(
        mod.where, "w", "i", layers.BlockIndex((6,)), "i", layer_annotations={"workers": [target]}
    )
    assert set(
        compute_on(client, hlg.HighLevelGraph({"w": where}), [("w", i) for i in range(6)])
    ) == {target}


def test_retries_annotation_is_honoured(
    client: Any, user_module: tuple[Any, Path], tmp_path: Path
) -> None:
    mod, _ = user_module

    def graph(path: Path, retries: int | None) -> hlg.HighLevelGraph:
        ann = {} if retries is None else {"retries": retries}
        layer = layers.blockwise(
            mod.flaky,
            "f",
            "i",
            layers.BlockIndex((1,)),
            "i",
            str(path),
            None,
            layer_annotations=ann,
        )
        return hlg.HighLevelGraph({"f": layer})

    with pytest.raises(OSError, match="flaky attempt 0"):
        compute_on(client, graph(tmp_path / "a", None), ("f", 0))
    assert compute_on(client, graph(tmp_path / "b", 2), ("f", 0)) == (0,)


def test_a_worker_dying_is_retried_by_dask_then_reported(
    client: Any, user_module: tuple[Any, Path], tmp_path: Path
) -> None:
    mod, _ = user_module
    once = layers.blockwise(
        mod.die_once, "once", "i", layers.BlockIndex((1,)), "i", str(tmp_path / "d"), None
    )
    assert compute_on(client, hlg.HighLevelGraph({"once": once}), ("once", 0)) == (0,)
    always = layers.blockwise(mod.die, "always", "i", layers.BlockIndex((1,)), "i")
    with pytest.raises(distributed.scheduler.KilledWorker, match="always"):
        compute_on(client, hlg.HighLevelGraph({"always": always}), ("always", 0))
    client.wait_for_workers(2, timeout=90)


def test_protocol_mismatch_fails_before_anything_runs(
    client: Any, user_module: tuple[Any, Path], tmp_path: Path
) -> None:
    mod, _ = user_module
    marker = tmp_path / "ran"
    layer = layers.blockwise(mod.flaky, "f", "i", layers.BlockIndex((1,)), "i", str(marker), None)
    expr = PackedGraphExpr.from_graph(hlg.HighLevelGraph({"f": layer}), ("f", 0))
    header = {**expr.operands[1], "bridge": BRIDGE_PROTOCOL + 1}
    future_expr = PackedGraphExpr(expr.operands[0], header)
    with pytest.raises(hlg.PackError, match=r"bridge protocol mismatch: the client \(hlg "):
        client.get(future_expr, future_expr.__dask_keys__())
    assert not marker.exists()


def test_scheduler_without_hlg_says_so(tmp_path: Path) -> None:
    blocker = tmp_path / "blocker"
    (blocker / "hlg").mkdir(parents=True)
    (blocker / "hlg" / "__init__.py").write_text(
        "raise ModuleNotFoundError(\"No module named 'hlg'\", name='hlg')\n"
    )
    with (
        dask_cluster(tmp_path, scheduler_path=str(blocker), worker_path=None, nworkers=0) as addr,
        distributed.Client(addr, timeout=60) as c,
    ):
        with pytest.raises(RuntimeError, match=f"dask scheduler at {addr} does not have hlg"):
            compute_on(c, {"x": hlg.DataNode("x", 1)}, "x")


NOUT = 4


def split_by_residue(part: Any, k: int, stage: int) -> list[Any]:
    """Shuffle split: piece j holds the values whose destination (value % NOUT) has digit j."""
    digit = (part % NOUT) // k**stage % k
    return [part[digit == j] for j in range(k)]


def concat(pieces: list[Any]) -> Any:
    return np.concatenate(pieces) if pieces else np.zeros(0, dtype=np.int64)


def add_all(values: list[Any]) -> Any:
    return sum(values)


def test_local_cluster_blockwise_shuffle_and_reduction_against_numpy() -> None:
    data = np.random.default_rng(0).integers(0, 1000, size=30)
    blocks = layers.InputLayer("a", np.asarray, [data[i : i + 10] for i in range(0, 30, 10)])
    sq = layers.blockwise(np.square, "sq", "i", "a", "i", numblocks={"a": (3,)})
    sh = layers.Shuffle("sh", "sq", 3, NOUT, split_by_residue, concat, max_branch=2)
    tot = layers.TreeReduction("tot", "sh", NOUT, np.sum, add_all, add_all, split_every=2)
    rows = layers.blockwise(np.sum, "rows", "", "sq", "i", numblocks={"sq": (3,)})
    graph = hlg.HighLevelGraph(
        {"a": blocks, "sq": sq, "sh": sh, "tot": tot, "rows": rows},
        {"sq": ("a",), "sh": ("sq",), "tot": ("sh",), "rows": ("sq",)},
    )
    assert sh.stages == 2  # a staged shuffle, not a single all-to-all step
    keys = [("tot", 0), [("sh", q) for q in range(NOUT)], ("rows",)]
    with (
        distributed.LocalCluster(
            n_workers=2,
            threads_per_worker=1,
            processes=True,
            host="127.0.0.1",
            dashboard_address="127.0.0.1:0",
        ) as cluster,
        distributed.Client(cluster) as c,
    ):
        total, parts, rows_total = compute_on(c, graph, keys)
    squares = np.square(data)
    assert total == squares.sum() == rows_total
    for q, part in enumerate(parts):
        np.testing.assert_array_equal(np.sort(part), np.sort(squares[squares % NOUT == q]))
    assert hlg.get(graph, ("tot", 0)) == squares.sum()


def test_annotations_map_to_what_dask_reads() -> None:
    layer = hlg.MaterializedLayer({("x", i): hlg.DataNode(("x", i), i) for i in range(2)}, "x")
    ann = {"retries": 3, "priority": 5, "resources": {"GPU": 1}, "workers": "tcp://a:1"}
    packed = hlg.unpack(hlg.pack(hlg.HighLevelGraph({"x": layer.with_annotations(**ann)})))
    got = annotations_by_type(packed, "t")
    keys = [("x-t", 0), ("x-t", 1)]
    assert got == {
        "retries": dict.fromkeys(keys, 3),
        "priority": dict.fromkeys(keys, 5),
        "resources": {key: {"GPU": 1} for key in keys},
        "workers": {key: ["tcp://a:1"] for key in keys},
    }


def test_large_blobs_become_keys_and_small_ones_travel_inline() -> None:
    big = np.arange(100_000)
    layer = layers.blockwise(np.add, "y", "i", layers.BlockIndex((3,)), "i", big, None)
    packed = hlg.unpack(hlg.pack(hlg.HighLevelGraph({"y": layer})))
    dsk = expand(packed, "t", inline_limit=1000)
    blob_keys = [k for k in dsk if isinstance(k, tuple) and k[0] == "hlg-blob-t-data"]
    assert len(blob_keys) == 1
    assert all(blob_keys[0] in dsk[namespaced(("y", i), "t")].dependencies for i in range(3))
    import dask

    values = dask.get(dsk, [namespaced(("y", i), "t") for i in range(3)])
    for i, v in enumerate(values):
        np.testing.assert_array_equal(v, np.add((i,), big))
    inline = expand(packed, "t", inline_limit=10**7)
    assert not any(isinstance(k, tuple) and k[0] == "hlg-blob-t-data" for k in inline)


def test_core_import_pulls_in_neither_dask_nor_distributed() -> None:
    code = (
        "import sys, hlg, hlg.layers\n"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('dask', 'distributed'))\n"
        "print(bad)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True
    )
    assert out.stdout.strip() == "[]"


def test_client_compute_and_dask_compute_expand_on_the_scheduler(
    client: Any, user_module: tuple[Any, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    import dask

    from hlg import _distributed

    mod, _ = user_module
    graph, expected = chain(mod)

    def not_here(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("the graph was expanded on the client")

    monkeypatch.setattr(_distributed, "expand", not_here)
    coll = _distributed.DaskCollection(graph, [("s",), [("y", 1)]])
    assert client.compute(coll).result() == [expected, [21]]
    assert dask.compute(coll) == ([expected, [21]],)
    assert compute_on(client, graph, ("s",)) == expected


def test_the_expression_pickles_as_dask_and_hlg_globals_plus_bytes(
    user_module: tuple[Any, Path],
) -> None:
    import io
    import pickle

    mod, _ = user_module
    graph, _ = chain(mod)
    expr = PackedGraphExpr.from_graph(graph, ("s",))
    found: set[tuple[str, str]] = set()

    class Recorder(pickle.Unpickler):
        def find_class(self, module: str, name: str) -> Any:
            found.add((module, name))
            return super().find_class(module, name)

    again = Recorder(io.BytesIO(pickle.dumps(expr, protocol=5))).load()
    assert found == {("dask._expr", "Expr._reconstruct"), ("hlg._distributed", "PackedGraphExpr")}
    assert again.operands == expr.operands
    assert MODULE.encode() in expr.operands[0]  # the user's reference, inside a blob


def test_whole_output_layers_are_packed_without_culling() -> None:
    x = layers.blockwise(np.add, "x", "i", layers.BlockIndex((4,)), "i", 1, None)
    y = layers.blockwise(np.negative, "y", "i", "x", "i", numblocks={"x": (4,)})
    graph = hlg.HighLevelGraph({"x": x, "y": y}, {"x": (), "y": ("x",)})
    every = [("y", i) for i in range(4)]
    whole = PackedGraphExpr.from_graph(graph, [every[2], every[:2], every[3]])
    assert whole.operands[0] == hlg.pack(graph)
    part = PackedGraphExpr.from_graph(graph, every[:3])
    assert part.operands[0] == hlg.pack(graph, every[:3])
    assert len(hlg.unpack(part.operands[0])) == 6
    import dask

    for expr, keys in ((whole, every), (part, every[:3])):
        got = dask.get(expr.__dask_graph__(), [namespaced(k, expr.token) for k in keys])
        assert [int(v[0]) for v in got] == [-(i + 1) for i in range(len(keys))]


def test_a_payload_that_does_not_match_its_token_is_refused() -> None:
    expr = PackedGraphExpr.from_graph({"x": hlg.DataNode("x", 1)}, "x")
    payload, header = expr.operands
    altered = PackedGraphExpr(hlg.pack({"x": hlg.DataNode("x", 2)}), header)
    with pytest.raises(hlg.PackError, match="payload does not match the header's token"):
        altered.__dask_graph__()
    odd = PackedGraphExpr(payload, {**header, "bridge": "one"})
    with pytest.raises(hlg.PackError, match="sent protocol 'one'"):
        odd.__dask_graph__()


def test_compute_on_refuses_a_packed_graph_and_local_options() -> None:
    packed = hlg.unpack(hlg.pack({"x": hlg.DataNode("x", 1)}))
    with pytest.raises(TypeError, match="a PackedGraph is a graph already unpacked"):
        compute_on(object(), packed, "x")
    with pytest.raises(TypeError, match="apply to local schedulers only"):
        hlg.compute({"x": hlg.DataNode("x", 1)}, "x", scheduler=object(), num_workers=2)


def append_one(values: list[int]) -> list[int]:
    values.append(1)  # mutates its input: a cached data value would grow
    return values


def test_workers_share_code_per_layer_but_never_data_values() -> None:
    from hlg import _distributed

    inputs = layers.InputLayer("a", append_one, [[0], [0, 0]])
    neg = layers.blockwise(np.negative, "n", "i", layers.BlockIndex((3,)), "i")
    graph = hlg.HighLevelGraph({"a": inputs, "n": neg})
    dsk = expand(hlg.unpack(hlg.pack(graph)), "t")
    specs = {k: dsk[namespaced(k, "t")].args[0] for k in [("n", 0), ("n", 2), ("a", 0)]}
    assert specs[("n", 0)].ids == specs[("n", 2)].ids  # the layer's template only
    assert _distributed._blobs_for(specs[("n", 0)], ()) is _distributed._blobs_for(
        specs[("n", 2)], ()
    )
    for _ in range(2):  # the same task run twice gets a fresh input each time
        assert _distributed.run_packed(specs[("a", 0)]) == [0, 1]


def collect(block: tuple[int, ...], seen: list[int]) -> int:
    """Mutates its constant argument (a list in the layer's template)."""
    seen.append(block[0])
    return len(seen)


def collecting_graph(name: str) -> hlg.HighLevelGraph:
    layer = layers.blockwise(collect, name, "i", layers.BlockIndex((2,)), "i", [], None)
    return hlg.HighLevelGraph({name: layer})


def test_a_submission_never_sees_another_submissions_constants() -> None:
    # One worker process runs every task; each submission must start from its own
    # unpickled template, as each local computation does.
    local = [hlg.compute(collecting_graph(n), [(n, 0), (n, 1)], scheduler="sync") for n in "ab"]
    with distributed.Client(
        processes=True,
        n_workers=1,
        threads_per_worker=1,
        host="127.0.0.1",
        dashboard_address="127.0.0.1:0",
    ) as c:
        remote = [hlg.compute_on(c, collecting_graph(n), [(n, 0), (n, 1)]) for n in "abc"]
        again = hlg.compute_on(c, collecting_graph("a"), [("a", 0), ("a", 1)])
    assert all(sorted(r) == [1, 2] for r in [*local, *remote, again]), (local, remote, again)


def test_the_same_graph_submitted_twice_gets_separate_worker_caches() -> None:
    from hlg import _distributed

    expr = [_distributed.PackedGraphExpr.from_graph(collecting_graph("a"), [("a", 0)])]
    expr.append(_distributed.PackedGraphExpr.from_graph(collecting_graph("a"), [("a", 0)]))
    assert expr[0].token == expr[1].token  # same keys on the dask scheduler
    specs = [e._build()[namespaced(("a", 0), e.token)].args[0] for e in expr]
    assert specs[0].ids == specs[1].ids and specs[0].run != specs[1].run
    assert _distributed._blobs_for(specs[0], ()) is not _distributed._blobs_for(specs[1], ())


@pytest.mark.parametrize(
    ("graph", "keys", "expected"),
    [
        (
            {
                ("hlg-blob", 2): hlg.DataNode(("hlg-blob", 2), 5.0),
                "y": hlg.Task("y", np.add, np.ones(200_000), hlg.TaskRef(("hlg-blob", 2))),
            },
            ["y"],
            200_000 * 6.0,
        ),
        (
            {
                "hlg-finalize": hlg.DataNode("hlg-finalize", 1),
                "y": hlg.Task("y", add, hlg.TaskRef("hlg-finalize"), 41),
            },
            ["y"],
            42,
        ),
    ],
    ids=["blob-name", "finalize-name"],
)
def test_user_keys_named_like_internal_keys_do_not_collide(
    graph: Any, keys: list[Any], expected: float
) -> None:
    import dask

    (value,) = dask.compute(hlg.dask_collection(graph, keys), scheduler="sync")
    result = value[0]
    assert float(np.sum(result)) == expected


def test_the_dask_scheduler_bounds_what_it_expands() -> None:
    import dask

    from hlg._distributed import PackedGraphExpr

    x = layers.blockwise(abs, "x", "ij", layers.BlockIndex((2000, 2000)), "ij")
    graph = hlg.HighLevelGraph({"x": x})
    payload = hlg.pack(graph)  # a few hundred bytes declaring 4,000,000 tasks
    header = dict(PackedGraphExpr.from_graph(graph, [("x", 0, 0)]).operands[1])
    header["token"] = _graph_token(payload)
    with pytest.raises(hlg.PackError, match="beyond the task limit"):
        PackedGraphExpr(payload, header)._packed
    with dask.config.set({"hlg.max-tasks": 5_000_000}):
        assert len(PackedGraphExpr(payload, dict(header))._packed) == 4_000_000
