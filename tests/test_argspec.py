"""Tests for hlg._argspec: templates with holes, filling and composition."""

from __future__ import annotations

import pickle
from operator import add, mul, neg
from typing import Any

import cloudpickle
import pytest
from hypothesis import given
from hypothesis import strategies as st

from hlg import ArgSpec, Placeholder, Task, TaskRef, tokenize


def identity(x: Any) -> Any:
    return x


def kw(a: Any, *, b: Any = None) -> tuple[Any, Any]:
    return (a, b)


def test_flat_fill_builds_the_same_task_as_the_constructor() -> None:
    spec = ArgSpec(add, Placeholder(0), Placeholder(1))
    task = spec.fill(("z", 0), [TaskRef(("x", 0)), TaskRef(("y", 1))])
    assert task == Task(("z", 0), add, TaskRef(("x", 0)), TaskRef(("y", 1)))
    assert task.dependency_tuple == (("x", 0), ("y", 1))
    assert task({("x", 0): 1, ("y", 1): 2}) == 3


def test_literal_fills_and_constants() -> None:
    spec = ArgSpec(kw, Placeholder(0), b="const")
    task = spec.fill("t", [5])
    assert task.dependencies == frozenset()
    assert task({}) == (5, "const")
    assert task == Task("t", kw, 5, b="const")


def test_list_fills_are_references() -> None:
    spec = ArgSpec(sum, Placeholder(0))
    task = spec.fill("s", [[TaskRef("a"), TaskRef("b"), 1]])
    assert task.dependency_tuple == ("a", "b")
    assert task({"a": 1, "b": 2}) == 4
    nested = ArgSpec(identity, Placeholder(0)).fill("n", [[[TaskRef("a")], [TaskRef("b")]]])
    assert nested({"a": 1, "b": 2}) == [[1], [2]]


def test_holes_inside_containers_and_kwargs() -> None:
    spec = ArgSpec(kw, {"k": [Placeholder(1), 3]}, b=(Placeholder(0),))
    task = spec.fill("t", [TaskRef("x"), TaskRef("y")])
    assert task.dependency_tuple == ("y", "x")
    assert task({"x": 1, "y": 2}) == ({"k": [2, 3]}, (1,))
    assert spec.nholes == 2


def test_constant_references_in_the_template() -> None:
    spec = ArgSpec(add, Placeholder(0), TaskRef("c"))
    task = spec.fill("t", [TaskRef("x")])
    assert task.dependency_tuple == ("x", "c")
    assert task({"x": 1, "c": 10}) == 11


def test_too_few_fills() -> None:
    with pytest.raises(ValueError, match=r"ArgSpec\(add\) has 2 holes; got 1 fills"):
        ArgSpec(add, Placeholder(0), Placeholder(1)).fill("t", [1])


def test_bad_placeholder_and_func() -> None:
    with pytest.raises(TypeError, match="Placeholder index"):
        Placeholder(-1)
    with pytest.raises(TypeError, match="must be callable"):
        ArgSpec(3)  # type: ignore[arg-type]


def test_compose_is_one_template() -> None:
    outer = ArgSpec(add, Placeholder(0), Placeholder(1))
    inner = ArgSpec(mul, Placeholder(0), Placeholder(1))
    fused = outer.compose(1, inner, {0: 1, 1: 2})
    assert fused == ArgSpec(add, Placeholder(0), ArgSpec(mul, Placeholder(1), Placeholder(2)))
    assert fused.nholes == 3
    task = fused.fill("t", [TaskRef("a"), TaskRef("b"), 10])
    assert task.dependency_tuple == ("a", "b")
    assert task({"a": 1, "b": 2}) == 21
    twice = fused.compose(0, ArgSpec(neg, Placeholder(0)))
    assert twice.nholes == 3  # hole 0 was used up: the others moved down
    assert twice.fill("u", [2, 3, TaskRef("z")])({"z": 4}) == 2


def test_equality_and_pickle() -> None:
    spec = ArgSpec(add, Placeholder(0), ArgSpec(neg, Placeholder(1)), 2)
    assert spec == ArgSpec(add, Placeholder(0), ArgSpec(neg, Placeholder(1)), 2)
    assert spec != ArgSpec(add, Placeholder(1), ArgSpec(neg, Placeholder(0)), 2)
    for dumps in (pickle.dumps, cloudpickle.dumps):
        back = pickle.loads(dumps(spec))
        assert back == spec and hash(back) == hash(spec)
        assert back.fill("k", [1, 2]) == spec.fill("k", [1, 2])
    assert pickle.loads(pickle.dumps(Placeholder(3))) == Placeholder(3)


fills = st.one_of(
    st.integers(-3, 3),
    st.sampled_from(["a", "b", "c"]).map(TaskRef),
    st.lists(st.sampled_from(["a", "b", "c"]).map(TaskRef), max_size=3),
)
VALUES = {"a": 1, "b": 10, "c": 100}


def resolve(x: Any) -> Any:
    if isinstance(x, TaskRef):
        return VALUES[x.key]
    if isinstance(x, list):
        return [resolve(v) for v in x]
    return x


def both(x: Any, y: Any) -> tuple[Any, Any]:
    return (x, y)


@given(fills, fills, fills)
def test_fill_equals_direct_construction(f0: Any, f1: Any, f2: Any) -> None:
    """Filling a template gives the task written out by hand, with the same result."""
    spec = ArgSpec(both, Placeholder(0), [Placeholder(1), Placeholder(2)])
    task = spec.fill("k", [f0, f1, f2])
    direct = Task("k", both, f0, [f1, f2])
    assert task.dependencies == direct.dependencies
    assert task(VALUES) == direct(VALUES) == (resolve(f0), [resolve(f1), resolve(f2)])
    flat = ArgSpec(both, Placeholder(1), Placeholder(0)).fill("f", [f0, f1])
    assert flat == Task("f", both, f1, f0)
    assert flat(VALUES) == (resolve(f1), resolve(f0))


@given(fills, fills, fills)
def test_composition_equals_nested_tasks(f0: Any, f1: Any, f2: Any) -> None:
    """A composed template computes what the two templates compute one after the other."""
    outer = ArgSpec(both, Placeholder(0), Placeholder(1))
    inner = ArgSpec(both, Placeholder(0), Placeholder(1))
    fused = outer.compose(1, inner, {0: 1, 1: 2})
    inner_value = inner.fill("i", [f1, f2])(VALUES)
    expected = outer.fill("o", [f0, TaskRef("i")])({**VALUES, "i": inner_value})
    assert fused.fill("o", [f0, f1, f2])(VALUES) == expected


def test_compose_leaves_no_dead_hole() -> None:
    def add3(a: int, b: int, c: int) -> int:
        return a + b + c

    outer = ArgSpec(add3, Placeholder(0), Placeholder(1), Placeholder(2))
    fused = outer.compose(1, ArgSpec(mul, Placeholder(0), Placeholder(1)))
    assert fused == ArgSpec(
        add3, Placeholder(0), ArgSpec(mul, Placeholder(2), Placeholder(3)), Placeholder(1)
    )
    assert fused.nholes == 4  # 3 - 1 + 2: exactly the holes it uses
    assert fused.fill("k", [1, 2, 3, 4])() == 1 + 3 * 4 + 2
    shared = outer.compose(0, ArgSpec(mul, Placeholder(0), 10), {0: 1})  # reads outer's hole 2
    assert shared.nholes == 2 and shared.fill("k", [5, 7])() == 7 * 10 + 5 + 7
    with pytest.raises(ValueError, match="hole 3 is not a hole of this template"):
        outer.compose(3, ArgSpec(neg, Placeholder(0)))
    with pytest.raises(ValueError, match=r"does not place inner holes \[1\]"):
        outer.compose(0, ArgSpec(mul, Placeholder(0), Placeholder(1)), {0: 2})


@pytest.mark.parametrize(
    "args",
    [
        (Placeholder(0), TaskRef("c")),
        (TaskRef("c"), Placeholder(0)),
        ([Placeholder(0), TaskRef("c")], 1),
        (Placeholder(0), ArgSpec(neg, TaskRef("c"))),
    ],
    ids=["ref-after", "ref-before", "in-list", "nested-call"],
)
def test_a_filled_template_equals_the_hand_built_task(args: tuple[Any, ...]) -> None:
    spec = ArgSpec(both, *args)
    fills = [TaskRef("a")]

    def by_hand(arg: Any) -> Any:
        if type(arg) is Placeholder:
            return fills[arg.index]
        if type(arg) is ArgSpec:
            return Task(None, arg.func, *[by_hand(a) for a in arg.args])
        if type(arg) is list:
            return [by_hand(a) for a in arg]
        return arg

    expected = Task("k", both, *[by_hand(a) for a in args])
    built = spec.fill("k", fills)
    assert built == expected and tokenize(built) == tokenize(expected)
    assert built.dependency_tuple == expected.dependency_tuple
    assert built({"a": 1, "c": 2}) == expected({"a": 1, "c": 2})
