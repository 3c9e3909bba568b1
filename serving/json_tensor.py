"""JSON <-> TensorProto / tf.Example conversion with TF Serving's REST semantics.

A port of tensorflow_serving/util/json_tensor.cc: the row (`instances`) and columnar
(`inputs`) predict formats, `{"b64": ...}` binary strings, tf.Example JSON for
classify/regress, and TF Serving's output shaping and float formatting. Errors are
`ServingError`s with TF Serving's wording.
"""

from __future__ import annotations

import base64
import binascii
import enum
import json
import math
from typing import Any, Callable, Mapping, Sequence

import numpy as np
from tensorflow.core.example import example_pb2, feature_pb2
from tensorflow.core.framework import tensor_pb2, types_pb2
from tensorflow.core.protobuf import meta_graph_pb2
from tensorflow_serving.apis import (
    classification_pb2,
    predict_pb2,
    regression_pb2,
)

from serving.status import Code, ServingError

SIGNATURE_KEY = "signature_name"
INSTANCES_KEY = "instances"
INPUTS_KEY = "inputs"
CONTEXT_KEY = "context"
EXAMPLES_KEY = "examples"
B64_KEY = "b64"
BYTES_SUFFIX = "_bytes"

_INT32_RANGE = (-(2**31), 2**31 - 1)
_UINT32_MAX = 2**32 - 1
_INT64_RANGE = (-(2**63), 2**63 - 1)
_UINT64_MAX = 2**64 - 1
_MAX_DEBUG_CHARS = 256

TensorInfoMap = Mapping[str, meta_graph_pb2.TensorInfo]
# Called between steps of a conversion (after parsing, every CHECK_EVERY items); raises to stop
# a request whose deadline passed, so its work ends soon after its 504.
StepCheck = Callable[[], None]
CHECK_EVERY = 1024


def _no_check() -> None:
    pass


class Format(enum.Enum):
    """How a predict request was written, which decides how the response is written."""

    ROW = "row"
    COLUMNAR = "columnar"


def dtype_string(dtype: int) -> str:
    """DataTypeString: DT_FLOAT -> "float"."""
    return types_pb2.DataType.Name(dtype)[3:].lower()


# ---------------------------------------------------------------- JSON parsing

_PARSE_ERRORS = {
    "Expecting value": "Invalid value.",
    "Expecting property name enclosed in double quotes": "Missing a name for object member.",
    "Expecting ':' delimiter": "Missing a colon after a name of object member.",
    "Unterminated string starting at": "Missing a closing quotation mark in string.",
    "Invalid control character at": "Invalid encoding in string.",
    "Invalid \\escape": "Invalid escape character in string.",
    "Invalid \\uXXXX escape": "Incorrect hex digit after \\u escape in string.",
}


def _first_value_wins(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """Object hook keeping the first value of a repeated key, as rapidjson's FindMember does."""
    out: dict[str, Any] = {}
    for key, value in pairs:
        out.setdefault(key, value)
    return out


def _parse_float(text: str) -> float:
    value = float(text)
    if math.isinf(value):
        raise ValueError("Number too big to be stored in double.")
    return value


_DECODER = json.JSONDecoder(object_pairs_hook=_first_value_wins, parse_float=_parse_float)
# Without the per-number Python hook: used when no number in the text can overflow a double,
# that is, none has a three-digit exponent or 309 digits in a row. The test runs at memchr
# speed (translate + substring search), never a regex over the body: a regex scan held the
# GIL for ~2 s per 4 MiB of long numbers and stalled every other request.
_FAST_DECODER = json.JSONDecoder(object_pairs_hook=_first_value_wins)
_DIGITS_AS_ZERO = bytes.maketrans(b"123456789", b"000000000")
_LONG_DIGIT_RUN = b"0" * 309
_LONG_EXPONENTS = (b"e000", b"e+000", b"E000", b"E+000")


def _may_overflow_double(raw: bytes) -> bool:
    """True when some number in `raw` might not fit a double (conservative, linear time)."""
    masked = raw.translate(_DIGITS_AS_ZERO)
    return _LONG_DIGIT_RUN in masked or any(e in masked for e in _LONG_EXPONENTS)


def count_values(body: bytes) -> int:
    """An upper bound of the values in a JSON text, found before parsing: every value but the
    first follows a '[', '{' or ',' (more when those occur inside strings; never fewer)."""
    return body.count(b",") + body.count(b"[") + body.count(b"{") + 1


def check_value_count(body: bytes, max_values: int) -> None:
    """Refuses a body whose JSON could hold more than `max_values` values, before parsing it."""
    if len(body) < max_values:  # count_values is at most len(body) + 1: nothing to count
        return
    count = count_values(body)
    if count > max_values:
        raise ServingError(
            Code.INVALID_ARGUMENT,
            f"JSON body has up to {count} values, more than the limit of {max_values} " f"(--max_request_elements)",
        )


def parse_json(body: bytes | str) -> dict[str, Any]:
    """Parses a request body; only a top-level object is accepted (ParseJson)."""
    try:
        text = body.decode("utf-8") if isinstance(body, bytes) else body
    except UnicodeDecodeError as e:
        raise ServingError(
            Code.INVALID_ARGUMENT, f"JSON Parse error: Invalid encoding in string. at offset: {e.start}"
        ) from None
    if not text:
        raise ServingError(Code.INVALID_ARGUMENT, "JSON Parse error: The document is empty")
    stripped = text.lstrip()
    if not stripped:
        raise ServingError(Code.INVALID_ARGUMENT, f"JSON Parse error: The document is empty. at offset: {len(text)}")
    offset = len(text) - len(stripped)
    try:
        raw = body if isinstance(body, bytes) else text.encode("utf-8")
        decoder = _DECODER if _may_overflow_double(raw) else _FAST_DECODER
        doc, _ = decoder.raw_decode(stripped)  # trailing data is ignored (StopWhenDone)
    except json.JSONDecodeError as e:
        reason = next(
            (v for k, v in _PARSE_ERRORS.items() if e.msg.startswith(k)),
            "Missing a comma or ']' after an array element." if "delimiter" in e.msg else e.msg,
        )
        raise ServingError(Code.INVALID_ARGUMENT, f"JSON Parse error: {reason} at offset: {offset + e.pos}") from None
    except RecursionError:
        raise ServingError(Code.INVALID_ARGUMENT, "JSON Parse error: nesting too deep") from None
    except ValueError as e:  # an overflowing number, or an integer too long to convert
        raise ServingError(Code.INVALID_ARGUMENT, f"JSON Parse error: {e}") from None
    if not isinstance(doc, dict):
        raise ServingError(Code.INVALID_ARGUMENT, f"JSON Value: {debug_string(doc)} Is not object")
    return doc


def json_type(val: Any) -> str:
    """rapidjson's type name of a parsed JSON value."""
    if val is None:
        return "Null"
    if val is True:
        return "True"
    if val is False:
        return "False"
    if isinstance(val, dict):
        return "Object"
    if isinstance(val, list):
        return "Array"
    if isinstance(val, str):
        return "String"
    return "Number"


def debug_string(val: Any) -> str:
    """A JSON value as text for error messages, truncated like JsonValueToDebugString."""
    try:
        text = json.dumps(val, separators=(", ", ": "))
    except (TypeError, ValueError):  # pragma: no cover - parsed JSON always serialises
        text = repr(val)
    return text[:_MAX_DEBUG_CHARS]


_JSON_NUMBER_TYPES = (float, int)  # exact types: bool, a subclass of int, is not a number here


def _is_number(val: Any) -> bool:
    return type(val) in _JSON_NUMBER_TYPES


def _type_error(val: Any, dtype: int) -> ServingError:
    return ServingError(
        Code.INVALID_ARGUMENT,
        f"JSON Value: {debug_string(val)} Type: {json_type(val)} " f"is not of expected type: {dtype_string(dtype)}",
    )


def _is_b64_object(val: Any) -> bool:
    return isinstance(val, dict) and len(val) == 1 and isinstance(val.get(B64_KEY), str)


def decode_b64(val: Any) -> bytes:
    """Decodes `{"b64": "..."}` (padding optional, like absl::Base64Unescape)."""
    if not _is_b64_object(val):
        raise ServingError(
            Code.INVALID_ARGUMENT, f"JSON Value: {debug_string(val)} not formatted correctly for base64 data"
        )
    text = val[B64_KEY].strip()
    try:
        return base64.b64decode(text + "=" * (-len(text) % 4), validate=True)
    except (binascii.Error, ValueError):
        raise ServingError(Code.INVALID_ARGUMENT, "Unable to base64 decode") from None


_FLOAT_TYPES = frozenset({types_pb2.DT_FLOAT, types_pb2.DT_DOUBLE, types_pb2.DT_HALF, types_pb2.DT_BFLOAT16})


def _convert_scalar(val: Any, dtype: int) -> Any:
    """One JSON leaf as a Python value for `dtype` (AddValueToTensor)."""
    if dtype in _FLOAT_TYPES:
        if not _is_number(val):
            raise _type_error(val, dtype)
        try:
            return float(val)
        except OverflowError:  # an integer beyond double range reads as +-inf
            return math.inf if val > 0 else -math.inf
    if dtype in (types_pb2.DT_INT32, types_pb2.DT_INT16, types_pb2.DT_INT8, types_pb2.DT_UINT8, types_pb2.DT_UINT16):
        if not (isinstance(val, int) and not isinstance(val, bool) and _INT32_RANGE[0] <= val <= _INT32_RANGE[1]):
            raise _type_error(val, dtype)
        return val
    if dtype == types_pb2.DT_INT64:
        if not (isinstance(val, int) and not isinstance(val, bool) and _INT64_RANGE[0] <= val <= _INT64_RANGE[1]):
            raise _type_error(val, dtype)
        return val
    if dtype == types_pb2.DT_UINT32:
        if not (isinstance(val, int) and not isinstance(val, bool) and 0 <= val <= _UINT32_MAX):
            raise _type_error(val, dtype)
        return val
    if dtype == types_pb2.DT_UINT64:
        if not (isinstance(val, int) and not isinstance(val, bool) and 0 <= val <= _UINT64_MAX):
            raise _type_error(val, dtype)
        return val
    if dtype == types_pb2.DT_BOOL:
        if not isinstance(val, bool):
            raise _type_error(val, dtype)
        return val
    if dtype == types_pb2.DT_STRING:
        if not isinstance(val, str):
            raise _type_error(val, dtype)
        return val.encode("utf-8")
    raise ServingError(
        Code.UNIMPLEMENTED, f"Conversion of JSON Value: {debug_string(val)} to type: {dtype_string(dtype)}"
    )


_VAL_FIELD = {
    types_pb2.DT_FLOAT: "float_val",
    types_pb2.DT_DOUBLE: "double_val",
    types_pb2.DT_INT32: "int_val",
    types_pb2.DT_INT16: "int_val",
    types_pb2.DT_INT8: "int_val",
    types_pb2.DT_UINT8: "int_val",
    types_pb2.DT_UINT16: "int_val",
    types_pb2.DT_INT64: "int64_val",
    types_pb2.DT_UINT32: "uint32_val",
    types_pb2.DT_UINT64: "uint64_val",
    types_pb2.DT_BOOL: "bool_val",
    types_pb2.DT_STRING: "string_val",
    types_pb2.DT_HALF: "half_val",
}


def _dense_shape(val: Any) -> list[int]:
    """Shape of a nested list, following first elements (GetDenseTensorShape)."""
    shape = []
    while isinstance(val, list):
        shape.append(len(val))
        if not val:
            break
        val = val[0]
    return shape


def _fill_values(val: Any, level: int, shape: list[int], dtype: int, out: list) -> None:
    """Flattens `val` into `out`, checking that it is dense with `shape` (FillTensorProto)."""
    rank = len(shape)
    if not isinstance(val, list):
        if level != rank:
            raise ServingError(
                Code.INVALID_ARGUMENT,
                f"JSON Value: {debug_string(val)} found at incorrect level: {level + 1} "
                f"in the JSON DOM. Expected at level: {rank}",
            )
        if isinstance(val, dict):
            if dtype != types_pb2.DT_STRING:
                raise _type_error(val, dtype)
            out.append(decode_b64(val))
        else:
            out.append(_convert_scalar(val, dtype))
        return
    if level >= rank:
        raise ServingError(Code.INVALID_ARGUMENT, f"Encountered list at unexpected level: {level} expected < {rank}")
    if len(val) != shape[level]:
        raise ServingError(
            Code.INVALID_ARGUMENT,
            f"Encountered list at unexpected size: {len(val)} at level: {level} " f"expected size: {shape[level]}",
        )
    if level == rank - 1 and dtype in _FLOAT_TYPES and _extend_numbers(val, out):
        return
    for item in val:
        _fill_values(item, level + 1, shape, dtype, out)


def _extend_numbers(leaves: list, out: list) -> bool:
    """The hot path of `_fill_values`: an innermost list of plain numbers for a float tensor,
    converted in one pass. False (nothing added) when any leaf needs the per-value checks."""
    if not all(type(v) in _JSON_NUMBER_TYPES for v in leaves):
        return False
    try:
        out.extend([float(v) for v in leaves])
    except OverflowError:  # an integer beyond double range: _convert_scalar reads it as +-inf
        return False
    return True


def _to_half_bits(values: list[float]) -> list[int]:
    return np.asarray(values, dtype=np.float16).view(np.uint16).astype(np.int32).tolist()


def make_tensor_proto(val: Any, dtype: int) -> tuple[tensor_pb2.TensorProto, int]:
    """A TensorProto of `dtype` from a JSON value; returns it and its element count."""
    shape = _dense_shape(val)
    values: list = []
    _fill_values(val, 0, shape, dtype, values)
    tensor = tensor_pb2.TensorProto(dtype=dtype)
    tensor.tensor_shape.SetInParent()
    for size in shape:
        tensor.tensor_shape.dim.add(size=size)
    field = _VAL_FIELD.get(dtype)
    if field is None:
        raise ServingError(Code.UNIMPLEMENTED, f"Conversion to type: {dtype_string(dtype)}")
    if dtype == types_pb2.DT_HALF:
        values = _to_half_bits(values)
    getattr(tensor, field).extend(values)
    return tensor, len(values)


def _shape_str(shape: list[int]) -> str:
    return "[" + ",".join(str(d) for d in shape) + "]"


def _fill_from_instances(
    instances: list, infos: TensorInfoMap, out: Mapping[str, tensor_pb2.TensorProto], check: StepCheck = _no_check
) -> None:
    """Row format: stack per-instance values along a new batch dimension."""
    if not isinstance(instances[0], dict) and len(infos) > 1:
        raise ServingError(
            Code.INVALID_ARGUMENT,
            "instances is a plain list, but expecting list of objects as multiple "
            "input tensors required as per tensorinfo_map",
        )

    def is_object(v: Any) -> bool:
        return isinstance(v, dict) and not _is_b64_object(v)

    objects = is_object(instances[0])
    names = sorted(infos)
    values: dict[str, list] = {}
    shapes: dict[str, list[int]] = {}

    def add_item(item: Any, name: str) -> None:
        if name not in infos:
            raise ServingError(Code.INVALID_ARGUMENT, f"JSON object: does not have named input: {name}")
        shape = _dense_shape(item)
        flat: list = []
        _fill_values(item, 0, shape, infos[name].dtype, flat)
        if name not in values:
            values[name], shapes[name] = flat, shape
            return
        expected = shapes[name]
        expected_size = math.prod(expected)
        if expected_size != len(flat):
            raise ServingError(Code.INVALID_ARGUMENT, f"Expecting tensor size: {expected_size} but got: {len(flat)}")
        if expected != shape:
            raise ServingError(
                Code.INVALID_ARGUMENT, f"Expecting shape {_shape_str(expected)} but got: {_shape_str(shape)}"
            )
        values[name].extend(flat)

    for index, elem in enumerate(instances):
        if index % CHECK_EVERY == 0:
            check()
        if objects:
            if not is_object(elem):
                raise ServingError(
                    Code.INVALID_ARGUMENT, f"Expecting object but got list at item {index} of input list"
                )
            for name, item in elem.items():
                try:
                    add_item(item, name)
                except ServingError as e:
                    raise ServingError(
                        Code.INVALID_ARGUMENT,
                        f"Failed to process element: {index} key: {name} of 'instances' list. "
                        f"Error: {e.status_string()}",
                    ) from None
            if set(elem) != set(names):
                raise ServingError(
                    Code.INVALID_ARGUMENT,
                    f"Failed to process element: {index} of 'instances' list. JSON object: "
                    f"{debug_string(elem)} keys must be equal to: {','.join(names)}",
                )
        else:
            if is_object(elem):
                raise ServingError(
                    Code.INVALID_ARGUMENT, f"Expecting value/list but got object at item {index} of input list"
                )
            try:
                add_item(elem, names[0])
            except ServingError as e:
                raise ServingError(
                    Code.INVALID_ARGUMENT,
                    f"Failed to process element: {index} of 'instances' list. " f"Error: {e.status_string()}",
                ) from None
    for name, flat in values.items():
        dtype = infos[name].dtype
        tensor = out[name]
        tensor.dtype = dtype
        tensor.tensor_shape.dim.add(size=len(instances))
        for size in shapes[name]:
            tensor.tensor_shape.dim.add(size=size)
        getattr(tensor, _VAL_FIELD[dtype]).extend(_to_half_bits(flat) if dtype == types_pb2.DT_HALF else flat)


def _fill_from_inputs(inputs: Any, infos: TensorInfoMap, out: Mapping[str, tensor_pb2.TensorProto]) -> None:
    """Columnar format: each named input is one whole tensor."""
    if not isinstance(inputs, dict) or _is_b64_object(inputs):
        if len(infos) > 1:
            raise ServingError(
                Code.INVALID_ARGUMENT,
                "inputs is a plain value/list, but expecting an object as multiple "
                "input tensors required as per tensorinfo_map",
            )
        name = next(iter(infos))
        out[name].CopyFrom(make_tensor_proto(inputs, infos[name].dtype)[0])
        return
    for name in sorted(infos):
        if name not in inputs:
            raise ServingError(Code.INVALID_ARGUMENT, f"Missing named input: {name} in 'inputs' object.")
        out[name].CopyFrom(make_tensor_proto(inputs[name], infos[name].dtype)[0])


def _fill_signature(doc: dict[str, Any], model_spec: Any) -> None:
    if SIGNATURE_KEY in doc:
        if not isinstance(doc[SIGNATURE_KEY], str):
            raise ServingError(
                Code.INVALID_ARGUMENT,
                f"JSON Value: {debug_string(doc)} not formatted correctly. "
                "'signature_name' key must be a string value.",
            )
        model_spec.signature_name = doc[SIGNATURE_KEY]


def fill_predict_request(
    body: bytes | str,
    get_inputs: Callable[[str], TensorInfoMap],
    request: predict_pb2.PredictRequest,
    check: StepCheck = _no_check,
) -> Format:
    """Fills `request.inputs` (and the signature name) from a REST predict body; `check`
    runs between steps."""
    doc = parse_json(body)
    check()
    _fill_signature(doc, request.model_spec)
    signature = request.model_spec.signature_name
    infos = get_inputs(signature)
    if not infos:
        raise ServingError(Code.INVALID_ARGUMENT, f"Failed to get input map for signature: {signature or 'DEFAULT'}")
    if INSTANCES_KEY in doc:
        if INPUTS_KEY in doc:
            raise ServingError(
                Code.INVALID_ARGUMENT,
                f"JSON Value: {debug_string(doc)} Not formatted correctly expecting only one of "
                f"'{INPUTS_KEY}' or '{INSTANCES_KEY}' keys to exist ",
            )
        instances = doc[INSTANCES_KEY]
        if not isinstance(instances, list):
            raise ServingError(
                Code.INVALID_ARGUMENT,
                f"JSON Value: {debug_string(doc)} Expecting '{INSTANCES_KEY}' " "to be an list/array",
            )
        if not instances:
            raise ServingError(
                Code.INVALID_ARGUMENT, f"JSON Value: {debug_string(doc)} No values in '{INSTANCES_KEY}' array"
            )
        _fill_from_instances(instances, infos, request.inputs, check)
        return Format.ROW
    if INPUTS_KEY in doc:
        _fill_from_inputs(doc[INPUTS_KEY], infos, request.inputs)
        return Format.COLUMNAR
    raise ServingError(Code.INVALID_ARGUMENT, "Missing 'inputs' or 'instances' key")


# ------------------------------------------------------------ tf.Example JSON


def _kind_name(feature: feature_pb2.Feature) -> str:
    return {"bytes_list": "bytes", "float_list": "float", "int64_list": "int64"}.get(
        feature.WhichOneof("kind"), "UNKNOWN"
    )


def _add_feature_value(val: Any, name: str, feature: feature_pb2.Feature) -> None:
    """One JSON value into a Feature, refusing mixed kinds (AddValueToFeature)."""
    kind = feature.WhichOneof("kind")

    def require(wanted: str) -> None:
        if kind not in (None, wanted):
            raise ServingError(
                Code.INVALID_ARGUMENT,
                f"Unexpected element type in feature: {name} " f"expecting type: {_kind_name(feature)}",
            )

    if val is None or isinstance(val, list) or (isinstance(val, dict) and not _is_b64_object(val)):
        raise ServingError(
            Code.INVALID_ARGUMENT, f"Feature: {name} has element with unexpected JSON type: {json_type(val)}"
        )
    if isinstance(val, bool):
        require("int64_list")
        feature.int64_list.value.append(int(val))
    elif isinstance(val, dict):
        require("bytes_list")
        feature.bytes_list.value.append(decode_b64(val))
    elif isinstance(val, str):
        require("bytes_list")
        feature.bytes_list.value.append(val.encode("utf-8"))
    elif isinstance(val, float) or val > _UINT64_MAX or val < _INT64_RANGE[0]:
        require("float_list")  # rapidjson reads out-of-range integers as doubles
        feature.float_list.value.append(_convert_scalar(val, types_pb2.DT_FLOAT))
    else:
        require("int64_list")
        if val > _INT64_RANGE[1]:
            raise ServingError(
                Code.INVALID_ARGUMENT, f"Feature: {name} has uint64_t element. Only int64_t is supported."
            )
        feature.int64_list.value.append(val)


def make_example(val: Any, example: example_pb2.Example) -> None:
    """A tf.Example from `{"feature": value-or-list, ...}` (MakeExampleFromJsonObject)."""
    if not isinstance(val, dict):
        raise ServingError(Code.INVALID_ARGUMENT, f"Example must be JSON object but got JSON {json_type(val)}")
    for name, content in val.items():
        feature = example.features.feature[name]
        for item in content if isinstance(content, list) else [content]:
            _add_feature_value(item, name, feature)


def fill_classify_regress_request(
    body: bytes | str,
    request: classification_pb2.ClassificationRequest | regression_pb2.RegressionRequest,
    check: StepCheck = _no_check,
) -> None:
    """Fills `request.input` from `{"examples": [...], "context": {...}}`; `check` runs between
    steps."""
    doc = parse_json(body)
    check()
    _fill_signature(doc, request.model_spec)
    target = request.input.example_list
    if CONTEXT_KEY in doc:
        make_example(doc[CONTEXT_KEY], request.input.example_list_with_context.context)
        target = request.input.example_list_with_context
    if EXAMPLES_KEY not in doc:
        raise ServingError(
            Code.INVALID_ARGUMENT,
            f"JSON Value: {debug_string(doc)} When method is classify, key "
            f"'{EXAMPLES_KEY}' is expected and was not found",
        )
    examples = doc[EXAMPLES_KEY]
    if not isinstance(examples, list):
        raise ServingError(
            Code.INVALID_ARGUMENT,
            f"JSON Value: {debug_string(doc)} Expecting '{EXAMPLES_KEY}' value to " "be an list/array",
        )
    if not examples:
        raise ServingError(
            Code.INVALID_ARGUMENT, f"JSON Value: {debug_string(doc)} '{EXAMPLES_KEY}' value is an empty array"
        )
    for index, item in enumerate(examples):
        if index % CHECK_EVERY == 0:
            check()
        make_example(item, target.examples.add())


# --------------------------------------------------------------- JSON writing


def format_decimal(value: float, double: bool) -> str:
    """WriteDecimal: six significant digits when they round-trip, else full precision."""
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "-Infinity" if value < 0 else "Infinity"
    text = f"{value:g}"
    parsed = float(text)
    if (parsed if double else float(np.float32(parsed))) != value:
        text = f"{value:.{17 if double else 9}g}"
    if "." not in text and "e" not in text:
        text += ".0"
    return text


def format_decimals(array: np.ndarray) -> list[str]:
    """`format_decimal` of every value of a float array, flattened in C order: the "%g" texts
    are parsed back in one numpy call, and only values that do not round-trip are redone."""
    values = array.ravel()
    double = array.dtype == np.float64
    finite = np.isfinite(values)
    if not finite.all():  # NaN and infinities: rare, one by one
        return [format_decimal(v, double) for v in values.tolist()]
    texts = [f"{v:g}" for v in values.tolist()]
    wide = values.astype(np.float64)
    parsed = np.array(texts, dtype=np.float64)
    if not double:
        parsed = parsed.astype(np.float32).astype(np.float64)
    for i in np.flatnonzero(parsed != wide).tolist():
        texts[i] = f"{float(wide[i]):.{17 if double else 9}g}"
    return [t if "." in t or "e" in t else t + ".0" for t in texts]


def value_texts(array: np.ndarray, as_bytes: bool) -> list[str]:
    """Every value of a tensor as JSON text, flattened in C order."""
    if array.dtype.kind == "f":
        return format_decimals(array)
    return [_write_scalar(v, array.dtype, as_bytes) for v in array.ravel().tolist()]


def nest(texts: Sequence[str], shape: Sequence[int]) -> str:
    """Flat value texts as nested JSON lists of `shape` (a scalar for shape ())."""
    if not shape:
        return texts[0]
    if len(shape) == 1:
        return "[" + ", ".join(texts) + "]"
    step = math.prod(shape[1:])
    return "[" + ", ".join(nest(texts[i * step : (i + 1) * step], shape[1:]) for i in range(shape[0])) + "]"


def _write_values(array: np.ndarray, as_bytes: bool) -> str:
    """A (sub)tensor as JSON text, nesting lists by its shape."""
    return nest(value_texts(array, as_bytes), array.shape)


def _write_scalar(value: Any, dtype: np.dtype, as_bytes: bool) -> str:
    if dtype.kind == "f":
        return format_decimal(float(value), double=dtype == np.float64)
    if dtype.kind == "b":
        return "true" if value else "false"
    if dtype.kind in "iu":
        return str(int(value))
    if isinstance(value, bytes):
        if as_bytes:
            return '{"b64": "' + base64.b64encode(value).decode("ascii") + '"}'
        return json.dumps(value.decode("utf-8", errors="replace"))
    raise ServingError(Code.INVALID_ARGUMENT, f"Failed to write JSON value for tensor type: {dtype}")


def _is_bytes_output(name: str, array: np.ndarray) -> bool:
    return array.dtype == object and name.endswith(BYTES_SUFFIX)


def _check_supported(name: str, array: np.ndarray) -> None:
    if array.dtype.kind not in "fbiuO":
        raise ServingError(Code.INVALID_ARGUMENT, f"Failed to write JSON value for tensor type: {array.dtype}")


def make_json_from_tensors(outputs: Mapping[str, np.ndarray], fmt: Format) -> str:
    """The predict response body: `predictions` (row) or `outputs` (columnar)."""
    if not outputs:
        raise ServingError(Code.INVALID_ARGUMENT, "Cannot convert empty tensor map to JSON")
    names = sorted(outputs)
    for name in names:
        _check_supported(name, outputs[name])
    many = len(names) > 1
    if fmt is Format.COLUMNAR:
        parts = [_write_values(outputs[n], _is_bytes_output(n, outputs[n])) for n in names]
        if not many:
            return '{"outputs": ' + parts[0] + "}"
        body = ", ".join(f"{json.dumps(n)}: {p}" for n, p in zip(names, parts))
        return '{"outputs": {' + body + "}}"
    batch = -1
    for name in names:
        array = outputs[name]
        if array.ndim == 0:
            raise ServingError(Code.INVALID_ARGUMENT, f"Tensor name: {name} has no shape information ")
        if batch >= 0 and array.shape[0] != batch:
            raise ServingError(
                Code.INVALID_ARGUMENT,
                f"Tensor name: {name} has inconsistent batch size: " f"{array.shape[0]} expecting: {batch}",
            )
        batch = array.shape[0]
    texts = {n: value_texts(outputs[n], _is_bytes_output(n, outputs[n])) for n in names}
    rows = []
    for i in range(batch):
        items = []
        for n in names:
            shape = outputs[n].shape[1:]
            step = math.prod(shape)
            items.append(nest(texts[n][i * step : (i + 1) * step], shape))
        if many:
            rows.append("{" + ", ".join(f"{json.dumps(n)}: {v}" for n, v in zip(names, items)) + "}")
        else:
            rows.append(items[0])
    return '{"predictions": [' + ", ".join(rows) + "]}"


def make_json_from_classification(result: classification_pb2.ClassificationResult) -> str:
    """`{"results": [[[label, score], ...], ...]}`."""
    if not result.classifications:
        raise ServingError(Code.INVALID_ARGUMENT, "Cannot convert empty ClassificationResults to JSON")
    rows = []
    for classifications in result.classifications:
        pairs = [f"[{json.dumps(c.label)}, {format_decimal(c.score, double=False)}]" for c in classifications.classes]
        rows.append("[" + ", ".join(pairs) + "]")
    return '{"results": [' + ", ".join(rows) + "]}"


def make_json_from_regression(result: regression_pb2.RegressionResult) -> str:
    """`{"results": [value, ...]}`."""
    if not result.regressions:
        raise ServingError(Code.INVALID_ARGUMENT, "Cannot convert empty RegressionResults to JSON")
    values = [format_decimal(r.value, double=False) for r in result.regressions]
    return '{"results": [' + ", ".join(values) + "]}"


def make_json_from_error(message: str) -> str:
    """`{"error": message}`."""
    return json.dumps({"error": message})
