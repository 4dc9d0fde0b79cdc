"""Store each weight of a bundle once: ONNX initializers that equal a ``weights/<key>`` part.

A bundle holds the PyTorch ``state_dict`` (to rebuild the module) and one or two ONNX graphs
(the network and its encoder) whose initializers are, byte for byte, the same tensors. Schema
version 2 stores those bytes once, in ``/parts/weights``: the writer removes the ``raw_data``
of every initializer of a graph's main ``GraphProto`` whose bytes equal a weights part, and
the manifest lists, per ONNX part, which initializer takes its bytes from which weights part.
The loader puts the bytes back before anything else sees the graph.

Only ``TensorProto.raw_data`` (field 9) is removed and re-inserted; every other byte of the
serialised model is copied as it is. Protobuf writers emit fields in field-number order, so
the bytes go back where they were, and the writer keeps a graph whole (shares nothing) unless
the rebuilt graph is byte-identical to the original; the manifest records the SHA-256 of the
whole graph, which the loader checks. Only the standard library and numpy are used: the walk
follows ``onnx.proto`` as :mod:`.onnx_check` does (``ModelProto.graph`` 7,
``GraphProto.initializer`` 5, ``TensorProto.name`` 8, ``TensorProto.raw_data`` 9).
"""

from __future__ import annotations

import hashlib
from typing import Mapping

import numpy as np

from .onnx_check import _varint  # the same wire-format reader as the external-data check

__all__ = ["strip_shared_initializers", "restore_shared_initializers", "graph_sha256"]

_LEN = 2
_GRAPH, _INITIALIZER, _NAME, _RAW_DATA = 7, 5, 8, 9


class SharedInitializerError(ValueError):
    """A stripped graph and its weights do not fit together (the reason in the message)."""


def graph_sha256(data: bytes) -> str:
    """SHA-256 of a serialised model (``sha256sum`` of the ``.onnx`` file gives the same)."""
    return hashlib.sha256(bytes(data)).hexdigest()


def _encode_varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def _len_field(number: int, payload: bytes) -> bytes:
    return _encode_varint((number << 3) | _LEN) + _encode_varint(len(payload)) + payload


def _raw_fields(buf: memoryview, start: int, end: int):
    """Yield ``(number, wire, field start, value, field end)``; value is an int or a ``(start, end)`` span."""
    pos = start
    while pos < end:
        first = pos
        key, pos = _varint(buf, pos, end)
        number, wire = key >> 3, key & 7
        if wire == 0:
            value, pos = _varint(buf, pos, end)
        elif wire == 1:
            value, pos = None, pos + 8
        elif wire == 5:
            value, pos = None, pos + 4
        elif wire == _LEN:
            length, pos = _varint(buf, pos, end)
            value, pos = (pos, pos + length), pos + length
        else:
            raise SharedInitializerError(f"wire type {wire}, which ONNX never uses")
        if pos > end:
            raise SharedInitializerError("a field runs past the end of its message")
        yield number, wire, first, value, pos


def _le_bytes(a: np.ndarray) -> bytes:
    a = np.asarray(a)
    if a.dtype.byteorder == ">":
        a = a.astype(a.dtype.newbyteorder("<"))
    return np.ascontiguousarray(a).tobytes()


def _rewrite(data: bytes, tensor_fn) -> bytes:
    """Copy a ``ModelProto``, passing each main-graph initializer through ``tensor_fn(bytes) -> bytes``."""
    buf = memoryview(bytes(data))
    out = bytearray()
    for number, wire, first, value, last in _raw_fields(buf, 0, len(buf)):
        if number != _GRAPH or wire != _LEN:
            out += buf[first:last]
            continue
        graph = bytearray()
        for n2, w2, f2, v2, l2 in _raw_fields(buf, *value):
            if n2 == _INITIALIZER and w2 == _LEN:
                graph += _len_field(_INITIALIZER, tensor_fn(bytes(buf[v2[0]:v2[1]])))
            else:
                graph += buf[f2:l2]
        out += _len_field(_GRAPH, bytes(graph))
    return bytes(out)


def _tensor_parts(tensor: bytes) -> tuple[str | None, tuple[int, int] | None, list]:
    """Name, the span of ``raw_data`` and every field ``(number, start, end)`` of a TensorProto."""
    buf = memoryview(tensor)
    name, raw, fields = None, None, []
    for number, wire, first, value, last in _raw_fields(buf, 0, len(buf)):
        fields.append((number, first, last))
        if number == _NAME and wire == _LEN:
            name = bytes(buf[value[0]:value[1]]).decode("utf-8", errors="replace")
        elif number == _RAW_DATA and wire == _LEN:
            raw = value if raw is None else (-1, -1)  # two raw_data fields: never shared
    return name, raw, fields


def strip_shared_initializers(data: bytes, weights: Mapping[str, np.ndarray]) -> tuple[bytes, dict[str, str]]:
    """Remove the bytes of main-graph initializers that equal a weights array.

    Parameters
    ----------
    data
        A serialised ONNX model (already checked with :func:`.onnx_check.check_onnx_part`).
    weights
        The bundle's weights, name -> array exactly as stored (float32 or integer).

    Returns
    -------
    skeleton : bytes
        The model without those ``raw_data`` fields; ``data`` itself when nothing is shared
        or when the rebuilt model would not be byte-identical to ``data``.
    shared : dict
        Initializer name -> weights key of every stripped initializer (empty if none).
    """
    by_bytes: dict[bytes, str] = {}
    for key in sorted(weights):
        b = _le_bytes(weights[key])
        if b:
            by_bytes.setdefault(b, key)
    counts: dict[str, int] = {}

    def count(tensor: bytes) -> bytes:
        name = _tensor_parts(tensor)[0]
        counts[name] = counts.get(name, 0) + 1
        return tensor

    _rewrite(data, count)
    shared: dict[str, str] = {}

    def strip(tensor: bytes) -> bytes:
        name, raw, fields = _tensor_parts(tensor)
        if name is None or raw is None or raw[0] < 0 or counts.get(name) != 1:
            return tensor
        key = by_bytes.get(tensor[raw[0]:raw[1]])
        if key is None:
            return tensor
        shared[name] = key
        return b"".join(tensor[a:b] for n, a, b in fields if n != _RAW_DATA)

    skeleton = _rewrite(data, strip)
    if not shared:
        return bytes(data), {}
    try:
        rebuilt = restore_shared_initializers(skeleton, shared, weights)
    except SharedInitializerError:
        return bytes(data), {}
    if rebuilt != bytes(data):
        return bytes(data), {}
    return skeleton, shared


def restore_shared_initializers(skeleton: bytes, shared: Mapping[str, str], weights: Mapping[str, np.ndarray]) -> bytes:
    """Put the weights' bytes back into the stripped initializers of a model.

    Parameters
    ----------
    skeleton
        A model written by :func:`strip_shared_initializers`.
    shared
        Initializer name -> weights key, as it returned.
    weights
        The bundle's weights.

    Returns
    -------
    bytes
        The whole serialised model.

    Raises
    ------
    SharedInitializerError
        A listed initializer is missing, appears twice or already has data, or a weights key
        is absent.
    """
    missing_keys = sorted({k for k in shared.values() if k not in weights})
    if missing_keys:
        raise SharedInitializerError(f"weights part(s) {', '.join(missing_keys)} are absent")
    found: dict[str, int] = {}

    def restore(tensor: bytes) -> bytes:
        name, raw, fields = _tensor_parts(tensor)
        if name not in shared:
            return tensor
        found[name] = found.get(name, 0) + 1
        if raw is not None:
            raise SharedInitializerError(f"initializer '{name}' is listed as shared but holds its own data")
        payload = _len_field(_RAW_DATA, _le_bytes(weights[shared[name]]))
        out = bytearray()
        inserted = False
        for number, a, b in fields:
            if not inserted and number > _RAW_DATA:
                out += payload
                inserted = True
            out += tensor[a:b]
        if not inserted:
            out += payload
        return bytes(out)

    data = _rewrite(skeleton, restore)
    bad = sorted(n for n in shared if found.get(n, 0) != 1)
    if bad:
        shown = ", ".join(f"'{n}' ({found.get(n, 0)} times)" for n in bad[:3])
        raise SharedInitializerError(f"listed initializer(s) not found exactly once in the main graph: {shown}")
    return data
