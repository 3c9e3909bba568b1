"""SavedModel warmup: replay `assets.extra/tf_serving_warmup_requests` before a version serves.

As TF Serving's saved_model_warmup_util.cc: the file is a TFRecord of PredictionLog protos
(predict, classify, regress or multi-inference logs); each record runs
`num_request_iterations` times on the version being loaded (through batching when it is on),
at most 1000 records are allowed, and any failure fails the load with its reason. The model
name in a logged request is ignored: the record runs on the loading version. A missing file
is fine (warmup is optional).
"""

from __future__ import annotations

import logging
import os
import time
from typing import Callable

import tensorflow as tf
from google.protobuf.message import DecodeError
from tensorflow_serving.apis import prediction_log_pb2

from serving.core import ServingCore
from serving.metrics import Metrics
from serving.model_config import path_exists
from serving.servable import Servable, error_from_tf
from serving.status import Code, ServingError

log = logging.getLogger(__name__)

ASSETS_EXTRA_DIRECTORY = "assets.extra"
WARMUP_REQUESTS_FILENAME = "tf_serving_warmup_requests"
MAX_WARMUP_RECORDS = 1000  # WarmupConsts::kMaxNumRecords
DEFAULT_REQUEST_ITERATIONS = 1


def warmup_requests_path(version_path: str) -> str:
    return os.path.join(version_path, ASSETS_EXTRA_DIRECTORY, WARMUP_REQUESTS_FILENAME)


def _executor(
    core: ServingCore, servable: Servable, record: prediction_log_pb2.PredictionLog
) -> Callable[[], object] | None:
    """The call that replays one logged request on `servable` (None: a record with no request)."""
    kind = record.WhichOneof("log_type")
    if kind == "predict_log":
        return lambda: core.predict(record.predict_log.request, servable=servable)
    if kind == "classify_log":
        return lambda: core.classify(record.classify_log.request, servable=servable)
    if kind == "regress_log":
        return lambda: core.regress(record.regress_log.request, servable=servable)
    if kind == "multi_inference_log":
        return lambda: core.multi_inference(record.multi_inference_log.request, servable=servable)
    if kind is None:
        return None
    number = prediction_log_pb2.PredictionLog.DESCRIPTOR.fields_by_name[kind].number
    raise ServingError(Code.UNIMPLEMENTED, f"Unsupported log_type for warmup: {number}")


def run_warmup(
    core: ServingCore,
    servable: Servable,
    num_request_iterations: int = DEFAULT_REQUEST_ITERATIONS,
    metrics: Metrics | None = None,
) -> int:
    """Replays the version's warmup records; returns how many ran. Raises ServingError (the
    version's load error) when a record cannot be read or fails."""
    path = warmup_requests_path(servable.path)
    if not path_exists(path):  # a URI version (gs://…) is read through tf.io.gfile, as by TF Serving
        log.info("No warmup data file found at %s", path)
        return 0
    iterations = num_request_iterations if num_request_iterations > 0 else DEFAULT_REQUEST_ITERATIONS
    log.info("Starting to read warmup data for model at %s (%d iteration(s) per record)", path, iterations)
    start = time.perf_counter()
    records = 0
    error: ServingError | None = None
    try:
        for raw in tf.data.TFRecordDataset(path).as_numpy_iterator():
            try:
                record = prediction_log_pb2.PredictionLog.FromString(raw)
            except DecodeError as e:
                raise ServingError(
                    Code.INVALID_ARGUMENT, f"Failed to parse warmup record: {raw[:64]!r} from {path}"
                ) from e
            replay = _executor(core, servable, record)
            for _ in range(iterations if replay else 0):
                replay()
            records += 1
            if records > MAX_WARMUP_RECORDS:
                raise ServingError(
                    Code.INVALID_ARGUMENT,
                    f"Number of warmup records exceeds the maximum " f"({MAX_WARMUP_RECORDS}) at {path}",
                )
    except tf.errors.DataLossError as e:
        error = ServingError(Code.DATA_LOSS, f"{e.message}. Please verify your warmup data is in " f"TFRecord format.")
    except ServingError as e:
        error = e
    except Exception as e:  # noqa: BLE001 - e.g. unreadable file: the load fails with the reason
        error = error_from_tf(e)
    seconds = time.perf_counter() - start
    if metrics is not None:
        metrics.observe_warmup(servable.path, error.code.name if error else Code.OK.name, seconds, records)
    if error is not None:
        raise ServingError(
            error.code,
            f"Warmup of {servable.name} version {servable.version} failed "
            f"after {records} record(s): {error.message}",
        )
    log.info(
        "Finished reading warmup data for model at %s. Number of warmup records read: %d. "
        "Elapsed time (microseconds): %d.",
        path,
        records,
        seconds * 1e6,
    )
    return records
