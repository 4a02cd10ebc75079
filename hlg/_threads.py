"""The threads driver: a pool of threads that pull ready tasks from the scheduling core.

Each worker thread takes the scheduler lock once per task: it reports the task it just
ran (``Schedule.done``, releasing results nobody needs any more) and pops the next one
in the same critical section, then runs it outside the lock. A chain of tasks therefore
stays on one thread with no hand-off, and GIL-releasing work (numpy) runs in parallel.
The first failure stops every worker before it takes another task; the pool is shut
down (all threads joined) before ``run_threads`` returns or raises.
"""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from hlg._callbacks import CallbackGroup
from hlg._get import _note
from hlg._keys import Key
from hlg._order import Plan
from hlg._schedule import Schedule

__all__ = ["run_threads"]


class _Run:
    """Shared state of one threaded computation (guarded by ``cond``)."""

    __slots__ = ("callbacks", "cond", "done", "failure", "plan", "schedule", "stop", "values")

    def __init__(self, plan: Plan, callbacks: CallbackGroup) -> None:
        self.plan = plan
        self.schedule = Schedule(plan)
        self.callbacks = callbacks
        self.values: dict[Key, Any] = {}
        self.cond = threading.Condition(threading.Lock())
        self.done = threading.Event()  # set when finished, failed or stopped
        self.failure: tuple[BaseException, Key] | None = None
        self.stop = False

    def work(self) -> None:
        try:
            self._work()
        except BaseException as err:  # a failure of the loop itself: never leave run() waiting
            with self.cond:
                if self.failure is None:
                    self.failure = (err, "<scheduler>")
                self.stop = True
                self.done.set()
                self.cond.notify_all()
            raise

    def _work(self) -> None:
        schedule = self.schedule
        key_of = self.plan.key
        item = self.plan.item
        values = self.values
        callbacks = self.callbacks
        cond = self.cond
        finished = -1  # the task this thread ran last, reported under the lock
        done_key: Key = ""
        result: Any = None
        elapsed = 0.0
        cond.acquire()
        try:
            while True:
                if finished >= 0:
                    values[done_key] = result
                    result = None
                    for r in schedule.done(finished):
                        del values[key_of(r)]
                    if callbacks:
                        callbacks.task_finish(done_key, elapsed)
                    finished = -1
                    if schedule.finished:
                        self.done.set()
                        cond.notify_all()
                        return
                    if schedule.nready > 1:
                        cond.notify(schedule.nready - 1)
                if self.stop:
                    return
                i = schedule.pop()
                if i < 0:
                    if schedule.finished:
                        return
                    cond.wait()
                    continue
                if callbacks:
                    callbacks.task_start(key_of(i))
                cond.release()
                try:
                    start = time.perf_counter()
                    done_key, node = item(i)  # built outside the lock
                    result = node(values)
                    elapsed = time.perf_counter() - start
                    finished = i
                except BaseException as err:
                    cond.acquire()
                    self._failed(i, key_of(i), err)
                    continue
                cond.acquire()
        finally:
            cond.release()

    def _failed(self, i: int, key: Key, err: BaseException) -> None:
        """Under the lock: retry ``i`` or stop everything with ``err``."""
        if not self.stop and isinstance(err, Exception) and self.schedule.retry(i):
            self.cond.notify()
            return
        if self.failure is None:
            _note(err, key)
            self.failure = (err, key)
            self.callbacks.error(key, err)
        self.stop = True
        self.done.set()
        self.cond.notify_all()

    def cancel(self) -> None:
        with self.cond:
            self.stop = True
            self.cond.notify_all()


def run_threads(plan: Plan, num_workers: int, callbacks: CallbackGroup) -> dict[Key, Any]:
    """Run ``plan`` on ``num_workers`` threads; return the requested results.

    >>> from hlg import DataNode
    >>> from hlg._order import plan
    >>> run_threads(plan({"x": DataNode("x", 1)}, "x"), 2, CallbackGroup(()))
    {'x': 1}
    """
    run = _Run(plan, callbacks)
    if run.schedule.finished:
        return run.values
    workers = max(1, min(num_workers, len(plan)))
    pool = ThreadPoolExecutor(workers, thread_name_prefix="hlg-threads")
    try:
        futures = [pool.submit(run.work) for _ in range(workers)]
        run.done.wait()
    except BaseException:
        run.cancel()
        raise
    finally:
        run.cancel()
        pool.shutdown(wait=True)
    for future in futures:
        future.result()  # a bug in the loop itself surfaces here
    if run.failure is not None:
        raise run.failure[0]
    return run.values
