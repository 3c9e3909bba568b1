"""A/B of session-based loading (issue 11): one-image REST Predict p50 of a baseline checkout's
`mnist-tfx serve` (e.g. main, `tf.saved_model.load` signature functions) against this one
(a TF session per version, cached callables), both serving the same model at once, measured in
interleaved rounds; and the first-request latency after a load with and without warmup.

Models: TF Serving's half_plus_two fixture, and an MNIST-like Keras 3 model (CNN_Basic with an
untrained seed, `tf.saved_model.save` with a `serving_default` on float [N, 28, 28]) built in
a temporary directory together with a one-record warmup file.

    git worktree add ../baseline <commit> && (cd ../baseline && bash scripts/setup.sh)
    .venv/bin/python -m bench.serving_loading_ab --baseline ../baseline
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from bench.common import start_serve

REPO = Path(__file__).resolve().parents[1]
FIXTURE = REPO.parent / "shared" / "fixtures" / "tf_serving_testdata" / "saved_model_half_plus_two_cpu"
BUILD_MNIST_LIKE = """
import sys
import numpy as np
import tensorflow as tf
from tensorflow_serving.apis import predict_pb2, prediction_log_pb2
from components.model import build_cnn_basic

keras_model = build_cnn_basic()
module = tf.Module()
module.model = keras_model

@tf.function(input_signature=[tf.TensorSpec([None, 28, 28], tf.float32, name="images")])
def serve(images):
    probabilities = keras_model(images / 255.0, training=False)
    return {"probabilities": probabilities, "classes": tf.argmax(probabilities, axis=-1)}

version = sys.argv[1]
tf.saved_model.save(module, version, signatures={"serving_default": serve})
request = predict_pb2.PredictRequest()
request.model_spec.name = "mnist_like"
request.inputs["images"].CopyFrom(tf.make_tensor_proto(np.zeros((1, 28, 28), np.float32)))
tf.io.gfile.makedirs(version + "/assets.extra")
with tf.io.TFRecordWriter(version + "/assets.extra/tf_serving_warmup_requests") as writer:
    writer.write(prediction_log_pb2.PredictionLog(predict_log={"request": request}).SerializeToString())
"""


def start(repo: Path, name: str, base_path: Path, *flags: str) -> tuple[subprocess.Popen, int]:
    """`serving.server.main` of `repo` with its own venv; returns it with its REST port once serving."""
    proc, _, rest_port = start_serve(repo / ".venv" / "bin" / "python", repo, name, base_path, *flags)
    return proc, rest_port


class Client:
    """One keep-alive connection sending the same one-example Predict."""

    def __init__(self, port: int, name: str, body: dict) -> None:
        self._connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        self._path, self._body = f"/v1/models/{name}:predict", json.dumps(body).encode()

    def call(self) -> float:
        start = time.perf_counter()
        self._connection.request("POST", self._path, body=self._body, headers={"Content-Type": "application/json"})
        response = self._connection.getresponse()
        text = response.read()
        assert response.status == 200, text
        return time.perf_counter() - start


def ab_p50(baseline: Path, name: str, base_path: Path, body: dict, rounds: int, per_round: int) -> dict:
    servers = {"baseline": start(baseline, name, base_path), "this": start(REPO, name, base_path)}
    try:
        clients = {k: Client(port, name, body) for k, (_, port) in servers.items()}
        for client in clients.values():
            for _ in range(20):
                client.call()
        latencies: dict[str, list[float]] = {k: [] for k in clients}
        for _ in range(rounds):
            for key, client in clients.items():
                latencies[key] += [client.call() for _ in range(per_round)]
    finally:
        for proc, _ in servers.values():
            proc.terminate()
            proc.wait(30)
    return {k: round(float(np.percentile(v, 50)) * 1e3, 3) for k, v in latencies.items()}


def first_request(base_path: Path, body: dict, warmup: bool) -> float:
    proc, port = start(REPO, "mnist_like", base_path, f"--enable_model_warmup={str(warmup).lower()}")
    try:
        return Client(port, "mnist_like", body).call() * 1e3
    finally:
        proc.terminate()
        proc.wait(30)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--baseline",
        type=Path,
        required=True,
        help="another checkout of this project, with its own .venv, to compare against",
    )
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--per-round", type=int, default=50)
    parser.add_argument("--loads", type=int, default=3, help="server starts per warmup setting")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        version = Path(tmp) / "mnist_like" / "1"
        subprocess.run(
            [str(REPO / ".venv" / "bin" / "python"), "-c", BUILD_MNIST_LIKE, str(version)],
            cwd=REPO,
            check=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"},
        )
        image = {"instances": [np.full((28, 28), 128.0).tolist()]}
        results = {
            "half_plus_two_p50_ms": ab_p50(
                args.baseline, "half_plus_two", FIXTURE, {"instances": [1.0]}, args.rounds, args.per_round
            )
        }
        print(json.dumps(results), flush=True)
        baseline_copy = Path(tmp) / "mnist_like_no_warmup_file"
        shutil.copytree(version.parent, baseline_copy)  # the baseline does not replay warmup anyway
        results["mnist_like_p50_ms"] = ab_p50(
            args.baseline, "mnist_like", baseline_copy, image, args.rounds, args.per_round
        )
        print(json.dumps(results), flush=True)
        firsts: dict[str, list[float]] = {"with_warmup": [], "without_warmup": []}
        for _ in range(args.loads):  # interleaved
            firsts["with_warmup"].append(first_request(version.parent, image, True))
            firsts["without_warmup"].append(first_request(version.parent, image, False))
        results["mnist_like_first_request_ms"] = {k: [round(x, 1) for x in v] for k, v in firsts.items()}
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    sys.exit(main())
