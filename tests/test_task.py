"""Tests for hlg._task: dependencies, execution, equality, substitution and fusion."""

from __future__ import annotations

import pickle
from collections import namedtuple
from operator import add, mul
from typing import Any

import cloudpickle
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from hlg import Alias, DataNode, MissingDependencyError, Task, TaskRef

Point = namedtuple("Point", ["x", "y"])


class Box:
    """An opaque object: never traversed, even when it holds a TaskRef."""

    def __init__(self, item: object) -> None:
        self.item = item


def identity(x: Any) -> Any:
    return x


def kw(a: Any, *, b: Any = None, c: Any = None) -> tuple[Any, Any, Any]:
    return (a, b, c)


# -- dependencies -----------------------------------------------------------------------


def test_no_dependencies() -> None:
    t = Task("t", add, 1, 2)
    assert t.dependencies == frozenset()
    assert t.dependency_tuple == ()
    assert t({}) == 3


def test_flat_references() -> None:
    t = Task(("t", 0), add, TaskRef("a"), TaskRef(("b", 1)))
    assert t.dependencies == {"a", ("b", 1)}
    assert t.dependency_tuple == ("a", ("b", 1))
    assert t({"a": 1, ("b", 1): 2}) == 3
    assert t.args == (TaskRef("a"), TaskRef(("b", 1)))


def test_same_reference_twice_is_one_dependency() -> None:
    t = Task("t", add, TaskRef("a"), TaskRef("a"))
    assert t.dependency_tuple == ("a",)
    assert t({"a": 4}) == 8


def test_references_in_containers_and_kwargs() -> None:
    t = Task(
        "t",
        identity,
        [
            TaskRef("a"),
            (TaskRef("b"), 1),
            {"k": TaskRef("c")},
            {TaskRef("d")},
            frozenset([TaskRef("e")]),
            Point(TaskRef("f"), 2),
        ],
    )
    assert t.dependency_tuple == ("a", "b", "c", "d", "e", "f")
    out = t({"a": 1, "b": 2, "c": 3, "d": 4, "e": 5, "f": 6})
    assert out == [1, (2, 1), {"k": 3}, {4}, frozenset([5]), Point(6, 2)]
    assert type(out[4]) is frozenset and type(out[5]) is Point

    k = Task("k", kw, TaskRef("a"), b=TaskRef("b"), c=[TaskRef("c")])
    assert k.dependency_tuple == ("a", "b", "c")
    assert k({"a": 1, "b": 2, "c": 3}) == (1, 2, [3])


def test_keyword_reference_only() -> None:
    t = Task("t", kw, 1, b=TaskRef("x"))
    assert t.dependencies == {"x"}
    assert t({"x": 9}) == (1, 9, None)


def test_strings_are_never_references() -> None:
    t = Task("t", add, "a", "b")
    assert t.dependencies == frozenset()
    assert t({"a": 1, "b": 2}) == "ab"


def test_opaque_objects_are_not_traversed() -> None:
    arr = np.array([1, 2, 3])
    box = Box(TaskRef("x"))
    t = Task("t", identity, [arr, box])
    assert t.dependencies == frozenset()
    out = t({})
    assert out[0] is arr and out[1] is box


def test_nested_tasks_run_inline() -> None:
    inner = Task(None, mul, TaskRef("x"), 10)
    t = Task("t", add, inner, TaskRef("y"))
    assert t.dependency_tuple == ("x", "y")
    assert t({"x": 2, "y": 1}) == 21
    t2 = Task("t2", identity, [inner, Task(None, add, 1, 1)])
    assert t2({"x": 1}) == [10, 2]


# -- errors -------------------------------------------------------------------------------


def test_missing_dependency_is_named() -> None:
    t = Task(("t", 1), add, TaskRef("a"), TaskRef("b"))
    with pytest.raises(MissingDependencyError) as info:
        t({"a": 1})
    assert str(info.value) == ("task ('t', 1) needs the value of key 'b', which was not given")
    assert info.value.missing == "b" and info.value.task_key == ("t", 1)
    deep = Task("d", identity, [TaskRef("zz")])
    with pytest.raises(MissingDependencyError, match="'zz'"):
        deep({})


def test_user_key_error_is_not_misreported() -> None:
    def boom(x: Any) -> Any:
        return {}["nope"]

    t = Task("t", identity, [Task(None, boom, TaskRef("a"))])
    with pytest.raises(KeyError) as info:
        t({"a": 1})
    assert not isinstance(info.value, MissingDependencyError)
    assert info.value.args == ("nope",)


def test_bad_construction() -> None:
    with pytest.raises(TypeError, match="func must be callable"):
        Task("t", 1)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"Task key must be .*got \['t'\]"):
        Task(["t"], add)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="TaskRef needs a key"):
        TaskRef(1)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="Alias 'a' points to itself"):
        Alias("a", "a")
    with pytest.raises(TypeError, match="target must be a key"):
        Alias("a", 3)  # type: ignore[arg-type]


# -- equality, hashing, repr --------------------------------------------------------------


def test_equality() -> None:
    a = Task("t", add, TaskRef("x"), 1)
    assert a == Task("t", add, TaskRef("x"), 1)
    assert hash(a) == hash(Task("t", add, TaskRef("x"), 1))
    assert a != Task("u", add, TaskRef("x"), 1)  # the key matters
    assert a != Task("t", add, 1, TaskRef("x"))  # argument order matters
    assert a != Task("t", mul, TaskRef("x"), 1)
    assert a != Task("t", add, "x", 1)  # a reference is not a string
    assert Task("t", identity, [1, 2]) != Task("t", identity, (1, 2))
    assert Task("t", identity, [1, 2]) != Task("t", identity, [2, 1])
    assert Task("t", kw, 1, b=2) != Task("t", kw, 1, b=3)
    x = np.arange(3)
    assert Task("t", identity, x) == Task("t", identity, x.copy())
    assert Task("t", identity, x) != Task("t", identity, x + 1)
    assert DataNode("d", [1]) == DataNode("d", [1]) != DataNode("e", [1])
    assert Alias("a", "b") == Alias("a", "b") != Alias("a", "c")
    assert len({a, DataNode("d", 1), Alias("a", "b"), TaskRef("x")}) == 4
    assert (a == 1) is False


def test_repr() -> None:
    assert repr(Task("t", add, TaskRef("x"), 1)) == "Task('t', add, TaskRef('x'), 1)"
    assert repr(Task(("t", 0), kw, 1, b="s")) == "Task(('t', 0), kw, 1, b='s')"
    assert repr(DataNode("d", 1)) == "DataNode('d', 1)"
    assert repr(Alias("a", ("b", 1))) == "Alias('a', ('b', 1))"


# -- substitute and fuse ------------------------------------------------------------------


def test_substitute() -> None:
    t = Task("t", add, TaskRef("x"), TaskRef("y"))
    s = t.substitute({"x": "w"})
    assert s == Task("t", add, TaskRef("w"), TaskRef("y"))
    assert t.substitute({"q": "w"}) is t
    assert t.substitute({}, key="u").key == "u"
    deep = Task("d", identity, [TaskRef("x"), Task(None, identity, TaskRef("x"))])
    assert deep.substitute({"x": "z"}).dependency_tuple == ("z",)
    assert deep.substitute({"x": "z"})({"z": 5}) == [5, 5]
    assert Alias("a", "x").substitute({"x": "y"}, key="b") == Alias("b", "y")
    assert DataNode("d", 1).substitute({}, key="e") == DataNode("e", 1)


def test_fuse_chain_and_diamond() -> None:
    calls: list[str] = []

    def rec(name: str, x: int) -> int:
        calls.append(name)
        return x + 1

    a = Task("a", rec, "a", TaskRef("x"))
    b = Task("b", rec, "b", TaskRef("a"))
    c = Task("c", rec, "c", TaskRef("a"))
    d = Task("d", add, TaskRef("b"), TaskRef("c"))
    f = Task.fuse(d, c, b, a)
    assert f.key == "d"
    assert f.dependency_tuple == ("x",)
    assert f({"x": 0}) == 4
    assert sorted(calls) == ["a", "b", "c"]  # each inner task ran once
    assert pickle.loads(cloudpickle.dumps(f))({"x": 0}) == 4
    chain = Task.fuse(a, b)
    assert chain.key == "b" and chain({"x": 1}) == 3


def test_fuse_errors() -> None:
    a = Task("a", add, TaskRef("x"), 1)
    b = Task("b", add, TaskRef("x"), 2)
    with pytest.raises(ValueError, match=r"exactly one output .*\['a', 'b'\]"):
        Task.fuse(a, b)
    assert Task.fuse(a, b, output="b")({"x": 0}) == 2
    with pytest.raises(ValueError, match="pass output= to choose"):
        Task.fuse(a, b, key="b")  # key= names the fused task, as in dask: never the output
    with pytest.raises(ValueError, match="got key 'a' twice"):
        Task.fuse(a, a)
    with pytest.raises(ValueError, match="at least one"):
        Task.fuse()
    p = Task("p", add, TaskRef("q"), 1)
    q = Task("q", add, TaskRef("p"), 1)
    with pytest.raises(ValueError, match="cycle"):
        Task.fuse(p, q, Task("r", add, TaskRef("p"), 1))
    assert Task.fuse(a) is a


# -- pickling ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "obj",
    [
        Task("t", add, 1, 2),
        Task(("t", 1), add, TaskRef("x"), 2),
        Task(
            "t",
            identity,
            [TaskRef("x"), {"a": TaskRef(("y", 0))}],
        ),
        Task("t", kw, 1, b=TaskRef("x")),
        Task.fuse(Task("a", add, TaskRef("x"), 1), Task("b", mul, TaskRef("a"), 2)),
        DataNode("d", [1, 2]),
        Alias("a", ("b", 2)),
        TaskRef(("x", 1, "s", 2.5)),
        MissingDependencyError("t", "x"),
    ],
    ids=repr,
)
@pytest.mark.parametrize("dumps", [pickle.dumps, cloudpickle.dumps], ids=["pickle", "cloudpickle"])
def test_pickle_round_trip(obj: Any, dumps: Any) -> None:
    back = pickle.loads(dumps(obj))
    if isinstance(obj, Exception):
        assert type(back) is type(obj) and str(back) == str(obj)
    else:
        assert back == obj and hash(back) == hash(obj)


def test_pickle_lambda_with_cloudpickle() -> None:
    t = Task("t", lambda x: x * 3, TaskRef("x"))
    assert pickle.loads(cloudpickle.dumps(t))({"x": 2}) == 6


# -- properties ----------------------------------------------------------------------------

KEYS = ["a", "b", ("c", 0), ("c", 1)]
VALUES = {"a": 1, "b": 2, ("c", 0): 3, ("c", 1): 4}

leaf = st.one_of(
    st.sampled_from(KEYS).map(TaskRef),
    st.integers(-5, 5),
    st.sampled_from(KEYS).filter(lambda k: isinstance(k, str)),  # strings stay strings
    st.none(),
)


def containers(children: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.one_of(
        st.lists(children, max_size=3),
        st.lists(children, max_size=3).map(tuple),
        st.dictionaries(st.text(max_size=2), children, max_size=3),
        st.tuples(children, children).map(lambda p: Point(*p)),
        st.lists(children, max_size=3).map(lambda xs: Task(None, identity, xs)),
    )


structures = st.recursive(leaf, containers, max_leaves=12)


def oracle_refs(obj: Any) -> list[Any]:
    """Independent walk: the keys of TaskRefs in order of appearance."""
    if isinstance(obj, TaskRef):
        return [obj.key]
    if isinstance(obj, Task):
        return [k for a in obj.args for k in oracle_refs(a)]
    if isinstance(obj, dict):
        return [k for v in obj.values() for k in oracle_refs(v)]
    if isinstance(obj, (list, tuple)):
        return [k for v in obj for k in oracle_refs(v)]
    return []


def oracle_eval(obj: Any) -> Any:
    if isinstance(obj, TaskRef):
        return VALUES[obj.key]
    if isinstance(obj, Task):
        return obj.func(*[oracle_eval(a) for a in obj.args])
    if isinstance(obj, dict):
        return {k: oracle_eval(v) for k, v in obj.items()}
    if isinstance(obj, Point):
        return Point(*[oracle_eval(v) for v in obj])
    if isinstance(obj, (list, tuple)):
        return type(obj)(oracle_eval(v) for v in obj)
    return obj


@given(st.lists(structures, max_size=4))
def test_dependencies_and_results_match_oracle(args: list[Any]) -> None:
    t = Task("out", identity, args)
    expected = list(dict.fromkeys(oracle_refs(args)))
    assert list(t.dependency_tuple) == expected
    assert t.dependencies == frozenset(expected)
    assert t(VALUES) == oracle_eval(args)
    flat = Task("flat", lambda *xs: list(xs), *args)
    assert flat(VALUES) == oracle_eval(args)
    assert list(flat.dependency_tuple) == expected
    for dumps in (pickle.dumps, cloudpickle.dumps):
        back = pickle.loads(dumps(t))
        assert back == t
        assert back(VALUES) == t(VALUES)


# -- fused tasks release what they no longer need ------------------------------------------


class Block:
    """A result whose live instances are counted."""

    live = 0
    peak = 0

    def __init__(self, value: int) -> None:
        self.value = value
        Block.live += 1
        Block.peak = max(Block.peak, Block.live)

    def __del__(self) -> None:
        Block.live -= 1


def step(block: Block) -> Block:
    return Block(block.value + 1)


def test_a_fused_chain_holds_at_most_two_intermediate_results() -> None:
    chain = [Task("c0", Block, 0)] + [
        Task(f"c{i}", step, TaskRef(f"c{i - 1}")) for i in range(1, 10)
    ]
    fused = Task.fuse(*chain)
    Block.live = Block.peak = 0
    result = fused()
    assert result.value == 9  # oracle: nine steps after 0
    assert Block.peak == 2  # an input and the result of the step reading it (dask: 2)
    del result
    assert Block.live == 0


def test_a_fused_diamond_releases_each_result_after_its_last_reader() -> None:
    # r -> (a, b) -> out; a and b read r; r must go once both have run
    def pair(a: Block, b: Block) -> Block:
        return Block(a.value + b.value)

    tasks = [
        Task("r", Block, 1),
        Task("a", step, TaskRef("r")),
        Task("b", step, TaskRef("r")),
        Task("o", pair, TaskRef("a"), TaskRef("b")),
        Task("z", step, TaskRef("o")),
    ]
    Block.live = Block.peak = 0
    assert Task.fuse(*tasks)().value == 5
    assert Block.peak == 3  # r, a, b alive while the pair runs; never all five


def test_fuse_key_names_the_fused_task_and_output_chooses_the_value() -> None:
    a = Task("a", add, TaskRef("x"), 1)
    b = Task("b", mul, TaskRef("a"), 2)
    assert Task.fuse(a, b, key="ab").key == "ab"  # as in dask: the new task's key
    assert Task.fuse(a, b, key="ab")({"x": 1}) == 4  # the output is still b
    assert Task.fuse(a, b).key == "b"
    inner = Task.fuse(a, b, output="a")
    assert inner.key == "a" and inner({"x": 1}) == 2
    with pytest.raises(ValueError, match="output 'q' is not the key of one of the tasks"):
        Task.fuse(a, b, output="q")
    with pytest.raises(TypeError, match=r"Task\.fuse key must be"):
        Task.fuse(a, b, key=3)  # type: ignore[arg-type]
    assert Task.fuse(a, key="renamed") == Task("renamed", add, TaskRef("x"), 1)


# -- defaults and the final class -----------------------------------------------------------


def test_running_without_values_means_no_values() -> None:
    assert Task("s", sum, [1, 2, 3])() == 6
    assert DataNode("d", 4)() == 4
    with pytest.raises(MissingDependencyError, match="needs the value of key 'x'"):
        Task("y", abs, TaskRef("x"))()
    with pytest.raises(MissingDependencyError, match="needs the value of key 'x'"):
        Alias("y", "x")()


def test_task_cannot_be_subclassed() -> None:
    with pytest.raises(TypeError, match=r"Task cannot be subclassed \(Retrying\)"):

        class Retrying(Task):  # type: ignore[misc]
            pass


class Shifted(namedtuple("Shifted", ["x", "y"])):
    """A namedtuple whose constructor takes other arguments than its fields."""

    def __new__(cls, x: Any) -> Shifted:
        return super().__new__(cls, x, x + 1)


def test_namedtuple_with_a_custom_new_is_rebuilt_with_its_items() -> None:
    value = Shifted(1)._replace(y=TaskRef("b"))
    task = Task("t", list, value)
    out = task({"b": 10})
    assert out == [1, 10]
    assert type(task({"b": 10})) is list
    renamed = task.substitute({"b": "c"})
    assert renamed({"c": 5}) == [1, 5]
    held = Task("u", lambda s: s, value)({"b": 7})
    assert type(held) is Shifted and tuple(held) == (1, 7)
