"""Serving latency and throughput, the one serving benchmark: REST `:predict` of one image against `mnist-tfx serve` (batching off,
on, and on with 2 `--num_server_processes` of cores/2 TensorFlow threads each) and against the FastAPI + uvicorn peer (1 and 2
workers, bench/fastapi_peer.py), gRPC Predict against the same servers (load from
bench/grpc_load.py, a separate process), beside the in-process signature call and its 32-image
batched ceiling.

Rows run interleaved over several rounds in one run (medians reported), so a busy machine shifts
them together. Each server's answer is checked equal to the others' and close to the in-process
output before any timing. Per row: p50 at 1 connection, req/s at 32 connections, and the server's
CPU seconds per request at 32 connections (from /proc/<pid>/stat of its process tree). `--baseline DIR` adds the same
rows for another checkout (e.g. `git archive main | tar -x -C DIR`), for an A/B in one run.
The model is the pushed MNIST model (`--model-base-path`, default `<home>/serving_model/mnist`),
one real test image per request to `serving_default`; in quick mode, when no MNIST model is pushed
there, TF Serving's half_plus_two fixture stands in (and the output says so).
Writes bench/results/serving_latency.json.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any, Callable

import numpy as np

from bench import common
from components import features

HALF_PLUS_TWO = common.TF_SERVING_TESTDATA / "saved_model_half_plus_two_cpu"
BATCH = 32
BATCHING = "max_batch_size { value: 32 }\nbatch_timeout_micros { value: 2000 }\nnum_batch_threads { value: 2 }\n"


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


def in_process_call(model: Model, batch: int = 1) -> Callable[[], Callable[[], object]]:
    """The signature called in this process on ``batch`` copies of the example: the limit."""
    import tensorflow as tf

    signature = tf.saved_model.load(str(latest_version(model.base_path)), tags=["serve"]).signatures["serving_default"]
    x = tf.constant(np.repeat(model.example[np.newaxis], batch, axis=0))
    return lambda: (lambda: signature(**{model.input_name: x})[model.output_name].numpy())


def choose_model(args: argparse.Namespace) -> tuple[Model, str | None]:
    """The MNIST model if one is pushed; in quick mode otherwise half_plus_two, with the reason."""
    base = Path(args.model_base_path or common.pipeline_config(args.home).serving_model_dir)
    if latest_version(base) is not None:
        return mnist_model(base, args.home), None
    if not args.quick:
        sys.exit(f"no pushed model in {base}: run `make run` first, or pass --model-base-path")
    return half_plus_two_model(), f"no MNIST model pushed in {base}; measured TF Serving's half_plus_two fixture"


WRK_INSTALL = "wrk not found: install it (Debian/Ubuntu: `apt-get install -y wrk`; macOS: `brew install wrk`)"
BATCH_TIMEOUT_MS = 2.0  # batch_timeout_micros of BATCHING
MANY = 32  # connections of the throughput rows
PROCESSES = 2  # --num_server_processes of the multi-process row
# Its TensorFlow threads per process: the cores shared out (serving/README.md, "Sizing").
THREADS_PER_PROCESS = max(1, (os.cpu_count() or 1) // PROCESSES)
PEER_WORKERS = (1, 2)  # uvicorn --workers of the FastAPI peer rows
PEER = "FastAPI peer"
START_TIMEOUT_S = 180.0  # a server loading TensorFlow and the model on a busy machine
_WRK_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3}
_CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def wrk_script(model: Model, tmp: Path) -> Path:
    """A wrk Lua script that POSTs one image to `:predict`."""
    script = tmp / "predict.lua"
    body = json.dumps(model.rest_body())  # a Lua string literal is a JSON string here (no escapes beyond \")
    script.write_text(f'wrk.method = "POST"\nwrk.body = {body}\nwrk.headers["Content-Type"] = "application/json"\n')
    return script


def run_wrk(port: int, model: Model, script: Path, connections: int, seconds: int) -> dict[str, float]:
    """One bounded wrk run: p50 (ms), req/s, requests and non-2xx count."""
    url = f"http://127.0.0.1:{port}/v1/models/{model.name}:predict"
    out = subprocess.run(
        ["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "--latency", "-s", str(script), url],
        capture_output=True,
        text=True,
        timeout=seconds + 30,
        check=True,
    ).stdout
    p50 = re.search(r"^\s+50%\s+([\d.]+)(us|ms|s)\s*$", out, re.MULTILINE)
    rate = re.search(r"Requests/sec:\s+([\d.]+)", out)
    count = re.search(r"(\d+) requests in", out)
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    if not (p50 and rate and count):
        raise RuntimeError(f"could not read wrk's output:\n{out}")
    return {
        "p50_ms": float(p50.group(1)) * _WRK_UNITS[p50.group(2)],
        "requests_per_second": float(rate.group(1)),
        "requests": int(count.group(1)),
        "errors": int(errors.group(1)) if errors else 0,
    }


def start_peer(model: Model, workers: int) -> tuple[subprocess.Popen, None, int]:
    """bench/fastapi_peer.py under uvicorn with `workers` workers; returns once it answers."""
    port = common.free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "bench.fastapi_peer", f"--model_name={model.name}"]
        + [f"--model_base_path={model.base_path}", f"--port={port}", f"--workers={workers}"],
        cwd=common.REPO,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"},
    )
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            for _ in range(4 * workers):  # a request per worker, most likely: every worker has loaded
                predict(port, model)
            return proc, None, port
        except OSError:
            time.sleep(0.5)
    proc.kill()
    raise RuntimeError(f"the FastAPI peer did not start (exit code {proc.wait()})")


def grpc_request(model: Model) -> bytes:
    """The serialized one-image PredictRequest that bench/grpc_load.py sends."""
    import tensorflow as tf
    from tensorflow_serving.apis import predict_pb2

    request = predict_pb2.PredictRequest()
    request.model_spec.name = model.name
    request.inputs[model.input_name].CopyFrom(tf.make_tensor_proto(model.example[np.newaxis]))
    return request.SerializeToString()


def grpc_predict(port: int, model: Model) -> np.ndarray:
    """One gRPC Predict: the output tensor."""
    import grpc
    import tensorflow as tf
    from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc

    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
        response = stub.Predict(predict_pb2.PredictRequest.FromString(grpc_request(model)), timeout=30)
    return tf.make_ndarray(response.outputs[model.output_name])


def run_grpc_load(port: int, request: Path, connections: int, seconds: int) -> dict[str, float]:
    """One bounded bench/grpc_load.py run, in its own process: p50 (ms), req/s, requests, errors."""
    out = subprocess.run(
        [sys.executable, "-m", "bench.grpc_load", f"--port={port}", f"--request={request}"]
        + [f"--connections={connections}", f"--seconds={seconds}"],
        cwd=common.REPO,
        capture_output=True,
        text=True,
        timeout=seconds + 60,
        check=True,
    ).stdout
    return json.loads(out)


def _stat(pid: int | str) -> list[str]:
    """The fields of /proc/<pid>/stat after the command name (state is [0], ppid [1])."""
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process and its live descendants (the --num_server_processes workers)."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                parents[int(entry.name)] = int(_stat(entry.name)[1])
            except (OSError, IndexError):
                continue
    tree, grew = {pid}, True
    while grew:
        more = {child for child, parent in parents.items() if parent in tree} - tree
        tree |= more
        grew = bool(more)
    total = 0
    for member in tree:
        try:
            total += sum(int(f) for f in _stat(member)[11:13])
        except (OSError, IndexError):
            continue
    return total / _CLOCK_TICKS


def predict(port: int, model: Model) -> str:
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/v1/models/{model.name}:predict",
        data=model.rest_body().encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        return response.read().decode()


def timed(call: Callable[[], object], per_call: int, seconds: float) -> dict[str, float]:
    """An in-process signature call repeated for `seconds`: p50, examples/s, CPU per example."""
    for _ in range(5):
        call()
    latencies, cpu0, end = [], time.process_time(), time.perf_counter() + seconds
    start = time.perf_counter()
    while time.perf_counter() < end:
        t = time.perf_counter()
        call()
        latencies.append(time.perf_counter() - t)
    wall, cpu = time.perf_counter() - start, time.process_time() - cpu0
    return {
        "p50_ms": float(np.median(latencies)) * 1000,
        "examples_per_second": len(latencies) * per_call / wall,
        "cpu_ms_per_example": cpu / (len(latencies) * per_call) * 1000,
    }


def check_answers(
    answers: dict[str, str], grpc_answers: dict[str, np.ndarray], model: Model, reference: np.ndarray
) -> None:
    """Our servers with TensorFlow's default threads answered the same text (the multi-process
    row's one thread per process sums in another order: its last digits may differ); every answer
    (ours REST and gRPC, the peer's) matches the in-process output."""
    ours = {name: text for name, text in answers.items() if not name.startswith(PEER) and "processes" not in name}
    if len(set(ours.values())) != 1:
        raise SystemExit(f"servers disagree: {ours}")
    served = {name: np.asarray(rows_of(text, model), dtype=np.float32) for name, text in answers.items()}
    for name, predictions in (served | grpc_answers).items():
        if not np.allclose(predictions, reference, rtol=1e-6, atol=1e-7):
            raise SystemExit(f"{name} served {predictions} but the model gives {reference}")


def rows_of(text: str, model: Model) -> list[Any]:
    rows = json.loads(text)["predictions"]  # one object per row when the signature has several outputs
    return [row[model.output_name] if isinstance(row, dict) else row for row in rows]


def issue_targets(medians: dict[str, dict[str, float]] | None = None, single_p50: float = 0, ceiling: float = 1):
    """The targets of the serving issues from the rows' medians; not measured without them."""

    def measured(compute: Callable[[dict[str, dict[str, float]]], float]) -> float | None:
        return compute(medians) if medians else None

    def best_on(m: dict[str, dict[str, float]], protocol: str) -> dict[str, float]:
        """The better batching-on configuration (one process or several) by req/s."""
        on = (row for name, row in m.items() if name.startswith(f"{protocol}, batching on"))
        return max(on, key=lambda row: row["requests_per_second_32"])

    peer_p50 = lambda m: min(m[f"{PEER}, {w} worker{'s' * (w > 1)}"]["p50_ms_1"] for w in PEER_WORKERS)  # noqa: E731
    return [
        common.target(
            "serving speed: REST p50 − in-process p50, 1 conn",
            measured(lambda m: m["REST, batching off"]["p50_ms_1"] - single_p50),
            "<=",
            0.5,
            " ms",
        ),
        common.target(
            "serving speed: REST p50 ÷ FastAPI peer p50, 1 conn",
            measured(lambda m: m["REST, batching off"]["p50_ms_1"] / peer_p50(m)),
            "<=",
            1.0,
        ),
        common.target(
            "serving speed: REST batching on − off p50 − batch timeout, 1 conn",
            measured(
                lambda m: m["REST, batching on"]["p50_ms_1"] - m["REST, batching off"]["p50_ms_1"] - BATCH_TIMEOUT_MS
            ),
            "<=",
            0.3,
            " ms",
        ),
        common.target(
            f"serving speed: REST req/s ÷ 2-worker FastAPI peer, {MANY} conns",
            measured(
                lambda m: best_on(m, "REST")["requests_per_second_32"]
                / m[f"{PEER}, 2 workers"]["requests_per_second_32"]
            ),
            ">=",
            1.5,
        ),
        common.target(
            f"serving speed: REST batching on ÷ ceiling, {MANY} conns",
            measured(lambda m: best_on(m, "REST")["requests_per_second_32"] / ceiling),
            ">=",
            0.5,
        ),
        common.target(
            f"serving speed: REST server CPU per request, {MANY} conns",
            measured(lambda m: best_on(m, "REST")["cpu_ms_per_request_32"]),
            "<=",
            0.9,
            " ms",
        ),
        common.target(
            "serving speed: gRPC p50 − in-process p50, 1 conn",
            measured(lambda m: m["gRPC, batching off"]["p50_ms_1"] - single_p50),
            "<=",
            0.5,
            " ms",
        ),
        common.target(
            f"serving speed: gRPC batching on ÷ ceiling, {MANY} conns",
            measured(lambda m: best_on(m, "gRPC")["requests_per_second_32"] / ceiling),
            ">=",
            0.5,
        ),
        common.target(
            f"serving speed: gRPC server CPU per request, {MANY} conns",
            measured(lambda m: best_on(m, "gRPC")["cpu_ms_per_request_32"]),
            "<=",
            0.9,
            " ms",
        ),
        # The earlier serving issue's targets, from the same rows.
        common.target(
            "serving: REST p50 − in-process p50, 1 client",
            measured(lambda m: m["REST, batching off"]["p50_ms_1"] - single_p50),
            "<=",
            2,
            " ms",
        ),
        *(
            common.target(
                f"serving: {protocol} batching on/off, req/s at {MANY} clients",
                measured(
                    lambda m, protocol=protocol: m[f"{protocol}, batching on"]["requests_per_second_32"]
                    / m[f"{protocol}, batching off"]["requests_per_second_32"]
                ),
                ">=",
                3,
                "×",
            )
            for protocol in ("REST", "gRPC")
        ),
    ]


def main() -> None:
    started = time.perf_counter()
    p = common.parser(__doc__)
    p.add_argument("--model-base-path", help="pushed model (default <home>/serving_model/mnist)")
    p.add_argument("--home", help="home for the default model path and MNIST data (default: the configured home)")
    p.add_argument("--seconds", type=int, help="seconds per wrk run (default 10; quick 2)")
    p.add_argument("--rounds", type=int, help="interleaved rounds (default 4; quick 2)")
    p.add_argument("--baseline", help="another checkout whose server is measured beside this one")
    args = p.parse_args()
    if shutil.which("wrk") is None:  # reported, not failed: `make bench` goes on with the others
        print(f"NOT MEASURED: {WRK_INSTALL}", flush=True)
        common.write(
            "serving_latency",
            args,
            {"skipped": WRK_INSTALL, "servers": {}},
            issue_targets(),
            started,
        )
        return
    args.seconds = args.seconds or (2 if args.quick else 10)
    args.rounds = args.rounds or (2 if args.quick else 4)
    model, fallback = choose_model(args)
    if fallback:
        print(f"NOTE: {fallback}", flush=True)
    # The signature called in this process: one image per call, and 32 per call (the ceiling);
    # timed in every round with the servers.
    single_call, batched_call = in_process_call(model)(), in_process_call(model, BATCH)()
    reference = np.asarray(single_call())
    in_process_rounds: dict[str, list[dict[str, float]]] = {"single": [], "batched": []}
    checkouts = {"": common.REPO} | ({"baseline ": Path(args.baseline).resolve()} if args.baseline else {})
    rows: dict[str, list[dict[str, float]]] = {}
    load: list[float] = []
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        (tmp / "batching.txt").write_text(BATCHING)
        script = wrk_script(model, tmp)
        request = tmp / "predict.bin"
        request.write_bytes(grpc_request(model))
        servers: dict[str, tuple[Any, int | None, int]] = {}
        try:
            for prefix, checkout in checkouts.items():
                for batching, processes in ((False, 1), (True, 1), (True, PROCESSES)):
                    if processes > 1 and prefix:
                        continue  # the baseline may not have --num_server_processes
                    flags = (
                        ["--enable_batching", f"--batching_parameters_file={tmp / 'batching.txt'}"] if batching else []
                    )
                    if processes > 1:
                        flags += [
                            f"--num_server_processes={processes}",
                            f"--tensorflow_intra_op_parallelism={THREADS_PER_PROCESS}",
                        ]
                    name = f"{prefix}REST, batching {'on' if batching else 'off'}"
                    name += f", {processes} processes" if processes > 1 else ""
                    servers[name] = common.start_serve(sys.executable, checkout, model.name, model.base_path, *flags)
            for workers in PEER_WORKERS:
                servers[f"{PEER}, {workers} worker{'s' * (workers > 1)}"] = start_peer(model, workers)
            check_answers(
                {n: predict(rest, model) for n, (_, _, rest) in servers.items()},
                {n.replace("REST", "gRPC"): grpc_predict(g, model) for n, (_, g, _) in servers.items() if g},
                model,
                reference,
            )
            for round_index in range(args.rounds):
                in_process_rounds["single"].append(timed(single_call, 1, args.seconds))
                in_process_rounds["batched"].append(timed(batched_call, BATCH, args.seconds))
                for name, (proc, grpc_port, rest) in servers.items():
                    loads: dict[str, Callable[[int], dict[str, float]]] = {
                        name: lambda connections, rest=rest: run_wrk(rest, model, script, connections, args.seconds)
                    }
                    if grpc_port:
                        loads[name.replace("REST", "gRPC")] = lambda connections, port=grpc_port: run_grpc_load(
                            port, request, connections, args.seconds
                        )
                    for row, run_load in loads.items():
                        one = run_load(1)
                        cpu0 = cpu_seconds(proc.pid)
                        many = run_load(MANY)
                        cpu = cpu_seconds(proc.pid) - cpu0
                        rows.setdefault(row, []).append(
                            {
                                "p50_ms_1": one["p50_ms"],
                                "requests_per_second_32": many["requests_per_second"],
                                "cpu_ms_per_request_32": cpu / max(1, many["requests"]) * 1000,
                                "errors": one["errors"] + many["errors"],
                            }
                        )
                        load.append(os.getloadavg()[0])
                print(f"round {round_index + 1}/{args.rounds} done", flush=True)
        finally:
            for proc, _, _ in servers.values():
                proc.terminate()
                proc.wait(60)
    single, batched = (
        {k: statistics.median(r[k] for r in runs) for k in runs[0]}
        for runs in (in_process_rounds["single"], in_process_rounds["batched"])
    )
    medians = {name: {k: statistics.median(r[k] for r in runs) for k in runs[0]} for name, runs in rows.items()}
    ceiling = batched["examples_per_second"]
    table = [["in-process, 1 image", single["p50_ms"], single["examples_per_second"], "", single["cpu_ms_per_example"]]]
    table.append([f"in-process, {BATCH} images (ceiling)", "", ceiling, 1.0, batched["cpu_ms_per_example"]])
    for name, m in medians.items():
        table.append(
            [
                name,
                m["p50_ms_1"],
                m["requests_per_second_32"],
                m["requests_per_second_32"] / ceiling,
                m["cpu_ms_per_request_32"],
            ]
        )
    print(
        f"\n{model.name} from {model.base_path}, one image per request, wrk {args.seconds:g} s per row, "
        f"{args.rounds} interleaved rounds (medians), {os.cpu_count()} CPUs, load average "
        f"{min(load):.2f}–{max(load):.2f}"
    )
    headers = ["server", "p50 ms, 1 conn", f"req/s, {MANY} conns", "÷ ceiling", "server CPU ms/request"]
    print(common.table(table, headers, floatfmt=".2f"))
    targets = issue_targets(medians, single["p50_ms"], ceiling)
    common.write(
        "serving_latency",
        args,
        {
            "model": model.name,
            "model_base_path": str(model.base_path),
            "fallback": fallback,
            "in_process": single,
            "in_process_batch": {"batch": BATCH, **batched},
            "servers": medians,
            "rounds": rows,
            "load_average_1m": load,
        },
        targets,
        started,
    )


if __name__ == "__main__":
    main()
