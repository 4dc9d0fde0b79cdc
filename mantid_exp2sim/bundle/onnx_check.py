"""Check the ONNX parts of a bundle without the ``onnx`` package: a protobuf wire-format walk.

A bundle is data: its ONNX graphs must carry every weight inside (docs/bundle-format.md).
ONNX can also store a tensor's bytes in another file (``data_location = EXTERNAL`` with
``external_data`` entries such as ``location = "w.bin"``); ONNX Runtime then reads that file
relative to the model, or for a model given as bytes relative to the current directory. A
bundle that did so would make loading it read arbitrary files, so :func:`check_onnx_part`
rejects it, and it also rejects a part that is not a serialised ONNX model at all, with a
message naming the part instead of ONNX Runtime's ``InvalidProtobuf``.

Only the standard library is used (the bundle layer imports numpy and h5py only). The walk
follows ``onnx.proto`` (IR version 10; field numbers are stable across IR versions):

* ``ModelProto``: ``ir_version`` 1, ``graph`` 7, ``opset_import`` 8, ``training_info`` 20,
  ``functions`` 25;
* ``GraphProto``: ``node`` 1, ``initializer`` 5, ``input`` 11, ``output`` 12,
  ``sparse_initializer`` 15;
* ``NodeProto``: ``attribute`` 5; ``FunctionProto``: ``node`` 7, ``attribute_proto`` 11;
* ``AttributeProto``: ``t`` 5, ``g`` 6, ``tensors`` 10, ``graphs`` 11, ``sparse_tensor`` 22,
  ``sparse_tensors`` 23;
* ``SparseTensorProto``: ``values`` 1, ``indices`` 2; ``TrainingInfoProto``:
  ``initialization`` 1, ``algorithm`` 2;
* ``TensorProto``: ``name`` 8, ``external_data`` 13, ``data_location`` 14 (``EXTERNAL`` = 1).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..errors import BundleError, format_error

__all__ = ["OnnxSummary", "check_onnx_part", "summarise_onnx"]

_VARINT, _FIXED64, _LEN, _FIXED32 = 0, 1, 2, 5
_EXTERNAL = 1  # TensorProto.DataLocation.EXTERNAL
_MAX_DEPTH = 64  # nested subgraphs (If/Loop/Scan bodies); deeper is refused, not walked

# Message fields that hold other messages, per message type: field number -> message type.
_CHILDREN: dict[str, dict[int, str]] = {
    "model": {7: "graph", 20: "training_info", 25: "function"},
    "graph": {1: "node", 5: "tensor", 15: "sparse_tensor"},
    "node": {5: "attribute"},
    "function": {7: "node", 11: "attribute"},
    "attribute": {5: "tensor", 6: "graph", 10: "tensor", 11: "graph", 22: "sparse_tensor", 23: "sparse_tensor"},
    "sparse_tensor": {1: "tensor", 2: "tensor"},
    "training_info": {1: "graph", 2: "graph"},
    "tensor": {13: "entry"},
    "entry": {},
}


class _WireError(ValueError):
    """The bytes are not a well-formed protobuf message."""


@dataclass
class OnnxSummary:
    """What :func:`summarise_onnx` found in a serialised ONNX model.

    Attributes
    ----------
    ir_version
        ``ModelProto.ir_version`` (0 when absent).
    has_opset_import
        Whether the model imports at least one operator set.
    graph_nodes, graph_inputs, graph_outputs
        Counts in the main graph (None when the model has no graph).
    external
        ``(scope, tensor name, location)`` of every tensor whose data live in another file,
        anywhere in the model (main graph, subgraphs, functions, training graphs).
    """

    ir_version: int = 0
    has_opset_import: bool = False
    graph_nodes: int | None = None
    graph_inputs: int | None = None
    graph_outputs: int | None = None
    external: list[tuple[str, str, str]] = field(default_factory=list)


def _varint(buf: memoryview, pos: int, end: int) -> tuple[int, int]:
    result = shift = 0
    for _ in range(10):
        if pos >= end:
            raise _WireError("a varint runs past the end of its message")
        byte = buf[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, pos
        shift += 7
    raise _WireError("a varint is longer than 10 bytes")


def _fields(buf: memoryview, start: int, end: int):
    """Yield ``(field number, wire type, value)``; value is an int or a ``(start, end)`` span."""
    pos = start
    while pos < end:
        key, pos = _varint(buf, pos, end)
        number, wire = key >> 3, key & 7
        if number == 0:
            raise _WireError("field number 0")
        if wire == _VARINT:
            value, pos = _varint(buf, pos, end)
        elif wire == _FIXED64:
            if pos + 8 > end:
                raise _WireError("a 64-bit field runs past the end of its message")
            value, pos = int.from_bytes(buf[pos : pos + 8], "little"), pos + 8
        elif wire == _FIXED32:
            if pos + 4 > end:
                raise _WireError("a 32-bit field runs past the end of its message")
            value, pos = int.from_bytes(buf[pos : pos + 4], "little"), pos + 4
        elif wire == _LEN:
            length, pos = _varint(buf, pos, end)
            if pos + length > end:
                raise _WireError("a length-delimited field runs past the end of its message")
            value, pos = (pos, pos + length), pos + length
        else:
            raise _WireError(f"wire type {wire}, which ONNX never uses")
        yield number, wire, value


def _text(buf: memoryview, span: tuple[int, int]) -> str:
    return bytes(buf[span[0] : span[1]]).decode("utf-8", errors="replace")


def _walk(buf: memoryview, span: tuple[int, int], kind: str, path: str, depth: int, out: OnnxSummary) -> dict[int, int]:
    """Walk one message of type ``kind``; returns a count of its fields by number."""
    if depth > _MAX_DEPTH:
        raise _WireError(f"subgraphs nested deeper than {_MAX_DEPTH} levels")
    counts: dict[int, int] = {}
    children = _CHILDREN.get(kind, {})
    tensor_name, location, data_location, n_external = "", "", 0, 0
    for number, wire, value in _fields(buf, *span):
        counts[number] = counts.get(number, 0) + 1
        if number in children:
            if wire != _LEN:
                raise _WireError(f"field {number} of a {kind} is not a message")
            child = children[number]
            sub = _walk(buf, value, child, f"{path}/{child}", depth + 1, out)
            if kind == "model" and number == 7:
                out.graph_nodes, out.graph_inputs, out.graph_outputs = sub.get(1, 0), sub.get(11, 0), sub.get(12, 0)
            elif kind == "tensor" and number == 13:  # external_data entry: key 1, value 2
                n_external += 1
                entry = {n2: _text(buf, v2) for n2, w2, v2 in _fields(buf, *value) if w2 == _LEN and n2 in (1, 2)}
                if entry.get(1) == "location":
                    location = entry.get(2, "")
        elif kind == "tensor" and number == 8 and wire == _LEN:
            tensor_name = _text(buf, value)
        elif kind == "tensor" and number == 14:
            if wire != _VARINT:
                raise _WireError("TensorProto.data_location is not a varint")
            data_location = int(value)
        elif kind == "model" and number == 1:
            if wire != _VARINT:
                raise _WireError("ModelProto.ir_version is not a varint")
            out.ir_version = int(value)
    if kind == "tensor" and (data_location == _EXTERNAL or n_external):
        scope = "the main graph" if path.startswith("model/graph/") and path.count("graph") == 1 else (
            "a subgraph, function or training graph")
        out.external.append((scope, tensor_name or "(unnamed)", location or "(no location)"))
    return counts


def summarise_onnx(data: bytes) -> OnnxSummary:
    """Parse a serialised ONNX ``ModelProto`` far enough to check it (see the module notes).

    Parameters
    ----------
    data
        The bytes of the model.

    Returns
    -------
    OnnxSummary

    Raises
    ------
    ValueError
        The bytes are not a well-formed protobuf message (the reason in the message).
    """
    buf = memoryview(bytes(data))
    out = OnnxSummary()
    counts = _walk(buf, (0, len(buf)), "model", "model", 0, out)
    out.has_opset_import = counts.get(8, 0) > 0
    return out


def check_onnx_part(data: bytes, *, part: str, where: str) -> OnnxSummary:
    """Raise :class:`~mantid_exp2sim.errors.BundleError` unless ``data`` is a self-contained ONNX model.

    Parameters
    ----------
    data
        The bytes of the bundle part.
    part
        The part's name (``"onnx"`` or ``"onnx_encoder"``), for the message.
    where
        The bundle file, for the message.

    Returns
    -------
    OnnxSummary
        What was found, when the part is acceptable.

    Raises
    ------
    BundleError
        The part is not a serialised ONNX model (not protobuf, no graph, no operator set,
        an empty graph), or one of its tensors, in the main graph or any subgraph, function
        or training graph, keeps its data in an external file.
    """
    fix = "re-export the bundle with exp2sim-train (it stores every weight inside the graph)"
    try:
        summary = summarise_onnx(data)
    except ValueError as exc:
        raise BundleError(
            format_error(
                f"Model bundle {where} is damaged: part '{part}' is not an ONNX model",
                reason=f"its bytes do not parse as a serialised ONNX ModelProto ({exc})",
                fix=fix,
            )
        ) from None
    problems = []
    if summary.ir_version < 3:
        problems.append(f"ir_version {summary.ir_version} (an ONNX model has >= 3)")
    if not summary.has_opset_import:
        problems.append("no operator set imported")
    if summary.graph_nodes is None:
        problems.append("no graph")
    elif not (summary.graph_nodes and summary.graph_inputs and summary.graph_outputs):
        problems.append(
            f"an empty graph ({summary.graph_nodes} nodes, {summary.graph_inputs} inputs, "
            f"{summary.graph_outputs} outputs)"
        )
    if problems:
        raise BundleError(
            format_error(
                f"Model bundle {where} is damaged: part '{part}' is not an ONNX model",
                reason="; ".join(problems),
                fix=fix,
            )
        )
    if summary.external:
        shown = ", ".join(f"'{name}' -> '{loc}' (in {path})" for path, name, loc in summary.external[:3])
        more = f" and {len(summary.external) - 3} more" if len(summary.external) > 3 else ""
        raise BundleError(
            format_error(
                f"Model bundle {where} is refused: part '{part}' stores tensors in external files",
                reason=f"{len(summary.external)} tensor(s) with data_location EXTERNAL: {shown}{more}; a "
                "bundle must carry its weights inside, so that loading it never reads other files",
                fix=fix,
            )
        )
    return summary
