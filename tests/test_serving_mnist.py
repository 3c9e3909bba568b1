"""The pushed MNIST model served over REST and gRPC equals the in-process SavedModel.

Slow: needs the `pushed_mnist_model` fixture (one real pipeline run on a slice).
"""

from __future__ import annotations

import io

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from cli.predict import TEST_IMAGES_FILE
from cli.predict import main as predict_main
from components import features
from components.idx import read_idx
from serving.client import GrpcClient, RestClient, b64

pytestmark = pytest.mark.slow
N = 12
TOLERANCE = 1e-6


@pytest.fixture(scope="module")
def model(pushed_mnist_model):
    latest = max((p for p in pushed_mnist_model.iterdir() if p.name.isdigit()), key=lambda p: int(p.name))
    return tf.saved_model.load(str(latest), tags=["serve"])


@pytest.fixture(scope="module")
def pixels(data_dir) -> np.ndarray:
    return read_idx(data_dir / TEST_IMAGES_FILE, ndim=3)[:N]


@pytest.fixture(scope="module")
def rest(mnist_server):
    return RestClient(mnist_server.rest, features.MODEL_NAME)


@pytest.fixture(scope="module")
def grpc_client(mnist_server):
    client = GrpcClient(mnist_server.grpc, features.MODEL_NAME)
    yield client
    client.close()


def png(image: np.ndarray) -> bytes:
    out = io.BytesIO()
    Image.fromarray(image).save(out, format="PNG")
    return out.getvalue()


def example(image: np.ndarray) -> tf.train.Example:
    out = tf.train.Example()
    out.features.feature[features.IMAGE_KEY].int64_list.value.extend(image.reshape(-1).tolist())
    out.features.feature[features.LABEL_KEY].int64_list.value.append(0)
    return out


def in_process(model, signature: str, **inputs) -> dict[str, np.ndarray]:
    return {k: v.numpy() for k, v in model.signatures[signature](**inputs).items()}


def assert_rows_match(rows: list[dict], expected: dict[str, np.ndarray]) -> None:
    got = np.array([r[features.OUTPUT_PROBABILITIES] for r in rows], np.float32)
    np.testing.assert_allclose(got, expected[features.OUTPUT_PROBABILITIES], rtol=0, atol=TOLERANCE)
    assert [r[features.OUTPUT_CLASSES] for r in rows] == expected[features.OUTPUT_CLASSES].tolist()


def test_metadata_lists_the_four_signatures(rest):
    signatures = rest.metadata()["metadata"]["signature_def"]["signature_def"]
    assert {
        features.SIGNATURE_PIXELS,
        features.SIGNATURE_IMAGE_BYTES,
        features.SIGNATURE_EXAMPLES,
        features.SIGNATURE_CLASSIFY,
    } <= set(signatures)
    assert signatures[features.SIGNATURE_CLASSIFY]["method_name"] == "tensorflow/serving/classify"


def test_rest_pixels_equal_in_process(rest, model, pixels):
    expected = in_process(model, features.SIGNATURE_PIXELS, **{features.INPUT_IMAGES: tf.constant(pixels, tf.float32)})
    assert_rows_match(rest.predict(instances=pixels.tolist()), expected)
    columnar = rest.predict(inputs={features.INPUT_IMAGES: pixels.tolist()})
    np.testing.assert_allclose(
        np.array(columnar[features.OUTPUT_PROBABILITIES], np.float32),
        expected[features.OUTPUT_PROBABILITIES],
        rtol=0,
        atol=TOLERANCE,
    )
    assert columnar[features.OUTPUT_CLASSES] == expected[features.OUTPUT_CLASSES].tolist()


def test_rest_b64_png_equals_in_process(rest, model, pixels):
    encoded = [png(image) for image in pixels]
    expected = in_process(model, features.SIGNATURE_IMAGE_BYTES, **{features.INPUT_IMAGE_BYTES: tf.constant(encoded)})
    rows = rest.predict(instances=[b64(data) for data in encoded], signature_name=features.SIGNATURE_IMAGE_BYTES)
    assert_rows_match(rows, expected)
    # The same pixels through both signatures give the same answer.
    by_pixels = in_process(model, features.SIGNATURE_PIXELS, **{features.INPUT_IMAGES: tf.constant(pixels, tf.float32)})
    np.testing.assert_allclose(
        expected[features.OUTPUT_PROBABILITIES], by_pixels[features.OUTPUT_PROBABILITIES], rtol=0, atol=TOLERANCE
    )


def test_rest_tf_example_inputs_equal_in_process(rest, model, pixels):
    serialized = [example(image).SerializeToString() for image in pixels]
    expected = in_process(model, features.SIGNATURE_EXAMPLES, **{features.INPUT_EXAMPLES: tf.constant(serialized)})
    rows = rest.predict(instances=[b64(s) for s in serialized], signature_name=features.SIGNATURE_EXAMPLES)
    assert_rows_match(rows, expected)

    scores = in_process(model, features.SIGNATURE_CLASSIFY, inputs=tf.constant(serialized))["scores"]
    results = rest.classify(
        [{features.IMAGE_KEY: image.reshape(-1).tolist(), features.LABEL_KEY: 0} for image in pixels],
        signature_name=features.SIGNATURE_CLASSIFY,
    )
    assert [[label for label, _ in row] for row in results] == [[str(d) for d in range(10)]] * N
    np.testing.assert_allclose(
        np.array([[s for _, s in row] for row in results], np.float32), scores, rtol=0, atol=TOLERANCE
    )


def test_grpc_equals_rest(rest, grpc_client, pixels):
    images = pixels.astype(np.float32)
    rows = rest.predict(instances=images.tolist())
    got = grpc_client.predict({features.INPUT_IMAGES: images})
    np.testing.assert_array_equal(
        got[features.OUTPUT_PROBABILITIES], np.array([r[features.OUTPUT_PROBABILITIES] for r in rows], np.float32)
    )
    np.testing.assert_array_equal(got[features.OUTPUT_CLASSES], [r[features.OUTPUT_CLASSES] for r in rows])

    encoded = np.array([png(image) for image in pixels], dtype=object)
    got = grpc_client.predict({features.INPUT_IMAGE_BYTES: encoded}, signature_name=features.SIGNATURE_IMAGE_BYTES)
    rows = rest.predict(instances=[b64(data) for data in encoded], signature_name=features.SIGNATURE_IMAGE_BYTES)
    np.testing.assert_array_equal(
        got[features.OUTPUT_PROBABILITIES], np.array([r[features.OUTPUT_PROBABILITIES] for r in rows], np.float32)
    )

    response = grpc_client.classify([example(image) for image in pixels], signature_name=features.SIGNATURE_CLASSIFY)
    rest_results = rest.classify(
        [{features.IMAGE_KEY: image.reshape(-1).tolist()} for image in pixels],
        signature_name=features.SIGNATURE_CLASSIFY,
    )
    assert [[[c.label, np.float32(c.score)] for c in row.classes] for row in response.result.classifications] == [
        [[label, np.float32(score)] for label, score in row] for row in rest_results
    ]


@pytest.mark.parametrize("protocol", ["rest", "grpc"])
def test_predict_cli(mnist_server, model, pixels, data_dir, tmp_path, capsys, protocol):
    files = []
    for i in range(3):
        path = tmp_path / f"digit{i}.png"
        path.write_bytes(png(pixels[i]))
        files.append(str(path))
    transport = ["--server", mnist_server.rest] if protocol == "rest" else ["--grpc", mnist_server.grpc]
    assert predict_main([*transport, "--model", features.MODEL_NAME, "--test-images", "5", *files], str(data_dir)) == 0
    lines = capsys.readouterr().out.splitlines()
    expected = in_process(
        model, features.SIGNATURE_PIXELS, **{features.INPUT_IMAGES: tf.constant(pixels[:5], tf.float32)}
    )
    assert len(lines) == 3 + 5
    for i, line in enumerate(lines[:3]):
        name, digit, prob = line.split("\t")
        assert (name, int(digit)) == (files[i], int(expected[features.OUTPUT_CLASSES][i]))
        assert abs(float(prob) - expected[features.OUTPUT_PROBABILITIES][i].max()) < 1e-4
    for i, line in enumerate(lines[3:]):
        name, digit, prob, label = line.split("\t")
        assert (name, int(digit)) == (f"test[{i}]", int(expected[features.OUTPUT_CLASSES][i]))
        assert label.startswith("label=")
