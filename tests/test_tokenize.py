"""Tests for hlg._tokenize: deterministic tokens, also across hash seeds and processes."""

from __future__ import annotations

import dataclasses
import functools
import os
import subprocess
import sys
import textwrap
from operator import add

import numpy as np
import pytest

from hlg import DataNode, Task, TaskRef, normalize_token, tokenize


@dataclasses.dataclass
class Config:
    name: str
    sizes: tuple[int, ...]


class Opaque:
    def __init__(self, items: set[str]) -> None:
        self.items = items


class Unpicklable:
    def __reduce__(self) -> object:
        raise TypeError("no pickling here")


def test_equal_values_equal_tokens() -> None:
    assert tokenize(1, "a") == tokenize(1, "a")
    assert tokenize({"a": 1, "b": 2}) == tokenize({"b": 2, "a": 1})
    assert tokenize(np.arange(5)) == tokenize(np.arange(5))
    assert tokenize(Config("x", (1, 2))) == tokenize(Config("x", (1, 2)))
    assert tokenize(Opaque({"p", "q"})) == tokenize(Opaque({"q", "p"}))
    assert tokenize(functools.partial(add, 1)) == tokenize(functools.partial(add, 1))
    assert tokenize(Task("t", add, TaskRef("x"), 1)) == tokenize(Task("t", add, TaskRef("x"), 1))


@pytest.mark.parametrize(
    ("a", "b"),
    [
        (1, 1.0),
        (1, True),
        ("1", 1),
        ([1], (1,)),
        ({1}, frozenset({1})),
        (np.arange(3), np.arange(3).astype("f8")),
        (np.arange(6).reshape(2, 3), np.arange(6).reshape(3, 2)),
        (Config("x", (1,)), Config("y", (1,))),
        (lambda x: x + 1, lambda x: x + 2),
        (Task("t", add, TaskRef("x"), 1), Task("t", add, "x", 1)),
        (DataNode("d", 1), DataNode("d", 2)),
        ((1, 2), (2, 1)),
    ],
)
def test_different_values_different_tokens(a: object, b: object) -> None:
    assert tokenize(a) != tokenize(b)


def test_kwargs_are_part_of_the_token() -> None:
    assert tokenize(1, x=2) != tokenize(1, x=3) != tokenize(1)


def test_self_referencing_structures() -> None:
    a: list[object] = [1]
    a.append(a)
    assert tokenize(a) == tokenize(a)


def test_register_normalizer() -> None:
    class Thing:
        def __init__(self, v: int) -> None:
            self.v = v
            self.noise = object()

    @normalize_token.register(Thing)
    def _(t: Thing) -> object:
        return t.v

    assert tokenize(Thing(1)) == tokenize(Thing(1)) != tokenize(Thing(2))


def test_unpicklable_object_raises_clear_error() -> None:
    with pytest.raises(TypeError, match="cannot tokenize Unpicklable object"):
        tokenize(Unpicklable())


SCRIPT = textwrap.dedent(
    """
    from operator import add
    import numpy as np
    from hlg import Task, TaskRef, tokenize

    def local(x):
        return {x, "a", "b"}

    values = [
        {"alpha", "beta", "gamma", "delta"},
        {"k1": {"x", "y"}, "k2": frozenset({"p", "q", "r"})},
        ("x", 1, 2.5), np.arange(10), local, lambda y: y * 2,
        Task(("t", 0), add, TaskRef(("x", 1)), {"s": {"m", "n"}}),
    ]
    print([tokenize(v) for v in values])
    """
)


def test_tokens_do_not_depend_on_hash_seed(tmp_path: object) -> None:
    outputs = set()
    for seed in ("0", "1", "12345"):
        env = {**os.environ, "PYTHONHASHSEED": seed}
        proc = subprocess.run(
            [sys.executable, "-c", SCRIPT], env=env, capture_output=True, text=True, check=True
        )
        outputs.add(proc.stdout)
    assert len(outputs) == 1, outputs
