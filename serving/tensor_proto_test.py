"""Tensors written as TF Serving writes them (checked against TensorFlow's own C++ parser)."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf
from tensorflow.core.framework import tensor_pb2, types_pb2

from serving.tensor_proto import fill_proto, to_array

ARRAYS = [
    np.array([[0.25, -1.5, 3e-8, np.inf, np.nan]], dtype=np.float32),
    np.array([1.0, 2.5], dtype=np.float64),
    np.array([[1, -2], [3, 2**31 - 1]], dtype=np.int32),
    np.array([-3, 4], dtype=np.int16),
    np.array([-128, 127], dtype=np.int8),
    np.array([0, 255], dtype=np.uint8),
    np.array([0, 65535], dtype=np.uint16),
    np.array([[2**62, -(2**63)]], dtype=np.int64),
    np.array([2**32 - 1, 0], dtype=np.uint32),
    np.array([2**64 - 1, 1], dtype=np.uint64),
    np.array([True, False, True], dtype=np.bool_),
    np.array([0.5, -2.0, 65504.0], dtype=np.float16),
    np.array([1 + 2j, -3.5j], dtype=np.complex64),
    np.array([1 - 1j], dtype=np.complex128),
    np.array([[b"a", b""], [b"\x00\xff", b"x" * 200]], dtype=object),
    np.array(7.0, dtype=np.float32),  # a scalar
    np.zeros((0, 3), dtype=np.float32),  # no elements
]


def _parsed_by_tensorflow(proto: tensor_pb2.TensorProto, dtype: tf.DType) -> np.ndarray:
    """The tensor TensorFlow's C++ Tensor::FromProto reads from the serialized proto."""
    return tf.io.parse_tensor(proto.SerializeToString(), out_type=dtype).numpy()


@pytest.mark.parametrize("tensor_content", [False, True], ids=["as_proto_field", "as_tensor_content"])
@pytest.mark.parametrize("array", ARRAYS, ids=lambda a: f"{a.dtype}{list(a.shape)}")
def test_tensorflow_reads_back_what_was_written(array: np.ndarray, tensor_content: bool) -> None:
    proto = tensor_pb2.TensorProto()
    fill_proto(proto, array, tensor_content)
    dtype = tf.string if array.dtype == object else tf.as_dtype(array.dtype)
    assert proto.dtype == dtype.as_datatype_enum
    assert [d.size for d in proto.tensor_shape.dim] == list(array.shape)
    back = _parsed_by_tensorflow(proto, dtype)
    assert back.shape == array.shape
    if array.dtype == object:
        assert back.tolist() == array.tolist()
    else:
        np.testing.assert_array_equal(back, array)
        np.testing.assert_array_equal(tf.make_ndarray(proto), array)  # the client library too
    # AsProtoField fills the typed field and no tensor_content; AsProtoTensorContent the reverse.
    assert bool(proto.tensor_content) == (tensor_content and array.size > 0)


def test_as_proto_field_writes_the_values_clients_read_from_float_val() -> None:
    proto = tensor_pb2.TensorProto()
    fill_proto(proto, np.array([[0.1, 0.9]], dtype=np.float32))
    assert list(proto.float_val) == pytest.approx([0.1, 0.9])
    assert proto.dtype == types_pb2.DT_FLOAT and not proto.tensor_content


def test_half_values_are_their_bit_patterns_and_complex_values_interleave() -> None:
    half, complex_ = tensor_pb2.TensorProto(), tensor_pb2.TensorProto()
    fill_proto(half, np.array([1.0, -2.0], dtype=np.float16))
    fill_proto(complex_, np.array([1 + 2j, 3 - 4j], dtype=np.complex64))
    assert list(half.half_val) == [0x3C00, 0xC000]
    assert list(complex_.scomplex_val) == [1, 2, 3, -4]


@pytest.mark.parametrize(
    "proto_text",
    [
        "dtype: DT_FLOAT tensor_shape { dim { size: 2 } dim { size: 2 } } float_val: [1, 2, 3, 4]",
        "dtype: DT_FLOAT tensor_shape { dim { size: 3 } } float_val: [5]",  # one value fills the shape
        "dtype: DT_INT64 tensor_shape { dim { size: 2 } } int64_val: [9, -9]",
        'dtype: DT_STRING tensor_shape { dim { size: 1 } } string_val: "abc"',
    ],
)
def test_requests_read_as_tensorflow_reads_them(proto_text: str) -> None:
    from google.protobuf import text_format

    proto = text_format.Parse(proto_text, tensor_pb2.TensorProto())
    np.testing.assert_array_equal(to_array(proto), tf.make_ndarray(proto))


def test_tensor_content_requests_become_arrays_over_the_bytes() -> None:
    values = np.arange(12, dtype=np.float32).reshape(3, 4)
    proto = tf.make_tensor_proto(values)
    assert proto.tensor_content  # what tf.make_tensor_proto sends for a numpy array
    array = to_array(proto)
    assert array.dtype == np.float32 and array.shape == (3, 4)
    np.testing.assert_array_equal(array, values)
