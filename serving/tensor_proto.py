"""numpy arrays to and from TensorProto as TF Serving's C++ does it, without tf.make_tensor_proto.

Outputs: `Tensor::AsProtoField` (TF Serving's default: values in the typed repeated field, e.g.
`float_val`, every element written) or, with --enable_serialization_as_tensor_content,
`Tensor::AsProtoTensorContent` (raw bytes in `tensor_content`; strings as TensorFlow's
EncodeStringList: every length as a varint32, then the bytes). Clients that read
`outputs["y"].float_val` get the values, as from TF Serving; `tf.make_ndarray` reads both.

Inputs: a numeric `tensor_content` becomes an array over the message's bytes in one numpy call;
everything else goes through `tf.make_ndarray` (TensorFlow's own Tensor::FromProto rules).
The request checks (request_checks.py) have already matched sizes to the declared shape.
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf
from tensorflow.core.framework import tensor_pb2, types_pb2

# numpy dtype -> (TensorFlow dtype, AsProtoField's repeated field).
_PROTO_FIELDS: dict[np.dtype, tuple[int, str]] = {
    np.dtype(np.float32): (types_pb2.DT_FLOAT, "float_val"),
    np.dtype(np.float64): (types_pb2.DT_DOUBLE, "double_val"),
    np.dtype(np.int32): (types_pb2.DT_INT32, "int_val"),
    np.dtype(np.int16): (types_pb2.DT_INT16, "int_val"),
    np.dtype(np.int8): (types_pb2.DT_INT8, "int_val"),
    np.dtype(np.uint8): (types_pb2.DT_UINT8, "int_val"),
    np.dtype(np.uint16): (types_pb2.DT_UINT16, "int_val"),
    np.dtype(np.int64): (types_pb2.DT_INT64, "int64_val"),
    np.dtype(np.uint32): (types_pb2.DT_UINT32, "uint32_val"),
    np.dtype(np.uint64): (types_pb2.DT_UINT64, "uint64_val"),
    np.dtype(np.bool_): (types_pb2.DT_BOOL, "bool_val"),
    np.dtype(np.float16): (types_pb2.DT_HALF, "half_val"),  # the 16-bit patterns, as int32
    np.dtype(np.complex64): (types_pb2.DT_COMPLEX64, "scomplex_val"),  # real, imaginary, ...
    np.dtype(np.complex128): (types_pb2.DT_COMPLEX128, "dcomplex_val"),
}
_NUMPY_BY_TF = {tf_type: dtype for dtype, (tf_type, _) in _PROTO_FIELDS.items()}


def _values(array: np.ndarray, field: str) -> list:
    """The flat values AsProtoField writes for `array` into `field`."""
    flat = array.ravel()
    if field == "half_val":
        return flat.view(np.uint16).tolist()
    if field in ("scomplex_val", "dcomplex_val"):
        return flat.view(flat.real.dtype).tolist()  # interleaved real and imaginary parts
    return flat.tolist()


def _set_shape(proto: tensor_pb2.TensorProto, array: np.ndarray) -> None:
    for size in array.shape:
        proto.tensor_shape.dim.add(size=size)


def _encode_string_list(values: list[bytes]) -> bytes:
    """TensorFlow's port::EncodeStringList: varint32 lengths of all strings, then their bytes."""
    lengths = bytearray()
    for value in values:
        n = len(value)
        while n >= 0x80:
            lengths.append((n & 0x7F) | 0x80)
            n >>= 7
        lengths.append(n)
    return bytes(lengths) + b"".join(values)


def _strings(array: np.ndarray) -> list[bytes]:
    return [v if isinstance(v, bytes) else str(v).encode() for v in array.ravel().tolist()]


def fill_proto(proto: tensor_pb2.TensorProto, array: np.ndarray, tensor_content: bool = False) -> None:
    """Writes `array` into an empty `proto`: AsProtoField, or AsProtoTensorContent when
    `tensor_content`. Types outside TF Serving's usual set (e.g. bfloat16) use
    tf.make_tensor_proto."""
    array = np.asarray(array)
    known = _PROTO_FIELDS.get(array.dtype)
    if known is None and array.dtype.kind in "OSU":
        proto.dtype = types_pb2.DT_STRING
        _set_shape(proto, array)
        if tensor_content:
            proto.tensor_content = _encode_string_list(_strings(array))
        else:
            proto.string_val.extend(_strings(array))
        return
    if known is None:
        proto.CopyFrom(tf.make_tensor_proto(array))
        return
    proto.dtype, field = known
    _set_shape(proto, array)
    if tensor_content:
        proto.tensor_content = np.ascontiguousarray(array).tobytes()
    else:
        getattr(proto, field).extend(_values(array, field))


def to_array(proto: tensor_pb2.TensorProto) -> np.ndarray:
    """A request tensor as numpy: numeric `tensor_content` straight from its bytes (read-only,
    no copy), anything else through tf.make_ndarray."""
    dtype = _NUMPY_BY_TF.get(proto.dtype)
    if dtype is not None and proto.tensor_content:
        shape = [dim.size for dim in proto.tensor_shape.dim]
        return np.frombuffer(proto.tensor_content, dtype=dtype).reshape(shape)
    return tf.make_ndarray(proto)
