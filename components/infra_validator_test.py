"""InfraValidator's executor on a real `mnist-tfx serve` process, with small real SavedModels.

Each model has the pushed model's four signatures (``serving_default`` on pixels,
``predict_image_bytes`` on PNGs, ``predict_examples`` and ``classify`` over serialized tf.Examples);
one answers as the MNIST model does, one answers with the wrong shape.
"""

from __future__ import annotations

import shutil
import time
from collections import Counter
from pathlib import Path

import pytest
import tensorflow as tf
from tensorflow_serving.apis import prediction_log_pb2
from tfx.types import standard_artifacts

from components import example_gen, export, features, infra_blessing, infra_validator

pytestmark = pytest.mark.slow

NUM_EXAMPLES = 3


class _Model(tf.Module):
    """Scores = a fixed softmax over ``width`` classes (10 is well-formed, 3 is not)."""

    def __init__(self, width: int):
        super().__init__()
        self.logits = tf.Variable(tf.range(width, dtype=tf.float32))
        self._spec = {features.IMAGE_KEY: tf.io.FixedLenFeature([features.NUM_PIXELS], tf.int64)}

    def _softmax(self, rows: tf.Tensor) -> tf.Tensor:
        return tf.nn.softmax(tf.tile(self.logits[tf.newaxis, :], [rows, 1]))

    def _scores(self, serialized: tf.Tensor) -> tf.Tensor:
        pixels = tf.io.parse_example(serialized, self._spec)[features.IMAGE_KEY]
        return self._softmax(tf.shape(pixels)[0])

    @staticmethod
    def _answer(scores: tf.Tensor) -> dict[str, tf.Tensor]:
        return {features.OUTPUT_PROBABILITIES: scores, features.OUTPUT_CLASSES: tf.argmax(scores, axis=-1)}

    @tf.function(
        input_signature=[
            tf.TensorSpec([None, *features.PIXELS_SHAPE], features.PIXELS_DTYPE, name=features.INPUT_IMAGES)
        ]
    )
    def predict_pixels(self, images: tf.Tensor) -> dict[str, tf.Tensor]:
        return self._answer(self._softmax(tf.shape(images)[0]))

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name=features.INPUT_IMAGE_BYTES)])
    def predict_image_bytes(self, image_bytes: tf.Tensor) -> dict[str, tf.Tensor]:
        decoded = tf.map_fn(  # a request with bytes that are not a PNG fails
            lambda png: tf.shape(tf.io.decode_png(png, channels=1))[0], image_bytes, fn_output_signature=tf.int32
        )
        return self._answer(self._softmax(tf.shape(decoded)[0]))

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name=features.INPUT_EXAMPLES)])
    def predict_examples(self, examples: tf.Tensor) -> dict[str, tf.Tensor]:
        return self._answer(self._scores(examples))

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="inputs")])
    def classify(self, inputs: tf.Tensor) -> dict[str, tf.Tensor]:
        scores = self._scores(inputs)
        names = tf.strings.as_string(tf.range(tf.shape(scores)[1]))
        return {"classes": tf.tile(names[tf.newaxis, :], [tf.shape(scores)[0], 1]), "scores": scores}


def _model_artifact(root: Path, width: int) -> standard_artifacts.Model:
    """A Model artifact as the Trainer writes it: the SavedModel under ``Format-Serving``."""
    module = _Model(width)
    serving = root / "Format-Serving"
    tf.saved_model.save(
        module,
        str(serving),
        signatures={
            features.SIGNATURE_PIXELS: module.predict_pixels.get_concrete_function(),
            features.SIGNATURE_IMAGE_BYTES: module.predict_image_bytes.get_concrete_function(),
            features.SIGNATURE_EXAMPLES: module.predict_examples.get_concrete_function(),
            features.SIGNATURE_CLASSIFY: module.classify.get_concrete_function(),
        },
    )
    export._set_method_name(serving / "saved_model.pb", features.SIGNATURE_CLASSIFY, export.CLASSIFY_METHOD)
    artifact = standard_artifacts.Model()
    artifact.uri = str(root)
    return artifact


@pytest.fixture(scope="module")
def examples(tmp_path_factory: pytest.TempPathFactory, data_dir: Path) -> standard_artifacts.Examples:
    """An Examples artifact with an ``eval`` split of real MNIST test images, as ExampleGen writes it."""
    root = tmp_path_factory.mktemp("examples")
    split = root / f"Split-{features.EVAL_SPLIT}"
    split.mkdir()
    images, labels = example_gen.read_split(str(data_dir / "t10k-*"), limit=NUM_EXAMPLES)
    with tf.io.TFRecordWriter(str(split / "data.gz"), options="GZIP") as writer:
        for image, label in zip(images, labels):
            writer.write(example_gen.to_example(image, label).SerializeToString())
    artifact = standard_artifacts.Examples()
    artifact.uri = str(root)
    artifact.split_names = f'["{features.EVAL_SPLIT}"]'
    return artifact


def _validate(tmp_path: Path, model: standard_artifacts.Model, examples) -> standard_artifacts.InfraBlessing:
    """Runs the executor as the pipeline configures it, with one try and NUM_EXAMPLES examples."""
    return infra_validator.validate_once(
        model, examples, str(tmp_path / "blessing"), str(tmp_path / "tmp"), NUM_EXAMPLES, num_tries=1
    )


def test_a_model_that_answers_well_is_blessed_with_warmup_records(tmp_path: Path, examples) -> None:
    blessing = _validate(tmp_path, _model_artifact(tmp_path / "model", features.NUM_CLASSES), examples)
    assert blessing.get_int_custom_property(infra_blessing.BLESSED_PROPERTY) == 1
    assert (Path(blessing.uri) / "INFRA_BLESSED").exists()
    binary = infra_validator.describe(infra_validator.serving_command())
    assert blessing.get_string_custom_property(infra_blessing.SERVING_BINARY_PROPERTY) == binary
    assert blessing.get_float_custom_property(infra_blessing.LOAD_SECONDS_PROPERTY) > 0
    warmup = Path(blessing.uri, "stamped_model", "assets.extra", "tf_serving_warmup_requests")
    assert _warmup_signatures(warmup) == {
        signature: NUM_EXAMPLES for signature in infra_validator.REQUEST_SIGNATURES + infra_validator.CLIENT_SIGNATURES
    }
    pixels = _warmup_requests(warmup, features.SIGNATURE_PIXELS)[0].inputs[features.INPUT_IMAGES]
    assert tf.make_ndarray(pixels).shape == (1, *features.PIXELS_SHAPE)
    assert tf.make_ndarray(pixels).max() > 0  # a real eval image, not zeros


def test_a_model_server_replays_the_warmup_records_before_serving(tmp_path: Path, examples) -> None:
    blessing = _validate(tmp_path, _model_artifact(tmp_path / "model", features.NUM_CLASSES), examples)
    version = tmp_path / "serving" / features.MODEL_NAME / "1"
    shutil.copytree(Path(blessing.uri, "stamped_model"), version)
    runner = infra_validator.LocalProcessRunner(str(version), features.MODEL_NAME)
    try:
        runner.Start()
        deadline = time.time() + infra_validator.LOAD_DEADLINE_S
        runner.WaitUntilRunning(deadline)
        client = infra_validator.CheckingClient(runner.GetEndpoint(), features.MODEL_NAME, runner.rest_endpoint)
        client.WaitUntilModelLoaded(deadline, polling_interval_sec=1)
        client.SendRequests(_warmup_requests(version / "assets.extra" / "tf_serving_warmup_requests"))
        logs = runner.GetLogs() or ""
    finally:
        runner.Stop()
    # TF Serving's (and `mnist-tfx serve`'s) line once every record ran without error.
    records = len(infra_validator.REQUEST_SIGNATURES + infra_validator.CLIENT_SIGNATURES) * NUM_EXAMPLES
    assert f"Number of warmup records read: {records}." in logs, logs


def _warmup_logs(path: Path) -> list[prediction_log_pb2.PredictionLog]:
    return [
        prediction_log_pb2.PredictionLog.FromString(r) for r in tf.data.TFRecordDataset(str(path)).as_numpy_iterator()
    ]


def _warmup_signatures(path: Path) -> Counter:
    """How many warmup records each signature has."""
    return Counter(
        getattr(log, log.WhichOneof("log_type")).request.model_spec.signature_name for log in _warmup_logs(path)
    )


def _warmup_requests(path: Path, signature: str | None = None) -> list:
    requests = [getattr(log, log.WhichOneof("log_type")).request for log in _warmup_logs(path)]
    return [r for r in requests if signature is None or r.model_spec.signature_name == signature]


def test_a_model_whose_answers_have_the_wrong_shape_is_not_blessed(tmp_path: Path, examples) -> None:
    blessing = _validate(tmp_path, _model_artifact(tmp_path / "model", 3), examples)
    assert blessing.get_int_custom_property(infra_blessing.BLESSED_PROPERTY) == 0
    reason = blessing.get_string_custom_property(infra_blessing.REASON_PROPERTY)
    assert f"signature '{features.SIGNATURE_EXAMPLES}'" in reason and "expected [1, 10]" in reason, reason
    assert (Path(blessing.uri) / infra_blessing.REASON_FILENAME).read_text().strip() == reason
    assert not (Path(blessing.uri) / "stamped_model").exists()  # nothing for the Pusher to push


def test_a_model_without_the_request_signatures_is_not_blessed(tmp_path: Path, examples) -> None:
    model = _model_artifact(tmp_path / "model", features.NUM_CLASSES)
    serving = Path(model.uri) / "Format-Serving" / "saved_model.pb"
    export._set_method_name(serving, features.SIGNATURE_CLASSIFY, "tensorflow/serving/unknown")
    blessing = _validate(tmp_path, model, examples)
    assert blessing.get_int_custom_property(infra_blessing.BLESSED_PROPERTY) == 0
    assert "no requests can be built" in blessing.get_string_custom_property(infra_blessing.REASON_PROPERTY)
