"""gRPC PredictionService and ModelService: thin adapters onto the serving core."""

from __future__ import annotations

import logging
from typing import Callable, TypeVar

import grpc
from tensorflow_serving.apis import model_management_pb2, model_service_pb2_grpc, prediction_service_pb2_grpc

from serving.core import ServingCore
from serving.limits import Deadline, InFlightLimiter
from serving.metrics import Metrics
from serving.model_config import model_configs_from_proto
from serving.request_checks import public_message
from serving.status import Code, ServingError

Request = TypeVar("Request")
Response = TypeVar("Response")
log = logging.getLogger(__name__)


def _deadline(context: grpc.ServicerContext) -> Deadline:
    """The client's deadline and liveness, checked by the core between steps."""
    return Deadline(context.time_remaining(), context.is_active)


def _call(
    core: ServingCore,
    metrics: Metrics,
    api: str,
    fn: Callable[..., Response],
    request: Request,
    context: grpc.ServicerContext,
    in_flight: InFlightLimiter | None = None,
    name: str | None = None,
) -> Response:
    """Runs one core call; a ServingError becomes the gRPC status with the same code.
    Inference calls (with `in_flight`) take a slot of their model and get the deadline."""
    name = request.model_spec.name if name is None else name
    label = name if name in core.manager.model_names else "<unknown>"
    with metrics.track(label, api, "GRPC") as outcome:
        try:
            if in_flight is None:
                response = fn(request)
            else:
                with in_flight.slot(label):
                    response = fn(request, _deadline(context))
        except ServingError as e:
            outcome.status = e.code.name
            context.abort(grpc.StatusCode[e.code.name], e.message)
        except Exception as e:  # noqa: BLE001 - report, never crash the server
            log.exception("gRPC %s failed", api)
            outcome.status = Code.INTERNAL.name
            context.abort(grpc.StatusCode.INTERNAL, public_message(str(e)))
        spec = getattr(response, "model_spec", None) or (
            response.results[0].model_spec if getattr(response, "results", None) else None
        )
        if spec is not None and spec.HasField("version"):
            outcome.version = str(spec.version.value)
        return response


class PredictionServicer(prediction_service_pb2_grpc.PredictionServiceServicer):
    """Predict, Classify, Regress, MultiInference and GetModelMetadata."""

    def __init__(self, core: ServingCore, metrics: Metrics, in_flight: InFlightLimiter) -> None:
        self._core, self._metrics, self._in_flight = core, metrics, in_flight

    def Predict(self, request, context):  # noqa: N802 - gRPC method names
        return _call(self._core, self._metrics, "predict", self._core.predict, request, context, self._in_flight)

    def Classify(self, request, context):  # noqa: N802
        return _call(self._core, self._metrics, "classify", self._core.classify, request, context, self._in_flight)

    def Regress(self, request, context):  # noqa: N802
        return _call(self._core, self._metrics, "regress", self._core.regress, request, context, self._in_flight)

    def MultiInference(self, request, context):  # noqa: N802
        name = request.tasks[0].model_spec.name if request.tasks else ""
        return _call(
            self._core,
            self._metrics,
            "multi_inference",
            self._core.multi_inference,
            request,
            context,
            self._in_flight,
            name,
        )

    def GetModelMetadata(self, request, context):  # noqa: N802
        return _call(self._core, self._metrics, "metadata", self._core.get_model_metadata, request, context)


class ModelServicer(model_service_pb2_grpc.ModelServiceServicer):
    """GetModelStatus and HandleReloadConfigRequest."""

    def __init__(self, core: ServingCore, metrics: Metrics) -> None:
        self._core, self._metrics = core, metrics

    def GetModelStatus(self, request, context):  # noqa: N802
        return _call(self._core, self._metrics, "status", self._core.get_model_status, request, context)

    def HandleReloadConfigRequest(self, request, context):  # noqa: N802
        """ModelServiceImpl::HandleReloadConfigRequest: only a model_config_list is accepted; the
        reply carries the status, and `metric` echoes each requested metric name (increase 0:
        this server keeps no TensorFlow monitoring metrics, as TF Serving answers unknown names)."""
        response = model_management_pb2.ReloadConfigResponse()
        for name in request.metric_names:
            response.metric.add(name=name, int64_value_increase=0)
        try:
            if request.config.WhichOneof("config") != "model_config_list":
                raise ServingError(
                    Code.INVALID_ARGUMENT,
                    "ServerModelConfig type not supported by HandleReloadConfigRequest. "
                    "Only ModelConfigList is currently supported",
                )
            try:
                configs = model_configs_from_proto(request.config.model_config_list)
            except ValueError as e:
                raise ServingError(Code.INVALID_ARGUMENT, str(e)) from e
            self._core.manager.reload_config(configs)
        except ServingError as e:
            response.status.error_code = e.code
            response.status.error_message = e.message
            context.abort(grpc.StatusCode[e.code.name], e.message)
        return response


def add_services(server: grpc.Server, core: ServingCore, metrics: Metrics, in_flight: InFlightLimiter) -> None:
    prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(
        PredictionServicer(core, metrics, in_flight), server
    )
    model_service_pb2_grpc.add_ModelServiceServicer_to_server(ModelServicer(core, metrics), server)
