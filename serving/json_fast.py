"""A fast path for the common REST predict body: plain numbers in `instances` or `inputs`.

orjson parses the body and numpy builds the input array in C, skipping the per-value Python
of json_tensor.py (JSON -> lists -> TensorProto -> ndarray). It only answers when it can prove
the result equals the exact path's; anything else (b64 objects, strings, bools, NaN/Infinity
literals, duplicate keys, escapes, ragged lists, out-of-range integers, several inputs, ...)
returns None and the caller runs json_tensor, which keeps TF Serving's checks and error texts.
"""

from __future__ import annotations

from typing import Any, Callable, NamedTuple

import numpy as np
import orjson
from tensorflow.core.framework import types_pb2

from serving.json_tensor import INPUTS_KEY, INSTANCES_KEY, SIGNATURE_KEY, Format, TensorInfoMap

_KNOWN_KEYS = frozenset({INSTANCES_KEY, INPUTS_KEY, SIGNATURE_KEY})
# Bytes whose presence means the body may hold something other than numbers, lists and the
# top-level keys: a JSON literal numpy would read as a number (true -> 1.0) or an escape
# (which could spell a key or hide a quote).
_NOT_NUMERIC = (b"\\", b"true", b"false", b"null")
_FLOAT_DTYPES = {types_pb2.DT_FLOAT: np.float32, types_pb2.DT_DOUBLE: np.float64}
_FLOAT_MAX = {dtype: float(np.finfo(np_type).max) for dtype, np_type in _FLOAT_DTYPES.items()}
_INT_RANGES = {
    types_pb2.DT_INT32: (np.int32, -(2**31), 2**31 - 1),
    types_pb2.DT_INT64: (np.int64, -(2**63), 2**63 - 1),
}


class NumericPredict(NamedTuple):
    """A predict body read by the fast path."""

    signature_name: str
    inputs: dict[str, np.ndarray]
    format: Format


def _only_known_strings(body: bytes, doc: dict[str, Any]) -> bool:
    """True when the only strings in `body` are the document's (distinct) top-level keys and the
    signature name: their quotes account for every quote in it. A repeated key, which orjson
    resolves to the last value and TF Serving to the first, adds quotes and fails this."""
    quotes = 2 * len(doc) + (2 if SIGNATURE_KEY in doc else 0)
    return body.count(b'"') == quotes


def _as_input(value: Any, dtype: int) -> np.ndarray | None:
    """`value` (nested lists of numbers, or one number) as an array of `dtype`, or None when the
    exact path might answer differently."""
    if isinstance(value, (dict, str)):
        return None
    try:
        array = np.asarray(value)
    except (ValueError, OverflowError):  # ragged, or an integer numpy cannot hold
        return None
    if array.size == 0 or array.dtype.kind not in "if":
        return None
    if dtype in _FLOAT_DTYPES:
        # Through float64 first: the exact path converts each integer with float(), then narrows.
        wide = array.astype(np.float64, copy=False)
        if not np.abs(wide).max() <= _FLOAT_MAX[dtype]:  # would overflow (or NaN): the exact path decides
            return None
        return wide.astype(_FLOAT_DTYPES[dtype], copy=False)
    if dtype in _INT_RANGES:
        np_type, low, high = _INT_RANGES[dtype]
        if array.dtype != np.int64 or array.min() < low or array.max() > high:
            return None
        return array.astype(np_type, copy=False)
    return None


def may_be_numeric(body: bytes) -> bool:
    """False when the body holds something the fast path never takes (a cheap scan, first)."""
    return not any(marker in body for marker in _NOT_NUMERIC)


def parse_numeric_predict(body: bytes, get_inputs: Callable[[str], TensorInfoMap]) -> NumericPredict | None:
    """The signature name and input arrays of a numeric predict body for a one-input signature,
    or None to use the exact path. Errors `get_inputs` raises propagate: the exact path would
    raise the same ones at the same step."""
    if not may_be_numeric(body):
        return None
    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError:  # NaN/Infinity literals, overflow, trailing data, bad text
        return None
    if not isinstance(doc, dict) or not doc.keys() <= _KNOWN_KEYS or not _only_known_strings(body, doc):
        return None
    if (INSTANCES_KEY in doc) == (INPUTS_KEY in doc):
        return None
    signature = doc.get(SIGNATURE_KEY, "")
    if not isinstance(signature, str):
        return None
    infos = get_inputs(signature)
    if len(infos) != 1:
        return None
    name, info = next(iter(infos.items()))
    if INSTANCES_KEY in doc:
        value, fmt = doc[INSTANCES_KEY], Format.ROW
        if not isinstance(value, list) or not value:
            return None
    else:
        value, fmt = doc[INPUTS_KEY], Format.COLUMNAR
    array = _as_input(value, info.dtype)
    if array is None:
        return None
    return NumericPredict(signature, {name: array}, fmt)
