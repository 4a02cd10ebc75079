"""Keys: what may name a node in a graph, checked by exact rules instead of guessed."""

from __future__ import annotations

from typing import TypeAlias

__all__ = ["Key", "iskey", "validate_key", "key_prefix"]

#: A key is a ``str`` or a tuple ``(str, int | float | str, ...)``.
Key: TypeAlias = str | tuple[str | int | float, ...]

_ITEM_TYPES = frozenset({str, int, float})


def iskey(obj: object) -> bool:
    """Say whether ``obj`` is a valid key.

    A key is a ``str``, or a non-empty ``tuple`` whose first item is a ``str`` and
    whose other items are ``int``, ``float`` or ``str``. ``bool`` is not an ``int``
    here, nested tuples are not keys, and NaN is not a key item (keys compare by value,
    and NaN equals nothing).

    >>> iskey("x"), iskey(("x", 0, 3)), iskey(("x", 1.5, "a"))
    (True, True, True)
    >>> iskey(1), iskey(True), iskey(()), iskey((0, "x")), iskey(("x", True))
    (False, False, False, False, False)
    >>> iskey(("x", float("nan")))
    False
    """
    typ = type(obj)
    if typ is str:
        return True
    if typ is tuple:
        if not obj or type(obj[0]) is not str:  # type: ignore[index]
            return _iskey_slow(obj)
        for item in obj:  # type: ignore[attr-defined]
            if type(item) not in _ITEM_TYPES:
                return _iskey_slow(obj)
            if item != item:  # NaN: never equal to itself, so never found by value
                return False
        return True
    return _iskey_slow(obj)


def _iskey_slow(obj: object) -> bool:
    """Accept subclasses of the key types (``numpy.str_``, ``numpy.int64``, ...)."""
    if isinstance(obj, str):
        return True
    if not isinstance(obj, tuple) or not obj or not isinstance(obj[0], str):
        return False
    return all(
        isinstance(item, (int, float, str)) and not isinstance(item, bool) and item == item
        for item in obj[1:]
    )


def validate_key(obj: object, what: str = "key") -> None:
    """Raise ``TypeError`` naming ``obj`` if it is not a key.

    >>> validate_key(("x", 0))
    >>> validate_key(["x", 0])
    Traceback (most recent call last):
    ...
    TypeError: key must be a str or a tuple (str, int | float | str, ...); got list ['x', 0]
    """
    if not iskey(obj):
        raise TypeError(
            f"{what} must be a str or a tuple (str, int | float | str, ...); "
            f"got {type(obj).__name__} {obj!r}"
        )


def key_prefix(key: Key) -> str:
    """Return the first item of a tuple key, or the key itself when it is a ``str``.

    >>> key_prefix(("x", 0, 1)), key_prefix("y")
    ('x', 'y')
    """
    return key if isinstance(key, str) else key[0]  # type: ignore[return-value]
