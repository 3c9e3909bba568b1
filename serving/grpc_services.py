"""gRPC PredictionService and ModelService: thin adapters onto the serving core."""

from __future__ import annotations

from typing import Callable, TypeVar

import grpc
from tensorflow_serving.apis import model_service_pb2_grpc, prediction_service_pb2_grpc

from serving.core import ServingCore
from serving.metrics import Metrics
from serving.status import Code, ServingError

Request = TypeVar("Request")
Response = TypeVar("Response")


def _call(core: ServingCore, metrics: Metrics, api: str, fn: Callable[[Request], Response],
          request: Request, context: grpc.ServicerContext, name: str | None = None) -> Response:
    """Runs one core call; a ServingError becomes the gRPC status with the same code."""
    name = request.model_spec.name if name is None else name
    label = name if name in core.manager.model_names else "<unknown>"
    with metrics.track(label, api, "GRPC") as outcome:
        try:
            response = fn(request)
        except ServingError as e:
            outcome.status = e.code.name
            context.abort(grpc.StatusCode[e.code.name], e.message)
        except Exception as e:  # noqa: BLE001 - report, never crash the server
            outcome.status = Code.INTERNAL.name
            context.abort(grpc.StatusCode.INTERNAL, f"Internal error: {e}")
        spec = getattr(response, "model_spec", None) or (
            response.results[0].model_spec if getattr(response, "results", None) else None)
        if spec is not None and spec.HasField("version"):
            outcome.version = str(spec.version.value)
        return response


class PredictionServicer(prediction_service_pb2_grpc.PredictionServiceServicer):
    """Predict, Classify, Regress, MultiInference and GetModelMetadata."""

    def __init__(self, core: ServingCore, metrics: Metrics) -> None:
        self._core, self._metrics = core, metrics

    def Predict(self, request, context):  # noqa: N802 - gRPC method names
        return _call(self._core, self._metrics, "predict", self._core.predict, request, context)

    def Classify(self, request, context):  # noqa: N802
        return _call(self._core, self._metrics, "classify", self._core.classify, request, context)

    def Regress(self, request, context):  # noqa: N802
        return _call(self._core, self._metrics, "regress", self._core.regress, request, context)

    def MultiInference(self, request, context):  # noqa: N802
        name = request.tasks[0].model_spec.name if request.tasks else ""
        return _call(self._core, self._metrics, "multi_inference", self._core.multi_inference,
                     request, context, name)

    def GetModelMetadata(self, request, context):  # noqa: N802
        return _call(self._core, self._metrics, "metadata", self._core.get_model_metadata,
                     request, context)


class ModelServicer(model_service_pb2_grpc.ModelServiceServicer):
    """GetModelStatus (HandleReloadConfigRequest stays UNIMPLEMENTED)."""

    def __init__(self, core: ServingCore, metrics: Metrics) -> None:
        self._core, self._metrics = core, metrics

    def GetModelStatus(self, request, context):  # noqa: N802
        return _call(self._core, self._metrics, "status", self._core.get_model_status,
                     request, context)


def add_services(server: grpc.Server, core: ServingCore, metrics: Metrics) -> None:
    prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(
        PredictionServicer(core, metrics), server)
    model_service_pb2_grpc.add_ModelServiceServicer_to_server(ModelServicer(core, metrics), server)
