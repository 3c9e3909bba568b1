"""Clients for the TensorFlow Serving API (this server or a real tensorflow_model_server).

`RestClient` uses requests and imports no TensorFlow; `GrpcClient` uses the
tensorflow-serving-api stubs (which import TensorFlow) and is imported lazily.
"""

from __future__ import annotations

import base64
import urllib.parse
from typing import Any, Mapping

import numpy as np
import requests


class ServingClientError(RuntimeError):
    """A request the server answered with an error (HTTP status or gRPC code)."""

    def __init__(self, code: int | str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


def b64(data: bytes) -> dict[str, str]:
    """Binary data as TF Serving's JSON `{"b64": ...}` object."""
    return {"b64": base64.b64encode(data).decode("ascii")}


class RestClient:
    """TF Serving REST API v1 client with a kept-alive HTTP session."""

    def __init__(self, server: str, model: str, timeout: float = 30.0) -> None:
        self.server = server.rstrip("/")
        if "://" not in self.server:
            self.server = "http://" + self.server
        self.model = model
        self.timeout = timeout
        self._session = requests.Session()

    def url(self, verb: str = "", version: int | None = None, label: str | None = None) -> str:
        """`/v1/models/{model}[/versions/{v}|/labels/{l}]` plus `:verb` or `/metadata`."""
        path = f"{self.server}/v1/models/{urllib.parse.quote(self.model, safe='')}"
        if version is not None:
            path += f"/versions/{int(version)}"
        elif label is not None:
            path += f"/labels/{urllib.parse.quote(label, safe='')}"
        return path + verb

    def _request(self, method: str, url: str, body: Mapping[str, Any] | None = None) -> Any:
        try:
            response = self._session.request(method, url, json=body, timeout=self.timeout)
        except requests.RequestException as e:
            raise ServingClientError("UNAVAILABLE", f"{method} {url} failed: {e}") from e
        try:
            payload = response.json()
        except ValueError:
            payload = {"error": response.text}
        if response.status_code != 200:
            message = payload.get("error", response.text) if isinstance(payload, dict) else response.text
            raise ServingClientError(response.status_code, message)
        return payload

    def status(self, version: int | None = None, label: str | None = None) -> dict[str, Any]:
        return self._request("GET", self.url("", version, label))

    def metadata(self, version: int | None = None, label: str | None = None) -> dict[str, Any]:
        return self._request("GET", self.url("/metadata", version, label))

    def predict(
        self,
        instances: list | None = None,
        inputs: Any = None,
        signature_name: str | None = None,
        version: int | None = None,
        label: str | None = None,
    ) -> Any:
        """Row (`instances`) or columnar (`inputs`) predict; returns predictions/outputs."""
        if (instances is None) == (inputs is None):
            raise ValueError("Give exactly one of instances or inputs")
        body: dict[str, Any] = {"instances": instances} if instances is not None else {"inputs": inputs}
        if signature_name:
            body["signature_name"] = signature_name
        payload = self._request("POST", self.url(":predict", version, label), body)
        return payload["predictions"] if instances is not None else payload["outputs"]

    def classify(
        self,
        examples: list[dict],
        context: dict | None = None,
        signature_name: str | None = None,
        version: int | None = None,
        label: str | None = None,
    ) -> list:
        return self._examples(":classify", examples, context, signature_name, version, label)

    def regress(
        self,
        examples: list[dict],
        context: dict | None = None,
        signature_name: str | None = None,
        version: int | None = None,
        label: str | None = None,
    ) -> list:
        return self._examples(":regress", examples, context, signature_name, version, label)

    def _examples(
        self,
        verb: str,
        examples: list[dict],
        context: dict | None,
        signature_name: str | None,
        version: int | None,
        label: str | None,
    ) -> list:
        body: dict[str, Any] = {"examples": examples}
        if context is not None:
            body["context"] = context
        if signature_name:
            body["signature_name"] = signature_name
        return self._request("POST", self.url(verb, version, label), body)["results"]

    def close(self) -> None:
        self._session.close()


class GrpcClient:
    """PredictionService / ModelService client over an insecure channel."""

    def __init__(self, target: str, model: str, timeout: float = 30.0) -> None:
        import grpc
        from tensorflow_serving.apis import model_service_pb2_grpc, prediction_service_pb2_grpc

        self.model = model
        self.timeout = timeout
        self._grpc = grpc
        self._channel = grpc.insecure_channel(
            target,
            options=[
                ("grpc.max_receive_message_length", 64 * 1024 * 1024),
                ("grpc.max_send_message_length", 64 * 1024 * 1024),
            ],
        )
        self.prediction = prediction_service_pb2_grpc.PredictionServiceStub(self._channel)
        self.models = model_service_pb2_grpc.ModelServiceStub(self._channel)

    def _spec(self, spec, signature_name: str | None, version: int | None, label: str | None):
        spec.name = self.model
        if signature_name:
            spec.signature_name = signature_name
        if version is not None:
            spec.version.value = version
        elif label is not None:
            spec.version_label = label

    def _call(self, method, request):
        try:
            return method(request, timeout=self.timeout)
        except self._grpc.RpcError as e:
            raise ServingClientError(e.code().name, e.details()) from e

    def predict(
        self,
        inputs: Mapping[str, np.ndarray],
        signature_name: str | None = None,
        version: int | None = None,
        label: str | None = None,
        output_filter: list[str] | None = None,
    ) -> dict[str, np.ndarray]:
        import tensorflow as tf
        from tensorflow_serving.apis import predict_pb2

        request = predict_pb2.PredictRequest(output_filter=output_filter or [])
        self._spec(request.model_spec, signature_name, version, label)
        for name, value in inputs.items():
            request.inputs[name].CopyFrom(tf.make_tensor_proto(value))
        response = self._call(self.prediction.Predict, request)
        return {name: tf.make_ndarray(proto) for name, proto in response.outputs.items()}

    def classify(
        self, examples: list, signature_name: str | None = None, version: int | None = None, label: str | None = None
    ):
        from tensorflow_serving.apis import classification_pb2

        request = classification_pb2.ClassificationRequest()
        self._spec(request.model_spec, signature_name, version, label)
        request.input.example_list.examples.extend(examples)
        return self._call(self.prediction.Classify, request)

    def regress(
        self, examples: list, signature_name: str | None = None, version: int | None = None, label: str | None = None
    ):
        from tensorflow_serving.apis import regression_pb2

        request = regression_pb2.RegressionRequest()
        self._spec(request.model_spec, signature_name, version, label)
        request.input.example_list.examples.extend(examples)
        return self._call(self.prediction.Regress, request)

    def metadata(self, version: int | None = None, label: str | None = None):
        from tensorflow_serving.apis import get_model_metadata_pb2

        request = get_model_metadata_pb2.GetModelMetadataRequest(metadata_field=["signature_def"])
        self._spec(request.model_spec, None, version, label)
        return self._call(self.prediction.GetModelMetadata, request)

    def status(self, version: int | None = None, label: str | None = None):
        from tensorflow_serving.apis import get_model_status_pb2

        request = get_model_status_pb2.GetModelStatusRequest()
        self._spec(request.model_spec, None, version, label)
        return self._call(self.models.GetModelStatus, request)

    def close(self) -> None:
        self._channel.close()
