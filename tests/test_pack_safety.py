"""Safety of packed graphs on the scheduler side (DESIGN §7, docs/protocol.md).

1. ``hlg.unpack`` and everything a scheduler does with a ``PackedGraph`` (iterate, look
   up, dependencies, cull, toposort, describe) never unpickles: checked with every
   unpickling entry point patched to fail and an audit hook on ``pickle.find_class``.
2. The same, across processes: a scheduler process that cannot import the user's module
   expands the graph; a worker process that can computes the right result.
3. Bad input raises ``hlg.PackError`` — and nothing else — naming the problem, and
   declared sizes beyond the limits fail before anything is allocated for them.
4. Fuzzing (hypothesis): mutated packs either unpack or raise ``PackError``.

The contract checked after a *successful* unpack (the fuzz tests and the bit-flip test):
iterating keys, ``packed[key]``, ``packed.dependencies(key)``, ``len``, ``in``,
``output_keys``, ``describe`` and ``repr`` raise nothing at all — each layer answers them
from its own state, so an exception there means unpack accepted a layer it cannot
describe. Culling and ``toposort`` over the unpacked keys may raise ``hlg.CycleError``
(a cycle among the keys of one materialized layer is a property of the graph, which a
client can pack as well; finding one costs O(keys), so unpack leaves it to the
scheduler's ordering), but never ``MissingKeyError``: a key that reads a key no layer
produces is bad input that unpack must report as ``PackError``.
"""

from __future__ import annotations

import _pickle
import contextlib
import functools
import hashlib
import io
import itertools
import json
import operator
import os
import pickle
import random
import subprocess
import sys
import time
import tracemalloc
import uuid
import warnings
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import cloudpickle
import msgspec
import numpy as np
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

import hlg
import hlg._blobs
import hlg._pack
from hlg import (
    Alias,
    DataNode,
    GraphNode,
    HighLevelGraph,
    Layer,
    MaterializedLayer,
    PackError,
    Task,
    TaskRef,
    layers,
)

# -- user functions (pickled by reference: this module is importable in this process) ------


def inc(x: int) -> int:
    return x + 1


def kwcall(a: int, *, scale: int, extra: list[int]) -> int:
    return a * scale + sum(extra)


def load(path: str, suffix: str = "") -> str:
    return path.upper() + suffix


def combine(
    src: str, idx: tuple[int, ...], shape: tuple[int, ...], slices: Any, val: str, const: int
) -> tuple[Any, ...]:
    return (src, tuple(idx), tuple(shape), tuple((s.start, s.stop) for s in slices), val, const)


def block_array(shape: tuple[int, ...], idx: tuple[int, ...]) -> np.ndarray:
    return np.full(tuple(shape), 10 * idx[0] + idx[1], dtype=np.int64)


def nested_total(blocks: Any) -> int:
    if isinstance(blocks, list):
        return sum(nested_total(b) for b in blocks)
    return int(np.asarray(blocks).sum())


def concat_summary(array: np.ndarray) -> tuple[Any, ...]:
    return (tuple(array.shape), int(array.sum()))


def scaled(idx: tuple[int, ...], *, factor: int, offsets: list[int]) -> int:
    return idx[0] * factor + sum(offsets)


DETONATED: list[str] = []


def detonate(message: str) -> None:
    """What unpickling a ``Boom`` blob runs."""
    DETONATED.append(message)
    raise AssertionError(message)


class Double(GraphNode):
    """A graph node that is neither Task, DataNode nor Alias (packed as runspec "n")."""

    __slots__ = ("key", "source")

    def __init__(self, key: Any, source: Any) -> None:
        self.key = key
        self.source = source

    @property
    def dependencies(self) -> frozenset[Any]:
        return frozenset((self.source,))

    @property
    def dependency_tuple(self) -> tuple[Any, ...]:
        return (self.source,)

    def __call__(self, values: Mapping[Any, Any], /) -> Any:
        return 2 * values[self.source]

    def substitute(self, subs: Mapping[Any, Any], key: Any = None) -> Double:
        return Double(self.key if key is None else key, subs.get(self.source, self.source))


class Squares(Layer):
    """An unregistered Layer subclass: packed through the materialized fallback."""

    kind = "squares"

    def __init__(self, n: int, name: str = "sq") -> None:
        super().__init__(name)
        self.n = n

    def __iter__(self) -> Iterator[Any]:
        return ((self.name, i) for i in range(self.n))

    def __getitem__(self, key: Any) -> GraphNode:
        if key not in self:
            raise KeyError(key)
        return Task(key, pow, key[1], 2)


# -- graphs of every built-in kind ----------------------------------------------------------

CHUNKS = ((2, 3), (4, 1, 2))


def g_materialized() -> HighLevelGraph:
    """Task, DataNode, Alias, a Task.fuse task, kwargs with TaskRefs, two layers."""
    data = MaterializedLayer({"a": DataNode("a", 3), ("d", 0): DataNode(("d", 0), 5)}, "m1")
    inner = Task("i1", operator.mul, TaskRef("a"), 2)
    outer = Task(("f", 0), operator.sub, TaskRef("i1"), TaskRef("c"))
    tasks: dict[Any, GraphNode] = {
        ("b", 0): Task(("b", 0), operator.add, TaskRef("a"), 4),
        "c": Alias("c", ("b", 0)),
        ("f", 0): Task.fuse(inner, outer),
        ("k", 1.5, "z"): Task(
            ("k", 1.5, "z"),
            kwcall,
            TaskRef("a"),
            scale=TaskRef(("b", 0)),
            extra=[TaskRef("c"), 1, TaskRef(("d", 0))],
        ),
    }
    return HighLevelGraph({"m1": data, "m2": MaterializedLayer(tasks, "m2")}, {"m2": ["m1"]})


def g_custom_node() -> HighLevelGraph:
    """A graph node of a user class (runspec kind "n")."""
    nodes = {"a": DataNode("a", 7), "dbl": Double("dbl", "a")}
    return HighLevelGraph({"n": MaterializedLayer(nodes, "n")})


def g_providers() -> HighLevelGraph:
    """An input layer plus a blockwise layer with every provider kind and a constant."""
    src = layers.InputLayer("src", load, ["p0", "p1"], suffix="!")
    comb = layers.blockwise(
        combine,
        "comb",
        "ij",
        "src",
        "i",
        layers.BlockIndex((2, 3)),
        "ij",
        layers.ChunkShape(CHUNKS),
        "ij",
        layers.ArraySlice(CHUNKS),
        "ij",
        layers.BlockValues(["u", "v", "w"]),
        "j",
        7,
        None,
        numblocks={"src": (2,)},
    )
    return HighLevelGraph({"src": src, "comb": comb}, {"comb": ["src"]})


def g_contraction() -> HighLevelGraph:
    """Contraction into lists (one and two levels) and with concatenate=True."""
    x = layers.blockwise(
        block_array, "x", "ij", layers.ChunkShape(CHUNKS), "ij", layers.BlockIndex((2, 3)), "ij"
    )
    nb = {"x": (2, 3)}
    rows = layers.blockwise(nested_total, "rows", "i", "x", "ij", numblocks=nb)
    total = layers.blockwise(nested_total, "all", "", "x", "ij", numblocks=nb)
    cat = layers.blockwise(concat_summary, "cat", "i", "x", "ij", numblocks=nb, concatenate=True)
    return HighLevelGraph(
        {"x": x, "rows": rows, "all": total, "cat": cat},
        {"rows": ["x"], "all": ["x"], "cat": ["x"]},
    )


def g_kwargs() -> HighLevelGraph:
    """A blockwise layer whose kwargs hold TaskRefs (constant dependencies)."""
    scale = MaterializedLayer({"scale": DataNode("scale", 10), "off": DataNode("off", 1)}, "sc")
    kw = layers.blockwise(
        scaled,
        "kw",
        "i",
        layers.BlockIndex((3,)),
        "i",
        factor=TaskRef("scale"),
        offsets=[TaskRef("off"), 100],
    )
    return HighLevelGraph({"sc": scale, "kw": kw}, {"kw": ["sc"]})


def g_input() -> HighLevelGraph:
    return HighLevelGraph({"read": layers.InputLayer("read", load, ["a", "b", "c"])})


def g_fused() -> HighLevelGraph:
    """A layer produced by layers.fuse_blockwise (three layers become one)."""
    src = layers.InputLayer("s", load, ["a", "b", "c", "d"])
    up = layers.blockwise(str.lower, "lo", "i", "s", "i", numblocks={"s": (4,)})
    tag = layers.blockwise(
        operator.add,
        "tag",
        "i",
        "lo",
        "i",
        layers.BlockValues(["1", "2", "3", "4"]),
        "i",
        numblocks={"lo": (4,)},
    )
    g = HighLevelGraph({"s": src, "lo": up, "tag": tag}, {"lo": ["s"], "tag": ["lo"]})
    fused = layers.fuse_blockwise(g, list(tag))
    assert list(fused.layers) == ["tag"], fused.layers
    return fused


def g_fallback() -> HighLevelGraph:
    return HighLevelGraph({"sq": Squares(4)})


GRAPHS: dict[str, tuple[Callable[[], HighLevelGraph], Any]] = {
    "materialized": (g_materialized, None),
    "materialized-culled": (g_materialized, [("f", 0), "c"]),
    "custom-graph-node": (g_custom_node, None),
    "providers": (g_providers, None),
    "providers-culled": (g_providers, [("comb", 1, 2), ("comb", 0, 0)]),
    "contraction": (g_contraction, None),
    "contraction-culled": (g_contraction, [("rows", 1), ("cat", 0)]),
    "kwargs-taskrefs": (g_kwargs, None),
    "input": (g_input, None),
    "input-culled": (g_input, [("read", 2)]),
    "fuse-blockwise": (g_fused, None),
    "unregistered-layer": (g_fallback, [("sq", 1), ("sq", 3)]),
}


def _pack(graph: HighLevelGraph, keys: Any = None) -> bytes:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the fallback's one-time warning
        return hlg.pack(graph, keys)


# -- no unpickling --------------------------------------------------------------------------

_AUDIT: dict[str, Any] = {"active": False, "installed": False, "events": []}


def _audit_hook(event: str, args: tuple[Any, ...]) -> None:
    if _AUDIT["active"] and event.startswith("pickle."):
        _AUDIT["events"].append((event, args))
        raise RuntimeError(f"unpickling on the scheduler side (audit event {event} {args})")


@contextlib.contextmanager
def no_unpickling(monkeypatch: pytest.MonkeyPatch, check: bool = True) -> Iterator[list[str]]:
    """Make every way to unpickle fail, and record any attempt (even a swallowed one);
    with ``check``, fail if there was one."""
    calls: list[str] = []

    def forbid(name: str) -> Callable[..., Any]:
        def refuse(*args: Any, **kwargs: Any) -> Any:
            calls.append(name)
            raise AssertionError(f"{name} called on the scheduler side")

        return refuse

    if not _AUDIT["installed"]:  # audit hooks cannot be removed; this one is inert when off
        sys.addaudithook(_audit_hook)
        _AUDIT["installed"] = True
    with monkeypatch.context() as m:
        for module, attr in [
            (pickle, "loads"),
            (pickle, "load"),
            (pickle, "Unpickler"),
            (_pickle, "loads"),
            (_pickle, "load"),
            (_pickle, "Unpickler"),
            (cloudpickle, "loads"),
            (cloudpickle, "load"),
            (hlg._pack.cloudpickle, "loads"),
            (hlg._blobs.cloudpickle, "loads"),
            (hlg._blobs.Blobs, "load"),
            (hlg._blobs.Blobs, "load_code"),
            (hlg._blobs.Blobs, "filler"),
            (hlg.PackedTask, "unpack"),
        ]:
            m.setattr(module, attr, forbid(f"{getattr(module, '__name__', module)}.{attr}"))
        _AUDIT["events"].clear()
        _AUDIT["active"] = True
        try:
            yield calls
        finally:
            _AUDIT["active"] = False
    calls.extend(event for event, _ in _AUDIT["events"])
    if check:
        assert not calls, calls


def test_the_guard_catches_unpickling(monkeypatch: pytest.MonkeyPatch) -> None:
    """The checks below would notice: each way in is refused and recorded."""
    data = pickle.dumps(inc)
    pure_python = pickle._Unpickler  # not patched: only the audit hook sees it
    packed = hlg.unpack(_pack({"x": DataNode("x", 1)}))
    with no_unpickling(monkeypatch, check=False) as calls:
        for attempt in [
            lambda: pickle.loads(data),
            lambda: cloudpickle.loads(data),
            lambda: hlg._pack.cloudpickle.loads(data),
            lambda: pickle.Unpickler(io.BytesIO(data)),
            lambda: pure_python(io.BytesIO(data)).load(),
            lambda: packed.blobs.load(0),
            lambda: packed["x"].unpack(packed.blobs),
            lambda: hlg.get(packed, "x"),
        ]:
            with pytest.raises((AssertionError, RuntimeError)):
                attempt()
    assert len(calls) == 8, calls  # one record per attempt (the audit event included)
    assert hlg.get(packed, "x") == 1  # and everything is restored afterwards


@pytest.mark.parametrize("case", list(GRAPHS))
def test_scheduler_side_never_unpickles(case: str, monkeypatch: pytest.MonkeyPatch) -> None:
    build, keys = GRAPHS[case]
    graph = build()
    data = _pack(graph, keys)
    reference = graph if keys is None else graph.cull(keys)
    wanted = list(reference.output_keys()) if keys is None else list(keys)
    expected_deps = {key: reference.key_dependencies(key) for key in reference}
    expected_needed = set(hlg.toposort(reference, wanted))

    with no_unpickling(monkeypatch):
        packed = hlg.unpack(data)
        all_keys = list(packed)
        assert len(all_keys) == len(packed) == len(expected_deps)
        assert set(all_keys) == set(expected_deps)
        for key in all_keys:
            assert key in packed
            task = packed[key]
            assert isinstance(task, hlg.PackedTask)
            assert task.key == key
            assert task.dependencies == expected_deps[key], key
            assert packed.dependencies(key) == expected_deps[key], key
        assert set(packed.output_keys) == set(wanted)
        culled = packed.cull(wanted)
        assert set(culled) == expected_needed
        order = hlg.toposort(packed, wanted)
        assert set(order) == expected_needed
        position = {k: i for i, k in enumerate(order)}
        for key in order:  # dependencies first
            assert all(position[d] < position[key] for d in packed.dependencies(key))
        assert set(hlg.toposort(culled, wanted)) == expected_needed
        table = packed.describe()
        for name, packed_layer in packed.layers.items():
            assert name in table
            assert packed_layer.kind in {"materialized", "blockwise", "input"}
            assert packed_layer.kind in table
        assert "PackedGraph" in repr(packed)

    got = hlg.get(packed, wanted)
    want = hlg.get(graph, wanted)
    assert repr(got) == repr(want)  # results are plain data (tuples, ints, str)
    assert got == want


def test_blob_payloads_are_never_touched_by_unpack(monkeypatch: pytest.MonkeyPatch) -> None:
    """Blobs that would run code when unpickled stay inert bytes on the scheduler."""

    class Boom:
        def __reduce__(self) -> Any:
            return (detonate, ("a blob was unpickled",))

    layer = layers.InputLayer("r", load, [Boom(), Boom()])
    graph = HighLevelGraph({"r": layer, "m": MaterializedLayer({"z": DataNode("z", Boom())}, "m")})
    data = _pack(graph)
    with no_unpickling(monkeypatch):
        packed = hlg.unpack(data)
        assert sorted(map(repr, packed)) == sorted(map(repr, graph))
        for key in packed:
            packed.dependencies(key)
            packed[key]
        hlg.toposort(packed, list(packed))
        packed.cull([("r", 1)])
    assert not DETONATED
    with pytest.raises(AssertionError, match="a blob was unpickled"):
        hlg.get(packed, ("r", 0))  # a worker does unpickle it


# -- subprocess proof -----------------------------------------------------------------------

USERFUNCS = '''
"""User code: only the client and the workers can import this module."""


class Param:
    def __init__(self, n):
        self.n = n


def load(param, bias=0):
    return param.n * 100 + bias


def shift(value, idx, by):
    return value + idx[0] + by.n


def total(values):
    return sum(values)


def finish(total, extra, *, scale):
    return (total + extra.n) * scale
'''

CLIENT = """
import json, sys
import hlg
from hlg import layers
import {mod} as uf
from hlg import DataNode, HighLevelGraph, MaterializedLayer, Task, TaskRef

src = layers.InputLayer("src", uf.load, [uf.Param(i) for i in range(4)], bias=1)
sh = layers.blockwise(uf.shift, "sh", "i", "src", "i", layers.BlockIndex((4,)), "i",
                      uf.Param(5), None, numblocks={{"src": (4,)}})
tot = layers.blockwise(uf.total, "tot", "", "sh", "i", numblocks={{"sh": (4,)}})
out = MaterializedLayer({{
    "k": DataNode("k", 3),
    "p": DataNode("p", uf.Param(7)),
    "out": Task("out", uf.finish, TaskRef(("tot",)), TaskRef("p"), scale=TaskRef("k")),
}}, "out")
g = HighLevelGraph({{"src": src, "sh": sh, "tot": tot, "out": out}},
                   {{"sh": ["src"], "tot": ["sh"], "out": ["tot"]}})
fused = layers.fuse_blockwise(g, ["out"])
assert "src" not in fused.layers, list(fused.layers)
with open(sys.argv[1], "wb") as f:
    f.write(hlg.pack(fused, ["out"]))
print(json.dumps({{
    "result": hlg.get(g, ["out"]),
    "fused_result": hlg.get(fused, ["out"]),
    "deps": {{repr(k): sorted(map(repr, fused.key_dependencies(k))) for k in fused}},
    "order": sorted(map(repr, hlg.toposort(fused, ["out"]))),
}}))
"""

SCHEDULER = """
import importlib.util, json, sys

def hook(event, args):
    if event.startswith("pickle."):
        raise SystemExit(f"scheduler unpickled something: {{event}} {{args}}")
sys.addaudithook(hook)

assert importlib.util.find_spec("{mod}") is None, sys.path
try:
    import {mod}
except ModuleNotFoundError:
    pass
else:
    raise SystemExit("the user module is importable in the scheduler process")

import hlg  # the blockwise kinds come from the hlg.layers entry points, not from us
with open(sys.argv[1], "rb") as f:
    packed = hlg.unpack(f.read())
keys = list(packed)
deps = {{repr(k): sorted(map(repr, packed.dependencies(k))) for k in keys}}
for k in keys:
    assert packed[k].key == k
culled = packed.cull(packed.output_keys)
order = hlg.toposort(packed, packed.output_keys)
assert "{mod}" not in sys.modules
assert "hlg.layers" in sys.modules  # loaded through the registry
print(json.dumps({{
    "deps": deps,
    "order": sorted(map(repr, order)),
    "culled": sorted(map(repr, culled)),
    "outputs": list(map(repr, packed.output_keys)),
    "describe": packed.describe(),
}}))
"""

WORKER = """
import json, sys
import hlg
with open(sys.argv[1], "rb") as f:
    packed = hlg.unpack(f.read())
print(json.dumps(hlg.get(packed, ["out"])))
"""


def _run(code: str, arg: Path, cwd: Path, pythonpath: Path | None) -> str:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONSTARTUP")}
    if pythonpath is not None:
        env["PYTHONPATH"] = str(pythonpath)
    proc = subprocess.run(
        [sys.executable, "-c", code, str(arg)],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, f"stdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
    return proc.stdout


def test_scheduler_process_without_user_code(tmp_path: Path) -> None:
    mod = f"userfuncs_{uuid.uuid4().hex[:12]}"
    mods = tmp_path / "mods"
    mods.mkdir()
    (mods / f"{mod}.py").write_text(USERFUNCS)
    run = tmp_path / "run"  # cwd of every process; the user module is not here
    run.mkdir()
    data = tmp_path / "graph.bin"

    client = json.loads(_run(CLIENT.format(mod=mod), data, run, mods))
    assert client["result"] == client["fused_result"]
    assert client["result"] == [((sum(i * 100 + 1 + i + 5 for i in range(4))) + 7) * 3]

    scheduler = json.loads(_run(SCHEDULER.format(mod=mod), data, run, None))
    assert scheduler["deps"] == client["deps"]
    assert scheduler["order"] == client["order"]
    assert scheduler["culled"] == client["order"]
    assert scheduler["outputs"] == ["'out'"]
    assert "blockwise" in scheduler["describe"]

    worker = json.loads(_run(WORKER, data, run, mods))
    assert worker == client["result"]


# -- hand-crafted envelopes -----------------------------------------------------------------

enc = msgspec.msgpack.encode
BLOB = b"an opaque payload, never unpickled"


def blob_id(blob: bytes) -> bytes:
    return hashlib.blake2b(blob, digest_size=16).digest()


def envelope(
    layer_records: list[Any],
    outputs: Any = (),
    blobs: Any = (BLOB,),
    ids: Any = None,
    protocol: Any = 1,
    head: Any = ("0.1.0", "3.11.7", "3.1.3"),
) -> bytes:
    """``[protocol, Envelope]`` laid out as in hlg/_wire.py (and docs/protocol.md)."""
    blobs = list(blobs)
    body = [
        *head,
        list(layer_records),
        [list(o) for o in outputs],
        blobs,
        [blob_id(b) for b in blobs] if ids is None else ids,
    ]
    return enc([protocol, msgspec.Raw(enc(body))])


def layer(
    name: str, kind: str, state: Any, deps: Any = (), version: Any = 1, annotations: Any = None
) -> list[Any]:
    """A LayerRecord: [name, kind, kind_version, deps, annotations, state]."""
    return [name, kind, version, list(deps), annotations or {}, msgspec.Raw(enc(state))]


def bw(
    output: str = "y",
    out_ind: Any = ("i",),
    args: Any = (("block-index", [4], ["i"]),),
    numblocks: Any = None,
    new_axes: Any = None,
    concatenate: bool = False,
    output_blocks: Any = None,
    template: Any = 0,
    nholes: Any = None,
    constant_deps: Any = (),
) -> list[Any]:
    """A blockwise state (kind version 1)."""
    args = [list(a) for a in args]
    return [
        output,
        list(out_ind),
        args,
        numblocks or {},
        new_axes or {},
        concatenate,
        output_blocks,
        template,
        len(args) if nholes is None else nholes,
        list(constant_deps),
    ]


def mat(*rows: Any) -> list[Any]:
    """A materialized state: rows [key, deps, kind, a, b]."""
    return [list(r) for r in rows]


DATA_ROW = ("k", [], "d", 0, None)


def unpack_error(data: Any, limits: hlg.Limits | None = None) -> PackError:
    """The PackError that unpack raises; any other outcome fails the test."""
    try:
        packed = hlg.unpack(data, limits)
    except PackError as err:
        return err
    except Exception as err:  # the point: nothing but PackError
        raise AssertionError(
            f"hlg.unpack raised {type(err).__name__}: {err!r}, not PackError"
        ) from err
    raise AssertionError(f"hlg.unpack accepted bad input: {packed!r} {sorted(map(repr, packed))}")


def test_crafted_envelopes_are_valid() -> None:
    """The helpers build data that unpacks: the failures below are the intended ones."""
    packed = hlg.unpack(
        envelope(
            [
                layer("m", "materialized", mat(DATA_ROW, ("q", ["k"], "a", "k", None))),
                layer("y", "blockwise", bw(constant_deps=["k"]), deps=["m"]),
                layer("r", "input", bw("r", args=[("block-values", [0, 0], ["i"])])),
            ],
            outputs=[("layer", "y"), ("key", "q")],
        )
    )
    assert len(packed) == 2 + 4 + 2
    assert packed.dependencies(("y", 3)) == {"k"}
    assert set(packed.output_keys) == {("y", 0), ("y", 1), ("y", 2), ("y", 3), "q"}
    assert list(hlg.toposort(packed, ["q"])) == ["k", "q"]


DEEP = b"\x91" * 100_000 + b"\xc0"  # [[[...[nil]...]]], 100,000 levels
NESTED_600 = b"\x91" * 600 + b"\x00"  # 600 levels: msgspec decodes it, Python recursion may not

BAD_INPUTS: dict[str, tuple[Any, str]] = {
    # wrong top-level types
    "not-bytes-str": ("abc", "must be bytes"),
    "not-bytes-none": (None, "must be bytes"),
    "not-bytes-list": ([1, 2], "must be bytes"),
    "empty": (b"", "truncated"),
    "msgpack-dict": (enc({"protocol": 1}), "not a packed hlg graph"),
    "msgpack-int": (enc(1), "not a packed hlg graph"),
    "list-of-1": (enc([1]), "not a packed hlg graph"),
    "list-of-3": (enc([1, [], []]), "not a packed hlg graph"),
    "protocol-2": (enc([2, []]), "protocol 2"),
    "protocol-0": (envelope([], protocol=0), "protocol 0"),
    "protocol-str": (enc(["1", []]), "not a packed hlg graph"),
    "protocol-bool": (enc([True, []]), "not a packed hlg graph"),
    "trailing-bytes": (envelope([]) + b"\x00", "not a packed hlg graph"),
    "body-dict": (enc([1, {"layers": []}]), "malformed packed graph"),
    "body-too-short": (enc([1, ["0.1.0", "3.11", "3.1", [], [], []]]), "malformed"),
    "version-not-str": (envelope([], head=(1, "3.11", "3.1")), "malformed"),
    "layers-not-list": (enc([1, ["0.1.0", "3.11", "3.1", {}, [], [], []]]), "malformed"),
    "layer-record-short": (envelope([["m", "materialized", 1, [], {}]]), "malformed"),
    "blobs-not-bytes": (envelope([], blobs=["text"], ids=[b"x" * 16]), "malformed"),
    # kinds and versions
    "unknown-kind": (
        envelope([layer("s", "no-such-kind", [])]),
        "unknown layer kind 'no-such-kind'",
    ),
    "module-path-kind": (
        envelope([layer("s", "os:system", [])]),
        "unknown layer kind 'os:system'",
    ),
    "kind-version-2": (envelope([layer("m", "materialized", [], version=2)]), "version 2"),
    "kind-version-0": (envelope([layer("y", "blockwise", bw(), version=0)]), "version 0"),
    "kind-version-str": (envelope([layer("m", "materialized", [], version="1")]), "malformed"),
    # layer dependencies
    "dep-unknown-layer": (envelope([layer("m", "materialized", [], deps=["zz"])]), "'zz'"),
    "dep-cycle": (
        envelope(
            [layer("a", "materialized", [], deps=["b"]), layer("b", "materialized", [], ["a"])]
        ),
        "depends on 'b'",
    ),
    "dep-self": (envelope([layer("a", "materialized", [], deps=["a"])]), "depends on 'a'"),
    "dep-later-layer": (
        envelope([layer("a", "materialized", [], deps=["b"]), layer("b", "materialized", [])]),
        "depends on 'b'",
    ),
    "duplicate-layer": (
        envelope([layer("a", "materialized", []), layer("a", "materialized", [])]),
        "appears twice",
    ),
    "empty-layer-name": (envelope([layer("", "materialized", [])]), "layer ''"),
    # blobs
    "blob-id-mismatch": (envelope([], blobs=[b"a"], ids=[blob_id(b"b")]), "does not match"),
    "blob-id-count": (envelope([], blobs=[b"a"], ids=[]), "blob ids"),
    "blob-ref-template": (envelope([layer("y", "blockwise", bw(template=1))]), "out of range"),
    "blob-ref-negative": (envelope([layer("y", "blockwise", bw(template=-1))]), "out of range"),
    "blob-ref-huge": (envelope([layer("y", "blockwise", bw(template=2**63))]), "out of range"),
    "blob-ref-no-blobs": (envelope([layer("y", "blockwise", bw())], blobs=[]), "out of range"),
    "blob-ref-task-func": (
        envelope([layer("m", "materialized", mat(("k", [], "t", 3, 0)))]),
        "out of range",
    ),
    "blob-ref-task-args": (
        envelope([layer("m", "materialized", mat(("k", [], "t", 0, 9)))]),
        "out of range",
    ),
    "blob-ref-data": (
        envelope([layer("m", "materialized", mat(("k", [], "d", 1, None)))]),
        "out of range",
    ),
    "blob-ref-node-str": (
        envelope([layer("m", "materialized", mat(("k", [], "n", "0", None)))]),
        "out of range",
    ),
    "blob-ref-block-values": (
        envelope([layer("r", "input", bw("r", args=[("block-values", [0, 3], ["i"])]))]),
        "out of range",
    ),
    "blob-ref-bool": (
        envelope([layer("m", "materialized", mat(("k", [], "d", True, None)))]),
        "out of range",
    ),
    # non-key keys
    "key-bool-item": (
        envelope([layer("m", "materialized", mat((["x", True], [], "d", 0, None)))]),
        "not a key",
    ),
    "key-nested-list": (
        envelope([layer("m", "materialized", mat((["x", [1]], [], "d", 0, None)))]),
        "not a key",
    ),
    "key-float-first": (
        envelope([layer("m", "materialized", mat(([1.5, 0], [], "d", 0, None)))]),
        "not a key",
    ),
    "key-int-first": (
        envelope([layer("m", "materialized", mat(([0, "x"], [], "d", 0, None)))]),
        "not a key",
    ),
    "key-empty-list": (
        envelope([layer("m", "materialized", mat(([], [], "d", 0, None)))]),
        "not a key",
    ),
    "key-int": (envelope([layer("m", "materialized", mat((5, [], "d", 0, None)))]), "not a key"),
    "key-bool": (
        envelope([layer("m", "materialized", mat((True, [], "d", 0, None)))]),
        "not a key",
    ),
    "key-none": (
        envelope([layer("m", "materialized", mat((None, [], "d", 0, None)))]),
        "not a key",
    ),
    "key-bytes": (
        envelope([layer("m", "materialized", mat((b"k", [], "d", 0, None)))]),
        "not a key",
    ),
    "key-too-long": (
        envelope([layer("m", "materialized", mat((["x", *range(300)], [], "d", 0, None)))]),
        "not a key",
    ),
    "dep-key-bool": (
        envelope([layer("m", "materialized", mat(("k", [["x", False]], "d", 0, None)))]),
        "not a key",
    ),
    "deps-not-list": (
        envelope([layer("m", "materialized", mat(("k", "x", "d", 0, None)))]),
        "layer 'm'",
    ),
    "alias-target-bool": (
        envelope([layer("m", "materialized", mat(("k", [True], "a", True, None)))]),
        "not a key",
    ),
    "alias-deps-differ": (
        envelope([layer("m", "materialized", mat(DATA_ROW, ("q", ["z"], "a", "k", None)))]),
        "alias",
    ),
    "constant-dep-bool": (
        envelope([layer("y", "blockwise", bw(constant_deps=[["x", True]]))]),
        "not a key",
    ),
    "output-key-bool": (
        envelope([layer("m", "materialized", mat(DATA_ROW))], outputs=[("key", ["k", True])]),
        "not a key",
    ),
    "output-key-float": (
        envelope([layer("m", "materialized", mat(DATA_ROW))], outputs=[("key", 1.5)]),
        "not a key",
    ),
    "output-layer-list": (envelope([], outputs=[("layer", ["m"])]), "output"),
    "output-layer-dict": (envelope([], outputs=[("layer", {})]), "output"),
    "output-layer-missing": (envelope([], outputs=[("layer", "zz")]), "'zz'"),
    "output-key-missing": (
        envelope([layer("m", "materialized", mat(DATA_ROW))], outputs=[("key", "zz")]),
        "'zz'",
    ),
    "output-entry-kind": (envelope([], outputs=[("module", "os")]), "'module'"),
    # malformed layer states
    "mat-state-dict": (envelope([layer("m", "materialized", {"k": 1})]), "malformed state"),
    "mat-row-short": (envelope([layer("m", "materialized", [["k", [], "d"]])]), "malformed state"),
    "mat-task-kind": (
        envelope([layer("m", "materialized", mat(("k", [], "pickle", 0, None)))]),
        "unknown task kind",
    ),
    "mat-duplicate-key": (
        envelope([layer("m", "materialized", mat(DATA_ROW, DATA_ROW))]),
        "appears twice",
    ),
    "bw-state-list": (envelope([layer("y", "blockwise", [1, 2])]), "malformed state"),
    "bw-arg-kind": (
        envelope([layer("y", "blockwise", bw(args=[("pickle", [4], ["i"])]))]),
        "unknown argument kind",
    ),
    "bw-nholes": (envelope([layer("y", "blockwise", bw(nholes=3))]), "holes"),
    "bw-name-not-str": (
        envelope([layer("y", "blockwise", bw(args=[("name", 5, ["i"])]))]),
        "must be a str",
    ),
    "bw-numblocks-missing": (
        envelope([layer("y", "blockwise", bw(args=[("name", "x", ["i"])]))]),
        "numblocks",
    ),
    "bw-numblocks-zero": (
        envelope([layer("y", "blockwise", bw(args=[("name", "x", ["i"])], numblocks={"x": [0]}))]),
        "numblocks",
    ),
    "bw-numblocks-dims": (
        envelope(
            [layer("y", "blockwise", bw(args=[("name", "x", ["i"])], numblocks={"x": [2, 2]}))]
        ),
        "dimensions",
    ),
    "bw-block-index-bool": (
        envelope([layer("y", "blockwise", bw(args=[("block-index", [True], ["i"])]))]),
        "layer 'y'",
    ),
    "bw-block-index-negative": (
        envelope([layer("y", "blockwise", bw(args=[("block-index", [-3], ["i"])]))]),
        "layer 'y'",
    ),
    "bw-chunks-not-lists": (
        envelope([layer("y", "blockwise", bw(args=[("chunk-shape", [4], ["i"])]))]),
        "chunk",
    ),
    "bw-chunks-negative": (
        envelope([layer("y", "blockwise", bw(args=[("array-slice", [[2, -1]], ["i"])]))]),
        "layer 'y'",
    ),
    "bw-index-mismatch": (
        envelope(
            [
                layer(
                    "y",
                    "blockwise",
                    bw(args=[("block-index", [4], ["i"]), ("block-index", [3], ["i"])]),
                )
            ]
        ),
        "index 'i'",
    ),
    "bw-output-letter-unknown": (envelope([layer("y", "blockwise", bw(out_ind=["z"]))]), "'z'"),
    "bw-output-repeats": (envelope([layer("y", "blockwise", bw(out_ind=["i", "i"]))]), "repeats"),
    "bw-output-block-range": (
        envelope([layer("y", "blockwise", bw(output_blocks=[[4]]))]),
        "out of range",
    ),
    "bw-output-block-dims": (
        envelope([layer("y", "blockwise", bw(output_blocks=[[1, 1]]))]),
        "out of range",
    ),
    "bw-output-block-bool": (
        envelope([layer("y", "blockwise", bw(output_blocks=[[True]]))]),
        "layer 'y'",
    ),
    "bw-new-axis-zero": (
        envelope([layer("y", "blockwise", bw(out_ind=["i", "j"], new_axes={"j": 0}))]),
        "new axis",
    ),
    "bw-new-axis-clash": (envelope([layer("y", "blockwise", bw(new_axes={"i": 2}))]), "new axis"),
    "annotation-bytes": (
        envelope([layer("m", "materialized", [], annotations={"x": b"1"})]),
        "annotation",
    ),
    "annotation-ext": (
        envelope([layer("m", "materialized", [], annotations={"x": msgspec.msgpack.Ext(1, b"")})]),
        "annotation",
    ),
    "annotation-int-key": (
        envelope([layer("m", "materialized", [], annotations={"x": {1: 2}})]),
        "annotation",
    ),
    # encoding-level problems
    "invalid-utf8-version": (
        envelope([]).replace(b"0.1.0", b"\xff.1.0", 1),
        "malformed",
    ),
    "invalid-utf8-layer-name": (
        envelope([layer("mm", "materialized", [])]).replace(b"\xa2mm", b"\xa2\xc3\x28", 1),
        "malformed",
    ),
    "deeply-nested-head": (b"\x92\x01" + DEEP, "deep"),
    "deeply-nested-outputs": (
        b"\x92\x01\x97"
        + enc(["0.1.0", "3.11", "3.1"])[1:]
        + b"\x90"
        + b"\x91\x92\xa3key"
        + DEEP
        + b"\x90\x90",
        "deep",
    ),
    "deeply-nested-state": (
        envelope([["m", "materialized", 1, [], {}, msgspec.Raw(DEEP)]]),
        "deep",
    ),
    "nested-annotations-600": (
        envelope(
            [
                [
                    "m",
                    "materialized",
                    1,
                    [],
                    msgspec.Raw(b"\x81\xa1x" + NESTED_600),
                    msgspec.Raw(enc([])),
                ]
            ]
        ),
        "annotation",
    ),
}


@pytest.mark.parametrize("case", list(BAD_INPUTS))
def test_bad_input_raises_pack_error(case: str) -> None:
    data, fragment = BAD_INPUTS[case]
    err = unpack_error(data)
    # "deep" is satisfied by any PackError (msgspec's message names the depth differently)
    if fragment != "deep":
        assert fragment in str(err), f"{case}: {err}"


def test_limits_are_applied() -> None:
    rows = mat(*[(f"k{i}", [], "d", 0, None) for i in range(11)])
    err = unpack_error(envelope([layer("m", "materialized", rows)]), hlg.Limits(max_tasks=10))
    assert "limit" in str(err)
    many = envelope([layer(f"m{i}", "materialized", []) for i in range(11)])
    assert "limit" in str(unpack_error(many, hlg.Limits(max_layers=10)))
    key = envelope([layer("m", "materialized", mat((["x", 1, 2, 3], [], "d", 0, None)))])
    assert "not a key" in str(unpack_error(key, hlg.Limits(max_key_length=3)))
    two = envelope(
        [
            layer("a", "blockwise", bw("a", args=[("block-index", [6], ["i"])])),
            layer("b", "blockwise", bw("b", args=[("block-index", [6], ["i"])])),
        ]
    )
    assert "more than 10" in str(unpack_error(two, hlg.Limits(max_tasks=10)))
    assert len(hlg.unpack(two, hlg.Limits(max_tasks=12))) == 12


def huge_inputs() -> dict[str, tuple[bytes, hlg.Limits | None]]:
    """Declared sizes beyond the limits; each must fail before allocating for them."""
    big = 10**12
    return {
        "block-index-1e6x1e6": (
            envelope(
                [
                    layer(
                        "y",
                        "blockwise",
                        bw(out_ind=["i", "j"], args=[("block-index", [10**6, 10**6], ["i", "j"])]),
                    )
                ]
            ),
            None,
        ),
        "block-index-1e12-input-kind": (
            envelope([layer("y", "input", bw(args=[("block-index", [big], ["i"])]))]),
            None,
        ),
        "named-input-numblocks-1e12": (
            envelope(
                [layer("y", "blockwise", bw(args=[("name", "x", ["i"])], numblocks={"x": [big]}))]
            ),
            None,
        ),
        "named-input-numblocks-1e6x1e6": (
            envelope(
                [
                    layer(
                        "y",
                        "blockwise",
                        bw(
                            out_ind=[],
                            args=[("name", "x", ["i", "j"])],
                            numblocks={"x": [10**6, 10**6]},
                        ),
                    )
                ]
            ),
            None,
        ),
        "unused-numblocks-1e12": (
            envelope([layer("y", "blockwise", bw(numblocks={"x": [big]}))]),
            None,
        ),
        "new-axis-1e12": (
            envelope([layer("y", "blockwise", bw(out_ind=["i", "j"], new_axes={"j": big}))]),
            None,
        ),
        "new-axes-1e8x1e8": (
            envelope(
                [
                    layer(
                        "y",
                        "blockwise",
                        bw(out_ind=["i", "j", "k"], new_axes={"j": 10**8, "k": 10**8}),
                    )
                ]
            ),
            None,
        ),
        "new-axis-2**63": (
            envelope([layer("y", "blockwise", bw(out_ind=["i", "j"], new_axes={"j": 2**63 - 1}))]),
            None,
        ),
        "chunk-shape-product": (
            envelope(
                [
                    layer(
                        "y",
                        "blockwise",
                        bw(
                            out_ind=["i", "j", "k"],
                            args=[("chunk-shape", [[1] * 1000] * 3, ["i", "j", "k"])],
                        ),
                    )
                ]
            ),
            hlg.Limits(max_tasks=10**8),
        ),
        "contraction-beyond-limit": (
            envelope(
                [layer("y", "blockwise", bw(out_ind=[], args=[("block-index", [10**6], ["i"])]))]
            ),
            hlg.Limits(max_tasks=1000),
        ),
        "materialized-rows-beyond-limit": (
            envelope(
                [
                    layer(
                        "m", "materialized", mat(*[(["k", i], [], "d", 0, None) for i in range(50)])
                    )
                ]
            ),
            hlg.Limits(max_tasks=10),
        ),
    }


@contextlib.contextmanager
def peak_memory(limit: int, seconds: float) -> Iterator[None]:
    tracemalloc.start()
    start = time.perf_counter()
    try:
        yield
    finally:
        elapsed = time.perf_counter() - start
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    assert peak < limit, f"peak allocation {peak / 1e6:.1f} MB"
    assert elapsed < seconds, f"took {elapsed:.2f} s"


@pytest.mark.parametrize("case", list(huge_inputs()))
def test_declared_sizes_beyond_limits_fail_fast(case: str) -> None:
    data, limits = huge_inputs()[case]
    with peak_memory(50 * 10**6, 2.0):
        err = unpack_error(data, limits)
    assert "limit" in str(err) or "bounds" in str(err) or "declares" in str(err), str(err)


@pytest.mark.parametrize(
    ("out_ind", "args"),
    [
        pytest.param([], [("block-index", [50_000], ["j"])], id="contracted-block-index"),
        pytest.param(
            ["i"],
            [("block-index", [1, 1], ["i", "j"]), ("block-index", [50_000], ["j"])],
            id="broadcast-contracted",
        ),
    ],
)
def test_unpack_memory_does_not_grow_with_declared_blocks(out_ind: Any, args: Any) -> None:
    """A ~100-byte layer declaring a contraction over many blocks (within the default
    fan-in limit of 10**5) must not make unpack allocate per declared block: unpack is
    O(message); the one task's 50,000 values are computed only when asked for."""
    data = envelope([layer("y", "blockwise", bw(out_ind=out_ind, args=args))])
    assert len(data) < 200
    with peak_memory(5 * 10**6, 2.0):
        packed = hlg.unpack(data)
    assert len(packed) == 1


# -- references to keys no layer produces ---------------------------------------------------


def _where_missing_reference_surfaces(packed: hlg.PackedGraph) -> str:
    keys = list(packed)
    try:
        for key in keys:
            packed.dependencies(key)
    except Exception as err:
        return f"packed.dependencies raised {err!r}"
    try:
        packed.cull(keys)
    except Exception as err:
        return f"packed.cull raised {type(err).__name__}: {err}"
    try:
        hlg.toposort(packed, keys)
    except Exception as err:
        return f"hlg.toposort raised {type(err).__name__}: {err}"
    return "no scheduler-side operation reported it"


def missing_reference_inputs() -> dict[str, bytes]:
    reader = layers.blockwise(inc, "y", "i", "x", "i", numblocks={"x": (3,)})
    few = layers.blockwise(inc, "x", "i", layers.BlockIndex((2,)), "i")
    return {
        # packed by hlg.pack itself: the client does not check either
        "blockwise-reads-unknown-name": _pack(HighLevelGraph({"y": reader}, {"y": []})),
        "blockwise-reads-missing-block": _pack(
            HighLevelGraph({"x": few, "y": reader.replace()}, {"x": [], "y": ["x"]})
        ),
        "task-reads-unknown-key": _pack(
            {"t": Task("t", inc, TaskRef("nope")), "u": DataNode("u", 1)}
        ),
        "alias-to-unknown-key": _pack({"t": Alias("t", "nope")}),
        "constant-dep-unknown": envelope([layer("y", "blockwise", bw(constant_deps=["nope"]))]),
        "crafted-blockwise-name": envelope(
            [layer("y", "blockwise", bw(args=[("name", "x", ["i"])], numblocks={"x": [4]}))]
        ),
    }


@pytest.mark.parametrize("case", list(missing_reference_inputs()))
def test_reference_to_missing_key_is_pack_error(case: str) -> None:
    """DESIGN §7: bad input raises PackError at unpack, not a KeyError later on."""
    data = missing_reference_inputs()[case]
    try:
        packed = hlg.unpack(data)
    except PackError as err:
        assert "nope" in str(err) or "'x'" in str(err), str(err)
        return
    pytest.fail(
        f"hlg.unpack accepted a graph whose keys read keys no layer produces; "
        f"later, {_where_missing_reference_surfaces(packed)}"
    )


# -- truncation, bit flips, random bytes ----------------------------------------------------


def small_packs() -> dict[str, bytes]:
    mat_graph = {
        "a": DataNode("a", 1),
        ("b", 0): Task(("b", 0), operator.add, TaskRef("a"), 2),
        "c": Alias("c", ("b", 0)),
    }
    x = layers.blockwise(operator.getitem, "x", "i", layers.BlockIndex((4,)), "i", 0, None)
    y = layers.blockwise(operator.mul, "y", "i", "x", "i", 10, None, numblocks={"x": (4,)})
    return {
        "materialized": _pack(mat_graph),
        "blockwise": _pack(HighLevelGraph({"x": x, "y": y}, {"y": ["x"]})),
        "input-culled": _pack(
            HighLevelGraph({"r": layers.InputLayer("r", str.upper, ["a", "b", "c"])}), [("r", 1)]
        ),
    }


@pytest.mark.parametrize("name", ["materialized", "blockwise", "input-culled"])
def test_every_truncation_is_pack_error(name: str) -> None:
    data = small_packs()[name]
    assert hlg.unpack(data)  # the full pack is valid
    for n in range(len(data)):
        err = unpack_error(data[:n])
        assert "truncated" in str(err), (n, str(err))
    err = unpack_error(memoryview(data)[: len(data) // 2])
    assert "truncated" in str(err)


FUZZ_LIMITS = hlg.Limits(max_tasks=2000)  # bounds the work a mutated pack can declare


def exercise(packed: hlg.PackedGraph, max_keys: int = 300) -> None:
    """Everything a scheduler asks of an unpacked graph: must raise nothing at all."""
    n = len(packed)
    assert n >= 0
    for key in itertools.islice(packed, max_keys):
        assert key in packed
        node = packed[key]
        assert node.key == key
        assert packed.dependencies(key) == node.dependencies
    outputs = packed.output_keys
    assert all(k in packed for k in outputs[:max_keys])
    packed.describe()
    repr(packed)


def cull_and_order(packed: hlg.PackedGraph, max_keys: int = 300) -> None:
    """Culling and ordering: only a cycle among one layer's keys may be reported."""
    keys = list(itertools.islice(packed, max_keys))
    try:
        packed.cull(keys)
        hlg.toposort(packed, keys)
    except hlg.CycleError:
        pass


def check_contract(data: bytes, limits: hlg.Limits | None = FUZZ_LIMITS) -> str:
    """Unpack ``data``: PackError, or a graph satisfying :func:`exercise`."""
    try:
        packed = hlg.unpack(data, limits)
    except PackError:
        return "error"
    exercise(packed)
    return "ok"


def _failures(cases: Iterator[tuple[str, bytes]]) -> list[str]:
    found: dict[str, str] = {}
    for label, data in cases:
        try:
            check_contract(data)
        except Exception as err:
            found.setdefault(f"{type(err).__name__}", f"{label}: {err!r}; data={data!r}")
    return [f"{k}: {v}" for k, v in found.items()]


@pytest.mark.parametrize("name", ["materialized", "blockwise", "input-culled"])
def test_every_bit_flip_is_pack_error_or_valid(name: str) -> None:
    data = small_packs()[name]

    def flips() -> Iterator[tuple[str, bytes]]:
        for i in range(len(data)):
            for bit in range(8):
                mutated = bytearray(data)
                mutated[i] ^= 1 << bit
                yield f"byte {i} bit {bit}", bytes(mutated)

    failures = _failures(flips())
    assert not failures, "\n".join(failures)


def test_random_bytes_are_pack_errors() -> None:
    rng = random.Random(20240611)
    prefixes = [b"", b"\x92\x01", b"\x92\x01\x97", b"\x92\x01\x97\xa50.1.0\xa43.11\xa33.1"]

    def cases() -> Iterator[tuple[str, bytes]]:
        for i in range(3000):
            prefix = prefixes[i % len(prefixes)]
            tail = rng.randbytes(rng.randrange(0, 64))
            yield f"random #{i}", prefix + tail

    failures = _failures(cases())
    assert not failures, "\n".join(failures)


# -- fuzzing --------------------------------------------------------------------------------

FUZZ_EXAMPLES = settings.default.max_examples  # 100 in "ci", 10,000 in "thorough"
FUZZ = settings(
    max_examples=FUZZ_EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
HANG_SECONDS = 5.0


@functools.cache
def fuzz_packs() -> tuple[bytes, ...]:
    a = g_materialized()
    b = g_providers()
    c = g_contraction()
    packs = [
        _pack(a),
        _pack(a, [("f", 0)]),
        _pack(b),
        _pack(b, [("comb", 1, 2)]),
        _pack(c),
        _pack(g_kwargs()),
        _pack(g_fused()),
        *small_packs().values(),
    ]
    return tuple(packs)


POS = st.integers(0, 2**16)
BYTE_MUTATION = st.one_of(
    st.tuples(st.just("flip"), POS, st.integers(0, 7)),
    st.tuples(st.just("set"), POS, st.integers(0, 255)),
    st.tuples(st.just("insert"), POS, st.binary(min_size=1, max_size=8)),
    st.tuples(st.just("delete"), POS, st.integers(1, 16)),
    st.tuples(st.just("truncate"), POS),
    st.tuples(st.just("splice"), st.integers(0, 100), POS, POS),
)


def mutate_bytes(data: bytes, mutations: list[tuple[Any, ...]]) -> bytes:
    out = bytearray(data)
    packs = fuzz_packs()
    for op, *args in mutations:
        n = max(len(out), 1)
        if op == "flip" and out:
            out[args[0] % n] ^= 1 << args[1]
        elif op == "set" and out:
            out[args[0] % n] = args[1]
        elif op == "insert":
            i = args[0] % (len(out) + 1)
            out[i:i] = args[1]
        elif op == "delete":
            i = args[0] % n
            del out[i : i + args[1]]
        elif op == "truncate":
            del out[args[0] % n :]
        elif op == "splice":
            other = packs[args[0] % len(packs)]
            out = out[: args[1] % n] + other[args[2] % len(other) :]
    return bytes(out)


def timed(check: Callable[[], Any]) -> Any:
    start = time.perf_counter()
    result = check()
    elapsed = time.perf_counter() - start
    assert elapsed < HANG_SECONDS, f"one example took {elapsed:.1f} s"
    return result


@FUZZ
@given(base=st.integers(0, 100), mutations=st.lists(BYTE_MUTATION, min_size=1, max_size=4))
@example(base=0, mutations=[("flip", 4, 7)])  # hlg_version "0.1.0" -> b"\xb0.1.0"
def test_fuzz_byte_mutations(base: int, mutations: list[tuple[Any, ...]]) -> None:
    packs = fuzz_packs()
    data = mutate_bytes(packs[base % len(packs)], mutations)
    timed(lambda: check_contract(data))


# Structured mutations get past the blob checks and the msgpack layer: decode a valid
# pack to plain data, replace / delete / duplicate one node, re-encode, fix the blob ids.

WIRE_SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-3, 12),
    st.sampled_from([10**4, 10**5, 10**9, 10**12, 2**63 - 1, -(2**63), 2**64 - 1, -(10**6)]),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from(
        [
            "",
            "x",
            "y",
            "i",
            "j",
            "a",
            "b",
            "c",
            "k",
            "m1",
            "m2",
            "src",
            "comb",
            "x-cull",
            "layer",
            "key",
            "name",
            "block-index",
            "chunk-shape",
            "array-slice",
            "block-values",
            "t",
            "d",
            "n",
            "materialized",
            "blockwise",
            "input",
        ]
    ),
    st.text(max_size=4),
    st.binary(max_size=4),
)
WIRE_VALUES = st.recursive(
    WIRE_SCALARS,
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(
            st.sampled_from(["x", "i", "j", "src", "a"]) | st.text(max_size=2), inner, max_size=3
        )
    ),
    max_leaves=8,
)


def _paths(obj: Any, path: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    yield path
    if isinstance(obj, list):
        for i, item in enumerate(obj):
            yield from _paths(item, (*path, i))
    elif isinstance(obj, dict):
        for k, item in obj.items():
            yield from _paths(item, (*path, k))


def _edit(tree: Any, path: tuple[Any, ...], op: str, value: Any) -> Any:
    if not path:
        return value if op == "replace" else tree
    parent = tree
    for p in path[:-1]:
        parent = parent[p]
    last = path[-1]
    if op == "replace":
        parent[last] = value
    elif op == "delete":
        del parent[last]
    elif op == "duplicate" and isinstance(parent, list):
        parent.insert(last, parent[last])
    return tree


def _fix_blob_ids(tree: Any) -> None:
    with contextlib.suppress(Exception):
        body = tree[1]
        if isinstance(body[5], list) and all(type(b) is bytes for b in body[5]):
            body[6] = [blob_id(b) for b in body[5]]


TREE_EDIT = st.tuples(
    st.sampled_from(["replace", "replace", "delete", "duplicate"]),
    st.integers(0, 10**6),
    WIRE_VALUES,
)


def _path_index(base: int, path: tuple[Any, ...]) -> int:
    """Where ``path`` is in the node order of :func:`_paths` (for explicit examples)."""
    paths = list(_paths(msgspec.msgpack.decode(fuzz_packs()[base])))
    return paths.index(path) if path in paths else 0


# Pack 0 is g_materialized(): body = tree[1]; body[3][0] is layer "m1", whose state
# (index 5) holds the rows of "a" and ("d", 0); body[4][0] is the output ["layer", "m2"].
OUTPUT_VALUE = _path_index(0, (1, 4, 0, 1))
ROW_D0 = _path_index(0, (1, 3, 0, 5, 1))


def mutate_tree(data: bytes, edits: list[tuple[str, int, Any]], fix_ids: bool) -> bytes:
    tree = msgspec.msgpack.decode(data)
    for op, where, value in edits:
        paths = list(_paths(tree))
        tree = _edit(tree, paths[where % len(paths)], op, value)
    if fix_ids:
        _fix_blob_ids(tree)
    return enc(tree)


@FUZZ
@given(
    base=st.integers(0, 100),
    edits=st.lists(TREE_EDIT, min_size=1, max_size=3),
    fix_ids=st.booleans(),
)
@example(base=0, edits=[("replace", OUTPUT_VALUE, [])], fix_ids=True)  # ["layer", []]
def test_fuzz_structured_mutations(
    base: int, edits: list[tuple[str, int, Any]], fix_ids: bool
) -> None:
    packs = fuzz_packs()
    data = mutate_tree(packs[base % len(packs)], edits, fix_ids)
    timed(lambda: check_contract(data))


@FUZZ
@given(
    base=st.integers(0, 100),
    edits=st.lists(TREE_EDIT, min_size=1, max_size=3),
)
@example(base=0, edits=[("delete", ROW_D0, None)])  # ("k", 1.5, "z") reads a deleted key
def test_fuzz_unpacked_graphs_cull_and_order(base: int, edits: list[tuple[str, int, Any]]) -> None:
    """When a mutated pack unpacks, culling and ordering its keys find every key they
    need (a missing one must have been a PackError) and at most report a cycle."""
    packs = fuzz_packs()
    data = mutate_tree(packs[base % len(packs)], edits, True)
    try:
        packed = hlg.unpack(data, FUZZ_LIMITS)
    except Exception:  # unpack's own contract: tests above
        return
    with contextlib.suppress(Exception):
        exercise(packed)  # likewise checked above
    timed(lambda: cull_and_order(packed))
