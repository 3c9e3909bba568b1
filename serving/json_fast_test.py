"""serving.json_fast answers exactly as json_tensor does, or declines."""

from __future__ import annotations

import random

import numpy as np
import pytest
import tensorflow as tf
from tensorflow.core.framework import types_pb2
from tensorflow.core.protobuf import meta_graph_pb2
from tensorflow_serving.apis import predict_pb2

from serving import json_fast, json_tensor
from serving.json_tensor import Format
from serving.status import Code, ServingError


def infomap(**dtypes: int):
    return {name: meta_graph_pb2.TensorInfo(dtype=dtype) for name, dtype in dtypes.items()}


def exact(body: bytes, infos) -> tuple[str, dict[str, np.ndarray], Format]:
    request = predict_pb2.PredictRequest()
    fmt = json_tensor.fill_predict_request(body, lambda signature: infos, request)
    arrays = {alias: tf.make_ndarray(proto) for alias, proto in request.inputs.items()}
    return request.model_spec.signature_name, arrays, fmt


def fast(body: bytes, infos) -> json_fast.NumericPredict | None:
    return json_fast.parse_numeric_predict(body, lambda signature: infos)


def assert_same(body: bytes, infos) -> None:
    got = fast(body, infos)
    assert got is not None, body[:200]
    signature, arrays, fmt = exact(body, infos)
    assert (got.signature_name, got.format) == (signature, fmt)
    assert got.inputs.keys() == arrays.keys()
    for alias, array in arrays.items():
        assert got.inputs[alias].dtype == array.dtype
        assert got.inputs[alias].shape == array.shape
        # Bit-exact, signed zeros included.
        assert got.inputs[alias].tobytes() == array.tobytes(), body[:200]


def random_number_text(rng: random.Random) -> str:
    kind = rng.randrange(6)
    if kind == 0:
        return str(rng.randint(-(2**62), 2**62))
    if kind == 1:
        return str(rng.randint(-1000, 1000))
    if kind == 2:
        return repr(rng.uniform(-1, 1) * 10 ** rng.randint(-40, 38))
    if kind == 3:
        return f"{rng.uniform(-1e6, 1e6):.{rng.randint(0, 20)}e}"
    if kind == 4:
        return rng.choice(["0", "-0", "0.0", "-0.0", "1e-45", "3.4028234e38", "1.17549435e-38", "16777217"])
    return repr(float(np.float32(rng.uniform(0, 1))))


@pytest.mark.parametrize("dtype", [types_pb2.DT_FLOAT, types_pb2.DT_DOUBLE])
def test_many_random_numbers_parse_identically(dtype):
    rng = random.Random(12)
    infos = infomap(x=dtype)
    for _ in range(200):
        rows, cols = rng.randint(1, 4), rng.randint(1, 8)
        values = [[random_number_text(rng) for _ in range(cols)] for _ in range(rows)]
        nested = "[" + ", ".join("[" + ",".join(row) + "]" for row in values) + "]"
        assert_same(f'{{"instances": {nested}}}'.encode(), infos)
        assert_same(f'{{"inputs": {nested}, "signature_name": "serving_default"}}'.encode(), infos)


@pytest.mark.parametrize(
    "body, dtype",
    [
        (b'{"instances": [[1, 2], [3, 4]]}', types_pb2.DT_FLOAT),
        (b'  {"instances": [1, 2.5, -0, -0.0, 1e5]}  ', types_pb2.DT_FLOAT),
        (b'{"inputs": 7}', types_pb2.DT_DOUBLE),
        (b'{"inputs": [[[0.5]]]}', types_pb2.DT_FLOAT),
        (b'{"instances": [18446744073709551615, -1]}', types_pb2.DT_DOUBLE),
        (b'{"instances": [9223372036854775807, 9007199254740993]}', types_pb2.DT_FLOAT),
        (b'{"instances": [[1, 2], [3, 4]]}', types_pb2.DT_INT32),
        (b'{"inputs": [2147483647, -2147483648]}', types_pb2.DT_INT32),
        (b'{"inputs": [9223372036854775807, -9223372036854775808]}', types_pb2.DT_INT64),
        (b'{"signature_name": "", "instances": [1]}', types_pb2.DT_FLOAT),
    ],
)
def test_numeric_bodies_take_the_fast_path(body, dtype):
    assert_same(body, infomap(x=dtype))


@pytest.mark.parametrize(
    "body, dtype",
    [
        (b'{"instances": [NaN, 1]}', types_pb2.DT_FLOAT),
        (b'{"instances": [Infinity]}', types_pb2.DT_FLOAT),
        (b'{"instances": [1e400]}', types_pb2.DT_DOUBLE),
        (b'{"instances": [1e39]}', types_pb2.DT_FLOAT),  # float32 overflow
        (b'{"instances": [[1, 2], [3]]}', types_pb2.DT_FLOAT),  # ragged
        (b'{"instances": [true, 1.0]}', types_pb2.DT_FLOAT),
        (b'{"instances": [null]}', types_pb2.DT_FLOAT),
        (b'{"instances": [{"b64": "AAAA"}]}', types_pb2.DT_STRING),
        (b'{"instances": ["1.5"]}', types_pb2.DT_FLOAT),
        (b'{"instances": [{"x": [1]}]}', types_pb2.DT_FLOAT),
        (b'{"instances": [1], "instances": [2]}', types_pb2.DT_FLOAT),  # TF Serving keeps the first
        (b'{"instances": [1], "\\u0069nstances": [2]}', types_pb2.DT_FLOAT),
        (b'{"instances": [1], "inputs": [2]}', types_pb2.DT_FLOAT),
        (b'{"instances": [1], "other": 2}', types_pb2.DT_FLOAT),
        (b'{"instances": []}', types_pb2.DT_FLOAT),
        (b'{"instances": [[]]}', types_pb2.DT_FLOAT),
        (b'{"instances": 5}', types_pb2.DT_FLOAT),
        (b'{"signature_name": 3, "instances": [1]}', types_pb2.DT_FLOAT),
        (b'{"instances": [1]} trailing', types_pb2.DT_FLOAT),
        (b'{"instances": [2147483648]}', types_pb2.DT_INT32),
        (b'{"instances": [1.5]}', types_pb2.DT_INT32),
        (b'{"instances": [9223372036854775808]}', types_pb2.DT_INT64),
        (b'{"instances": [1]}', types_pb2.DT_INT8),
        (b'{"instances": [1]}', types_pb2.DT_HALF),
        (b"[1, 2]", types_pb2.DT_FLOAT),
        (b'{"instances": [1, 2', types_pb2.DT_FLOAT),
    ],
)
def test_anything_else_is_left_to_the_exact_path(body, dtype):
    assert fast(body, infomap(x=dtype)) is None


def test_several_inputs_are_left_to_the_exact_path():
    infos = infomap(a=types_pb2.DT_FLOAT, b=types_pb2.DT_FLOAT)
    assert fast(b'{"inputs": [1, 2]}', infos) is None


def test_lookup_errors_propagate_as_on_the_exact_path():
    def missing(signature: str):
        raise ServingError(Code.INVALID_ARGUMENT, f"no {signature}")

    with pytest.raises(ServingError, match="no sig"):
        json_fast.parse_numeric_predict(b'{"signature_name": "sig", "instances": [1]}', missing)
