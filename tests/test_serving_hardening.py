"""Issue 13 (hardening), the request side: each numbered case of the issue against a real
`mnist-tfx serve` subprocess on TF Serving's half_plus_two, with small caps so every abusive
request stays small. Memory is the server process's peak RSS growth (/proc VmHWM)."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Iterator

import grpc
import pytest
import requests

from bench.abuse_probe import MODEL, declared_tensor_request
from tests.serving_conftest_helpers import FIXTURES, free_port, wait_until_ready

HALF_PLUS_TWO = FIXTURES / "saved_model_half_plus_two_cpu"
MIB = 1024 * 1024
# Caps small enough that an abusive request is cheap to send, large enough for normal ones.
MAX_BYTES = 1 * MIB
MAX_ELEMENTS = 100_000
MAX_IN_FLIGHT = 2
MAX_CONNECTIONS = 12
HEADER_TIMEOUT_MS, BODY_TIMEOUT_MS, IDLE_TIMEOUT_MS = 2000, 2000, 2000
# Generous bound for "did not cost memory": the abusive requests below would cost hundreds
# of MB to GB each without the caps.
RSS_GROWTH_BOUND = 60 * MIB
MNIST_TFX = Path(sys.executable).parent / "mnist-tfx"


# ------------------------------------------------------------------ the server


class ServerProcess:
    """A `mnist-tfx serve` subprocess and its /proc memory counters."""

    def __init__(self, base_path: Path, *flags: str, host: str = "127.0.0.1") -> None:
        self.grpc_port, self.rest_port = free_port(), free_port()
        self.host = host
        url_host = f"[{host}]" if ":" in host else host
        self.rest = f"http://{url_host}:{self.rest_port}"
        self.grpc = f"{url_host}:{self.grpc_port}"
        self.log = open(base_path.parent / "server.log", "w+b")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            [
                str(MNIST_TFX),
                "serve",
                f"--port={self.grpc_port}",
                f"--rest_api_port={self.rest_port}",
                f"--rest_api_host={host}",
                f"--model_name={MODEL}",
                f"--model_base_path={base_path}",
                *flags,
            ],
            stdout=self.log,
            stderr=subprocess.STDOUT,
            env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"},
        )
        try:
            wait_until_ready(self.rest, MODEL, timeout=240)
        except TimeoutError:
            self.stop()
            raise

    def _status(self, key: str) -> int:
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1]) * 1024
        raise KeyError(key)

    def rss(self) -> int:
        return self._status("VmRSS")

    @contextlib.contextmanager
    def peak_rss_growth(self) -> Iterator[list[int]]:
        """Yields a list that holds, after the block, the growth of peak RSS over its start."""
        Path(f"/proc/{self.proc.pid}/clear_refs").write_text("5")  # resets VmHWM to VmRSS
        start = self.rss()
        result: list[int] = []
        yield result
        result.append(self._status("VmHWM") - start)

    def output(self) -> str:
        self.log.flush()
        self.log.seek(0)
        return self.log.read().decode(errors="replace")

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        self.log.close()


def copy_model(tmp: Path) -> Path:
    base = tmp / "models" / MODEL
    shutil.copytree(HALF_PLUS_TWO, base)
    return base


CAP_FLAGS = (
    f"--max_request_bytes={MAX_BYTES}",
    f"--max_request_elements={MAX_ELEMENTS}",
    f"--max_in_flight_requests_per_model={MAX_IN_FLIGHT}",
    f"--rest_api_max_connections={MAX_CONNECTIONS}",
    f"--rest_api_header_timeout_in_ms={HEADER_TIMEOUT_MS}",
    f"--rest_api_body_timeout_in_ms={BODY_TIMEOUT_MS}",
    f"--rest_api_idle_timeout_in_ms={IDLE_TIMEOUT_MS}",
)


@pytest.fixture(scope="module")
def server(tmp_path_factory) -> Iterator[ServerProcess]:
    running = ServerProcess(copy_model(tmp_path_factory.mktemp("hardening")), *CAP_FLAGS)
    yield running
    running.stop()


def post(server: ServerProcess, verb: str, body: dict | bytes, timeout: float = 60) -> requests.Response:
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    return requests.post(f"{server.rest}/v1/models/{MODEL}:{verb}", data=data, timeout=timeout)


def assert_good_predict(server: ServerProcess) -> None:
    response = post(server, "predict", {"instances": [1.0, 2.0]})
    assert response.status_code == 200, response.text
    assert response.json() == {"predictions": [2.5, 3.0]}


def tensor_values(proto) -> list:
    import tensorflow as tf

    return tf.make_ndarray(proto).reshape(-1).tolist()


def stubs(server: ServerProcess):
    from tensorflow_serving.apis import prediction_service_pb2_grpc

    channel = grpc.insecure_channel(server.grpc)
    return channel, prediction_service_pb2_grpc.PredictionServiceStub(channel)


# ------------------------------------------- case 1: classify/regress with a context


def test_case1_context_times_examples_is_refused_before_merging(server):
    context = {"x": [0.5] * 20_000}  # ~80 kB serialized; × 200 examples = 16 MB > 1 MiB
    body = {"signature_name": "classify_x_to_y", "context": context, "examples": [{}] * 200}
    with server.peak_rss_growth() as growth:
        response = post(server, "classify", body)
    assert response.status_code == 400
    error = response.json()["error"]
    assert "expand to" in error and "--max_request_bytes" in error
    assert growth[0] < RSS_GROWTH_BOUND
    assert_good_predict(server)


def test_case1_grpc_regress_with_context_is_refused(server):
    from tensorflow.core.example import example_pb2
    from tensorflow_serving.apis import regression_pb2

    request = regression_pb2.RegressionRequest()
    request.model_spec.name, request.model_spec.signature_name = MODEL, "regress_x_to_y"
    context = request.input.example_list_with_context.context
    context.features.feature["x"].float_list.value.extend([0.5] * 20_000)
    for _ in range(200):
        request.input.example_list_with_context.examples.add().CopyFrom(example_pb2.Example())
    channel, stub = stubs(server)
    with channel, pytest.raises(grpc.RpcError) as raised:
        stub.Regress(request, timeout=60)
    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "--max_request_bytes" in raised.value.details()


# ------------------------------------- case 2: TensorProtos declaring more than they carry

_predict_request = declared_tensor_request


@pytest.mark.parametrize(
    "dtype_name, dims, values",
    [
        ("DT_FLOAT", [2**27, 1], {}),  # 29 bytes on the wire, 512 MiB once filled
        ("DT_STRING", [2**20], {"string_val": [b"x"]}),  # one value repeated a million times
        ("DT_FLOAT", [2**40, 2**40], {}),  # overflows int64 when multiplied out
    ],
)
def test_case2_declared_shape_over_the_cap_is_refused_before_allocating(server, dtype_name, dims, values):
    from tensorflow.core.framework import types_pb2

    channel, stub = stubs(server)
    with server.peak_rss_growth() as growth, channel, pytest.raises(grpc.RpcError) as raised:
        stub.Predict(_predict_request(types_pb2.DataType.Value(dtype_name), dims, **values), timeout=60)
    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "--max_request_elements" in raised.value.details()
    assert growth[0] < RSS_GROWTH_BOUND


@pytest.mark.parametrize(
    "dims, values, why",
    [
        ([4], {"tensor_content": b"\0" * 15}, "tensor_content has 15 bytes"),
        ([2], {"float_val": [1.0, 2.0, 3.0]}, "3 values for a shape of 2"),
        ([-1], {}, "negative"),
    ],
)
def test_case2_values_not_matching_the_shape_are_invalid(server, dims, values, why):
    from tensorflow.core.framework import types_pb2

    channel, stub = stubs(server)
    with channel, pytest.raises(grpc.RpcError) as raised:
        stub.Predict(_predict_request(types_pb2.DT_FLOAT, dims, **values), timeout=60)
    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert why in raised.value.details()


def test_case2_a_tensor_within_the_cap_still_repeats_its_last_value(server):
    """TensorFlow's fill rule (fewer values than the shape: the last one repeats) still holds."""
    from tensorflow.core.framework import types_pb2

    channel, stub = stubs(server)
    with channel:
        response = stub.Predict(_predict_request(types_pb2.DT_FLOAT, [3], float_val=[2.0]), timeout=60)
    assert tensor_values(response.outputs["y"]) == [3.0, 3.0, 3.0]


# ------------------------------- case 3: JSON bodies, requests in flight, timed-out work


def test_case3_json_with_more_values_than_the_cap_is_refused_before_parsing(server):
    body = b'{"instances": [' + b",".join([b"[]"] * (MAX_ELEMENTS + 1)) + b"]}"  # 300 kB
    assert len(body) < MAX_BYTES
    with server.peak_rss_growth() as growth:
        response = post(server, "predict", body)
    assert response.status_code == 400
    assert "--max_request_elements" in response.json()["error"]
    assert growth[0] < RSS_GROWTH_BOUND


def _hold_slot(server: ServerProcess) -> socket.socket:
    """A predict whose body never finishes arriving: it holds an in-flight slot."""
    sock = socket.create_connection(("127.0.0.1", server.rest_port), timeout=30)
    sock.sendall(
        f"POST /v1/models/{MODEL}:predict HTTP/1.1\r\nHost: x\r\n"
        f"Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n{{".encode()
    )
    return sock


def test_case3_requests_over_the_in_flight_limit_get_503_at_once(server):
    held = [_hold_slot(server) for _ in range(MAX_IN_FLIGHT)]
    try:
        for _ in range(100):  # the server reads the held requests' headers asynchronously
            response = post(server, "predict", {"instances": [1.0]}, timeout=10)
            if response.status_code == 503:
                break
            time.sleep(0.05)
        assert response.status_code == 503
        assert "--max_in_flight_requests_per_model" in response.json()["error"]
        channel, stub = stubs(server)
        from tensorflow.core.framework import types_pb2

        with channel, pytest.raises(grpc.RpcError) as raised:
            stub.Predict(_predict_request(types_pb2.DT_FLOAT, [1], float_val=[1.0]), timeout=10)
        assert raised.value.code() == grpc.StatusCode.UNAVAILABLE
        # Status calls are not inference and are never refused.
        assert requests.get(f"{server.rest}/v1/models/{MODEL}", timeout=10).status_code == 200
    finally:
        for sock in held:
            sock.close()
    for _ in range(100):  # slots come back once the held requests end (body timeout or close)
        response = post(server, "predict", {"instances": [1.0, 2.0]}, timeout=10)
        if response.status_code == 200:
            break
        time.sleep(0.05)
    assert response.json() == {"predictions": [2.5, 3.0]}


def test_case3_a_timed_out_request_stops_at_the_next_step():
    """A request whose deadline passed (REST answered 504) or was cancelled runs no further
    step: the REST handler stops before parsing, the core before running the model."""
    import tensorflow as tf
    from tensorflow_serving.apis import predict_pb2

    from serving.core import ServingCore
    from serving.limits import Deadline
    from serving.metrics import RequestOutcome
    from serving.model_config import parse_model_server_config
    from serving.model_manager import ModelManager
    from serving.rest import RestHandler
    from serving.servable import Servable
    from serving.status import Code, ServingError
    from tests.serving_conftest_helpers import single_model_config

    manager = ModelManager(parse_model_server_config(single_model_config(MODEL, HALF_PLUS_TWO)), Servable, 0)
    manager.start()
    try:
        core = ServingCore(manager)
        expired = Deadline(0.0)
        time.sleep(0.01)
        with pytest.raises(ServingError) as raised:
            RestHandler(core).process(
                "POST", f"/v1/models/{MODEL}:predict", b'{"instances": [1.0]}', RequestOutcome(), expired
            )
        assert raised.value.code == Code.DEADLINE_EXCEEDED
        request = predict_pb2.PredictRequest()
        request.model_spec.name = MODEL
        request.inputs["x"].CopyFrom(tf.make_tensor_proto([1.0]))
        cancelled = Deadline(60)
        cancelled.cancel()
        with pytest.raises(ServingError) as raised:
            core.predict(request, cancelled)
        assert raised.value.code == Code.DEADLINE_EXCEEDED
        assert tensor_values(core.predict(request, Deadline(60)).outputs["y"]) == [2.5]
    finally:
        manager.stop()


# ------------------------------------------------- case 4: long numbers, no regex scan


def test_case4_long_numbers_parse_and_overflow_is_still_an_error(server):
    digits = "9" * 308
    body = ('{"instances": [' + ",".join([digits + ".0"] * 2000) + "]}").encode()  # 600 kB
    with server.peak_rss_growth() as growth:
        response = post(server, "predict", body)
    assert response.status_code == 200, response.text
    assert len(response.json()["predictions"]) == 2000
    assert growth[0] < RSS_GROWTH_BOUND
    for overflowing in ("1e400", "9" * 309 + ".0"):
        response = post(server, "predict", f'{{"instances": [{overflowing}]}}'.encode())
        assert response.status_code == 400
        assert "Number too big to be stored in double" in response.json()["error"]


# --------------------------------------------------------------- case 6: connections


def _read_all(sock: socket.socket) -> bytes:
    """Everything the server sends until it closes (socket timeout: the server hung)."""
    chunks = []
    while chunk := sock.recv(65536):
        chunks.append(chunk)
    return b"".join(chunks)


def test_case6_slow_headers_are_cut_off(server):
    with socket.create_connection(("127.0.0.1", server.rest_port), timeout=30) as sock:
        sock.sendall(b"GET /v1/models/half HTTP/1.1\r\nHost: x\r\n")  # never the final CRLF
        assert _read_all(sock) == b""  # closed by the server, well before the 30 s socket timeout


def test_case6_idle_keep_alive_connections_are_closed(server):
    with socket.create_connection(("127.0.0.1", server.rest_port), timeout=30) as sock:
        sock.sendall(f"GET /v1/models/{MODEL} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        answer = _read_all(sock)  # the answer, then the close when the connection idles
    assert answer.startswith(b"HTTP/1.1 200")


def test_case6_a_body_that_stops_arriving_gets_408(server):
    with socket.create_connection(("127.0.0.1", server.rest_port), timeout=30) as sock:
        sock.sendall(
            f"POST /v1/models/{MODEL}:predict HTTP/1.1\r\nHost: x\r\n" f'Content-Length: 100\r\n\r\n{{"inst'.encode()
        )
        answer = _read_all(sock)
    assert answer.startswith(b"HTTP/1.1 408")
    assert b"--rest_api_body_timeout_in_ms" in answer


def test_case6_connections_over_the_cap_are_refused_politely(server):
    open_ones = [socket.create_connection(("127.0.0.1", server.rest_port), timeout=30) for _ in range(MAX_CONNECTIONS)]
    try:
        with socket.create_connection(("127.0.0.1", server.rest_port), timeout=30) as extra:
            refused = _read_all(extra)
        assert refused.startswith(b"HTTP/1.1 503")
        assert b"--rest_api_max_connections" in refused
        first = open_ones[0]  # an open connection still gets its answer
        first.sendall(f"GET /v1/models/{MODEL} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
        assert _read_all(first).startswith(b"HTTP/1.1 200")
    finally:
        for sock in open_ones:
            sock.close()
    for _ in range(100):  # freed slots are usable again
        with contextlib.suppress(requests.RequestException):
            if requests.get(f"{server.rest}/v1/models/{MODEL}", timeout=10).status_code == 200:
                break
        time.sleep(0.05)
    assert_good_predict(server)


def test_case6_refused_connections_do_not_flood_the_log(server):
    before = server.output().count("REST connection refused")
    open_ones = [socket.create_connection(("127.0.0.1", server.rest_port), timeout=30) for _ in range(MAX_CONNECTIONS)]
    try:
        for _ in range(50):
            with socket.create_connection(("127.0.0.1", server.rest_port), timeout=30) as extra:
                _read_all(extra)
    finally:
        for sock in open_ones:
            sock.close()
    assert server.output().count("REST connection refused") - before <= 2


# ------------------------------------------------------------------- case 9: errors


def test_case9_errors_carry_no_stack_or_paths(server):
    body = {"signature_name": "classify_x_to_y", "examples": [{"x": "a string, not a float"}]}
    response = post(server, "classify", body)
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error
    for leak in ("Traceback", 'File "', "site-packages", "/work/", str(Path.home()), "line "):
        assert leak not in error, error


def test_case9_client_strings_are_echoed_truncated(server):
    response = post(server, "predict", {"signature_name": "s" * 100_000, "instances": [1.0]})
    assert response.status_code == 400
    error = response.json()["error"]
    assert len(error) < 1000 and "s" * 256 + "..." in error
    from tensorflow.core.framework import types_pb2

    channel, stub = stubs(server)
    request = _predict_request(types_pb2.DT_FLOAT, [1], float_val=[1.0])
    request.model_spec.name = "m" * 100_000
    with channel, pytest.raises(grpc.RpcError) as raised:
        stub.Predict(request, timeout=30)
    assert raised.value.code() == grpc.StatusCode.NOT_FOUND
    assert len(raised.value.details()) < 5000


@pytest.mark.parametrize(
    "raw",
    [
        f"GET /v1/models/{MODEL} HTTP/1.1\r\nHost: x\r\n\r\n",
        "GET /nothing HTTP/1.1\r\nHost: x\r\n\r\n",
        "BREW /v1 HTTP/1.1\r\nHost: x\r\n\r\n",
        "GET /v1 HTTP/1.1\r\nHost: x\r\nContent-Length: nope\r\n\r\n",
    ],
)
def test_case9_no_server_banner_and_json_errors(server, raw):
    with socket.create_connection(("127.0.0.1", server.rest_port), timeout=30) as sock:
        sock.sendall(raw.replace("Host: x\r\n", "Host: x\r\nConnection: close\r\n").encode())
        answer = _read_all(sock)
    head, _, body = answer.partition(b"\r\n\r\n")
    assert b"\r\nserver:" not in head.lower(), head
    if not head.startswith(b"HTTP/1.1 200"):
        assert b"json" in head.lower() and "error" in json.loads(body), answer


# ----------------------------------------------------------------- case 11: CLI, URL


def test_case11_a_5000_digit_version_is_a_400(server):
    response = requests.get(f"{server.rest}/v1/models/{MODEL}/versions/{'9' * 5000}", timeout=30)
    assert response.status_code == 400
    assert "Failed to convert version" in response.json()["error"]
    assert len(response.json()["error"]) < 1000


@pytest.mark.parametrize(
    "flag",
    [
        "--port=abc",
        "--port=70000",
        "--rest_api_port=-1",
        "--rest_api_num_threads=0",
        "--num_server_processes=0",
        "--file_system_poll_wait_seconds=nan",
        "--max_request_elements=0",
        "--rest_api_max_connections=x",
        "--grpc_channel_arguments=novalue",
    ],
)
def test_case11_bad_flag_values_are_one_line_errors(flag):
    done = subprocess.run([str(MNIST_TFX), "serve", flag], capture_output=True, text=True, timeout=120)
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("mnist-tfx serve: error:"), done.stderr
    assert "Traceback" not in done.stderr


def _has_ipv6_loopback() -> bool:
    try:
        with socket.socket(socket.AF_INET6) as s:
            s.bind(("::1", 0))
        return True
    except OSError:
        return False


@pytest.mark.skipif(not _has_ipv6_loopback(), reason="no IPv6 loopback (::1) on this machine")
def test_case11_ipv6_loopback_host_starts_rest_and_grpc():
    from tensorflow.core.framework import types_pb2

    from serving.model_config import parse_model_server_config
    from serving.server import ModelServer, ServerOptions

    options = ServerOptions(
        models=parse_model_server_config(
            f'model_config_list {{ config {{ name: "{MODEL}" base_path: "{HALF_PLUS_TWO}" '
            f'model_platform: "tensorflow" }} }}'
        ),
        port=free_port(),
        rest_api_port=free_port(),
        rest_api_host="::1",
        file_system_poll_wait_seconds=0,
    )
    server = ModelServer(options)
    server.start()
    try:
        assert server.grpc_address == f"[::1]:{options.port}"
        response = requests.post(
            f"http://[::1]:{options.rest_api_port}/v1/models/{MODEL}:predict", json={"instances": [1.0]}, timeout=30
        )
        assert response.json() == {"predictions": [2.5]}
        from tensorflow_serving.apis import prediction_service_pb2_grpc

        with grpc.insecure_channel(server.grpc_address) as channel:
            stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
            reply = stub.Predict(_predict_request(types_pb2.DT_FLOAT, [1], float_val=[1.0]), timeout=30)
        assert tensor_values(reply.outputs["y"]) == [2.5]
    finally:
        server.stop()


# ------------------------------------------------------------------------ the soak


@pytest.mark.slow
def test_soak_mixed_traffic_with_a_hot_reload(tmp_path):
    """~1 minute of good requests among abusive ones, a new version copied in half-way:
    every good request answers correctly and RSS ends within 10 % of its start."""
    base = copy_model(tmp_path)
    server = ServerProcess(base, *CAP_FLAGS, "--file_system_poll_wait_seconds=1")
    try:
        for _ in range(20):  # warm-up: first calls trace functions and grow caches
            assert_good_predict(server)
        start_rss = server.rss()
        failures: list[str] = []
        good = [0]
        stop = time.monotonic() + 60

        def good_client() -> None:
            session = requests.Session()
            while time.monotonic() < stop:
                try:
                    response = session.post(
                        f"{server.rest}/v1/models/{MODEL}:predict", json={"instances": [1.0, 2.0]}, timeout=30
                    )
                    if response.status_code == 503:  # the in-flight cap: refused, not failed
                        continue
                    if response.json() != {"predictions": [2.5, 3.0]}:
                        failures.append(response.text[:200])
                    good[0] += 1
                except requests.RequestException as e:
                    failures.append(repr(e)[:200])
                time.sleep(0.01)

        def abusive_client() -> None:
            from tensorflow.core.framework import types_pb2

            channel, stub = stubs(server)
            bodies = [
                b'{"instances": [' + b",".join([b"[]"] * (MAX_ELEMENTS + 1)) + b"]}",
                json.dumps(
                    {"signature_name": "classify_x_to_y", "context": {"x": [0.5] * 20_000}, "examples": [{}] * 200}
                ).encode(),
                b'{"instances": [' + b"9" * 300 + b".0" + b"]}",
                b"{nope",
                b"x" * (MAX_BYTES + 1),
            ]
            verbs = ["predict", "classify", "predict", "predict", "predict"]
            i = 0
            with channel:
                while time.monotonic() < stop:
                    with contextlib.suppress(requests.RequestException):
                        requests.post(f"{server.rest}/v1/models/{MODEL}:{verbs[i % 5]}", data=bodies[i % 5], timeout=30)
                    with contextlib.suppress(grpc.RpcError):
                        stub.Predict(_predict_request(types_pb2.DT_FLOAT, [2**27]), timeout=30)
                    with (
                        contextlib.suppress(OSError),
                        socket.create_connection(("127.0.0.1", server.rest_port), timeout=30) as sock,
                    ):
                        sock.sendall(b"GET /v1 HTTP/1.1\r\n")  # an abandoned, half-sent request
                    i += 1
                    time.sleep(0.02)

        threads = [threading.Thread(target=good_client) for _ in range(2)]
        threads += [threading.Thread(target=abusive_client)]
        for thread in threads:
            thread.start()
        time.sleep(25)
        shutil.copytree(base / "00000123", base / "00000124")  # hot reload: a new version
        for thread in threads:
            thread.join(120)
        status = requests.get(f"{server.rest}/v1/models/{MODEL}", timeout=30).json()
        assert [v["version"] for v in status["model_version_status"] if v["state"] == "AVAILABLE"] == ["124"]
        assert not failures, failures[:5]
        assert good[0] > 100
        assert server.rss() <= start_rss * 1.10, (start_rss, server.rss())
    finally:
        server.stop()
