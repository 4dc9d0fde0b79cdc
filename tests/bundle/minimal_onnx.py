"""Hand-encoded ONNX models for the bundle tests (no ``onnx`` package needed).

:func:`minimal_onnx` writes a valid ``ModelProto`` (``output = input + W``, opset 18) with the
protobuf wire format; ``external=...`` moves the data of one tensor, anywhere in the model,
to an external file (``data_location = EXTERNAL``), as ``onnx.external_data_helper`` does.
Field numbers follow onnx.proto (see mantid_exp2sim/bundle/onnx_check.py).
"""

from __future__ import annotations

import struct

__all__ = ["EXTERNAL_PLACES", "minimal_onnx"]

#: Where :func:`minimal_onnx` can put a tensor with external data.
EXTERNAL_PLACES = (
    "initializer",  # GraphProto.initializer of the main graph
    "subgraph",  # an initializer of the then-branch of an If node
    "attribute",  # the value tensor of a Constant node (AttributeProto.t)
    "attribute_list",  # AttributeProto.tensors
    "sparse_initializer",  # SparseTensorProto.values
    "function",  # a Constant node inside a model-local FunctionProto
    "training",  # TrainingInfoProto.initialization graph
    "location_only",  # external_data entries without data_location = EXTERNAL
)


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte = n & 0x7F
        n >>= 7
        if n:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def _int(field: int, value: int) -> bytes:
    return _varint(field << 3) + _varint(value)


def _msg(field: int, payload: bytes | str) -> bytes:
    data = payload.encode() if isinstance(payload, str) else payload
    return _varint((field << 3) | 2) + _varint(len(data)) + data


def _tensor(name: str, value: float = 1.0, *, external: bool = False, location_only: bool = False) -> bytes:
    t = _int(1, 1) + _int(2, 1) + _msg(8, name)  # dims [1], FLOAT, name
    if external or location_only:
        t += _msg(13, _msg(1, "location") + _msg(2, "w.bin"))
        t += _msg(13, _msg(1, "offset") + _msg(2, "0")) + _msg(13, _msg(1, "length") + _msg(2, "4"))
        if not location_only:
            t += _int(14, 1)  # data_location = EXTERNAL
    else:
        t += _msg(9, struct.pack("<f", value))  # raw_data
    return t


def _value_info(name: str) -> bytes:
    shape = _msg(2, _msg(1, _int(1, 1)))  # TensorShapeProto: one dimension of size 1
    return _msg(1, name) + _msg(2, _msg(1, _int(1, 1) + shape))  # type: tensor(float)


def _node(op: str, inputs: list[str], outputs: list[str], attributes: bytes = b"", domain: str = "") -> bytes:
    n = b"".join(_msg(1, i) for i in inputs) + b"".join(_msg(2, o) for o in outputs) + _msg(4, op) + attributes
    return n + (_msg(7, domain) if domain else b"")


def minimal_onnx(name: str = "g", *, value: float = 1.0, external: str | None = None) -> bytes:
    """A serialised ONNX model computing ``output = input + W``.

    Parameters
    ----------
    name
        The graph's name (different names give different bytes).
    value
        The value of ``W``.
    external
        None, or one of :data:`EXTERNAL_PLACES`: where to add a tensor whose data live in
        the file ``w.bin``.
    """
    if external is not None and external not in EXTERNAL_PLACES:
        raise ValueError(f"external must be one of {EXTERNAL_PLACES}")
    nodes = [_node("Add", ["input", "W"], ["output"])]
    w = _tensor("W", value, external=external == "initializer", location_only=external == "location_only")
    graph_extra = b""
    if external == "subgraph":
        branch = (_msg(1, _node("Identity", ["B"], ["b_out"])) + _msg(2, "then") + _msg(5, _tensor("B", external=True))
                  + _msg(12, _value_info("b_out")))
        nodes.append(_node("If", ["cond"], ["unused"], _msg(5, _msg(1, "then_branch") + _msg(6, branch) + _int(20, 5))))
    elif external == "attribute":
        attr = _msg(1, "value") + _msg(5, _tensor("C", external=True)) + _int(20, 4)  # type TENSOR
        nodes.append(_node("Constant", [], ["c"], _msg(5, attr)))
    elif external == "attribute_list":
        attr = _msg(1, "values") + _msg(10, _tensor("C", external=True)) + _int(20, 9)  # type TENSORS
        nodes.append(_node("Custom", [], ["c"], _msg(5, attr), domain="local"))
    elif external == "sparse_initializer":
        graph_extra = _msg(15, _msg(1, _tensor("S", external=True)) + _msg(2, _tensor("S_idx")) + _int(3, 1))
    graph = (b"".join(_msg(1, n) for n in nodes) + _msg(2, name) + _msg(5, w) + graph_extra
             + _msg(11, _value_info("input")) + _msg(12, _value_info("output")))
    model = _int(1, 8) + _msg(2, "pytest") + _msg(7, graph) + _msg(8, _msg(1, "") + _int(2, 18))
    if external == "function":
        attr = _msg(1, "value") + _msg(5, _tensor("F", external=True)) + _int(20, 4)
        body = _node("Constant", [], ["f_out"], _msg(5, attr))
        model += _msg(25, _msg(1, "fn") + _msg(5, "f_out") + _msg(7, body) + _msg(10, "local"))
    elif external == "training":
        model += _msg(20, _msg(1, _msg(2, "init") + _msg(5, _tensor("T", external=True))))
    return model
