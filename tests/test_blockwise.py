"""Tests for hlg.layers._blockwise: index notation against dask, errors, culling, pickling."""

from __future__ import annotations

import itertools
import operator
import os
import pickle
import re
import subprocess
import sys
from collections.abc import Iterator
from operator import add, mul
from pathlib import Path
from typing import Any

import cloudpickle
import dask.blockwise
import numpy as np
import pytest
from dask import _task_spec as dask_task_spec
from hypothesis import given
from hypothesis import strategies as st

import hlg
import hlg._argspec
import hlg._task
from hlg import ArgSpec, Placeholder, Task, TaskRef, layers
from hlg.layers import BlockIndex, Blockwise, blockwise, concatenate_axes


def collect(*args: Any, **kwargs: Any) -> Any:
    """Return the arguments as they arrived: nested lists of blocks, constants."""
    return (args, kwargs) if kwargs else args


def assert_same_value(a: Any, b: Any) -> None:
    """Recursive equality for nested lists/tuples of numpy arrays and constants."""
    if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        np.testing.assert_array_equal(a, b)
        assert np.shape(a) == np.shape(b)
    elif isinstance(a, (list, tuple)):
        assert isinstance(b, (list, tuple)), (a, b)
        assert isinstance(a, list) == isinstance(b, list), (a, b)
        assert len(a) == len(b), (a, b)
        for x, y in zip(a, b):
            assert_same_value(x, y)
    elif isinstance(a, dict):
        assert isinstance(b, dict) and a.keys() == b.keys()
        for k in a:
            assert_same_value(a[k], b[k])
    else:
        assert a == b


# -- conformance with dask --------------------------------------------------------------

LETTERS_OUT = "abc"
LETTERS_CONTRACTED = "xy"


@st.composite
def blockwise_cases(draw: Any) -> dict[str, Any]:
    """A random blockwise call: output index, (name, index) pairs, numblocks, new_axes."""
    n_out = draw(st.integers(1, 3))
    out_letters = list(LETTERS_OUT[:n_out])
    dims = {c: draw(st.integers(1, 4)) for c in out_letters + list(LETTERS_CONTRACTED)}
    new_axes: dict[str, Any] = {}
    for letter in out_letters:
        if draw(st.integers(0, 4)) == 0:  # a new axis, given as int or chunk sizes
            if draw(st.booleans()):
                new_axes[letter] = draw(st.integers(1, 5))
                dims[letter] = 1
            else:
                new_axes[letter] = tuple(draw(st.integers(1, 5)) for _ in range(dims[letter]))
    pool = [c for c in out_letters if c not in new_axes] + list(LETTERS_CONTRACTED)
    n_in = draw(st.integers(1, 3))
    assigned: list[list[str]] = [[] for _ in range(n_in)]
    for letter in out_letters:
        if letter not in new_axes:
            assigned[draw(st.integers(0, n_in - 1))].append(letter)
    pairs: list[tuple[Any, Any]] = []
    numblocks: dict[str, tuple[int, ...]] = {}
    for k in range(n_in):
        letters = list(assigned[k])
        room = 3 - len(letters)
        extra = draw(st.lists(st.sampled_from(pool), max_size=max(room, 0), unique=True))
        letters += [c for c in extra if c not in letters]
        if not letters and draw(st.integers(0, 4)):  # else a 0-d input, key (name,)
            letters.append(draw(st.sampled_from(pool)))
        if 0 < len(letters) < 3 and draw(st.integers(0, 5)) == 0:
            letters.append(draw(st.sampled_from(letters)))  # a repeated letter: diagonal
        letters = list(draw(st.permutations(letters)))
        name = f"in{k}"
        # broadcasting: an input may have one block along any of its indices
        nb = tuple(1 if draw(st.integers(0, 3)) == 0 else dims[c] for c in letters)
        if len(set(letters)) < len(letters):  # a repeated letter gets one count
            first = {}
            nb = tuple(first.setdefault(c, n) for c, n in zip(letters, nb))
        numblocks[name] = nb
        pairs.append((name, "".join(letters)))
    if draw(st.booleans()):  # read an input again, under another compatible index
        k = draw(st.integers(0, n_in - 1))
        nb = numblocks[f"in{k}"]
        letters = []
        for n in nb:
            ok = [c for c in pool if n == 1 or dims[c] == n]
            letters.append(draw(st.sampled_from(ok)))
        if len(set(letters)) < len(letters):
            # a repeated letter must see the same count everywhere it is used
            seen: dict[str, int] = {}
            if any(seen.setdefault(c, n) != n for c, n in zip(letters, nb)):
                letters = list(pairs[k][1])
        pairs.insert(draw(st.integers(0, len(pairs))), (f"in{k}", "".join(letters)))
    if draw(st.booleans()):
        pairs.insert(draw(st.integers(0, len(pairs))), (7, None))
    out_ind = "".join(draw(st.permutations(out_letters)))
    concatenate = draw(st.sampled_from([None, True]))
    return {
        "out_ind": out_ind,
        "pairs": pairs,
        "numblocks": numblocks,
        "new_axes": new_axes,
        "concatenate": concatenate,
    }


def input_values(numblocks: dict[str, tuple[int, ...]]) -> dict[Any, np.ndarray]:
    """Distinct small numpy blocks for every block of every input."""
    values: dict[Any, np.ndarray] = {}
    counter = itertools.count()
    for name, nb in sorted(numblocks.items()):
        shape = (2,) * len(nb)
        for coords in itertools.product(*map(range, nb)):
            base = 100 * next(counter)
            values[(name, *coords)] = np.arange(base, base + 2 ** len(nb)).reshape(shape)
    return values


def consistent(case: dict[str, Any]) -> bool:
    """Whether dask accepts the case (broadcasting aside, counts must agree per letter)."""
    counts: dict[str, set[int]] = {}
    for arg, ind in case["pairs"]:
        if ind is None:
            continue
        for c, n in zip(ind, case["numblocks"][arg]):
            counts.setdefault(c, set()).add(n)
    return all(len(ns - {1}) <= 1 for ns in counts.values())


@given(blockwise_cases())
def test_keys_dependencies_and_values_match_dask(case: dict[str, Any]) -> None:
    assert consistent(case)
    flat = [x for pair in case["pairs"] for x in pair]
    kw = {
        "numblocks": case["numblocks"],
        "new_axes": case["new_axes"],
        "concatenate": case["concatenate"],
    }
    dsk = dict(dask.blockwise.blockwise(collect, "out", case["out_ind"], *flat, **kw))
    layer = blockwise(collect, "out", case["out_ind"], *flat, **kw)
    assert set(layer) == set(dsk)
    assert len(layer) == len(dsk)
    values = input_values(case["numblocks"])
    for key, dask_task in dsk.items():
        assert key in layer
        task = layer[key]
        assert task.key == key
        assert layer.dependencies(key) == task.dependencies == dask_task.dependencies
        deps = {k: values[k] for k in task.dependencies}
        assert_same_value(task(deps), dask_task(deps))
    # C order over the output blocks, as itertools.product
    shape = tuple(max(k[d + 1] for k in dsk) + 1 for d in range(len(case["out_ind"])))
    assert layer.shape == shape
    assert list(layer) == [("out", *c) for c in itertools.product(*map(range, shape))]
    # culling keeps every other block and needs exactly what dask's tasks read
    wanted = list(dsk)[::2]
    culled, external = layer.cull(wanted)
    assert set(culled) == set(wanted)
    assert external == frozenset().union(*(dsk[k].dependencies for k in wanted))
    assert culled.materialize() == {k: layer[k] for k in sorted(wanted)}


@pytest.mark.parametrize("concatenate", [None, True])
def test_contraction_with_broadcast_input_matches_dask(concatenate: Any) -> None:
    nb = {"x": (2, 3), "y": (1,)}
    args = ("x", "ij", "y", "j")
    dsk = dict(
        dask.blockwise.blockwise(collect, "z", "i", *args, numblocks=nb, concatenate=concatenate)
    )
    layer = blockwise(collect, "z", "i", *args, numblocks=nb, concatenate=concatenate)
    values = input_values(nb)
    for key in dsk:
        assert layer[key].dependencies == dsk[key].dependencies
        assert_same_value(layer[key](values), dsk[key](values))


def test_concatenate_true_uses_concatenate_axes() -> None:
    nb = {"x": (2, 3)}
    layer = blockwise(np.sum, "s", "i", "x", "ij", numblocks=nb, concatenate=True, axis=1)
    assert layer.template == ArgSpec(np.sum, ArgSpec(concatenate_axes, Placeholder(0), [1]), axis=1)
    values = input_values(nb)
    whole = np.block([[values[("x", i, j)] for j in range(3)] for i in range(2)])
    for i in range(2):
        np.testing.assert_array_equal(layer[("s", i)](values), whole[2 * i : 2 * i + 2].sum(axis=1))


def test_concatenate_axes() -> None:
    a = np.arange(4).reshape(2, 2)
    assert concatenate_axes([[a, a + 4], [a + 8, a + 12]], [0, 1]).shape == (4, 4)
    np.testing.assert_array_equal(concatenate_axes([a, a + 4], [1]), np.hstack([a, a + 4]))
    np.testing.assert_array_equal(concatenate_axes([[a], [a]], [1, 0]), np.hstack([a, a]))
    assert concatenate_axes(a, []) is a
    with pytest.raises(ValueError, match=r"expected lists nested 2 deep .*ndarray at level 1"):
        concatenate_axes([a, a], [0, 1])


def test_custom_concatenate_callable() -> None:
    def glue(blocks: Any, axes: Any) -> Any:
        return ("glued", blocks, axes)

    layer = blockwise(collect, "s", "i", "x", "ij", numblocks={"x": (1, 2)}, concatenate=glue)
    assert layer[("s", 0)]({("x", 0, 0): "a", ("x", 0, 1): "b"}) == (("glued", ["a", "b"], [1]),)


def test_zero_dimensional_output() -> None:
    layer = blockwise(collect, "z", "", "y", "i", numblocks={"y": (2,)})
    dsk = dict(dask.blockwise.blockwise(collect, "z", "", "y", "i", numblocks={"y": (2,)}))
    assert list(layer) == list(dsk) == [("z",)]
    assert layer[("z",)].dependencies == dsk[("z",)].dependencies


def test_zero_dimensional_input_matches_dask() -> None:
    # regression: an input with index "" (one block, key ("x",)) crashed the fast path
    # (operator.itemgetter() called with no argument in Blockwise._simple_plan)
    nb = {"x": (), "y": (2,)}
    dsk = dict(dask.blockwise.blockwise(collect, "z", "i", "x", "", "y", "i", numblocks=nb))
    layer = blockwise(collect, "z", "i", "x", "", "y", "i", numblocks=nb)
    assert set(layer) == set(dsk)
    for key in dsk:
        assert layer[key].dependencies == dsk[key].dependencies == {("x",), ("y", key[1])}
        assert layer[key]({("x",): 1, ("y", key[1]): 2}) == (1, 2)


def test_doc_examples() -> None:
    nb = {"x": (2, 3), "y": (3, 2)}
    layer = blockwise(add, "z", "ij", "x", "ij", "y", "ji", numblocks=nb)
    assert layer[("z", 0, 1)] == Task(("z", 0, 1), add, TaskRef(("x", 0, 1)), TaskRef(("y", 1, 0)))
    assert layer.shape == (2, 3)
    assert layer.output == "z" and layer.name == "z" and layer.kind == "blockwise"
    named = blockwise(add, "z", "ij", "x", "ij", "y", "ji", numblocks=nb, layer_name="z-layer")
    assert named.name == "z-layer" and list(named) == list(layer)
    assert named.prefixes == {"z"}


def test_new_axes_chunks() -> None:
    layer = blockwise(collect, "z", "ik", "x", "i", numblocks={"x": (2,)}, new_axes={"k": (3, 4)})
    assert layer.shape == (2, 2)
    one = blockwise(collect, "z", "ki", "x", "i", numblocks={"x": (2,)}, new_axes={"k": 5})
    assert one.shape == (1, 2)
    assert one[("z", 0, 1)].dependencies == {("x", 1)}


# -- errors ---------------------------------------------------------------------------


def test_inconsistent_numblocks() -> None:
    with pytest.raises(
        ValueError,
        match=r"index 'j' has 2 blocks in argument 0 \('x'\) but 3 in argument 1 \('y'\)",
    ):
        blockwise(add, "z", "ij", "x", "ij", "y", "j", numblocks={"x": (2, 2), "y": (3,)})


def test_unknown_output_index() -> None:
    with pytest.raises(ValueError, match="output index 'k' appears in no argument"):
        blockwise(add, "z", "ik", "x", "i", numblocks={"x": (2,)})


def test_index_length_differs_from_numblocks() -> None:
    with pytest.raises(
        ValueError,
        match=r"argument 0 \('x'\): index 'ij' has 2 letters but the input has 1 dimensions",
    ):
        blockwise(add, "z", "i", "x", "ij", numblocks={"x": (2,)})


def test_arity_error_names_the_argument_after_a_constant() -> None:
    with pytest.raises(ValueError, match=r"\('x'\): index 'ij' has 2 letters"):
        blockwise(add, "z", "i", 5, None, "x", "ij", numblocks={"x": (2,)})


def _argument_number(exc: BaseException) -> str:
    match = re.search(r"argument (\d+) \(", str(exc))
    assert match, str(exc)
    return match.group(1)


def test_error_positions_are_numbered_consistently() -> None:
    # BUG (messages): blockwise() numbers pairs counting constants ("argument 1 (3)" for
    # the pair after a constant) while Blockwise's checks count only indexed arguments
    # ("argument 0 ('x')" for the same position), so "argument N" means two things.
    with pytest.raises(TypeError) as type_error:
        blockwise(add, "z", "i", 5, None, 3, "i")
    with pytest.raises(ValueError) as arity_error:
        blockwise(add, "z", "i", 5, None, "x", "ij", numblocks={"x": (2,)})
    with pytest.raises(ValueError) as missing_error:
        blockwise(add, "z", "i", 5, None, "x", "i")
    assert (
        _argument_number(type_error.value)
        == _argument_number(arity_error.value)
        == _argument_number(missing_error.value)
    )


def test_missing_numblocks() -> None:
    with pytest.raises(ValueError, match=r"\('y'\): no numblocks given"):
        blockwise(add, "z", "i", "x", "i", "y", "i", numblocks={"x": (2,)})


def test_numblocks_for_unknown_input() -> None:
    with pytest.raises(ValueError, match=r"numblocks names inputs that are not arguments: \['w'\]"):
        blockwise(add, "z", "i", "x", "i", numblocks={"x": (2,), "w": (2,)})


def test_odd_number_of_pair_items() -> None:
    with pytest.raises(ValueError, match="got 3 items, an odd number"):
        blockwise(add, "z", "i", "x", "i", "y", numblocks={"x": (2,)})


@pytest.mark.parametrize("bad", [TaskRef("x"), 3, ("x", 0), np.ones(2)])
def test_indexed_argument_must_be_name_or_provider(bad: Any) -> None:
    with pytest.raises(
        TypeError, match=r"argument 1 \(.*\): an indexed argument must be an input name"
    ):
        blockwise(add, "z", "i", "x", "i", bad, "i", numblocks={"x": (2,)})


def test_repeated_output_letter() -> None:
    with pytest.raises(ValueError, match="output index 'ii' repeats a letter"):
        blockwise(add, "z", "ii", "x", "i", numblocks={"x": (2,)})


def test_new_axis_used_by_an_input() -> None:
    with pytest.raises(ValueError, match="new axis 'i' is also an index of an input"):
        blockwise(add, "z", "i", "x", "i", numblocks={"x": (2,)}, new_axes={"i": 2})


def test_bad_index_type_and_counts() -> None:
    with pytest.raises(ValueError, match=r"argument 0 \('x'\): an index must be a str"):
        blockwise(add, "z", "i", "x", 5, numblocks={"x": (2,)})
    with pytest.raises(ValueError, match=r"argument 0 \('x'\): numblocks must be ints >= 1"):
        blockwise(add, "z", "i", "x", "i", numblocks={"x": (0,)})
    with pytest.raises(ValueError, match="new axis 'k': block count must be an int >= 1"):
        Blockwise("z", "k", ArgSpec(collect), [], {}, new_axes={"k": 0})


# -- keyword arguments ----------------------------------------------------------------


def test_taskref_keyword_arguments_are_dependencies_of_every_task() -> None:
    layer = blockwise(
        collect, "z", "ij", "x", "ij", 10, None, numblocks={"x": (2, 2)}, scale=TaskRef("s")
    )
    assert len(layer) == 4
    for key in layer:
        expected = {("x", *key[1:]), "s"}
        assert layer.dependencies(key) == expected
        assert layer[key].dependencies == expected
        result = layer[key]({("x", *key[1:]): "block", "s": 3})
        assert result == (("block", 10), {"scale": 3})
    dsk = dict(
        dask.blockwise.blockwise(
            collect,
            "z",
            "ij",
            "x",
            "ij",
            10,
            None,
            numblocks={"x": (2, 2)},
            scale=dask_task_spec.TaskRef("s"),
        )
    )
    assert {k: t.dependencies for k, t in dsk.items()} == {k: layer.dependencies(k) for k in layer}


def test_constants_and_plain_keyword_arguments() -> None:
    layer = blockwise(
        collect, "z", "i", "x", "i", "x", None, (1, 2), None, numblocks={"x": (2,)}, flag="x"
    )
    task = layer[("z", 1)]
    assert task.dependencies == {("x", 1)}  # the literal string "x" is not a key
    assert task({("x", 1): 5}) == ((5, "x", (1, 2)), {"flag": "x"})


def test_taskref_in_constant_argument_is_a_dependency() -> None:
    layer = blockwise(collect, "z", "i", "x", "i", [TaskRef("c")], None, numblocks={"x": (3,)})
    for key in layer:
        assert layer.dependencies(key) == layer[key].dependencies == {("x", key[1]), "c"}
    assert layer[("z", 0)]({("x", 0): 1, "c": 2}) == (1, [2])


# -- symbolic behaviour ---------------------------------------------------------------


@pytest.fixture
def count_builds(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[int]]:
    """Count every Task built, through the constructor or the template fast paths."""
    counter = [0]
    real_rebuild = hlg._task._rebuild_task
    real_init = Task.__init__

    def rebuild(*args: Any) -> Task:
        counter[0] += 1
        return real_rebuild(*args)

    def init(self: Task, *args: Any, **kwargs: Any) -> None:
        counter[0] += 1
        real_init(self, *args, **kwargs)

    monkeypatch.setattr(hlg._task, "_rebuild_task", rebuild)
    monkeypatch.setattr(hlg._argspec, "_rebuild_task", rebuild)
    monkeypatch.setattr(Task, "__init__", init)
    yield counter


def sample_layers() -> list[Blockwise]:
    nb = {"x": (2, 3), "y": (3, 2)}
    nx = {"x": (2, 3)}
    return [
        blockwise(add, "z", "ij", "x", "ij", "y", "ji", numblocks=nb),  # fast path
        blockwise(collect, "z", "i", "x", "ij", numblocks=nx),  # contraction
        blockwise(collect, "z", "ij", "x", "ij", numblocks=nx, k=TaskRef("c")),  # general
        blockwise(collect, "z", "ij", BlockIndex((2, 3)), "ij"),  # provider
    ]


@pytest.mark.parametrize("index", range(4))
def test_counter_sees_builds(count_builds: list[int], index: int) -> None:
    layer = sample_layers()[index]
    layer[next(iter(layer))]
    assert count_builds[0] >= 1


@pytest.mark.parametrize("index", range(4))
def test_symbolic_operations_build_no_task(count_builds: list[int], index: int) -> None:
    layer = sample_layers()[index]
    n = len(layer)
    keys = list(layer)
    assert all(k in layer for k in keys)
    for key in keys:
        layer.dependencies(key)
        layer.dependency_tuple(key)
    culled, external = layer.cull(keys[:2])
    assert len(culled) == 2 and list(culled) == keys[:2]
    assert external == layer.dependencies(keys[0]) | layer.dependencies(keys[1])
    assert layer.prefixes == culled.prefixes == {"z"}
    assert len(layer) == n
    assert count_builds[0] == 0


def test_len_contains_and_iteration_order() -> None:
    layer = blockwise(collect, "z", "ijk", "x", "ijk", numblocks={"x": (2, 3, 4)})
    assert len(layer) == 24
    assert list(layer) == [("z", *c) for c in itertools.product(range(2), range(3), range(4))]
    assert ("z", 1, 2, 3) in layer
    # keys compare by value (DESIGN §2): ("z", 1.0, 0, 0) is ("z", 1, 0, 0), as in a dict
    assert ("z", 1.0, 0, 0) in layer
    assert layer[("z", 1.0, 0, 0)].dependencies == layer[("z", 1, 0, 0)].dependencies
    for bad in [
        ("z", 1, 2),  # too short
        ("z", 1, 2, 3, 0),  # too long
        ("z", 2, 0, 0),  # out of range
        ("z", -1, 0, 0),  # negative
        ("z", True, 0, 0),  # bools are not block numbers
        ("z", 1.5, 0, 0),  # nor are fractional floats
        ("z", "1", 0, 0),
        ("y", 0, 0, 0),  # another prefix
        "z",
        ["z", 0, 0, 0],
        None,
        ("z",),
    ]:
        assert bad not in layer, bad
        with pytest.raises(KeyError):
            layer[bad]  # type: ignore[index]
        with pytest.raises(KeyError):
            layer.dependencies(bad)  # type: ignore[arg-type]


def test_cull_records_blocks_and_gets_a_deterministic_name() -> None:
    nb = {"x": (3, 4)}
    layer = blockwise(collect, "z", "ji", "x", "ij", numblocks=nb, layer_annotations={"retries": 2})
    wanted = [("z", 3, 0), ("z", 1, 2), ("not-a-key", 0)]
    culled, external = layer.cull(wanted)
    assert isinstance(culled, Blockwise)
    assert set(culled.output_blocks) == {(3, 0), (1, 2)}
    assert culled.name != layer.name and culled.name.startswith("z")
    assert culled.output == "z" and culled.prefixes == {"z"}
    assert culled.annotations == layer.annotations == {"retries": 2}
    assert external == {("x", 0, 3), ("x", 2, 1)}
    assert list(culled) == [("z", 1, 2), ("z", 3, 0)]  # C order
    assert len(culled) == 2
    assert ("z", 0, 0) in layer and ("z", 0, 0) not in culled
    with pytest.raises(KeyError):
        culled[("z", 0, 0)]
    assert culled[("z", 3, 0)] == layer[("z", 3, 0)]
    again, _ = layer.cull(list(reversed(wanted)))
    assert again.name == culled.name  # deterministic, order independent
    other, _ = layer.cull([("z", 0, 0)])
    assert other.name != culled.name
    same, ext = layer.cull(list(layer))
    assert same is layer
    assert ext == {("x", *k[:0:-1]) for k in layer}
    twice, _ = culled.cull([("z", 1, 2)])
    assert list(twice) == [("z", 1, 2)] and twice.prefixes == {"z"}


def first_plus(t: Any, c: int) -> int:
    return t[0][0] + c


CULL_NAME_SCRIPT = """
from hlg import layers
layer = layers.blockwise(max, "z", "ij", "x", "ji", numblocks={"x": (5, 4)})
print(layer.cull([("z", 3, 1), ("z", 0, 2), ("z", 2, 2)])[0].name)
"""


def test_culled_name_is_the_same_in_another_process() -> None:
    layer = blockwise(max, "z", "ij", "x", "ji", numblocks={"x": (5, 4)})
    here = layer.cull([("z", 2, 2), ("z", 3, 1), ("z", 0, 2)])[0].name
    env = {**os.environ, "PYTHONHASHSEED": "12345"}
    out = subprocess.run(
        [sys.executable, "-c", CULL_NAME_SCRIPT],
        capture_output=True,
        text=True,
        check=True,
        env=env,
        cwd=Path(__file__).parent.parent,
    )
    assert out.stdout.strip() == here


def test_graph_cull_builds_no_task(count_builds: list[int]) -> None:
    x = blockwise(collect, "x", "ij", BlockIndex((3, 4)), "ji", 0, None)
    y = blockwise(collect, "y", "ij", "x", "ji", numblocks={"x": (4, 3)})
    z = blockwise(collect, "z", "i", "y", "ij", numblocks={"y": (3, 4)})
    g = hlg.HighLevelGraph({"x": x, "y": y, "z": z}, {"y": ["x"], "z": ["y"]})
    small = hlg.cull(g, [("z", 1)])
    assert count_builds[0] == 0
    assert sorted(small) == sorted(
        [("z", 1), *[("y", 1, j) for j in range(4)], *[("x", j, 1) for j in range(4)]]
    )
    assert {layer.output for layer in small.layers.values()} == {"x", "y", "z"}
    assert all("-cull-" in name for name in small.layers)
    assert count_builds[0] == 0
    assert hlg.get(small, ("z", 1)) == hlg.get(g, ("z", 1))


def test_culled_layer_in_a_graph() -> None:
    x = blockwise(collect, "x", "i", BlockIndex((4,)), "i")
    y = blockwise(first_plus, "y", "i", "x", "i", 1, None, numblocks={"x": (4,)})
    g = hlg.HighLevelGraph({"x": x, "y": y}, {"y": ["x"]})
    small = hlg.cull(g, [("y", 2)])
    assert sorted(small) == [("x", 2), ("y", 2)]
    assert hlg.get(small, ("y", 2)) == 3
    assert all(name != "y" and name != "x" for name in small.layers)


def test_materialize_equals_per_key_build() -> None:
    for layer in sample_layers():
        assert layer.materialize() == {k: layer[k] for k in layer}
        culled, _ = layer.cull(list(layer)[1:3])
        assert culled.materialize() == {k: layer[k] for k in list(layer)[1:3]}


@pytest.mark.parametrize("dumps", [pickle.dumps, cloudpickle.dumps])
def test_pickle_round_trip(dumps: Any) -> None:
    for layer in [*sample_layers(), layers.InputLayer("read", str.upper, ["a", "b"])]:
        annotated = layer.with_annotations(priority=3)
        for original in (annotated, annotated.cull(list(annotated)[:1])[0]):
            copy = pickle.loads(dumps(original))
            assert type(copy) is type(original)
            assert copy.name == original.name and copy.kind == original.kind
            assert copy.annotations == original.annotations == {"priority": 3}
            assert list(copy) == list(original)
            assert copy.materialize() == original.materialize()


def test_fill_counts_the_built_tasks(monkeypatch: pytest.MonkeyPatch) -> None:
    # wrapping the template's fill methods is another way to see that nothing is built
    calls: list[str] = []
    for method in ("fill", "keys_filler", "_fill_general"):
        real = getattr(ArgSpec, method)

        def wrapper(self: ArgSpec, *args: Any, _real: Any = real, _m: str = method) -> Any:
            calls.append(_m)
            return _real(self, *args)

        monkeypatch.setattr(ArgSpec, method, wrapper)
    layer = blockwise(collect, "z", "i", "x", "ij", numblocks={"x": (2, 3)})
    calls.clear()
    len(layer), list(layer), layer.dependencies(("z", 0)), layer.cull([("z", 1)])
    assert calls == []
    layer[("z", 0)]
    assert calls


def test_mul_with_block_index_provider() -> None:
    layer = blockwise(mul, "z", "i", BlockIndex((3,)), "i", 2, None)
    assert [layer[k]({}) for k in layer] == [(0, 0), (1, 1), (2, 2)]


def test_concatenate_axes_refuses_nesting_deeper_than_its_axes() -> None:
    a = np.ones((2, 2))
    with pytest.raises(ValueError, match="nested deeper than the 1 axes given"):
        concatenate_axes([[a, a], [a, a]], [0])  # numpy would add a dimension silently
    with pytest.raises(ValueError, match="expected lists nested 2 deep"):
        concatenate_axes([a, a], [0, 1])
    assert concatenate_axes([[a, a], [a, a]], [1, 0]).shape == (4, 4)


@given(
    st.sampled_from(["ij", "ji", "i", "j"]),
    st.sampled_from(["ij", "ji"]),
    st.integers(1, 3),
    st.integers(1, 3),
    st.booleans(),
)
def test_the_mapping_path_builds_what_the_template_builds(
    first: str, second: str, n: int, m: int, cull: bool
) -> None:
    """dict(layer), materialize() and layer[key] take shortcuts; the oracle is the
    template filled with each task's input keys, the general path."""
    dims = {"i": n, "j": m}
    nb = {"x": tuple(dims[c] for c in first), "y": tuple(dims[c] for c in second)}
    layer = blockwise(add, "z", "ij", "x", first, "y", second, numblocks=nb)
    if cull:
        layer = layer.cull([("z", 0, 0)])[0]
    expected = {}
    for _, i, j in [(None, i, j) for i in range(n) for j in range(m)]:
        if cull and (i, j) != (0, 0):
            continue
        coords = {"i": i, "j": j}
        x_key = ("x", *[coords[c] for c in first])
        y_key = ("y", *[coords[c] for c in second])
        expected[("z", i, j)] = Task(("z", i, j), add, TaskRef(x_key), TaskRef(y_key))
    assert dict(layer) == layer.materialize() == expected
    assert {k: layer[k] for k in expected} == expected
    if cull and (n, m) != (1, 1):
        outside = ("z", n - 1, m - 1)
        with pytest.raises(KeyError):
            layer[outside]


def test_function_keywords_named_like_layer_options_reach_the_function() -> None:
    def label(block: Any, name: str = "?", annotations: Any = None) -> str:
        return f"{name}/{annotations}: {block}"

    layer = blockwise(
        label, "n", "i", "x", "i", numblocks={"x": (2,)}, name="x", annotations={"a": 1}
    )
    assert layer.name == "n" and dict(layer.annotations) == {}
    assert hlg.get({**layer, ("x", 1): hlg.DataNode(("x", 1), 7)}, ("n", 1)) == "x/{'a': 1}: 7"
    renamed = blockwise(
        label,
        "n",
        "i",
        "x",
        "i",
        numblocks={"x": (2,)},
        layer_name="L",
        layer_annotations={"retries": 1},
        name="y",
    )
    assert renamed.name == "L" and dict(renamed.annotations) == {"retries": 1}
    assert renamed[("n", 0)].kwargs == {"name": "y"}


def test_func_kwargs_passes_keywords_spelled_like_builder_options() -> None:
    def f(block: Any, numblocks: int = 0, func_kwargs: int = 0) -> tuple[Any, int, int]:
        return block, numblocks, func_kwargs

    layer = blockwise(
        f, "z", "i", "x", "i", numblocks={"x": (2,)}, func_kwargs={"numblocks": 5, "func_kwargs": 6}
    )
    assert layer[("z", 0)].kwargs == {"numblocks": 5, "func_kwargs": 6}
    with pytest.raises(
        TypeError, match=r"keywords \['scale'\] given both directly and in func_kwargs"
    ):
        blockwise(f, "z", "i", "x", "i", numblocks={"x": (2,)}, scale=1, func_kwargs={"scale": 2})


def test_layer_options_given_the_old_way_are_refused_when_func_cannot_take_them() -> None:
    with pytest.raises(TypeError, match=r"keyword 'name' goes to 'add', .*layer_name="):
        blockwise(add, "z", "i", "x", "i", numblocks={"x": (2,)}, name="z-layer")
    with pytest.raises(
        TypeError, match=r"keyword 'annotations' goes to 'neg', .*layer_annotations="
    ):
        blockwise(operator.neg, "z", "i", "x", "i", numblocks={"x": (2,)}, annotations={"a": 1})


def test_numblocks_not_a_sequence_names_the_argument() -> None:
    with pytest.raises(
        TypeError, match=r"blockwise: numblocks\['x'\] must be a sequence of block counts.*got 2"
    ):
        blockwise(add, "z", "i", "x", "i", numblocks={"x": 2})
    with pytest.raises(TypeError, match=r"numblocks must map each input name .*got \[2\]"):
        blockwise(add, "z", "i", "x", "i", numblocks=[2])  # type: ignore[arg-type]


def test_zero_dimensional_output_key_is_a_one_item_tuple() -> None:
    total = blockwise(sum, "total", "", "x", "i", numblocks={"x": (3,)})
    assert list(total) == [("total",)] and "total" not in total
