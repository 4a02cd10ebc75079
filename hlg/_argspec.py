"""Argspec templates: one task of a family with numbered holes, filled per output key.

An :class:`ArgSpec` is compiled once: it records which top-level positions are holes and
which arguments contain holes deeper down. ``fill`` then builds a ``Task`` from the fills
alone — the constant arguments are never walked again, and the dependencies are the
references in the fills.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, Final, final

from hlg._keys import Key
from hlg._task import (
    _ATOMIC,
    Task,
    TaskRef,
    _flat_task,
    _funcname,
    _rebuild,
    _rebuild_task,
    _same,
    _scan,
    _unique,
)

__all__ = ["ArgSpec", "Placeholder"]


@final
class Placeholder:
    """Hole number ``index`` in an :class:`ArgSpec`.

    >>> Placeholder(0)
    Placeholder(0)
    """

    __slots__ = ("index",)
    index: int

    def __init__(self, index: int) -> None:
        if type(index) is not int or index < 0:
            raise TypeError(f"Placeholder index must be an int >= 0; got {index!r}")
        self.index = index

    def __eq__(self, other: object) -> bool:
        return type(other) is Placeholder and other.index == self.index

    def __hash__(self) -> int:
        return hash((Placeholder, self.index))

    def __repr__(self) -> str:
        return f"Placeholder({self.index})"

    def __reduce__(self) -> tuple[Any, ...]:
        return (Placeholder, (self.index,))


def _holes(obj: object, out: list[int]) -> bool:
    """Append the placeholder indices found in ``obj``; say whether there were any."""
    typ = type(obj)
    if typ in _ATOMIC:
        return False
    if typ is Placeholder:
        out.append(obj.index)  # type: ignore[attr-defined]
        return True
    if typ is list or typ is tuple or typ is set or typ is frozenset:
        found = False
        for item in obj:  # type: ignore[attr-defined]
            found = _holes(item, out) or found
        return found
    if typ is dict:
        found = False
        for item in obj.values():  # type: ignore[attr-defined]
            found = _holes(item, out) or found
        return found
    if typ is ArgSpec:  # a nested call must run even when it has no holes
        for item in (*obj.args, *obj.kwargs.values()):  # type: ignore[attr-defined]
            _holes(item, out)
        return True
    if isinstance(obj, tuple):
        found = False
        for item in obj:
            found = _holes(item, out) or found
        return found
    return False


def _put(obj: Any, fills: Sequence[Any]) -> Any:
    """Rebuild ``obj`` with every placeholder replaced by its fill; calls become Tasks."""

    def fill(leaf: Any) -> Any:
        if type(leaf) is Placeholder:
            return fills[leaf.index]
        if type(leaf) is ArgSpec:
            return leaf.fill(None, fills)
        return leaf

    return _rebuild(obj, fill)


def _template_refs(obj: Any, out: list[Key]) -> None:
    """Append the keys of the TaskRefs inside a template, nested calls included."""
    typ = type(obj)
    if typ in _ATOMIC or typ is Placeholder:
        return
    if typ is ArgSpec:
        for item in (*obj.args, *obj.kwargs.values()):
            _template_refs(item, out)
    elif typ is dict:
        for item in obj.values():
            _template_refs(item, out)
    elif typ is list or typ is set or typ is frozenset or isinstance(obj, tuple):
        for item in obj:
            _template_refs(item, out)
    else:
        _scan(obj, out)


def _renumber(obj: Any, mapping: Mapping[int, Any]) -> Any:
    """Replace placeholders through ``mapping`` (index -> Placeholder or template)."""

    def renumber(leaf: Any) -> Any:
        if type(leaf) is Placeholder:
            return mapping.get(leaf.index, leaf)
        if type(leaf) is ArgSpec:
            return ArgSpec(
                leaf.func,
                *[_renumber(a, mapping) for a in leaf.args],
                **{k: _renumber(v, mapping) for k, v in leaf.kwargs.items()},
            )
        return leaf

    return _rebuild(obj, renumber)


_FLAT: Final = 0  # every hole is a bare top-level positional argument, nothing else
_GENERAL: Final = 1


@final
class ArgSpec:
    """A task template: ``func(*args, **kwargs)`` with :class:`Placeholder` holes.

    Holes may stand anywhere a ``TaskRef`` could: as arguments, inside lists, tuples,
    dict values and sets, and inside nested calls (an ``ArgSpec`` used as an argument is
    a call that runs inline). ``fill(key, fills)`` puts ``fills[i]`` where
    ``Placeholder(i)`` stands; a fill is a ``TaskRef``, a (nested) list of ``TaskRef``s,
    or a literal value.

    >>> from operator import add
    >>> spec = ArgSpec(add, Placeholder(0), Placeholder(1))
    >>> task = spec.fill(("z", 0), [TaskRef(("x", 0)), 10])
    >>> task
    Task(('z', 0), add, TaskRef(('x', 0)), 10)
    >>> task({("x", 0): 1})
    11
    """

    __slots__ = ("_mode", "_nholes", "_positions", "args", "func", "kwargs")
    func: Callable[..., Any]
    args: tuple[Any, ...]
    kwargs: dict[str, Any]
    _nholes: int
    _mode: int
    _positions: tuple[tuple[int, int], ...]  # (argument position, hole index), flat mode

    def __init__(self, func: Callable[..., Any], /, *args: Any, **kwargs: Any) -> None:
        if not callable(func):
            raise TypeError(f"ArgSpec func must be callable; got {func!r}")
        self.func = func
        self.args = args
        self.kwargs = kwargs
        holes: list[int] = []
        positions: list[tuple[int, int]] = []
        mode = _FLAT
        for position, arg in enumerate(args):
            if type(arg) is Placeholder:
                holes.append(arg.index)
                positions.append((position, arg.index))
            elif type(arg) not in _ATOMIC:
                if _holes(arg, holes):
                    mode = _GENERAL
                if _scan(arg, []):
                    mode = _GENERAL  # constant references or inline tasks
        for value in kwargs.values():
            if type(value) not in _ATOMIC and (_holes(value, holes) or _scan(value, [])):
                mode = _GENERAL
        self._nholes = max(holes) + 1 if holes else 0
        self._mode = mode
        self._positions = tuple(positions)

    @property
    def nholes(self) -> int:
        """One more than the highest placeholder index (the length ``fills`` needs)."""
        return self._nholes

    def fill(self, key: Key | None, fills: Sequence[Any]) -> Task:
        """Build the task for ``key``: ``fills[i]`` goes where ``Placeholder(i)`` stands.

        >>> spec = ArgSpec(sum, [Placeholder(0), Placeholder(1)])
        >>> spec.fill("s", [TaskRef("a"), 5])({"a": 1})
        6
        """
        if len(fills) < self._nholes:
            raise ValueError(
                f"ArgSpec({_funcname(self.func)}) has {self._nholes} holes; got {len(fills)} fills"
            )
        if self._mode == _FLAT:
            args = list(self.args)
            plan = 0
            for position, index in self._positions:
                value = fills[index]
                typ = type(value)
                if typ is TaskRef:
                    args[position] = value.key
                    plan |= 1 << position
                elif typ in _ATOMIC or not _scan(value, []):
                    args[position] = value
                else:  # a list of references: resolve it generally
                    return self._fill_general(key, fills)
            return _flat_task(key, self.func, tuple(args), self.kwargs or None, plan)
        return self._fill_general(key, fills)

    def fill_keys(self, key: Key | None, fills: Sequence[Any], ref_holes: int) -> Task:
        """Like :meth:`fill`, with references given as plain keys: the fast path.

        Hole ``i`` is a reference to the key ``fills[i]`` when bit ``i`` of ``ref_holes``
        is set; every other fill is data and is not searched for references.

        >>> from operator import add
        >>> ArgSpec(add, Placeholder(0), Placeholder(1)).fill_keys("z", [("x", 0), 5], 0b01)
        Task('z', add, TaskRef(('x', 0)), 5)
        """
        return self.keys_filler(ref_holes)(key, fills)

    def keys_filler(self, ref_holes: int) -> Callable[[Key | None, Sequence[Any]], Task]:
        """Return ``fill(key, fills)`` specialised for :meth:`fill_keys` with ``ref_holes``.

        Layers that build many tasks from one template call this once and the returned
        function per task: the plan is worked out here, not per task.

        >>> filler = ArgSpec(pow, Placeholder(0), 2).keys_filler(0b1)
        >>> filler(("y", 1), [("x", 1)])({("x", 1): 3})
        9
        """
        if self._mode != _FLAT:

            def general(key: Key | None, fills: Sequence[Any]) -> Task:
                refs = [TaskRef(f) if ref_holes >> i & 1 else f for i, f in enumerate(fills)]
                return self._fill_general(key, refs)

            return general
        base = self.args
        func = self.func
        kwargs = self.kwargs or None
        positions = self._positions
        plan = 0
        for position, index in positions:
            if ref_holes >> index & 1:
                plan |= 1 << position
        nholes = self._nholes
        if plan.bit_count() > 2:  # three or more references: each task stores its keys
            return lambda key, fills: _flat_task(
                key, func, _place(base, positions, fills, nholes), kwargs, plan
            )
        deps = None if plan else ()

        if positions == tuple((i, i) for i in range(len(base))):  # every argument a hole

            def direct(key: Key | None, fills: Sequence[Any]) -> Task:
                if len(fills) < nholes:
                    raise ValueError(f"this template has {nholes} holes; got {len(fills)} fills")
                return _rebuild_task(key, func, tuple(fills), kwargs, deps, plan)

            return direct

        def flat(key: Key | None, fills: Sequence[Any]) -> Task:
            if len(fills) < nholes:
                raise ValueError(f"this template has {nholes} holes; got {len(fills)} fills")
            args = list(base)  # the hot path: inlined rather than calling _place
            for position, index in positions:
                args[position] = fills[index]
            return _rebuild_task(key, func, tuple(args), kwargs, deps, plan)

        return flat

    def _fill_general(self, key: Key | None, fills: Sequence[Any]) -> Task:
        # Through the Task constructor: the same storage (and so equality and token) as
        # the identical hand-built task, whatever mix of constants and fills it holds.
        args = [_put(a, fills) for a in self.args]
        kwargs = {k: _put(v, fills) for k, v in self.kwargs.items()}
        return Task(key, self.func, *args, **kwargs)

    def constant_dependencies(self) -> tuple[Key, ...]:
        """The keys the template itself references (``TaskRef``s among its constants).

        >>> ArgSpec(max, Placeholder(0), TaskRef("c")).constant_dependencies()
        ('c',)
        """
        found: list[Key] = []
        _template_refs(self, found)
        return _unique(found) if found else ()

    def compose(
        self, index: int, inner: ArgSpec, mapping: Mapping[int, int] | None = None
    ) -> ArgSpec:
        """Return a template where ``Placeholder(index)`` is replaced by a call of ``inner``.

        The result has exactly the holes it uses: this template's holes after ``index``
        move down by one, and ``inner``'s hole ``i`` becomes hole ``mapping[i]`` of the
        result (default: appended after this template's remaining holes, in order; a
        mapping may also point at one of them, to share a fill).

        >>> from operator import add, mul
        >>> outer = ArgSpec(add, Placeholder(0), Placeholder(1))
        >>> inner = ArgSpec(mul, Placeholder(0), 2)
        >>> fused = outer.compose(0, inner)
        >>> fused
        ArgSpec(add, ArgSpec(mul, Placeholder(1), 2), Placeholder(0))
        >>> fused.nholes, fused.fill("k", [1, TaskRef("x")])({"x": 5})
        (2, 11)
        """
        if type(index) is not int or not 0 <= index < self._nholes:
            raise ValueError(
                f"ArgSpec.compose: hole {index!r} is not a hole of this template "
                f"(it has {self._nholes})"
            )
        remaining = self._nholes - 1
        if mapping is None:
            mapping = {i: remaining + i for i in range(inner._nholes)}
        missing = [i for i in range(inner._nholes) if i not in mapping]
        if missing:
            raise ValueError(f"ArgSpec.compose: mapping does not place inner holes {missing}")
        renumbered = inner.renumber({i: Placeholder(j) for i, j in mapping.items()})
        shifted: dict[int, Any] = {i: Placeholder(i - 1) for i in range(index + 1, self._nholes)}
        shifted[index] = renumbered
        return self.renumber(shifted)

    def renumber(self, mapping: Mapping[int, Any]) -> ArgSpec:
        """Return a copy with placeholders replaced through ``mapping`` (index -> object).

        >>> ArgSpec(max, Placeholder(0), Placeholder(1)).renumber({0: Placeholder(1), 1: 7})
        ArgSpec(max, Placeholder(1), 7)
        """
        return _renumber(self, mapping)  # type: ignore[no-any-return]

    def __eq__(self, other: object) -> bool:
        if type(other) is not ArgSpec:
            return NotImplemented
        return (
            (self.func is other.func or self.func == other.func)
            and _same(self.args, other.args)
            and _same(self.kwargs, other.kwargs)
        )

    def __hash__(self) -> int:
        return hash((ArgSpec, _funcname(self.func), len(self.args)))

    def __repr__(self) -> str:
        parts = [_funcname(self.func), *map(repr, self.args)]
        parts.extend(f"{k}={v!r}" for k, v in self.kwargs.items())
        return f"ArgSpec({', '.join(parts)})"

    def __reduce__(self) -> tuple[Any, ...]:
        return (_rebuild_argspec, (self.func, self.args, self.kwargs))


def _place(
    base: tuple[Any, ...],
    positions: tuple[tuple[int, int], ...],
    fills: Sequence[Any],
    nholes: int,
) -> tuple[Any, ...]:
    """The template's arguments with ``fills`` at the holes' positions."""
    if len(fills) < nholes:
        raise ValueError(f"this template has {nholes} holes; got {len(fills)} fills")
    args = list(base)
    for position, index in positions:
        args[position] = fills[index]
    return tuple(args)


def _rebuild_argspec(
    func: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]
) -> ArgSpec:
    return ArgSpec(func, *args, **kwargs)
