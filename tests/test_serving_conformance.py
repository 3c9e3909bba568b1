"""TF Serving API conformance on TF Serving's own test models, over REST and gRPC.

Expected values and error wording come from http_rest_api_handler_test.cc, api_rest.md and
the fixtures' *_metadata.json files. Runs against our server and, when it is on PATH,
against a real tensorflow_model_server.
"""

from __future__ import annotations

import json

import grpc
import numpy as np
import pytest
import requests
import tensorflow as tf
from google.protobuf import json_format
from tensorflow_serving.apis import (
    classification_pb2,
    get_model_metadata_pb2,
    get_model_status_pb2,
    model_service_pb2_grpc,
    predict_pb2,
    prediction_service_pb2_grpc,
    regression_pb2,
)

from tests.serving_conftest_helpers import (
    CONFORMANCE_CONFIG,
    FIXTURES,
    TWO_VERSIONS,
    serve,
    server_kinds,
)

MODEL = f"/v1/models/{TWO_VERSIONS}"


@pytest.fixture(scope="module", params=server_kinds())
def server(request):
    with serve(request.param, CONFORMANCE_CONFIG, TWO_VERSIONS) as running:
        yield running


@pytest.fixture(scope="module")
def http(server):
    session = requests.Session()
    yield lambda method, path, body=None: session.request(
        method,
        server.rest + path,
        data=body if isinstance(body, (str, bytes)) else (json.dumps(body) if body is not None else None),
        timeout=30,
    )
    session.close()


@pytest.fixture(scope="module")
def stubs(server):
    channel = grpc.insecure_channel(server.grpc)
    yield (prediction_service_pb2_grpc.PredictionServiceStub(channel), model_service_pb2_grpc.ModelServiceStub(channel))
    channel.close()


def ok_json(response: requests.Response):
    assert response.status_code == 200, response.text
    assert response.headers["Content-Type"].startswith("application/json")
    return response.json()


def error(response: requests.Response, status: int) -> str:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error"}
    return body["error"]


AVAILABLE_123 = {
    "model_version_status": [
        {"version": "123", "state": "AVAILABLE", "status": {"error_code": "OK", "error_message": ""}}
    ]
}


# ------------------------------------------------------------------ REST status


@pytest.mark.parametrize("suffix", ["", "/versions/123", "/labels/Version_Label"])
def test_status(http, suffix):
    assert ok_json(http("GET", MODEL + suffix)) == AVAILABLE_123


def test_status_of_other_models(http):
    for name in ("default", "tf2"):
        assert ok_json(http("GET", f"/v1/models/{name}")) == AVAILABLE_123


def test_status_errors(http):
    assert "Missing model name" in error(http("GET", "/v1/models"), 400)
    assert "Could not find any versions of model foo" in error(http("GET", "/v1/models/foo"), 404)
    assert "Could not find version 124" in error(http("GET", MODEL + "/versions/124"), 404)


# ---------------------------------------------------------------- REST metadata


def test_metadata_equals_tf_serving_file(http):
    expected = json.loads((FIXTURES / f"{TWO_VERSIONS}_metadata.json").read_text())
    assert ok_json(http("GET", MODEL + "/metadata")) == expected
    assert ok_json(http("GET", MODEL + "/labels/Version_Label/metadata")) == expected


def test_metadata_of_default_model_equals_file(http):
    expected = json.loads((FIXTURES / "half_plus_two_model_metadata.json").read_text())
    assert ok_json(http("GET", "/v1/models/default/metadata")) == expected


def test_metadata_of_tf2_model_equals_file(http):
    """The TF2 file describes saved_model_half_plus_two_tf2_2_versions, a sibling of the
    fixture's tf2_cpu model whose signatures carry no `defaults` (tf2_cpu's serving_default
    defaults x to 0.0): compare as protos with `defaults` cleared, all else must be equal."""
    expected = json.loads((FIXTURES / "saved_model_half_plus_two_tf2_2_versions_metadata.json").read_text())
    got = ok_json(http("GET", "/v1/models/tf2/metadata"))
    assert got["model_spec"] == {"name": "tf2", "signature_name": "", "version": "123"}

    def as_proto(doc):
        signature_map = json_format.ParseDict(
            doc["metadata"]["signature_def"], get_model_metadata_pb2.SignatureDefMap()
        )
        for signature in signature_map.signature_def.values():
            signature.ClearField("defaults")
        return signature_map

    assert as_proto(got) == as_proto(expected)


# ----------------------------------------------------------------- REST predict


@pytest.mark.parametrize(
    "path, body, expected",
    [
        (MODEL + ":predict", {"instances": [[1.0, 2.0], [3.0, 4.0]]}, {"predictions": [[2.5, 3.0], [3.5, 4.0]]}),
        (MODEL + "/versions/123:predict", {"instances": [1.0, 2.0]}, {"predictions": [2.5, 3.0]}),
        (MODEL + "/labels/Version_Label:predict", {"instances": [1.0, 2.0]}, {"predictions": [2.5, 3.0]}),
        (
            MODEL + "/versions/123:predict",
            {"signature_name": "serving_default", "instances": [3.0, 4.0]},
            {"predictions": [3.5, 4.0]},
        ),
        (
            MODEL + "/versions/123:predict",
            {"signature_name": "serving_default", "inputs": [3.0, 4.0]},
            {"outputs": [3.5, 4.0]},
        ),
        (MODEL + ":predict", {"inputs": {"x": [[1.0], [2.0]]}}, {"outputs": [[2.5], [3.0]]}),
        (MODEL + ":predict", {"instances": [{"x": [1.0]}, {"x": [2.0]}]}, {"predictions": [[2.5], [3.0]]}),
        (MODEL + ":predict", {"instances": [1, 2]}, {"predictions": [2.5, 3.0]}),
        (MODEL + ":predict", {"signature_name": "regress_x2_to_y3", "instances": [[1.0]]}, {"predictions": [[3.5]]}),
        ("/v1/models/tf2:predict", {"instances": [1.0, 2.0]}, {"predictions": [2.5, 3.0]}),
        ("/v1/MODELS/default:predict", {"inputs": [[4.0]]}, {"outputs": [[4.0]]}),
    ],
)
def test_predict(http, path, body, expected):
    assert ok_json(http("POST", path, body)) == expected


def test_predict_non_finite_values_round_trip(http):
    text = http("POST", MODEL + ":predict", '{"instances": [NaN, Infinity, -Infinity]}').text
    assert text.replace(" ", "") == '{"predictions":[NaN,Infinity,-Infinity]}'


# --------------------------------------------------------- REST classify/regress


@pytest.mark.parametrize("path", [MODEL, MODEL + "/versions/123", MODEL + "/labels/Version_Label"])
def test_regress(http, path):
    body = {"signature_name": "regress_x_to_y", "examples": [{"x": 80.0}]}
    assert ok_json(http("POST", path + ":regress", body)) == {"results": [42]}


def test_regress_with_context_and_several_examples(http):
    body = {"signature_name": "regress_x_to_y2", "context": {"x": 10.0}, "examples": [{"x": 2.0}, {}]}
    # y2 = 0.5 * x + 3; an example's own feature overrides the context's.
    assert ok_json(http("POST", MODEL + ":regress", body)) == {"results": [4.0, 8.0]}


@pytest.mark.parametrize("path, x, score", [(MODEL, 20.0, 12), (MODEL + "/labels/Version_Label", 10.0, 7)])
def test_classify(http, path, x, score):
    body = {"signature_name": "classify_x_to_y", "examples": [{"x": x}]}
    assert ok_json(http("POST", path + ":classify", body)) == {"results": [[["", score]]]}


def test_classify_tf2_model(http):
    body = {"signature_name": "classify_x_to_y", "examples": [{"x": 20.0}, {"x": [10.0]}]}
    assert ok_json(http("POST", "/v1/models/tf2:classify", body)) == {"results": [[["", 12]], [["", 7]]]}


# ------------------------------------------------------------ REST error cases


@pytest.mark.parametrize(
    "method, path",
    [
        ("GET", "/v1/foo"),
        ("POST", "/v1/foo"),
        ("GET", "/v1/models/debug/model_name"),
        ("POST", "/v1/models"),
        ("GET", "/v1/models/foo:predict"),
        ("GET", "/v1/models/foo/version/50:predict"),
        ("POST", "/v1/models/foo/version/50:regress"),
        ("POST", "/v1/models/foo/versions/HELLO:regress"),
        ("POST", "/v1/models/foo/metadata"),
        ("POST", "/v1/models/foo/label/some_label:regress"),
        ("POST", "/v1/models/foo/versions/50/labels/some_label:regress"),
        ("POST", "/v1/models/foo/versions/some_label:regress"),
    ],
)
def test_malformed_requests(http, method, path):
    assert "Malformed request" in error(http(method, path), 400)


def test_version_out_of_range(http):
    message = error(http("POST", f"/v1/models/foo/versions/{2**64 - 1}:regress"), 400)
    assert "Failed to convert version" in message


@pytest.mark.parametrize(
    "path",
    [
        "/v1/models/foo:predict",
        "/v1/models/foo/versions/50:predict",
        MODEL + "99:predict",
        MODEL + "/versions/124:predict",
    ],
)
def test_unknown_model_or_version(http, path):
    assert "Servable not found for request" in error(http("POST", path, {"instances": [1]}), 404)


@pytest.mark.parametrize(
    "body, status, wording",
    [
        ("", 400, "JSON Parse error: The document is empty"),
        ("instances = [1, 2]", 400, "JSON Parse error: Invalid value"),
        ('{"instances": ["x", "y"]}', 400, "not of expected type: float"),
        ('{"signature_name": 100}', 400, "'signature_name' key must be a string value."),
        ('{"instances": [[1,2],[3,4],[5,6,7]]}', 400, "Expecting tensor size"),
        ('{"instances": [[1,2],[[5,6]]]}', 400, "Expecting shape"),
        ('{"instances": [1], "inputs": [1]}', 400, "Not formatted correctly"),
        ('{"instances": []}', 400, "No values in 'instances' array"),
        ('{"instances": 5}', 400, "Expecting 'instances' to be an list/array"),
        ('{"foo": 5}', 400, "Missing 'inputs' or 'instances' key"),
        ("[1, 2]", 400, "Is not object"),
        (
            '{"signature_name": "nope", "instances": [1.0]}',
            400,
            'Serving signature name: "nope" not found in signature def',
        ),
        ('{"instances": [{"y": 1.0}]}', 400, "does not have named input: y"),
        ('{"inputs": {"y": [1.0]}}', 400, "Missing named input: x in 'inputs' object."),
    ],
)
def test_predict_request_errors(http, body, status, wording):
    assert wording in error(http("POST", MODEL + ":predict", body), status)


def test_unknown_label(http):
    message = error(http("POST", MODEL + "/labels/nope:predict", {"instances": ["x"]}), 400)
    assert "Unrecognized servable version label" in message


@pytest.mark.parametrize(
    "body, wording",
    [
        ('{"signature_name": 5, "examples": [{}]}', "'signature_name' key must be a string"),
        ('{"examples": [1]}', "Example must be JSON object"),
        ('{"examples": {"x": 1}}', "list/array"),
        ('{"examples": []}', "'examples' value is an empty array"),
        ('{"context": 5, "examples": [{}]}', "Example must be JSON object"),
        ('{"examples": [{"names": [null]}]}', "names has element with unexpected JSON type: Null"),
        ('{"examples": [{"names": [1, "a"]}]}', "feature: names expecting type: int64"),
        ('{"examples": [{"names": {"a": 1}}]}', "names has element with unexpected JSON type: Object"),
        ('{"examples": [{"names": [[1]]}]}', "names has element with unexpected JSON type: Array"),
        ('{"examples": [{"names": 18446744073709551615}]}', "Only int64_t is supported"),
        (
            '{"signature_name": "serving_default", "examples": [{"x": 1.0}]}',
            "No regression inputs found in SignatureDef",
        ),
        ('{"signature_name": "nope", "examples": [{"x": 1.0}]}', "No signature was found with the name: nope"),
    ],
)
def test_regress_request_errors(http, body, wording):
    assert wording in error(http("POST", MODEL + ":regress", body), 400)


# -------------------------------------------------------------------- gRPC


def _spec(request, version=None, label=None, signature=""):
    request.model_spec.name = TWO_VERSIONS
    request.model_spec.signature_name = signature
    if version is not None:
        request.model_spec.version.value = version
    if label is not None:
        request.model_spec.version_label = label
    return request


def test_grpc_status(stubs):
    response = stubs[1].GetModelStatus(_spec(get_model_status_pb2.GetModelStatusRequest()), timeout=10)
    assert json.loads(json_format.MessageToJson(response, including_default_value_fields=True)) == AVAILABLE_123


def test_grpc_metadata_equals_file(stubs):
    request = _spec(get_model_metadata_pb2.GetModelMetadataRequest(metadata_field=["signature_def"]))
    response = stubs[0].GetModelMetadata(request, timeout=10)
    signature_map = get_model_metadata_pb2.SignatureDefMap()
    response.metadata["signature_def"].Unpack(signature_map)
    expected = json.loads((FIXTURES / f"{TWO_VERSIONS}_metadata.json").read_text())
    assert signature_map == json_format.ParseDict(
        expected["metadata"]["signature_def"], get_model_metadata_pb2.SignatureDefMap()
    )
    assert (response.model_spec.name, response.model_spec.version.value) == (TWO_VERSIONS, 123)


@pytest.mark.parametrize("version, label", [(None, None), (123, None), (None, "Version_Label")])
def test_grpc_predict_equals_rest(stubs, http, version, label):
    request = _spec(predict_pb2.PredictRequest(), version, label)
    request.inputs["x"].CopyFrom(tf.make_tensor_proto([[1.0], [2.0], [3.0]], dtype=tf.float32))
    response = stubs[0].Predict(request, timeout=10)
    got = tf.make_ndarray(response.outputs["y"])
    rest = ok_json(http("POST", MODEL + ":predict", {"inputs": {"x": [[1.0], [2.0], [3.0]]}}))
    np.testing.assert_array_equal(got, np.array(rest["outputs"], dtype=np.float32))
    assert response.model_spec.version.value == 123
    assert response.model_spec.signature_name == "serving_default"


def test_grpc_classify_and_regress(stubs):
    example = tf.train.Example()
    example.features.feature["x"].float_list.value.append(20.0)
    classify = _spec(classification_pb2.ClassificationRequest(), signature="classify_x_to_y")
    classify.input.example_list.examples.append(example)
    result = stubs[0].Classify(classify, timeout=10).result
    assert [(c.label, c.score) for c in result.classifications[0].classes] == [("", 12.0)]
    example.features.feature["x"].float_list.value[0] = 80.0
    regress = _spec(regression_pb2.RegressionRequest(), signature="regress_x_to_y")
    regress.input.example_list.examples.append(example)
    assert [r.value for r in stubs[0].Regress(regress, timeout=10).result.regressions] == [42.0]


@pytest.mark.parametrize(
    "make, code, wording",
    [
        (
            lambda: _spec(predict_pb2.PredictRequest(), version=7),
            grpc.StatusCode.NOT_FOUND,
            "Servable not found for request",
        ),
        (
            lambda: _spec(predict_pb2.PredictRequest(), label="nope"),
            grpc.StatusCode.INVALID_ARGUMENT,
            "Unrecognized servable version label",
        ),
        (
            lambda: _spec(predict_pb2.PredictRequest(), signature="nope"),
            grpc.StatusCode.FAILED_PRECONDITION,
            'Serving signature key "nope" not found.',
        ),
        (
            lambda: _spec(predict_pb2.PredictRequest()),
            grpc.StatusCode.INVALID_ARGUMENT,
            "input size does not match signature",
        ),
    ],
)
def test_grpc_predict_errors(stubs, make, code, wording):
    with pytest.raises(grpc.RpcError) as caught:
        stubs[0].Predict(make(), timeout=10)
    assert caught.value.code() == code
    assert wording in caught.value.details()


def test_grpc_predict_uses_signature_defaults_for_missing_inputs(stubs):
    """tf2's serving_default defaults x to [0.0], so a request may leave x out."""
    request = predict_pb2.PredictRequest()
    request.model_spec.name = "tf2"
    response = stubs[0].Predict(request, timeout=10)
    np.testing.assert_array_equal(tf.make_ndarray(response.outputs["y"]), [2.0])


def test_grpc_wrong_dtype_is_invalid_argument(stubs):
    request = _spec(predict_pb2.PredictRequest())
    request.inputs["x"].CopyFrom(tf.make_tensor_proto([["a"]]))
    with pytest.raises(grpc.RpcError) as caught:
        stubs[0].Predict(request, timeout=10)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT


# ------------------------------------------------------------------ metrics


def test_prometheus_metrics(server, http, stubs):
    if server.kind != "mnist-tfx":
        pytest.skip("TF Serving exports metrics only with a monitoring config")
    ok_json(http("POST", MODEL + ":predict", {"instances": [1.0]}))
    stubs[1].GetModelStatus(_spec(get_model_status_pb2.GetModelStatusRequest()), timeout=10)
    text = http("GET", "/monitoring/prometheus/metrics").text
    assert (
        f':tensorflow:serving:request_count_total{{api="predict",entrypoint="REST",'
        f'model_name="{TWO_VERSIONS}",model_version="123",status="OK"}}'
    ) in text
    assert ":tensorflow:serving:request_latency_bucket{" in text
    assert 'entrypoint="GRPC"' in text


def test_ui_page_and_unknown_paths(server, http):
    if server.kind != "mnist-tfx":
        pytest.skip("the /ui page is this project's addition")
    page = http("GET", "/ui")
    assert page.status_code == 200 and page.headers["Content-Type"].startswith("text/html")
    assert "Not found" in error(http("GET", "/nowhere"), 404)
