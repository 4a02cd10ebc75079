"""Scheduler-side safety of the shuffle and tree-reduction kinds (as test_pack_safety.py
does for the others): no unpickling, a scheduler process without the user's module,
crafted and fuzzed states raising PackError only, and Limits bounding n and k."""

from __future__ import annotations

import functools
import json
import uuid
from pathlib import Path
from typing import Any

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st
from test_pack_safety import (
    FUZZ,
    TREE_EDIT,
    _edit,
    _fix_blob_ids,
    _paths,
    _run,
    bw,
    check_contract,
    enc,
    envelope,
    layer,
    mutate_bytes,
    no_unpickling,
    peak_memory,
    timed,
    unpack_error,
)

import hlg
from hlg import HighLevelGraph, layers


def split_mod(part: list[int], k: int, s: int) -> list[list[int]]:
    pieces: list[list[int]] = [[] for _ in range(k)]
    for x in part:
        pieces[x % 11 // k**s % k].append(x)
    return pieces


def join(pieces: list[list[int]]) -> list[int]:
    return [x for p in pieces for x in p]


def make(i: tuple[int, ...]) -> list[int]:
    return [i[0] * 7 + j for j in range(3)]


def total(values: list[int]) -> int:
    return sum(values)


def g_shuffle() -> HighLevelGraph:
    src = layers.blockwise(make, "src", "i", layers.BlockIndex((13,)), "i")
    shuf = layers.Shuffle("sh", "src", 13, 11, split_mod, join, max_branch=3)
    red = layers.TreeReduction("red", "sh", 11, len, total, total, split_every=3)
    return HighLevelGraph({"src": src, "sh": shuf, "red": red}, {"sh": ["src"], "red": ["sh"]})


CASES: dict[str, Any] = {
    "shuffle-and-reduction": None,
    "shuffle-culled": [("sh", 4), ("sh", 10)],
    "reduction-subtree": [("red-combine", 1, 2)],
    "everything": [("red", 0), ("sh", 0)],
}


@pytest.mark.parametrize("case", list(CASES))
def test_scheduler_side_never_unpickles(case: str, monkeypatch: pytest.MonkeyPatch) -> None:
    graph = g_shuffle()
    keys = CASES[case]
    data = hlg.pack(graph, keys)
    reference = graph if keys is None else graph.cull(keys)
    wanted = reference.output_keys() if keys is None else keys
    expected = {key: reference.key_dependencies(key) for key in reference}
    with no_unpickling(monkeypatch):
        packed = hlg.unpack(data)
        assert set(packed) == set(expected) and len(packed) == len(expected)
        for key in packed:
            assert packed[key].dependencies == expected[key] == packed.dependencies(key)
        order = hlg.toposort(packed, wanted)
        assert set(order) == set(hlg.toposort(reference, wanted))
        packed.cull(wanted)
        table = packed.describe()
        assert all(layer.kind in table for layer in packed.layers.values())
        assert {layer.kind for layer in packed.layers.values()} >= {"shuffle"} or case.startswith(
            "reduction"
        )
    assert hlg.get(packed, wanted) == hlg.get(graph, wanted)


USERFUNCS = """
def split(part, k, s):
    pieces = [[] for _ in range(k)]
    for x in part:
        pieces[x % 5 // k**s % k].append(x)
    return pieces

def join(pieces):
    return [x for p in pieces for x in p]

def make(i):
    return [i[0] * 3 + j for j in range(4)]

def total(values):
    return sum(values)
"""

CLIENT = """
import json, sys
import hlg
from hlg import layers
import {mod} as uf
src = layers.blockwise(uf.make, "src", "i", layers.BlockIndex((9,)), "i")
sh = layers.Shuffle("sh", "src", 9, 5, uf.split, uf.join, max_branch=2)
red = layers.TreeReduction("red", "sh", 5, len, uf.total, uf.total, split_every=2)
g = hlg.HighLevelGraph({{"src": src, "sh": sh, "red": red}}, {{"sh": ["src"], "red": ["sh"]}})
keys = [("red", 0), ("sh", 3)]
with open(sys.argv[1], "wb") as f:
    f.write(hlg.pack(g, keys))
print(json.dumps({{
    "result": hlg.get(g, keys),
    "deps": {{repr(k): sorted(map(repr, g.key_dependencies(k))) for k in g.cull(keys)}},
}}))
"""

SCHEDULER = """
import importlib.util, json, sys
def hook(event, args):
    if event.startswith("pickle."):
        raise SystemExit(f"scheduler unpickled something: {{event}} {{args}}")
sys.addaudithook(hook)
assert importlib.util.find_spec("{mod}") is None
import hlg
with open(sys.argv[1], "rb") as f:
    packed = hlg.unpack(f.read())
deps = {{repr(k): sorted(map(repr, packed.dependencies(k))) for k in packed}}
order = hlg.toposort(packed, packed.output_keys)
assert "{mod}" not in sys.modules
print(json.dumps({{"deps": deps, "kinds": sorted(l.kind for l in packed.layers.values())}}))
"""

WORKER = """
import json, sys
import hlg
with open(sys.argv[1], "rb") as f:
    packed = hlg.unpack(f.read())
print(json.dumps(hlg.get(packed, packed.output_keys)))
"""


def test_scheduler_process_without_user_code(tmp_path: Path) -> None:
    mod = f"userfuncs_{uuid.uuid4().hex[:12]}"
    mods = tmp_path / "mods"
    mods.mkdir()
    (mods / f"{mod}.py").write_text(USERFUNCS)
    run = tmp_path / "run"
    run.mkdir()
    data = tmp_path / "graph.bin"
    client = json.loads(_run(CLIENT.format(mod=mod), data, run, mods))
    scheduler = json.loads(_run(SCHEDULER.format(mod=mod), data, run, None))
    assert scheduler["deps"] == client["deps"]
    assert scheduler["kinds"] == ["blockwise", "shuffle", "tree-reduction"]
    worker = json.loads(_run(WORKER, data, run, mods))
    assert worker == client["result"]


# -- crafted states -------------------------------------------------------------------------

SOURCE = layer("x", "blockwise", bw("x", args=[("block-index", [4], ["i"])]))


def shuffle(
    name: str = "y",
    nin: Any = 4,
    nout: Any = 4,
    max_branch: Any = 2,
    template: Any = 0,
    parts_out: Any = None,
    output: Any = None,
    input_name: Any = "x",
    deps: Any = ("x",),
) -> list[Any]:
    state = [
        name if output is None else output,
        input_name,
        nin,
        nout,
        max_branch,
        template,
        parts_out,
    ]
    return layer(name, "shuffle", state, deps=deps)


def tree(
    name: str = "r",
    n: Any = 4,
    every: Any = 2,
    template: Any = 0,
    roots: Any = None,
    input_name: Any = "x",
    deps: Any = ("x",),
) -> list[Any]:
    return layer(name, "tree-reduction", [name, input_name, n, every, template, roots], deps=deps)


def test_crafted_states_are_valid() -> None:
    packed = hlg.unpack(envelope([SOURCE, shuffle(), tree()]))
    assert len(packed) == 4 + len(layers.Shuffle("y", "x", 4, 4, list, list, 2)) + 7
    assert packed.dependencies(("y-split", 1, 3)) == {("y-split", 0, 2), ("y-split", 0, 3)}
    culled = hlg.unpack(envelope([SOURCE, shuffle(parts_out=[1]), tree(roots=[[1, 1]])]))
    assert ("y", 1) in culled and ("y", 0) not in culled and ("r-chunk", 3) in culled


BAD: dict[str, tuple[list[Any], str]] = {
    "shuffle-state-short": ([SOURCE, layer("y", "shuffle", ["y", "x", 4])], "malformed state"),
    "shuffle-nin-zero": ([SOURCE, shuffle(nin=0)], "npartitions_in 0 out of bounds"),
    "shuffle-nout-negative": ([SOURCE, shuffle(nout=-3)], "npartitions_out -3 out of bounds"),
    "shuffle-nin-bool": ([SOURCE, shuffle(nin=True)], "malformed state"),
    "shuffle-nin-float": ([SOURCE, shuffle(nin=4.0)], "malformed state"),
    "shuffle-branch-one": ([SOURCE, shuffle(max_branch=1)], "max_branch 1 must be >= 2"),
    "shuffle-template-range": ([SOURCE, shuffle(template=3)], "blob reference 3 out of range"),
    "shuffle-parts-out-range": ([SOURCE, shuffle(parts_out=[4])], "kept output partition 4"),
    "shuffle-parts-out-negative": ([SOURCE, shuffle(parts_out=[-1])], "kept output partition -1"),
    "shuffle-parts-out-str": ([SOURCE, shuffle(parts_out=["a"])], "malformed state"),
    "shuffle-empty-name": ([SOURCE, shuffle(output="", name="y")], "empty output"),
    "shuffle-reads-itself": ([SOURCE, shuffle(input_name="y-split")], "its own keys"),
    "shuffle-input-missing": ([shuffle(deps=())], "reads 'x', which no layer it depends on"),
    "shuffle-input-too-small": ([SOURCE, shuffle(nin=5)], "has 4"),
    "shuffle-input-not-a-dep": (
        [SOURCE, layer("z", "materialized", []), shuffle(deps=["z"])],
        "no layer it depends on",
    ),
    "tree-state-dict": ([SOURCE, layer("r", "tree-reduction", {"a": 1})], "malformed state"),
    "tree-split-every-one": ([SOURCE, tree(every=1)], "split_every 1 must be >= 2"),
    "tree-n-zero": ([SOURCE, tree(n=0)], "npartitions 0 out of bounds"),
    "tree-root-range": ([SOURCE, tree(roots=[[5, 0]])], "is not a node of the tree"),
    "tree-root-bool": ([SOURCE, tree(roots=[[True, 0]])], "malformed state"),
    "tree-input-too-small": ([SOURCE, tree(n=9)], "has 4"),
    "tree-template-range": ([SOURCE, tree(template=-1)], "out of range"),
}


@pytest.mark.parametrize("case", list(BAD))
def test_bad_states_raise_pack_error(case: str) -> None:
    records, fragment = BAD[case]
    err = unpack_error(envelope(records))
    assert fragment in str(err), f"{case}: {err}"


HUGE: dict[str, tuple[list[Any], hlg.Limits | None]] = {
    "shuffle-n-1e12": ([SOURCE, shuffle(nin=10**12, nout=10**12)], None),
    "shuffle-tasks-beyond-limit": (
        [SOURCE, shuffle(nin=4, nout=10**6, max_branch=2)],
        hlg.Limits(max_tasks=10**6),
    ),
    "shuffle-k-1e7": ([SOURCE, shuffle(nin=4, nout=10**7, max_branch=2**62)], None),
    "shuffle-fan-in-beyond-limit": (
        [SOURCE, shuffle(nin=4, nout=5000, max_branch=5000)],
        hlg.Limits(max_tasks=1000),
    ),
    "tree-n-1e12": ([SOURCE, tree(n=10**12)], None),
    "tree-n-beyond-limit": ([SOURCE, tree(n=10**6)], hlg.Limits(max_tasks=10**6)),
}


@pytest.mark.parametrize("case", list(HUGE))
def test_declared_sizes_beyond_limits_fail_fast(case: str) -> None:
    records, limits = HUGE[case]
    data = envelope(records)
    with peak_memory(20 * 10**6, 2.0):
        err = unpack_error(data, limits)
    assert "limit" in str(err) or "bounds" in str(err) or "beyond" in str(err), str(err)


def test_large_n_unpacks_in_o_message() -> None:
    """A 10**5-partition shuffle declared in a few bytes unpacks without per-key work."""
    n = 10**5
    src = layer("x", "blockwise", bw("x", args=[("block-index", [n], ["i"])]))
    data = envelope([src, shuffle(nin=n, nout=n, max_branch=32)])
    with peak_memory(5 * 10**6, 2.0):
        packed = hlg.unpack(data)
    assert len(packed) == n + len(layers.Shuffle("y", "x", n, n, list, list))


# -- fuzzing --------------------------------------------------------------------------------


@functools.cache
def packs() -> tuple[bytes, ...]:
    g = g_shuffle()
    return (
        hlg.pack(g),
        hlg.pack(g, [("sh", 4), ("sh", 10)]),
        hlg.pack(g, [("red-combine", 1, 2)]),
        envelope([SOURCE, shuffle(parts_out=[0, 3]), tree(roots=[[1, 0]])]),
    )


BYTE_MUTATIONS = st.lists(
    st.tuples(st.just("flip"), st.integers(0, 2**16), st.integers(0, 7))
    | st.tuples(st.just("set"), st.integers(0, 2**16), st.integers(0, 255)),
    min_size=1,
    max_size=4,
)


@FUZZ
@given(base=st.integers(0, 3), mutations=BYTE_MUTATIONS)
def test_fuzz_byte_mutations(base: int, mutations: list[tuple[Any, ...]]) -> None:
    data = mutate_bytes(packs()[base], mutations)
    timed(lambda: check_contract(data))


STATE_VALUES = st.one_of(
    st.integers(-3, 40),
    st.sampled_from([0, 1, 2, 10**6, 10**9, 2**62, -(2**63), 2**64 - 1]),
    st.none(),
    st.booleans(),
    st.sampled_from(["x", "y", "sh", "src", "red", "sh-split", "red-chunk", ""]),
    st.lists(st.integers(-2, 20), max_size=4),
    st.lists(st.lists(st.integers(-1, 5), max_size=3), max_size=3),
)


@FUZZ
@given(
    base=st.integers(0, 3),
    field=st.integers(0, 6),
    which=st.integers(0, 2),
    value=STATE_VALUES,
    edits=st.lists(TREE_EDIT, max_size=2),
)
def test_fuzz_state_fields(
    base: int, field: int, which: int, value: Any, edits: list[tuple[str, int, Any]]
) -> None:
    """Replace one field of a shuffle or tree-reduction state, then maybe more edits."""
    tree_ = msgspec.msgpack.decode(packs()[base])
    records = [r for r in tree_[1][3] if r[1] in ("shuffle", "tree-reduction")]
    state = records[which % len(records)][5]
    state[field % len(state)] = value
    for op, where, new in edits:
        paths = list(_paths(tree_))
        tree_ = _edit(tree_, paths[where % len(paths)], op, new)
    _fix_blob_ids(tree_)
    data = enc(tree_)
    timed(lambda: check_contract(data))
