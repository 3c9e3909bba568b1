"""Issue 13's cases 1-4, scaled down, against a `mnist-tfx serve` subprocess on TF Serving's
half_plus_two: the server's peak RSS growth and a concurrent good client's worst latency.

    python bench/abuse_probe.py --mnist-tfx .venv/bin/mnist-tfx --case 2
    python bench/abuse_probe.py --mnist-tfx /work/main/.venv/bin/mnist-tfx --case 2   # before

Loopback only; every loop is bounded in count and time.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import requests

REPO = Path(__file__).resolve().parents[1]
FIXTURES = Path(os.environ.get("TF_SERVING_TESTDATA", REPO.parent / "shared/fixtures/tf_serving_testdata"))
MODEL = "half"


def declared_tensor_request(dtype: int, dims: list[int], **values):
    """A Predict request for MODEL whose input "x" declares ``dims`` and carries ``values``."""
    from tensorflow.core.framework import tensor_pb2
    from tensorflow_serving.apis import predict_pb2

    request = predict_pb2.PredictRequest()
    request.model_spec.name = MODEL
    tensor = tensor_pb2.TensorProto(dtype=dtype, **values)
    for size in dims:
        tensor.tensor_shape.dim.add(size=size)
    request.inputs["x"].CopyFrom(tensor)
    return request


MIB = 1024 * 1024


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def proc_status(pid: int, key: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1]) * 1024
    raise KeyError(key)


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def abusive_requests(case: int, rest: str, grpc_address: str) -> list[str]:
    """Sends the case's abusive request(s) (concurrently where the case says so); outcomes."""
    url = f"{rest}/v1/models/{MODEL}"
    outcomes: list[str] = []

    def post(verb: str, body: bytes) -> None:
        try:
            response = requests.post(f"{url}:{verb}", data=body, timeout=120)
            outcomes.append(f"{response.status_code} {response.text[:120]!r}")
        except requests.RequestException as e:
            outcomes.append(repr(e)[:120])

    bodies: list[tuple[str, bytes]] = []
    if case == 1:  # 1 MB context, 50 empty examples (the issue: 4 MB and 200)
        context = {"x": [0.5] * (MIB // 5)}
        bodies = [
            (
                "classify",
                json.dumps({"signature_name": "classify_x_to_y", "context": context, "examples": [{}] * 50}).encode(),
            )
        ]
    elif case == 3:  # two 16 MiB bodies at once (the issue: two 64 MiB), nested empty lists
        body = b'{"instances": [' + b",".join([b"[]"] * (16 * MIB // 3)) + b"]}"
        bodies = [("predict", body), ("predict", body)]
    elif case == 5:  # two 12 MiB bodies of 3.1 M floats (under the element cap), to time out
        body = b'{"instances": [' + b",".join([b"0.5"] * (12 * MIB // 4)) + b"]}"
        bodies = [("predict", body), ("predict", body)]
    elif case == 4:  # 16 MiB of 308-digit numbers (the issue: 64 MiB)
        number = b"9" * 308 + b".0"
        bodies = [("predict", b'{"instances": [' + b",".join([number] * (16 * MIB // 311)) + b"]}")]
    if case == 2:
        import grpc
        from tensorflow.core.framework import types_pb2
        from tensorflow_serving.apis import prediction_service_pb2_grpc

        with grpc.insecure_channel(grpc_address) as channel:
            stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
            for dtype, dims, values in (
                (types_pb2.DT_FLOAT, [2**25, 1], {}),  # the issue: 2^27
                (types_pb2.DT_STRING, [2**18], {"string_val": [b"x"]}),
            ):
                try:
                    stub.Predict(declared_tensor_request(dtype, dims, **values), timeout=120)
                    outcomes.append("OK")
                except grpc.RpcError as e:
                    outcomes.append(f"{e.code().name} {e.details()[:120]!r}")
        return outcomes
    threads = [threading.Thread(target=post, args=item) for item in bodies]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(150)
    return outcomes


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mnist-tfx", required=True, help="the console script of the server to probe")
    parser.add_argument(
        "--case",
        type=int,
        choices=(1, 2, 3, 4, 5),
        required=True,
        help="1-4: the issue's cases; 5: case 3's timed-out work (use a short " "--rest_api_timeout_in_ms)",
    )
    parser.add_argument("--server-flag", action="append", default=[], help="extra `serve` flag")
    parser.add_argument("--settle", type=float, default=3.0, help="seconds watched after the answers")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp) / MODEL
        shutil.copytree(FIXTURES / "saved_model_half_plus_two_cpu", base)
        grpc_port, rest_port = free_port(), free_port()
        rest = f"http://127.0.0.1:{rest_port}"
        server = subprocess.Popen(
            [
                args.mnist_tfx,
                "serve",
                f"--port={grpc_port}",
                f"--rest_api_port={rest_port}",
                f"--model_name={MODEL}",
                f"--model_base_path={base}",
                *args.server_flag,
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"},
        )
        try:
            for _ in range(600):
                try:
                    if requests.get(f"{rest}/v1/models/{MODEL}", timeout=2).status_code == 200:
                        break
                except requests.RequestException:
                    pass
                time.sleep(0.2)
            good = {"instances": [1.0]}
            for _ in range(20):
                requests.post(f"{rest}/v1/models/{MODEL}:predict", json=good, timeout=30)
            latencies: list[float] = []
            failures: list[str] = []
            done = threading.Event()

            def victim() -> None:
                session = requests.Session()
                deadline = time.monotonic() + 300
                while not done.is_set() and time.monotonic() < deadline and len(latencies) < 20000:
                    start = time.perf_counter()
                    try:
                        response = session.post(f"{rest}/v1/models/{MODEL}:predict", json=good, timeout=120)
                        if response.status_code != 200:
                            failures.append(str(response.status_code))
                    except requests.RequestException as e:
                        failures.append(repr(e)[:80])
                    latencies.append(time.perf_counter() - start)
                    time.sleep(0.02)

            Path(f"/proc/{server.pid}/clear_refs").write_text("5")
            rss0, cpu0 = proc_status(server.pid, "VmRSS"), cpu_seconds(server.pid)
            watcher = threading.Thread(target=victim)
            watcher.start()
            time.sleep(0.5)
            start = time.perf_counter()
            outcomes = abusive_requests(args.case, rest, f"127.0.0.1:{grpc_port}")
            answered = time.perf_counter() - start
            cpu_answered = cpu_seconds(server.pid)
            time.sleep(args.settle)
            done.set()
            watcher.join(150)
            print(
                json.dumps(
                    {
                        "case": args.case,
                        "server": args.mnist_tfx,
                        "abusive_outcomes": outcomes,
                        "answered_s": round(answered, 2),
                        "peak_rss_growth_mb": round((proc_status(server.pid, "VmHWM") - rss0) / MIB, 1),
                        "server_cpu_s_until_answered": round(cpu_answered - cpu0, 2),
                        "server_cpu_s_in_settle": round(cpu_seconds(server.pid) - cpu_answered, 2),
                        "good_requests": len(latencies),
                        "good_failures": failures[:5],
                        "good_worst_latency_ms": round(max(latencies) * 1000, 1) if latencies else None,
                    },
                    indent=1,
                )
            )
        finally:
            server.terminate()
            try:
                server.wait(60)
            except subprocess.TimeoutExpired:
                server.kill()
    return 0


if __name__ == "__main__":
    sys.exit(main())
