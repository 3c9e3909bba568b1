"""The pushed SavedModel: four signatures, one Transform graph, one model (no training/serving skew).

- ``serving_default``      {"images": float32 [None, 28, 28], 0-255} → probabilities, classes
- ``predict_image_bytes``  {"image_bytes": PNG/JPEG string [None]}     → probabilities, classes
- ``predict_examples``     {"examples": serialized tf.Example [None]}   → probabilities, classes
- ``classify``             TF Serving's classify API on tf.Examples     → classes (digit names), scores

Pixel values are rounded to the nearest integer and clipped to 0-255 (MNIST's uint8 grid), then
take the very path training data took: raw int64 ``image`` → Transform graph → CNN_Basic.
"""

from __future__ import annotations

import os

import keras
import tensorflow as tf
import tensorflow_transform as tft
from tensorflow.core.protobuf import saved_model_pb2
from tensorflow.python.trackable import data_structures

from components import features

CLASSIFY_METHOD = "tensorflow/serving/classify"


class ServingModule(tf.Module):
    """Holds the model's weights and the Transform layer; every signature ends in ``_predict_raw``.

    The module tracks the ``tf.Variable`` behind each Keras variable, not the Keras model: a Keras 3
    variable saves itself as a *new* ``tf.Variable`` copied from the one it wraps (its
    ``_export_to_saved_model_graph``), so with the model tracked the checkpoint's restore op fills
    those copies (``Variable_N``) while the signatures read the wrapped variables
    (``CNN_Basic/dense/bias``), which a TF1-style load (TF Serving's) leaves uninitialized. Tracked
    directly, the wrapped variables are the ones saved, restored and read, each weight once.
    """

    def __init__(self, model: keras.Model, tft_output: tft.TFTransformOutput):
        super().__init__()
        self.model_variables = [variable.value for variable in model.variables]
        self._model = data_structures.NoDependency(model)  # called by the signatures, saved through its variables
        self.tft_layer = tft_output.transform_features_layer()
        spec = tft_output.raw_feature_spec()
        spec.pop(features.LABEL_KEY)
        self._raw_feature_spec = spec

    def _predict_raw(self, raw_pixels: tf.Tensor) -> dict[str, tf.Tensor]:
        """int64 [N, 784] raw pixels → the two prediction outputs."""
        transformed = self.tft_layer({features.IMAGE_KEY: raw_pixels})
        probabilities = self._model(transformed[features.IMAGE_KEY], training=False)
        return {
            features.OUTPUT_PROBABILITIES: probabilities,
            features.OUTPUT_CLASSES: tf.argmax(probabilities, axis=-1),
        }

    def _parse_examples(self, serialized: tf.Tensor) -> tf.Tensor:
        parsed = tf.io.parse_example(serialized, self._raw_feature_spec)
        return parsed[features.IMAGE_KEY]

    @tf.function(
        input_signature=[
            tf.TensorSpec([None, *features.PIXELS_SHAPE], features.PIXELS_DTYPE, name=features.INPUT_IMAGES)
        ]
    )
    def predict_pixels(self, images: tf.Tensor) -> dict[str, tf.Tensor]:
        return self._predict_raw(_to_raw_pixels(images))

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name=features.INPUT_IMAGE_BYTES)])
    def predict_image_bytes(self, image_bytes: tf.Tensor) -> dict[str, tf.Tensor]:
        images = tf.map_fn(
            _decode_image,
            image_bytes,
            fn_output_signature=tf.TensorSpec([features.IMAGE_HEIGHT, features.IMAGE_WIDTH], tf.float32),
        )
        return self._predict_raw(_to_raw_pixels(images))

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name=features.INPUT_EXAMPLES)])
    def predict_examples(self, examples: tf.Tensor) -> dict[str, tf.Tensor]:
        return self._predict_raw(self._parse_examples(examples))

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="inputs")])
    def classify(self, inputs: tf.Tensor) -> dict[str, tf.Tensor]:
        scores = self._predict_raw(self._parse_examples(inputs))[features.OUTPUT_PROBABILITIES]
        names = tf.strings.as_string(tf.range(features.NUM_CLASSES))
        return {"classes": tf.tile(names[tf.newaxis, :], [tf.shape(scores)[0], 1]), "scores": scores}


def _to_raw_pixels(images: tf.Tensor) -> tf.Tensor:
    """float [N, 28, 28] in 0-255 → int64 [N, 784], as ExampleGen writes pixels."""
    pixels = tf.clip_by_value(tf.round(images), 0.0, 255.0)
    return tf.reshape(tf.cast(pixels, tf.int64), (-1, features.NUM_PIXELS))


def _decode_image(encoded: tf.Tensor) -> tf.Tensor:
    """PNG/JPEG bytes → float [28, 28] grayscale 0-255, resized (area-averaged) if another size."""
    image = tf.io.decode_image(encoded, channels=1, expand_animations=False)
    image = tf.cast(image, tf.float32)
    size = (features.IMAGE_HEIGHT, features.IMAGE_WIDTH)
    image = tf.cond(
        tf.reduce_all(tf.equal(tf.shape(image)[:2], size)),
        lambda: image,
        lambda: tf.image.resize(image, size, method="area"),
    )
    return tf.reshape(image, size)


def export_serving_model(model: keras.Model, tft_output: tft.TFTransformOutput, export_dir: str) -> None:
    """Saves the model with all four signatures; marks ``classify`` with TF Serving's method name."""
    module = ServingModule(model, tft_output)
    signatures = {
        features.SIGNATURE_PIXELS: module.predict_pixels.get_concrete_function(),
        features.SIGNATURE_IMAGE_BYTES: module.predict_image_bytes.get_concrete_function(),
        features.SIGNATURE_EXAMPLES: module.predict_examples.get_concrete_function(),
        features.SIGNATURE_CLASSIFY: module.classify.get_concrete_function(),
    }
    tf.saved_model.save(module, export_dir, signatures=signatures)
    _set_method_name(
        f"{os.fspath(export_dir).rstrip('/')}/saved_model.pb", features.SIGNATURE_CLASSIFY, CLASSIFY_METHOD
    )


def _set_method_name(saved_model_pb: str, signature: str, method_name: str) -> None:
    """TF2's saver writes every signature as ``predict``; TF Serving's :classify needs its method.

    Through ``tf.io.gfile``: the export directory may be a gs:// (or other) URI. The new file is
    written beside the old one and renamed over it (atomic on a local disk; on an object store each
    object is replaced whole anyway).
    """
    with tf.io.gfile.GFile(saved_model_pb, "rb") as source:
        proto = saved_model_pb2.SavedModel.FromString(source.read())
    for meta_graph in proto.meta_graphs:
        meta_graph.signature_def[signature].method_name = method_name
    staged = f"{saved_model_pb}.tmp"
    with tf.io.gfile.GFile(staged, "wb") as target:
        target.write(proto.SerializeToString())
    tf.io.gfile.rename(staged, saved_model_pb, overwrite=True)
