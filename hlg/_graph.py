"""HighLevelGraph: named layers plus layer dependencies, a lazy ``Mapping[key, Task]``.

A key's layer is found in O(1) through an index from key prefix (a key's first item) to
layer names, so looking up one task builds one task. Culling walks from the wanted keys
through the layers in reverse topological order and costs what it keeps.
"""

from __future__ import annotations

import html
import itertools
import math
import shutil
import subprocess
from collections.abc import Iterable, Iterator, Mapping, Sequence
from itertools import chain
from operator import itemgetter
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from hlg._blocks import BlockSet
from hlg._gc import gc_paused
from hlg._get import MissingKeyError, postorder
from hlg._keys import Key, iskey, key_prefix
from hlg._layer import Layer, MaterializedLayer
from hlg._task import GraphNode
from hlg._tokenize import tokenize

__all__ = ["HLGCollection", "HighLevelGraph", "LayerCollisionError", "check_collisions"]


@runtime_checkable
class HLGCollection(Protocol):
    """What ``from_collections`` accepts: a collection that knows its graph and outputs.

    >>> import hlg
    >>> class Box:
    ...     def __init__(self, graph, name):
    ...         self.graph, self.name = graph, name
    ...     def __hlg_graph__(self):
    ...         return self.graph
    ...     def __hlg_layers__(self):
    ...         return [self.name]
    >>> a = hlg.MaterializedLayer({"a": hlg.DataNode("a", 1)}, name="a")
    >>> isinstance(Box(hlg.HighLevelGraph({"a": a}), "a"), HLGCollection)
    True
    """

    def __hlg_graph__(self) -> HighLevelGraph: ...

    def __hlg_layers__(self) -> Sequence[str]: ...


class HighLevelGraph(Mapping[Key, GraphNode]):
    """Layers by name plus, for each layer, the names of the layers it reads.

    >>> from operator import add
    >>> from hlg import DataNode, MaterializedLayer, Task, TaskRef, get
    >>> a = MaterializedLayer({("a", i): DataNode(("a", i), i) for i in range(3)}, name="a")
    >>> b = MaterializedLayer(
    ...     {("b", i): Task(("b", i), add, TaskRef(("a", i)), 10) for i in range(3)}, name="b"
    ... )
    >>> g = HighLevelGraph({"a": a, "b": b}, {"a": (), "b": ("a",)})
    >>> len(g), ("b", 2) in g, get(g, ("b", 2))
    (6, True, 12)
    >>> small = g.cull([("b", 1)])
    >>> sorted(small), len(small.layers)
    ([('a', 1), ('b', 1)], 2)
    """

    layers: dict[str, Layer]
    dependencies: dict[str, frozenset[str]]

    def __init__(
        self,
        layers: Mapping[str, Layer | Mapping[Key, GraphNode]],
        dependencies: Mapping[str, Iterable[str]] | None = None,
    ) -> None:
        self.layers = {}
        for name, layer in layers.items():
            if not isinstance(layer, Layer):
                if not isinstance(layer, Mapping):
                    raise TypeError(
                        f"layer {name!r} is a {type(layer).__name__}, not an hlg.Layer "
                        "(or a mapping of keys to graph nodes)"
                    )
                layer = MaterializedLayer(layer, name=name)  # a plain dict of nodes, as dask
            if layer.name != name:
                raise ValueError(f"layer stored under {name!r} is named {layer.name!r}")
            self.layers[name] = layer
        self._index: dict[str, tuple[str, ...]] | None = None
        check_collisions(self, _CHEAP_WALK)
        if dependencies is None:
            dependencies = self._infer_dependencies()
        deps: dict[str, frozenset[str]] = {}
        for name in self.layers:
            names = frozenset(dependencies.get(name, ()))
            for dep in names:
                if dep not in self.layers:
                    raise ValueError(f"layer {name!r} depends on {dep!r}, which is not a layer")
            deps[name] = names
        extra = set(dependencies) - set(self.layers)
        if extra:
            raise ValueError(f"dependencies name layers that are not in the graph: {sorted(extra)}")
        self.dependencies = deps

    # -- construction -----------------------------------------------------------------

    @classmethod
    def from_collections(
        cls, name: str, layer: Layer, dependencies: Iterable[Any] = ()
    ) -> HighLevelGraph:
        """A graph of ``layer`` (named ``name``) on top of the graphs it reads.

        Each dependency is an ``HighLevelGraph`` (its output layers are read) or a
        collection with ``__hlg_graph__()`` and ``__hlg_layers__()``.
        """
        if layer.name != name:
            raise ValueError(f"layer is named {layer.name!r}, not {name!r}")
        graphs: list[HighLevelGraph] = []
        reads: list[str] = []
        for dep in dependencies:
            if isinstance(dep, HighLevelGraph):
                graphs.append(dep)
                reads.extend(dep.output_layers())
            elif isinstance(dep, HLGCollection):
                graphs.append(dep.__hlg_graph__())
                reads.extend(dep.__hlg_layers__())
            else:
                raise TypeError(
                    f"from_collections: {dep!r} is neither a HighLevelGraph nor a collection "
                    "with __hlg_graph__ and __hlg_layers__"
                )
        merged = cls.merge(*graphs)
        layers = {**merged.layers, name: layer}
        deps = {**merged.dependencies, name: frozenset(reads)}
        return cls(layers, deps)

    @classmethod
    def merge(cls, *graphs: HighLevelGraph) -> HighLevelGraph:
        """Union of graphs; a layer name present in several graphs is taken once.

        Two different layers under one name must be equivalent (equal tokens); two
        layers holding one key must build equal tasks for it. Anything else is refused
        (``LayerCollisionError``), never resolved by taking the first.
        """
        layers: dict[str, Layer] = {}
        deps: dict[str, frozenset[str]] = {}
        for graph in graphs:
            for name, layer in graph.layers.items():
                if name not in layers:
                    layers[name] = layer
                    deps[name] = graph.dependencies[name]
                elif layers[name] is not layer:
                    _check_same_layer(layers[name], layer)
        return cls(layers, deps)

    def _infer_dependencies(self) -> dict[str, set[str]]:
        """Layer dependencies: from each layer's ``read_prefixes`` where it says them (every
        layer holding such a prefix, O(layers)), else from every key's dependencies
        (O(keys), no task built for layers that answer ``dependency_tuple``
        symbolically)."""
        deps: dict[str, set[str]] = {name: set() for name in self.layers}
        index = self._prefix_index()
        for name, layer in self.layers.items():
            prefixes = layer.read_prefixes()
            if prefixes is not None:
                for prefix in prefixes:
                    deps[name].update(n for n in index.get(prefix, ()) if n != name)
                continue
            for key in layer:
                for dep in layer.dependency_tuple(key):
                    if dep not in layer:
                        owner = self._find_layer(dep)
                        if owner is not None:
                            deps[name].add(owner.name)
        return deps

    # -- lookup -------------------------------------------------------------------------

    def _prefix_index(self) -> dict[str, tuple[str, ...]]:
        if self._index is None:
            self._index = _index_of(self.layers)
        return self._index

    def _find_layer(self, key: Key) -> Layer | None:
        try:
            names = self._prefix_index().get(key_prefix(key), ())
        except (TypeError, IndexError):
            return None
        if len(names) == 1:
            layer = self.layers[names[0]]
            return layer if key in layer else None
        for name in names:
            layer = self.layers[name]
            if key in layer:
                return layer
        return None

    def layer_of(self, key: Key) -> Layer:
        """The layer that holds ``key`` (``MissingKeyError`` if none does)."""
        layer = self._find_layer(key) if iskey(key) else None
        if layer is None:
            raise MissingKeyError(key)
        return layer

    def __getitem__(self, key: Key) -> GraphNode:
        layer = self._find_layer(key) if iskey(key) else None
        if layer is None:
            raise KeyError(key)
        return layer[key]

    def __contains__(self, key: object) -> bool:
        return iskey(key) and self._find_layer(key) is not None  # type: ignore[arg-type]

    def _shared(self) -> set[str]:
        """Layers sharing a key prefix with another layer (their keys may overlap)."""
        return {name for names in self._prefix_index().values() if len(names) > 1 for name in names}

    def __iter__(self) -> Iterator[Key]:
        shared = self._shared()
        order = self.topological_layers()
        rank = {name: i for i, name in enumerate(order)}
        for name in order:
            if name not in shared:
                yield from self.layers[name]
                continue
            for key in self.layers[name]:  # merged graphs may hold a key in two layers
                if not self._held_before(key, rank, rank[name]):
                    yield key

    def _held_before(self, key: Key, rank: dict[str, int], mine: int) -> bool:
        """Whether a layer ranked before ``mine`` holds ``key`` (through the prefix index)."""
        for other in self._prefix_index().get(key_prefix(key), ()):
            if rank.get(other, mine) < mine and key in self.layers[other]:
                return True
        return False

    def __len__(self) -> int:
        shared = self._shared()
        count = sum(len(layer) for name, layer in self.layers.items() if name not in shared)
        if shared:  # largest first: the first layer of every group it is in counts whole
            index = self._prefix_index()
            ordered = sorted(shared, key=lambda n: (-len(self.layers[n]), n))
            rank = {name: i for i, name in enumerate(ordered)}
            first = {p: min(ns, key=rank.__getitem__) for p, ns in index.items() if len(ns) > 1}
            for name in ordered:
                layer = self.layers[name]
                if all(first.get(p, name) == name for p in layer.prefixes):
                    count += len(layer)
                else:
                    mine = rank[name]
                    count += sum(1 for k in layer if not self._held_before(k, rank, mine))
        return count

    def __eq__(self, other: object) -> bool:
        return self is other

    def __hash__(self) -> int:
        return id(self)

    def __hlg_tokenize__(self) -> object:
        """What a token of this graph is made of: layers and dependencies, not caches.

        >>> from hlg import DataNode, tokenize
        >>> g = HighLevelGraph({"x": {"x": DataNode("x", 1)}})
        >>> before = tokenize(g)
        >>> g["x"]  # fills the key lookup index
        DataNode('x', 1)
        >>> tokenize(g) == before
        True
        """
        return (
            "HighLevelGraph",
            self.layers,
            {name: sorted(deps) for name, deps in self.dependencies.items()},
        )

    def key_dependencies(self, key: Key) -> frozenset[Key]:
        """The dependencies of one key, asked of its layer (no task built when symbolic)."""
        return self.layer_of(key).dependencies(key)

    # -- structure -------------------------------------------------------------------------

    def topological_layers(self) -> list[str]:
        """Layer names, each after the layers it reads; ties keep insertion order."""
        return postorder(self.layers, lambda name: sorted(self.dependencies[name]))

    def dependents(self) -> dict[str, frozenset[str]]:
        """For each layer, the layers that read it."""
        out: dict[str, set[str]] = {name: set() for name in self.layers}
        for name, deps in self.dependencies.items():
            for dep in deps:
                out[dep].add(name)
        return {name: frozenset(names) for name, names in out.items()}

    def output_layers(self) -> list[str]:
        """Layers no other layer reads, in insertion order."""
        read = {dep for deps in self.dependencies.values() for dep in deps}
        return [name for name in self.layers if name not in read]

    def output_keys(self) -> list[Key]:
        """All keys of the output layers."""
        return [key for name in self.output_layers() for key in self.layers[name]]

    # -- culling ------------------------------------------------------------------------

    def cull(self, keys: Any) -> HighLevelGraph:
        """Keep what ``keys`` (a key or a nested list of keys) need.

        Layers that describe their keys as blocks (:meth:`Layer.block_set`) are culled
        on block sets, mapped from layer to layer without enumerating keys, so keeping
        whole layers or boxes costs O(layers); other layers are culled key by key, at a
        cost that grows with the keys kept. A layer that loses keys is replaced by a
        smaller one with a new deterministic name (its keys keep their prefix); a layer
        that keeps everything is kept as is.
        """
        return self._cull(keys, symbolic=True)

    def _cull(self, keys: Any, symbolic: bool) -> HighLevelGraph:
        """Cull on block sets where layers allow it (``symbolic``), else key by key."""
        owners = self._block_owners() if symbolic else {}
        blocks, wanted = self._requested(flatten_keys(keys), owners)
        renamed: dict[str, str] = {}
        culled: dict[str, Layer] = {}
        reads: dict[str, set[str]] = {}
        for name in reversed(self.topological_layers()):
            if name not in wanted and name not in blocks:
                continue
            source = self.layers[name]
            external: frozenset[Key]
            if symbolic and source.block_set() is not None:
                if name in wanted:  # keys listed by readers that only know keys
                    listed = _blocks_of_keys(wanted.pop(name), source)
                    self._want(blocks, source, listed, None)
                need = blocks.pop(name)
                layer, needs, external = source.cull_blocks(need)
            elif symbolic:
                layer, needs, external = source.cull_keys(wanted.pop(name))
            else:
                layer, external = source.cull(wanted.pop(name))
                needs = {}
            renamed[name] = layer.name
            culled[name] = layer
            reads[name] = set()
            extra: list[Key] = []
            for prefix in sorted(needs):
                owner = owners.get(prefix)
                if owner is None:  # no single block-structured owner: key by key
                    extra.extend((prefix, *b) for b in needs[prefix])
                else:
                    self._want(blocks, owner, needs[prefix], name)
                    reads[name].add(owner.name)
            for dep in sorted(set(external).union(extra), key=repr):  # never hash order
                found = self._find_layer(dep)
                if found is None:
                    raise MissingKeyError(dep, f"layer {name!r}")
                wanted.setdefault(found.name, []).append(dep)
                reads[name].add(found.name)
        if wanted or blocks:
            raise ValueError(
                f"layers {sorted({*wanted, *blocks})} hold keys that other layers read without "
                "declaring them as dependencies; fix the graph's dependencies (see validate())"
            )
        order = [n for n in self.topological_layers() if n in culled]
        used: set[str] = set()
        for n in order:  # a new name must not be another layer's: add a counter if it is
            new = renamed[n]
            if new != n and (new in self.layers or new in used):
                suffix = 2
                while f"{new}-{suffix}" in self.layers or f"{new}-{suffix}" in used:
                    suffix += 1
                new = renamed[n] = f"{new}-{suffix}"
                culled[n].name = new
            used.add(new)
        return HighLevelGraph(
            {renamed[n]: culled[n] for n in order},
            {renamed[n]: {renamed[d] for d in reads[n]} for n in order},
        )

    def _requested(
        self, keys: list[Key], owners: Mapping[str, Layer]
    ) -> tuple[dict[str, BlockSet], dict[str, list[Key]]]:
        """Requested keys by layer name: as block sets for the layers in ``owners`` (by
        prefix), as lists of keys for the others. Every key must be in the graph."""
        wanted: dict[str, list[Key]] = {}
        blocks: dict[str, BlockSet] = {}
        by_prefix: dict[str, list[Key]] = {}
        if _tuple_keys(keys) and len(heads := set(map(_first, keys))) == 1:
            (only,) = heads  # keys of one layer (a collection's keys): grouped in bulk
            if only in owners:
                by_prefix[only], keys = keys, []
        for key in keys:
            head: Any = key[0] if type(key) is tuple else None
            if head in owners:
                by_prefix.setdefault(head, []).append(key)
            else:
                wanted.setdefault(self.layer_of(key).name, []).append(key)
        for prefix, group in by_prefix.items():
            owner = owners[prefix]
            self._want(blocks, owner, _blocks_of_keys(group, owner), None)
        return blocks, wanted

    def requested_blocks(self, keys: Any) -> tuple[dict[str, BlockSet], dict[str, list[Key]]]:
        """Group ``keys`` (a key or nested list) by layer: block sets where the layer culls
        on blocks and is the only one with its key prefix, lists of keys elsewhere.

        >>> from hlg import layers
        >>> x = layers.blockwise(abs, "x", "ij", layers.BlockIndex((3, 4)), "ij")
        >>> row = [("x", 1, j) for j in range(4)]
        >>> HighLevelGraph({"x": x}).requested_blocks(row)
        ({'x': BlockSet(2, boxes=[((1, 2), (0, 4))], points=0)}, {})
        """
        return self._requested(flatten_keys(keys), self._block_owners())

    def _block_owners(self) -> dict[str, Layer]:
        """Key prefixes held by exactly one layer, when that layer culls on block sets."""
        out: dict[str, Layer] = {}
        for prefix, names in self._prefix_index().items():
            if len(names) == 1:
                layer = self.layers[names[0]]
                if layer.block_set() is not None:
                    out[prefix] = layer
        return out

    def _want(
        self, blocks: dict[str, BlockSet], owner: Layer, need: BlockSet, reader: str | None
    ) -> None:
        """Record that ``need`` blocks of ``owner`` are wanted (all must exist)."""
        own = owner.block_set()
        assert own is not None
        missing = need.first_missing(own)
        if missing is not None:
            (prefix,) = owner.prefixes
            raise MissingKeyError(
                (prefix, *missing), None if reader is None else f"layer {reader!r}"
            )
        seen = blocks.get(owner.name)
        blocks[owner.name] = need if seen is None else seen.union(need)

    # -- checking and output ------------------------------------------------------------

    def validate(self) -> None:
        """Check layer dependencies and every key: missing keys and cycles by name.

        Layer dependencies must name layers and form no cycle; every key a task reads
        must be in the graph, in a layer its layer depends on (or in its own layer).
        Two layers holding one key must build equal tasks for it.
        Costs O(keys); tasks are built only for layers without symbolic dependencies.
        """
        check_collisions(self)
        for name in self.layers:
            unknown = sorted(set(self.dependencies.get(name, ())) - set(self.layers))
            if unknown:
                raise ValueError(f"layer {name!r} depends on {unknown}, which are not layers")
        self.topological_layers()
        internal: list[Layer] = []  # layers whose keys read each other: check for cycles
        for name, layer in self.layers.items():
            allowed = self.dependencies[name]
            reads_itself = False
            for key in layer:
                for dep in layer.dependency_tuple(key):
                    if dep in layer:
                        reads_itself = True
                        continue
                    if any(dep in self.layers[d] for d in allowed):
                        continue
                    owner = self._find_layer(dep)
                    if owner is None:
                        raise MissingKeyError(dep, key)
                    if owner.name not in allowed:
                        raise ValueError(
                            f"key {key!r} of layer {name!r} reads {dep!r} of layer "
                            f"{owner.name!r}, but {name!r} does not depend on {owner.name!r}"
                        )
            if reads_itself:
                internal.append(layer)
        for layer in internal:
            _check_internal_cycles(layer)

    def to_dict(self) -> dict[Key, GraphNode]:
        """Build every task of every layer into one dict."""
        out: dict[Key, GraphNode] = {}
        with gc_paused():
            for name in self.topological_layers():
                out.update(self.layers[name].materialize())
        return out

    def _rows(self) -> list[tuple[str, str, str, str, str]]:
        rows = []
        for name in self.topological_layers():
            layer = self.layers[name]
            deps = ", ".join(sorted(self.dependencies[name])) or "-"
            notes = ", ".join(f"{k}={v!r}" for k, v in layer.annotations.items()) or "-"
            rows.append((name, layer.kind, f"{len(layer):,}", deps, notes))
        return rows

    def describe(self) -> str:
        """A text table of the layers: name, kind, tasks, dependencies, annotations.

        Computed from the layers' symbolic sizes: no task is built.

        >>> from hlg import DataNode, MaterializedLayer
        >>> g = HighLevelGraph({"x": MaterializedLayer({"x": DataNode("x", 1)}, name="x")})
        >>> print(g.describe())
        layer  kind          tasks  dependencies  annotations
        x      materialized  1      -             -
        """
        header = ("layer", "kind", "tasks", "dependencies", "annotations")
        rows = [header, *self._rows()]
        widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
        lines = [
            "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)) for row in rows
        ]
        return "\n".join(line.rstrip() for line in lines)

    def _repr_html_(self) -> str:
        head = "".join(
            f"<th>{h}</th>" for h in ("layer", "kind", "tasks", "dependencies", "annotations")
        )
        body = "".join(
            "<tr>" + "".join(f"<td>{html.escape(cell)}</td>" for cell in row) + "</tr>"
            for row in self._rows()
        )
        return (
            f"<div><strong>HighLevelGraph</strong> with {len(self.layers)} layers"
            f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table></div>"
        )

    def __repr__(self) -> str:
        return f"<HighLevelGraph: {len(self.layers)} layers, {len(self):,} tasks>"

    def to_dot(self) -> str:
        """The layer graph in graphviz's dot language."""
        lines = ["digraph hlg {", "  rankdir=BT;", "  node [shape=box];"]
        for name in self.topological_layers():
            layer = self.layers[name]
            size = len(layer)
            label = f"{name}\n{layer.kind}, {size:,} task{'' if size == 1 else 's'}"
            lines.append(f"  {_dot_string(name)} [label={_dot_string(label)}];")
            lines.extend(
                f"  {_dot_string(dep)} -> {_dot_string(name)};"
                for dep in sorted(self.dependencies[name])
            )
        lines.append("}")
        return "\n".join(lines)

    def visualize(self, filename: str | Path = "hlg.svg") -> Path:
        """Render the layer graph with graphviz's ``dot`` to ``filename`` (format by suffix).

        Raises ``RuntimeError`` naming the missing program when graphviz is not installed.
        """
        dot = shutil.which("dot")
        if dot is None:
            raise RuntimeError(
                "HighLevelGraph.visualize needs graphviz's 'dot' program on PATH "
                "(e.g. 'apt-get install graphviz'); HighLevelGraph.to_dot() gives the source"
            )
        path = Path(filename)
        fmt = path.suffix.lstrip(".") or "svg"
        subprocess.run(
            [dot, f"-T{fmt}", "-o", str(path)], input=self.to_dot(), text=True, check=True
        )
        return path


def _index_of(layers: Mapping[str, Layer]) -> dict[str, tuple[str, ...]]:
    """Key prefix -> names of the layers whose keys start with it."""
    index: dict[str, list[str]] = {}
    for name, layer in layers.items():
        for prefix in layer.prefixes:
            index.setdefault(prefix, []).append(name)
    return {p: tuple(names) for p, names in index.items()}


class LayerCollisionError(ValueError):
    """Two layers of one graph produce the same key with different tasks.

    >>> from hlg import DataNode
    >>> a = {("x", 0): DataNode(("x", 0), 1)}
    >>> b = {("x", 0): DataNode(("x", 0), 2)}
    >>> HighLevelGraph({"a": a, "b": b})
    Traceback (most recent call last):
    ...
    hlg._graph.LayerCollisionError: layers 'a' and 'b' both produce key ('x', 0), with ...
    """


# Construction compares two unrelated layers sharing a prefix key by key only up to this
# size (or when both hold their tasks already); bigger pairs are checked by validate()
# and pack. Construction runs on the scheduler too (unpack), where a walk over the keys
# a message declares must never happen.
_CHEAP_WALK = 10_000


def check_collisions(graph: HighLevelGraph, limit: int | None = None) -> None:
    """Refuse a graph where two layers produce one key with different tasks.

    Only layers sharing a key prefix are compared (the prefix index), and layers culled
    from one layer are never compared: the cost is nil for graphs whose layers have
    distinct prefixes, and O(keys of the smaller layer) per pair otherwise. With
    ``limit``, pairs of symbolic layers whose smaller one has more keys are skipped.

    >>> from hlg import DataNode
    >>> check_collisions(HighLevelGraph({"a": {"a": DataNode("a", 1)}}))
    """
    for names in _index_of(graph.layers).values():  # afresh: ``layers`` is a public dict
        if len(names) < 2:
            continue
        layers = [graph.layers[n] for n in names]
        for i, first in enumerate(layers):
            for second in layers[i + 1 :]:
                if first._family() is second._family():
                    continue
                if (
                    limit is not None
                    and min(len(first), len(second)) > limit
                    and not (
                        isinstance(first, MaterializedLayer)
                        and isinstance(second, MaterializedLayer)
                    )
                ):
                    continue
                _check_overlap(first, second)


def _check_overlap(first: Layer, second: Layer) -> None:
    small, large = (first, second) if len(first) <= len(second) else (second, first)
    for key in small:
        if key in large:
            a, b = small[key], large[key]
            if a is not b and a != b:
                one, other = sorted((first.name, second.name))
                raise LayerCollisionError(
                    f"layers {one!r} and {other!r} both produce key {key!r}, with different "
                    "tasks; give the layers different output names (builders name a layer "
                    "after its output: put a token in the name, as dask collections do)"
                )


def _check_same_layer(first: Layer, second: Layer) -> None:
    """Refuse two different layers under one name (merge keeps one of them)."""
    if first._family() is second._family() and first.annotations == second.annotations:
        return
    try:
        if tokenize(first) == tokenize(second):
            return
    except TypeError:  # not tokenizable: compare what they build
        if len(first) == len(second) and first.annotations == second.annotations:
            try:
                _check_overlap(first, second)
                if all(key in second for key in first):
                    return
            except LayerCollisionError:
                pass
    raise LayerCollisionError(
        f"two different layers are named {first.name!r} ({first!r} and {second!r}); "
        "merging would keep one and silently drop the other: give them different names "
        "(builders name a layer after its output: put a token in the name, as dask "
        "collections do)"
    )


def flatten_keys(keys: Any) -> list[Key]:
    """A key, or a nested list (or other iterable) of keys, as a flat list of keys.

    >>> flatten_keys([[("x", 0), ("x", 1)], [("x", 2)]]), flatten_keys("y")
    ([('x', 0), ('x', 1), ('x', 2)], ['y'])
    """
    if iskey(keys):
        return [keys]
    out: list[Key] = []
    _flatten_into(keys, out)
    return out


def _flatten_into(items: Any, out: list[Key]) -> None:
    if type(items) is list and _tuple_keys(items):  # a row of __dask_keys__(): in bulk
        out.extend(items)
        return
    if isinstance(items, (str, bytes)) or not hasattr(items, "__iter__"):
        raise TypeError(f"expected a key or a (nested) list of keys; got {items!r}")
    for item in items:
        if iskey(item):
            out.append(item)
        elif isinstance(item, (list, set, frozenset, tuple)):
            _flatten_into(item, out)
        else:
            raise TypeError(f"expected a key or a (nested) list of keys; got {item!r}")


def _tuple_keys(items: list[Any]) -> bool:
    """Whether every item is a tuple key, checked with a few passes in C."""
    return (
        bool(items)
        and set(map(type, items)) == {tuple}
        and min(map(len, items)) > 0
        and set(map(type, map(_first, items))) == {str}
        and set(map(type, chain.from_iterable(items))) <= {str, int, float}
    )


_first = itemgetter(0)
_rest = itemgetter(slice(1, None))


def _keys_box(keys: list[Key], layer: Layer, ndim: int) -> list[tuple[int, int]] | None:
    """The box the keys list exactly, in C order and without repeats, or None: a few
    sequential passes in C (no hashing), which is how collections list their keys."""
    try:
        bounds = [
            (min(map(itemgetter(axis), keys)), max(map(itemgetter(axis), keys)) + 1)
            for axis in range(1, ndim + 1)
        ]
    except (TypeError, IndexError):
        return None
    if not all(type(lo) is int and type(hi) is int for lo, hi in bounds):
        return None
    if math.prod([hi - lo for lo, hi in bounds]) != len(keys):
        return None
    (prefix,) = layer.prefixes
    expected = itertools.product((prefix,), *[range(lo, hi) for lo, hi in bounds])
    return bounds if keys == list(expected) else None


def _blocks_of_keys(keys: list[Key], layer: Layer) -> BlockSet:
    """The blocks of ``keys`` (each ``(prefix, *block)``) as a BlockSet of ``layer``'s rank;
    a key of another shape or with non-integer coordinates is reported as missing."""
    own = layer.block_set()
    assert own is not None
    box = _keys_box(keys, layer, own.ndim) if len(keys) > 1 else None
    if box is not None:
        return BlockSet.box(box)
    listed: frozenset[Any] = frozenset(map(_rest, keys))
    if set(map(len, listed)) == {own.ndim} and set(map(type, chain.from_iterable(listed))) <= {int}:
        return BlockSet.from_blocks(listed, own.ndim)  # the common case, checked in bulk
    points = set()
    for key in keys:
        block = key[1:]
        if len(block) != own.ndim or not all(
            type(c) is int or (type(c) is float and c.is_integer()) for c in block
        ):
            raise MissingKeyError(key)
        points.add(tuple([int(c) for c in block]))
    return BlockSet.from_blocks(points, own.ndim)


def _dot_string(text: str) -> str:
    """A double-quoted dot string; newlines become dot's ``\\n`` line breaks."""
    escaped = text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    return f'"{escaped}"'


def _check_internal_cycles(layer: Layer) -> None:
    """Raise CycleError for a cycle among one layer's keys."""
    postorder(layer, lambda key: [d for d in layer.dependency_tuple(key) if d in layer])
