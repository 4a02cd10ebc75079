"""Declarative layer annotations (retries, priority, resources, ...) and ``hlg.annotate``.

Annotations are plain data — ``None``, ``bool``, ``int``, ``float``, ``str`` and lists
and string-keyed dicts of those (a tuple is stored as a list) — so that they pack to the
wire unchanged and compare exactly. Callables are refused: an annotation computed per
key would force building every task to learn it.
"""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Iterator, Mapping
from typing import Any, final

__all__ = ["Annotations", "annotate", "current_annotations", "merge_annotations"]


def _freeze(value: Any) -> Any:
    if isinstance(value, (list, tuple)):
        return (type(value).__name__, tuple(_freeze(v) for v in value))
    if isinstance(value, dict):
        return ("dict", tuple(sorted((k, _freeze(v)) for k, v in value.items())))
    return (type(value).__name__, value)


@final
class Annotations(Mapping[str, Any]):
    """A read-only, hashable, picklable mapping of checked annotations.

    >>> a = Annotations({"retries": 2})
    >>> a["retries"], a == {"retries": 2}, hash(a) == hash(Annotations({"retries": 2}))
    (2, True, True)
    """

    __slots__ = ("_data", "_frozen")
    _data: dict[str, Any]
    _frozen: Any

    def __init__(self, data: Mapping[str, Any] | None = None) -> None:
        checked: dict[str, Any] = {}
        for name, value in (data or {}).items():
            if not isinstance(name, str):
                raise TypeError(f"annotation names must be str; got {name!r}")
            checked[str(name)] = _plain(name, value)  # a private deep copy
        self._data = checked
        self._frozen = _freeze(checked)

    def __getitem__(self, name: str) -> Any:
        value = self._data[name]
        return _plain(name, value) if isinstance(value, (list, dict)) else value

    def __iter__(self) -> Iterator[str]:
        return iter(self._data)

    def __len__(self) -> int:
        return len(self._data)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Annotations):
            return bool(self._frozen == other._frozen)
        if isinstance(other, Mapping):
            try:
                return bool(self._frozen == _freeze({k: _plain(k, v) for k, v in other.items()}))
            except TypeError:
                return False
        return NotImplemented

    def __hash__(self) -> int:
        return hash(self._frozen)

    def __repr__(self) -> str:
        return f"Annotations({self._data!r})"

    def __reduce__(self) -> tuple[Any, ...]:
        return (Annotations, (self._data,))


_EMPTY = Annotations()
_CURRENT: contextvars.ContextVar[Annotations] = contextvars.ContextVar(
    "hlg_annotations", default=_EMPTY
)


_MAX_DEPTH = 32


def _plain(name: str, value: Any, depth: int = 0) -> Any:
    """A deep copy of ``value`` made of exact builtin types; TypeError if not plain data."""
    if depth > _MAX_DEPTH:
        raise TypeError(f"annotation {name!r} is nested deeper than {_MAX_DEPTH} levels")
    if value is None or type(value) is bool:
        return value
    for typ in (int, float, str):
        if isinstance(value, typ) and not isinstance(value, bool):
            return typ(value)
    if isinstance(value, (list, tuple)):  # tuples become lists: the wire has no tuples
        return [_plain(name, item, depth + 1) for item in value]
    if isinstance(value, dict):
        out = {}
        for k, v in value.items():
            if not isinstance(k, str):
                raise TypeError(f"annotation {name!r}: dict keys must be str; got {k!r}")
            out[str(k)] = _plain(name, v, depth + 1)
        return out
    raise TypeError(
        f"annotation {name!r} must be plain data (None, bool, int, float, str, "
        f"list, tuple, dict); got {type(value).__name__} {value!r}"
    )


def merge_annotations(*parts: Mapping[str, Any] | None) -> Annotations:
    """Merge annotation mappings (later ones win) into checked :class:`Annotations`.

    >>> dict(merge_annotations({"retries": 1}, {"priority": 2, "retries": 3}))
    {'retries': 3, 'priority': 2}
    >>> merge_annotations({"retries": print})
    Traceback (most recent call last):
    ...
    TypeError: annotation 'retries' must be plain data (None, bool, int, float, str, ...
    """
    merged: dict[str, Any] = {}
    for part in parts:
        if part:
            merged.update(part)
    return Annotations(merged) if merged else _EMPTY


def current_annotations() -> Annotations:
    """The annotations of the innermost ``hlg.annotate`` block (empty outside one)."""
    return _CURRENT.get()


@contextlib.contextmanager
def annotate(**annotations: Any) -> Iterator[None]:
    """Annotate every layer built inside the block; nested blocks add to outer ones.

    >>> import hlg
    >>> with hlg.annotate(retries=2, priority=1):
    ...     layer = hlg.MaterializedLayer({"x": hlg.DataNode("x", 1)})
    >>> dict(layer.annotations)
    {'retries': 2, 'priority': 1}
    """
    token = _CURRENT.set(merge_annotations(_CURRENT.get(), annotations))
    try:
        yield
    finally:
        _CURRENT.reset(token)
