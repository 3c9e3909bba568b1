"""The serving core: Predict, Classify, Regress, MultiInference, GetModelMetadata and
GetModelStatus on tensorflow_serving request/response protos.

REST and gRPC both end here, so they cannot drift. Semantics and error wording follow
TF Serving's predict_util.cc, classifier.cc, regressor.cc, multi_inference.cc,
get_model_metadata_impl.cc and get_model_status_impl.cc (with the signature method-name check
off, TF Serving's default). The inference calls take an optional servable so that warmup can
replay requests on a version before it is AVAILABLE.
"""

from __future__ import annotations

import asyncio
import dataclasses
from concurrent.futures import Executor
from typing import Mapping, Sequence

import numpy as np
import tensorflow as tf
from google.protobuf import text_format
from tensorflow.core.framework import types_pb2
from tensorflow.core.protobuf import meta_graph_pb2
from tensorflow_serving.apis import (
    classification_pb2,
    get_model_metadata_pb2,
    get_model_status_pb2,
    inference_pb2,
    input_pb2,
    model_pb2,
    predict_pb2,
    regression_pb2,
)

from serving.batching import Batcher
from serving.limits import Deadline, Limits, check_deadline
from serving.model_manager import ModelManager, VersionStatus
from serving.request_checks import (
    check_examples_cost,
    check_request_arrays,
    check_request_tensors,
    public_message,
)
from serving.servable import Servable
from serving.status import Code, ServingError, clip
from serving.tensor_proto import fill_proto, to_array

DEFAULT_SIGNATURE = "serving_default"
SIGNATURE_DEF_FIELD = "signature_def"
CLASSIFY_INPUTS, CLASSIFY_CLASSES, CLASSIFY_SCORES = "inputs", "classes", "scores"
REGRESS_INPUTS, REGRESS_OUTPUTS = "inputs", "outputs"
CLASSIFY_METHOD, REGRESS_METHOD = "tensorflow/serving/classify", "tensorflow/serving/regress"


def _set_model_spec(spec: model_pb2.ModelSpec, servable: Servable, signature: str) -> None:
    spec.name = servable.name
    spec.signature_name = signature
    spec.version.value = servable.version


def serialized_examples(request_input: input_pb2.Input, limits: Limits) -> np.ndarray:
    """The serialized tf.Examples of an Input; context features are merged into each, after
    checking that the merged examples stay within the request's byte and element caps."""
    kind = request_input.WhichOneof("kind")
    if kind == "example_list":
        check_examples_cost(request_input.example_list.examples, None, limits)
        examples = [e.SerializeToString() for e in request_input.example_list.examples]
    elif kind == "example_list_with_context":
        with_context = request_input.example_list_with_context
        check_examples_cost(with_context.examples, with_context.context, limits)
        context = with_context.context.SerializeToString()
        examples = [context + e.SerializeToString() for e in with_context.examples]
    else:
        examples = []
    if not examples:
        raise ServingError(Code.INVALID_ARGUMENT, "Input is empty.")
    return np.array(examples, dtype=object)


def _signature_debug(signature: meta_graph_pb2.SignatureDef) -> str:
    return text_format.MessageToString(signature)


@dataclasses.dataclass(frozen=True)
class PredictPlan:
    """A checked Predict, ready to run: the servable, signature, input arrays and output aliases."""

    servable: Servable
    signature: str
    inputs: Mapping[str, np.ndarray]
    output_keys: Sequence[str]

    def answered(self, spec: model_pb2.ModelSpec) -> None:
        """Fills the response's ModelSpec with the version and signature that answered."""
        _set_model_spec(spec, self.servable, self.signature)


def _batch_key(servable: Servable, signature: str, output_keys: Sequence[str]) -> tuple:
    """Requests batch together only on the same loaded version, signature and outputs."""
    return (servable.name, servable.version, id(servable), signature, tuple(output_keys))


class ServingCore:
    """Runs requests against the servables of a ModelManager."""

    def __init__(
        self,
        manager: ModelManager,
        batcher: Batcher | None = None,
        limits: Limits | None = None,
        tensor_content: bool = False,
    ) -> None:
        self.manager = manager
        self._batcher = batcher
        self.limits = limits or Limits()
        # --enable_serialization_as_tensor_content: Predict outputs as tensor_content, not typed fields.
        self.tensor_content = tensor_content

    # ------------------------------------------------------------ lookups

    def servable(self, spec: model_pb2.ModelSpec) -> Servable:
        """The servable a ModelSpec names (a version, a label, or the latest)."""
        if not spec.name:
            raise ServingError(Code.INVALID_ARGUMENT, "ModelSpec has no name specified.")
        choice = spec.WhichOneof("version_choice")
        return self.manager.get_servable(
            spec.name,
            version=spec.version.value if choice == "version" else None,
            label=spec.version_label if choice == "version_label" else None,
        )

    def signature_inputs(
        self, spec: model_pb2.ModelSpec, signature_name: str
    ) -> Mapping[str, meta_graph_pb2.TensorInfo]:
        """The input TensorInfos of a signature (the REST handler's GetInfoMap)."""
        servable = self.servable(spec)
        name = signature_name or DEFAULT_SIGNATURE
        if name not in servable.signature_defs:
            raise ServingError(
                Code.INVALID_ARGUMENT, f'Serving signature name: "{clip(name)}" not found in signature def'
            )
        return servable.signature_defs[name].inputs

    def _run(
        self,
        servable: Servable,
        signature: str,
        inputs: Mapping[str, np.ndarray],
        output_keys: Sequence[str],
        deadline: Deadline | None,
    ) -> dict[str, np.ndarray]:
        def run(batch: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
            return servable.run(signature, batch, output_keys)

        check_deadline(deadline)
        if self._batcher is None or servable.batching is None:
            outputs = run(inputs)
        else:
            outputs = self._batcher.run(_batch_key(servable, signature, output_keys), inputs, run, servable.batching)
        check_deadline(deadline)
        return outputs

    def batches(self, plan: PredictPlan) -> bool:
        """Whether this plan's servable runs its requests through the batcher."""
        return self._batcher is not None and plan.servable.batching is not None

    def run_plan(self, plan: PredictPlan, deadline: Deadline | None = None) -> dict[str, np.ndarray]:
        """Runs a checked predict on the calling thread (batched, if its servable is)."""
        return self._run(plan.servable, plan.signature, plan.inputs, plan.output_keys, deadline)

    def run_async(self, plan: PredictPlan, executor: Executor) -> asyncio.Future:
        """A checked predict as an asyncio Future of the running loop: batched requests wait on the
        loop (no thread parked per request), others run in `executor`."""

        def run(batch: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
            return plan.servable.run(plan.signature, batch, plan.output_keys)

        if not self.batches(plan):
            return asyncio.get_running_loop().run_in_executor(executor, run, plan.inputs)
        key = _batch_key(plan.servable, plan.signature, plan.output_keys)
        return self._batcher.submit_async(key, plan.inputs, run, executor, plan.servable.batching)

    # ------------------------------------------------------------- predict

    def predict(
        self, request: predict_pb2.PredictRequest, deadline: Deadline | None = None, servable: Servable | None = None
    ) -> predict_pb2.PredictResponse:
        response = predict_pb2.PredictResponse()
        for alias, array in self.predict_arrays(request, response.model_spec, deadline, servable).items():
            fill_proto(response.outputs[alias], array, self.tensor_content)
        return response

    def predict_arrays(
        self,
        request: predict_pb2.PredictRequest,
        response_spec: model_pb2.ModelSpec,
        deadline: Deadline | None = None,
        servable: Servable | None = None,
        arrays: Mapping[str, np.ndarray] | None = None,
    ) -> dict[str, np.ndarray]:
        """Predict with the outputs as arrays (REST writes them as JSON: no proto round trip);
        fills ``response_spec`` with the servable and signature that answered. ``arrays``, when
        given, are the inputs already as numpy (REST's fast path), used instead of
        ``request.inputs``."""
        plan = self.plan_predict(request, deadline, servable, arrays)
        outputs = self.run_plan(plan, deadline)
        plan.answered(response_spec)
        return outputs

    def plan_predict(
        self,
        request: predict_pb2.PredictRequest,
        deadline: Deadline | None = None,
        servable: Servable | None = None,
        arrays: Mapping[str, np.ndarray] | None = None,
    ) -> PredictPlan:
        """Every check of a Predict (TF Serving's order and wording) and its inputs as arrays,
        without running it."""
        servable = servable or self.servable(request.model_spec)
        name = request.model_spec.signature_name or DEFAULT_SIGNATURE
        if name not in servable.signature_defs:
            raise ServingError(Code.FAILED_PRECONDITION, f'Serving signature key "{clip(name)}" not found.')
        signature = servable.signature_defs[name]
        sent, wanted = set(request.inputs if arrays is None else arrays), set(signature.inputs)
        if len(sent) > len(wanted) or (len(sent) < len(wanted) and not signature.defaults):
            raise ServingError(
                Code.INVALID_ARGUMENT,
                f"input size does not match signature: {len(sent)}!={len(wanted)} "
                f"len({{{clip(','.join(sorted(sent)))}}}) != len({{{','.join(sorted(wanted))}}}). "
                f"Sent extra: {{{clip(','.join(sorted(sent - wanted)))}}}. "
                f"Missing but required: {{{','.join(sorted(wanted - sent))}}}.",
            )
        if arrays is None:
            check_request_tensors(request.inputs.items(), self.limits.max_request_elements)
        else:
            check_request_arrays(arrays.items(), self.limits.max_request_elements)
        check_deadline(deadline)
        inputs = {}
        for alias in request.inputs if arrays is None else arrays:
            if alias not in signature.inputs:
                raise ServingError(
                    Code.INVALID_ARGUMENT,
                    f"input tensor alias not found in signature: {clip(alias)}. Inputs "
                    f"expected to be in the set {{{','.join(sorted(wanted))}}}.",
                )
            if arrays is not None:
                inputs[alias] = arrays[alias]
                continue
            try:
                inputs[alias] = to_array(request.inputs[alias])
            except Exception as e:  # noqa: BLE001 - malformed TensorProto from a client
                raise ServingError(
                    Code.INVALID_ARGUMENT,
                    f"Unable to parse tensor proto for input {clip(alias)}: " f"{public_message(str(e))}",
                ) from e
        for alias in wanted - sent:  # only reached when the signature has defaults
            if alias not in signature.defaults:
                raise ServingError(
                    Code.INVALID_ARGUMENT, f"Missing input {alias} that has no default in the signature."
                )
            inputs[alias] = tf.make_ndarray(signature.defaults[alias])
        output_keys = list(request.output_filter) or sorted(signature.outputs)
        seen = set()
        for alias in request.output_filter:
            if alias not in signature.outputs:
                raise ServingError(
                    Code.INVALID_ARGUMENT,
                    f"output tensor alias not found in signature: {clip(alias)} Outputs "
                    f"expected to be in the set {{{','.join(sorted(signature.outputs))}}}.",
                )
            if alias in seen:
                raise ServingError(Code.INVALID_ARGUMENT, f"duplicate output tensor alias: {clip(alias)}")
            seen.add(alias)
        return PredictPlan(servable, name, inputs, output_keys)

    # ------------------------------------------------- classify / regress

    def _example_signature(
        self,
        spec: model_pb2.ModelSpec,
        servable: Servable | None,
    ) -> tuple[Servable, str, meta_graph_pb2.SignatureDef]:
        servable = servable or self.servable(spec)
        name = spec.signature_name or DEFAULT_SIGNATURE
        if name not in servable.signature_defs:
            raise ServingError(Code.INVALID_ARGUMENT, f"No signature was found with the name: {clip(name)}")
        return servable, name, servable.signature_defs[name]

    def classify(
        self,
        request: classification_pb2.ClassificationRequest,
        deadline: Deadline | None = None,
        servable: Servable | None = None,
    ) -> classification_pb2.ClassificationResponse:
        servable, name, signature = self._example_signature(request.model_spec, servable)
        keys = classification_outputs(signature)
        examples = serialized_examples(request.input, self.limits)
        outputs = self._run(servable, name, {CLASSIFY_INPUTS: examples}, keys, deadline)
        response = classification_pb2.ClassificationResponse()
        _set_model_spec(response.model_spec, servable, name)
        _fill_classifications(
            len(examples), outputs.get(CLASSIFY_CLASSES), outputs.get(CLASSIFY_SCORES), response.result
        )
        return response

    def regress(
        self,
        request: regression_pb2.RegressionRequest,
        deadline: Deadline | None = None,
        servable: Servable | None = None,
    ) -> regression_pb2.RegressionResponse:
        servable, name, signature = self._example_signature(request.model_spec, servable)
        check_regression_signature(signature)
        examples = serialized_examples(request.input, self.limits)
        values = self._run(servable, name, {REGRESS_INPUTS: examples}, [REGRESS_OUTPUTS], deadline)[REGRESS_OUTPUTS]
        response = regression_pb2.RegressionResponse()
        _set_model_spec(response.model_spec, servable, name)
        _fill_regressions(len(examples), values, response.result)
        return response

    def multi_inference(
        self,
        request: inference_pb2.MultiInferenceRequest,
        deadline: Deadline | None = None,
        servable: Servable | None = None,
    ) -> inference_pb2.MultiInferenceResponse:
        """Classify and regress tasks of one model on one set of examples, in one session run
        (TF Serving's TensorFlowMultiInferenceRunner); not batched, as there."""
        spec = request.tasks[0].model_spec if request.tasks else model_pb2.ModelSpec()
        servable = servable or self.servable(spec)
        model_name = ""
        input_tensors: set[str] = set()  # each fed the same examples (TF2 signatures have one each)
        names: list[str] = []
        fetches: set[str] = set()
        for task in request.tasks:
            if not task.model_spec.name:
                raise ServingError(Code.INVALID_ARGUMENT, "Found ModelSpec with an empty model name.")
            if model_name and task.model_spec.name != model_name:
                raise ServingError(
                    Code.INVALID_ARGUMENT,
                    "All ModelSpecs in a MultiInferenceRequest " "must access the same model name.",
                )
            model_name = task.model_spec.name
            name = task.model_spec.signature_name or DEFAULT_SIGNATURE
            if name in names:
                raise ServingError(Code.INVALID_ARGUMENT, f"Duplicate evaluation of signature: {clip(name)}")
            names.append(name)
            signature = servable.signature_defs.get(name)
            if signature is None:
                raise ServingError(Code.INVALID_ARGUMENT, f"Requested signature not found in model graph: {clip(name)}")
            if task.method_name == CLASSIFY_METHOD:
                aliases = classification_outputs(signature)
                tensor = signature.inputs[CLASSIFY_INPUTS].name
            elif task.method_name == REGRESS_METHOD:
                check_regression_signature(signature)
                aliases = [REGRESS_OUTPUTS]
                tensor = signature.inputs[REGRESS_INPUTS].name
            else:
                raise ServingError(Code.UNIMPLEMENTED, f"Unsupported signature method_name: {clip(task.method_name)}")
            input_tensors.add(tensor)
            fetches.update(signature.outputs[alias].name for alias in aliases)
        examples = serialized_examples(request.input, self.limits)
        check_deadline(deadline)
        outputs = servable.run_tensors(dict.fromkeys(sorted(input_tensors), examples), sorted(fetches))
        check_deadline(deadline)
        response = inference_pb2.MultiInferenceResponse()
        for task, name in zip(request.tasks, names):
            signature = servable.signature_defs[name]
            result = response.results.add()
            if task.method_name == CLASSIFY_METHOD:
                by_alias = {a: outputs[signature.outputs[a].name] for a in classification_outputs(signature)}
                _fill_classifications(
                    len(examples),
                    by_alias.get(CLASSIFY_CLASSES),
                    by_alias.get(CLASSIFY_SCORES),
                    result.classification_result,
                )
            else:
                _fill_regressions(
                    len(examples), outputs[signature.outputs[REGRESS_OUTPUTS].name], result.regression_result
                )
            _set_model_spec(result.model_spec, servable, name)
        return response

    # ------------------------------------------------- metadata and status

    def get_model_metadata(
        self, request: get_model_metadata_pb2.GetModelMetadataRequest
    ) -> get_model_metadata_pb2.GetModelMetadataResponse:
        if not request.HasField("model_spec"):
            raise ServingError(Code.INVALID_ARGUMENT, "Missing ModelSpec")
        if not request.metadata_field:
            raise ServingError(
                Code.INVALID_ARGUMENT, "GetModelMetadataRequest must specify at least one metadata_field"
            )
        for field in request.metadata_field:
            if field != SIGNATURE_DEF_FIELD:
                raise ServingError(Code.INVALID_ARGUMENT, f"Metadata field {clip(field)} is not supported")
        servable = self.servable(request.model_spec)
        signature_map = get_model_metadata_pb2.SignatureDefMap()
        for key, signature in servable.signature_defs.items():
            signature_map.signature_def[key].CopyFrom(signature)
        response = get_model_metadata_pb2.GetModelMetadataResponse()
        response.model_spec.name = servable.name
        response.model_spec.version.value = servable.version
        response.metadata[SIGNATURE_DEF_FIELD].Pack(signature_map)
        return response

    def get_model_status(
        self, request: get_model_status_pb2.GetModelStatusRequest
    ) -> get_model_status_pb2.GetModelStatusResponse:
        if not request.HasField("model_spec"):
            raise ServingError(Code.INVALID_ARGUMENT, "Missing ModelSpec")
        spec = request.model_spec
        choice = spec.WhichOneof("version_choice")
        version = None
        if choice == "version":
            version = spec.version.value
        elif choice == "version_label":
            version = self.manager.resolve_label(spec.name, spec.version_label)
        response = get_model_status_pb2.GetModelStatusResponse()
        for number, status in self.manager.version_status(spec.name, version).items():
            _add_version_status(response, number, status)
        return response


def _add_version_status(
    response: get_model_status_pb2.GetModelStatusResponse, version: int, status: VersionStatus
) -> None:
    entry = response.model_version_status.add(version=version, state=status.state)
    entry.status.error_code = status.error.code if status.error else Code.OK
    entry.status.error_message = status.error.message if status.error else ""


def classification_outputs(signature: meta_graph_pb2.SignatureDef) -> list[str]:
    """The output aliases a classification signature has (classifier.cc's PreProcessClassification)."""
    if len(signature.inputs) != 1:
        raise ServingError(Code.INVALID_ARGUMENT, "Expected one input Tensor.")
    if len(signature.outputs) not in (1, 2):
        raise ServingError(Code.INVALID_ARGUMENT, f"Expected one or two output Tensors, found {len(signature.outputs)}")
    if CLASSIFY_INPUTS not in signature.inputs:
        raise ServingError(
            Code.INVALID_ARGUMENT, f"No classification inputs found in SignatureDef: {_signature_debug(signature)}"
        )
    keys = [k for k in (CLASSIFY_CLASSES, CLASSIFY_SCORES) if k in signature.outputs]
    if not keys:
        raise ServingError(
            Code.INVALID_ARGUMENT,
            f"Expected classification signature outputs to contain at least one of "
            f'"{CLASSIFY_CLASSES}" or "{CLASSIFY_SCORES}". Signature was: '
            f"{_signature_debug(signature)}",
        )
    return keys


def check_regression_signature(signature: meta_graph_pb2.SignatureDef) -> None:
    """regressor.cc's PreProcessRegression checks."""
    if len(signature.inputs) != 1:
        raise ServingError(Code.INVALID_ARGUMENT, "Expected one input Tensor.")
    if len(signature.outputs) != 1:
        raise ServingError(Code.INVALID_ARGUMENT, "Expected one output Tensor.")
    if REGRESS_INPUTS not in signature.inputs:
        raise ServingError(
            Code.INVALID_ARGUMENT, f"No regression inputs found in SignatureDef: {_signature_debug(signature)}"
        )
    if REGRESS_OUTPUTS not in signature.outputs:
        raise ServingError(
            Code.INVALID_ARGUMENT, f"No regression outputs found in SignatureDef: {_signature_debug(signature)}"
        )


def _fill_regressions(n: int, values: np.ndarray, result: regression_pb2.RegressionResult) -> None:
    """RegressionResult from a [n] or [n, 1] float tensor (regressor.cc's PostProcessRegressionResult)."""
    if not (values.ndim == 1 or (values.ndim == 2 and values.shape[1] == 1)):
        raise ServingError(
            Code.INVALID_ARGUMENT,
            f"Expected output Tensor shape to be either [batch_size] or "
            f"[batch_size, 1] but got {list(values.shape)}",
        )
    if values.shape[0] != n:
        raise ServingError(
            Code.INVALID_ARGUMENT, f"Input batch size did not match output batch size: {n} vs. {values.shape[0]}"
        )
    if values.dtype != np.float32:
        raise ServingError(
            Code.INVALID_ARGUMENT,
            f"Expected output Tensor of DT_FLOAT.  Got: "
            f"{types_pb2.DataType.Name(tf.as_dtype(values.dtype).as_datatype_enum)}",
        )
    for value in values.reshape(n):
        result.regressions.add(value=float(value))


def _fill_classifications(
    n: int, classes: np.ndarray | None, scores: np.ndarray | None, result: classification_pb2.ClassificationResult
) -> None:
    """ClassificationResult from classes [n, k] (string) and/or scores [n, k] (float)."""
    if classes is not None:
        if classes.ndim != 2:
            raise ServingError(
                Code.INVALID_ARGUMENT,
                f"Expected Tensor shape: [batch_size num_classes] but got " f"{list(classes.shape)}",
            )
        if classes.dtype != object:
            raise ServingError(
                Code.INVALID_ARGUMENT,
                f"Expected classes Tensor of DT_STRING. Got: "
                f"{types_pb2.DataType.Name(tf.as_dtype(classes.dtype).as_datatype_enum)}",
            )
        if classes.shape[0] != n:
            raise ServingError(
                Code.INVALID_ARGUMENT, f"Expected classes output batch size of {n}. Got: {classes.shape[0]}"
            )
    if scores is not None:
        if scores.ndim != 2:
            raise ServingError(
                Code.INVALID_ARGUMENT,
                f"Expected Tensor shape: [batch_size num_classes] but got " f"{list(scores.shape)}",
            )
        if scores.dtype != np.float32:
            raise ServingError(
                Code.INVALID_ARGUMENT,
                f"Expected scores Tensor of DT_FLOAT. Got: "
                f"{types_pb2.DataType.Name(tf.as_dtype(scores.dtype).as_datatype_enum)}",
            )
        if scores.shape[0] != n:
            raise ServingError(
                Code.INVALID_ARGUMENT, f"Expected scores output batch size of {n}. Got: {scores.shape[0]}"
            )
    if classes is not None and scores is not None and classes.shape[1] != scores.shape[1]:
        raise ServingError(
            Code.INVALID_ARGUMENT,
            f"Tensors class and score should match in dim_size(1). Got " f"{classes.shape[1]} vs. {scores.shape[1]}",
        )
    num_classes = (classes if classes is not None else scores).shape[1]
    for i in range(n):
        row = result.classifications.add()
        for j in range(num_classes):
            entry = row.classes.add()
            if classes is not None:
                entry.label = classes[i, j].decode("utf-8", errors="replace")
            if scores is not None:
                entry.score = float(scores[i, j])
