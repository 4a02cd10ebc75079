"""What the symbolic partition layers (TreeReduction, Shuffle) share: checks, coordinates, a base.

``LocatedLayer`` answers ``in``, ``[]`` and dependencies from a key's located node.
"""

from __future__ import annotations

import operator
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any, TypeVar

from hlg import GraphNode, Key, Layer, PackError

__all__ = ["LocatedLayer", "check_count", "check_names", "coordinate", "pack_errors"]

_L = TypeVar("_L", bound="LocatedLayer")


def check_count(owner: str, value: Any, what: str, minimum: int) -> int:
    """``value`` as an int at least ``minimum``, or an error naming ``owner`` and ``what``.

    >>> check_count("Shuffle", 3, "max_branch", 2)
    3
    >>> check_count("Shuffle", 1, "max_branch", 2)
    Traceback (most recent call last):
    ...
    ValueError: Shuffle max_branch must be an int >= 2; got 1
    """
    if isinstance(value, bool) or not hasattr(value, "__index__"):
        raise TypeError(f"{owner} {what} must be an int >= {minimum}; got {value!r}")
    n = operator.index(value)
    if n < minimum:
        raise ValueError(f"{owner} {what} must be an int >= {minimum}; got {value!r}")
    return n


def coordinate(value: object) -> int | None:
    """An int key item (a float equal to an int counts: keys compare by value).

    >>> coordinate(3), coordinate(3.0), coordinate(3.5), coordinate("3")
    (3, 3, None, None)
    """
    if type(value) is int:
        return value
    if type(value) is float and value.is_integer():
        return int(value)
    return None


def check_names(owner: str, output: object, input_name: object, own: Sequence[str]) -> None:
    """Check that ``output`` and ``input_name`` are non-empty strings and that the layer
    does not read its own keys (``output`` or ``output + suffix`` for a suffix in ``own``).

    >>> check_names("Shuffle", "y", "y-split", ["-split"])
    Traceback (most recent call last):
    ...
    ValueError: Shuffle 'y' cannot read its own keys ('y-split')
    """
    if not isinstance(output, str) or not output:
        raise TypeError(f"{owner} name must be a non-empty str; got {output!r}")
    if not isinstance(input_name, str) or not input_name:
        raise TypeError(f"{owner} input_name must be a non-empty str; got {input_name!r}")
    if input_name == output or input_name in [output + suffix for suffix in own]:
        raise ValueError(f"{owner} {output!r} cannot read its own keys ({input_name!r})")


@contextmanager
def pack_errors(where: str) -> Iterator[None]:
    """Turn the ``TypeError`` / ``ValueError`` of rebuilding a layer into a ``PackError``.

    >>> with pack_errors("layer 'y'"):
    ...     raise ValueError("bad")
    Traceback (most recent call last):
    ...
    hlg._wire.PackError: layer 'y': bad
    """
    try:
        yield
    except (TypeError, ValueError) as err:
        raise PackError(f"{where}: {err}") from None


class LocatedLayer(Layer):
    """A layer whose keys are nodes ``(level, index)``: a subclass implements
    ``_locate`` (a key's node, or None) and ``_build`` (a node's task), and gets
    ``in``, ``[]`` and ``dependencies`` from them.

    >>> from hlg import Task
    >>> class Pairs(LocatedLayer):
    ...     def _locate(self, key):
    ...         return (0, key[1]) if key in {("p", 0), ("p", 1)} else None
    ...     def _build(self, level, index):
    ...         return Task(("p", index), divmod, index, 2)
    ...     def dependency_tuple(self, key):
    ...         return ()
    >>> layer = Pairs("p")
    >>> ("p", 1) in layer, ("p", 2) in layer, layer[("p", 1)]({}), layer.dependencies(("p", 0))
    (True, False, (0, 1), frozenset())
    """

    @classmethod
    def _blank(cls: type[_L], name: str, annotations: Mapping[str, Any]) -> _L:
        """An instance named ``name`` carrying ``annotations`` as they are, before setup."""
        layer = cls.__new__(cls)
        Layer.__init__(layer, name)
        layer.annotations = annotations  # type: ignore[assignment]
        return layer

    def _locate(self, key: object) -> tuple[int, int] | None:
        """``(level, index)`` of a key of this layer, or None."""
        raise NotImplementedError(f"{type(self).__name__} must implement _locate")

    def _build(self, level: int, index: int) -> GraphNode:
        """The task of the node ``(level, index)``."""
        raise NotImplementedError(f"{type(self).__name__} must implement _build")

    def __contains__(self, key: object) -> bool:
        return self._locate(key) is not None

    def __getitem__(self, key: Key) -> GraphNode:
        node = self._locate(key)
        if node is None:
            raise KeyError(key)
        return self._build(*node)

    def dependencies(self, key: Key) -> frozenset[Key]:
        """The keys ``key`` reads, as a frozenset."""
        return frozenset(self.dependency_tuple(key))
