"""The task spec: explicit graph nodes (Task, DataNode, Alias) and references (TaskRef).

A node knows its key, what it depends on and how to run; nothing here guesses whether a
string is a key or a tuple is a task. References are found once, at construction, by a
walk over the arguments that only enters builtin containers; execution then resolves
exactly the positions that hold references.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from types import MappingProxyType
from typing import Any, Final, final

from hlg._keys import Key, iskey

__all__ = [
    "Alias",
    "DataNode",
    "GraphNode",
    "MissingDependencyError",
    "Task",
    "TaskRef",
]

_EMPTY: Final[tuple[Key, ...]] = ()
_EMPTY_SET: Final[frozenset[Key]] = frozenset()
_NO_VALUES: Final[Mapping[Key, Any]] = MappingProxyType({})
# Types that can never hold a reference: the construction walk skips them at once.
_ATOMIC: Final = frozenset(
    {str, int, float, bool, type(None), bytes, complex, range, slice, type(Ellipsis)}
)
# Execution plans, chosen once at construction.
_PLAN_CALL: Final = 0  # no references: call the function with the stored arguments
_PLAN_DEEP: Final = -1  # references inside containers, inline tasks or keyword arguments
# A positive plan is the bitmask of the positional arguments that are references.


class MissingDependencyError(KeyError):
    """A task ran without the value of one of its dependencies.

    >>> Task("y", abs, TaskRef("x"))({})
    Traceback (most recent call last):
    ...
    hlg._task.MissingDependencyError: task 'y' needs the value of key 'x', which was not given
    """

    def __init__(self, task_key: object, missing: object) -> None:
        super().__init__(missing)
        self.task_key = task_key
        self.missing = missing

    def __str__(self) -> str:
        return (
            f"task {self.task_key!r} needs the value of key {self.missing!r}, which was not given"
        )

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.task_key, self.missing))


@final
class TaskRef:
    """A reference to the value of another key, placed inside a task's arguments.

    >>> TaskRef(("x", 0))
    TaskRef(('x', 0))
    >>> TaskRef("x") == TaskRef("x"), TaskRef("x") == "x"
    (True, False)
    """

    __slots__ = ("key",)
    key: Key

    def __init__(self, key: Key) -> None:
        typ = type(key)  # the common shapes first: "x" and ("x", 3), then the full check
        if (
            typ is not str
            and not (typ is tuple and len(key) == 2 and type(key[0]) is str and type(key[1]) is int)
            and not iskey(key)
        ):
            raise TypeError(f"TaskRef needs a key (str or (str, int|float|str, ...)); got {key!r}")
        self.key = key

    def __eq__(self, other: object) -> bool:
        return type(other) is TaskRef and self.key == other.key

    def __hash__(self) -> int:
        return hash((TaskRef, self.key))

    def __repr__(self) -> str:
        return f"TaskRef({self.key!r})"

    def __reduce__(self) -> tuple[Any, ...]:
        return (TaskRef, (self.key,))


class GraphNode:
    """Base class of everything that can stand in a graph under a key.

    >>> isinstance(DataNode("x", 1), GraphNode), isinstance(TaskRef("x"), GraphNode)
    (True, False)

    Every node has a ``key``, a ``dependencies`` frozenset, and runs with
    ``node(values)`` where ``values`` maps each dependency to its result.
    """

    __slots__ = ()
    key: Key | None

    @property
    def dependencies(self) -> frozenset[Key]:
        """The keys whose values this node reads."""
        raise NotImplementedError  # pragma: no cover - abstract

    @property
    def dependency_tuple(self) -> tuple[Key, ...]:
        """The dependencies without duplicates, in the order the arguments name them."""
        raise NotImplementedError  # pragma: no cover - abstract

    def __call__(self, values: Mapping[Key, Any], /) -> Any:
        raise NotImplementedError  # pragma: no cover - abstract

    def substitute(self, subs: Mapping[Key, Key], key: Key | None = None) -> GraphNode:
        """Return a copy with dependencies renamed through ``subs`` (and a new ``key``)."""
        raise NotImplementedError  # pragma: no cover - abstract

    def ref(self) -> TaskRef:
        """Return a :class:`TaskRef` to this node's key.

        >>> DataNode("x", 1).ref()
        TaskRef('x')
        """
        if self.key is None:
            raise ValueError("a node without a key cannot be referenced")
        return TaskRef(self.key)


def _scan(obj: object, acc: list[Key]) -> bool:
    """Append the keys referenced inside ``obj`` to ``acc``; say whether there were any."""
    typ = type(obj)
    if typ in _ATOMIC:
        return False
    if typ is TaskRef:
        acc.append(obj.key)  # type: ignore[attr-defined]
        return True
    if typ is list or typ is tuple:
        found = False
        for item in obj:  # type: ignore[attr-defined]
            if type(item) not in _ATOMIC and _scan(item, acc):
                found = True
        return found
    if typ is set or typ is frozenset:  # iteration follows the hash seed: sort what is found
        inside: list[Key] = []
        found = False
        for item in obj:  # type: ignore[attr-defined]
            if type(item) not in _ATOMIC and _scan(item, inside):
                found = True
        inside.sort(key=repr)
        acc.extend(inside)
        return found
    if typ is dict:
        found = False
        for item in obj.values():  # type: ignore[attr-defined]
            if type(item) not in _ATOMIC and _scan(item, acc):
                found = True
        return found
    if isinstance(obj, GraphNode):
        acc.extend(obj.dependency_tuple)
        return True
    if isinstance(obj, tuple):  # namedtuples and other tuple subclasses
        found = False
        for item in obj:
            if _scan(item, acc):
                found = True
        return found
    if isinstance(obj, (dict, list, set, frozenset, deque)):
        _refuse_hidden_refs(obj)
    return False


def _refuse_hidden_refs(obj: Any) -> None:
    """A reference inside a container hlg does not rebuild (``OrderedDict``, a list
    subclass, ``deque``, ...) would reach the function unresolved: refuse it."""
    items = obj.values() if isinstance(obj, dict) else obj
    if any(_scan(item, []) for item in items):
        raise TypeError(
            f"a TaskRef or task inside a {type(obj).__name__} would reach the function "
            "unresolved; use a builtin list, tuple, dict, set or frozenset instead"
        )


def _resolve(obj: Any, values: Mapping[Key, Any]) -> Any:
    """Return ``obj`` with every reference replaced by its value and inline tasks run."""
    typ = type(obj)
    if typ in _ATOMIC:
        return obj
    if typ is TaskRef:
        return values[obj.key]
    if typ is list:
        return [_resolve(item, values) for item in obj]
    if typ is tuple:
        return tuple([_resolve(item, values) for item in obj])
    if typ is dict:
        return {k: _resolve(v, values) for k, v in obj.items()}
    if typ is set or typ is frozenset:
        return typ(_resolve(item, values) for item in obj)
    if isinstance(obj, GraphNode):
        return obj(values)
    if isinstance(obj, tuple):
        return _remake(obj, [_resolve(item, values) for item in obj])
    return obj


def _remake(obj: tuple[Any, ...], items: list[Any]) -> Any:
    """A tuple subclass instance like ``obj`` holding ``items``.

    A namedtuple is rebuilt with ``_make`` (what its own ``_replace`` uses), which never
    goes through a custom ``__new__``; another tuple subclass gets its items as one
    iterable, as ``tuple`` itself does.
    """
    make = getattr(type(obj), "_make", None)
    if make is not None and hasattr(obj, "_fields"):
        return make(items)
    return type(obj)(items)


def _rebuild(obj: Any, leaf: Callable[[Any], Any]) -> Any:
    """Rebuild the builtin containers (and tuple subclasses) in ``obj``, passing every
    other object through ``leaf``; containers keep their type. The one walker behind
    reference renaming and template filling (the hot ``_resolve`` stays specialised)."""
    typ = type(obj)
    if typ in _ATOMIC:
        return obj
    if typ is list:
        return [_rebuild(item, leaf) for item in obj]
    if typ is tuple:
        return tuple([_rebuild(item, leaf) for item in obj])
    if typ is dict:
        return {k: _rebuild(v, leaf) for k, v in obj.items()}
    if typ is set or typ is frozenset:
        return typ(_rebuild(item, leaf) for item in obj)
    if isinstance(obj, tuple):
        return _remake(obj, [_rebuild(item, leaf) for item in obj])
    return leaf(obj)


def _substitute(obj: Any, subs: Mapping[Key, Key]) -> Any:
    """Return ``obj`` with references renamed through ``subs``; containers keep their type."""

    def rename(leaf: Any) -> Any:
        if type(leaf) is TaskRef:
            new = subs.get(leaf.key, leaf.key)
            return leaf if new == leaf.key else TaskRef(new)
        if isinstance(leaf, GraphNode):
            return leaf.substitute(subs)
        return leaf

    return _rebuild(obj, rename)


def _same(a: Any, b: Any) -> bool:
    """Compare two argument structures: same container types, equal items.

    Objects whose ``==`` is not a plain bool (numpy arrays) are equal when ``==`` holds
    everywhere (``all``) and dtype and shape agree, or when they are the same object.
    Strict where ``==`` is loose, so that equal structures have equal tokens: ``0.0``
    and ``-0.0`` differ, and the items of sets and the keys of dicts are matched with
    their own types (``{1}`` is not ``{1.0}``).
    """
    if a is b:
        return True
    ta = type(a)
    if ta is not type(b):
        return False
    if ta is float:
        return bool(a == b) and math.copysign(1.0, a) == math.copysign(1.0, b)
    if ta is list or ta is tuple or isinstance(a, tuple):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    if ta is dict:
        return _same_members(a.keys(), b.keys()) and all(_same(v, b[k]) for k, v in a.items())
    if ta is set or ta is frozenset:
        return _same_members(a, b)
    try:
        eq = a == b
        if type(eq) is bool:
            return eq
        if getattr(a, "dtype", None) != getattr(b, "dtype", None):
            return False
        if getattr(a, "shape", None) != getattr(b, "shape", None):
            return False
        return bool(getattr(eq, "all", lambda: eq)())
    except (TypeError, ValueError):
        return False


def _same_members(a: Any, b: Any) -> bool:
    """Two sets (or dict key views) holding the same members with the same types."""
    if len(a) != len(b):
        return False
    by_value = {item: item for item in b}
    return all(item in by_value and _same(item, by_value[item]) for item in a)


def _unique(keys: list[Key]) -> tuple[Key, ...]:
    if len(keys) == 1:
        return (keys[0],)
    return tuple(dict.fromkeys(keys))


def _funcname(func: object) -> str:
    name = getattr(func, "__name__", None)
    return name if isinstance(name, str) else repr(func)


def check_node(key: Key, node: object, where: str) -> GraphNode:
    """Check that ``node`` is a graph node stored under its own key; return it.

    >>> check_node("x", DataNode("x", 1), "graph")
    DataNode('x', 1)
    >>> check_node("x", DataNode("y", 1), "graph")
    Traceback (most recent call last):
    ...
    ValueError: graph key 'x' holds a node whose key is 'y'
    """
    if not isinstance(node, GraphNode):
        raise TypeError(
            f"{where} value for key {key!r} is of type {type(node).__name__}, not a graph node "
            "(Task, DataNode, Alias); "
            "convert dask-style graphs with hlg.convert_legacy_graph"
        )
    if node.key != key:
        raise ValueError(f"{where} key {key!r} holds a node whose key is {node.key!r}")
    return node


def _check_key(key: object, what: str) -> None:
    if key is not None and type(key) is not str and not iskey(key):
        raise TypeError(
            f"{what} key must be a str, a tuple (str, int|float|str, ...) or None; got {key!r}"
        )


class Task(GraphNode):
    """One explicit unit of work: ``func(*args, **kwargs)`` under ``key``.

    ``TaskRef`` objects anywhere in the arguments (also inside builtin ``list``,
    ``tuple``, ``dict`` values, ``set``, ``frozenset`` and namedtuples) are dependencies;
    nested ``Task`` objects run inline. Nothing else is inspected: a plain string is
    always a literal.

    >>> from operator import add
    >>> t = Task("z", add, TaskRef("x"), 10)
    >>> t.dependencies
    frozenset({'x'})
    >>> t({"x": 1})
    11
    >>> Task("s", sum, [TaskRef("a"), TaskRef("b"), 3])({"a": 1, "b": 2})
    6

    Two tasks are equal when they have the same key, the same function (``==``) and
    equal arguments of the same container types; the hash depends on the key only.
    Equal tasks have equal :func:`hlg.tokenize` tokens.

    ``Task`` cannot be subclassed (see docs/design.md, "Task is final"): put behaviour
    in the function, e.g. a callable object.

    >>> class Mine(Task):
    ...     pass
    Traceback (most recent call last):
    ...
    TypeError: Task cannot be subclassed (Mine): rebuilt copies (...) are plain Tasks; ...
    """

    # Storage, chosen once at construction (see docs/design.md, "Task layout"):
    # ``_plan == 0``: no references; ``_args`` are the arguments, ``_deps`` is empty.
    # ``_plan > 0``: references only as bare positional arguments; ``_plan`` is the
    #   bitmask of their positions, ``_args`` holds their plain keys there (no TaskRef
    #   objects are kept) and ``_deps`` is None (the keys are read off ``_args``).
    # ``_plan == -1``: references inside containers, inline tasks or keyword
    #   arguments; ``_args`` is as given and ``_deps`` holds the keys found.
    __slots__ = ("_args", "_deps", "_plan", "func", "key", "kwargs")
    key: Key | None
    func: Callable[..., Any]
    kwargs: dict[str, Any] | None
    _args: tuple[Any, ...]
    _deps: tuple[Key, ...] | None
    _plan: int

    def __init_subclass__(cls, **kwargs: Any) -> None:
        raise TypeError(
            f"Task cannot be subclassed ({cls.__name__}): rebuilt copies (substitute, "
            "pickling, fusion) are plain Tasks; put the behaviour in the task's function instead"
        )

    def __init__(self, key: Key | None, func: Callable[..., Any], /, *args: Any, **kwargs: Any):
        typ = type(key)
        if (
            typ is not str
            and key is not None
            and not (typ is tuple and len(key) == 2 and type(key[0]) is str and type(key[1]) is int)
            and not iskey(key)
        ):
            _check_key(key, "Task")
        if not callable(func):
            raise TypeError(f"Task {key!r}: func must be callable; got {func!r}")
        self.key = key
        self.func = func
        self.kwargs = kwargs or None
        found: list[Key] = []  # every referenced key, in argument order: one walk
        stored: list[Any] | None = None  # the arguments with references as plain keys
        plan = 0
        deep = False
        for position, arg in enumerate(args):
            typ = type(arg)
            if typ is TaskRef:
                if stored is None:
                    stored = list(args)
                stored[position] = arg.key
                plan |= 1 << position
                found.append(arg.key)
            elif typ not in _ATOMIC and _scan(arg, found):
                deep = True
        if kwargs:
            for value in kwargs.values():
                if type(value) not in _ATOMIC and _scan(value, found):
                    deep = True
        if deep:
            self._args = args
            self._deps = _unique(found)
            self._plan = _PLAN_DEEP
        elif stored is not None:
            self._args = tuple(stored)
            # up to two references: read off the arguments when asked; more: stored once
            self._deps = None if len(found) <= 2 else _unique(found)
            self._plan = plan
        else:
            self._args = args
            self._deps = _EMPTY
            self._plan = _PLAN_CALL

    @property
    def args(self) -> tuple[Any, ...]:
        """The positional arguments, with their ``TaskRef``s."""
        plan = self._plan
        if plan <= 0:
            return self._args
        return tuple([TaskRef(a) if plan >> i & 1 else a for i, a in enumerate(self._args)])

    @property
    def dependencies(self) -> frozenset[Key]:
        """The keys this task reads, as a frozenset (found once, at construction)."""
        deps = self.dependency_tuple
        return frozenset(deps) if deps else _EMPTY_SET

    @property
    def dependency_tuple(self) -> tuple[Key, ...]:
        """The dependencies without duplicates, in the order the arguments name them."""
        deps = self._deps
        if deps is not None:
            return deps
        plan = self._plan  # one or two references, at the positions of plan's bits
        args = self._args
        if plan == 1:
            return (args[0],)
        low = plan & -plan
        first = args[low.bit_length() - 1]
        high = plan ^ low
        if not high:
            return (first,)
        second = args[high.bit_length() - 1]
        return (first,) if first == second else (first, second)

    def __call__(self, values: Mapping[Key, Any] = _NO_VALUES, /) -> Any:
        """Run the task; ``values`` maps each dependency to its result (default: none).

        >>> Task("x", sum, [1, 2])()
        3
        """
        args: Any = self._args
        kwargs = self.kwargs
        plan = self._plan
        if plan:
            try:
                if plan == 1:
                    args = (values[args[0]], *args[1:])
                elif plan > 0:
                    args = [values[a] if plan >> i & 1 else a for i, a in enumerate(args)]
                else:
                    args = [_resolve(a, values) for a in args]
                    if kwargs:
                        kwargs = {k: _resolve(v, values) for k, v in kwargs.items()}
            except KeyError as err:
                self._raise_missing(values, err)
        if kwargs:
            return self.func(*args, **kwargs)
        return self.func(*args)

    def _raise_missing(self, values: Mapping[Key, Any], err: KeyError) -> None:
        for dep in self.dependency_tuple:
            if dep not in values:
                raise MissingDependencyError(self.key, dep) from None
        raise err  # a KeyError from an inline task's own function

    def __eq__(self, other: object) -> bool:
        if type(other) is not Task:
            return NotImplemented
        return (
            self.key == other.key
            and self._plan == other._plan
            and (self.func is other.func or self.func == other.func)
            and _same(self._args, other._args)
            and _same(self.kwargs, other.kwargs)
        )

    def __hash__(self) -> int:
        return hash((Task, self.key))

    def __hlg_tokenize__(self) -> object:
        """What a token of this task is made of: what equality compares, nothing cached
        (the dependency tuple, in argument order, is left out: equal tasks may name
        their keys in another order, e.g. in dicts).

        >>> from hlg import tokenize
        >>> a = Task("s", sorted, {"p": TaskRef("b"), "q": TaskRef("c")})
        >>> b = Task("s", sorted, {"q": TaskRef("c"), "p": TaskRef("b")})
        >>> a == b, tokenize(a) == tokenize(b)
        (True, True)
        """
        return ("Task", self.key, self.func, self.args, self.kwargs)

    def __repr__(self) -> str:
        parts = [repr(self.key), _funcname(self.func)]
        parts.extend(repr(a) for a in self.args)
        if self.kwargs:
            parts.extend(f"{k}={v!r}" for k, v in self.kwargs.items())
        return f"{type(self).__name__}({', '.join(parts)})"

    def __reduce__(self) -> tuple[Any, ...]:
        state = (self.key, self.func, self._args, self.kwargs, self._deps, self._plan)
        return (_rebuild_task, state)

    def substitute(self, subs: Mapping[Key, Key], key: Key | None = None) -> Task:
        """Return a copy with dependencies renamed through ``subs`` (and a new ``key``).

        >>> Task("y", abs, TaskRef("x")).substitute({"x": "w"}, key="v")
        Task('v', abs, TaskRef('w'))
        """
        new_key = self.key if key is None else key
        if not any(dep in subs for dep in self.dependency_tuple):
            if new_key == self.key:
                return self
            return _rebuild_task(
                new_key, self.func, self._args, self.kwargs, self._deps, self._plan
            )
        args = [_substitute(a, subs) for a in self.args]
        kwargs = {k: _substitute(v, subs) for k, v in (self.kwargs or {}).items()}
        return Task(new_key, self.func, *args, **kwargs)

    @staticmethod
    def fuse(*tasks: GraphNode, key: Key | None = None, output: Key | None = None) -> Task:
        """Fuse tasks with one output into a single task that runs each inner task once.

        The inner tasks may form a chain or any small DAG; one of them is the output:
        ``output`` names it, by default the one task nothing else in ``tasks`` reads.
        ``key`` is the fused task's key (as in dask), by default the output's key. The
        fused task depends on the keys the inner tasks read from outside, and drops each
        inner result as soon as the last inner task reading it has run.

        >>> from operator import add, mul
        >>> a = Task("a", add, TaskRef("x"), 1)
        >>> b = Task("b", mul, TaskRef("a"), 2)
        >>> c = Task("c", add, TaskRef("a"), TaskRef("b"))
        >>> f = Task.fuse(a, b, c)
        >>> f.key, f.dependencies, f({"x": 1})
        ('c', frozenset({'x'}), 6)
        >>> g = Task.fuse(a, b, c, key="fused", output="b")
        >>> g.key, g({"x": 1})
        ('fused', 4)
        """
        return _fuse(tasks, key, output)


def _flat_task(
    key: Key | None,
    func: Callable[..., Any],
    args: tuple[Any, ...],
    kwargs: dict[str, Any] | None,
    plan: int,
) -> Task:
    """A task whose references are the plain keys at the positions of ``plan``'s bits."""
    if plan.bit_count() <= 2:  # up to two references: read off the arguments
        return _rebuild_task(key, func, args, kwargs, None if plan else _EMPTY, plan)
    keys = [a for i, a in enumerate(args) if plan >> i & 1]
    return _rebuild_task(key, func, args, kwargs, _unique(keys), plan)


def _rebuild_task(
    key: Key | None,
    func: Callable[..., Any],
    args: tuple[Any, ...],
    kwargs: dict[str, Any] | None,
    deps: tuple[Key, ...] | None,
    plan: int,
) -> Task:
    """Recreate a task from its stored parts without walking the arguments again."""
    task = Task.__new__(Task)
    task.key = key
    task.func = func
    task._args = args
    task.kwargs = kwargs
    task._deps = deps
    task._plan = plan
    return task


@final
class DataNode(GraphNode):
    """A literal value in a graph; the value is never traversed.

    >>> node = DataNode("x", [1, 2, 3])
    >>> node({}), node.dependencies
    ([1, 2, 3], frozenset())
    """

    __slots__ = ("key", "value")
    key: Key | None
    value: Any

    def __init__(self, key: Key | None, value: Any) -> None:
        if type(key) is not str and not (
            isinstance(key, tuple) and len(key) == 2 and type(key[0]) is str and type(key[1]) is int
        ):
            _check_key(key, "DataNode")
        self.key = key
        self.value = value

    @property
    def dependencies(self) -> frozenset[Key]:
        """Always empty: a literal reads nothing."""
        return _EMPTY_SET

    @property
    def dependency_tuple(self) -> tuple[Key, ...]:
        """Always empty: a literal reads nothing."""
        return _EMPTY

    def __call__(self, values: Mapping[Key, Any] = _NO_VALUES, /) -> Any:
        """Return the value."""
        return self.value

    def __eq__(self, other: object) -> bool:
        if type(other) is not DataNode:
            return NotImplemented
        return self.key == other.key and _same(self.value, other.value)

    def __hash__(self) -> int:
        return hash((DataNode, self.key))

    def __repr__(self) -> str:
        return f"DataNode({self.key!r}, {self.value!r})"

    def __reduce__(self) -> tuple[Any, ...]:
        return (DataNode, (self.key, self.value))

    def substitute(self, subs: Mapping[Key, Key], key: Key | None = None) -> DataNode:
        """Return a copy under ``key`` (a literal has no dependencies to rename)."""
        return self if key is None or key == self.key else DataNode(key, self.value)


@final
class Alias(GraphNode):
    """A key whose value is the value of another key.

    >>> Alias("y", "x")({"x": 5})
    5
    """

    __slots__ = ("key", "target")
    key: Key | None
    target: Key

    def __init__(self, key: Key | None, target: Key) -> None:
        if type(key) is not str:
            _check_key(key, "Alias")
        if not iskey(target):
            raise TypeError(f"Alias {key!r}: target must be a key; got {target!r}")
        if key == target:
            raise ValueError(f"Alias {key!r} points to itself")
        self.key = key
        self.target = target

    @property
    def dependencies(self) -> frozenset[Key]:
        """The target key."""
        return frozenset((self.target,))

    @property
    def dependency_tuple(self) -> tuple[Key, ...]:
        """The target key."""
        return (self.target,)

    def __call__(self, values: Mapping[Key, Any] = _NO_VALUES, /) -> Any:
        """Return the target's value."""
        try:
            return values[self.target]
        except KeyError:
            raise MissingDependencyError(self.key, self.target) from None

    def __eq__(self, other: object) -> bool:
        if type(other) is not Alias:
            return NotImplemented
        return self.key == other.key and self.target == other.target

    def __hash__(self) -> int:
        return hash((Alias, self.key, self.target))

    def __repr__(self) -> str:
        return f"Alias({self.key!r}, {self.target!r})"

    def __reduce__(self) -> tuple[Any, ...]:
        return (Alias, (self.key, self.target))

    def substitute(self, subs: Mapping[Key, Key], key: Key | None = None) -> Alias:
        """Return a copy with the target renamed through ``subs`` (and a new ``key``)."""
        new_key = self.key if key is None else key
        return Alias(new_key, subs.get(self.target, self.target))


@final
class FusedCall:
    """The function of a fused task: runs inner nodes in order, returns the output's value.

    ``inputs`` (the task's one argument) maps each outside key to its value.
    """

    __slots__ = ("_drops", "nodes", "output")
    nodes: tuple[GraphNode, ...]
    output: Key
    _drops: tuple[tuple[Key, ...], ...]  # after node i ran: the inner results to let go

    def __init__(self, nodes: Iterable[GraphNode], output: Key) -> None:
        self.nodes = tuple(nodes)
        self.output = output
        last: dict[Key, int] = {}  # inner key -> position of its last reader (or itself)
        for position, node in enumerate(self.nodes):
            for dep in node.dependency_tuple:
                if dep in last:
                    last[dep] = position
            last[node.key] = position  # type: ignore[index]
        drops: list[list[Key]] = [[] for _ in self.nodes]
        for inner, position in last.items():
            if inner != output:
                drops[position].append(inner)
        self._drops = tuple(tuple(d) for d in drops)

    @property
    def __name__(self) -> str:  # shown in Task reprs
        return "fused[" + ", ".join(_funcname(getattr(n, "func", n)) for n in self.nodes) + "]"

    def __call__(self, inputs: dict[Key, Any]) -> Any:
        values = dict(inputs)
        for node, drops in zip(self.nodes, self._drops, strict=True):
            values[node.key] = node(values)  # type: ignore[index]
            for inner in drops:  # its last reader has run: hold it no longer
                del values[inner]
        return values[self.output]

    def __eq__(self, other: object) -> bool:
        if type(other) is not FusedCall:
            return NotImplemented
        return self.output == other.output and self.nodes == other.nodes

    def __hash__(self) -> int:
        return hash((FusedCall, self.output))

    def __repr__(self) -> str:
        return f"FusedCall({list(self.nodes)!r}, {self.output!r})"

    def __reduce__(self) -> tuple[Any, ...]:
        return (FusedCall, (self.nodes, self.output))


def _fuse(tasks: tuple[GraphNode, ...], key: Key | None, output: Key | None) -> Task:
    if not tasks:
        raise ValueError("Task.fuse needs at least one task")
    by_key: dict[Key, GraphNode] = {}
    for task in tasks:
        if not isinstance(task, GraphNode) or task.key is None:
            raise TypeError(f"Task.fuse takes graph nodes with keys; got {task!r}")
        if task.key in by_key:
            raise ValueError(f"Task.fuse got key {task.key!r} twice")
        by_key[task.key] = task
    _check_key(key, "Task.fuse")
    read_inside = {dep for t in tasks for dep in t.dependency_tuple if dep in by_key}
    if output is None:
        outputs = [k for k in by_key if k not in read_inside]
        if len(outputs) != 1:
            raise ValueError(
                f"Task.fuse needs exactly one output (a task no other fused task reads); "
                f"found {outputs!r}; pass output= to choose"
            )
        output = outputs[0]
    elif output not in by_key:
        raise ValueError(f"Task.fuse: output {output!r} is not the key of one of the tasks")
    if key is None:
        key = output
    if len(tasks) == 1 and isinstance(tasks[0], Task):
        return tasks[0] if key == output else tasks[0].substitute({}, key=key)
    from hlg._get import postorder  # the one depth-first walk (hlg._get imports this module)

    # Inner nodes in topological order, walking arguments in order: never hash order.
    keys = postorder(by_key, lambda k: [d for d in by_key[k].dependency_tuple if d in by_key])
    order = [by_key[k] for k in keys]
    outside = dict.fromkeys(dep for n in order for dep in n.dependency_tuple if dep not in by_key)
    return Task(key, FusedCall(order, output), {dep: TaskRef(dep) for dep in outside})
