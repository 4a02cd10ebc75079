"""Payload blobs: stored once by content on the client, verified and unpickled on workers.

Bounds of what a worker keeps (the only place hlg unpickles):

* **Per process: nothing.** No unpickled object outlives the :class:`Blobs` of its
  computation, so a mutable constant or a stateful callable cannot carry state from one
  computation into the next, and a worker does not grow with the number of graphs it has
  run. (Module-level functions pickled by reference live in the import system's module
  cache, like any imported code.)
* **Per computation (one Blobs object): code only, at most** :data:`CODE_CACHE_BYTES`
  **of pickled bytes.** Templates and functions (``load_code``) are unpickled once per
  computation while the cached blobs total at most that many bytes; beyond it they are
  unpickled per use. The cache is released with the Blobs object.
* **Data blobs are never cached.** ``load`` unpickles a fresh value per use, so a task
  that mutates its input changes nothing another task reads, and a value is released
  when its task is done with it.

A Blobs object verifies every blob's content id when it is built (also when it is
unpickled), so forged ids cannot make one blob stand for another, and its ``graph_id``
(a digest of the ids in order) lets a :class:`hlg.PackedTask` refuse another graph's blobs.
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Sequence
from typing import Any, final

import cloudpickle

from hlg._wire import PackError

__all__ = ["CODE_CACHE_BYTES", "BlobRef", "Blobs", "PackContext", "blob_id"]

#: Pickled bytes of code blobs one computation keeps unpickled (per Blobs object).
CODE_CACHE_BYTES = 64 * 2**20


def blob_id(data: bytes) -> bytes:
    """The content id of a blob: its blake2b-128 digest.

    >>> blob_id(b"x").hex()[:8]
    '442a4445'
    """
    return hashlib.blake2b(data, digest_size=16).digest()


@final
class BlobRef:
    """A placeholder for blob number ``index`` inside a runspec (a value to unpickle).

    >>> BlobRef(3)
    BlobRef(3)
    """

    __slots__ = ("index",)
    index: int

    def __init__(self, index: int) -> None:
        self.index = index

    def __eq__(self, other: object) -> bool:
        return type(other) is BlobRef and other.index == self.index

    def __hash__(self) -> int:
        return hash((BlobRef, self.index))

    def __repr__(self) -> str:
        return f"BlobRef({self.index})"

    def __reduce__(self) -> tuple[Any, ...]:
        return (BlobRef, (self.index,))


class PackContext:
    """Client side: stores blobs by content and keeps one blob per function per pack.

    >>> ctx = PackContext()
    >>> ctx.add(len) == ctx.add(len), ctx.add_bytes(b"x") == ctx.add_bytes(b"x")
    (True, True)
    >>> len(ctx.blobs)
    2
    """

    def __init__(self) -> None:
        self.blobs: list[bytes] = []
        self._index: dict[bytes, int] = {}
        self._by_object: dict[int, tuple[Any, int]] = {}

    def add_bytes(self, data: bytes) -> int:
        """Store ``data`` once; return its index."""
        index = self._index.get(data)
        if index is None:
            index = len(self.blobs)
            self._index[data] = index
            self.blobs.append(data)
        return index

    def add(self, obj: Any) -> int:
        """Pickle ``obj`` (once per object per pack) and store it; return its index."""
        cached = self._by_object.get(id(obj))
        if cached is not None and cached[0] is obj:
            return cached[1]
        index = self.add_bytes(cloudpickle.dumps(obj, protocol=5))
        self._by_object[id(obj)] = (obj, index)
        return index


@final
class Blobs:
    """The payload blobs of one packed graph, with their verified content ids.

    ``load(i)`` unpickles data blob ``i`` afresh on every call; ``load_code(i)``
    (functions, templates) once per Blobs object, within :data:`CODE_CACHE_BYTES`.
    Ids given with the data are checked against the content.

    >>> import pickle
    >>> blobs = Blobs([pickle.dumps({"a": 1})])
    >>> len(blobs), blobs.load(0)
    (1, {'a': 1})
    >>> blobs.load(0) is blobs.load(0)
    False
    >>> Blobs([b"x"], [b"0" * 16])
    Traceback (most recent call last):
    ...
    hlg._wire.PackError: blob 0: content does not match its id
    """

    __slots__ = ("_cached_bytes", "_code", "_fillers", "_lock", "data", "graph_id", "ids")

    def __init__(self, data: Sequence[bytes], ids: Sequence[bytes] | None = None) -> None:
        self.data = list(data)
        computed = [blob_id(d) for d in self.data]
        if ids is not None:
            given = list(ids)
            if len(given) != len(computed):
                raise PackError(f"{len(computed)} blobs but {len(given)} blob ids")
            for i, (a, b) in enumerate(zip(given, computed, strict=True)):
                if a != b:
                    raise PackError(f"blob {i}: content does not match its id")
        self.ids = computed
        self.graph_id = hashlib.blake2b(b"".join(computed), digest_size=16).digest()
        self._code: dict[int, Any] = {}
        self._fillers: dict[tuple[int, int], Any] = {}
        self._cached_bytes = 0
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self.data)

    def _blob(self, index: int) -> bytes:
        if type(index) is not int or not 0 <= index < len(self.data):
            raise PackError(f"blob reference {index!r} out of range (0..{len(self.data)})")
        return self.data[index]

    def load(self, index: int) -> Any:
        """Unpickle data blob ``index`` (a fresh value on every call)."""
        return cloudpickle.loads(self._blob(index))

    def load_code(self, index: int) -> Any:
        """Unpickle a function or template blob, once per Blobs object."""
        try:
            return self._code[index]
        except KeyError:
            pass
        data = self._blob(index)
        value = cloudpickle.loads(data)
        with self._lock:
            if index not in self._code and self._cached_bytes + len(data) <= CODE_CACHE_BYTES:
                self._code[index] = value
                self._cached_bytes += len(data)
            return self._code.get(index, value)

    def filler(self, index: int, refmask: int) -> Any:
        """The template of blob ``index``'s ``keys_filler(refmask)``, built once."""
        cache_key = (index, refmask)
        found = self._fillers.get(cache_key)
        if found is None:
            found = self.load_code(index).keys_filler(refmask)
            if index in self._code:  # cached only along with its template
                self._fillers[cache_key] = found
        return found

    def nbytes(self) -> int:
        """Total size of the blobs."""
        return sum(len(d) for d in self.data)

    def __reduce__(self) -> tuple[Any, ...]:
        return (Blobs, (self.data, self.ids))
