"""Checks that decide a request's cost before the expensive step, and the scrubbing of
internal detail out of error messages.

A TensorProto can declare a shape far larger than the values it carries (TensorFlow repeats
the last value, or zeros, to fill it), so a 29-byte message could ask for gigabytes; examples
sent with a context are each merged with it, so their cost is count × context size.
"""

from __future__ import annotations

import re
from typing import Iterable, Sequence

import numpy as np
from tensorflow.core.example import example_pb2
from tensorflow.core.framework import tensor_pb2, types_pb2

from serving.limits import Limits
from serving.status import Code, ServingError, clip

# Bytes per element of the fixed-size dtypes a TensorProto's tensor_content may carry.
_DTYPE_BYTES = {
    types_pb2.DT_FLOAT: 4,
    types_pb2.DT_DOUBLE: 8,
    types_pb2.DT_INT32: 4,
    types_pb2.DT_UINT8: 1,
    types_pb2.DT_INT16: 2,
    types_pb2.DT_INT8: 1,
    types_pb2.DT_INT64: 8,
    types_pb2.DT_BOOL: 1,
    types_pb2.DT_UINT16: 2,
    types_pb2.DT_UINT32: 4,
    types_pb2.DT_UINT64: 8,
    types_pb2.DT_HALF: 2,
    types_pb2.DT_BFLOAT16: 2,
    types_pb2.DT_COMPLEX64: 8,
    types_pb2.DT_COMPLEX128: 16,
}
_VALUE_FIELDS = (
    "float_val",
    "double_val",
    "int_val",
    "int64_val",
    "bool_val",
    "string_val",
    "half_val",
    "uint32_val",
    "uint64_val",
    "scomplex_val",
    "dcomplex_val",
)
ELEMENTS_FLAG = "--max_request_elements"
BYTES_FLAG = "--max_request_bytes"


def tensor_elements(alias: str, proto: tensor_pb2.TensorProto, budget: int) -> int:
    """The element count `proto` declares, after checking it against the values it carries
    and against `budget` (what is left of the request's element cap)."""

    def invalid(why: str) -> ServingError:
        return ServingError(Code.INVALID_ARGUMENT, f"Unable to parse tensor proto for input {clip(alias)}: {why}")

    if proto.tensor_shape.unknown_rank:
        raise invalid("the shape has unknown rank")
    count = 1
    for dim in proto.tensor_shape.dim:
        if dim.size < 0:
            raise invalid(f"dimension size {dim.size} is negative")
        count *= dim.size
        if count > budget:
            shape = [d.size for d in proto.tensor_shape.dim]
            raise ServingError(
                Code.INVALID_ARGUMENT,
                f"Input {clip(alias)} declares shape {shape}: more elements than the "
                f"{budget} left of the request's limit ({ELEMENTS_FLAG})",
            )
    if proto.tensor_content:
        item = _DTYPE_BYTES.get(proto.dtype)
        if item is None:
            known = proto.dtype in types_pb2.DataType.values()
            raise invalid(
                f"tensor_content is not allowed for dtype "
                f"{types_pb2.DataType.Name(proto.dtype) if known else proto.dtype}"
            )
        if len(proto.tensor_content) != count * item:
            raise invalid(f"tensor_content has {len(proto.tensor_content)} bytes, the shape needs " f"{count * item}")
        return count
    carried = sum(len(getattr(proto, name)) for name in _VALUE_FIELDS)
    if proto.dtype in (types_pb2.DT_COMPLEX64, types_pb2.DT_COMPLEX128):
        carried //= 2
    if carried > count:
        raise invalid(f"{carried} values for a shape of {count} elements")
    return count


def check_request_tensors(tensors: Iterable[tuple[str, tensor_pb2.TensorProto]], max_elements: int) -> None:
    """All input tensors of one request together stay within `max_elements`."""
    left = max_elements
    for alias, proto in tensors:
        left -= tensor_elements(alias, proto, left)


def check_request_arrays(arrays: Iterable[tuple[str, np.ndarray]], max_elements: int) -> None:
    """The same cap for inputs that arrive as arrays (REST's fast path)."""
    left = max_elements
    for alias, array in arrays:
        if array.size > left:
            raise ServingError(
                Code.INVALID_ARGUMENT,
                f"Input {clip(alias)} declares shape {list(array.shape)}: more elements than the "
                f"{left} left of the request's limit ({ELEMENTS_FLAG})",
            )
        left -= array.size


def feature_values(example: example_pb2.Example) -> int:
    """How many values the features of a tf.Example hold."""
    return sum(
        len(f.float_list.value) + len(f.int64_list.value) + len(f.bytes_list.value)
        for f in example.features.feature.values()
    )


def check_examples_cost(
    examples: Sequence[example_pb2.Example], context: example_pb2.Example | None, limits: Limits
) -> None:
    """Examples merged with a context cost count × context (bytes and feature values);
    refused before merging when that exceeds the request's caps."""
    count = len(examples)
    context_bytes = context.ByteSize() if context is not None else 0
    total_bytes = count * context_bytes + sum(e.ByteSize() for e in examples)
    if total_bytes > limits.max_request_bytes:
        raise ServingError(
            Code.INVALID_ARGUMENT,
            f"{count} examples with a context of {context_bytes} bytes expand to {total_bytes} "
            f"bytes, more than the request limit of {limits.max_request_bytes} ({BYTES_FLAG})",
        )
    context_values = feature_values(context) if context is not None else 0
    total_values = count * context_values + sum(feature_values(e) for e in examples)
    if total_values > limits.max_request_elements:
        raise ServingError(
            Code.INVALID_ARGUMENT,
            f"{count} examples with a context of {context_values} feature values expand to "
            f"{total_values} values, more than the request limit of {limits.max_request_elements} "
            f"({ELEMENTS_FLAG})",
        )


# TensorFlow inserts where an op was defined ("Detected at node N defined at (most recent call
# last):", then one `File "...", line N` entry and its source line per frame); Python adds
# "Traceback (most recent call last):". Clients get the error itself, not our stack or paths.
_STACK_HEADERS = ("Detected at node", "Traceback (most recent call last)", "<stack traces unavailable>")
_FRAME = re.compile(r'^\s*File "[^"]*", line \d+')
_LOCAL_PATH = re.compile(r"(?<![\w.:])/(?:[\w.+-]+/)+([\w.+-]+)")


def public_message(text: str) -> str:
    """An error text from TensorFlow or Python with stack traces and file paths removed."""
    kept: list[str] = []
    in_frame = False
    for line in text.splitlines():
        stripped = line.strip()
        if stripped.startswith(_STACK_HEADERS) or _FRAME.match(line):
            in_frame = True
            continue
        if in_frame and line.startswith("    "):  # the source line printed under a frame
            continue
        in_frame = False
        kept.append(line)
    message = re.sub(r"\n{3,}", "\n\n", "\n".join(kept)).strip()
    return _LOCAL_PATH.sub(r"\1", message) or "Internal error"
