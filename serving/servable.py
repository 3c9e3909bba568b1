"""One loaded model version: a TensorFlow session holding its SavedModel, run by tensor name.

As TF Serving's SavedModelBundle: each version gets its own graph and `tf.compat.v1` Session,
loaded with `tf.compat.v1.saved_model.loader.load` for the configured tag set. This loads TF1
graphs (reference variables, `AssignAdd` counters, placeholders of any rank) and TF2
`tf.saved_model.save` exports alike, and stateful models keep their state across requests.
A signature runs through a session callable made once per (feed names, fetch names) set and
cached: the callable goes straight to the C++ session (no Python feed/shape checks), so request
shapes are not re-checked against the signature, exactly like TF Serving.
"""

from __future__ import annotations

import os
import threading
import time
import warnings
from typing import IO, Callable, Iterable, Mapping, Sequence

import numpy as np
import tensorflow as tf
from google.protobuf import text_format
from google.protobuf.message import DecodeError
from tensorflow.core.protobuf import config_pb2, meta_graph_pb2, saved_model_pb2, trackable_object_graph_pb2

from serving.batching import BatchingParameters
from serving.json_tensor import dtype_string
from serving.model_config import is_uri, path_exists
from serving.request_checks import public_message
from serving.status import Code, ServingError

SERVE_TAG = "serve"
DEFAULT_TAGS = (SERVE_TAG,)

# Session callables kept per version: one per (feeds, fetches) set, whose names are sorted so that
# a client's output_filter order cannot make new ones; past this many (inputs with defaults give
# subsets), a callable is made for the request and dropped after it.
MAX_CACHED_CALLABLES = 256

# (signature, inputs) -> outputs; the batcher wraps this when batching is enabled.
RunFn = Callable[[str, Mapping[str, np.ndarray]], dict[str, np.ndarray]]


def tags_text(tags: Iterable[str]) -> str:
    """A tag set as TF's C++ loader writes it in errors: `{ serve gpu }`."""
    return "{ " + " ".join(tags) + " }"


def _open(path: str, mode: str) -> IO:
    """``open`` for a local path; ``tf.io.gfile.GFile`` for a URI (gs://…), whose loader TF Serving uses too."""
    return tf.io.gfile.GFile(path, mode) if is_uri(path) else open(path, mode)  # noqa: SIM115 - the caller closes it


def read_meta_graph(path: str, tags: Sequence[str] = DEFAULT_TAGS) -> meta_graph_pb2.MetaGraphDef:
    """The MetaGraphDef tagged exactly `tags` of the SavedModel in `path` (errors as TF Serving's)."""
    model = saved_model_pb2.SavedModel()
    pb, pbtxt = os.path.join(path, "saved_model.pb"), os.path.join(path, "saved_model.pbtxt")
    if path_exists(pb):
        with _open(pb, "rb") as f, warnings.catch_warnings():
            warnings.simplefilter("error", RuntimeWarning)  # protobuf warns on truncated data
            try:
                model.ParseFromString(f.read())
            except (DecodeError, RuntimeWarning) as e:
                raise ServingError(Code.DATA_LOSS, f"Failed to parse SavedModel {pb}: {e}") from e
    elif path_exists(pbtxt):
        with _open(pbtxt, "r") as f:
            text_format.Parse(f.read(), model)
    else:
        raise ServingError(
            Code.NOT_FOUND, f"Could not find SavedModel .pb or .pbtxt at supplied export " f"directory path: {path}"
        )
    for meta_graph in model.meta_graphs:
        if set(meta_graph.meta_info_def.tags) == set(tags):
            return meta_graph
    raise ServingError(
        Code.NOT_FOUND,
        f"Could not find meta graph def matching supplied tags: {tags_text(tags)}. "
        f"To inspect available tag-sets in the SavedModel, please use the "
        f"SavedModel CLI: `saved_model_cli`",
    )


def restore_variables_by_name(session: tf.compat.v1.Session, path: str) -> int:
    """Restores resource variables the SavedModel's restore op left uninitialized, by name, from
    its checkpoint; returns how many.

    A fallback for other people's exports: a Keras 3 model tracked by a module saved with
    `tf.saved_model.save` has signature functions that capture its variables under their Keras
    names (`Tiny/dense/bias`) while the checkpoint's restore op fills separate copies
    (`Variable_N`), so a plain TF1-style load (TF Serving's too) answers `Could not find variable
    Tiny/dense/bias`. The checkpoint's object graph names every saved variable (`full_name`),
    which is enough to fill the captured ones. Models that load completely (the pushed MNIST
    model, whose export tracks the underlying tf.Variables) are untouched: nothing is run.
    """
    graph = session.graph
    handles = [op for op in graph.get_operations() if op.type == "VarHandleOp"]
    if not handles:
        return 0
    initialized = session.run([tf.raw_ops.VarIsInitializedOp(resource=op.outputs[0]) for op in handles])
    missing = [op for op, ok in zip(handles, initialized) if not ok]
    if not missing:
        return 0
    prefix = os.path.join(path, "variables", "variables")
    try:
        objects = trackable_object_graph_pb2.TrackableObjectGraph.FromString(
            tf.train.load_checkpoint(prefix).get_tensor("_CHECKPOINTABLE_OBJECT_GRAPH")
        )
    except (tf.errors.OpError, ValueError):  # no checkpoint, or a TF1 one without an object graph
        return 0
    keys = {
        a.full_name: a.checkpoint_key for node in objects.nodes for a in node.attributes if a.name == "VARIABLE_VALUE"
    }
    found = [op for op in missing if op.get_attr("shared_name").decode() in keys]
    if not found:
        return 0
    values = tf.raw_ops.RestoreV2(
        prefix=prefix,
        tensor_names=[keys[op.get_attr("shared_name").decode()] for op in found],
        shape_and_slices=[""] * len(found),
        dtypes=[op.get_attr("dtype") for op in found],
    )
    session.run([tf.raw_ops.AssignVariableOp(resource=op.outputs[0], value=value) for op, value in zip(found, values)])
    return len(found)


def error_from_tf(e: Exception) -> ServingError:
    """A TensorFlow exception as a ServingError, keeping TensorFlow's code; the message loses
    the Python stack and file paths TensorFlow attaches (they are ours, not the client's)."""
    if isinstance(e, ServingError):
        return e
    if isinstance(e, tf.errors.OpError):
        return ServingError(Code(e.error_code), public_message(e.message))
    return ServingError(Code.INVALID_ARGUMENT, public_message(str(e)))


class Servable:
    """A SavedModel version loaded into its own session (TF Serving's SavedModelBundle).

    `batching` is the BatchingParameters this version's requests are batched with (None: not
    batched); the server sets it from `--batching_parameters_file` or the version's own
    `batching_params.pbtxt`.
    """

    def __init__(
        self,
        name: str,
        version: int,
        path: str,
        tags: Sequence[str] = DEFAULT_TAGS,
        session_config: config_pb2.ConfigProto | None = None,
        batching: BatchingParameters | None = None,
    ) -> None:
        self.name = name
        self.version = version
        self.path = path
        self.batching = batching
        read_meta_graph(path, tags)  # TF Serving's errors for a missing or unparsable model
        self._graph = tf.Graph()
        self._session = tf.compat.v1.Session(graph=self._graph, config=session_config)
        try:
            with self._graph.as_default(), warnings.catch_warnings():
                warnings.simplefilter("ignore")  # the v1 loader's deprecation notice
                self.meta_graph = tf.compat.v1.saved_model.loader.load(self._session, list(tags), path)
                restore_variables_by_name(self._session, path)
        except Exception as e:  # noqa: BLE001 - any load failure becomes the version's status
            self._session.close()
            raise error_from_tf(e) from e
        self._graph.finalize()  # nothing may add ops to a serving graph (they would leak per request)
        self.signature_defs: Mapping[str, meta_graph_pb2.SignatureDef] = self.meta_graph.signature_def
        self._callables: dict[tuple, Callable] = {}
        self._callables_lock = threading.Lock()
        # How long each signature's latest run took: the REST server runs a request on its event
        # loop (no thread hand-off) only where this is short.
        self.last_run_seconds: dict[str, float] = {}

    def _callable(self, feeds: tuple[str, ...], fetches: tuple[str, ...]) -> Callable:
        """The session callable for these tensor names, made on first use."""
        key = (feeds, fetches)
        function = self._callables.get(key)
        if function is None:
            with self._callables_lock:
                function = self._callables.get(key)
                if function is None:
                    options = config_pb2.CallableOptions(feed=feeds, fetch=fetches)
                    try:
                        function = self._session._make_callable_from_options(options)  # noqa: SLF001
                    except Exception as e:  # noqa: BLE001 - e.g. a signature naming a missing tensor
                        raise error_from_tf(e) from e
                    if len(self._callables) < MAX_CACHED_CALLABLES:
                        self._callables[key] = function
        return function

    def run(
        self, signature_name: str, inputs: Mapping[str, np.ndarray], output_keys: Sequence[str] | None = None
    ) -> dict[str, np.ndarray]:
        """Runs a signature on numpy inputs keyed by input alias; returns outputs by alias."""
        signature = self.signature_defs[signature_name]
        aliases = sorted(inputs)
        arrays = []
        for index, alias in enumerate(aliases):
            array = inputs[alias]
            expected = signature.inputs[alias].dtype
            got = tf.as_dtype(array.dtype if array.dtype != object else tf.string)
            if got.as_datatype_enum != expected:
                raise ServingError(
                    Code.INVALID_ARGUMENT,
                    f"Expects arg[{index}] to be {dtype_string(expected)} but "
                    f"{dtype_string(got.as_datatype_enum)} is provided",
                )
            arrays.append(array)
        keys = list(output_keys or signature.outputs)
        fetches = tuple(sorted({signature.outputs[k].name for k in keys}))
        function = self._callable(tuple(signature.inputs[a].name for a in aliases), fetches)
        started = time.perf_counter()
        try:
            values = dict(zip(fetches, function(*arrays)))
        except Exception as e:  # noqa: BLE001 - TensorFlow raises many types for bad inputs
            raise error_from_tf(e) from e
        self.last_run_seconds[signature_name] = time.perf_counter() - started
        return {key: np.asarray(values[signature.outputs[key].name]) for key in keys}

    def run_tensors(self, feeds: Mapping[str, np.ndarray], fetches: Sequence[str]) -> dict[str, np.ndarray]:
        """Runs the session on tensors by name (MultiInference's one shot over several signatures)."""
        names, fetch_names = sorted(feeds), tuple(sorted(set(fetches)))
        function = self._callable(tuple(names), fetch_names)
        try:
            values = function(*(feeds[n] for n in names))
        except Exception as e:  # noqa: BLE001 - TensorFlow raises many types for bad inputs
            raise error_from_tf(e) from e
        return {name: np.asarray(value) for name, value in zip(fetch_names, values)}

    def close(self) -> None:
        """Frees the session now (else when the last in-flight request drops its reference)."""
        self._session.close()
