"""A Trainer ``run_fn`` for tests: trains and exports as usual, but ``classify`` looks for a feature
that clients' tf.Examples do not have, so the model evaluates well yet fails in a model server.

The Evaluator uses ``predict_examples`` (untouched), so only InfraValidator can catch this one.
Used through ``MNIST_TFX_RUN_FN=tests.broken_classify_run_fn.run_fn``.
"""

from __future__ import annotations

import tensorflow as tf
from tfx.components.trainer.fn_args_utils import FnArgs

from components import export, features, trainer

MISSING_FEATURE = "pixels"  # ExampleGen writes the image as features.IMAGE_KEY


@tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="inputs")])
def _classify_wrong_feature(self: export.ServingModule, inputs: tf.Tensor) -> dict[str, tf.Tensor]:
    spec = {MISSING_FEATURE: tf.io.FixedLenFeature([features.NUM_PIXELS], tf.int64)}
    scores = self._predict_raw(tf.io.parse_example(inputs, spec)[MISSING_FEATURE])[features.OUTPUT_PROBABILITIES]
    names = tf.strings.as_string(tf.range(features.NUM_CLASSES))
    return {"classes": tf.tile(names[tf.newaxis, :], [tf.shape(scores)[0], 1]), "scores": scores}


def run_fn(fn_args: FnArgs) -> None:
    original = export.ServingModule.classify
    export.ServingModule.classify = _classify_wrong_feature
    try:
        trainer.run_fn(fn_args)
    finally:
        export.ServingModule.classify = original
