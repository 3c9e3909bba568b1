"""TF Serving's own model-server tests, ported: tensorflow_serving/model_servers/
tensorflow_model_server_test.py (commit 9d981c5c) for a CPU TensorFlow model, run against
`mnist-tfx serve` as a subprocess, and against a real `tensorflow_model_server` when one is on
PATH. Each case keeps the upstream name (testX -> test_x) and assertions; servers are started as
its RunServer does (--grpc_socket_path, --rest_api_timeout_in_ms, grpc.so_reuseaddr=1) and shared
between cases with the same arguments, as RunServer caches them. Cases for this project's flags
(reload over gRPC, health checking, CORS, --version) follow at the end.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import grpc
import pytest
import requests
from tensorflow.core.framework import types_pb2
from tensorflow_serving.apis import (
    classification_pb2,
    get_model_metadata_pb2,
    get_model_status_pb2,
    inference_pb2,
    model_management_pb2,
    model_service_pb2_grpc,
    predict_pb2,
    prediction_service_pb2_grpc,
    regression_pb2,
)

from tests.serving_conftest_helpers import FIXTURES, TF_SERVING_BINARY, free_port, server_kinds

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[1]
RPC_TIMEOUT = 20.0
HTTP_REST_TIMEOUT_MS = 5000
DEFAULT_SIGNATURE = "serving_default"
HALF_PLUS_TWO = FIXTURES / "saved_model_half_plus_two_cpu"
HALF_PLUS_TWO_TF2 = FIXTURES / "saved_model_half_plus_two_tf2_cpu"
HALF_PLUS_THREE = FIXTURES / "saved_model_half_plus_three"
CONFIG_TEMPLATE = """
model_config_list: {{
  config: {{
    name: "{name}",
    base_path: "{model_path}",
    model_platform: "tensorflow"
  }}
}}
"""
# This project's additions on the shared default server (no effect on TF Serving's cases).
EXTRA_FLAGS = ("--enable_grpc_healthcheck_service", "--rest_api_enable_cors_support")


def model_version(model_path: Path | str) -> int:
    """_GetModelVersion: the one version directory under `model_path`."""
    return int(os.listdir(model_path)[0])


@dataclasses.dataclass
class Server:
    proc: subprocess.Popen
    grpc: str  # host:port
    rest: str  # host:port
    socket: str
    log: Path

    def output(self) -> str:
        return self.log.read_text(errors="replace")


def server_command(kind: str) -> list[str]:
    if kind == TF_SERVING_BINARY:
        return [shutil.which(TF_SERVING_BINARY)]
    return [sys.executable, "-m", "cli.main", "serve"]


def wait_until_serving(server: Server, timeout: float = 240.0) -> None:
    """WaitForServerReady: until a Predict for a missing model gets an answer other than UNAVAILABLE."""
    request = predict_pb2.PredictRequest()
    request.model_spec.name = "intentionally_missing_model"
    deadline = time.monotonic() + timeout
    with grpc.insecure_channel(server.grpc) as channel:
        stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
        while True:
            assert server.proc.poll() is None, f"server exited:\n{server.output()[-5000:]}"
            assert time.monotonic() < deadline, f"server not ready:\n{server.output()[-5000:]}"
            try:
                stub.Predict(request, 2)
                return
            except grpc.RpcError as e:
                if e.code() != grpc.StatusCode.UNAVAILABLE:
                    return
            time.sleep(0.5)


class Servers:
    """RunServer: one server per distinct argument set, stopped when the module ends."""

    def __init__(self, kind: str, tmp: Path) -> None:
        self.kind, self.tmp = kind, tmp
        self._running: dict[tuple, Server] = {}

    def run(
        self,
        model_name: str | None,
        model_path: Path | str | None,
        *,
        model_config_file: Path | None = None,
        monitoring_config_file: Path | None = None,
        grpc_channel_arguments: str = "",
        wait_for_server_ready: bool = True,
        model_config_file_poll_period: int | None = None,
        extra: tuple[str, ...] = (),
    ) -> Server:
        key = (
            model_name,
            str(model_path),
            str(model_config_file),
            str(monitoring_config_file),
            grpc_channel_arguments,
            model_config_file_poll_period,
            extra,
        )
        if key in self._running:
            return self._running[key]
        port, rest_port = free_port(), free_port()
        workdir = self.tmp / f"server{len(self._running)}"
        workdir.mkdir()
        socket_path = workdir / "tf-serving.sock"
        command = [
            *server_command(self.kind),
            f"--port={port}",
            f"--rest_api_port={rest_port}",
            f"--rest_api_timeout_in_ms={HTTP_REST_TIMEOUT_MS}",
            f"--grpc_socket_path={socket_path}",
        ]
        if model_config_file:
            command.append(f"--model_config_file={model_config_file}")
        elif model_path:
            command += [f"--model_name={model_name}", f"--model_base_path={model_path}"]
        else:
            raise ValueError("Both model_config_file and model_path cannot be empty!")
        if monitoring_config_file:
            command.append(f"--monitoring_config_file={monitoring_config_file}")
        if model_config_file_poll_period is not None:
            command.append(f"--model_config_file_poll_wait_seconds={model_config_file_poll_period}")
        channel_args = ",".join(a for a in (grpc_channel_arguments, "grpc.so_reuseaddr=1") if a)
        command += [f"--grpc_channel_arguments={channel_args}", *extra]
        log = workdir / "server.log"
        with open(log, "wb") as out:
            proc = subprocess.Popen(
                command, cwd=REPO, stdout=out, stderr=subprocess.STDOUT, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "1"}
            )
        server = Server(proc, f"127.0.0.1:{port}", f"127.0.0.1:{rest_port}", str(socket_path), log)
        self._running[key] = server
        if wait_for_server_ready:
            wait_until_serving(server)
        return server

    def stop_all(self) -> None:
        for server in self._running.values():
            if server.proc.poll() is None:
                server.proc.terminate()
        for server in self._running.values():
            try:
                server.proc.wait(60)
            except subprocess.TimeoutExpired:
                server.proc.kill()


@pytest.fixture(scope="module", params=server_kinds())
def servers(request, tmp_path_factory):
    running = Servers(request.param, tmp_path_factory.mktemp("servers"))
    yield running
    running.stop_all()


@pytest.fixture(scope="module")
def default_server(servers):
    """RunServer('default', half_plus_two): shared by every case that starts exactly this server
    (monitoring and channel-argument cases too: their flags change nothing for the others)."""
    return servers.run(
        "default",
        HALF_PLUS_TWO,
        monitoring_config_file=FIXTURES / "monitoring_config.txt",
        grpc_channel_arguments="grpc.max_connection_age_ms=2000,grpc.lb_policy_name=grpclb",
        extra=EXTRA_FLAGS,
    )


@pytest.fixture(scope="module")
def good_model_config_file(tmp_path_factory) -> Path:
    """__BuildModelConfigFile: the template with the test model directories filled in."""
    config = (FIXTURES / "good_model_config.txt").read_text()
    config = config.replace("${TEST_HALF_PLUS_TWO_DIR}", str(HALF_PLUS_TWO))
    config = config.replace("${TEST_HALF_PLUS_THREE_DIR}", str(HALF_PLUS_THREE))
    path = tmp_path_factory.mktemp("config") / "good_model_config.conf"
    path.write_text(config)
    return path


def verify_model_spec(spec, name: str, signature_name: str, version: int) -> None:
    assert (spec.name, spec.signature_name, spec.version.value) == (name, signature_name, version)


def verify_predict_request(
    address: str,
    expected_output: float,
    expected_version: int,
    model_name: str = "default",
    specify_output: bool = True,
    batch_input: bool = False,
    signature_name: str = DEFAULT_SIGNATURE,
) -> None:
    """VerifyPredictRequest."""
    request = predict_pb2.PredictRequest()
    request.model_spec.name = model_name
    request.model_spec.signature_name = signature_name
    request.inputs["x"].dtype = types_pb2.DT_FLOAT
    request.inputs["x"].float_val.append(2.0)
    request.inputs["x"].tensor_shape.dim.add().size = 1
    if batch_input:
        request.inputs["x"].tensor_shape.dim.add().size = 1
    if specify_output:
        request.output_filter.append("y")
    with grpc.insecure_channel(address) as channel:
        result = prediction_service_pb2_grpc.PredictionServiceStub(channel).Predict(request, RPC_TIMEOUT)
    assert "y" in result.outputs
    assert result.outputs["y"].dtype == types_pb2.DT_FLOAT
    assert len(result.outputs["y"].float_val) == 1
    assert result.outputs["y"].float_val[0] == expected_output
    verify_model_spec(result.model_spec, model_name, signature_name, expected_version)


def call_rest(url: str, body: dict | None) -> dict:
    """CallREST: POST when there is a body, GET otherwise; the answer must be 200."""
    response = requests.get(url, timeout=30) if body is None else requests.post(url, data=json.dumps(body), timeout=30)
    assert response.status_code == 200, response.text
    return response.json()


def sorted_object(obj):
    """SortedObject: lists sorted, recursively, for order-free comparison."""
    if isinstance(obj, dict):
        return sorted((k, sorted_object(v)) for k, v in obj.items())
    if isinstance(obj, list):
        return sorted(sorted_object(x) for x in obj)
    return obj


def wait_until(predicate, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            if predicate():
                return
        except (grpc.RpcError, AssertionError):
            pass
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.5)


# ------------------------------------------------------------------ gRPC


def test_get_model_status(default_server):
    request = get_model_status_pb2.GetModelStatusRequest()
    request.model_spec.name = "default"
    with grpc.insecure_channel(default_server.grpc) as channel:
        result = model_service_pb2_grpc.ModelServiceStub(channel).GetModelStatus(request, RPC_TIMEOUT)
    assert len(result.model_version_status) == 1
    assert result.model_version_status[0].version == 123
    assert result.model_version_status[0].status.error_code == 0


def test_get_model_metadata(default_server):
    request = get_model_metadata_pb2.GetModelMetadataRequest()
    request.model_spec.name = "default"
    request.metadata_field.append("signature_def")
    with grpc.insecure_channel(default_server.grpc) as channel:
        result = prediction_service_pb2_grpc.PredictionServiceStub(channel).GetModelMetadata(request, RPC_TIMEOUT)
    assert result.model_spec.name == "default"
    assert result.model_spec.version.value == model_version(HALF_PLUS_TWO)
    assert len(result.metadata) == 1
    assert "signature_def" in result.metadata


def _test_classify(server: Server, model_path: Path) -> None:
    request = classification_pb2.ClassificationRequest()
    request.model_spec.name = "default"
    request.model_spec.signature_name = "classify_x_to_y"
    request.input.example_list.examples.add().features.feature["x"].float_list.value.extend([2.0])
    with grpc.insecure_channel(server.grpc) as channel:
        result = prediction_service_pb2_grpc.PredictionServiceStub(channel).Classify(request, RPC_TIMEOUT)
    assert len(result.result.classifications) == 1
    assert len(result.result.classifications[0].classes) == 1
    assert result.result.classifications[0].classes[0].score == 3.0
    verify_model_spec(result.model_spec, "default", "classify_x_to_y", model_version(model_path))


def test_classify(default_server):
    _test_classify(default_server, HALF_PLUS_TWO)


def test_classify_tf2(servers):
    _test_classify(servers.run("default", HALF_PLUS_TWO_TF2), HALF_PLUS_TWO_TF2)


def _test_regress(server: Server, model_path: Path) -> None:
    request = regression_pb2.RegressionRequest()
    request.model_spec.name = "default"
    request.model_spec.signature_name = "regress_x_to_y"
    request.input.example_list.examples.add().features.feature["x"].float_list.value.extend([2.0])
    with grpc.insecure_channel(server.grpc) as channel:
        result = prediction_service_pb2_grpc.PredictionServiceStub(channel).Regress(request, RPC_TIMEOUT)
    assert len(result.result.regressions) == 1
    assert result.result.regressions[0].value == 3.0
    verify_model_spec(result.model_spec, "default", "regress_x_to_y", model_version(model_path))


def test_regress(default_server):
    _test_regress(default_server, HALF_PLUS_TWO)


def test_regress_tf2(servers):
    _test_regress(servers.run("default", HALF_PLUS_TWO_TF2), HALF_PLUS_TWO_TF2)


def _test_multi_inference(server: Server, model_path: Path) -> None:
    request = inference_pb2.MultiInferenceRequest()
    request.tasks.add().model_spec.name = "default"
    request.tasks[0].model_spec.signature_name = "regress_x_to_y"
    request.tasks[0].method_name = "tensorflow/serving/regress"
    request.tasks.add().model_spec.name = "default"
    request.tasks[1].model_spec.signature_name = "classify_x_to_y"
    request.tasks[1].method_name = "tensorflow/serving/classify"
    request.input.example_list.examples.add().features.feature["x"].float_list.value.extend([2.0])
    with grpc.insecure_channel(server.grpc) as channel:
        result = prediction_service_pb2_grpc.PredictionServiceStub(channel).MultiInference(request, RPC_TIMEOUT)
    assert len(result.results) == 2
    assert result.results[0].regression_result.regressions[0].value == 3.0
    assert result.results[1].classification_result.classifications[0].classes[0].score == 3.0
    for i in range(2):
        verify_model_spec(
            result.results[i].model_spec,
            request.tasks[i].model_spec.name,
            request.tasks[i].model_spec.signature_name,
            model_version(model_path),
        )


def test_multi_inference(default_server):
    _test_multi_inference(default_server, HALF_PLUS_TWO)


def test_multi_inference_tf2(servers):
    _test_multi_inference(servers.run("default", HALF_PLUS_TWO_TF2), HALF_PLUS_TWO_TF2)


def test_predict_saved_model(default_server):
    """_TestPredict."""
    version = model_version(HALF_PLUS_TWO)
    verify_predict_request(default_server.grpc, 3.0, version)
    verify_predict_request(default_server.grpc, 3.0, version, specify_output=False)


# ------------------------------------------------------------------ model config files


def test_good_model_config(servers, good_model_config_file):
    address = servers.run(None, None, model_config_file=good_model_config_file).grpc
    verify_predict_request(address, 3.0, model_version(HALF_PLUS_TWO), model_name="half_plus_two")
    verify_predict_request(address, 3.0, model_version(HALF_PLUS_TWO), model_name="half_plus_two", specify_output=False)
    verify_predict_request(address, 4.0, model_version(HALF_PLUS_THREE), model_name="half_plus_three")
    verify_predict_request(
        address, 4.0, model_version(HALF_PLUS_THREE), model_name="half_plus_three", specify_output=False
    )


def test_bad_model_config(servers):
    server = servers.run(None, None, model_config_file=FIXTURES / "bad_model_config.txt", wait_for_server_ready=False)
    server.proc.wait(240)
    assert server.proc.returncode != 0
    assert "Error parsing text-format tensorflow.serving.ModelServerConfig" in server.output()


def test_model_config_reload(servers, tmp_path):
    config_path = tmp_path / "model_config.txt"
    config_path.write_text(CONFIG_TEMPLATE.format(name="half_plus_two", model_path=HALF_PLUS_TWO))
    address = servers.run(None, None, model_config_file=config_path, model_config_file_poll_period=1).grpc
    verify_predict_request(address, 3.0, model_version(HALF_PLUS_TWO), model_name="half_plus_two", specify_output=False)

    config_path.write_text(CONFIG_TEMPLATE.format(name="half_plus_three", model_path=HALF_PLUS_THREE))
    wait_until(
        lambda: verify_predict_request(
            address, 4.0, model_version(HALF_PLUS_THREE), model_name="half_plus_three", specify_output=False
        )
        is None
    )


def test_model_config_reload_with_zero_poll_period(servers, tmp_path):
    config_path = tmp_path / "model_config.txt"
    config_path.write_text(CONFIG_TEMPLATE.format(name="half_plus_two", model_path=HALF_PLUS_TWO))
    poll_period = 0
    address = servers.run(None, None, model_config_file=config_path, model_config_file_poll_period=poll_period).grpc
    verify_predict_request(address, 3.0, model_version(HALF_PLUS_TWO), model_name="half_plus_two", specify_output=False)

    config_path.write_text(CONFIG_TEMPLATE.format(name="half_plus_three", model_path=HALF_PLUS_THREE))
    time.sleep(poll_period + 1)  # time to poll, should the server wrongly poll
    verify_predict_request(
        address, 3.0, model_version(HALF_PLUS_THREE), model_name="half_plus_two", specify_output=False
    )


def test_model_config_reload_to_a_tf2_model(servers, tmp_path):
    """testModelConfigReload with a TF2 model as the new config (loads with or without TF1 sessions)."""
    config_path = tmp_path / "model_config.txt"
    config_path.write_text(CONFIG_TEMPLATE.format(name="half_plus_two", model_path=HALF_PLUS_TWO))
    address = servers.run(
        None,
        None,
        model_config_file=config_path,
        model_config_file_poll_period=1,
        extra=("--file_system_poll_wait_seconds=1",),
    ).grpc
    verify_predict_request(address, 3.0, model_version(HALF_PLUS_TWO), model_name="half_plus_two")
    config_path.write_text(CONFIG_TEMPLATE.format(name="tf2", model_path=HALF_PLUS_TWO_TF2))
    wait_until(lambda: verify_predict_request(address, 3.0, model_version(HALF_PLUS_TWO_TF2), model_name="tf2") is None)
    with pytest.raises(grpc.RpcError) as caught:
        verify_predict_request(address, 3.0, model_version(HALF_PLUS_TWO), model_name="half_plus_two")
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND


def test_good_grpc_channel_args(default_server):
    verify_predict_request(default_server.grpc, 3.0, model_version(HALF_PLUS_THREE), specify_output=False)


# ------------------------------------------------------------------ REST


def test_classify_rest(default_server):
    url = f"http://{default_server.rest}/v1/models/default:classify"
    body = {"signature_name": "classify_x_to_y", "examples": [{"x": 2.0}]}
    assert call_rest(url, body) == {"results": [[["", 3.0]]]}


def test_regress_rest(default_server):
    url = f"http://{default_server.rest}/v1/models/default:regress"
    body = {"signature_name": "regress_x_to_y", "examples": [{"x": 2.0}]}
    assert call_rest(url, body) == {"results": [3.0]}


def test_predict_rest(default_server):
    url = f"http://{default_server.rest}/v1/models/default:predict"
    assert call_rest(url, {"instances": [2.0, 3.0, 4.0]}) == {"predictions": [3.0, 3.5, 4.0]}


def test_predict_columnar_rest(default_server):
    url = f"http://{default_server.rest}/v1/models/default:predict"
    assert call_rest(url, {"inputs": [2.0, 3.0, 4.0]}) == {"outputs": [3.0, 3.5, 4.0]}


def test_get_status_rest(default_server):
    assert call_rest(f"http://{default_server.rest}/v1/models/default", None) == {
        "model_version_status": [
            {
                "version": "123",
                "state": "AVAILABLE",
                "status": {"error_code": "OK", "error_message": ""},
            }
        ]
    }


def test_get_model_metadata_rest(default_server):
    got = call_rest(f"http://{default_server.rest}/v1/models/default/metadata", None)
    expected = json.loads((FIXTURES / "half_plus_two_model_metadata.json").read_text())
    assert sorted_object(got) == sorted_object(expected)


def test_prometheus_endpoint(default_server):
    response = requests.get(f"http://{default_server.rest}/monitoring/prometheus/metrics", timeout=30)
    assert response.status_code == 200
    assert "# TYPE" in response.text


def test_predict_uds(default_server):
    verify_predict_request(f"unix:{default_server.socket}", 3.0, model_version(HALF_PLUS_THREE), specify_output=False)


# ------------------------------------------------------------------ models saved by TF 2

SAVE_MODELS = textwrap.dedent("""
    import os, sys
    os.environ["TF_USE_LEGACY_KERAS"] = "1"  # tf.keras as in TF Serving's test (Keras 2)
    import tensorflow as tf
    from tensorflow.python.saved_model import signature_constants
    cpus = tf.config.list_physical_devices("CPU")
    tf.config.set_logical_device_configuration(cpus[0], [tf.config.LogicalDeviceConfiguration()] * 2)
    out = sys.argv[1]

    root = tf.train.Checkpoint()
    root.v1 = tf.Variable(3.)
    root.v2 = tf.Variable(2.)
    root.f = tf.function(lambda x: {"y": root.v1 * root.v2 * x})
    to_save = root.f.get_concrete_function(tf.TensorSpec(None, tf.float32))
    tf.saved_model.save(root, f"{out}/tf_saved_model_save/00000123", to_save)

    root = tf.train.Checkpoint()
    root.f = tf.function(lambda x: {"y": 1.}, input_signature=[tf.TensorSpec(None, tf.float32)])
    root.g = tf.function(lambda x: {"y": 2.}, input_signature=[tf.TensorSpec(None, tf.float32)])
    tf.saved_model.save(root, f"{out}/tf_saved_model_save_multiple_signatures/00000123", signatures={
        signature_constants.DEFAULT_SERVING_SIGNATURE_DEF_KEY: root.f, "custom_signature_key": root.g})

    model = tf.keras.models.Sequential()
    model.add(tf.keras.layers.Input(dtype="float32", shape=(1,), name="x"))
    model.add(tf.keras.layers.Lambda(lambda x: x, name="y"))
    tf.saved_model.save(model, f"{out}/keras_sequential_saved_model_save/00000123")

    strategy = tf.distribute.MirroredStrategy(devices=("/cpu:0", "/cpu:1"))
    with strategy.scope():
        model = tf.keras.models.Sequential()
        model.add(tf.keras.layers.Input(dtype="float32", shape=(1,), name="x"))
        model.add(tf.keras.layers.Dense(1, kernel_initializer="ones", bias_initializer="zeros"))
        model.add(tf.keras.layers.Lambda(lambda x: x, name="y"))
    tf.saved_model.save(model, f"{out}/distrat_keras_sequential_saved_model_save/00000123")
""")


@pytest.fixture(scope="module")
def saved_models(tmp_path_factory) -> Path:
    """The four models TF Serving's test saves, saved once in a fresh TensorFlow process."""
    out = tmp_path_factory.mktemp("saved")
    done = subprocess.run(
        [sys.executable, "-c", SAVE_MODELS, str(out)],
        capture_output=True,
        text=True,
        check=False,
        timeout=600,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"},
    )
    assert done.returncode == 0, done.stderr[-5000:]
    return out


def test_tf_saved_model_save(servers, saved_models):
    base_path = saved_models / "tf_saved_model_save"
    address = servers.run("default", base_path).grpc
    verify_predict_request(address, 12.0, model_version(base_path), specify_output=False)


def test_tf_saved_model_save_multiple_signatures(servers, saved_models):
    base_path = saved_models / "tf_saved_model_save_multiple_signatures"
    address = servers.run("default", base_path).grpc
    verify_predict_request(address, 2.0, model_version(base_path), signature_name="custom_signature_key")
    verify_predict_request(address, 1.0, model_version(base_path))


@pytest.mark.parametrize(
    "name",
    ["keras_sequential_saved_model_save", "distrat_keras_sequential_saved_model_save"],
    ids=["sequential", "distrat_sequential"],
)
def test_sequential_keras_saved_model_save(servers, saved_models, name):
    """test_sequential_keras_saved_model_save and test_distrat_sequential_keras_saved_model_save."""
    base_path = saved_models / name
    address = servers.run("default", base_path).grpc
    verify_predict_request(address, 2.0, model_version(base_path), batch_input=True, specify_output=False)


# ------------------------------------------------------------------ this project's flag cases


def test_handle_reload_config_request(servers, tmp_path):
    """ModelService/HandleReloadConfigRequest adds and removes models; other config kinds are refused."""
    config_path = tmp_path / "model_config.txt"
    config_path.write_text(CONFIG_TEMPLATE.format(name="half_plus_two", model_path=HALF_PLUS_TWO))
    server = servers.run(None, None, model_config_file=config_path, extra=("--max_num_load_retries=0",))
    with grpc.insecure_channel(server.grpc) as channel:
        stub = model_service_pb2_grpc.ModelServiceStub(channel)
        request = model_management_pb2.ReloadConfigRequest()
        request.config.model_config_list.config.add(
            name="tf2", base_path=str(HALF_PLUS_TWO_TF2), model_platform="tensorflow"
        )
        response = stub.HandleReloadConfigRequest(request, RPC_TIMEOUT)
        assert response.status.error_code == 0
        verify_predict_request(server.grpc, 3.0, model_version(HALF_PLUS_TWO_TF2), model_name="tf2")
        with pytest.raises(grpc.RpcError) as caught:
            verify_predict_request(server.grpc, 3.0, 123, model_name="half_plus_two")
        assert caught.value.code() == grpc.StatusCode.NOT_FOUND

        request.config.model_config_list.config[0].version_labels["stable"] = 999
        with pytest.raises(grpc.RpcError) as caught:
            stub.HandleReloadConfigRequest(request, RPC_TIMEOUT)
        assert caught.value.code() == grpc.StatusCode.FAILED_PRECONDITION
        assert caught.value.details() == (
            "Request to assign label to version 999 of model tf2, which " "is not currently available for inference"
        )

        with pytest.raises(grpc.RpcError) as caught:
            stub.HandleReloadConfigRequest(model_management_pb2.ReloadConfigRequest(), RPC_TIMEOUT)
        assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert caught.value.details() == (
            "ServerModelConfig type not supported by "
            "HandleReloadConfigRequest. Only ModelConfigList is currently "
            "supported"
        )


def test_grpc_health_check_service(default_server):
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    with grpc.insecure_channel(default_server.grpc) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        for service in ("", "ModelService", "PredictionService"):
            answer = stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=RPC_TIMEOUT)
            assert answer.status == health_pb2.HealthCheckResponse.SERVING, service
        with pytest.raises(grpc.RpcError) as caught:
            stub.Check(health_pb2.HealthCheckRequest(service="nope"), timeout=RPC_TIMEOUT)
        assert caught.value.code() == grpc.StatusCode.NOT_FOUND


def test_cors_headers_and_preflight(default_server):
    base = f"http://{default_server.rest}/v1/models/default"
    answer = requests.post(base + ":predict", data=json.dumps({"instances": [2.0]}), timeout=30)
    assert answer.status_code == 200
    assert answer.headers["Access-Control-Allow-Origin"] == "*"
    assert answer.headers["Access-Control-Allow-Methods"] == "POST, GET"
    assert answer.headers["Access-Control-Allow-Headers"] == "Content-Type"
    preflight = requests.options(base + ":predict", headers={"Origin": "https://example.com"}, timeout=30)
    assert preflight.status_code == 200
    assert requests.options(base + ":predict", timeout=30).status_code == 400


def test_version_flag(servers):
    done = subprocess.run(
        [*server_command(servers.kind), "--version"], cwd=REPO, capture_output=True, text=True, check=False, timeout=120
    )
    assert done.returncode == 0
    assert done.stdout.startswith("TensorFlow ModelServer: ") and "\nTensorFlow Library: " in done.stdout
