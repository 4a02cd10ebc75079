"""The sync driver: run a plan on the calling thread through the scheduling core."""

from __future__ import annotations

import time
from typing import Any

from hlg._callbacks import CallbackGroup
from hlg._get import _note
from hlg._keys import Key
from hlg._order import Plan
from hlg._schedule import Schedule

__all__ = ["run_sync"]


def run_sync(plan: Plan, callbacks: CallbackGroup) -> dict[Key, Any]:
    """Run every task of ``plan`` in priority order; return the requested results.

    >>> from hlg import DataNode
    >>> from hlg._order import plan
    >>> run_sync(plan({"x": DataNode("x", 1)}, "x"), CallbackGroup(()))
    {'x': 1}
    """
    schedule = Schedule(plan)
    key_of = plan.key
    item = plan.item
    values: dict[Key, Any] = {}
    while True:
        i = schedule.pop()
        if i < 0:
            break
        key, node = item(i)
        if callbacks:
            callbacks.task_start(key)
            start = time.perf_counter()
        try:
            values[key] = node(values)
        except Exception as err:
            if schedule.retry(i):
                continue
            _note(err, key)
            callbacks.error(key, err)
            raise
        if callbacks:
            callbacks.task_finish(key, time.perf_counter() - start)
        for r in schedule.done(i):
            del values[key_of(r)]
    return values
