"""The daily loop, end to end on small slices, while a client sends requests without pause.

A ``mnist-tfx serve`` process serves ``<home>/serving_model/mnist``; a client thread calls gRPC
Predict on it back to back (bounded by time); a watcher records when each version appears on disk
and when the server reports it AVAILABLE. Then, in one home:

1. span 1 arrives, ``mnist-tfx run`` pushes v1;
2. span 2 arrives, a run through Airflow (``airflow dags test``) pushes v2: every task succeeds, the
   server moves to v2 with no failed request and answers with v2's probabilities, and
   ``mnist-tfx report`` shows that Airflow run and names span 2;
3. a candidate whose ``classify`` signature breaks (tests/broken_classify_run_fn.py) is blessed by
   the Evaluator but not by InfraValidator, and is not pushed;
4. a regressed candidate (a near-zero learning rate) is not blessed against the v2 baseline;
   in 3 and 4 the server keeps answering with v2.

It prints, from this run: push → AVAILABLE time of v2, and the first request's latency on a new
version with warmup records (v2 as pushed) and without (v2's files less ``assets.extra``, pushed
as one more version at the end).
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import grpc
import numpy as np
import pytest
import tensorflow as tf
from tensorflow_serving.apis import (
    get_model_status_pb2,
    model_service_pb2_grpc,
    predict_pb2,
    prediction_service_pb2_grpc,
)

from components import example_gen, features, pusher
from pipeline.configs import PipelineConfig
from serving import warmup
from tests.conftest import PIPELINE_NODES, REPO, clean_env, mnist_tfx
from tests.serving_conftest_helpers import free_port

pytestmark = pytest.mark.slow

DAG_ID = "mnist-tfx"
SPANS = 30  # span N of 30: 2,000 training images each
LOOP_ENV = {  # small slices; a drop of up to 0.2 from the baseline is tolerated, a near-chance model is not
    "MNIST_TFX_TRAIN_LIMIT": "500",
    "MNIST_TFX_EVAL_LIMIT": "200",
    "MNIST_TFX_EPOCHS": "1",
    "MNIST_TFX_MIN_ACCURACY": "0.05",
    "MNIST_TFX_MAX_ACCURACY_DROP": "0.2",
}
SPAN_TASKS = (*PIPELINE_NODES, "span_range_resolver")  # the DAG's tasks with a span layout
CLIENT_SECONDS = 3600  # the client stops by then at the latest
RPC_TIMEOUT_S = 30
AVAILABLE = get_model_status_pb2.ModelVersionStatus.State.AVAILABLE


@dataclasses.dataclass
class Answer:
    sent: float  # time.monotonic()
    seconds: float
    version: int | None  # None: the request failed
    error: str = ""
    probabilities: np.ndarray | None = None


class Client(threading.Thread):
    """Sends one Predict after another until stopped (or CLIENT_SECONDS); keeps every answer."""

    def __init__(self, grpc_address: str, images: np.ndarray):
        super().__init__(daemon=True)
        self.answers: list[Answer] = []
        self.stop = threading.Event()
        self._stub = prediction_service_pb2_grpc.PredictionServiceStub(grpc.insecure_channel(grpc_address))
        self._request = predict_pb2.PredictRequest()
        self._request.model_spec.name = features.MODEL_NAME
        self._request.model_spec.signature_name = features.SIGNATURE_PIXELS
        self._request.inputs[features.INPUT_IMAGES].CopyFrom(tf.make_tensor_proto(images.astype(np.float32)))

    def run(self) -> None:
        deadline = time.monotonic() + CLIENT_SECONDS
        while not self.stop.is_set() and time.monotonic() < deadline:
            sent = time.monotonic()
            try:
                response = self._stub.Predict(self._request, timeout=RPC_TIMEOUT_S)
            except grpc.RpcError as err:
                self.answers.append(Answer(sent, time.monotonic() - sent, None, f"{err.code()}: {err.details()}"))
                time.sleep(0.05)  # before any version is loaded; still no pause once serving
                continue
            probabilities = tf.make_ndarray(response.outputs[features.OUTPUT_PROBABILITIES])
            self.answers.append(
                Answer(sent, time.monotonic() - sent, response.model_spec.version.value, "", probabilities)
            )

    def since_first_answer(self) -> list[Answer]:
        first = next(i for i, a in enumerate(self.answers) if a.version is not None)
        return self.answers[first:]


class Watcher(threading.Thread):
    """Records when each version folder appears, and when the server first reports it AVAILABLE."""

    def __init__(self, grpc_address: str, base: Path):
        super().__init__(daemon=True)
        self.appeared: dict[int, float] = {}
        self.available: dict[int, float] = {}
        self.stop = threading.Event()
        self._base = base
        self._stub = model_service_pb2_grpc.ModelServiceStub(grpc.insecure_channel(grpc_address))

    def run(self) -> None:
        deadline = time.monotonic() + CLIENT_SECONDS
        while not self.stop.is_set() and time.monotonic() < deadline:
            now = time.monotonic()
            for version in pusher.numeric_versions(self._base):
                self.appeared.setdefault(version, now)
            request = get_model_status_pb2.GetModelStatusRequest()
            request.model_spec.name = features.MODEL_NAME
            try:
                for status in self._stub.GetModelStatus(request, timeout=RPC_TIMEOUT_S).model_version_status:
                    if status.state == AVAILABLE:
                        self.available.setdefault(status.version, time.monotonic())
            except grpc.RpcError:
                pass  # no version yet
            time.sleep(0.02)


def _wait_for(condition, what: str, timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


def _first_on(client: Client, version: int) -> Answer:
    return next(a for a in client.answers if a.version == version)


@pytest.fixture(scope="module")
def loop_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A home whose data folder fills with span folders (cut from the session's verified files)."""
    home = tmp_path_factory.mktemp("loop-home")
    (home / "data").mkdir()
    return home


def _loop_env(home: Path) -> dict[str, str]:
    return clean_env(home, LOOP_ENV)


def _airflow_setup(home: Path) -> subprocess.CompletedProcess[str]:
    """``make airflow``'s script in ``home`` (as tests/test_airflow.py sets it up)."""
    return subprocess.run(
        ["bash", "scripts/airflow.sh"],
        cwd=REPO,
        env=_loop_env(home),
        capture_output=True,
        text=True,
        timeout=600,
    )


def _airflow_task_states(home: Path, logical_date: str) -> dict[str, str]:
    with sqlite3.connect(home / "airflow" / "airflow.db") as db:
        rows = db.execute(
            "SELECT task_id, state FROM task_instance WHERE dag_id = ? AND run_id = ?",
            (DAG_ID, f"manual__{logical_date}T00:00:00+00:00"),
        )
        return dict(rows)


def _airflow_dags_test(home: Path, logical_date: str) -> subprocess.CompletedProcess[str]:
    """One run of the DAG now, as a scheduled interval would run it."""
    script = f'source "{home}/airflow/env.sh" && exec airflow dags test {DAG_ID} {logical_date}'
    return subprocess.run(
        ["bash", "-c", script], cwd=REPO, env=_loop_env(home), capture_output=True, text=True, timeout=1500
    )


def _new_span(home: Path, span: int, source: Path) -> None:
    """Span ``span`` arrives: ``<home>/data/span-N/``, cut from the official files in ``source``."""
    done = mnist_tfx("data", "--span", str(span), "--of", str(SPANS), "--source", str(source), home=home, timeout=600)
    assert done.returncode == 0, done.output[-3000:]


def test_retrain_validate_push_and_swap_without_a_failed_request(
    loop_home: Path, data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    home = loop_home
    started = time.monotonic()
    for name, value in LOOP_ENV.items():
        monkeypatch.setenv(name, value)
    base = PipelineConfig(home=home).serving_model_dir
    base.mkdir(parents=True)
    grpc_port, rest_port = free_port(), free_port()
    server = subprocess.Popen(
        [
            str(Path(sys.executable).parent / "mnist-tfx"),
            "serve",
            f"--port={grpc_port}",
            f"--rest_api_port={rest_port}",
            f"--model_base_path={base}",
            "--file_system_poll_wait_seconds=1",
        ],
        cwd=REPO,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    images, _ = example_gen.read_split(str(data_dir / "t10k-*"), limit=4)
    client = Client(f"127.0.0.1:{grpc_port}", images)
    watcher = Watcher(f"127.0.0.1:{grpc_port}", base)
    try:
        client.start()
        watcher.start()

        # 1. Span 1 → v1.
        _new_span(home, 1, data_dir)
        run = mnist_tfx("run", home=home)
        assert run.returncode == 0, run.output[-5000:]
        (v1,) = pusher.numeric_versions(base)
        _wait_for(lambda: any(a.version == v1 for a in client.answers), "answers from v1")

        # 2. Span 2 → a run through Airflow → v2; the server swaps to it.
        _new_span(home, 2, data_dir)
        setup = _airflow_setup(home)
        assert setup.returncode == 0, setup.stdout[-3000:] + setup.stderr[-3000:]
        dag_run = _airflow_dags_test(home, "2024-06-02")
        assert dag_run.returncode == 0, (dag_run.stdout + dag_run.stderr)[-5000:]
        assert _airflow_task_states(home, "2024-06-02") == {task: "success" for task in SPAN_TASKS}
        v2 = pusher.numeric_versions(base)[-1]
        assert v2 > v1
        _wait_for(lambda: any(a.version == v2 for a in client.answers), "answers from v2")
        assert (base / str(v2) / warmup.ASSETS_EXTRA_DIRECTORY / warmup.WARMUP_REQUESTS_FILENAME).is_file()
        report = mnist_tfx("report", "--home", str(home), home=home)
        assert report.returncode == 0, report.output[-5000:]
        page = Path(report.output.strip().splitlines()[-1]).read_text(encoding="utf-8")
        assert "mnist-tfx run manual__2024-06-02T00:00:00+00:00" in page
        assert '<span id="spans">span 2</span>' in page

        # 3. A candidate that a model server cannot answer with: blessed by the Evaluator, not pushed.
        monkeypatch.setenv("MNIST_TFX_RUN_FN", "tests.broken_classify_run_fn.run_fn")
        monkeypatch.setenv("PYTHONPATH", str(REPO))
        broken = mnist_tfx("run", home=home)
        assert broken.returncode == 0, broken.output[-5000:]
        assert "blessing: BLESSED" in broken.output
        assert "infra validation: NOT BLESSED by " in broken.output
        monkeypatch.delenv("MNIST_TFX_RUN_FN")

        # 4. A regressed candidate: not blessed against the v2 baseline.
        regressed = mnist_tfx("run", "--learning-rate", "1e-7", home=home)
        assert regressed.returncode == 0, regressed.output[-5000:]
        assert "blessing: NOT BLESSED (nothing pushed)" in regressed.output
        assert pusher.numeric_versions(base) == [v1, v2]
        last_v2 = time.monotonic()

        # The same model without warmup records, as one more version: its first request runs cold.
        cold = Path(str(base / str(v2)) + "-cold")
        shutil.copytree(base / str(v2), cold)
        shutil.rmtree(cold / warmup.ASSETS_EXTRA_DIRECTORY)
        v3, _ = pusher.push_atomically(cold, base)
        _wait_for(lambda: any(a.version == v3 for a in client.answers), "answers from the copy without warmup")
    finally:
        client.stop.set()
        watcher.stop.set()
        client.join(RPC_TIMEOUT_S + 5)
        watcher.join(RPC_TIMEOUT_S + 5)
        server.terminate()
        server.wait(30)

    served = client.since_first_answer()
    failed = [a for a in served if a.version is None]
    assert not failed, f"{len(failed)} of {len(served)} requests failed, e.g. {failed[0].error}"
    on_v2 = [a for a in served if a.version == v2]
    after_v2 = served[served.index(on_v2[0]) :]
    assert {a.version for a in after_v2 if a.sent <= last_v2} == {v2}  # never back to v1; v2 through 3 and 4
    expected = (
        tf.saved_model.load(str(base / str(v2)))
        .signatures[features.SIGNATURE_PIXELS](images=tf.constant(images, tf.float32))[features.OUTPUT_PROBABILITIES]
        .numpy()
    )
    for answer in on_v2:
        np.testing.assert_allclose(answer.probabilities, expected, atol=1e-5)

    steady = np.median([a.seconds for a in on_v2[1:]])
    print(
        f"\nloop: {len(served)} requests, 0 failed; total {time.monotonic() - started:.0f} s"
        f"\nv2 push → AVAILABLE: {watcher.available[v2] - watcher.appeared[v2]:.2f} s"
        f"\nfirst request on the new version: with warmup records {_first_on(client, v2).seconds * 1000:.1f} ms,"
        f" without {_first_on(client, v3).seconds * 1000:.1f} ms (steady median {steady * 1000:.1f} ms)"
    )
