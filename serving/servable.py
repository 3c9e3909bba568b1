"""One loaded model version: its SignatureDefs and its signature functions.

TF Serving runs a signature by tensor name in a session and does not re-check request
shapes against the signature; TensorFlow's loaded signature functions behave the same way
for shapes, so a request tensor is handed over as it came, after a dtype check.
"""

from __future__ import annotations

import os
import warnings
from typing import Callable, Mapping, Sequence

import numpy as np
import tensorflow as tf
from google.protobuf import text_format
from google.protobuf.message import DecodeError
from tensorflow.core.protobuf import meta_graph_pb2, saved_model_pb2

from serving.json_tensor import dtype_string
from serving.request_checks import public_message
from serving.status import Code, ServingError

SERVE_TAG = "serve"

# (signature, inputs) -> outputs; the batcher wraps this when batching is enabled.
RunFn = Callable[[str, Mapping[str, np.ndarray]], dict[str, np.ndarray]]


def read_meta_graph(path: str) -> meta_graph_pb2.MetaGraphDef:
    """The MetaGraphDef tagged exactly {"serve"} of the SavedModel in `path`."""
    model = saved_model_pb2.SavedModel()
    pb, pbtxt = os.path.join(path, "saved_model.pb"), os.path.join(path, "saved_model.pbtxt")
    if os.path.exists(pb):
        with open(pb, "rb") as f, warnings.catch_warnings():
            warnings.simplefilter("error", RuntimeWarning)  # protobuf warns on truncated data
            try:
                model.ParseFromString(f.read())
            except (DecodeError, RuntimeWarning) as e:
                raise ServingError(Code.DATA_LOSS, f"Failed to parse SavedModel {pb}: {e}") from e
    elif os.path.exists(pbtxt):
        with open(pbtxt) as f:
            text_format.Parse(f.read(), model)
    else:
        raise ServingError(Code.NOT_FOUND,
                           f"Could not find SavedModel .pb or .pbtxt at supplied export "
                           f"directory path: {path}")
    for meta_graph in model.meta_graphs:
        if set(meta_graph.meta_info_def.tags) == {SERVE_TAG}:
            return meta_graph
    raise ServingError(Code.NOT_FOUND,
                       f"Could not find meta graph def matching supplied tags: {{ {SERVE_TAG} }}. "
                       f"To inspect available tag-sets in the SavedModel, please use the "
                       f"SavedModel CLI: `saved_model_cli`")


def error_from_tf(e: Exception) -> ServingError:
    """A TensorFlow exception as a ServingError, keeping TensorFlow's code; the message loses
    the Python stack and file paths TensorFlow attaches (they are ours, not the client's)."""
    if isinstance(e, ServingError):
        return e
    if isinstance(e, tf.errors.OpError):
        return ServingError(Code(e.error_code), public_message(e.message))
    return ServingError(Code.INVALID_ARGUMENT, public_message(str(e)))


class Servable:
    """A SavedModel version loaded with `tf.saved_model.load`."""

    def __init__(self, name: str, version: int, path: str) -> None:
        self.name = name
        self.version = version
        self.path = path
        self.meta_graph = read_meta_graph(path)
        self.signature_defs: Mapping[str, meta_graph_pb2.SignatureDef] = self.meta_graph.signature_def
        try:
            self._model = tf.saved_model.load(path, tags=[SERVE_TAG])
        except Exception as e:  # noqa: BLE001 - any load failure becomes the version's status
            raise error_from_tf(e) from e
        self._functions = dict(self._model.signatures)

    def run(self, signature_name: str, inputs: Mapping[str, np.ndarray],
            output_keys: Sequence[str] | None = None) -> dict[str, np.ndarray]:
        """Runs a signature on numpy inputs keyed by input alias; returns outputs by alias."""
        signature = self.signature_defs[signature_name]
        function = self._functions.get(signature_name)
        if function is None:
            raise ServingError(Code.FAILED_PRECONDITION,
                               f"Serving signature key \"{signature_name}\" is not runnable.")
        feeds = {}
        for index, (alias, array) in enumerate(sorted(inputs.items())):
            expected = signature.inputs[alias].dtype
            got = tf.as_dtype(array.dtype if array.dtype != object else tf.string)
            if got.as_datatype_enum != expected:
                raise ServingError(Code.INVALID_ARGUMENT,
                                   f"Expects arg[{index}] to be {dtype_string(expected)} but "
                                   f"{dtype_string(got.as_datatype_enum)} is provided")
            feeds[alias] = tf.constant(array, dtype=got)
        try:
            outputs = function(**feeds)
        except Exception as e:  # noqa: BLE001 - TensorFlow raises many types for bad inputs
            raise error_from_tf(e) from e
        keys = output_keys or list(signature.outputs)
        return {key: outputs[key].numpy() for key in keys}
