"""The wire format of packed graphs: msgpack records decoded with type validation.

A packed graph is the msgpack array ``[protocol, body]``. The protocol number is read
first, so a future body layout is refused by number, not by a confusing decode error.
The body is an :class:`Envelope`; each layer's ``state`` stays raw msgpack until the
layer's kind decodes it with its own schema. Every decoding failure becomes a
:class:`PackError` naming what is wrong.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import msgspec

from hlg._keys import Key, iskey

__all__ = [
    "PROTOCOL",
    "Envelope",
    "LayerRecord",
    "Limits",
    "PackError",
    "decode_key",
    "decode_keys",
    "encode_key",
]

#: The version of the packed layout this hlg writes and reads.
PROTOCOL = 1


class PackError(ValueError):
    """Packed data is malformed, inconsistent, too large, or from an unknown version.

    >>> import hlg
    >>> try:
    ...     hlg.unpack(b"")
    ... except ValueError as err:
    ...     print(type(err).__name__, err)
    PackError not a packed hlg graph: Input data was truncated
    """


@dataclass(frozen=True)
class Limits:
    """Bounds checked while unpacking, before anything is allocated for a declared size.

    ``max_tasks`` bounds the tasks of the whole graph (and so its outputs),
    ``max_fan_in`` the keys and per-block values one task reads, ``max_edges`` the
    dependency edges of the whole graph (computed per layer from its structure),
    ``max_layers`` the layers, ``max_key_length`` the items of one key (a blockwise layer
    has at most ``max_key_length - 1`` dimensions). docs/protocol.md ("Threat model and
    limits") gives the worst-case cost of each default.

    >>> Limits().max_tasks, Limits().max_fan_in, Limits().max_edges
    (100000000, 100000, 1000000000)
    """

    max_tasks: int = 10**8
    max_layers: int = 10**5
    max_key_length: int = 256
    max_fan_in: int = 10**5
    max_edges: int = 10**9


class LayerRecord(msgspec.Struct, array_like=True, frozen=True, gc=False):
    """One layer: its name, kind, the layers it reads, annotations and raw state."""

    name: str
    kind: str
    kind_version: int
    deps: list[str]
    annotations: dict[str, Any]
    state: msgspec.Raw


class Envelope(msgspec.Struct, array_like=True, frozen=True, gc=False):
    """The body of a packed graph (protocol 1)."""

    hlg_version: str
    python_version: str
    cloudpickle_version: str
    layers: list[LayerRecord]
    outputs: list[tuple[str, Any]]
    blobs: list[bytes]
    blob_ids: list[bytes]


_encoder = msgspec.msgpack.Encoder()
_head_decoder = msgspec.msgpack.Decoder(tuple[int, msgspec.Raw])
_body_decoder = msgspec.msgpack.Decoder(Envelope)


def encode(envelope: Envelope) -> bytes:
    """Serialize an envelope under the current protocol number."""
    return _encoder.encode((PROTOCOL, msgspec.Raw(_encoder.encode(envelope))))


def encode_state(state: Any) -> msgspec.Raw:
    """Serialize one layer's state (keys already encoded with :func:`encode_key`)."""
    return msgspec.Raw(_encoder.encode(state))


def decode(data: bytes | bytearray | memoryview) -> Envelope:
    """Decode packed bytes into an envelope, or raise :class:`PackError`."""
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise PackError(f"packed data must be bytes; got {type(data).__name__}")
    try:
        protocol, body = _head_decoder.decode(data)
    except (msgspec.DecodeError, msgspec.ValidationError, UnicodeDecodeError) as err:
        raise PackError(f"not a packed hlg graph: {err}") from None
    if protocol != PROTOCOL:
        raise PackError(
            f"packed graph uses protocol {protocol}; this hlg reads protocol {PROTOCOL}"
        )
    try:
        return _body_decoder.decode(body)
    except (msgspec.DecodeError, msgspec.ValidationError, UnicodeDecodeError) as err:
        raise PackError(f"malformed packed graph: {err}") from None


def decode_state(raw: msgspec.Raw, schema: Any, layer: str) -> Any:
    """Decode one layer's raw state with ``schema``, or raise :class:`PackError`."""
    try:
        return msgspec.msgpack.decode(raw, type=schema)
    except (msgspec.DecodeError, msgspec.ValidationError, UnicodeDecodeError) as err:
        raise PackError(f"layer {layer!r}: malformed state: {err}") from None


def encode_key(key: Key) -> Any:
    """A key on the wire: a ``str`` stays a string, a tuple becomes an array.

    >>> encode_key(("x", 0, 1.5)), encode_key("y")
    (['x', 0, 1.5], 'y')
    """
    return key if isinstance(key, str) else list(key)


def decode_key(obj: Any, limits: Limits, where: str) -> Key:
    """Turn a decoded key back into ``str`` or ``tuple``; refuse anything else.

    >>> decode_key(["x", 0], Limits(), "here")
    ('x', 0)
    >>> decode_key(["x", True], Limits(), "layer 'y'")
    Traceback (most recent call last):
    ...
    hlg._wire.PackError: layer 'y': ['x', True] is not a key
    """
    if type(obj) is str:
        return obj
    if type(obj) is list and len(obj) <= limits.max_key_length:
        key = tuple(obj)
        if iskey(key):
            return key
    raise PackError(f"{where}: {obj!r} is not a key")


def decode_keys(objs: Any, limits: Limits, where: str) -> list[Key]:
    """Decode a list of keys."""
    if type(objs) is not list:
        raise PackError(f"{where}: expected a list of keys; got {type(objs).__name__}")
    return [decode_key(o, limits, where) for o in objs]
