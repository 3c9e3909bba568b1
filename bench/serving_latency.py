"""Serving latency and throughput of one-image Predict: REST and gRPC against `mnist-tfx serve`
(batching off and on) at 1, 8 and 32 concurrent clients, beside the in-process signature call.

The model is the pushed MNIST model (``--model-base-path``, default ``<home>/serving_model/mnist``),
one real test image per request to ``serving_default``. In quick mode, when no MNIST model is
pushed there, TF Serving's half_plus_two fixture stands in (and the output says so).
The server runs in a subprocess; clients are threads in this process, so on a small machine
clients and server share the CPUs (the numbers include that contention).
Writes bench/results/serving_latency.json.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Callable

import numpy as np

from bench import common
from components import features

HALF_PLUS_TWO = common.TF_SERVING_TESTDATA / "saved_model_half_plus_two_cpu"
CLIENTS = (1, 8, 32)
BATCH = 32
BATCHING = "max_batch_size { value: 32 }\nbatch_timeout_micros { value: 2000 }\nnum_batch_threads { value: 2 }\n"
Call = Callable[[], object]


@dataclasses.dataclass(frozen=True)
class Model:
    """What to serve and the one-example request to send it."""

    name: str
    base_path: Path
    input_name: str
    output_name: str
    example: np.ndarray  # one example, without the batch dimension

    def rest_body(self) -> str:
        return json.dumps({"instances": [self.example.tolist()]})


def mnist_model(base_path: Path, home: str | None) -> Model:
    from components import mnist_data

    image = mnist_data.load(common.data_dir(home), "t10k")[0][0].astype(np.float32)
    return Model(features.MODEL_NAME, base_path, features.INPUT_IMAGES, features.OUTPUT_PROBABILITIES, image)


def half_plus_two_model() -> Model:
    return Model("half_plus_two", HALF_PLUS_TWO, "x", "y", np.array([1.0], np.float32))


def latest_version(base_path: Path) -> Path | None:
    versions = [p for p in base_path.iterdir() if p.name.isdigit()] if base_path.is_dir() else []
    return max(versions, key=lambda p: int(p.name), default=None)


def start_server(model: Model, batching: bool, tmp: str) -> tuple[subprocess.Popen, int, int]:
    """`serving.server.main` in a subprocess; returns it with its gRPC and REST ports once serving."""
    flags = []
    if batching:
        params = Path(tmp) / "batching.txt"
        params.write_text(BATCHING)
        flags = ["--enable_batching", f"--batching_parameters_file={params}"]
    return common.start_serve(sys.executable, common.REPO, model.name, model.base_path, *flags)


def measure(make_call: Callable[[], Call], clients: int, total: int) -> tuple[np.ndarray, float]:
    """Latencies (s) of about ``total`` calls spread over ``clients`` threads, and their wall time."""
    per_client = max(4, total // clients)
    latencies: list[list[float]] = [[] for _ in range(clients)]
    barrier = threading.Barrier(clients + 1)

    def client(i: int) -> None:
        call = make_call()
        for _ in range(3):  # warm up the connection
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


def rest_call(model: Model, port: int) -> Callable[[], Call]:
    """A keep-alive ``http.client`` connection per client: the thinnest HTTP/1.1 client in the
    standard library, so the numbers are the server's (``requests`` adds about 2 ms per call here)."""
    import http.client

    body, path = model.rest_body().encode(), f"/v1/models/{model.name}:predict"
    headers = {"Content-Type": "application/json"}

    def make() -> Call:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)

        def call() -> None:
            connection.request("POST", path, body=body, headers=headers)
            response = connection.getresponse()
            text = response.read()
            assert response.status == 200, text

        return call

    return make


def grpc_call(model: Model, port: int) -> Callable[[], Call]:
    import grpc
    import tensorflow as tf
    from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc

    request = predict_pb2.PredictRequest()
    request.model_spec.name = model.name
    request.inputs[model.input_name].CopyFrom(tf.make_tensor_proto(model.example[np.newaxis]))

    def make() -> Call:
        stub = prediction_service_pb2_grpc.PredictionServiceStub(grpc.insecure_channel(f"127.0.0.1:{port}"))
        return lambda: stub.Predict(request, timeout=30)

    return make


def in_process_call(model: Model, batch: int = 1) -> Callable[[], Call]:
    """The signature called in this process on ``batch`` copies of the example: the limit."""
    import tensorflow as tf

    signature = tf.saved_model.load(str(latest_version(model.base_path)), tags=["serve"]).signatures["serving_default"]
    x = tf.constant(np.repeat(model.example[np.newaxis], batch, axis=0))
    return lambda: (lambda: signature(**{model.input_name: x})[model.output_name].numpy())


def stats(latencies: np.ndarray, wall: float) -> dict[str, float]:
    p50, p90, p99 = np.percentile(latencies, [50, 90, 99]) * 1000
    return {
        "p50_ms": p50,
        "p90_ms": p90,
        "p99_ms": p99,
        "requests_per_second": len(latencies) / wall,
        "requests": len(latencies),
    }


def choose_model(args: argparse.Namespace) -> tuple[Model, str | None]:
    """The MNIST model if one is pushed; in quick mode otherwise half_plus_two, with the reason."""
    base = Path(args.model_base_path or common.pipeline_config(args.home).serving_model_dir)
    if latest_version(base) is not None:
        return mnist_model(base, args.home), None
    if not args.quick:
        sys.exit(f"no pushed model in {base}: run `make run` first, or pass --model-base-path")
    return half_plus_two_model(), f"no MNIST model pushed in {base}; measured TF Serving's half_plus_two fixture"


def main() -> None:
    started = time.perf_counter()
    p = common.parser(__doc__)
    p.add_argument("--requests", type=int, help="requests per measurement (default 1000; quick 96)")
    p.add_argument(
        "--model-base-path", help="pushed model: numeric version directories " "(default <home>/serving_model/mnist)"
    )
    p.add_argument("--home", help="home for the default model path and MNIST data (default: the configured home)")
    args = p.parse_args()
    args.requests = args.requests or (96 if args.quick else 1000)
    model, fallback = choose_model(args)
    if fallback:
        print(f"NOTE: {fallback}", flush=True)
    results: dict[str, dict[int, dict[str, float]]] = {}
    make = in_process_call(model)
    results["in-process"] = {n: stats(*measure(make, n, args.requests)) for n in CLIENTS}
    # What batching can gain at most: one caller running batches of 32 against 32 single-example callers.
    batch32 = stats(*measure(in_process_call(model, BATCH), 1, max(8, args.requests // BATCH)))
    batched_limit = batch32["requests_per_second"] * BATCH
    ceiling = batched_limit / results["in-process"][32]["requests_per_second"]
    print(
        f"in-process: batch of {BATCH} p50 {batch32['p50_ms']:.1f} ms = {batched_limit:.0f} examples/s; "
        f"batching can gain at most {ceiling:.2f}x at 32 clients here",
        flush=True,
    )
    with tempfile.TemporaryDirectory() as tmp:
        for batching in (False, True):
            proc, grpc_port, rest_port = start_server(model, batching, tmp)
            try:
                mode = "batching on" if batching else "batching off"
                for name, make in (("REST", rest_call(model, rest_port)), ("gRPC", grpc_call(model, grpc_port))):
                    results[f"{name}, {mode}"] = {n: stats(*measure(make, n, args.requests)) for n in CLIENTS}
                    print(f"{name}, {mode}: done", flush=True)
            finally:
                proc.terminate()
                proc.wait(60)
    rows = [
        [path, n, s["p50_ms"], s["p90_ms"], s["p99_ms"], s["requests_per_second"]]
        for path, by_clients in results.items()
        for n, s in by_clients.items()
    ]
    print(
        f"\n{model.name} from {model.base_path}, one example per request, ~{args.requests} requests per row, "
        f"{os.cpu_count()} CPUs shared by clients and server"
    )
    print(common.table(rows, ["path", "clients", "p50 ms", "p90 ms", "p99 ms", "req/s"], floatfmt=".2f"))
    rest_overhead = results["REST, batching off"][1]["p50_ms"] - results["in-process"][1]["p50_ms"]
    speedup = {
        proto: results[f"{proto}, batching on"][32]["requests_per_second"]
        / results[f"{proto}, batching off"][32]["requests_per_second"]
        for proto in ("REST", "gRPC")
    }
    targets = [common.target("serving: REST p50 − in-process p50, 1 client", rest_overhead, "<=", 2, " ms")]
    targets += [
        common.target(f"serving: {proto} batching on/off, req/s at 32 clients", value, ">=", 3, "×")
        for proto, value in speedup.items()
    ]
    print(
        f"model-only batching ceiling at 32 clients: {ceiling:.2f}x (in-process batch of {BATCH} "
        f"vs {BATCH} concurrent single-example calls)"
    )
    common.write(
        "serving_latency",
        args,
        {
            "model": model.name,
            "model_base_path": str(model.base_path),
            "fallback": fallback,
            "paths": results,
            "in_process_batch": {"batch": BATCH, **batch32, "examples_per_second": batched_limit},
            "batching_ceiling_at_32_clients": ceiling,
        },
        targets,
        started,
    )


if __name__ == "__main__":
    main()
