"""Everything on gs://, against a real local GCS server (tests/gcs_emulator.py), no network.

Each step runs in a subprocess whose environment points TensorFlow and Beam at the emulator
(TensorFlow reads its filesystem settings once, at import). What is on the bucket is read back with
the google-cloud-storage client, independently of the code under test.
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from bench.common import TF_SERVING_TESTDATA, free_port
from components.mnist_data import FILES
from tests.conftest import PIPELINE_NODES, SLICE_ARGS
from tests.gcs_emulator import Gcs, running

REPO = Path(__file__).resolve().parents[1]
HALF_PLUS_TWO = TF_SERVING_TESTDATA / "saved_model_half_plus_two_cpu" / "00000123"
HALF_PLUS_THREE = TF_SERVING_TESTDATA / "saved_model_half_plus_three" / "00000123"
SERVE_TIMEOUT_S = 180.0  # the server's start and each version change it must pick up
HALF_PLUS_TWO_FILES = [
    "assets/foo.txt",
    "saved_model.pb",
    "variables/variables.data-00000-of-00001",
    "variables/variables.index",
]

# Pushes argv[1] to argv[2] with components.pusher.push, printing "version written" per push; with
# argv[3] = "staging" or "version", the process SIGKILLs itself at that point of the push: in the
# middle of the upload to staging, or with every file but saved_model.pb copied to the version.
PUSH_SCRIPT = """
import os, signal, sys
from components import pusher
model, base, die_in = sys.argv[1], sys.argv[2], sys.argv[3] if len(sys.argv) > 3 else ""
real_copy, copies = pusher.fileio.copy, []
def copy(source, target, overwrite=False):
    top = target[len(base) + 1:].split("/")[0]
    if die_in == "staging" and top.startswith(pusher.STAGING_PREFIX) and len(copies) == 2:
        os.kill(os.getpid(), signal.SIGKILL)
    if die_in == "version" and top.isdigit() and target.endswith("/saved_model.pb"):
        os.kill(os.getpid(), signal.SIGKILL)
    copies.append(target)
    real_copy(source, target, overwrite)
pusher.fileio.copy = copy
for _ in range(1 if die_in else 2):
    version, written = pusher.push(model, base)
    print("pushed", version, written, flush=True)
"""


@pytest.fixture(scope="module")
def gcs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gcs]:
    """One emulator for the module's tests; each test writes under its own prefix."""
    with running(tmp_path_factory.mktemp("gcs")) as store:
        yield store


def _run(gcs: Gcs, *args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, *args], cwd=REPO, env=gcs.env, capture_output=True, text=True, timeout=timeout
    )


def _tops(gcs: Gcs, prefix: str) -> set[str]:
    """The first path component of every object under ``prefix/``: what TF Serving's poller lists."""
    return {name[len(prefix) + 1 :].split("/")[0] for name in gcs.objects(prefix + "/")} - {""}


@pytest.mark.slow
def test_push_to_gs_is_tf_serving_layout_and_an_interrupted_push_shows_no_loadable_version(gcs: Gcs) -> None:
    base_path = "serving_model/half_plus_two"
    base = gcs.uri(base_path)

    died = _run(gcs, "-c", PUSH_SCRIPT, str(HALF_PLUS_TWO), base, "staging")
    assert died.returncode == -9, died.stderr[-3000:]
    tops = _tops(gcs, base_path)
    assert tops and all(t.startswith(".tmp-") for t in tops), tops  # no numeric version appeared

    died = _run(gcs, "-c", PUSH_SCRIPT, str(HALF_PLUS_TWO), base, "version")
    assert died.returncode == -9, died.stderr[-3000:]
    [partial] = [t for t in _tops(gcs, base_path) if t.isdigit()]
    partial_files = {n.split("/", 3)[3] for n in gcs.objects(f"{base_path}/{partial}/") if not n.endswith("/")}
    assert "saved_model.pb" not in partial_files and "variables/variables.index" in partial_files

    done = _run(gcs, "-c", PUSH_SCRIPT, str(HALF_PLUS_TWO), base)
    assert done.returncode == 0, done.stderr[-3000:]
    (_, version, written), (_, again, rewritten) = (line.split() for line in done.stdout.splitlines())
    assert (written, again, rewritten) == ("True", version, "False")  # the unchanged model is not pushed twice
    assert _tops(gcs, base_path) == {version}  # leftovers of both interrupted pushes are gone
    pushed = gcs.objects(f"{base_path}/{version}/")
    files = {name.split("/", 3)[3]: data for name, data in pushed.items() if not name.endswith("/")}
    assert sorted(files) == HALF_PLUS_TWO_FILES
    assert all(data == (HALF_PLUS_TWO / name).read_bytes() for name, data in files.items())


# TensorFlow writes to and reads back from gs:// (argv[1]): a 1 MB object whole and from offsets, and a
# checkpoint of a 6.4 MB variable (its index is read footer first, then backwards). Each of these
# failed or crashed the process with the tensorflow-io plugin (tests/gcs_emulator.py says why).
TF_READS_SCRIPT = """
import sys
import time
import numpy as np
import tensorflow as tf
root = sys.argv[1]
data = np.random.default_rng(0).bytes(1_000_000)
with tf.io.gfile.GFile(root + "/blob", "wb") as f:
    f.write(data)
assert tf.io.gfile.GFile(root + "/blob", "rb").read() == data
with tf.io.gfile.GFile(root + "/blob", "rb") as f:
    for offset in (900_000, 5, 200_000):
        f.seek(offset)
        assert f.read(300_000) == data[offset : offset + 300_000], offset
weights = tf.Variable(tf.random.normal([1600, 1000], seed=1))
path = tf.train.Checkpoint(weights=weights).write(root + "/ckpt/weights")
restored = tf.Variable(tf.zeros([1600, 1000]))
tf.train.Checkpoint(weights=restored).read(path).assert_consumed()
assert np.array_equal(restored.numpy(), weights.numpy())
print("read back", flush=True)
"""


@pytest.mark.slow
def test_tensorflow_reads_large_objects_and_checkpoints_back_from_gs(gcs: Gcs) -> None:
    done = _run(gcs, "-c", TF_READS_SCRIPT, gcs.uri("tf-reads"))
    assert done.returncode == 0 and done.stdout == "read back\n", (done.returncode, done.stderr[-3000:])
    assert len(gcs.objects("tf-reads/blob")["tf-reads/blob"]) == 1_000_000


@pytest.mark.slow
def test_data_dest_gs_uploads_the_verified_files_whole(gcs: Gcs, tmp_path: Path) -> None:
    mnist_tfx = str(Path(sys.executable).parent / "mnist-tfx")
    local = subprocess.run(
        [mnist_tfx, "data", "--dest", str(tmp_path / "local")], cwd=REPO, capture_output=True, text=True, timeout=600
    )
    assert local.returncode == 0, local.stderr
    dest = gcs.uri("team", "data")
    done = subprocess.run(
        [mnist_tfx, "data", "--dest", dest + "/"], cwd=REPO, env=gcs.env, capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, done.stderr[-3000:]
    lines = done.stdout.splitlines()
    assert lines[0].startswith("source: ") and sum(line.startswith("verified: ") for line in lines) == 5
    assert [line for line in lines if line.startswith("uploaded: ")] == [
        f"uploaded: {dest}/{name}" for name in sorted(FILES.values())
    ]
    uploaded = {
        name.rsplit("/", 1)[1]: data for name, data in gcs.objects("team/data/").items() if not name.endswith("/")
    }  # makedirs leaves a "directory" placeholder
    assert sorted(uploaded) == sorted(FILES.values())  # no staging object left behind
    for name, data in uploaded.items():
        expected = (tmp_path / "local" / name).read_bytes()
        assert hashlib.sha256(data).hexdigest() == hashlib.sha256(expected).hexdigest(), name


# Writes argv[2] bytes as t10k labels (a valid IDX1 header declaring that many labels) under argv[1],
# beside valid t10k images, then loads t10k from there: prints the file error, or "loaded N".
LOAD_SCRIPT = """
import gzip, sys
import tensorflow as tf
from components import idx, mnist_data
uri, count = sys.argv[1], int(sys.argv[2])
images = mnist_data.FILES["t10k", "images"].removesuffix(".gz")
with tf.io.gfile.GFile(f"{uri}/{images}", "wb") as f:
    f.write((2051).to_bytes(4, "big") + (10).to_bytes(4, "big") + (28).to_bytes(4, "big") * 2 + bytes(10 * 784))
with tf.io.gfile.GFile(f"{uri}/{mnist_data.FILES['t10k', 'labels']}", "wb") as f:
    f.write(gzip.compress((2049).to_bytes(4, "big") + count.to_bytes(4, "big") + bytes(count)))
try:
    print("loaded", len(mnist_data.load(uri, "t10k")[1]))
except idx.DataFileError as error:
    print(error)
"""


@pytest.mark.slow
def test_data_on_gs_is_streamed_and_a_file_declaring_more_than_mnist_is_refused_unread(gcs: Gcs) -> None:
    small = _run(gcs, "-c", LOAD_SCRIPT, gcs.uri("load", "small"), "10")
    assert small.returncode == 0 and small.stdout == "loaded 10\n", small.stderr[-3000:]
    # Gzip makes 64 MB of zeros a 62 KB object: its header is refused before the 64 MB are read.
    bomb = _run(gcs, "-c", LOAD_SCRIPT, gcs.uri("load", "bomb"), str(64_000_000))
    assert bomb.returncode == 0 and "loaded" not in bomb.stdout, bomb.stderr[-3000:]
    assert bomb.stdout.startswith(
        gcs.uri("load", "bomb", "t10k-labels-idx1-ubyte.gz") + ": header declares"
    ), bomb.stdout
    assert "more than the 10000 bytes expected" in bomb.stdout


@pytest.mark.slow
def test_data_dest_with_an_unsupported_scheme_is_refused_before_any_work(tmp_path: Path) -> None:
    from cli.data import main

    assert main(["--dest", "ftp://host/data"], default_dest="unused") == 2


@pytest.mark.slow
def test_whole_pipeline_runs_with_every_root_on_gs_and_pushes_there(gcs: Gcs, data_dir: Path, tmp_path: Path) -> None:
    """`mnist-tfx run` on the e2e slice with home, data, pipeline root and serving root on gs://, MLMD
    in a local SQLite file: every component, InfraValidator's server reading the candidate from the
    bucket, and a version pushed in TF Serving's layout."""
    from pipeline import configs
    from reports import run_record

    home, mnist_tfx = gcs.uri("run-home"), str(Path(sys.executable).parent / "mnist-tfx")
    upload = _run(
        gcs,
        "-c",
        "import sys; from components import uploads; uploads.upload(sys.argv[1], sys.argv[3:], sys.argv[2])",
        str(data_dir),
        f"{home}/data",
        *sorted(FILES.values()),
    )
    assert upload.returncode == 0, upload.stderr[-3000:]
    metadata = tmp_path / "metadata.sqlite"  # MLMD stays local: SQLite cannot live on a bucket

    run = subprocess.run(
        [mnist_tfx, "run", "--home", home, "--metadata-path", str(metadata), *SLICE_ARGS],
        cwd=REPO,
        env=gcs.env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        timeout=1200,
    )
    assert run.returncode == 0, run.stdout[-5000:]
    store = run_record.connect(metadata)
    states = {node.node_id: node.state for node in run_record.latest_run(store, configs.PIPELINE_NAME)}
    assert states == {name: "COMPLETE" for name in PIPELINE_NODES}, states
    assert "infra validation: BLESSED by mnist-tfx serve" in run.stdout  # it served the candidate from gs://
    artifacts = [a.uri for a in store.get_artifacts()]
    assert artifacts and all(uri.startswith(f"{home}/pipelines/mnist-tfx/") for uri in artifacts)
    schema_gen = gcs.objects("run-home/pipelines/mnist-tfx/SchemaGen/")
    [schema] = [data for name, data in schema_gen.items() if name.endswith("/schema.pbtxt")]
    assert b'name: "image"' in schema and b'name: "label"' in schema

    [version] = _tops(gcs, "run-home/serving_model/mnist")  # one numeric version, no staging prefix left
    assert version.isdigit() and f"pushed: {home}/serving_model/mnist/{version} " in run.stdout
    pushed = {name.split("/", 4)[4] for name in gcs.objects(f"run-home/serving_model/mnist/{version}/")}
    assert {"saved_model.pb", "variables/variables.index", "assets.extra/tf_serving_warmup_requests"} <= pushed
    assert any(name.startswith("variables/variables.data-") for name in pushed)

    # The report reads the run's artifacts, the pushed model and the data from the bucket; it is written locally.
    def report(*out: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [mnist_tfx, "report", "--home", home, "--metadata-path", str(metadata), *out],
            cwd=REPO,
            env=gcs.env,
            capture_output=True,
            text=True,
            timeout=600,
        )

    written = report("--out", str(tmp_path / "report"))
    assert written.returncode == 0, written.stderr[-3000:]
    pictures = ("training_curves", "confusion_matrix", "per_digit_accuracy", "misclassified", "data_grid")
    assert all((tmp_path / "report" / f"{name}.png").stat().st_size > 0 for name in pictures)
    assert "not available" not in (tmp_path / "report" / "report.html").read_text()
    nowhere = report()  # no local home to put it in
    assert nowhere.returncode == 2 and "set --out DIR" in nowhere.stderr


def _add_warmup_record(model: Path, value: float) -> None:
    """TF Serving's warmup file in ``model``: one Predict request of ``x = [value]``."""
    import tensorflow as tf
    from tensorflow_serving.apis import predict_pb2, prediction_log_pb2

    request = predict_pb2.PredictRequest()
    request.inputs["x"].CopyFrom(tf.make_tensor_proto([value], dtype=tf.float32))
    log = prediction_log_pb2.PredictionLog(predict_log=prediction_log_pb2.PredictLog(request=request))
    (model / "assets.extra").mkdir()
    with tf.io.TFRecordWriter(str(model / "assets.extra" / "tf_serving_warmup_requests")) as records:
        records.write(log.SerializeToString())


def _serving(rest: str, model: str, version: int) -> bool:
    """Whether the server answers that ``version`` of ``model`` is AVAILABLE."""
    try:
        answer = requests.get(f"{rest}/v1/models/{model}/versions/{version}", timeout=5)
    except requests.RequestException:
        return False
    return answer.status_code == 200 and answer.json()["model_version_status"][0]["state"] == "AVAILABLE"


def _wait_serving(server: subprocess.Popen, log: Path, rest: str, model: str, version: int) -> None:
    deadline = time.monotonic() + SERVE_TIMEOUT_S
    while not _serving(rest, model, version):
        assert server.poll() is None, log.read_text()[-3000:]
        assert time.monotonic() < deadline, f"version {version} not served: {log.read_text()[-3000:]}"
        time.sleep(0.5)


@pytest.mark.slow
def test_serve_loads_versions_pushed_to_gs_and_picks_up_the_next_one(gcs: Gcs, tmp_path: Path) -> None:
    name, base = "half_plus_two", gcs.uri("serving_model", "half_plus_two")
    first = tmp_path / "first"
    shutil.copytree(HALF_PLUS_TWO, first)
    _add_warmup_record(first, 1.0)  # replayed from the bucket before the version serves
    (first / "batching_params.pbtxt").write_text("max_batch_size { value: 4 }\n")  # read from the bucket too
    pushed = _run(gcs, "-c", PUSH_SCRIPT, str(first), base)
    assert pushed.returncode == 0, pushed.stderr[-3000:]
    version = int(pushed.stdout.split()[1])

    rest_port, log = free_port(), tmp_path / "serve.log"
    argv = [
        f"--model_name={name}",
        f"--model_base_path={base}",
        f"--port={free_port()}",
        f"--rest_api_port={rest_port}",
    ]
    mnist_tfx = str(Path(sys.executable).parent / "mnist-tfx")
    with log.open("wb") as out:
        server = subprocess.Popen(
            [
                mnist_tfx,
                "serve",
                *argv,
                "--file_system_poll_wait_seconds=1",
                "--enable_batching",
                "--enable_per_model_batching_parameters",
            ],
            cwd=REPO,
            env=gcs.env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    rest = f"http://127.0.0.1:{rest_port}"
    try:
        _wait_serving(server, log, rest, name, version)
        assert "Number of warmup records read: 1." in log.read_text()
        predict = requests.post(f"{rest}/v1/models/{name}:predict", json={"instances": [1.0, 2.0, 5.0]}, timeout=30)
        assert predict.json() == {"predictions": [2.5, 3.0, 4.5]}
        too_large = requests.post(f"{rest}/v1/models/{name}:predict", json={"instances": [1.0] * 5}, timeout=30)
        assert too_large.status_code == 400  # batched with the version's own batching_params.pbtxt
        assert "Task size 5 is larger than maximum input batch size 4" in too_large.json()["error"]

        pushed = _run(gcs, "-c", PUSH_SCRIPT, str(HALF_PLUS_THREE), base)  # a new model: a new version
        assert pushed.returncode == 0, pushed.stderr[-3000:]
        newer = int(pushed.stdout.split()[1])
        assert newer > version
        _wait_serving(server, log, rest, name, newer)
        predict = requests.post(f"{rest}/v1/models/{name}:predict", json={"instances": [1.0, 2.0, 5.0]}, timeout=30)
        assert predict.json() == {"predictions": [3.5, 4.0, 5.5]}
        unbatched = requests.post(f"{rest}/v1/models/{name}:predict", json={"instances": [1.0] * 5}, timeout=30)
        assert unbatched.json() == {"predictions": [3.5] * 5}  # no batching_params.pbtxt: not batched
    finally:
        server.terminate()
        server.wait(timeout=60)
