"""The scheduling core every local scheduler drives: ready tasks out, finished ones in.

A :class:`Schedule` has graphlib's shape: :meth:`Schedule.pop` hands out the runnable
task with the best priority, :meth:`Schedule.done` takes a finished one back and says
which results may now be released. It never runs anything and holds no values: the
sync, threads and processes drivers own execution and storage and call these two
methods (the threads driver under its lock). All state is per-task arrays of
ints — see docs/design.md, "Scheduler state".
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
    >>> a = s.pop(); s.plan.keys[a], s.pop()
    ('a', -1)
    >>> s.done(a), s.plan.keys[s.pop()]
    ([], 'b')
    >>> [s.plan.keys[i] for i in s.done(s.plan.outputs[0])], s.finished
    (['a'], True)
    """

    __slots__ = (
        "_attempts",
        "_by_priority",
        "_dependents",
        "_deps",
        "_holders",
        "_left",
        "_priority",
        "_ready",
        "_waiting",
        "plan",
    )

    def __init__(self, plan: Plan) -> None:
        self.plan = plan
        self._deps = plan.deps
        self._dependents = plan.dependents
        self._waiting = [len(ds) for ds in plan.deps]  # unfinished dependencies
        holders = [len(ts) for ts in plan.dependents]  # unfinished readers of the result
        for i in plan.outputs:
            holders[i] += 1  # requested results are never released
        self._holders = holders
        self._priority = plan.priority
        self._by_priority = plan.by_priority
        ready = [plan.priority[i] for i, ds in enumerate(plan.deps) if not ds]
        heapq.heapify(ready)
        self._ready = ready  # priorities of runnable tasks
        self._left = len(plan.keys)
        self._attempts: dict[int, int] = {}  # failed runs, only of tasks that failed

    @property
    def finished(self) -> bool:
        """Whether every task has been reported done."""
        return self._left == 0

    @property
    def nready(self) -> int:
        """How many tasks are runnable and not yet handed out."""
        return len(self._ready)

    def pop(self) -> int:
        """The runnable task with the best priority, or -1 if none is runnable now."""
        ready = self._ready
        return self._by_priority[heapq.heappop(ready)] if ready else -1

    def put_back(self, i: int) -> None:
        """Make popped task ``i`` runnable again (a driver could not start it yet)."""
        heapq.heappush(self._ready, self._priority[i])

    def retry(self, i: int) -> bool:
        """Position ``i`` failed: hand it back and say True if its layer's ``retries``
        annotation allows another run, else say False."""
        failed = self._attempts.get(i, 0) + 1
        self._attempts[i] = failed
        if failed > self.plan.source.retries(self.plan.keys[i]):
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
        for t in self._dependents[i]:
            left = waiting[t] - 1
            waiting[t] = left
            if left == 0:
                heapq.heappush(ready, priority[t])
        holders = self._holders
        released = []
        for d in self._deps[i]:
            left = holders[d] - 1
            holders[d] = left
            if left == 0:
                released.append(d)
        if holders[i] == 0:  # nobody reads it (cannot happen for a needed task, but be safe)
            released.append(i)
        return released

    def __repr__(self) -> str:
        return f"<Schedule: {self._left} of {len(self.plan.keys)} tasks left>"

    def state(self) -> dict[str, Any]:
        """Counts for diagnostics: tasks left, runnable now."""
        return {"left": self._left, "ready": len(self._ready), "tasks": len(self.plan.keys)}
