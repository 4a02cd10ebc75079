"""dask ``Blockwise`` layers as hlg ``Blockwise`` layers, where the mapping is exact.

Found by ``hlg.from_dask`` through the ``hlg.dask_layers`` entry point group; imports dask
only when a dask layer is converted.
"""

from __future__ import annotations

import string
from typing import Any, final

from hlg import Layer

__all__ = ["convert_blockwise"]


def _token(i: int) -> str:
    """dask's name of placeholder ``i`` in a blockwise task template."""
    return f"__dask_blockwise__{i}"


@final
class DaskBlockwiseCall:
    """Calls a dask blockwise task template with its arguments in placeholder order.

    >>> from dask._task_spec import Task, TaskRef
    >>> from operator import add
    >>> call = DaskBlockwiseCall(Task("t", add, TaskRef("__dask_blockwise__0"), 10), 1)
    >>> call(5)
    15
    """

    __slots__ = ("nargs", "task")

    def __init__(self, task: Any, nargs: int) -> None:
        self.task = task
        self.nargs = nargs

    def __call__(self, *values: Any) -> Any:
        return self.task({_token(i): v for i, v in enumerate(values)})

    @property
    def __name__(self) -> str:
        return getattr(self.task.func, "__name__", "dask-blockwise")

    def __reduce__(self) -> tuple[Any, ...]:
        return (DaskBlockwiseCall, (self.task, self.nargs))


def convert_blockwise(dlayer: Any) -> Layer | None:
    """The hlg ``Blockwise`` layer computing what a dask ``Blockwise`` layer computes.

    Returns None (convert task by task) unless the mapping is exact: no io_deps, no
    culled output blocks, no new axes, no contracted index, string inputs, literal
    constants and a template that reads only its placeholders.

    >>> import dask.array as da
    >>> x = da.ones((4, 4), chunks=2)
    >>> y = x + 1
    >>> layer = convert_blockwise(y.dask.layers[y.name])
    >>> type(layer).__name__, len(layer)
    ('Blockwise', 4)
    >>> convert_blockwise(x.dask.layers[x.name]) is None   # reads io_deps
    True
    """
    from dask._task_spec import GraphNode, TaskRef
    from dask.blockwise import Blockwise

    from hlg.layers._blockwise import blockwise

    if type(dlayer) is not Blockwise:
        return None
    if dlayer.io_deps or dlayer.output_blocks is not None or dlayer.new_axes:
        return None
    if dlayer.concatenate:
        return None
    indices = list(dlayer.indices)
    placeholders = {_token(i) for i in range(len(indices))}
    task = dlayer.task
    if not set(task.dependencies) <= placeholders:
        return None
    out = tuple(dlayer.output_indices)
    letters: dict[str, str] = {}
    alphabet = iter(string.ascii_letters)

    def letter(index: str) -> str:
        if index not in letters:
            letters[index] = next(alphabet)
        return letters[index]

    try:
        out_ind = "".join(letter(i) for i in out)
        pairs: list[Any] = []
        for value, ind in indices:
            if ind is None:
                if isinstance(value, (TaskRef, GraphNode)):
                    return None
                pairs += [value, None]
                continue
            if type(value) is not str or not set(ind) <= set(out):
                return None  # a reference we do not know, or a contraction
            pairs += [value, "".join(letter(i) for i in ind)]
    except StopIteration:  # more dimensions than letters
        return None
    annotations = {k: v for k, v in (dlayer.annotations or {}).items() if not callable(v)}
    return blockwise(
        DaskBlockwiseCall(task, len(indices)),
        dlayer.output,
        out_ind,
        *pairs,
        numblocks={k: tuple(v) for k, v in dlayer.numblocks.items()},
        layer_name=dlayer.output,
        layer_annotations=annotations or None,
    )
