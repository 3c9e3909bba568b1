"""TF Serving's REST API v1 on aiohttp: a thin adapter from HTTP/JSON to the core's protos.

Paths, JSON and error wording follow http_rest_api_handler.cc / http_rest_api_util.cc.
Small numeric `:predict` bodies (the common case) are parsed on the event loop by the fast path
(orjson + numpy, microseconds), checked there, and their model run is awaited on the loop: in
the batcher's queue when batching is on, else in the thread pool; small outputs are written on
the loop too. Everything else (large bodies, the exact JSON path, classify, regress, status,
metadata) runs in the thread pool, never on the event loop.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import urllib.parse
from concurrent.futures import Executor
from typing import Any, Callable, Iterable

from aiohttp import web
from google.protobuf import json_format
from tensorflow_serving.apis import (
    classification_pb2,
    get_model_metadata_pb2,
    get_model_status_pb2,
    model_pb2,
    predict_pb2,
    regression_pb2,
)

from serving import json_fast, json_tensor
from serving.core import SIGNATURE_DEF_FIELD, PredictPlan, ServingCore
from serving.limits import Deadline, InFlightLimiter, Limits
from serving.metrics import CONTENT_TYPE, METRICS_PATH, Metrics, RequestOutcome
from serving.request_checks import public_message
from serving.rest_cors import enable_cors
from serving.status import Code, ServingError, clip

PREDICTION_PATH = re.compile(
    r"/v1/models/([^/:]+)(?:(?:/versions/(\d+))|(?:/labels/([^/:]+)))?:(classify|regress|predict)", re.IGNORECASE
)
STATUS_PATH = re.compile(
    r"/v1/models(?:/([^/:]+))?(?:(?:/versions/(\d+))|(?:/labels/([^/:]+)))?(?:/(metadata))?", re.IGNORECASE
)
_INT64_MAX = 2**63 - 1
# Adds an application's own routes (the entry point's plug-ins, such as a web page) to the app.
AddRoutes = Callable[[web.Application], None]
_JSON = "application/json"
INFERENCE_VERBS = frozenset({"predict", "classify", "regress"})
# The event loop itself parses a numeric :predict body up to this size (orjson + numpy take about
# 0.1 ms for it; one MNIST image is ~8 KB) and writes outputs up to this many values; larger ones
# go to the thread pool so that one request cannot stall the loop for everyone.
LOOP_BODY_BYTES = 32 * 1024
LOOP_OUTPUT_VALUES = 4096
# A lone request runs its model on the event loop when the signature's latest run took at most
# this long (one MNIST image: ~1 ms); longer runs go to a thread, so the loop stays responsive.
INLINE_RUN_SECONDS = 0.005
log = logging.getLogger(__name__)


def _json_response(status: int, text: str) -> web.Response:
    return web.Response(status=status, text=text, content_type=_JSON)


def _error_response(error: ServingError) -> web.Response:
    return _json_response(error.http_status, json_tensor.make_json_from_error(error.message))


async def _result_within(future: asyncio.Future, timeout: float | None, deadline: Deadline) -> Any:
    """The result of `future` (a model run or worker) once it is done, or DEADLINE_EXCEEDED after
    `timeout` seconds. The future itself is never cancelled (its work goes on, and callbacks on
    it still run); the deadline is cancelled so that a worker stops at its next step."""
    if not future.done():
        waiter = asyncio.get_running_loop().create_future()

        def wake(_: object = None) -> None:
            if not waiter.done():
                waiter.set_result(None)

        future.add_done_callback(wake)
        timer = asyncio.get_running_loop().call_later(timeout, wake) if timeout is not None else None
        try:
            await waiter
        finally:
            if timer is not None:
                timer.cancel()
            future.remove_done_callback(wake)
        if not future.done():
            deadline.cancel()
            raise ServingError(Code.DEADLINE_EXCEEDED, deadline.message)
    return future.result()


def parse_model_path(method: str, path: str) -> tuple[bool, str, int | None, str | None, str]:
    """ParseModelInfo: (matched, model name, version, label, method or subresource)."""
    pattern = PREDICTION_PATH if method == "POST" else STATUS_PATH if method == "GET" else None
    match = pattern.fullmatch(path) if pattern else None
    if match is None:
        return False, "", None, None, ""
    name, version_str, label, verb = match.groups(default="")
    name = urllib.parse.unquote(name)
    version = None
    if version_str:
        # Length first: int() of thousands of digits is slow, and refused beyond 4300 digits.
        if len(version_str.lstrip("0")) > len(str(_INT64_MAX)) or int(version_str) > _INT64_MAX:
            raise ServingError(Code.INVALID_ARGUMENT, f"Failed to convert version: {clip(version_str)} to numeric.")
        version = int(version_str)
    return True, name, version, urllib.parse.unquote(label) if label else None, verb


def _model_spec(name: str, version: int | None, label: str | None) -> model_pb2.ModelSpec:
    spec = model_pb2.ModelSpec(name=name)
    if version is not None:
        spec.version.value = version
    if label is not None:
        spec.version_label = label
    return spec


def status_to_json(response: get_model_status_pb2.GetModelStatusResponse) -> str:
    """GetModelStatusResponse as TF Serving prints it (json_name fields, defaults included)."""
    return json_format.MessageToJson(response, including_default_value_fields=True)


def metadata_to_json(response: get_model_metadata_pb2.GetModelMetadataResponse) -> str:
    """GetModelMetadataResponse with the signature_def Any unpacked, proto field names kept."""
    signature_map = get_model_metadata_pb2.SignatureDefMap()
    response.metadata[SIGNATURE_DEF_FIELD].Unpack(signature_map)
    options = dict(including_default_value_fields=True, preserving_proto_field_name=True)
    return json.dumps(
        {
            "model_spec": json_format.MessageToDict(response.model_spec, **options),
            "metadata": {SIGNATURE_DEF_FIELD: json_format.MessageToDict(signature_map, **options)},
        },
        indent=1,
    )


class RestHandler:
    """ProcessRequest: one HTTP request to one core call, synchronous (run off the loop)."""

    def __init__(self, core: ServingCore) -> None:
        self._core = core

    def process(
        self, method: str, path: str, body: bytes, outcome: RequestOutcome, deadline: Deadline | None = None
    ) -> str:
        deadline = deadline or Deadline()
        deadline.check()  # it may have waited for a thread past its deadline
        matched, name, version, label, verb = parse_model_path(method, path)
        if not matched:
            raise ServingError(Code.INVALID_ARGUMENT, f"Malformed request: {method} {clip(path)}")
        spec = _model_spec(name, version, label)
        if method == "POST":
            handler: Callable[[model_pb2.ModelSpec, bytes, RequestOutcome, Deadline], str] | None = {
                "predict": self._predict,
                "classify": self._classify,
                "regress": self._regress,
            }.get(verb)
            if handler is None:
                raise ServingError(Code.INVALID_ARGUMENT, f"Malformed request: {method} {clip(path)}")
            json_tensor.check_value_count(body, self._core.limits.max_request_elements)
            text = handler(spec, body, outcome, deadline)
            deadline.check()
            return text
        if not name:
            raise ServingError(Code.INVALID_ARGUMENT, "Missing model name in request.")
        if verb == "metadata":
            request = get_model_metadata_pb2.GetModelMetadataRequest(
                model_spec=spec, metadata_field=[SIGNATURE_DEF_FIELD]
            )
            response = self._core.get_model_metadata(request)
            outcome.version = str(response.model_spec.version.value)
            return metadata_to_json(response)
        request = get_model_status_pb2.GetModelStatusRequest(model_spec=spec)
        return status_to_json(self._core.get_model_status(request))

    def plan_fast_predict(self, path: str, body: bytes) -> tuple[PredictPlan, json_tensor.Format] | None:
        """A numeric `:predict` checked and ready to run, or None when it is not one (the thread
        path then handles it from the start). Raises what the thread path would raise for it."""
        matched, name, version, label, verb = parse_model_path("POST", path)
        if not matched or verb != "predict" or not json_fast.may_be_numeric(body):
            return None
        json_tensor.check_value_count(body, self._core.limits.max_request_elements)
        request = predict_pb2.PredictRequest(model_spec=_model_spec(name, version, label))
        fast = json_fast.parse_numeric_predict(
            body, lambda signature: self._core.signature_inputs(request.model_spec, signature)
        )
        if fast is None:
            return None
        request.model_spec.signature_name, arrays, fmt = fast
        return self._core.plan_predict(request, arrays=arrays), fmt

    def _predict(self, spec: model_pb2.ModelSpec, body: bytes, outcome: RequestOutcome, deadline: Deadline) -> str:
        request = predict_pb2.PredictRequest(model_spec=spec)

        def get_inputs(signature: str):
            return self._core.signature_inputs(request.model_spec, signature)

        fast = json_fast.parse_numeric_predict(body, get_inputs)
        if fast is None:
            fmt, arrays = json_tensor.fill_predict_request(body, get_inputs, request, deadline.check), None
        else:
            request.model_spec.signature_name, arrays, fmt = fast
        deadline.check()
        answered = model_pb2.ModelSpec()
        outputs = self._core.predict_arrays(request, answered, deadline, arrays=arrays)
        outcome.version = str(answered.version.value)
        return json_tensor.make_json_from_tensors(outputs, fmt)

    def _classify(self, spec: model_pb2.ModelSpec, body: bytes, outcome: RequestOutcome, deadline: Deadline) -> str:
        request = classification_pb2.ClassificationRequest(model_spec=spec)
        json_tensor.fill_classify_regress_request(body, request, deadline.check)
        deadline.check()
        response = self._core.classify(request, deadline)
        outcome.version = str(response.model_spec.version.value)
        return json_tensor.make_json_from_classification(response.result)

    def _regress(self, spec: model_pb2.ModelSpec, body: bytes, outcome: RequestOutcome, deadline: Deadline) -> str:
        request = regression_pb2.RegressionRequest(model_spec=spec)
        json_tensor.fill_classify_regress_request(body, request, deadline.check)
        deadline.check()
        response = self._core.regress(request, deadline)
        outcome.version = str(response.model_spec.version.value)
        return json_tensor.make_json_from_regression(response.result)


def create_app(
    core: ServingCore,
    metrics: Metrics,
    executor: Executor,
    timeout_in_ms: int,
    limits: Limits,
    in_flight: InFlightLimiter,
    metrics_path: str | None = METRICS_PATH,
    extra_routes: Iterable[AddRoutes] = (),
    cors_headers: bool = False,
) -> web.Application:
    """The aiohttp application: CORS preflights (and CORS headers on every response with
    `cors_headers`, the --rest_api_enable_cors_support flag), /v1/..., the Prometheus endpoint
    (at `metrics_path`; None: off, as TF Serving without a monitoring config), then
    `extra_routes` (e.g. a page)."""
    handler = RestHandler(core)
    timeout = timeout_in_ms / 1000 if timeout_in_ms > 0 else None
    timeout_message = f"Deadline Exceeded: request took longer than {timeout_in_ms} ms"

    async def metrics_endpoint(request: web.Request) -> web.Response:
        metrics.set_loaded(core.manager.loaded_versions())
        return web.Response(body=metrics.exposition(), headers={"Content-Type": CONTENT_TYPE})

    async def run(
        request: web.Request, path: str, outcome: RequestOutcome, on_done: Callable[[], None]
    ) -> web.Response:
        """Reads the body and runs the request in a worker; `on_done` is called once, when the
        worker has finished (not when the client got a 504), or at once if it never started."""
        try:
            if request.content.is_eof():  # the whole body has arrived (the usual small request)
                body = await request.read()
            else:
                body = await asyncio.wait_for(request.read(), limits.body_timeout)
        except asyncio.TimeoutError:
            on_done()
            outcome.status = Code.DEADLINE_EXCEEDED.name
            response = _json_response(
                408,
                json_tensor.make_json_from_error(
                    f"Request body not received within {limits.rest_api_body_timeout_in_ms} ms "
                    f"(--rest_api_body_timeout_in_ms)"
                ),
            )
            response.force_close()
            return response
        except BaseException:
            on_done()
            raise
        deadline = Deadline(timeout, message=timeout_message)
        if request.method == "POST" and len(body) <= LOOP_BODY_BYTES:
            try:
                planned = handler.plan_fast_predict(path, body)
            except BaseException:
                on_done()
                raise
            if planned is not None:
                return await run_on_loop(*planned, outcome, deadline, on_done)
        work = asyncio.get_running_loop().run_in_executor(
            executor, handler.process, request.method, path, body, outcome, deadline
        )
        work.add_done_callback(lambda _: on_done())
        return _json_response(200, await _result_within(work, timeout, deadline))

    async def run_on_loop(
        plan: PredictPlan, fmt: json_tensor.Format, outcome: RequestOutcome, deadline: Deadline, on_done: Callable
    ) -> web.Response:
        """Runs a planned predict without a thread of its own; `on_done` is called when the model
        run has finished, even after a 504. A request alone in the server whose signature runs
        quickly runs right here on the loop (no hand-off to a thread and back: the loop has
        nothing else to do, and is held for at most about INLINE_RUN_SECONDS); others await their
        batch, or a pool thread."""
        quick = plan.servable.last_run_seconds.get(plan.signature, INLINE_RUN_SECONDS + 1) <= INLINE_RUN_SECONDS
        if quick and in_flight.total <= 1 and not core.batches(plan):
            try:
                outputs = core.run_plan(plan, deadline)
            finally:
                on_done()
        else:
            try:
                future = core.run_async(plan, executor)
            except BaseException:
                on_done()
                raise
            future.add_done_callback(lambda _: on_done())
            outputs = await _result_within(future, timeout, deadline)
        outcome.version = str(plan.servable.version)
        if sum(o.size for o in outputs.values()) <= LOOP_OUTPUT_VALUES:
            return _json_response(200, json_tensor.make_json_from_tensors(outputs, fmt))
        loop = asyncio.get_running_loop()
        return _json_response(
            200, await loop.run_in_executor(executor, json_tensor.make_json_from_tensors, outputs, fmt)
        )

    async def api(request: web.Request) -> web.Response:
        path = request.raw_path.split("?", 1)[0]
        matched = PREDICTION_PATH.fullmatch(path) or STATUS_PATH.fullmatch(path)
        raw_name = urllib.parse.unquote(matched.group(1) or "") if matched else ""
        model_label = raw_name if raw_name in core.manager.model_names else "<unknown>"
        api_name = (matched.groups()[-1] or "status").lower() if matched else "unknown"
        with metrics.track(model_label, api_name, "REST") as outcome:
            try:
                if request.method == "POST" and api_name in INFERENCE_VERBS:
                    in_flight.acquire(model_label)  # refused before the body is read
                    return await run(request, path, outcome, lambda: in_flight.release(model_label))
                return await run(request, path, outcome, lambda: None)
            except web.HTTPRequestEntityTooLarge:
                outcome.status = "RESOURCE_EXHAUSTED"
                return _json_response(
                    413,
                    json_tensor.make_json_from_error(
                        f"Request body too large: more than {limits.max_request_bytes} bytes"
                    ),
                )
            except ServingError as e:
                outcome.status = e.code.name
                return _error_response(e)
            except Exception as e:  # noqa: BLE001 - never let a request kill the server
                log.exception("REST request failed: %s %s", request.method, clip(path))
                outcome.status = Code.INTERNAL.name
                return _error_response(ServingError(Code.INTERNAL, public_message(str(e))))

    async def not_found(request: web.Request) -> web.Response:
        return _json_response(
            404,
            json_tensor.make_json_from_error(f"Not found: {request.method} {clip(request.raw_path.split('?', 1)[0])}"),
        )

    app = web.Application(client_max_size=limits.max_request_bytes)
    enable_cors(app, headers=cors_headers)
    if metrics_path is not None:
        app.router.add_route("GET", metrics_path, metrics_endpoint)
    app.router.add_route("*", "/v1/{tail:.*}", api)
    app.router.add_route("*", "/v1", api)
    for add_routes in extra_routes:  # before the catch-all, which would shadow them
        add_routes(app)
    app.router.add_route("*", "/{tail:.*}", not_found)
    return app
