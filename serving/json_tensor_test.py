"""Tests of serving.json_tensor, modelled on TF Serving's util/json_tensor_test.cc."""

from __future__ import annotations

import json

import numpy as np
import pytest
from google.protobuf import text_format
from tensorflow.core.framework import tensor_pb2, types_pb2
from tensorflow.core.protobuf import meta_graph_pb2
from tensorflow_serving.apis import classification_pb2, predict_pb2, regression_pb2

from serving import json_tensor
from serving.json_tensor import Format, format_decimal
from serving.status import Code, ServingError


def infomap(**dtypes: int):
    return {name: meta_graph_pb2.TensorInfo(dtype=dtype) for name, dtype in dtypes.items()}


def fill(body: str, infos) -> tuple[predict_pb2.PredictRequest, Format]:
    request = predict_pb2.PredictRequest()
    fmt = json_tensor.fill_predict_request(body, lambda signature: infos, request)
    return request, fmt


def proto(text: str) -> tensor_pb2.TensorProto:
    return text_format.Parse(text, tensor_pb2.TensorProto())


def fill_error(body: str, infos) -> ServingError:
    with pytest.raises(ServingError) as caught:
        fill(body, infos)
    assert caught.value.code == Code.INVALID_ARGUMENT
    return caught.value


# ------------------------------------------------------------ predict requests


def test_single_unnamed_tensor():
    request, fmt = fill('{"instances": [[1,2],[3,4],[5,6]]}', infomap(default=types_pb2.DT_INT32))
    assert fmt is Format.ROW
    assert request.inputs["default"] == proto(
        "dtype: DT_INT32 tensor_shape { dim { size: 3 } dim { size: 2 } } " "int_val: [1, 2, 3, 4, 5, 6]"
    )


def test_mixed_input_for_float_and_double_tensors():
    request, _ = fill('{"instances": [1, 2.0, 3, 4, 5.003, 0.007, 0.0]}', infomap(default=types_pb2.DT_FLOAT))
    assert request.inputs["default"] == proto(
        "dtype: DT_FLOAT tensor_shape { dim { size: 7 } } " "float_val: [1, 2.0, 3, 4, 5.003, 0.007, 0.0]"
    )
    request, _ = fill('{"instances": [1.0, 2, 0.662]}', infomap(default=types_pb2.DT_DOUBLE))
    assert list(request.inputs["default"].double_val) == [1.0, 2.0, 0.662]


def test_float_tensor_precision_loss_and_overflow():
    for text in ("1435774380", "1435774380.0"):
        request, _ = fill(f'{{"instances": [{text}]}}', infomap(default=types_pb2.DT_FLOAT))
        assert list(request.inputs["default"].float_val) == [1435774336.0]
    request, _ = fill(
        '{"instances": [1.7976931348623157e308, -1.7976931348623157e308, 2.2e-308]}',
        infomap(default=types_pb2.DT_FLOAT),
    )
    assert list(request.inputs["default"].float_val) == [float("inf"), float("-inf"), 0.0]


@pytest.mark.parametrize("literal", ["1e400", "-2E+0309", "9" * 309 + ".5"])
def test_numbers_too_big_for_a_double_are_refused(literal):
    """Both parsers agree: the fast one (no per-number hook) is only used when no literal can overflow."""
    error = fill_error(f'{{"instances": [[0.5, {literal}]]}}', infomap(default=types_pb2.DT_FLOAT))
    assert "Number too big to be stored in double" in error.message


@pytest.mark.parametrize(
    "leaves, wording",
    [
        ("[0.5, true]", "JSON Value: true Type: True is not of expected type: float"),
        ('[0.5, "1"]', 'JSON Value: "1" Type: String is not of expected type: float'),
        ("[0.5, null]", "JSON Value: null Type: Null is not of expected type: float"),
        ("[0.5, [1]]", "Encountered list at unexpected level: 1 expected < 1"),
    ],
)
def test_innermost_float_lists_with_a_non_number_get_the_per_value_error(leaves, wording):
    error = fill_error(f'{{"instances": [{leaves}]}}', infomap(default=types_pb2.DT_FLOAT))
    assert wording in error.message


def test_innermost_float_lists_take_ints_floats_and_huge_ints():
    request, _ = fill('{"instances": [[[0, 255, 0.5], [1, 2, 3]]]}', infomap(default=types_pb2.DT_FLOAT))
    assert list(request.inputs["default"].float_val) == [0, 255, 0.5, 1, 2, 3]
    request, _ = fill(f'{{"instances": [[1, {10 ** 400}]]}}', infomap(default=types_pb2.DT_DOUBLE))
    assert list(request.inputs["default"].double_val) == [1.0, float("inf")]


def test_base64_scalars_lists_and_named():
    strings = infomap(default=types_pb2.DT_STRING)
    request, _ = fill('{"instances": [{"b64": "aGVsbG8="}, {"b64": "d29ybGQ="}]}', strings)
    assert request.inputs["default"] == proto(
        'dtype: DT_STRING tensor_shape { dim { size: 2 } } string_val: ["hello", "world"]'
    )
    request, _ = fill('{"instances": [[{"b64": "aGVsbG8="}], [{"b64": "d29ybGQ"}]]}', strings)
    assert list(request.inputs["default"].tensor_shape.dim) == list(
        proto("tensor_shape { dim { size: 2 } dim { size: 1 } }").tensor_shape.dim
    )
    assert list(request.inputs["default"].string_val) == [b"hello", b"world"]
    request, _ = fill('{"instances": [{"default": [[{"b64": "aGVsbG8="}], [{"b64": "d29ybGQ="}]]}]}', strings)
    assert [d.size for d in request.inputs["default"].tensor_shape.dim] == [1, 2, 1]


def test_multiple_named_tensors_row_format():
    infos = infomap(
        int_tensor=types_pb2.DT_INT32,
        str_tensor=types_pb2.DT_STRING,
        float_tensor=types_pb2.DT_FLOAT,
        dbl_tensor=types_pb2.DT_DOUBLE,
    )
    request, fmt = fill(
        """{"instances": [
        {"int_tensor": [[1,2],[3,4],[5,6]], "str_tensor": ["foo", "bar"],
         "float_tensor": [1.0, NaN], "dbl_tensor": [NaN]},
        {"int_tensor": [[7,8],[9,0],[1,2]], "str_tensor": ["baz", "bat"],
         "float_tensor": [2.0, Infinity], "dbl_tensor": [2.0]}]}""",
        infos,
    )
    assert fmt is Format.ROW
    assert [d.size for d in request.inputs["int_tensor"].tensor_shape.dim] == [2, 3, 2]
    assert list(request.inputs["int_tensor"].int_val) == [1, 2, 3, 4, 5, 6, 7, 8, 9, 0, 1, 2]
    assert list(request.inputs["str_tensor"].string_val) == [b"foo", b"bar", b"baz", b"bat"]
    assert str(list(request.inputs["float_tensor"].float_val)) == "[1.0, nan, 2.0, inf]"
    assert [d.size for d in request.inputs["dbl_tensor"].tensor_shape.dim] == [2, 1]


def test_columnar_format():
    request, fmt = fill('{"inputs": [[1,2],[3,4],[5,6]]}', infomap(default=types_pb2.DT_INT32))
    assert fmt is Format.COLUMNAR
    assert [d.size for d in request.inputs["default"].tensor_shape.dim] == [3, 2]
    request, fmt = fill('{"inputs": {"a": 7, "b": [["x"]]}}', infomap(a=types_pb2.DT_INT64, b=types_pb2.DT_STRING))
    assert request.inputs["a"] == proto("dtype: DT_INT64 tensor_shape {} int64_val: 7")
    assert request.inputs["b"] == proto(
        'dtype: DT_STRING tensor_shape { dim { size: 1 } dim { size: 1 } } string_val: "x"'
    )


def test_signature_name_is_taken_from_the_body():
    request, _ = fill('{"signature_name": "sig", "instances": [1]}', infomap(x=types_pb2.DT_INT64))
    assert request.model_spec.signature_name == "sig"


@pytest.mark.parametrize(
    "body, wording",
    [
        ("", "JSON Parse error: The document is empty"),
        ("   ", "The document is empty"),
        ("instances = [1, 2]", "JSON Parse error: Invalid value"),
        ('{"instances": [1, 2}', "JSON Parse error: Missing a comma or ']'"),
        ("[1]", "Is not object"),
        ('{"signature_name": 5, "instances": [[1,2],[3,4],[5,6,7]]}', "must be a string value"),
        ('{"instances": [[1,2],[3,4],[5,6,7]], "inputs": [[1,2]]}', "Not formatted correctly"),
        ('{"instances": [[1,2],[3,4],[5,6,7]]}', "Expecting tensor size"),
        ('{"instances": [[1,2],[3,4],[[5,6]]]}', "Expecting shape"),
        ('{"instances": [1, [1]]}', "Expecting shape"),
        ('{"instances": [[1,2],["a", "b"]]}', "not of expected type: int32"),
        ('{"instances": [[1,2],[3.5, 4]]}', "is not of expected type: int32"),
        ('{"instances": [true]}', "Type: True is not of expected type: int32"),
        ('{"instances": [2147483648]}', "not of expected type: int32"),
        ('{"instances": [[1, [2]]]}', "Encountered list at unexpected level"),
        ('{"instances": [{"b64": "AAAA"}]}', "is not of expected type: int32"),
        ('{"inputs": [[1, 2], [3]]}', "Encountered list at unexpected size: 1 at level: 1"),
        ('{"instances": {"a": 1}}', "Expecting 'instances' to be an list/array"),
        ('{"instances": []}', "No values in 'instances' array"),
        ('{"nothing": 1}', "Missing 'inputs' or 'instances' key"),
    ],
)
def test_single_unnamed_tensor_errors(body, wording):
    assert wording in fill_error(body, infomap(default=types_pb2.DT_INT32)).message


@pytest.mark.parametrize(
    "body, wording",
    [
        ('{"instances": [{"a": [1], "b": [1]}, {"a": [[1]], "b": [1]}]}', "Expecting shape"),
        ('{"instances": [{"a": [1], "b": [1]}, {"a": [1, 2], "b": [1]}]}', "Expecting tensor size"),
        ('{"instances": [{"a": [1], "b": [1]}, [1]]}', "Expecting object but got list"),
        ('{"instances": [{"a": [1]}]}', "keys must be equal to: a,b"),
        ('{"instances": [{"a": [1], "b": [1], "c": [1]}]}', "does not have named input: c"),
        ('{"instances": [1, 2]}', "instances is a plain list, but expecting list of objects"),
        ('{"inputs": [1, 2]}', "inputs is a plain value/list, but expecting an object"),
        ('{"inputs": {"a": [1]}}', "Missing named input: b in 'inputs' object."),
    ],
)
def test_multiple_named_tensor_errors(body, wording):
    infos = infomap(a=types_pb2.DT_INT64, b=types_pb2.DT_FLOAT)
    assert wording in fill_error(body, infos).message


def test_value_list_after_object_is_refused():
    infos = infomap(a=types_pb2.DT_INT64)
    assert "Expecting value/list but got object" in fill_error('{"instances": [[1], {"a": [1]}]}', infos).message


@pytest.mark.parametrize("b64", ['"not base64!"', '"YQ=x"'])
def test_invalid_base64(b64):
    error = fill_error(f'{{"instances": [{{"b64": {b64}}}]}}', infomap(x=types_pb2.DT_STRING))
    assert "Unable to base64 decode" in error.message


def test_deeply_nested_json_is_an_error_not_a_crash():
    body = '{"instances": [1], "nested": ' + "[" * 100000 + "]" * 100000 + "}"
    assert "JSON Parse error" in fill_error(body, infomap(x=types_pb2.DT_INT32)).message


# ---------------------------------------------------------- classify/regress


@pytest.mark.parametrize("request_type", [classification_pb2.ClassificationRequest, regression_pb2.RegressionRequest])
def test_examples_without_and_with_context(request_type):
    request = request_type()
    json_tensor.fill_classify_regress_request(
        """{"examples": [
        {"names": ["foo", "bar"], "ratings": [8.0, 9.0], "age": 20, "flag": true,
         "img": {"b64": "aGVsbG8="}}]}""",
        request,
    )
    example = request.input.example_list.examples[0]
    features = example.features.feature
    assert list(features["names"].bytes_list.value) == [b"foo", b"bar"]
    assert list(features["ratings"].float_list.value) == [8.0, 9.0]
    assert list(features["age"].int64_list.value) == [20]
    assert list(features["flag"].int64_list.value) == [1]
    assert list(features["img"].bytes_list.value) == [b"hello"]
    request = request_type()
    json_tensor.fill_classify_regress_request(
        '{"signature_name": "s", "context": {"c": 1}, "examples": [{"x": 1.5}, {"x": 2}]}', request
    )
    assert request.model_spec.signature_name == "s"
    with_context = request.input.example_list_with_context
    assert list(with_context.context.features.feature["c"].int64_list.value) == [1]
    assert len(with_context.examples) == 2


@pytest.mark.parametrize(
    "body, wording",
    [
        ('{"signature_name": 5, "examples": [{}]}', "'signature_name' key must be a string"),
        ('{"context": [1], "examples": [{}]}', "Example must be JSON object"),
        ('{"examples": {"a": 1}}', "list/array"),
        ('{"examples": [1]}', "Example must be JSON object but got JSON Number"),
        ('{"examples": []}', "'examples' value is an empty array"),
        ('{"context": {}}', "key 'examples' is expected and was not found"),
        ('{"examples": [{"names": [null]}]}', "names has element with unexpected JSON type: Null"),
        ('{"examples": [{"names": [10, "a"]}]}', "feature: names expecting type: int64"),
        ('{"examples": [{"names": [1.5, 2]}]}', "feature: names expecting type: float"),
        ('{"examples": [{"names": [{"a": 1}]}]}', "names has element with unexpected JSON type: Object"),
        ('{"examples": [{"names": [[1]]}]}', "names has element with unexpected JSON type: Array"),
        ('{"examples": [{"names": 18446744073709551615}]}', "Only int64_t is supported"),
    ],
)
def test_example_errors(body, wording):
    with pytest.raises(ServingError) as caught:
        json_tensor.fill_classify_regress_request(body, regression_pb2.RegressionRequest())
    assert wording in caught.value.message


# ------------------------------------------------------------ JSON writing


def test_float_formatting_six_digits_then_full_precision():
    import numpy as np

    values = np.array([9000000, 999999, 0.5, 0.0003, 0.00003, 555557.5], np.float32).reshape(2, 3)
    text = json_tensor.make_json_from_tensors({"float_tensor": values}, Format.ROW)
    assert text.replace(" ", "") == '{"predictions":[[9e+06,999999.0,0.5],[0.0003,3e-05,555557.5]]}'
    assert format_decimal(float(np.float32(0.1)), double=False) == "0.1"
    assert format_decimal(0.1 + 0.2, double=True) == "0.30000000000000004"
    assert format_decimal(float(np.float32(1 / 3)), double=False) == "0.333333343"


def test_non_finite_output():
    import numpy as np

    values = np.array([[np.nan, np.inf], [3, -np.inf]], np.float32)
    text = json_tensor.make_json_from_tensors({"float_tensor": values}, Format.ROW)
    assert text.replace(" ", "") == '{"predictions":[[NaN,Infinity],[3.0,-Infinity]]}'


def test_multiple_outputs_row_and_columnar():
    import numpy as np

    outputs = {
        "int_tensor": np.array([[1, 2], [3, 4]], np.int32),
        "str_tensor": np.array([b"foo", b"bar"], dtype=object),
        "out_bytes": np.array([b"\x00\xff", b"ab"], dtype=object),
    }
    row = json.loads(json_tensor.make_json_from_tensors(outputs, Format.ROW))
    assert row == {
        "predictions": [
            {"int_tensor": [1, 2], "str_tensor": "foo", "out_bytes": {"b64": "AP8="}},
            {"int_tensor": [3, 4], "str_tensor": "bar", "out_bytes": {"b64": "YWI="}},
        ]
    }
    columnar = json.loads(json_tensor.make_json_from_tensors(outputs, Format.COLUMNAR))
    assert columnar == {
        "outputs": {
            "int_tensor": [[1, 2], [3, 4]],
            "str_tensor": ["foo", "bar"],
            "out_bytes": [{"b64": "AP8="}, {"b64": "YWI="}],
        }
    }
    single = json.loads(json_tensor.make_json_from_tensors({"x": np.array(5.0, np.float32)}, Format.COLUMNAR))
    assert single == {"outputs": 5.0}


def test_output_errors():
    import numpy as np

    with pytest.raises(ServingError, match="empty tensor map"):
        json_tensor.make_json_from_tensors({}, Format.ROW)
    with pytest.raises(ServingError, match="no shape information"):
        json_tensor.make_json_from_tensors({"x": np.array(1.0, np.float32)}, Format.ROW)
    with pytest.raises(ServingError, match="inconsistent batch size"):
        json_tensor.make_json_from_tensors({"a": np.zeros(2), "b": np.zeros(3)}, Format.ROW)
    with pytest.raises(ServingError, match="tensor type: complex64"):
        json_tensor.make_json_from_tensors({"a": np.zeros(2, np.complex64)}, Format.ROW)


def test_zero_batch_output():
    import numpy as np

    assert json.loads(json_tensor.make_json_from_tensors({"x": np.zeros((0, 3), np.float32)}, Format.ROW)) == {
        "predictions": []
    }


def test_classification_and_regression_results():
    result = text_format.Parse(
        """
        classifications { classes { label: "car" score: 0.2 } classes { label: "bike" score: 0.7 } }
        classifications { classes { label: "tomato" score: 0.4 } }""",
        classification_pb2.ClassificationResult(),
    )
    assert json.loads(json_tensor.make_json_from_classification(result)) == {
        "results": [[["car", 0.2], ["bike", 0.7]], [["tomato", 0.4]]]
    }
    regression = text_format.Parse(
        "regressions { value: 0.2 } regressions { value: nan }", regression_pb2.RegressionResult()
    )
    assert json_tensor.make_json_from_regression(regression).replace(" ", "") == '{"results":[0.2,NaN]}'
    with pytest.raises(ServingError, match="empty ClassificationResults"):
        json_tensor.make_json_from_classification(classification_pb2.ClassificationResult())
    with pytest.raises(ServingError, match="empty RegressionResults"):
        json_tensor.make_json_from_regression(regression_pb2.RegressionResult())


def test_error_json():
    assert json.loads(json_tensor.make_json_from_error('bad "x"\n')) == {"error": 'bad "x"\n'}


def test_value_count_bounds_the_values_before_parsing():
    body = b'{"instances": [[1, 2], [3, 4]], "signature_name": "a,b"}'
    assert json_tensor.count_values(body) >= 7  # 4 numbers, 2 lists, the list, 1 string, the object
    json_tensor.check_value_count(body, json_tensor.count_values(body))
    with pytest.raises(ServingError, match="--max_request_elements"):
        json_tensor.check_value_count(body, 5)


@pytest.mark.parametrize(
    "number, may_overflow",
    [
        ("1.5", False),
        ("1e99", False),
        ("1e-400", False),
        ("9" * 308, False),
        ("1e308", True),
        ("1E+400", True),
        ("1e0400", True),
        ("9" * 309 + ".0", True),
    ],
)
def test_overflow_precheck_is_conservative(number, may_overflow):
    assert json_tensor._may_overflow_double(f'{{"a": [{number}]}}'.encode()) is may_overflow


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.float16])
def test_vectorized_float_writing_equals_value_by_value(dtype):
    """format_decimals (one numpy parse for the whole tensor) writes exactly what format_decimal
    writes for each value: random values over many magnitudes, integers, signed zeros, the
    values next to them, and tensors holding NaN and infinities."""
    rng = np.random.default_rng(12)
    wide = rng.standard_normal(4000) * 10.0 ** rng.integers(-40, 40, 4000)
    special = [0.0, -0.0, 1.0, -3.0, 1e6, 123456789.0, 0.1, 1 / 3, 2.5e-8, 1e-45, 3.4e38, 65504.0]
    values = np.concatenate([wide, special]).astype(dtype)
    values = values[np.isfinite(values)]
    values = np.concatenate([values, np.nextafter(values, np.inf, dtype=dtype)])
    double = dtype == np.float64
    assert json_tensor.format_decimals(values) == [format_decimal(float(v), double) for v in values]
    odd = np.array([[1.5, np.nan], [np.inf, -np.inf]], dtype)
    assert json_tensor.format_decimals(odd) == ["1.5", "NaN", "Infinity", "-Infinity"]
    assert json_tensor.nest(json_tensor.format_decimals(odd), odd.shape) == "[[1.5, NaN], [Infinity, -Infinity]]"
