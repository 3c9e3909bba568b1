"""Serving parity, loading half (issue 11): every SavedModel TF Serving loads (TF1 and TF2, ref
variables, state kept across requests, `--saved_model_tags`), warmup replay before a version is
AVAILABLE, TF Serving's batching files, and gRPC MultiInference — all against a started server
over real HTTP and gRPC."""

from __future__ import annotations

import contextlib
import dataclasses
from pathlib import Path
from typing import Iterator

import grpc
import numpy as np
import pytest
import requests

from serving.options import ServerOptions, parse_args
from tests.serving_conftest_helpers import FIXTURES, RunningServer, free_port, single_model_config

COUNTER_TAGS = ("serve",)
INCR, GET = "incr_counter", "get_counter"


def build_counter_model(path: Path, tags: tuple[str, ...] = COUNTER_TAGS) -> None:
    """A TF1 graph with a reference variable `counter` (use_resource=False) that every run of
    `incr_counter` (predict), `regress` or `classify` (examples in, one value per example out)
    increments once through `incr_counter_op/AssignAdd`; `get_counter` reads it."""
    import tensorflow as tf

    v1 = tf.compat.v1
    with tf.Graph().as_default() as graph, v1.Session(graph=graph) as session:
        counter = v1.Variable(0.0, use_resource=False, name="counter")
        x = v1.placeholder(tf.float32, [None], name="x")
        examples = v1.placeholder(tf.string, [None], name="tf_example")
        with tf.name_scope("incr_counter_op"):
            incremented = v1.assign_add(counter, 1.0)  # a float_ref output
        per_example = tf.fill(tf.shape(examples), incremented)
        read = tf.identity(counter) + 0.0 * tf.reduce_sum(x)
        info = v1.saved_model.utils.build_tensor_info
        signature = v1.saved_model.signature_def_utils.build_signature_def
        signatures = {
            INCR: signature({"x": info(x)}, {"counter": info(incremented)}, "tensorflow/serving/predict"),
            GET: signature({"x": info(x)}, {"counter": info(read)}, "tensorflow/serving/predict"),
            "regress": signature(
                {"inputs": info(examples)}, {"outputs": info(per_example)}, "tensorflow/serving/regress"
            ),
            "classify": signature(
                {"inputs": info(examples)}, {"scores": info(per_example[:, None])}, "tensorflow/serving/classify"
            ),
        }
        session.run(v1.global_variables_initializer())
        builder = v1.saved_model.Builder(str(path))
        builder.add_meta_graph_and_variables(session, list(tags), signature_def_map=signatures)
        builder.save()


def warmup_records(iterations_of_each_kind: int = 1) -> list[bytes]:
    """PredictionLogs of every kind TF Serving replays; each increments the counter once."""
    import tensorflow as tf
    from tensorflow_serving.apis import (
        classification_pb2,
        inference_pb2,
        predict_pb2,
        prediction_log_pb2,
        regression_pb2,
    )

    def with_example(request_input) -> None:
        request_input.example_list.examples.add().features.feature["f"].float_list.value.append(1.0)

    predict = predict_pb2.PredictRequest()
    predict.model_spec.name, predict.model_spec.signature_name = "any name: ignored", INCR
    predict.inputs["x"].CopyFrom(tf.make_tensor_proto(np.array([1.0], np.float32)))
    regress = regression_pb2.RegressionRequest()
    regress.model_spec.signature_name = "regress"
    with_example(regress.input)
    classify = classification_pb2.ClassificationRequest()
    classify.model_spec.signature_name = "classify"
    with_example(classify.input)
    multi = inference_pb2.MultiInferenceRequest()
    with_example(multi.input)
    for signature, method in (("regress", "tensorflow/serving/regress"), ("classify", "tensorflow/serving/classify")):
        task = multi.tasks.add(method_name=method)
        task.model_spec.name, task.model_spec.signature_name = "counter", signature
    logs = [
        prediction_log_pb2.PredictionLog(predict_log={"request": predict}),
        prediction_log_pb2.PredictionLog(regress_log={"request": regress}),
        prediction_log_pb2.PredictionLog(classify_log={"request": classify}),
        prediction_log_pb2.PredictionLog(multi_inference_log={"request": multi}),
    ]
    return [log.SerializeToString() for log in logs] * iterations_of_each_kind


def write_warmup(version_dir: Path, records: list[bytes]) -> None:
    import tensorflow as tf

    (version_dir / "assets.extra").mkdir(parents=True, exist_ok=True)
    with tf.io.TFRecordWriter(str(version_dir / "assets.extra" / "tf_serving_warmup_requests")) as writer:
        for record in records:
            writer.write(record)


@contextlib.contextmanager
def serve_model(config_text: str, **options) -> Iterator[tuple[RunningServer, object]]:
    """Our ModelServer in this process on free loopback ports, with the given ServerOptions."""
    from serving.model_config import LoadRetries, parse_model_server_config
    from serving.monitoring_config import DEFAULT_PROMETHEUS_PATH
    from serving.server import ModelServer

    options.setdefault("load_retries", LoadRetries(max_num_load_retries=0))  # a failed load ends at once
    options.setdefault("prometheus_path", DEFAULT_PROMETHEUS_PATH)  # as with a --monitoring_config_file
    server = ModelServer(
        ServerOptions(
            models=parse_model_server_config(config_text),
            port=free_port(),
            rest_api_port=free_port(),
            file_system_poll_wait_seconds=0,
            **options,
        )
    )
    server.start()
    try:
        yield RunningServer("mnist-tfx", f"http://{server.rest_address}", server.grpc_address), server
    finally:
        server.stop()


def status(server: RunningServer, model: str) -> dict:
    return requests.get(f"{server.rest}/v1/models/{model}", timeout=30).json()["model_version_status"][0]


def counter(server: RunningServer, signature: str = GET) -> float:
    got = requests.post(
        f"{server.rest}/v1/models/counter:predict",
        timeout=30,
        json={"signature_name": signature, "inputs": {"x": [0.0]}},
    )
    assert got.status_code == 200, got.text
    return got.json()["outputs"]


# ------------------------------------------------------------------ loading


def test_tf_servings_test_models_load_and_answer():
    """TF1 (half_plus_three: `Shapes must be equal rank` before), TF1 and TF2 half_plus_two,
    and both versions of the two-version model."""
    models = {
        "three": "saved_model_half_plus_three",
        "two": "saved_model_half_plus_two_cpu",
        "tf2": "saved_model_half_plus_two_tf2_cpu",
        "two_versions": "saved_model_half_plus_two_2_versions",
    }
    config = (
        "model_config_list {"
        + "".join(
            f'config {{ name: "{name}" base_path: "{FIXTURES / directory}" model_platform: "tensorflow" '
            f'{"model_version_policy { all {} }" if name == "two_versions" else ""} }}'
            for name, directory in models.items()
        )
        + "}"
    )
    with serve_model(config) as (server, _):

        def predict(path: str) -> list:
            got = requests.post(f"{server.rest}/v1/models/{path}:predict", json={"instances": [1.0, 2.0, 5.0]})
            assert got.status_code == 200, got.text
            return got.json()["predictions"]

        assert predict("three") == [3.5, 4.0, 5.5]
        assert predict("two") == predict("tf2") == [2.5, 3.0, 4.5]
        assert predict("two_versions/versions/123") == predict("two_versions/versions/124") == [2.5, 3.0, 4.5]
        # Its regress signature takes floats where tf.Examples go: the session's own error, as TF Serving.
        regress = requests.post(
            f"{server.rest}/v1/models/three/versions/123:regress",
            json={"signature_name": "tensorflow/serving/regress", "examples": [{"x": 4.0}]},
        )
        assert (regress.status_code, regress.json()) == (
            400,
            {"error": "Expects arg[0] to be float but string is provided"},
        )
        # Shapes are not re-checked against the signature, as in TF Serving (x is [None, 1] there).
        assert requests.post(f"{server.rest}/v1/models/two:predict", json={"inputs": {"x": [[1.0, 3.0]]}}).json() == {
            "outputs": [[2.5, 3.5]]
        }


def test_reference_variables_load_and_keep_state_across_requests(tmp_path):
    build_counter_model(tmp_path / "counter" / "1")
    with serve_model(single_model_config("counter", tmp_path / "counter")) as (server, _):
        assert status(server, "counter")["state"] == "AVAILABLE"
        assert counter(server) == 0.0
        assert [counter(server, INCR) for _ in range(3)] == [1.0, 2.0, 3.0]
        assert counter(server) == 3.0
        regress = requests.post(
            f"{server.rest}/v1/models/counter:regress",
            json={"signature_name": "regress", "examples": [{"f": 1.0}, {"f": 2.0}]},
        )
        assert regress.json() == {"results": [4.0, 4.0]}  # one run for the batch of two


def test_saved_model_tags_pick_the_meta_graph(tmp_path):
    build_counter_model(tmp_path / "counter" / "1", tags=("serve", "tpu"))
    with serve_model(single_model_config("counter", tmp_path / "counter")) as (server, _):
        got = status(server, "counter")
        assert got["state"] == "END"
        assert got["status"]["error_code"] == "NOT_FOUND"
        assert "Could not find meta graph def matching supplied tags: { serve }" in got["status"]["error_message"]
    config = single_model_config("counter", tmp_path / "counter")
    with serve_model(config, saved_model_tags=("tpu", "serve")) as (server, _):
        assert status(server, "counter")["state"] == "AVAILABLE"
        assert counter(server, INCR) == 1.0


def test_loading_and_warmup_flags():
    options = parse_args(
        [
            "--saved_model_tags=serve,gpu",
            "--enable_model_warmup=false",
            "--num_request_iterations_for_warmup=3",
            "--enable_batching",
            "--enable_per_model_batching_parameters",
        ],
        "/m",
    )
    assert options.saved_model_tags == ("serve", "gpu")
    assert options.enable_model_warmup is False
    assert options.num_request_iterations_for_warmup == 3
    assert options.enable_per_model_batching_parameters is True
    defaults = parse_args([], "/m")
    assert (
        defaults.saved_model_tags,
        defaults.enable_model_warmup,
        defaults.num_request_iterations_for_warmup,
        defaults.enable_per_model_batching_parameters,
    ) == (("serve",), True, 1, False)
    assert parse_args(["--num_request_iterations_for_warmup=0"], "/m").num_request_iterations_for_warmup == 1


# ------------------------------------------------------------------- warmup


@pytest.mark.parametrize("iterations", [1, 3])
def test_warmup_replays_every_record_before_the_version_is_available(tmp_path, iterations):
    version = tmp_path / "counter" / "1"
    build_counter_model(version)
    records = warmup_records(iterations_of_each_kind=2)  # 8 records, 4 kinds
    write_warmup(version, records)
    with serve_model(
        single_model_config("counter", tmp_path / "counter"), num_request_iterations_for_warmup=iterations
    ) as (server, _):
        assert status(server, "counter")["state"] == "AVAILABLE"
        assert counter(server) == len(records) * iterations
        metrics = requests.get(f"{server.rest}/monitoring/prometheus/metrics").text
    assert f'model_warmup_records_total{{model_path="{version}",status="OK"}} {len(records)}.0' in metrics
    assert f'model_warmup_latency_count{{model_path="{version}",status="OK"}} 1.0' in metrics


def test_warmup_can_be_disabled(tmp_path):
    version = tmp_path / "counter" / "1"
    build_counter_model(version)
    write_warmup(version, warmup_records())
    with serve_model(single_model_config("counter", tmp_path / "counter"), enable_model_warmup=False) as (server, _):
        assert counter(server) == 0.0


def _failing_warmup(tmp_path: Path, records: list[bytes], wording: str, code: str) -> None:
    version = tmp_path / "counter" / "1"
    build_counter_model(version)
    write_warmup(version, records)
    with serve_model(single_model_config("counter", tmp_path / "counter")) as (server, _):
        got = status(server, "counter")
        assert got["state"] == "END", got
        assert got["status"]["error_code"] == code
        assert wording in got["status"]["error_message"]
        assert (
            requests.post(f"{server.rest}/v1/models/counter:predict", json={"inputs": {"x": [0.0]}}).status_code == 404
        )  # never served


def test_a_failing_warmup_record_fails_the_load(tmp_path):
    from tensorflow_serving.apis import predict_pb2, prediction_log_pb2

    bad = predict_pb2.PredictRequest()
    bad.model_spec.signature_name = "no_such_signature"
    record = prediction_log_pb2.PredictionLog(predict_log={"request": bad}).SerializeToString()
    _failing_warmup(
        tmp_path,
        warmup_records() + [record],
        "after 4 record(s): Serving signature key " '"no_such_signature" not found.',
        "FAILED_PRECONDITION",
    )


def test_more_than_1000_warmup_records_fail_the_load(tmp_path):
    records = warmup_records()[:1] * 1001
    _failing_warmup(tmp_path, records, "Number of warmup records exceeds the maximum (1000) at ", "INVALID_ARGUMENT")


def test_a_warmup_file_that_is_no_tfrecord_fails_the_load(tmp_path):
    version = tmp_path / "counter" / "1"
    build_counter_model(version)
    (version / "assets.extra").mkdir()
    (version / "assets.extra" / "tf_serving_warmup_requests").write_bytes(b"not a TFRecord file at all")
    with serve_model(single_model_config("counter", tmp_path / "counter")) as (server, _):
        got = status(server, "counter")
    assert got["state"] == "END" and got["status"]["error_code"] == "DATA_LOSS"
    assert "Please verify your warmup data is in TFRecord format." in got["status"]["error_message"]


# ----------------------------------------------------------------- batching


def test_tf_servings_batching_config_and_per_model_batching_params(tmp_path):
    """TF Serving's own batching_config.txt is accepted; with --enable_per_model_batching_parameters
    a version is batched with its own batching_params.pbtxt, not at all without one, and a bad
    file fails that version's load."""
    from serving.batching import parse_batching_parameters

    common = (FIXTURES / "batching_config.txt").read_text()
    own = "max_batch_size { value: 4 } allowed_batch_sizes: 2 allowed_batch_sizes: 4"
    for name, params in (("own", own), ("bad", "allowed_batch_sizes: 3")):
        build_counter_model(tmp_path / name / "1")
        (tmp_path / name / "1" / "batching_params.pbtxt").write_text(params)
    build_counter_model(tmp_path / "none" / "1")
    config = (
        "model_config_list {"
        + "".join(
            f'config {{ name: "{n}" base_path: "{tmp_path / n}" model_platform: "tensorflow" }}'
            for n in ("own", "bad", "none")
        )
        + "}"
    )
    with serve_model(config, batching_parameters_text=common) as (server, model_server):
        assert model_server.manager.get_servable("own").batching == parse_batching_parameters(common)
    with serve_model(config, batching_parameters_text=common, enable_per_model_batching_parameters=True) as (
        server,
        model_server,
    ):
        assert model_server.manager.get_servable("own").batching == parse_batching_parameters(own)
        assert model_server.manager.get_servable("none").batching is None
        bad = status(server, "bad")
        assert bad["state"] == "END" and bad["status"]["error_code"] == "INVALID_ARGUMENT"
        assert "Last entry in allowed_batch_sizes must match max_batch_size" in bad["status"]["error_message"]
        # Batched with padding to an allowed size: 3 examples run as one padded batch of 4.
        regress = requests.post(
            f"{server.rest}/v1/models/own:regress", json={"signature_name": "regress", "examples": [{"f": 1.0}] * 3}
        )
        assert regress.json() == {"results": [1.0, 1.0, 1.0]}
        assert requests.post(
            f"{server.rest}/v1/models/own:regress", json={"signature_name": "regress", "examples": [{"f": 1.0}] * 5}
        ).json() == {"error": "Task size 5 is larger than maximum input batch size 4"}


# ----------------------------------------------------------- MultiInference


@dataclasses.dataclass
class MultiInference:
    stub: object

    def __call__(self, tasks: list[tuple[str, str, str]], x_values=(2.0,), features=("x",)):
        from tensorflow_serving.apis import inference_pb2

        request = inference_pb2.MultiInferenceRequest()
        for value in x_values:
            example = request.input.example_list.examples.add()
            for feature in features:
                example.features.feature[feature].float_list.value.append(value)
        for model, signature, method in tasks:
            task = request.tasks.add(method_name=f"tensorflow/serving/{method}")
            task.model_spec.name, task.model_spec.signature_name = model, signature
        return self.stub.MultiInference(request, timeout=30)


@pytest.fixture(scope="module")
def multi_inference():
    from tensorflow_serving.apis import prediction_service_pb2_grpc

    config = single_model_config("half", FIXTURES / "saved_model_half_plus_two_cpu")
    with serve_model(config) as (server, _), grpc.insecure_channel(server.grpc) as channel:
        yield MultiInference(prediction_service_pb2_grpc.PredictionServiceStub(channel))


def test_multi_inference_runs_classify_and_regress_tasks_on_one_input(multi_inference):
    response = multi_inference(
        [
            ("half", "regress_x_to_y", "regress"),
            ("half", "classify_x_to_y", "classify"),
            ("half", "regress_x_to_y2", "regress"),
        ],
        x_values=(2.0, 4.0),
    )
    assert [r.model_spec.signature_name for r in response.results] == [
        "regress_x_to_y",
        "classify_x_to_y",
        "regress_x_to_y2",
    ]
    assert all(r.model_spec.name == "half" and r.model_spec.version.value == 123 for r in response.results)
    assert [r.value for r in response.results[0].regression_result.regressions] == [3.0, 4.0]
    assert [[c.score for c in row.classes] for row in response.results[1].classification_result.classifications] == [
        [3.0],
        [4.0],
    ]
    assert [r.value for r in response.results[2].regression_result.regressions] == [4.0, 5.0]


@pytest.mark.parametrize(
    "tasks, kwargs, code, wording",
    [
        ([("half", "regress_x_to_y", "regress")], {"x_values": ()}, "INVALID_ARGUMENT", "Input is empty"),
        ([("half", "nope", "regress")], {}, "INVALID_ARGUMENT", "Requested signature not found in model graph: nope"),
        (
            [("half", "regress_x_to_y", "regress"), ("other", "regress_x_to_y", "regress")],
            {},
            "INVALID_ARGUMENT",
            "All ModelSpecs in a MultiInferenceRequest must access the same model name.",
        ),
        (
            [("half", "regress_x_to_y", "regress")] * 2,
            {},
            "INVALID_ARGUMENT",
            "Duplicate evaluation of signature: regress_x_to_y",
        ),
        (
            [("half", "serving_default", "predict")],
            {},
            "UNIMPLEMENTED",
            "Unsupported signature method_name: tensorflow/serving/predict",
        ),
        ([], {}, "INVALID_ARGUMENT", "ModelSpec has no name specified."),
        (
            [("missing", "regress_x_to_y", "regress")],
            {},
            "NOT_FOUND",
            "Servable not found for request: Latest(missing)",
        ),
    ],
)
def test_multi_inference_errors_as_tf_serving(multi_inference, tasks, kwargs, code, wording):
    with pytest.raises(grpc.RpcError) as caught:
        multi_inference(tasks, **kwargs)
    assert caught.value.code() == grpc.StatusCode[code]
    assert wording in caught.value.details()


def test_session_callables_are_cached_per_feed_fetch_set_and_bounded(tmp_path, monkeypatch):
    from serving import servable as servable_module

    build_counter_model(tmp_path / "1")
    model = servable_module.Servable("counter", 1, str(tmp_path / "1"))
    x = {"x": np.array([0.0], np.float32)}
    assert model.run(INCR, x)["counter"] == 1.0
    assert model.run(INCR, x)["counter"] == 2.0
    assert len(model._callables) == 1  # noqa: SLF001 - one callable for both runs
    monkeypatch.setattr(servable_module, "MAX_CACHED_CALLABLES", 1)
    assert model.run(GET, x)["counter"] == 2.0  # made, run and dropped: the cache is full
    assert len(model._callables) == 1  # noqa: SLF001
    model.close()


def test_keras_3_model_saved_with_tf_saved_model_save_answers_as_in_process(tmp_path):
    """A Keras 3 model in a tf.Module saved with tf.saved_model.save (a common third-party export;
    components/export.py avoids it): its signature captures variables the checkpoint's restore op
    does not fill; they are restored by name and the answers equal `tf.saved_model.load`'s."""
    import keras
    import tensorflow as tf

    keras.utils.set_random_seed(0)
    model = keras.Sequential(
        [keras.Input((4,)), keras.layers.Dense(8, activation="relu"), keras.layers.Dense(3, activation="softmax")],
        name="Tiny",
    )
    module = tf.Module()
    module.model = model

    @tf.function(input_signature=[tf.TensorSpec([None, 4], tf.float32, name="x")])
    def serve(x):
        return {"probabilities": model(x, training=False)}

    tf.saved_model.save(module, str(tmp_path / "keras" / "1"), signatures={"serving_default": serve})
    x = np.random.default_rng(0).normal(size=(5, 4)).astype(np.float32)
    expected = (
        tf.saved_model.load(str(tmp_path / "keras" / "1"))
        .signatures["serving_default"](x=tf.constant(x))["probabilities"]
        .numpy()
    )
    with serve_model(single_model_config("keras", tmp_path / "keras")) as (server, _):
        got = requests.post(f"{server.rest}/v1/models/keras:predict", json={"instances": x.tolist()})
        assert got.status_code == 200, got.text
    np.testing.assert_allclose(np.array(got.json()["predictions"], np.float32), expected, rtol=0, atol=1e-6)
