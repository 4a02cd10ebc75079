"""The processes driver: the parent schedules packed tasks; worker processes run them.

The parent packs the graph (or takes a ``PackedGraph``), orders it and dispatches
``PackedTask``s — key, dependencies, runspec — with their dependencies' results as the
bytes the workers sent back. It never unpickles a payload: workers answer with a msgpack
header (task, status, duration) and pickled results as raw frames, which the parent
stores and forwards as they are. Only the requested outputs are unpickled, by
:func:`compute_processes` after the run (the client's step); :func:`run_packed` alone
returns them as bytes.

Workers are ``multiprocessing`` processes of the ``spawn`` (default) or ``fork``
context, one duplex pipe each, started per computation and stopped in ``finally``. Each
receives the graph's blobs once and unpickles a code blob once per process (by content
id). Ready tasks go out in batches when there are many; a worker that dies (killed,
``os._exit``) is noticed through its process sentinel and fails the computation with
:class:`WorkerDiedError` naming the keys it held.

Results whose layer declares pieces (:mod:`hlg._pieces`) travel as pieces: the worker
pickles each piece on its own, the parent keeps the list of piece bytes, and each reader
is sent only the piece it reads, which its task sees through a ``PieceView``.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import multiprocessing.connection
import pickle
import signal
import time
import traceback
from collections.abc import Sequence
from typing import Any, NoReturn

import cloudpickle
import msgspec

from hlg._blobs import Blobs
from hlg._callbacks import CallbackGroup
from hlg._get import _note
from hlg._graph import HighLevelGraph, HLGCollection
from hlg._keys import Key
from hlg._order import Plan
from hlg._order import plan as make_plan
from hlg._pack import pack, unpack
from hlg._packed import PackedGraph, PackedTask
from hlg._pieces import PieceRoutes, PieceView
from hlg._schedule import Schedule
from hlg._source import flatten_keys, rebuild_keys

__all__ = ["WorkerDiedError", "compute_processes", "run_packed"]

_INLINE = 1 << 16  # results and arguments below this size travel inside the header
_MAX_BATCH = 64  # tasks per message, at most
_IN_FLIGHT = 2  # messages a worker may have queued (so it never waits for the parent)
_STOP = b"stop"
_BUSY_BUDGET = 32 << 10  # bytes a busy worker may be sent (well under a pipe's buffer)


class WorkerDiedError(RuntimeError):
    """A worker process ended while it held tasks; ``keys`` are the tasks it held.

    >>> str(WorkerDiedError(1234, -9, [("x", 0)]))
    "hlg: worker process 1234 died (exit code -9) while running key ('x', 0)"
    """

    def __init__(
        self,
        pid: int | None,
        exitcode: int | None,
        keys: Sequence[Key],
        at_start: bool = False,
    ) -> None:
        self.pid = pid
        self.exitcode = exitcode
        self.keys = list(keys)
        self.at_start = at_start
        if not self.keys:
            what = "while idle"
        elif len(self.keys) == 1:
            what = f"while running key {self.keys[0]!r}"
        else:
            what = f"while running keys {', '.join(repr(k) for k in self.keys)}"
        message = f"hlg: worker process {pid} died (exit code {exitcode}) {what}"
        if at_start and exitcode == 1:
            message += (
                "; a worker that exits before returning any result usually could not import the "
                "main module: under the 'spawn' start method, put the code that computes "
                'under `if __name__ == "__main__":`, or pass context="fork"'
            )
        super().__init__(message)

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.pid, self.exitcode, self.keys, self.at_start))


# -- worker side ---------------------------------------------------------------------------


def _dumps(value: Any) -> bytes:
    try:
        return pickle.dumps(value, protocol=5)
    except Exception:
        return bytes(cloudpickle.dumps(value, protocol=5))


def _dump_error(err: BaseException) -> bytes:
    text = "".join(traceback.format_exception(type(err), err, err.__traceback__))
    try:
        data = _dumps(err)
        pickle.loads(data)  # it must come back on the other side too
    except Exception:
        data = _dumps(RuntimeError(f"{type(err).__name__}: {err}"))
    return msgspec.msgpack.encode([data, text])


def _receive_arg(conn: Any, arg: Any) -> Any:
    """An argument as listed in the header, its bytes read from the pipe if they follow."""
    if arg is None:
        return conn.recv_bytes()
    if type(arg) is tuple and arg[2] is None:
        return (arg[0], arg[1], conn.recv_bytes())
    return arg


def _load_arg(key: Key, dep: Key, arg: Any) -> Any:
    """A dependency's value from what the parent sent: bytes, or ``(piece, count, bytes)``."""
    if type(arg) is tuple:
        piece, count, data = arg
        return PieceView(key, dep, count, piece, pickle.loads(data))
    return pickle.loads(arg)


def _dump_pieces(key: Key, result: Any, count: int) -> list[bytes]:
    """Pickle a result piece by piece (its layer's ``piece_count`` said ``count``)."""
    try:
        size = len(result)
    except TypeError:
        size = -1
    if size != count:
        got = f"{size} pieces" if size >= 0 else f"a {type(result).__name__}"
        raise ValueError(
            f"hlg: task {key!r} returned {got}; its layer's piece_count declares {count}"
        )
    return [_dumps(result[j]) for j in range(count)]


def _worker_main(conn: Any, blob_data: list[bytes], blob_ids: list[bytes]) -> None:
    """A worker's loop: receive a batch, run it, send the results back."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent decides when to stop
    blobs = Blobs(blob_data, blob_ids)
    encode = msgspec.msgpack.encode
    while True:
        try:
            header = conn.recv_bytes()
        except (EOFError, OSError):
            return
        if header == _STOP:
            return
        batch = pickle.loads(header)
        tasks = [
            (tid, key, deps, runspec, [_receive_arg(conn, v) for v in args], cut)
            for tid, key, deps, runspec, args, cut in batch
        ]
        out: list[list[Any]] = []
        frames: list[bytes] = []
        for tid, key, deps, runspec, args, cut in tasks:
            try:
                start = time.perf_counter()
                values = {d: _load_arg(key, d, v) for d, v in zip(deps, args, strict=True)}
                node = PackedTask(key, deps, runspec).unpack(blobs)
                result = node(values)
                data: Any = _dump_pieces(key, result, cut) if cut else _dumps(result)
                elapsed = time.perf_counter() - start
            except BaseException as err:
                out.append([tid, 1, 0.0, _dump_error(err)])
                continue
            if cut:  # a list of pieces, each inline or a frame
                inline: list[bytes | None] = []
                for piece in data:
                    if len(piece) < _INLINE:
                        inline.append(piece)
                    else:
                        inline.append(None)
                        frames.append(piece)
                out.append([tid, 0, elapsed, inline])
            elif len(data) < _INLINE:
                out.append([tid, 0, elapsed, data])
            else:
                out.append([tid, 0, elapsed, None])
                frames.append(data)
        conn.send_bytes(encode(out))
        for frame in frames:
            conn.send_bytes(frame)


# -- parent side ---------------------------------------------------------------------------


class _Worker:
    __slots__ = ("answered", "conn", "inflight", "process")

    def __init__(self, process: Any, conn: Any) -> None:
        self.process = process
        self.conn = conn
        self.inflight: list[list[int]] = []  # positions per message sent, oldest first
        self.answered = False  # whether it ever sent a result back


def _start(context: str, n: int, blobs: Blobs) -> list[_Worker]:
    ctx: Any = multiprocessing.get_context(context)
    workers: list[_Worker] = []
    try:
        for _ in range(n):
            parent, child = ctx.Pipe(duplex=True)
            process = ctx.Process(
                target=_worker_main,
                args=(child, blobs.data, blobs.ids),
                name="hlg-worker",
                daemon=True,
            )
            process.start()
            child.close()
            workers.append(_Worker(process, parent))
    except BaseException:
        _stop(workers, graceful=False)
        raise
    return workers


def _stop(workers: list[_Worker], graceful: bool) -> None:
    """Stop every worker: ask politely after success, terminate after a failure."""
    for w in workers:
        if graceful:
            with contextlib.suppress(OSError):
                w.conn.send_bytes(_STOP)
        else:
            w.process.terminate()
    for w in workers:
        w.process.join(timeout=5 if graceful else 1)
        if w.process.is_alive():
            w.process.kill()
            w.process.join()
        w.conn.close()
        w.process.close()


def _receive_result(conn: Any, data: Any) -> bytes | list[bytes]:
    """A result as listed in a worker's header (bytes, None, or a list of pieces), its
    frames read from the pipe where they follow."""
    if data is None:
        return conn.recv_bytes()  # type: ignore[no-any-return]
    if type(data) is list:
        return [piece if piece is not None else conn.recv_bytes() for piece in data]
    return data  # type: ignore[no-any-return]


def _raise_remote(data: bytes, key: Key) -> None:
    """Re-raise a worker's exception (the one payload the parent unpickles: on failure)."""
    blob, text = msgspec.msgpack.decode(data)
    err = pickle.loads(blob)
    _note(err, key)
    notes = [*getattr(err, "__notes__", []), f"hlg: traceback in the worker:\n{text.rstrip()}"]
    err.__notes__ = notes
    raise err


class _Dispatch:
    """The parent's loop over one plan."""

    def __init__(self, plan: Plan, workers: list[_Worker], callbacks: CallbackGroup) -> None:
        self.plan = plan
        self.schedule = Schedule(plan)
        self.workers = workers
        self.callbacks = callbacks
        self.results: dict[int, bytes | list[bytes]] = {}
        packed = plan.source.packed
        assert packed is not None
        self.tasks = packed.__getitem__
        self.routes = PieceRoutes(packed.graph, plan.keys, plan.dependents, plan.outputs)

    def sent_size(self, i: int, d: int) -> int:
        """How many bytes task ``i`` is sent of its dependency ``d``."""
        data = self.results[d]
        if isinstance(data, bytes):
            return len(data)
        return len(data[self.routes.piece(i, d)])

    def send(self, worker: _Worker, batch: list[int]) -> None:
        key_of = self.plan.key
        deps = self.plan.deps
        results = self.results
        routes = self.routes
        header: list[tuple[Any, ...]] = []
        frames: list[bytes] = []
        for i in batch:
            task = self.tasks(key_of(i))
            names = task.dependency_tuple  # what the worker's PackedTask will say it reads
            ds = tuple(deps(i))
            if names != tuple(key_of(d) for d in ds):  # same keys, possibly another order
                where = {key_of(d): d for d in ds}
                ds = tuple(where[name] for name in names)
            args: list[Any] = []
            for d in ds:
                data = results[d]
                if isinstance(data, bytes):  # the whole result
                    if len(data) < _INLINE:
                        args.append(data)
                    else:
                        args.append(None)
                        frames.append(data)
                    continue
                j = routes.piece(i, d)  # the one piece task i reads
                piece = data[j]
                if len(piece) < _INLINE:
                    args.append((j, len(data), piece))
                else:
                    args.append((j, len(data), None))
                    frames.append(piece)
            cut = routes.count(i) if routes.active else 0
            header.append((i, task.key, names, task.runspec, args, cut))
            if self.callbacks:
                self.callbacks.task_start(task.key)
        worker.inflight.append(batch)
        try:
            worker.conn.send_bytes(pickle.dumps(header, protocol=5))
            for frame in frames:
                worker.conn.send_bytes(frame)
        except OSError:  # a broken pipe: the worker is gone
            self.died(worker)

    def dispatch(self) -> None:
        """Send ready tasks to workers with room.

        A worker that is busy may be writing results to the parent while the parent
        writes to it; both would block once a pipe's buffer is full. So a busy worker
        only receives messages that fit in a pipe buffer (small arguments, few tasks);
        anything larger waits for an idle worker, which is reading.
        """
        schedule = self.schedule
        deps = self.plan.deps
        free = [w for w in self.workers if len(w.inflight) < _IN_FLIGHT]
        free.sort(key=lambda w: len(w.inflight))  # idle workers first
        held_back: list[int] = []
        while free and schedule.nready:
            size = max(1, min(_MAX_BATCH, schedule.nready // len(self.workers)))
            for w in list(free):
                busy = bool(w.inflight)
                budget = _BUSY_BUDGET
                batch: list[int] = []
                while len(batch) < size:
                    i = schedule.pop()
                    if i < 0:
                        break
                    if busy:
                        cost = 256 + sum(self.sent_size(i, d) for d in deps(i))
                        if cost > budget:
                            held_back.append(i)
                            break
                        budget -= cost
                    batch.append(i)
                if batch:
                    self.send(w, batch)
                if not batch or len(w.inflight) >= _IN_FLIGHT:
                    free.remove(w)
                if not schedule.nready:
                    break
        for i in held_back:
            schedule.put_back(i)
        if not any(w.inflight for w in self.workers):  # pragma: no cover - a bug, not a hang
            raise RuntimeError("hlg: the processes scheduler has nothing to run or wait for")

    def receive(self, worker: _Worker) -> None:
        try:
            header = worker.conn.recv_bytes()
            worker.answered = True
            out = msgspec.msgpack.decode(header)
            payloads = [_receive_result(worker.conn, data) for _, _, _, data in out]
        except (EOFError, OSError):
            self.died(worker)
        worker.inflight.pop(0)
        key_of = self.plan.key
        schedule = self.schedule
        results = self.results
        failed: tuple[int, Any] | None = None
        for (tid, status, elapsed, _), data in zip(out, payloads, strict=True):
            if status:
                if schedule.retry(tid):
                    continue
                if failed is None:
                    failed = (tid, data)
                continue
            results[tid] = data
            for r in schedule.done(tid):
                del results[r]
            if self.callbacks:
                self.callbacks.task_finish(key_of(tid), elapsed)
        if failed is not None:
            tid, data = failed
            try:
                _raise_remote(data, key_of(tid))
            except BaseException as err:
                self.callbacks.error(key_of(tid), err)
                raise

    def died(self, worker: _Worker) -> NoReturn:
        worker.process.join(timeout=1)
        keys = [self.plan.key(i) for batch in worker.inflight for i in batch]
        raise WorkerDiedError(
            worker.process.pid, worker.process.exitcode, keys, at_start=not worker.answered
        )

    def run(self) -> None:
        schedule = self.schedule
        by_conn = {w.conn: w for w in self.workers}
        by_sentinel = {w.process.sentinel: w for w in self.workers}
        waitables = [*by_conn, *by_sentinel]
        while not schedule.finished:
            self.dispatch()
            for ready in multiprocessing.connection.wait(waitables):
                worker = by_conn.get(ready)
                if worker is not None:
                    self.receive(worker)
                elif not by_sentinel[ready].conn.poll():  # died, nothing left to read
                    self.died(by_sentinel[ready])


def run_packed(
    packed: PackedGraph,
    keys: Sequence[Key],
    num_workers: int,
    callbacks: CallbackGroup,
    context: str = "spawn",
) -> dict[Key, bytes]:
    """Run ``keys`` of a packed graph on worker processes; return their pickled results.

    The parent never unpickles a payload here (see the module docstring).

    >>> import hlg, pickle
    >>> packed = hlg.unpack(hlg.pack({"x": hlg.DataNode("x", 1)}))
    >>> out = run_packed(packed, ["x"], 1, CallbackGroup(()))
    >>> pickle.loads(out["x"])
    1
    """
    if context not in ("spawn", "fork", "forkserver"):
        raise ValueError(f"unknown process start method {context!r}; use 'spawn' or 'fork'")
    plan = make_plan(packed, list(keys))
    if callbacks:
        callbacks.start([plan.key(i) for i in plan.outputs], len(plan))
    ok = False
    try:
        if not len(plan):
            ok = True
            return {}
        workers = _start(context, max(1, min(num_workers, len(plan))), packed.blobs)
        try:
            run = _Dispatch(plan, workers, callbacks)
            run.run()
            ok = True
        finally:
            _stop(workers, graceful=ok)
    finally:
        if callbacks:
            callbacks.finish(ok)
    out: dict[Key, bytes] = {}
    for i in plan.outputs:
        data = run.results[i]
        assert type(data) is bytes  # outputs never travel as pieces
        out[plan.key(i)] = data
    return out


def compute_processes(
    graph: Any,
    keys: Any,
    num_workers: int,
    callbacks: CallbackGroup,
    context: str = "spawn",
) -> Any:
    """Pack (unless given a PackedGraph), run on processes, unpickle the outputs."""
    wanted: list[Key] = []
    flatten_keys(keys, wanted)
    unique = list(dict.fromkeys(wanted))
    if isinstance(graph, PackedGraph):
        packed = graph
    else:
        if isinstance(graph, HLGCollection) and not isinstance(graph, HighLevelGraph):
            graph = graph.__hlg_graph__()
        packed = unpack(pack(graph, unique)) if unique else unpack(pack({}))
    raw = run_packed(packed, unique, num_workers, callbacks, context)
    values = {key: pickle.loads(data) for key, data in raw.items()}  # the client's step
    return rebuild_keys(keys, values)
