"""Piece transport: results made of pieces, sent to each reader one piece at a time.

A layer may declare, symbolically, that the result of one of its keys is a sequence of
pieces and that a task reads one piece of a dependency rather than all of it (a staged
shuffle: each split output has ``k`` pieces, each reader needs one). Two methods, looked
up by name on the scheduler-side layer, make the declaration:

* ``piece_count(key) -> int``: the result of ``key`` is a sequence of this many pieces
  (0: it is read whole);
* ``piece_of(key, dependency) -> int``: the piece of ``dependency`` the task of ``key``
  reads (-1: all of it).

The processes scheduler (:mod:`hlg._processes`) asks a worker to pickle a result piece by
piece when its layer gives it pieces, it is not a requested output, and every task that
reads it reads one piece; the parent then stores the list of piece bytes and sends each
reader only its piece. The reader's task receives a :class:`PieceView` in place of the
whole sequence: indexing it at the declared piece gives the piece; any other access fails
with :class:`MissingPieceError`, naming the keys (a wrong declaration, never a wrong
answer). Nothing here unpickles anything.
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from hlg._graph import HighLevelGraph
from hlg._keys import Key

__all__ = ["MissingPieceError", "PieceRoutes", "PieceView"]


class MissingPieceError(LookupError):
    """A task read a piece of a dependency that was not sent to it.

    >>> str(MissingPieceError("y", "x", 2, 0))
    "hlg: task 'y' was sent only piece 2 of 'x'; it read piece 0"
    """

    def __init__(self, key: Key, dependency: Key, piece: int, wanted: object) -> None:
        self.key = key
        self.dependency = dependency
        self.piece = piece
        self.wanted = wanted
        read = f"piece {wanted!r}" if wanted is not None else "all of it"
        super().__init__(
            f"hlg: task {key!r} was sent only piece {piece} of {dependency!r}; it read {read}"
        )

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.key, self.dependency, self.piece, self.wanted))


class PieceView:
    """What a task receives for a dependency of which it was sent one piece: a sequence
    of ``count`` items where only item ``piece`` is present.

    >>> v = PieceView("y", "x", 4, 2, "two")
    >>> len(v), v[2], v[-2]
    (4, 'two', 'two')
    >>> v[0]
    Traceback (most recent call last):
    ...
    hlg._pieces.MissingPieceError: hlg: task 'y' was sent only piece 2 of 'x'; it read piece 0
    """

    __slots__ = ("count", "dependency", "key", "piece", "value")

    def __init__(self, key: Key, dependency: Key, count: int, piece: int, value: Any) -> None:
        self.key = key
        self.dependency = dependency
        self.count = count
        self.piece = piece
        self.value = value

    def __len__(self) -> int:
        return self.count

    def __getitem__(self, index: Any) -> Any:
        if type(index) is not bool and hasattr(index, "__index__"):
            i = operator.index(index)
            if i == self.piece or i + self.count == self.piece:
                return self.value
        raise MissingPieceError(self.key, self.dependency, self.piece, index)

    def __iter__(self) -> Iterator[Any]:
        raise MissingPieceError(self.key, self.dependency, self.piece, None)

    def __repr__(self) -> str:
        return f"<PieceView: piece {self.piece} of {self.count} of {self.dependency!r}>"


class PieceRoutes:
    """Parent-side answers: does task ``i``'s result travel as pieces, which piece does
    task ``i`` read of its dependency ``d`` (tasks by their plan numbers).

    Layers are asked only through ``piece_count`` / ``piece_of`` (O(1) each for a
    Shuffle): deciding for a result costs one call per reader, sending a task one call per
    dependency that travels as pieces. A graph with no layer declaring pieces costs nothing.

    >>> import hlg
    >>> from hlg._order import plan
    >>> from hlg.layers import Shuffle
    >>> data = hlg.MaterializedLayer({("x", i): hlg.DataNode(("x", i), [i]) for i in range(2)}, "x")
    >>> shuf = Shuffle("y", "x", 2, 2, lambda p, k, s: [p, []], lambda ps: ps[0])
    >>> g = hlg.HighLevelGraph({"x": data, "y": shuf}, {"y": ["x"]})
    >>> p = plan(g, [("y", 0), ("y", 1)])
    >>> routes = PieceRoutes(g, p.keys, p.dependents, p.outputs)
    >>> i = p.keys.index(("y-split", 0, 1)); j = p.keys.index(("y", 1))
    >>> routes.count(i), routes.count(j), routes.piece(j, i)
    (2, 0, 1)
    """

    __slots__ = ("_dependents", "_graph", "_keys", "_outputs", "active")

    def __init__(
        self,
        graph: HighLevelGraph | None,
        keys: Sequence[Key],
        dependents: Sequence[Sequence[int]],
        outputs: list[int],
    ) -> None:
        self._graph = graph
        self._keys = keys
        self._dependents = dependents
        self.active = graph is not None and any(
            callable(getattr(layer, "piece_count", None)) for layer in graph.layers.values()
        )
        self._outputs = frozenset(outputs) if self.active else frozenset()

    def _method(self, key: Key, name: str) -> Callable[..., int] | None:
        assert self._graph is not None
        method = getattr(self._graph.layer_of(key), name, None)
        return method if callable(method) else None

    def count(self, i: int) -> int:
        """How many pieces task ``i``'s worker sends back (0: one whole result)."""
        if not self.active or i in self._outputs:
            return 0
        keys = self._keys
        key = keys[i]
        piece_count = self._method(key, "piece_count")
        n = piece_count(key) if piece_count is not None else 0
        if type(n) is not int or n <= 0:
            return 0
        readers = self._dependents[i]
        if not readers:
            return 0
        for c in readers:
            reader = keys[c]
            piece_of = self._method(reader, "piece_of")
            if piece_of is None:
                return 0
            j = piece_of(reader, key)
            if type(j) is not int or j < 0:
                return 0
            if j >= n:
                raise ValueError(
                    f"hlg: {reader!r} declares it reads piece {j} of {key!r}, which has {n} pieces"
                )
        return n

    def piece(self, i: int, d: int) -> int:
        """The piece of task ``d``'s result that task ``i`` reads (``d`` has pieces)."""
        keys = self._keys
        reader = keys[i]
        piece_of = self._method(reader, "piece_of")
        assert piece_of is not None  # count(d) > 0 checked every reader
        return piece_of(reader, keys[d])
