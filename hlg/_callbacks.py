"""Scheduler callbacks: start, task start, task finish (with duration), finish, error.

Subclass :class:`Callback` and override what you need; pass instances to
``hlg.compute(..., callbacks=[...])``. A callback that raises is reported once as a
warning and switched off for the rest of the computation: it never changes results.
:class:`ProgressBar` is the callback behind ``progress=True`` (a tqdm bar on stderr).
"""

from __future__ import annotations

import sys
import warnings
from collections.abc import Iterable, Sequence
from typing import IO, Any

from hlg._keys import Key

__all__ = ["Callback", "CallbackGroup", "ProgressBar"]


class Callback:
    """Hooks a scheduler calls; every method does nothing unless overridden.

    ``task_start``/``task_finish`` run in the scheduler's process (for the processes
    scheduler, when a task is dispatched and when its result arrives; ``duration`` is
    measured where the task ran, in seconds).

    >>> import hlg
    >>> class Log(hlg.Callback):
    ...     def __init__(self):
    ...         self.seen = []
    ...     def task_finish(self, key, duration):
    ...         self.seen.append(key)
    >>> log = Log()
    >>> hlg.compute({"x": hlg.DataNode("x", 1)}, "x", scheduler="sync", callbacks=[log])
    1
    >>> log.seen
    ['x']
    """

    def start(self, keys: Sequence[Key], ntasks: int) -> None:
        """The computation of ``keys`` (``ntasks`` tasks in all) begins."""

    def task_start(self, key: Key) -> None:
        """Task ``key`` starts (or is sent to a worker)."""

    def task_finish(self, key: Key, duration: float) -> None:
        """Task ``key`` finished successfully after ``duration`` seconds."""

    def error(self, key: Key, exception: BaseException) -> None:
        """Task ``key`` failed with ``exception`` (the computation fails next)."""

    def finish(self, ok: bool) -> None:
        """The computation ended (``ok`` is False after an error or interruption)."""


class ProgressBar(Callback):
    """A tqdm progress bar counting finished tasks, on stderr by default.

    >>> import io, hlg
    >>> out = io.StringIO()
    >>> hlg.compute({"x": hlg.DataNode("x", 1)}, "x", scheduler="sync",
    ...             callbacks=[ProgressBar(file=out)])
    1
    >>> "1/1" in out.getvalue()
    True
    """

    def __init__(self, file: IO[str] | None = None, **tqdm_options: Any) -> None:
        self.file = file
        self.options = tqdm_options
        self.bar: Any = None

    def start(self, keys: Sequence[Key], ntasks: int) -> None:
        from tqdm import tqdm

        options = {"desc": "hlg", "unit": "task", "leave": True, **self.options}
        self.bar = tqdm(total=ntasks, file=self.file or sys.stderr, **options)

    def task_finish(self, key: Key, duration: float) -> None:
        self.bar.update(1)

    def finish(self, ok: bool) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


class CallbackGroup:
    """The callbacks of one computation; each call is guarded (see the module docstring)."""

    __slots__ = ("active",)

    def __init__(self, callbacks: Iterable[Callback]) -> None:
        self.active = list(callbacks)
        for cb in self.active:
            if not isinstance(cb, Callback):
                raise TypeError(f"callbacks must be hlg.Callback instances; got {cb!r}")

    def __bool__(self) -> bool:
        return bool(self.active)

    def _call(self, method: str, *args: Any) -> None:
        for cb in list(self.active):
            try:
                getattr(cb, method)(*args)
            except Exception as err:  # noqa: PERF203 - a callback must not break the run
                self.active.remove(cb)
                warnings.warn(
                    f"hlg: callback {type(cb).__name__}.{method} raised "
                    f"{type(err).__name__}: {err}; it is switched off for this computation",
                    RuntimeWarning,
                    stacklevel=2,
                )

    def start(self, keys: Sequence[Key], ntasks: int) -> None:
        self._call("start", keys, ntasks)

    def task_start(self, key: Key) -> None:
        self._call("task_start", key)

    def task_finish(self, key: Key, duration: float) -> None:
        self._call("task_finish", key, duration)

    def error(self, key: Key, exception: BaseException) -> None:
        self._call("error", key, exception)

    def finish(self, ok: bool) -> None:
        self._call("finish", ok)
