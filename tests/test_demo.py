"""Tests for the demo (hlg._demo and ``hlg demo``): every scheduler path computes numpy's answer."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import hlg
from hlg._demo import build_graph, expected_totals, read_partition, route, run_demo


def test_route_sends_each_value_to_its_partition_digit() -> None:
    part = np.arange(1000)
    n, k = 50, 4
    for stage in range(3):
        pieces = route(part, k, stage, n)
        assert sum(len(p) for p in pieces) == len(part)
        for j, piece in enumerate(pieces):
            assert np.all(piece % n // k**stage % k == j)


def test_expected_totals_is_numpy_on_the_inputs() -> None:
    values = np.concatenate([read_partition(i) for i in range(7)]) * 3 + 1
    assert expected_totals(7) == (len(values), int(values.sum()), 0)


@pytest.mark.parametrize("n", [1, 2, 33])
def test_unoptimized_graph_matches_numpy(n: int) -> None:
    graph = build_graph(n)
    assert tuple(hlg.get(graph, ("total", 0))) == expected_totals(n)


@pytest.mark.parametrize("scheduler", ["sync", "threads"])
def test_run_demo_in_process(scheduler: str) -> None:
    lines: list[str] = []
    result = run_demo(60, scheduler=scheduler, progress=False, out=lines.append)
    assert result.ok
    assert result.tasks_after < result.tasks_before  # the blockwise chain fused
    assert result.layers_after == 4
    assert "check:  OK" in lines[-1]


def test_demo_command_runs_a_scheduler_process_that_cannot_unpickle() -> None:
    # The scheduler process disables every unpickling entry point in itself, so this
    # run succeeding means expansion, ordering and dispatch never unpickled a payload.
    proc = subprocess.run(
        [sys.executable, "-m", "hlg", "demo", "--size", "small", "--workers", "2"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "in a scheduler process that cannot unpickle" in proc.stdout
    assert "check:  OK" in proc.stdout
    assert "scheduler: unpack" in proc.stdout
    assert "6,168" in proc.stdout  # tasks after optimization for 1,000 partitions
    assert "/6168" in proc.stderr  # the progress bar counted every scheduled task


def test_demo_command_on_a_dask_cluster(tmp_path: Path) -> None:
    from _cluster import dask_cluster

    with dask_cluster(tmp_path, scheduler_path=None, worker_path=None, nworkers=1) as address:
        proc = subprocess.run(
            [sys.executable, "-m", "hlg", "demo", "--size", "small", "--scheduler", address],
            capture_output=True,
            text=True,
            timeout=300,
        )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    assert f"on the dask cluster at {address}" in proc.stdout
    assert "check:  OK" in proc.stdout
