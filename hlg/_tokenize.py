"""Deterministic tokens: the same value gives the same hex digest in every process.

Tokens never depend on ``PYTHONHASHSEED``, ``id()`` or the process: sets and dict keys
are ordered by the tokens of their items, functions are named by module and qualified
name when importable and described by their code otherwise.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import importlib
import sys
import types
from collections.abc import Callable
from typing import Any

__all__ = ["normalize_token", "tokenize"]


def tokenize(*args: object, **kwargs: object) -> str:
    """Return a deterministic 32-character hex token of the arguments.

    >>> tokenize("x", 1) == tokenize("x", 1)
    True
    >>> tokenize({"a", "b"}) == tokenize({"b", "a"})
    True
    >>> tokenize([1, 2]) == tokenize((1, 2))
    False
    >>> len(tokenize(object))
    32
    """
    hasher = hashlib.blake2b(digest_size=16)
    _feed(hasher, (args, kwargs) if kwargs else args)
    return hasher.hexdigest()


def _feed(hasher: Any, obj: object) -> None:
    hasher.update(repr(_normalize(obj, [])).encode())


@functools.singledispatch
def normalize_token(obj: object) -> object:
    """Reduce ``obj`` to builtin values whose ``repr`` is deterministic.

    Register a function for your own type with ``@normalize_token.register``, or give
    the type a ``__hlg_tokenize__`` method returning such a value.

    >>> normalize_token(frozenset({"b", "a"}))
    ('frozenset', ('str', 'a'), ('str', 'b'))
    """
    return _normalize(obj, [])


_SCALARS = (type(None), bool, int, float, complex, str, bytes, type(Ellipsis))


def _normalize(obj: object, stack: list[int]) -> object:
    typ = type(obj)
    if typ in _SCALARS:
        return (typ.__name__, obj)
    if id(obj) in stack:  # a self-referencing structure: name the back reference
        return ("backref", len(stack) - stack.index(id(obj)))
    stack.append(id(obj))
    try:
        return _normalize_compound(obj, typ, stack)
    finally:
        stack.pop()


def _sorted_items(items: list[object]) -> tuple[object, ...]:
    return tuple(sorted(items, key=repr))


def _normalize_compound(obj: Any, typ: type, stack: list[int]) -> object:
    if typ is list or typ is tuple:
        return (typ.__name__, *[_normalize(x, stack) for x in obj])
    if typ is dict:
        pairs = [(_normalize(k, stack), _normalize(v, stack)) for k, v in obj.items()]
        return ("dict", *_sorted_items(pairs))  # type: ignore[arg-type]
    if typ is set or typ is frozenset:
        return (typ.__name__, *_sorted_items([_normalize(x, stack) for x in obj]))
    custom = getattr(typ, "__hlg_tokenize__", None)
    if custom is not None:
        return (_qualified(typ), _normalize(custom(obj), stack))
    impl = normalize_token.dispatch(typ)
    if impl is not normalize_token.dispatch(object):
        return (_qualified(typ), _normalize(impl(obj), stack))
    if isinstance(obj, range):
        return ("range", obj.start, obj.stop, obj.step)
    if isinstance(obj, slice):
        return ("slice", *(_normalize(x, stack) for x in (obj.start, obj.stop, obj.step)))
    if isinstance(obj, type):
        return ("type", _qualified(obj))
    if isinstance(obj, functools.partial):
        return (
            "partial",
            _normalize(obj.func, stack),
            _normalize(obj.args, stack),
            _normalize(obj.keywords, stack),
        )
    if isinstance(obj, (types.FunctionType, types.BuiltinFunctionType, types.MethodType)):
        return _normalize_function(obj, stack)
    if typ.__module__ == "numpy" or typ.__module__.startswith("numpy."):
        normalized = _normalize_numpy(obj)
        if normalized is not None:
            return normalized
    if dataclasses.is_dataclass(obj):
        fields = [
            (f.name, _normalize(getattr(obj, f.name), stack)) for f in dataclasses.fields(obj)
        ]
        return ("dataclass", _qualified(typ), *fields)
    return _normalize_by_reduce(obj, typ, stack)  # subclasses of builtins too: their state


def _qualified(obj: Any) -> str:
    return f"{getattr(obj, '__module__', None)}.{getattr(obj, '__qualname__', repr(obj))}"


def _importable(obj: Any) -> bool:
    module_name = getattr(obj, "__module__", None)
    qualname = getattr(obj, "__qualname__", None)
    if not module_name or not qualname or "<" in qualname:
        return False
    module = sys.modules.get(module_name)
    if module is None:
        try:
            module = importlib.import_module(module_name)
        except Exception:
            return False
    target: Any = module
    for part in qualname.split("."):
        target = getattr(target, part, None)
        if target is None:
            return False
    return target is obj


def _normalize_function(func: Any, stack: list[int]) -> object:
    if isinstance(func, types.MethodType):
        return ("method", _normalize(func.__self__, stack), func.__func__.__name__)
    if _importable(func) and func.__module__ != "__main__":
        return ("function", _qualified(func))
    code = getattr(func, "__code__", None)
    if code is None:  # a builtin that is not importable by name
        owner = getattr(func, "__self__", None)
        if owner is not None and not isinstance(owner, types.ModuleType):
            return ("method", _normalize(owner, stack), func.__name__)  # e.g. "abc".upper
        return ("builtin", _qualified(func), getattr(func, "__name__", type(func).__name__))
    closure = tuple(_cell(c) for c in func.__closure__ or ())
    return (
        "code",
        func.__qualname__,
        _normalize_code(code, stack),
        _normalize(func.__defaults__, stack),
        _normalize(func.__kwdefaults__, stack),
        _normalize(closure, stack),
    )


def _cell(cell: Any) -> object:
    try:
        return cell.cell_contents
    except ValueError:  # a cell not filled yet
        return ("empty-cell",)


def _normalize_code(code: types.CodeType, stack: list[int]) -> object:
    consts = tuple(
        _normalize_code(c, stack) if isinstance(c, types.CodeType) else _normalize(c, stack)
        for c in code.co_consts
    )
    return ("co", code.co_code.hex(), consts, code.co_names, code.co_varnames)


def _normalize_numpy(obj: Any) -> object | None:
    import numpy as np

    if isinstance(obj, np.ndarray):
        if obj.dtype.hasobject:
            return ("ndarray-object", obj.shape, _normalize(obj.tolist(), []))
        data = np.ascontiguousarray(obj)
        digest = hashlib.blake2b(data.tobytes(), digest_size=16).hexdigest()
        return ("ndarray", obj.dtype.str, obj.shape, digest)
    if isinstance(obj, np.generic):
        return ("npscalar", obj.dtype.str, obj.tobytes().hex())
    if isinstance(obj, np.dtype):
        return ("dtype", obj.str)
    return None


def _normalize_by_reduce(obj: Any, typ: type, stack: list[int]) -> object:
    try:
        reduced = obj.__reduce_ex__(4)
    except Exception as err:
        raise TypeError(
            f"cannot tokenize {typ.__name__} object {obj!r}: it does not pickle ({err}); "
            "register a normalizer with hlg.normalize_token.register"
        ) from err
    if isinstance(reduced, str):  # a global singleton named by the reducer
        return ("global", _qualified(typ), reduced)
    parts = [_normalize(part, stack) for part in reduced[1:3]]
    if len(reduced) > 3 and reduced[3] is not None:  # list items (deque, list subclasses)
        parts.append(("items", _normalize(list(reduced[3]), stack)))
    if len(reduced) > 4 and reduced[4] is not None:  # dict items (defaultdict, ...)
        pairs = [(_normalize(k, stack), _normalize(v, stack)) for k, v in reduced[4]]
        parts.append(("dict-items", *_sorted_items(pairs)))  # type: ignore[arg-type]
    return ("object", _qualified(typ), _normalize_callable(reduced[0], stack), *parts)


def _normalize_callable(func: Callable[..., Any], stack: list[int]) -> object:
    if isinstance(func, type):
        return ("type", _qualified(func))
    return _normalize(func, stack)
