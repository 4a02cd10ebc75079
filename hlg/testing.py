"""Checks for collection authors: does a Layer's symbolic answers agree with its tasks?

Call :func:`check_layer` from your own test suite on every layer type you write. It
compares what the layer says without building tasks (``len``, ``in``, iteration,
``prefixes``, ``dependencies``, ``dependency_tuple``, ``cull`` and its external keys,
``cull_blocks`` for layers of blocks, annotations) with the tasks it builds, then packs
the layer, unpacks it with every unpickling entry point disabled (as a scheduler does)
and compares again. A disagreement raises :class:`LayerCheckError` naming the method and
the key. :func:`check_kind` does the same for a layer kind (:mod:`hlg.kinds`): it packs
with that kind, rebuilds the layer with unpickling disabled and compares the scheduler's
answers with the client's.
"""

from __future__ import annotations

import contextlib
import pickle
import random
from collections.abc import Iterator, Sequence
from typing import Any
from unittest import mock

import cloudpickle

from hlg._blocks import BlockSet
from hlg._graph import HighLevelGraph
from hlg._keys import Key, iskey, key_prefix
from hlg._layer import Layer, MaterializedLayer
from hlg._packed import PackedTask
from hlg._task import DataNode, GraphNode

__all__ = ["LayerCheckError", "check_kind", "check_layer", "no_unpickling"]


class LayerCheckError(AssertionError):
    """A layer's symbolic answer disagrees with its built tasks (the message says where).

    An ``AssertionError``, so pytest shows it as a failed check:

    >>> issubclass(LayerCheckError, AssertionError)
    True
    """


@contextlib.contextmanager
def no_unpickling() -> Iterator[None]:
    """Make every unpickling entry point fail inside the block, as on a scheduler.

    >>> import pickle
    >>> with no_unpickling():
    ...     pickle.loads(pickle.dumps(1))
    Traceback (most recent call last):
    ...
    AssertionError: unpickling is disabled here (scheduler side)
    """

    def refuse(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("unpickling is disabled here (scheduler side)")

    with (
        mock.patch.object(pickle, "loads", refuse),
        mock.patch.object(pickle, "load", refuse),
        mock.patch.object(pickle, "Unpickler", refuse),
        mock.patch.object(cloudpickle, "loads", refuse),
        mock.patch.object(cloudpickle, "load", refuse),
    ):
        yield


def _fail(layer: Layer, method: str, message: str) -> LayerCheckError:
    return LayerCheckError(f"{type(layer).__name__} {layer.name!r}: {method}: {message}")


def _not_members(layer: Layer, keys: Sequence[Key]) -> list[Any]:
    """Keys and non-keys that a layer with these keys must not contain."""
    probes: list[Any] = [layer.name + "\x00absent", (layer.name + "\x00absent", 0), None, 1]
    for key in keys[:3]:
        if isinstance(key, tuple):
            probes.append((*key, 0))  # one index too many
            probes.append(list(key))  # a list is not a key
            if len(key) > 1 and isinstance(key[-1], int):
                probes.append((*key[:-1], -1 - key[-1] - len(layer)))
        else:
            probes.append((key, 0))
    member = set(keys)
    return [p for p in probes if not (iskey(p) and p in member)]


def check_layer(
    layer: Layer,
    *,
    max_keys: int = 2_000,
    cull_samples: int = 5,
    pack: bool = True,
    seed: int = 0,
) -> None:
    """Check that ``layer``'s symbolic answers agree with the tasks it builds.

    Up to ``max_keys`` keys are built and compared one by one (a sample, spread over the
    layer, for larger layers); ``cull_samples`` random subsets are culled and compared
    with a per-key closure; with ``pack=True`` the layer is packed and unpacked with
    unpickling disabled and the scheduler-side keys and dependencies compared. Keys the
    layer reads from outside are supplied as placeholder ``DataNode`` s for packing.

    >>> from hlg import Task, TaskRef
    >>> class Doubled(Layer):
    ...     kind = "doubled"
    ...     def __init__(self, name, source, n):
    ...         super().__init__(name)
    ...         self.source, self.n = source, n
    ...     def __iter__(self):
    ...         return ((self.name, i) for i in range(self.n))
    ...     def __getitem__(self, key):
    ...         if key not in self:
    ...             raise KeyError(key)
    ...         return Task(key, sum, [TaskRef((self.source, key[1]))] * 2)
    ...     def dependency_tuple(self, key):   # wrong on purpose: forgets the source
    ...         return ()
    >>> check_layer(Doubled("d", "x", 3))
    Traceback (most recent call last):
    ...
    hlg.testing.LayerCheckError: Doubled 'd': dependency_tuple(('d', 0)): says (), the task ...
    """
    if not isinstance(layer, Layer):
        raise TypeError(f"check_layer needs an hlg.Layer; got {type(layer).__name__}")
    keys = list(layer)
    rng = random.Random(seed)
    _check_keys(layer, keys)
    if len(keys) <= max_keys:
        chosen = keys
    else:
        chosen = [keys[i] for i in sorted(rng.sample(range(len(keys)), max_keys))]
    tasks = _check_tasks(layer, chosen)
    if len(keys) <= max_keys:
        _check_materialize(layer, tasks)
    external = _check_culls(layer, keys, chosen, rng, cull_samples)
    _check_annotations(layer)
    if pack:
        _check_pack(layer, chosen, tasks, external)


def _check_keys(layer: Layer, keys: list[Key]) -> None:
    seen: set[Key] = set()
    for key in keys:
        if not iskey(key):
            raise _fail(layer, "__iter__", f"yields {key!r}, which is not a key")
        if key in seen:
            raise _fail(layer, "__iter__", f"yields {key!r} twice")
        seen.add(key)
        if key not in layer:
            raise _fail(layer, "__contains__", f"{key!r} is iterated but `in` says False")
    if len(layer) != len(keys):
        raise _fail(layer, "__len__", f"says {len(layer)}, iteration yields {len(keys)} keys")
    for probe in _not_members(layer, keys):
        try:
            inside = probe in layer
        except Exception as exc:  # any exception here is the finding
            raise _fail(layer, "__contains__", f"{probe!r} raised {exc!r}") from exc
        if inside:
            raise _fail(layer, "__contains__", f"says True for {probe!r}, which is not a key")
        if iskey(probe):
            try:
                layer[probe]
            except KeyError:
                pass
            else:
                raise _fail(layer, "__getitem__", f"builds a task for {probe!r}, not a key of it")
    prefixes = {key_prefix(k) for k in keys}
    if not prefixes <= set(layer.prefixes):
        missing = sorted(prefixes - set(layer.prefixes))
        raise _fail(layer, "prefixes", f"misses {missing} (first items of its keys)")


def _check_tasks(layer: Layer, keys: list[Key]) -> dict[Key, GraphNode]:
    tasks: dict[Key, GraphNode] = {}
    reads = layer.read_prefixes()
    for key in keys:
        task = layer[key]
        if not isinstance(task, GraphNode):
            raise _fail(layer, f"__getitem__({key!r})", f"returns a {type(task).__name__}")
        if task.key != key:
            raise _fail(layer, f"__getitem__({key!r})", f"builds a node keyed {task.key!r}")
        deps = task.dependencies
        if layer.dependencies(key) != deps:
            raise _fail(
                layer,
                f"dependencies({key!r})",
                f"says {sorted(map(repr, layer.dependencies(key)))}, "
                f"the task reads {sorted(map(repr, deps))}",
            )
        said = layer.dependency_tuple(key)
        if set(said) != deps:
            raise _fail(
                layer,
                f"dependency_tuple({key!r})",
                f"says {said!r}, the task reads {sorted(deps, key=repr)}",
            )
        if reads is not None:
            outside = sorted(
                (d for d in deps if d not in layer and key_prefix(d) not in reads), key=repr
            )
            if outside:
                raise _fail(
                    layer,
                    "read_prefixes()",
                    f"says {sorted(reads)}, but the task of {key!r} reads {outside[0]!r}",
                )
        tasks[key] = task
    return tasks


def _check_materialize(layer: Layer, tasks: dict[Key, GraphNode]) -> None:
    built = layer.materialize()
    if list(built) != list(tasks):
        raise _fail(layer, "materialize()", "keys differ from iteration (or their order)")
    for key, task in tasks.items():
        if built[key] != task:
            raise _fail(layer, "materialize()", f"the task of {key!r} differs from layer[key]")


def _closure(layer: Layer, wanted: list[Key]) -> tuple[set[Key], set[Key]]:
    kept: set[Key] = set()
    external: set[Key] = set()
    stack = list(wanted)
    while stack:
        key = stack.pop()
        if key in kept:
            continue
        kept.add(key)
        for dep in layer[key].dependencies:
            if dep in layer:
                stack.append(dep)
            else:
                external.add(dep)
    return kept, external


def _check_culls(
    layer: Layer, keys: list[Key], chosen: list[Key], rng: random.Random, samples: int
) -> set[Key]:
    """Compare ``cull`` with a closure built from the tasks; return all external keys seen."""
    external_all: set[Key] = set()
    subsets: list[list[Key]] = [chosen] if len(chosen) == len(keys) else []
    for _ in range(samples):
        if not chosen:
            break
        size = rng.randint(1, min(len(chosen), 8))
        subsets.append(rng.sample(chosen, size))
    for wanted in subsets:
        kept, external = _closure(layer, wanted)
        external_all |= external
        culled, said_external = layer.cull(wanted)
        where = f"cull({sorted(wanted, key=repr)[:4]!r}{'...' if len(wanted) > 4 else ''})"
        if set(said_external) != external:
            raise _fail(
                layer,
                where,
                f"external keys {sorted(said_external, key=repr)[:6]} differ from the kept "
                f"tasks' reads {sorted(external, key=repr)[:6]}",
            )
        got = set(culled)
        if got != kept:
            extra, missing = sorted(got - kept, key=repr), sorted(kept - got, key=repr)
            raise _fail(layer, where, f"keeps {extra[:4]} too much, misses {missing[:4]}")
        if len(culled) != len(kept):
            raise _fail(layer, where, f"len {len(culled)} but keeps {len(kept)} keys")
        if len(kept) < len(keys) and culled.name == layer.name:
            raise _fail(layer, where, "a smaller layer must get a new name")
        if not set(culled.prefixes) <= set(layer.prefixes):
            raise _fail(layer, where, "the culled layer's keys changed prefix")
        if dict(culled.annotations) != dict(layer.annotations):
            raise _fail(layer, where, "annotations changed")
        for key in wanted:
            if culled[key] != layer[key]:
                raise _fail(layer, where, f"the culled task of {key!r} differs")
        _check_cull_blocks(layer, wanted, kept, external, where)
    return external_all


def _check_cull_blocks(
    layer: Layer, wanted: list[Key], kept: set[Key], external: set[Key], where: str
) -> None:
    """A layer that culls on block sets must agree with its per-key cull."""
    own = layer.block_set()
    if own is None:
        return
    where = where.replace("cull(", "cull_blocks(", 1)
    if len(layer.prefixes) != 1:
        raise _fail(layer, "block_set", f"a layer of blocks needs one prefix, not {layer.prefixes}")
    (prefix,) = layer.prefixes
    if len(own) != len(layer) or any(not (iskey(k) and k[0] == prefix) for k in wanted):
        raise _fail(layer, "block_set", "does not describe the layer's keys")
    blocks = BlockSet.from_blocks([k[1:] for k in wanted], own.ndim)  # type: ignore[misc]
    culled, needs, other = layer.cull_blocks(blocks)
    if set(culled) != kept:
        raise _fail(layer, where, "keeps other keys than cull")
    said = {(p, *b) for p, bs in needs.items() for b in bs} | set(other)
    if said != external:
        raise _fail(
            layer,
            where,
            f"reads {sorted(said, key=repr)[:6]}, but cull says {sorted(external, key=repr)[:6]}",
        )


def _check_annotations(layer: Layer) -> None:
    before = dict(layer.annotations)
    value = int(before.get("retries") or 0) + 1
    annotated = layer.with_annotations(retries=value)
    if annotated is layer or annotated.annotations.get("retries") != value:
        raise _fail(layer, "with_annotations", "did not return an annotated copy")
    if dict(layer.annotations) != before:
        raise _fail(layer, "with_annotations", "changed the original layer")


def _with_inputs(layer: Layer, external: set[Key]) -> HighLevelGraph:
    """``layer`` in a graph with a placeholder ``DataNode`` for every key it reads from
    outside. The symbolic answers were checked on a sample, so they are trusted here."""
    reads: set[Key] = set(external)
    for key in layer:
        reads.update(d for d in layer.dependency_tuple(key) if d not in layer)
    layers: dict[str, Layer] = {layer.name: layer}
    deps: dict[str, list[str]] = {layer.name: []}
    if reads:
        outside = MaterializedLayer({k: DataNode(k, None) for k in reads})
        layers[outside.name] = outside
        deps[layer.name] = [outside.name]
    return HighLevelGraph(layers, deps)


def _check_pack(
    layer: Layer, chosen: list[Key], tasks: dict[Key, GraphNode], external: set[Key]
) -> None:
    from hlg import pack, unpack

    data = pack(_with_inputs(layer, external))
    with no_unpickling():
        packed = unpack(data)
        side = packed.layers[layer.name]
        if len(side) != len(layer):
            raise _fail(
                layer, "pack/unpack", f"{len(side)} tasks after unpacking, {len(layer)} before"
            )
        for key in chosen:
            if key not in side:
                raise _fail(layer, "pack/unpack", f"{key!r} is missing after unpacking")
            if packed.dependencies(key) != tasks[key].dependencies:
                raise _fail(layer, "pack/unpack", f"the dependencies of {key!r} changed")
    _check_worker_tasks(layer, packed, chosen, tasks)


def _check_worker_tasks(
    layer: Layer, packed: Any, chosen: list[Key], tasks: dict[Key, GraphNode]
) -> None:
    for key in chosen[:50]:
        node = packed[key].unpack(packed.blobs)
        if node.key != key or node.dependencies != tasks[key].dependencies:
            raise _fail(layer, "pack/unpack", f"the worker-side task of {key!r} differs")
        if node != tasks[key] and repr(node) != repr(tasks[key]):
            raise _fail(layer, "pack/unpack", f"the worker-side task of {key!r} differs")


@contextlib.contextmanager
def _registered(kind: Any) -> Iterator[None]:
    """``kind`` registered under its name inside the block, the previous one after."""
    from hlg import _registry

    _registry._load_entry_points()
    previous = _registry._KINDS.get(kind.name)
    origin = _registry._ORIGINS.get(kind.name)
    _registry._KINDS[kind.name] = kind
    try:
        yield
    finally:
        if previous is None:
            _registry._KINDS.pop(kind.name, None)
        else:
            _registry._KINDS[kind.name] = previous
            if origin is not None:
                _registry._ORIGINS[kind.name] = origin


def _verifies_key_by_key(kind: Any, layer: Layer) -> bool:
    from hlg.kinds import Kind

    verify = getattr(kind, "verify", None)
    if verify is None:
        return True
    if isinstance(kind, Kind) and type(kind).verify is Kind.verify:
        return kind.reads(layer) is None
    return False


def check_kind(
    kind: Any,
    layer: Layer,
    *,
    max_keys: int = 2_000,
    cull_samples: int = 5,
    symbolic: bool = True,
    seed: int = 0,
) -> None:
    """Check that ``kind`` packs ``layer`` and rebuilds it on a scheduler faithfully.

    First :func:`check_layer` on the client side; then ``layer`` is packed with ``kind``
    (registered for the duration of the check) and unpacked with unpickling disabled,
    and the scheduler-side layer must give the same keys, membership, dependencies and
    culls, with tasks that a worker turns into the client's tasks. With
    ``symbolic=True`` the kind must also avoid the O(tasks) paths of unpack: its layer
    knows its key ``prefixes`` and ``verify`` is per box (:meth:`hlg.kinds.Kind.reads`)
    or the kind's own.

    >>> import hlg
    >>> from hlg import layers
    >>> x = layers.blockwise(len, "x", "i", layers.BlockIndex((4,)), "i")
    >>> check_kind(hlg.layer_kind("input"), layers.InputLayer("read", str.upper, ["a", "b"]))
    >>> check_kind(hlg.layer_kind("shuffle"), x)
    Traceback (most recent call last):
    ...
    hlg.testing.LayerCheckError: Blockwise 'x': handles: ShuffleKind.handles(layer) is False, ...
    """
    from hlg import pack, unpack

    if not isinstance(layer, Layer):
        raise TypeError(f"check_kind needs an hlg.Layer; got {type(layer).__name__}")
    check_layer(layer, max_keys=max_keys, cull_samples=cull_samples, pack=False, seed=seed)
    kind_name = type(kind).__name__
    if not kind.handles(layer):
        raise _fail(layer, "handles", f"{kind_name}.handles(layer) is False, so it cannot pack it")
    if layer.kind != kind.name:
        raise _fail(layer, "kind", f"the layer's kind is {layer.kind!r}, the kind's {kind.name!r}")
    if symbolic and _verifies_key_by_key(kind, layer):
        raise _fail(
            layer,
            "verify",
            f"{kind_name} checks the keys the layer reads one by one on unpack (O(tasks), "
            "refused past the message's work budget): give it reads(layer) or verify(...)",
        )
    keys = list(layer)
    rng = random.Random(seed)
    chosen = keys if len(keys) <= max_keys else rng.sample(keys, max_keys)
    tasks = {key: layer[key] for key in chosen}
    _, external = layer.cull(chosen)
    with _registered(kind):
        data = pack(_with_inputs(layer, set(external)))
        with no_unpickling():
            packed = unpack(data)
            side = packed.layers[layer.name]
            if type(side).kind != layer.kind and side.kind != layer.kind:
                raise _fail(layer, "unpack", f"rebuilt as kind {side.kind!r}, not {layer.kind!r}")
            if (
                symbolic
                and "_prefixes" not in side.__dict__
                and type(side).prefixes is Layer.prefixes
            ):
                raise _fail(
                    layer,
                    "prefixes",
                    "the rebuilt layer finds its key prefixes by iterating its keys (O(tasks) "
                    "on unpack): define the prefixes property",
                )
            if len(side) != len(layer):
                raise _fail(
                    layer, "unpack", f"{len(side)} tasks after unpacking, {len(layer)} before"
                )
            side_keys = list(side)
            if side_keys != keys:
                raise _fail(
                    layer, "unpack", "the rebuilt layer iterates other keys (or in another order)"
                )
            _check_keys(side, side_keys)
            for key in chosen:
                if side.dependencies(key) != tasks[key].dependencies:
                    raise _fail(
                        layer,
                        f"unpack: dependencies({key!r})",
                        f"scheduler says {sorted(map(repr, side.dependencies(key)))}, the task "
                        f"reads {sorted(map(repr, tasks[key].dependencies))}",
                    )
            side_tasks = _check_tasks(side, chosen)
            _check_culls(side, side_keys, chosen, random.Random(seed), cull_samples)
    for key, node in side_tasks.items():
        if not isinstance(node, PackedTask):
            raise _fail(
                layer,
                "unpack",
                f"the scheduler-side task of {key!r} is a "
                f"{type(node).__name__}, not an hlg.PackedTask",
            )
    _check_worker_tasks(layer, packed, chosen, tasks)
