"""The scheduling core every local scheduler drives: ready tasks out, finished ones in.

A :class:`Schedule` has graphlib's shape: :meth:`Schedule.pop` hands out the runnable
task with the best priority, :meth:`Schedule.done` takes a finished one back and says
which results may now be released. It never runs anything and holds no values: the
sync, threads and processes drivers own execution and storage and call these two
methods (the threads driver under its lock). All state is numpy arrays indexed by task
number — see docs/design.md, "Scheduler state".
"""

from __future__ import annotations

import heapq
from typing import Any

from hlg._order import Plan

__all__ = ["Schedule"]


class Schedule:
    """The run state of a :class:`~hlg._order.Plan`.

    >>> from operator import add
    >>> from hlg import DataNode, Task, TaskRef
    >>> from hlg._order import plan
    >>> g = {"a": DataNode("a", 1), "b": Task("b", add, TaskRef("a"), 1)}
    >>> s = Schedule(plan(g, "b"))
    >>> a = s.pop(); s.plan.key(a), s.pop()
    ('a', -1)
    >>> s.done(a), s.plan.key(s.pop())
    ([], 'b')
    >>> [s.plan.key(i) for i in s.done(s.plan.outputs[0])], s.finished
    (['a'], True)
    """

    __slots__ = (
        "_attempts",
        "_by_priority",
        "_cursor",
        "_dep_off",
        "_dep_to",
        "_holders",
        "_initial",
        "_left",
        "_ninitial",
        "_priority",
        "_ready",
        "_user_off",
        "_user_to",
        "_waiting",
        "arrays",
        "plan",
    )

    def __init__(self, plan: Plan) -> None:
        import numpy as np

        self.plan = plan
        self._dep_off, self._dep_to = plan._dep_off, plan._dep_to
        self._user_off, self._user_to = plan._user_off, plan._user_to
        waiting = np.diff(plan.arrays["dep_off"]).astype(np.int32)  # unfinished dependencies
        holders = np.diff(plan.arrays["user_off"]).astype(np.int32)  # unfinished readers
        for i in plan.outputs:
            holders[i] += 1  # requested results are never released
        # Tasks runnable from the start are flags indexed by priority, scanned forwards
        # once (a heap of millions of Python ints would cost ~36 B each); tasks that
        # become runnable later go to the heap.
        initial = bytearray(len(plan))
        flags = np.frombuffer(initial, dtype=np.uint8)
        flags[np.asarray(plan.arrays["priority"])[(plan.needed == 1) & (waiting == 0)]] = 1
        self._initial = initial
        self._ninitial = int(flags.sum())
        self._cursor = 0
        self.arrays = {"waiting": waiting, "holders": holders}
        self._waiting = waiting.data
        self._holders = holders.data
        self._priority = plan.priority
        self._by_priority = plan.by_priority
        self._ready: list[int] = []  # priorities of tasks that became runnable
        self._left = len(plan)
        self._attempts: dict[int, int] = {}  # failed runs, only of tasks that failed

    @property
    def finished(self) -> bool:
        """Whether every task has been reported done."""
        return self._left == 0

    @property
    def nready(self) -> int:
        """How many tasks are runnable and not yet handed out."""
        return len(self._ready) + self._ninitial

    def pop(self) -> int:
        """The runnable task with the best priority, or -1 if none is runnable now."""
        ready = self._ready
        p = self._initial.find(1, self._cursor) if self._ninitial else -1
        if ready and (p < 0 or ready[0] < p):
            return self._by_priority[heapq.heappop(ready)]
        if p < 0:
            return -1
        self._initial[p] = 0
        self._cursor = p + 1
        self._ninitial -= 1
        return self._by_priority[p]

    def put_back(self, i: int) -> None:
        """Make popped task ``i`` runnable again (a driver could not start it yet)."""
        heapq.heappush(self._ready, self._priority[i])

    def retry(self, i: int) -> bool:
        """Task ``i`` failed: hand it back and say True if its layer's ``retries``
        annotation allows another run, else say False."""
        failed = self._attempts.get(i, 0) + 1
        self._attempts[i] = failed
        if failed > self.plan.source.retries(self.plan.key(i)):
            return False
        heapq.heappush(self._ready, self._priority[i])
        return True

    def done(self, i: int) -> list[int]:
        """Record task ``i`` as finished; return the tasks whose results are no
        longer needed (release them)."""
        self._left -= 1
        waiting = self._waiting
        ready = self._ready
        priority = self._priority
        for t in self._user_to[self._user_off[i] : self._user_off[i + 1]]:
            left = waiting[t] - 1
            waiting[t] = left
            if left == 0:
                heapq.heappush(ready, priority[t])
        holders = self._holders
        released = []
        for d in self._dep_to[self._dep_off[i] : self._dep_off[i + 1]]:
            left = holders[d] - 1
            holders[d] = left
            if left == 0:
                released.append(d)
        if holders[i] == 0:  # nobody reads it (cannot happen for a needed task, but be safe)
            released.append(i)
        return released

    def nbytes(self) -> int:
        """Bytes of run state: the plan's arrays, the counters and the ready set."""
        arrays = sum(a.nbytes for a in self.arrays.values())
        return int(self.plan.nbytes() + arrays + len(self._initial) + 8 * len(self._ready))

    def __repr__(self) -> str:
        return f"<Schedule: {self._left} of {len(self.plan)} tasks left>"

    def state(self) -> dict[str, Any]:
        """Counts for diagnostics: tasks left, runnable now."""
        return {"left": self._left, "ready": self.nready, "tasks": len(self.plan)}
