"""Latency of one-example Predict on TF Serving's half_plus_two model: REST and gRPC against
`mnist-tfx serve` (batching off and on) at 1 and 16 concurrent clients, beside the
in-process signature call. Prints a table. Not a test.

    .venv/bin/python bench/serving_latency.py [--requests 400] [--model-dir DIR]

The server runs in a subprocess; clients are threads in this process, so on a small
machine clients and server share the CPUs (the numbers include that contention).
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
DEFAULT_MODEL = "/work/shared/fixtures/tf_serving_testdata/saved_model_half_plus_two_cpu"
BATCHING = "max_batch_size { value: 16 }\nbatch_timeout_micros { value: 1000 }\nnum_batch_threads { value: 2 }\n"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(model_dir: str, batching: bool, tmp: str) -> tuple[subprocess.Popen, int, int]:
    grpc_port, rest_port = free_port(), free_port()
    args = [f"--port={grpc_port}", f"--rest_api_port={rest_port}", "--model_name=half_plus_two",
            f"--model_base_path={model_dir}"]
    if batching:
        params = Path(tmp) / "batching.txt"
        params.write_text(BATCHING)
        args += ["--enable_batching", f"--batching_parameters_file={params}"]
    code = "import sys; from serving.server import main; sys.exit(main(sys.argv[1:], ''))"
    proc = subprocess.Popen([sys.executable, "-c", code, *args], cwd=REPO, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                            env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
    for line in proc.stdout:
        if "Exporting HTTP/REST API" in line:
            return proc, grpc_port, rest_port
    raise RuntimeError("server did not start")


def measure(make_call, clients: int, total: int) -> tuple[np.ndarray, float]:
    """Latencies (s) of `total` calls spread over `clients` threads, and the wall time."""
    per_client = max(1, total // clients)
    latencies: list[list[float]] = [[] for _ in range(clients)]
    barrier = threading.Barrier(clients + 1)

    def client(i: int) -> None:
        call = make_call()
        for _ in range(5):  # warm up the connection
            call()
        barrier.wait()
        for _ in range(per_client):
            start = time.perf_counter()
            call()
            latencies[i].append(time.perf_counter() - start)

    threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
    for t in threads:
        t.start()
    barrier.wait()
    start = time.perf_counter()
    for t in threads:
        t.join()
    return np.array([x for xs in latencies for x in xs]), time.perf_counter() - start


def rest_call(port: int):
    import requests

    def make():
        session = requests.Session()
        url = f"http://127.0.0.1:{port}/v1/models/half_plus_two:predict"

        def call():
            response = session.post(url, data='{"instances": [[1.0]]}', timeout=30)
            assert response.status_code == 200, response.text
        return call
    return make


def grpc_call(port: int):
    import grpc
    import tensorflow as tf
    from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc

    request = predict_pb2.PredictRequest()
    request.model_spec.name = "half_plus_two"
    request.inputs["x"].CopyFrom(tf.make_tensor_proto([[1.0]], dtype=tf.float32))

    def make():
        stub = prediction_service_pb2_grpc.PredictionServiceStub(
            grpc.insecure_channel(f"127.0.0.1:{port}"))
        return lambda: stub.Predict(request, timeout=30)
    return make


def in_process_call(model_dir: str):
    import tensorflow as tf

    version = max((p for p in Path(model_dir).iterdir() if p.name.isdigit()), key=lambda p: int(p.name))
    signature = tf.saved_model.load(str(version), tags=["serve"]).signatures["serving_default"]
    x = tf.constant([[1.0]], tf.float32)
    return lambda: (lambda: signature(x=x)["y"].numpy())


def row(label: str, clients: int, latencies: np.ndarray, wall: float) -> str:
    p50, p99 = np.percentile(latencies, [50, 99]) * 1000
    return f"| {label:<28} | {clients:>7} | {p50:>8.2f} | {p99:>8.2f} | {len(latencies) / wall:>8.0f} |"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=400, help="requests per measurement")
    parser.add_argument("--model-dir", default=DEFAULT_MODEL, help="base path with numeric versions")
    args = parser.parse_args()
    lines = ["| path                         | clients | p50 (ms) | p99 (ms) |    req/s |",
             "|------------------------------|---------|----------|----------|----------|"]
    make = in_process_call(args.model_dir)
    for clients in (1, 16):
        lines.append(row("in-process signature call", clients, *measure(make, clients, args.requests)))
    with tempfile.TemporaryDirectory() as tmp:
        for batching in (False, True):
            proc, grpc_port, rest_port = start_server(args.model_dir, batching, tmp)
            try:
                mode = "batching on" if batching else "batching off"
                for name, make in (("REST", rest_call(rest_port)), ("gRPC", grpc_call(grpc_port))):
                    for clients in (1, 16):
                        lines.append(row(f"{name}, {mode}", clients,
                                         *measure(make, clients, args.requests)))
            finally:
                proc.terminate()
                proc.wait(60)
    print(f"half_plus_two, one example per request, {args.requests} requests per row, "
          f"{os.cpu_count()} CPUs (clients and server share them)")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
