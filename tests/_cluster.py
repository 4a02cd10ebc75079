"""Real dask scheduler and worker processes on loopback, started and stopped by the tests."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager, suppress
from pathlib import Path

DASK = str(Path(sys.executable).parent / "dask")
START_TIMEOUT = 90.0  # the machine is shared: processes start slowly, but never forever


def _env(pythonpath: str | None, extra: Mapping[str, str] | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHONPATH", "DASK_"))}
    if pythonpath is not None:
        env["PYTHONPATH"] = pythonpath
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    env.update(extra or {})
    return env


def _stop(proc: subprocess.Popen[bytes]) -> None:
    """Stop a process group we started: SIGTERM, then SIGKILL after a grace period."""
    if proc.poll() is None:
        with suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            with suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=15)
    # the leader is gone; its children (nannies, worker processes) share its group
    deadline = time.monotonic() + 15
    while _group_alive(proc.pid):
        if time.monotonic() > deadline:
            with suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            time.sleep(0.5)
            assert not _group_alive(proc.pid), f"process group {proc.pid} survived SIGKILL"
            return
        time.sleep(0.1)


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


@contextmanager
def dask_cluster(
    workdir: Path,
    *,
    scheduler_path: str | None,
    worker_path: str | None,
    nworkers: int = 2,
    scheduler_env: Mapping[str, str] | None = None,
) -> Iterator[str]:
    """Start ``dask scheduler`` (cwd: an empty directory) and ``dask worker`` processes.

    ``scheduler_path`` / ``worker_path`` are their PYTHONPATHs. Yields the scheduler's
    address; every process is stopped on exit.
    """
    empty = workdir / "scheduler-cwd"
    empty.mkdir()
    sched_file = workdir / "scheduler.json"
    procs: list[subprocess.Popen[bytes]] = []
    logs = []
    try:
        log = open(workdir / "scheduler.log", "wb")
        logs.append(log)
        procs.append(
            subprocess.Popen(
                [
                    DASK,
                    "scheduler",
                    "--host",
                    "127.0.0.1",
                    "--port",
                    "0",
                    "--no-dashboard",
                    "--scheduler-file",
                    str(sched_file),
                ],
                cwd=empty,
                env=_env(scheduler_path, scheduler_env),
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        )
        deadline = time.monotonic() + START_TIMEOUT
        address = None
        while address is None:
            if procs[0].poll() is not None:
                raise RuntimeError((workdir / "scheduler.log").read_text())
            if time.monotonic() > deadline:
                raise TimeoutError("dask scheduler did not start")
            with suppress(FileNotFoundError, json.JSONDecodeError, KeyError):
                address = json.loads(sched_file.read_text())["address"]
            time.sleep(0.1)
        if nworkers:
            wcwd = workdir / "worker-cwd"
            wcwd.mkdir()
            log = open(workdir / "worker.log", "wb")
            logs.append(log)
            procs.append(
                subprocess.Popen(
                    [
                        DASK,
                        "worker",
                        address,
                        "--host",
                        "127.0.0.1",
                        "--no-dashboard",
                        "--nworkers",
                        str(nworkers),
                        "--nthreads",
                        "1",
                        "--local-directory",
                        str(wcwd),
                        "--death-timeout",
                        "60",
                    ],
                    cwd=wcwd,
                    env=_env(worker_path),
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
            )
        yield address
    finally:
        for proc in reversed(procs):
            _stop(proc)
        for log in logs:
            log.close()
