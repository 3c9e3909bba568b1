"""A bad-input corpus: every request gets a 4xx JSON error and the server stays up."""

from __future__ import annotations

import json

import grpc
import pytest
import requests
import tensorflow as tf
from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc

from tests.serving_conftest_helpers import (
    CONFORMANCE_CONFIG,
    TF_SERVING_BINARY,
    TWO_VERSIONS,
    serve_in_process,
    serve_tf_serving,
    server_kinds,
)

MAX_BODY = 1 << 20
PREDICT = f"/v1/models/{TWO_VERSIONS}:predict"
REGRESS = f"/v1/models/{TWO_VERSIONS}:regress"


@pytest.fixture(scope="module", params=server_kinds())
def server(request):
    if request.param == TF_SERVING_BINARY:
        with serve_tf_serving(CONFORMANCE_CONFIG, TWO_VERSIONS) as running:
            yield running
    else:
        with serve_in_process(CONFORMANCE_CONFIG, max_request_bytes=MAX_BODY) as running:
            yield running


CORPUS = [
    # malformed JSON
    ("POST", PREDICT, b"{"),
    ("POST", PREDICT, b'{"instances": [1,}'),
    ("POST", PREDICT, b'{"instances": [1.0], }'),
    ("POST", PREDICT, b"\xff\xfe\x00{"),
    ("POST", PREDICT, b"null"),
    ("POST", PREDICT, b'"instances"'),
    ("POST", PREDICT, b'{"instances": [' + b"[" * 50000 + b"]" * 50000 + b"]}"),
    ("POST", PREDICT, b'{"instances": [1e999999]}'),
    # wrong dtypes
    ("POST", PREDICT, b'{"instances": ["a"]}'),
    ("POST", PREDICT, b'{"instances": [true]}'),
    ("POST", PREDICT, b'{"instances": [null]}'),
    ("POST", PREDICT, b'{"instances": [{"b64": "AAAA"}]}'),
    ("POST", PREDICT, b'{"inputs": {"x": "1.0"}}'),
    ("POST", PREDICT, b'{"signature_name": ["serving_default"], "instances": [1.0]}'),
    # ragged lists
    ("POST", PREDICT, b'{"instances": [[1.0], [1.0, 2.0]]}'),
    ("POST", PREDICT, b'{"instances": [1.0, [1.0]]}'),
    ("POST", PREDICT, b'{"instances": [[[1.0]], [1.0]]}'),
    ("POST", PREDICT, b'{"inputs": [[1.0], [2.0, 3.0]]}'),
    # unknown model / version / label / signature
    ("POST", "/v1/models/nope:predict", b'{"instances": [1.0]}'),
    ("POST", f"/v1/models/{TWO_VERSIONS}/versions/999:predict", b'{"instances": [1.0]}'),
    ("POST", f"/v1/models/{TWO_VERSIONS}/versions/124:predict", b'{"instances": [1.0]}'),
    ("POST", f"/v1/models/{TWO_VERSIONS}/labels/nope:predict", b'{"instances": [1.0]}'),
    ("POST", PREDICT, b'{"signature_name": "nope", "instances": [1.0]}'),
    ("POST", REGRESS, b'{"signature_name": "nope", "examples": [{"x": 1.0}]}'),
    ("GET", "/v1/models/nope/metadata", None),
    ("GET", f"/v1/models/{TWO_VERSIONS}/versions/999/metadata", None),
    # invalid b64 and bad examples
    ("POST", REGRESS, b'{"signature_name": "regress_x_to_y", "examples": [{"x": {"b64": "%%%"}}]}'),
    ("POST", REGRESS, b'{"signature_name": "regress_x_to_y", "examples": [{"x": [1.0, "a"]}]}'),
    ("POST", REGRESS, b'{"signature_name": "regress_x_to_y", "examples": "x"}'),
    # path tricks in names
    ("POST", "/v1/models/..%2F..%2Fetc%2Fpasswd:predict", b'{"instances": [1.0]}'),
    ("POST", "/v1/models/%2e%2e:predict", b'{"instances": [1.0]}'),
    ("GET", "/v1/models/%2Fetc%2Fpasswd", None),
    ("POST", "/v1/models/a%00b:predict", b'{"instances": [1.0]}'),
    ("POST", f"/v1/models/{TWO_VERSIONS}/labels/..%2F123:predict", b'{"instances": [1.0]}'),
    ("GET", "/v1/models/" + "x" * 4000, None),
    ("POST", "/v1/models/../../etc:predict", b'{"instances": [1.0]}'),
    # bad methods, versions and paths
    ("PUT", PREDICT, b'{"instances": [1.0]}'),
    ("DELETE", f"/v1/models/{TWO_VERSIONS}", None),
    ("POST", f"/v1/models/{TWO_VERSIONS}/versions/99999999999999999999:predict", b"{}"),
    ("POST", f"/v1/models/{TWO_VERSIONS}:explain", b"{}"),
]


@pytest.mark.parametrize("method, path, body", CORPUS)
def test_bad_request_gets_a_4xx_json_error(server, method, path, body):
    response = requests.request(method, server.rest + path, data=body, timeout=30)
    assert 400 <= response.status_code < 500, (response.status_code, response.text)
    payload = response.json()
    assert isinstance(payload.get("error"), str) and payload["error"]


def test_oversized_body_is_refused(server):
    if server.kind == TF_SERVING_BINARY:
        pytest.skip("tensorflow_model_server has no request size limit to test")
    body = b'{"instances": [' + b"1.0, " * (MAX_BODY // 5) + b"1.0]}"
    response = requests.post(server.rest + PREDICT, data=body, timeout=30)
    assert response.status_code == 413
    assert "too large" in response.json()["error"]


def test_grpc_bad_inputs_keep_their_codes(server):
    stub = prediction_service_pb2_grpc.PredictionServiceStub(grpc.insecure_channel(server.grpc))
    ragged = predict_pb2.PredictRequest()
    ragged.model_spec.name = TWO_VERSIONS
    ragged.inputs["x"].dtype = tf.float32.as_datatype_enum
    ragged.inputs["x"].tensor_shape.dim.add(size=3)
    ragged.inputs["x"].float_val.extend([1.0, 2.0, 3.0, 4.0])  # 4 values for 3 elements
    unknown = predict_pb2.PredictRequest()
    unknown.model_spec.name = "../etc"
    for request, code in ((ragged, grpc.StatusCode.INVALID_ARGUMENT), (unknown, grpc.StatusCode.NOT_FOUND)):
        with pytest.raises(grpc.RpcError) as caught:
            stub.Predict(request, timeout=10)
        assert caught.value.code() == code


def test_server_still_up_after_the_corpus(server):
    response = requests.post(server.rest + PREDICT, data=json.dumps({"instances": [1.0, 2.0]}), timeout=30)
    assert response.json() == {"predictions": [2.5, 3.0]}
    assert requests.get(f"{server.rest}/v1/models/{TWO_VERSIONS}", timeout=30).status_code == 200
