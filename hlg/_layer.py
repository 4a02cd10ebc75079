"""Layers: families of tasks that know their keys and dependencies without building tasks.

A subclass implements what identifies its family — ``__iter__`` (its keys) and
``__getitem__`` (build the task of one key) — and inherits correct defaults for the
rest. Override ``__len__``, ``__contains__``, ``dependencies`` and ``cull`` to make them
symbolic (O(1) or O(kept keys)) instead of the defaults' O(keys) walks.
"""

from __future__ import annotations

import copy
import hashlib
from collections.abc import Iterable, Iterator, Mapping
from typing import Any, ClassVar

from hlg._annotations import Annotations, current_annotations, merge_annotations
from hlg._blocks import BlockSet
from hlg._gc import gc_paused
from hlg._keys import Key, iskey, key_prefix
from hlg._task import GraphNode, check_node
from hlg._tokenize import tokenize

__all__ = ["CulledLayer", "Layer", "MaterializedLayer"]


class Layer(Mapping[Key, GraphNode]):
    """A lazy ``Mapping[key, Task]`` describing one family of tasks.

    ``len``, ``in`` and iteration never build a task; ``layer[key]`` builds one;
    :meth:`materialize` is the only full build, and nothing caches it. Two layers are
    equal only when they are the same object (comparing contents would build them).

    A minimal subclass (keys ``(name, i)`` computing ``i ** 2``):

    >>> from hlg import Task
    >>> class Squares(Layer):
    ...     kind = "squares"
    ...     def __init__(self, n, name="squares", annotations=None):
    ...         super().__init__(name, annotations)
    ...         self.n = n
    ...     def __iter__(self):
    ...         return ((self.name, i) for i in range(self.n))
    ...     def __getitem__(self, key):
    ...         if key not in self:
    ...             raise KeyError(key)
    ...         return Task(key, pow, key[1], 2)
    ...     # optional, but O(1) instead of the defaults' walk over the keys:
    ...     def __contains__(self, key):
    ...         return type(key) is tuple and len(key) == 2 and key[0] == self.name and (
    ...             type(key[1]) is int and 0 <= key[1] < self.n)
    ...     def __len__(self):
    ...         return self.n
    >>> layer = Squares(4)
    >>> len(layer), ("squares", 3) in layer, layer[("squares", 3)]({})
    (4, True, 9)
    """

    #: The registered kind name of this layer type (used by describe and packing).
    kind: ClassVar[str] = "layer"
    name: str
    annotations: Annotations

    def __init__(self, name: str, annotations: Mapping[str, Any] | None = None) -> None:
        if not isinstance(name, str) or not name:
            raise TypeError(f"a layer name must be a non-empty str; got {name!r}")
        self.name = name
        self.annotations = merge_annotations(current_annotations(), annotations)

    # -- what a subclass must say ---------------------------------------------------------

    def __iter__(self) -> Iterator[Key]:
        """Yield the layer's keys without building tasks."""
        raise NotImplementedError(f"{type(self).__name__} must implement __iter__")

    def __getitem__(self, key: Key) -> GraphNode:
        """Build the task of ``key`` (``KeyError`` if the layer has no such key)."""
        raise NotImplementedError(f"{type(self).__name__} must implement __getitem__")

    # -- symbolic defaults ----------------------------------------------------------------

    def __len__(self) -> int:
        """Count the keys (default: by iterating them; no task is built)."""
        return sum(1 for _ in self)

    def __contains__(self, key: object) -> bool:
        """Say whether ``key`` is in the layer (default: by iterating the keys)."""
        if not iskey(key):
            return False
        return any(k == key for k in self)

    def dependencies(self, key: Key) -> frozenset[Key]:
        """The keys the task of ``key`` reads (default: builds that one task)."""
        return self[key].dependencies

    def dependency_tuple(self, key: Key) -> tuple[Key, ...]:
        """The dependencies of ``key`` in argument order (default: builds that task)."""
        return self[key].dependency_tuple

    def read_prefixes(self) -> frozenset[str] | None:
        """The first items of every key this layer reads from outside itself, or None.

        A layer that knows which families it reads without walking its keys says so here,
        and ``HighLevelGraph`` infers its layer dependencies from that in O(1). Saying a
        prefix that no task reads is harmless (an extra layer dependency); leaving out one
        that a task reads is a lie :func:`hlg.testing.check_layer` reports. Default None:
        the dependencies are found by walking every key's ``dependency_tuple``.

        >>> from hlg import DataNode
        >>> MaterializedLayer({"x": DataNode("x", 1)}).read_prefixes() is None
        True
        """
        return None

    # -- positions (optional): keys numbered symbolically, for compact scheduler state --

    def position_span(self) -> int | None:
        """How many positions number this layer's keys (``0 … span - 1``), or None.

        A layer that can say which integer position a key has (and which key a position
        has) without a per-key table returns the size of that range — at least
        ``len(self)``; positions that hold no key are allowed (culled or padding
        blocks). Schedulers then keep per-task state in arrays indexed by position.
        Default None: the layer's keys are numbered one by one (per-key state).
        """
        return None

    def key_position(self, key: Key) -> int:
        """The position of ``key``, a key this layer holds (see :meth:`position_span`)."""
        raise NotImplementedError(f"{type(self).__name__} does not number its keys")

    def position_key(self, position: int) -> Key:
        """The key at ``position`` (the inverse of :meth:`key_position`)."""
        raise NotImplementedError(f"{type(self).__name__} does not number its keys")

    @property
    def prefixes(self) -> frozenset[str]:
        """The first items of this layer's keys (default: found by iterating them once)."""
        found = self.__dict__.get("_prefixes")
        if found is None:
            found = frozenset(key_prefix(k) for k in self)
            self.__dict__["_prefixes"] = found
        return found

    def cull(self, keys: Iterable[Key]) -> tuple[Layer, frozenset[Key]]:
        """Keep the tasks ``keys`` need from this layer.

        Returns the smaller layer (this one when nothing is dropped) and the keys
        outside this layer that the kept tasks read. Keys not in the layer are ignored.
        """
        kept, external = _closure(self, keys)
        if len(kept) == len(self):
            return self, frozenset(external)
        return CulledLayer(self, kept), frozenset(external)

    # -- symbolic culling on block sets (optional) -------------------------------------------

    def block_set(self) -> BlockSet | None:
        """The layer's blocks, when its keys are ``(prefix, *block)`` for its one prefix.

        The default, None, says the layer only knows keys: graphs cull it with
        :meth:`cull`. A layer that returns a :class:`BlockSet` is culled with
        :meth:`cull_blocks` instead, so culling whole layers or boxes costs O(boxes).
        """
        return None

    def cull_blocks(self, blocks: BlockSet) -> tuple[Layer, dict[str, BlockSet], frozenset[Key]]:
        """Keep the tasks of ``blocks`` (and what they need inside the layer).

        Returns the smaller layer, the blocks it reads from other layers by key prefix,
        and the other keys it reads. The default enumerates the blocks' keys and calls
        :meth:`cull`; layers with an index structure (``Blockwise``) map the set
        through it without enumerating keys.
        """
        (prefix,) = self.prefixes
        layer, external = self.cull([(prefix, *b) for b in blocks])
        return layer, {}, external

    def cull_keys(self, keys: Iterable[Key]) -> tuple[Layer, dict[str, BlockSet], frozenset[Key]]:
        """:meth:`cull`, with the blocks read from layers of blocks given as block sets.

        Returns the smaller layer, the blocks it reads by key prefix and the other keys
        it reads. The default reports everything as keys (``cull``); a layer that reads
        whole ranges of another layer (a tree reduction, a shuffle) says so as a
        :class:`BlockSet`, so culling does not enumerate those keys.
        """
        layer, external = self.cull(keys)
        return layer, {}, external

    def materialize(self) -> dict[Key, GraphNode]:
        """Build every task: the only full materialization, done when asked for."""
        with gc_paused():
            return {key: self[key] for key in self}

    def with_annotations(self, **annotations: Any) -> Layer:
        """Return a copy whose annotations are these added to (and overriding) the old.

        >>> from hlg import DataNode
        >>> MaterializedLayer({"x": DataNode("x", 1)}).with_annotations(retries=3).annotations
        Annotations({'retries': 3})
        """
        new = copy.copy(self)
        new.annotations = merge_annotations(self.annotations, annotations)
        return new

    def __hlg_tokenize__(self) -> object:
        """What a token of this layer is made of: its pickled state without caches.

        >>> from hlg import DataNode, tokenize
        >>> layer = MaterializedLayer({"x": DataNode("x", 1)}, name="x")
        >>> before = tokenize(layer)
        >>> layer.prefixes  # a cache, filled on first use: not part of the token
        frozenset({'x'})
        >>> tokenize(layer) == before
        True
        """
        reduced = self.__reduce_ex__(4)
        if isinstance(reduced, str):
            return reduced
        parts = list(reduced[:3])
        if len(parts) == 3 and isinstance(parts[2], dict):
            parts[2] = {k: v for k, v in parts[2].items() if k not in self._caches}
        return (type(self), *parts)

    #: Attributes that only cache what other attributes determine (left out of tokens).
    _caches: ClassVar[frozenset[str]] = frozenset({"_prefixes"})

    def _family(self) -> object:
        """An object shared by this layer and the layers culled from it (whose tasks are
        therefore the same): two layers of one family never collide."""
        return self

    def culled_name(self, kept: Iterable[Key]) -> str:
        """A deterministic new name for this layer keeping only ``kept``."""
        return f"{self.name}-cull-{_keyset_token(self.name, kept)}"

    # Mapping's defaults would compare and hash by building every task.
    def __eq__(self, other: object) -> bool:
        return self is other

    def __hash__(self) -> int:
        return id(self)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name!r} kind={self.kind!r}>"


def _closure(layer: Layer, keys: Iterable[Key]) -> tuple[dict[Key, None], set[Key]]:
    """The keys of ``layer`` that ``keys`` need (inside the layer), and those outside."""
    kept: dict[Key, None] = {}
    external: set[Key] = set()
    stack = [k for k in keys if k in layer]
    while stack:
        key = stack.pop()
        if key in kept:
            continue
        kept[key] = None
        for dep in layer.dependency_tuple(key):
            if dep in layer:
                if dep not in kept:
                    stack.append(dep)
            else:
                external.add(dep)
    return kept, external


def single_layer_graph_name(keys: Iterable[Key]) -> str:
    """The name of the one layer wrapping a plain dict passed to pack or optimize."""
    return "graph-" + _keys_token(keys)


def _keys_token(keys: Iterable[Key]) -> str:
    """A deterministic token of a sequence of keys (their reprs are deterministic)."""
    hasher = hashlib.blake2b(digest_size=16)
    for key in keys:
        hasher.update(repr(key).encode())
        hasher.update(b"\x00")
    return hasher.hexdigest()


def _keyset_token(name: str, keys: Iterable[Key]) -> str:
    """A deterministic, order-independent token of a set of keys: O(keys), no sorting."""
    total = 0
    for key in keys:
        digest = hashlib.blake2b(repr(key).encode(), digest_size=16).digest()
        total = (total + int.from_bytes(digest, "little")) % (1 << 128)
    return hashlib.blake2b(f"{name}:{total}".encode(), digest_size=8).hexdigest()


class CulledLayer(Layer):
    """A view of another layer restricted to some of its keys (the default cull result).

    >>> from hlg import DataNode
    >>> parent = MaterializedLayer({k: DataNode(k, 0) for k in "abc"}, name="p")
    >>> view = CulledLayer(parent, ["b"])
    >>> list(view), view.name.startswith("p-cull-"), view["b"], view.kind
    (['b'], True, DataNode('b', 0), 'materialized')
    """

    @property
    def kind(self) -> str:  # type: ignore[override]
        """The parent's kind: a culled view is still a layer of that kind."""
        return self.parent.kind

    def __init__(self, parent: Layer, keys: Iterable[Key]) -> None:
        kept = dict.fromkeys(keys)
        super().__init__(parent.culled_name(kept))
        self.annotations = parent.annotations  # exactly the parent's, whatever the context
        self.parent = parent
        self.kept = kept

    def __iter__(self) -> Iterator[Key]:
        return iter(self.kept)

    def __len__(self) -> int:
        return len(self.kept)

    def __contains__(self, key: object) -> bool:
        try:
            return key in self.kept
        except TypeError:
            return False

    def __getitem__(self, key: Key) -> GraphNode:
        if key not in self.kept:
            raise KeyError(key)
        return self.parent[key]

    def dependencies(self, key: Key) -> frozenset[Key]:
        """The parent's dependencies of a kept key."""
        if key not in self.kept:
            raise KeyError(key)
        return self.parent.dependencies(key)

    def dependency_tuple(self, key: Key) -> tuple[Key, ...]:
        """The parent's dependencies of a kept key, in argument order."""
        if key not in self.kept:
            raise KeyError(key)
        return self.parent.dependency_tuple(key)

    @property
    def prefixes(self) -> frozenset[str]:
        """The parent's prefixes: a culled layer's keys keep their prefix."""
        return self.parent.prefixes

    def read_prefixes(self) -> frozenset[str] | None:
        """The parent's: a kept task reads a subset of what the parent's tasks read."""
        return self.parent.read_prefixes()

    def position_span(self) -> int | None:
        """The parent's positions (a kept key keeps its position)."""
        return self.parent.position_span()

    def key_position(self, key: Key) -> int:
        """The parent's position of a kept key."""
        return self.parent.key_position(key)

    def position_key(self, position: int) -> Key:
        """The parent's key at ``position``."""
        return self.parent.position_key(position)

    def _family(self) -> object:
        return self.parent._family()


class MaterializedLayer(Layer):
    """A layer holding an explicit dict of nodes.

    Without ``name``, the layer is named from a token of its contents (keys and tasks),
    so two different layers never share a name; pass a name for very large dicts to
    skip that O(tasks) tokenizing.

    >>> from operator import add
    >>> from hlg import DataNode, Task, TaskRef
    >>> layer = MaterializedLayer(
    ...     {"a": DataNode("a", 1), "b": Task("b", add, TaskRef("a"), 1)}, name="ab"
    ... )
    >>> len(layer), layer.dependencies("b"), layer["b"]({"a": 1})
    (2, frozenset({'a'}), 2)
    """

    kind = "materialized"

    def __init__(
        self,
        mapping: Mapping[Key, GraphNode],
        name: str | None = None,
        annotations: Mapping[str, Any] | None = None,
    ) -> None:
        tasks = dict(mapping)
        prefixes = set()
        for key, node in tasks.items():
            check_node(key, node, "MaterializedLayer")
            prefixes.add(key_prefix(key))
        if name is None:
            name = "materialized-" + tokenize(tasks)  # the content: keys and tasks
        super().__init__(name, annotations)
        self.tasks = tasks
        self.__dict__["_prefixes"] = frozenset(prefixes)

    def __iter__(self) -> Iterator[Key]:
        return iter(self.tasks)

    def __len__(self) -> int:
        return len(self.tasks)

    def __contains__(self, key: object) -> bool:
        try:
            return key in self.tasks
        except TypeError:
            return False

    def __getitem__(self, key: Key) -> GraphNode:
        return self.tasks[key]

    def dependencies(self, key: Key) -> frozenset[Key]:
        """The stored node's dependencies."""
        return self.tasks[key].dependencies

    def dependency_tuple(self, key: Key) -> tuple[Key, ...]:
        """The stored node's dependencies in argument order."""
        return self.tasks[key].dependency_tuple

    def cull(self, keys: Iterable[Key]) -> tuple[Layer, frozenset[Key]]:
        """Keep the tasks ``keys`` need (closure inside the layer); O(kept)."""
        kept, external = _closure(self, keys)
        if len(kept) == len(self.tasks):
            return self, frozenset(external)
        culled = MaterializedLayer({k: self.tasks[k] for k in kept}, self.culled_name(kept))
        culled.annotations = self.annotations  # exactly ours, whatever the context
        return culled, frozenset(external)

    def materialize(self) -> dict[Key, GraphNode]:
        """A copy of the stored dict."""
        return dict(self.tasks)
