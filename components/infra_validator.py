"""TFX's InfraValidator, on a model server started as a local process (no Docker, no Kubernetes).

TFX 1.16's InfraValidator executor knows two serving platforms, ``local_docker`` and ``kubernetes``
(``ServingSpec.serving_platform``), and raises for anything else. This pipeline runs where neither
exists, so :class:`Executor` subclasses TFX's executor and adds a third platform, *a local process*:

- the ``ServingSpec`` keeps TFX's ``tensorflow_serving`` binary (its ``tags`` name the release the
  model must load in) and leaves ``serving_platform`` **unset**; unset means "a local process" here
  (a ``local_docker`` or ``kubernetes`` platform still goes to TFX's own runners);
- :class:`LocalProcessRunner` starts the real ``tensorflow_model_server`` when it is on PATH, else
  ``mnist-tfx serve`` (this repo's TF Serving-compatible server, same flags), on free loopback
  ports, on the copy of the candidate TFX makes under ``<tmp>/<model_name>/<version>``;
- everything else is TFX's: the request builder (real eval examples through the signatures clients
  use), ``ValidationSpec``'s load deadline and tries, ``make_warmup`` (the validated copy with
  ``assets.extra/tf_serving_warmup_requests``, which the Pusher then pushes), INFRA_(NOT_)BLESSED.

TFX's request builder feeds only the tf.Example signatures (``predict_examples``, ``classify``); the
same eval examples, decoded, are also sent to the signatures clients call (``serving_default`` on
pixels, ``predict_image_bytes`` on PNGs), so the warmup file warms what real traffic runs.

TFX's client only checks that each RPC returned. :class:`CheckingClient` also checks every answer is
well-formed (one row per example, finite scores, probabilities that sum to one) and that REST's
``:predict``/``:classify`` give the same answer as gRPC. A candidate whose signatures the request
builder cannot use is *not blessed* (TFX would fail the run instead), with the reason recorded.

The InfraBlessing artifact records, as custom properties, ``serving_binary``, ``load_seconds``
(start of the server to the model AVAILABLE) and, when not blessed, ``reason``.
"""

from __future__ import annotations

import base64
import json
import math
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import grpc
from absl import logging
from tensorflow_serving.apis import classification_pb2, predict_pb2
from tensorflow_serving.apis.model_pb2 import ModelSpec
from tfx import types
from tfx.components import InfraValidator
from tfx.components.infra_validator import error_types, request_builder, serving_bins
from tfx.components.infra_validator import executor as infra_executor
from tfx.components.infra_validator.model_server_clients import tensorflow_serving_client
from tfx.components.infra_validator.model_server_runners import base_runner
from tfx.dsl.components.base import executor_spec
from tfx.dsl.io import fileio
from tfx.proto import infra_validator_pb2

from components import features
from components.infra_blessing import (
    LOAD_SECONDS_PROPERTY,
    REASON_FILENAME,
    REASON_PROPERTY,
    SERVING_BINARY_PROPERTY,
)

TF_MODEL_SERVER = "tensorflow_model_server"  # TF Serving's binary, used when on PATH
LOCAL_SERVE = "mnist-tfx serve"  # this repo's server, otherwise
LOOPBACK = "127.0.0.1"
STOP_GRACE_S = 10.0  # SIGTERM, then SIGKILL after this long
LOG_TAIL_CHARS = 20_000  # how much of the server's log a failed validation shows
PROBABILITY_SUM_TOLERANCE = 1e-3
REST_TIMEOUT_S = 30.0


class MalformedAnswerError(ValueError):
    """A model server failed a request, or answered not with what a client of the signature relies on."""


def serving_command() -> list[str]:
    """``tensorflow_model_server`` if on PATH, else this environment's ``mnist-tfx serve``."""
    real = shutil.which(TF_MODEL_SERVER)
    if real:
        return [real]
    local = Path(sys.executable).parent / "mnist-tfx"
    return [str(local), "serve"] if local.exists() else [sys.executable, "-m", "cli.main", "serve"]


def describe(command: list[str]) -> str:
    """The serving binary's name as the report shows it."""
    return TF_MODEL_SERVER if Path(command[0]).name == TF_MODEL_SERVER else LOCAL_SERVE


def free_port() -> int:
    """A port free on loopback now (the server binds it a moment later; a clash fails one try)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((LOOPBACK, 0))
        return probe.getsockname()[1]


class LocalProcessRunner(base_runner.BaseModelServerRunner):
    """Runs the serving binary as a child process on ``<base>/<model_name>/<version>``."""

    def __init__(self, model_path: str, model_name: str, command: list[str] | None = None):
        self._model_base_path = os.path.dirname(model_path)  # <base>/<model_name>, as TF Serving's image passes it
        self._model_name = model_name
        self._command = command or serving_command()
        self._grpc_port = self._rest_port = 0
        self._process: subprocess.Popen | None = None
        self._log_dir = tempfile.mkdtemp(prefix="infra-validator-")
        self._log_path = os.path.join(self._log_dir, "model_server.log")

    def __repr__(self) -> str:
        return f"LocalProcessRunner({describe(self._command)}, grpc {self._grpc_port}, rest {self._rest_port})"

    @property
    def serving_binary(self) -> str:
        return describe(self._command)

    @property
    def rest_endpoint(self) -> str:
        return f"http://{LOOPBACK}:{self._rest_port}"

    def GetEndpoint(self) -> str:
        assert self._process is not None, "the model server was not started"
        return f"{LOOPBACK}:{self._grpc_port}"

    def Start(self) -> None:
        assert self._process is None, "Start() runs once"
        self._grpc_port, self._rest_port = free_port(), free_port()
        argv = [
            *self._command,
            f"--port={self._grpc_port}",
            f"--rest_api_port={self._rest_port}",
            f"--model_name={self._model_name}",
            f"--model_base_path={self._model_base_path}",
        ]
        logging.info("Starting the model server: %s", " ".join(argv))
        with open(self._log_path, "wb") as log:
            self._process = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)

    def WaitUntilRunning(self, deadline: float) -> None:
        """Until the gRPC port accepts connections; the process ending first is a failure."""
        assert self._process is not None, "the model server was not started"
        while time.time() < deadline:
            if self._process.poll() is not None:
                raise error_types.JobAborted(f"model server exited with code {self._process.returncode}")
            try:
                with socket.create_connection((LOOPBACK, self._grpc_port), timeout=1.0):
                    return
            except OSError:
                time.sleep(0.2)
        raise error_types.DeadlineExceeded(f"model server not listening on {self.GetEndpoint()} by the deadline")

    def Stop(self) -> None:
        """Stops the server (SIGTERM, then SIGKILL) and removes its log (GetLogs ran before, on failure)."""
        if self._process is not None and self._process.poll() is None:
            self._process.terminate()
            try:
                self._process.wait(STOP_GRACE_S)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
        shutil.rmtree(self._log_dir, ignore_errors=True)

    def GetLogs(self) -> str | None:
        try:
            with open(self._log_path, errors="replace") as log:
                return log.read()[-LOG_TAIL_CHARS:] or None
        except OSError:
            return None


def _tensor_values(tensor: Any) -> list:
    import tensorflow as tf

    return tf.make_ndarray(tensor).reshape(-1).tolist()


def check_predict(request: predict_pb2.PredictRequest, response: predict_pb2.PredictResponse) -> None:
    """Every output has one row per input example; floats are finite; probabilities sum to one."""
    import tensorflow as tf

    (inputs,) = request.inputs.values()
    batch = inputs.tensor_shape.dim[0].size
    if not response.outputs:
        raise MalformedAnswerError(f"Predict on {request.model_spec.signature_name!r} returned no outputs")
    for name, tensor in response.outputs.items():
        array = tf.make_ndarray(tensor)
        if array.ndim == 0 or array.shape[0] != batch:
            raise MalformedAnswerError(f"output {name!r} has shape {array.shape}, expected {batch} rows")
        if array.dtype.kind == "f" and not all(math.isfinite(v) for v in array.reshape(-1).tolist()):
            raise MalformedAnswerError(f"output {name!r} holds non-finite values")
        if name == features.OUTPUT_PROBABILITIES:
            if array.shape[1:] != (features.NUM_CLASSES,):
                raise MalformedAnswerError(
                    f"{name!r} has shape {array.shape}, expected [{batch}, {features.NUM_CLASSES}]"
                )
            if any(abs(row.sum() - 1.0) > PROBABILITY_SUM_TOLERANCE for row in array):
                raise MalformedAnswerError(f"{name!r} rows do not sum to 1")


def check_classify(
    request: classification_pb2.ClassificationRequest, response: classification_pb2.ClassificationResponse
) -> None:
    """One classification per example, each with every class and a finite score."""
    batch = len(request.input.example_list.examples)
    classifications = response.result.classifications
    if len(classifications) != batch:
        raise MalformedAnswerError(f"Classify returned {len(classifications)} results for {batch} examples")
    for classification in classifications:
        if len(classification.classes) != features.NUM_CLASSES:
            raise MalformedAnswerError(
                f"a result has {len(classification.classes)} classes, expected {features.NUM_CLASSES}"
            )
        if not all(math.isfinite(c.score) for c in classification.classes):
            raise MalformedAnswerError("a result holds a non-finite score")


def _post(url: str, body: dict) -> dict:
    request = urllib.request.Request(url, json.dumps(body).encode(), {"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=REST_TIMEOUT_S) as answer:
            return json.loads(answer.read())
    except urllib.error.HTTPError as err:
        raise MalformedAnswerError(f"REST {url} answered {err.code}: {err.read()[:500]!r}") from err


def _close(left: list[float], right: list[float], what: str) -> None:
    if len(left) != len(right) or any(abs(a - b) > 1e-5 for a, b in zip(left, right)):
        raise MalformedAnswerError(f"REST and gRPC disagree on {what}")


def _request_examples(request: Any) -> list[Any]:
    """The tf.Examples a request builder request carries (one per row)."""
    import tensorflow as tf

    if isinstance(request, classification_pb2.ClassificationRequest):
        return list(request.input.example_list.examples)
    (tensor,) = request.inputs.values()
    return [tf.train.Example.FromString(s) for s in tf.make_ndarray(tensor).reshape(-1).tolist()]


def client_signature_requests(built: list, model_name: str) -> list[predict_pb2.PredictRequest]:
    """PredictRequests for CLIENT_SIGNATURES from the eval examples in the request builder's requests.

    The request builder feeds only tf.Example signatures, but clients call ``serving_default``
    (pixels) and ``predict_image_bytes`` (PNG): warmup records for those are what warm a new version
    for its real traffic. Each built request gives one request per signature with the same rows; the
    examples come from the first signature's requests (every signature got the same examples).
    """
    import numpy as np
    import tensorflow as tf

    if not built:
        return []
    first_signature = built[0].model_spec.signature_name
    requests = []
    for source in (r for r in built if r.model_spec.signature_name == first_signature):
        examples = _request_examples(source)
        pixels = np.array(
            [e.features.feature[features.IMAGE_KEY].int64_list.value for e in examples], dtype=features.PIXELS_DTYPE
        ).reshape((len(examples), *features.PIXELS_SHAPE))
        pngs = [tf.io.encode_png(tf.constant(image.astype(np.uint8)[..., np.newaxis])).numpy() for image in pixels]
        for signature, name, value in (
            (features.SIGNATURE_PIXELS, features.INPUT_IMAGES, pixels),
            (features.SIGNATURE_IMAGE_BYTES, features.INPUT_IMAGE_BYTES, np.array(pngs, dtype=object)),
        ):
            request = predict_pb2.PredictRequest(model_spec=ModelSpec(name=model_name, signature_name=signature))
            request.inputs[name].CopyFrom(tf.make_tensor_proto(value))
            requests.append(request)
    return requests


class CheckingClient(tensorflow_serving_client.TensorFlowServingClient):
    """TFX's gRPC client, plus: each answer well-formed, and REST answering the same."""

    def __init__(self, endpoint: str, model_name: str, rest_endpoint: str | None):
        super().__init__(endpoint=endpoint, model_name=model_name)
        self._rest = f"{rest_endpoint}/v1/models/{model_name}" if rest_endpoint else None

    def _SendRequest(self, request: Any) -> None:
        """Sends one request; a failure names the signature and what was wrong (TFX logs the request)."""
        try:
            self._send_and_check(request)
        except grpc.RpcError as err:
            raise MalformedAnswerError(
                f"gRPC {type(request).__name__} on signature {request.model_spec.signature_name!r}: "
                f"{err.code().name}: {err.details()}"
            ) from None
        except MalformedAnswerError as err:
            raise MalformedAnswerError(f"signature {request.model_spec.signature_name!r}: {err}") from None

    def _send_and_check(self, request: Any) -> None:
        if isinstance(request, predict_pb2.PredictRequest):
            response = self._prediction_service.Predict(request)
            check_predict(request, response)
            if self._rest:
                self._check_rest_predict(request, response)
        elif isinstance(request, classification_pb2.ClassificationRequest):
            response = self._prediction_service.Classify(request)
            check_classify(request, response)
            if self._rest:
                self._check_rest_classify(request, response)
        else:
            super()._SendRequest(request)

    def _check_rest_predict(self, request: predict_pb2.PredictRequest, response: predict_pb2.PredictResponse) -> None:
        import tensorflow as tf

        ((name, tensor),) = request.inputs.items()
        array = tf.make_ndarray(tensor)
        if array.dtype == object:  # strings: TF Serving's REST takes bytes as {"b64": ...}
            values = [{"b64": base64.b64encode(s).decode()} for s in array.reshape(-1).tolist()]
        else:
            values = array.tolist()
        body = {"signature_name": request.model_spec.signature_name, "inputs": {name: values}}
        outputs = _post(f"{self._rest}:predict", body)["outputs"]
        for key, grpc_tensor in response.outputs.items():
            rest = outputs[key] if isinstance(outputs, dict) else outputs
            _close(_flatten(rest), [float(v) for v in _tensor_values(grpc_tensor)], f"output {key!r}")

    def _check_rest_classify(
        self, request: classification_pb2.ClassificationRequest, response: classification_pb2.ClassificationResponse
    ) -> None:
        body = {
            "signature_name": request.model_spec.signature_name,
            "examples": [_example_json(e) for e in request.input.example_list.examples],
        }
        rest = _post(f"{self._rest}:classify", body)["results"]
        grpc_scores = [c.score for r in response.result.classifications for c in r.classes]
        _close([float(score) for result in rest for _, score in result], grpc_scores, "classify scores")


def _example_json(example: Any) -> dict:
    """A tf.Example as TF Serving's REST ``examples`` entry: feature name → value list (bytes as b64)."""
    entry = {}
    for name, feature in example.features.feature.items():
        kind = feature.WhichOneof("kind")
        values = list(getattr(feature, kind).value) if kind else []
        entry[name] = [{"b64": base64.b64encode(v).decode()} if isinstance(v, bytes) else v for v in values]
    return entry


def _flatten(value: Any) -> list[float]:
    if isinstance(value, list):
        return [v for item in value for v in _flatten(item)]
    return [float(value)]


class Executor(infra_executor.Executor):
    """TFX's InfraValidator executor; an unset ``serving_platform`` means :class:`LocalProcessRunner`.

    Mirrors TFX 1.16's ``Executor._Do``/``_ValidateOnce`` (the runner is made by a module function
    there, with no hook), adding the local runner, the answer checks and the recorded facts.
    """

    def _Do(
        self,
        model: types.Artifact,
        examples: types.Artifact | None,
        blessing: types.Artifact,
        serving_spec: infra_validator_pb2.ServingSpec,
        validation_spec: infra_validator_pb2.ValidationSpec,
        request_spec: infra_validator_pb2.RequestSpec | None,
    ) -> None:
        if serving_spec.WhichOneof("serving_platform") is not None:
            super()._Do(model, examples, blessing, serving_spec, validation_spec, request_spec)
            return
        self._facts: dict[str, Any] = {"reason": ""}
        blessing.set_string_custom_property(SERVING_BINARY_PROPERTY, describe(serving_command()))
        requests = []
        if examples and request_spec:
            try:
                requests = request_builder.build_requests(
                    model_name=serving_spec.model_name, model=model, examples=examples, request_spec=request_spec
                )
            except (ValueError, KeyError, NotImplementedError) as err:  # the model's signatures, not the infra
                self._not_blessed(blessing, f"no requests can be built for the model's signatures: {err}")
                return
            requests += client_signature_requests(requests, serving_spec.model_name)
        model_path = self._PrepareModelPath(model, serving_spec)
        all_passed = True
        for serving_binary in serving_bins.parse_serving_binaries(serving_spec):
            all_passed &= self._ValidateWithRetry(
                model_path=model_path,
                serving_binary=serving_binary,
                serving_spec=serving_spec,
                validation_spec=validation_spec,
                requests=requests,
            )
        if not all_passed:
            self._not_blessed(blessing, self._facts["reason"] or "validation failed")
            return
        blessing.set_float_custom_property(LOAD_SECONDS_PROPERTY, self._facts[LOAD_SECONDS_PROPERTY])
        infra_executor._mark_blessed(blessing)
        if requests and request_spec.make_warmup:
            self._CreateWarmupModel(blessing, model_path, warmup_requests=requests)

    def _not_blessed(self, blessing: types.Artifact, reason: str) -> None:
        logging.error("Infra validation failed: %s", reason)
        blessing.set_string_custom_property(REASON_PROPERTY, reason)
        infra_executor._mark_not_blessed(blessing)
        with fileio.open(f"{blessing.uri}/{REASON_FILENAME}", "w") as out:  # the URI may be gs://
            out.write(reason + "\n")

    def _ValidateOnce(
        self,
        model_path: str,
        serving_binary: serving_bins.ServingBinary,
        serving_spec: infra_validator_pb2.ServingSpec,
        validation_spec: infra_validator_pb2.ValidationSpec,
        requests: list,
    ) -> None:
        if serving_spec.WhichOneof("serving_platform") is not None:
            super()._ValidateOnce(model_path, serving_binary, serving_spec, validation_spec, requests)
            return
        started = time.time()
        deadline = started + validation_spec.max_loading_time_seconds
        runner = LocalProcessRunner(model_path, serving_spec.model_name)
        try:
            logging.info("Starting %r.", runner)
            runner.Start()
            runner.WaitUntilRunning(deadline)
            client = CheckingClient(runner.GetEndpoint(), serving_spec.model_name, runner.rest_endpoint)
            client.WaitUntilModelLoaded(deadline, polling_interval_sec=infra_executor._DEFAULT_POLLING_INTERVAL_SEC)
            self._facts[LOAD_SECONDS_PROPERTY] = time.time() - started
            if requests:
                client.SendRequests(requests)
        except Exception as err:
            cause = err.__cause__ or err  # TFX wraps a failed request, quoting all of it
            self._facts["reason"] = f"{runner.serving_binary}: {type(cause).__name__}: {cause}"[:2000]
            logging.exception("Error occurred during infra validation.")
            logging.error("BEGIN_MODEL_SERVER_LOG\n%s\nEND_MODEL_SERVER_LOG", runner.GetLogs() or "(none)")
            raise
        finally:
            logging.info("Stopping %r.", runner)
            runner.Stop()


# What the pipeline's InfraValidator checks, defined once.
LOAD_DEADLINE_S = 300  # ValidationSpec.max_loading_time_seconds: server start to model AVAILABLE
NUM_TRIES = 2  # a port taken between probe and bind fails one try, not the run
NUM_EXAMPLES = (
    10  # eval examples per signature: the requests, and the warmup records (4 × 10, TF Serving replays ≤ 1000)
)
# The signatures the request builder can feed eval tf.Examples to (pixels and image bytes take other inputs).
REQUEST_SIGNATURES = (features.SIGNATURE_EXAMPLES, features.SIGNATURE_CLASSIFY)
# The signatures clients call, fed the same eval examples decoded (client_signature_requests).
CLIENT_SIGNATURES = (features.SIGNATURE_PIXELS, features.SIGNATURE_IMAGE_BYTES)
TF_SERVING_TAG = "latest"  # the TF Serving release the model must load in (the image tag on Docker)


class LocalInfraValidator(InfraValidator):
    """TFX's InfraValidator with :class:`Executor`; same inputs, outputs and specs."""

    EXECUTOR_SPEC = executor_spec.ExecutorClassSpec(Executor)


def serving_spec() -> infra_validator_pb2.ServingSpec:
    """TF Serving as the binary; ``serving_platform`` unset: a local process (see the module docstring)."""
    return infra_validator_pb2.ServingSpec(
        tensorflow_serving=infra_validator_pb2.TensorFlowServing(tags=[TF_SERVING_TAG]),
        model_name=features.MODEL_NAME,
    )


def validation_spec() -> infra_validator_pb2.ValidationSpec:
    return infra_validator_pb2.ValidationSpec(max_loading_time_seconds=LOAD_DEADLINE_S, num_tries=NUM_TRIES)


def request_spec() -> infra_validator_pb2.RequestSpec:
    """NUM_EXAMPLES eval examples through each of REQUEST_SIGNATURES (and, decoded, CLIENT_SIGNATURES);
    the requests become warmup records."""
    return infra_validator_pb2.RequestSpec(
        tensorflow_serving=infra_validator_pb2.TensorFlowServingRequestSpec(signature_names=list(REQUEST_SIGNATURES)),
        split_name=features.EVAL_SPLIT,
        num_examples=NUM_EXAMPLES,
        make_warmup=True,
    )


def local_infra_validator(model: Any, examples: Any) -> LocalInfraValidator:
    """The pipeline's serving check: load in a local model server, query REST and gRPC, make warmup."""
    return LocalInfraValidator(
        model=model,
        examples=examples,
        serving_spec=serving_spec(),
        validation_spec=validation_spec(),
        request_spec=request_spec(),
    ).with_id("InfraValidator")


def validate_once(
    model: types.Artifact,
    examples: types.Artifact,
    blessing_uri: str,
    tmp_dir: str,
    num_examples: int = NUM_EXAMPLES,
    num_tries: int | None = None,
) -> types.Artifact:
    """Runs this executor outside a pipeline, with the pipeline's specs (for tests and benchmarks)."""
    from tfx.types import standard_artifacts, standard_component_specs
    from tfx.utils import proto_utils

    blessing = standard_artifacts.InfraBlessing()
    blessing.uri = blessing_uri
    os.makedirs(blessing_uri, exist_ok=True)
    validation = validation_spec()
    if num_tries is not None:
        validation.num_tries = num_tries
    request = request_spec()
    request.num_examples = num_examples
    Executor(Executor.Context(tmp_dir=tmp_dir, unique_id="1")).Do(
        {standard_component_specs.MODEL_KEY: [model], standard_component_specs.EXAMPLES_KEY: [examples]},
        {standard_component_specs.BLESSING_KEY: [blessing]},
        {
            standard_component_specs.SERVING_SPEC_KEY: proto_utils.proto_to_json(serving_spec()),
            standard_component_specs.VALIDATION_SPEC_KEY: proto_utils.proto_to_json(validation),
            standard_component_specs.REQUEST_SPEC_KEY: proto_utils.proto_to_json(request),
        },
    )
    return blessing
