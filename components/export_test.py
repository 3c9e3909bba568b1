"""The pushed SavedModel loads as TF Serving loads it: a TF1 session, signatures run by tensor name.

The Transform graph is a real one (tft_beam over a handful of examples with our
``preprocessing_fn``), the model the real CNN_Basic (untrained: the weights only need to be the ones
the export must restore).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_transform as tft

from components import export, features
from components.model import build_cnn_basic
from components.preprocessing import preprocessing_fn

N = 4
TOLERANCE = 1e-5


def _raw_feature_spec() -> dict[str, tf.io.FixedLenFeature]:
    """As SchemaGen infers it from ExampleGen's examples: 784 int64 pixels, a [1] int64 label."""
    return {
        features.IMAGE_KEY: tf.io.FixedLenFeature([features.NUM_PIXELS], tf.int64),
        features.LABEL_KEY: tf.io.FixedLenFeature([1], tf.int64),
    }


@pytest.fixture(scope="module")
def tft_output(tmp_path_factory) -> tft.TFTransformOutput:
    import apache_beam as beam
    import tensorflow_transform.beam as tft_beam
    from tensorflow_transform.tf_metadata import dataset_metadata, metadata_io, schema_utils

    root = tmp_path_factory.mktemp("transform")
    rows = [{features.IMAGE_KEY: [i] * features.NUM_PIXELS, features.LABEL_KEY: [i]} for i in range(N)]
    metadata = dataset_metadata.DatasetMetadata(schema_utils.schema_from_feature_spec(_raw_feature_spec()))
    with beam.Pipeline() as pipeline, tft_beam.Context(temp_dir=str(root / "tmp"), force_tf_compat_v1=False):
        data = pipeline | beam.Create(rows)
        transform_fn = (data, metadata) | tft_beam.AnalyzeDataset(preprocessing_fn)
        _ = transform_fn | tft_beam.WriteTransformFn(str(root / "transform_graph"))
    # The raw schema, as TFX's Transform component writes it beside the transform function.
    metadata_io.write_metadata(metadata, str(root / "transform_graph" / tft.TFTransformOutput.RAW_METADATA_DIR))
    return tft.TFTransformOutput(str(root / "transform_graph"))


@pytest.fixture(scope="module")
def exported(tmp_path_factory, tft_output) -> tuple[Path, np.ndarray, np.ndarray]:
    """The export of an untrained CNN_Basic, test images (0-255) and the in-process answers."""
    import keras

    keras.utils.set_random_seed(0)
    model = build_cnn_basic()
    images = np.random.default_rng(0).integers(0, 256, size=(N, *features.PIXELS_SHAPE)).astype(np.float32)
    expected = model(images[..., np.newaxis] / 255.0, training=False).numpy()
    path = tmp_path_factory.mktemp("export") / "1"
    export.export_serving_model(model, tft_output, str(path))
    return path, images, expected


def _run_tf1(path: Path, signature_name: str, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """TF Serving's way: a fresh graph and session, the v1 loader, the signature run by tensor names."""
    with tf.Graph().as_default() as graph, tf.compat.v1.Session(graph=graph) as session:
        meta_graph = tf.compat.v1.saved_model.loader.load(session, ["serve"], str(path))
        signature = meta_graph.signature_def[signature_name]
        feeds = {signature.inputs[alias].name: value for alias, value in inputs.items()}
        fetches = {alias: info.name for alias, info in signature.outputs.items()}
        return session.run(fetches, feed_dict=feeds)


def test_export_answers_as_in_process_through_a_tf1_session_load(exported) -> None:
    path, images, expected = exported
    got = _run_tf1(path, features.SIGNATURE_PIXELS, {features.INPUT_IMAGES: images})
    np.testing.assert_allclose(got[features.OUTPUT_PROBABILITIES], expected, rtol=0, atol=TOLERANCE)
    assert got[features.OUTPUT_CLASSES].tolist() == expected.argmax(axis=-1).tolist()


def test_tf1_load_leaves_no_variable_uninitialized(exported) -> None:
    """TF Serving has no fallback: every variable must come from the restore op itself."""
    path, _, _ = exported
    with tf.Graph().as_default() as graph, tf.compat.v1.Session(graph=graph) as session:
        tf.compat.v1.saved_model.loader.load(session, ["serve"], str(path))
        handles = [op.outputs[0] for op in graph.get_operations() if op.type == "VarHandleOp"]
        assert handles
        uninitialized = [
            h.op.get_attr("shared_name").decode()
            for h, ok in zip(handles, session.run([tf.raw_ops.VarIsInitializedOp(resource=h) for h in handles]))
            if not ok
        ]
    assert uninitialized == []


def test_examples_and_classify_signatures_answer_through_a_tf1_session_load(exported) -> None:
    path, images, expected = exported
    serialized = np.array(
        [
            tf.train.Example(
                features=tf.train.Features(
                    feature={
                        features.IMAGE_KEY: tf.train.Feature(
                            int64_list=tf.train.Int64List(value=image.astype(np.int64).ravel())
                        ),
                        features.LABEL_KEY: tf.train.Feature(int64_list=tf.train.Int64List(value=[0])),
                    }
                )
            ).SerializeToString()
            for image in images
        ],
        dtype=object,
    )
    by_examples = _run_tf1(path, features.SIGNATURE_EXAMPLES, {features.INPUT_EXAMPLES: serialized})
    np.testing.assert_allclose(by_examples[features.OUTPUT_PROBABILITIES], expected, rtol=0, atol=TOLERANCE)
    classified = _run_tf1(path, features.SIGNATURE_CLASSIFY, {"inputs": serialized})
    np.testing.assert_allclose(classified["scores"], expected, rtol=0, atol=TOLERANCE)
    assert classified["classes"][0].tolist() == [str(d).encode() for d in range(features.NUM_CLASSES)]


def test_signatures_and_classify_method_survive_and_tf2_load_agrees(exported) -> None:
    """The Evaluator (TFMA) and the report load the export with tf.saved_model.load."""
    path, images, expected = exported
    loaded = tf.saved_model.load(str(path))
    assert set(loaded.signatures) == {
        features.SIGNATURE_PIXELS,
        features.SIGNATURE_IMAGE_BYTES,
        features.SIGNATURE_EXAMPLES,
        features.SIGNATURE_CLASSIFY,
    }
    got = loaded.signatures[features.SIGNATURE_PIXELS](images=tf.constant(images))
    np.testing.assert_allclose(got[features.OUTPUT_PROBABILITIES].numpy(), expected, rtol=0, atol=TOLERANCE)
    with tf.Graph().as_default() as graph, tf.compat.v1.Session(graph=graph) as session:
        meta_graph = tf.compat.v1.saved_model.loader.load(session, ["serve"], str(path))
    assert meta_graph.signature_def[features.SIGNATURE_CLASSIFY].method_name == export.CLASSIFY_METHOD
    assert meta_graph.signature_def[features.SIGNATURE_PIXELS].method_name == "tensorflow/serving/predict"
