"""Random-graph specs shared by the graph and optimize tests: nodes and a plain oracle.

A spec maps each key to ``(tag, deps, kind)``; ``make_node`` builds the hlg node and
``oracle`` evaluates the spec in plain Python, independently of hlg.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from hlg import Alias, DataNode, Layer, Task, TaskRef, key_prefix

MOD = 2**61 - 1

Spec = dict[Any, tuple[int, tuple[Any, ...], str]]


def combine(tag: int, *values: int) -> int:
    """The function of every generated task: order-sensitive, so wiring errors show."""
    acc = tag * 1_000_003
    for i, v in enumerate(values):
        acc += (i + 7) * v
    return acc % MOD


def combine_list(tag: int, *, items: list[int]) -> int:
    return combine(tag, *items)


def make_node(key: Any, entry: tuple[int, tuple[Any, ...], str]) -> Any:
    tag, deps, kind = entry
    if kind == "data":
        return DataNode(key, tag)
    if kind == "alias":
        return Alias(key, deps[0])
    if kind == "nested":
        return Task(key, combine_list, tag, items=[TaskRef(d) for d in deps])
    if kind == "twice":  # reads its one dependency twice
        return Task(key, combine, tag, TaskRef(deps[0]), TaskRef(deps[0]))
    return Task(key, combine, tag, *[TaskRef(d) for d in deps])


def oracle(spec: Spec, keys: list[Any]) -> list[int]:
    memo: dict[Any, int] = {}

    def value(key: Any) -> int:
        if key not in memo:
            tag, deps, kind = spec[key]
            if kind == "data":
                memo[key] = tag
            elif kind == "alias":
                memo[key] = value(deps[0])
            elif kind == "twice":
                memo[key] = combine(tag, value(deps[0]), value(deps[0]))
            else:
                memo[key] = combine(tag, *[value(d) for d in deps])
        return memo[key]

    return [value(k) for k in keys]


def reachable(keys: Iterable[Any], dependencies: Callable[[Any], Iterable[Any]]) -> set[Any]:
    """Every key the given keys need, themselves included, walked key by key."""
    seen: set[Any] = set()
    stack = list(keys)
    while stack:
        key = stack.pop()
        if key not in seen:
            seen.add(key)
            stack.extend(dependencies(key))
    return seen


def closure(spec: Spec, keys: list[Any]) -> set[Any]:
    """Every key the given keys need, themselves included."""
    return reachable(keys, lambda key: spec[key][1])


class SpecLayer(Layer):
    """A lazy layer with only ``__iter__``/``__getitem__``: every other method is a default."""

    kind = "spec"

    def __init__(self, name: str, spec: Spec, annotations: Any = None) -> None:
        super().__init__(name, annotations)
        self.spec = spec
        self.builds: Counter[Any] = Counter()

    def __iter__(self) -> Iterator[Any]:
        return iter(self.spec)

    def __getitem__(self, key: Any) -> Any:
        try:
            entry = self.spec[key]
        except (KeyError, TypeError):
            raise KeyError(key) from None
        self.builds[key] += 1
        return make_node(key, entry)


class SymbolicSpecLayer(SpecLayer):
    """The same, answering len, in, dependencies and prefixes without building tasks."""

    kind = "symbolic-spec"

    def __len__(self) -> int:
        return len(self.spec)

    def __contains__(self, key: object) -> bool:
        try:
            return key in self.spec
        except TypeError:
            return False

    def dependency_tuple(self, key: Any) -> tuple[Any, ...]:
        return self.spec[key][1]

    def dependencies(self, key: Any) -> frozenset[Any]:
        return frozenset(self.spec[key][1])

    @property
    def prefixes(self) -> frozenset[str]:
        return frozenset(key_prefix(k) for k in self.spec)
