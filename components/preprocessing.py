"""Transform's ``preprocessing_fn``: the seed's ``x / 255.`` and ``[..., tf.newaxis]``, as a graph."""

from __future__ import annotations

import tensorflow as tf

from components import features


def preprocessing_fn(inputs: dict[str, tf.Tensor]) -> dict[str, tf.Tensor]:
    """Raw ``image`` (784 int64, 0-255) → float32 [28, 28, 1] in [0, 1]; ``label`` passed through."""
    image = tf.cast(inputs[features.IMAGE_KEY], tf.float32) / 255.0
    return {
        features.IMAGE_KEY: tf.reshape(image, (-1, *features.MODEL_INPUT_SHAPE)),
        # SchemaGen gives `label` shape [1]; the model wants one scalar class id per example.
        features.LABEL_KEY: tf.reshape(inputs[features.LABEL_KEY], (-1,)),
    }
