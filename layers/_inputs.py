"""Input providers and input layers: families with no upstream keys.

A provider stands where an input name would in a blockwise call, with its own index
string and block counts, and gives each block a value computed from numbers alone
(``BlockIndex``, ``ChunkShape``, ``ArraySlice``) or taken from a list of opaque
per-block values (``BlockValues``, e.g. file paths). ``InputLayer`` is one task per
input, ``func(inputs[i])`` under key ``(name, i)``.
"""

from __future__ import annotations

import itertools
import operator
from collections.abc import Callable, Mapping, Sequence
from typing import Any, ClassVar

from hlg import ArgSpec, Placeholder, normalize_token
from hlg._task import _scan

__all__ = [
    "ArraySlice",
    "BlockIndex",
    "BlockProvider",
    "BlockValues",
    "ChunkShape",
    "InputLayer",
    "normalize_chunks",
    "normalize_numblocks",
]


def normalize_chunks(chunks: Sequence[Sequence[int]]) -> tuple[tuple[int, ...], ...]:
    """Check explicit chunks (one tuple of block sizes per dimension) and return tuples.

    >>> normalize_chunks([[2, 2], (3,)])
    ((2, 2), (3,))
    >>> normalize_chunks([[2, -1]])
    Traceback (most recent call last):
    ...
    ValueError: chunks along dimension 0 must be non-negative ints with at least one ...
    """
    if not isinstance(chunks, (list, tuple)):
        raise TypeError(f"chunks must be a sequence of sequences of ints; got {chunks!r}")
    out = []
    for dim, sizes in enumerate(chunks):
        try:
            sizes_t = tuple(sizes)
            if not all(type(s) is int for s in sizes_t):  # numpy integers, or bad values
                sizes_t = tuple(_count(s) for s in sizes_t)
        except TypeError:
            sizes_t = ()
        if not sizes_t or min(sizes_t) < 0:
            raise ValueError(
                f"chunks along dimension {dim} must be non-negative ints with at least "
                f"one block; got {sizes!r}"
            )
        out.append(sizes_t)
    return tuple(out)


def _count(value: Any) -> int:
    """An int from an int-like value (``numpy.int64`` included), never from a bool."""
    if isinstance(value, bool):
        raise TypeError(f"expected an int; got {value!r}")
    return operator.index(value)


def normalize_numblocks(numblocks: Any, what: str) -> tuple[int, ...]:
    """Check block counts (ints >= 1, numpy integers accepted) and return a tuple.

    >>> normalize_numblocks([2, 3], "x")
    (2, 3)
    >>> normalize_numblocks(5, "BlockIndex")
    Traceback (most recent call last):
    ...
    TypeError: BlockIndex numblocks must be a sequence of ints >= 1; got 5
    """
    try:
        items = list(numblocks)
    except TypeError:
        raise TypeError(
            f"{what} numblocks must be a sequence of ints >= 1; got {numblocks!r}"
        ) from None
    try:
        counts = tuple(_count(n) for n in items)
    except TypeError:
        counts = (0,)
    if any(n < 1 for n in counts):
        raise ValueError(f"{what} numblocks must be ints >= 1; got {numblocks!r}")
    return counts


class BlockProvider:
    """A symbolic argument of a blockwise layer: a value for each block, no upstream key.

    >>> class Offsets(BlockProvider):
    ...     kind = "offsets"
    ...     def __init__(self, n, step):
    ...         self.numblocks, self.step = (n,), step
    ...     def value(self, block):
    ...         return block[0] * self.step
    ...     def _state(self):
    ...         return (self.numblocks, self.step)
    >>> Offsets(4, 100).value((3,))
    300

    Subclasses set ``kind`` and ``numblocks`` and implement :meth:`value`.
    """

    kind: ClassVar[str] = "provider"
    numblocks: tuple[int, ...]

    def value(self, block: tuple[int, ...]) -> Any:
        """The value for block ``block`` (one index per dimension)."""
        raise NotImplementedError

    def _state(self) -> tuple[Any, ...]:
        raise NotImplementedError

    def __eq__(self, other: object) -> bool:
        return type(other) is type(self) and other._state() == self._state()

    def __hash__(self) -> int:
        return hash((type(self).__name__, self._state()))

    def __repr__(self) -> str:
        return f"{type(self).__name__}{self._state()!r}"


@normalize_token.register(BlockProvider)
def _normalize_provider(provider: BlockProvider) -> object:
    return (provider.kind, provider._state())


class BlockIndex(BlockProvider):
    """Gives each block its block index.

    >>> BlockIndex((2, 3)).value((1, 2))
    (1, 2)
    """

    kind = "block-index"

    def __init__(self, numblocks: Sequence[int]) -> None:
        self.numblocks = normalize_numblocks(numblocks, "BlockIndex")

    def value(self, block: tuple[int, ...]) -> tuple[int, ...]:
        """The block index itself."""
        return block

    def _state(self) -> tuple[Any, ...]:
        return (self.numblocks,)

    def __reduce__(self) -> tuple[Any, ...]:
        return (BlockIndex, (self.numblocks,))


class ChunkShape(BlockProvider):
    """Gives each block its shape, from explicit chunks.

    >>> ChunkShape(((2, 2, 1), (3,))).value((2, 0))
    (1, 3)
    """

    kind = "chunk-shape"

    def __init__(self, chunks: Sequence[Sequence[int]]) -> None:
        self.chunks = normalize_chunks(chunks)
        self.numblocks = tuple(len(c) for c in self.chunks)

    def value(self, block: tuple[int, ...]) -> tuple[int, ...]:
        """The shape of block ``block``."""
        chunks = self.chunks
        return tuple([chunks[d][b] for d, b in enumerate(block)])

    def _state(self) -> tuple[Any, ...]:
        return (self.chunks,)

    def __reduce__(self) -> tuple[Any, ...]:
        return (ChunkShape, (self.chunks,))


class ArraySlice(BlockProvider):
    """Gives each block the slices that cut it out of the whole array.

    >>> ArraySlice(((2, 2, 1), (3,))).value((1, 0))
    (slice(2, 4, None), slice(0, 3, None))
    """

    kind = "array-slice"

    def __init__(self, chunks: Sequence[Sequence[int]]) -> None:
        self.chunks = normalize_chunks(chunks)
        self.numblocks = tuple(len(c) for c in self.chunks)
        self._starts = tuple(tuple(itertools.accumulate(c, initial=0)) for c in self.chunks)

    def value(self, block: tuple[int, ...]) -> tuple[slice, ...]:
        """The slices of block ``block``."""
        starts = self._starts
        return tuple([slice(starts[d][b], starts[d][b + 1]) for d, b in enumerate(block)])

    def _state(self) -> tuple[Any, ...]:
        return (self.chunks,)

    def __reduce__(self) -> tuple[Any, ...]:
        return (ArraySlice, (self.chunks,))


class BlockValues(BlockProvider):
    """Gives block ``(i,)`` the opaque value ``values[i]`` (a path, a parameter set, ...).

    >>> BlockValues(["a.csv", "b.csv"]).value((1,))
    'b.csv'
    """

    kind = "block-values"

    def __init__(self, values: Sequence[Any]) -> None:
        self.values = tuple(values)
        if not self.values:
            raise ValueError("BlockValues needs at least one value")
        for i, value in enumerate(self.values):
            if _scan(value, []):
                raise TypeError(
                    f"BlockValues value {i} holds a reference or a task ({value!r}); "
                    "per-block values are data: pass references as blockwise arguments"
                )
        self.numblocks = (len(self.values),)

    def value(self, block: tuple[int, ...]) -> Any:
        """The value of block ``block``."""
        return self.values[block[0]]

    def _state(self) -> tuple[Any, ...]:
        return (self.values,)

    def __eq__(self, other: object) -> bool:
        if type(other) is not BlockValues:
            return False
        return len(other.values) == len(self.values) and all(
            a is b or _equal(a, b) for a, b in zip(self.values, other.values, strict=True)
        )

    def __hash__(self) -> int:
        return hash((BlockValues, len(self.values)))

    def __repr__(self) -> str:
        return f"BlockValues(<{len(self.values)} values>)"

    def __reduce__(self) -> tuple[Any, ...]:
        return (BlockValues, (self.values,))


def _equal(a: Any, b: Any) -> bool:
    try:
        return bool(a == b)
    except (TypeError, ValueError):
        return False


def InputLayer(
    name: str,
    func: Callable[..., Any],
    inputs: Sequence[Any],
    annotations: Mapping[str, Any] | None = None,
    **kwargs: Any,
) -> Any:
    """One task per input: key ``(name, i)`` computes ``func(inputs[i], **kwargs)``.

    The result is a one-dimensional blockwise layer whose only argument is
    ``BlockValues(inputs)``, so it culls symbolically and fuses with the blockwise
    layers that read it.

    >>> layer = InputLayer("read", str.upper, ["a", "b", "c"])
    >>> len(layer), layer[("read", 2)]({})
    (3, 'C')
    """
    from hlg.layers._blockwise import Blockwise

    return Blockwise(
        name,
        "i",
        ArgSpec(func, Placeholder(0), **kwargs),
        [(BlockValues(inputs), "i")],
        {},
        annotations=annotations,
        kind="input",
    )
