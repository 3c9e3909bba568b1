"""Evaluator (TFMA) configuration: accuracy gates, overall and per-digit slices, loss, confusion matrix."""

from __future__ import annotations

import tensorflow_model_analysis as tfma

from components import features


def eval_config(min_accuracy: float, max_accuracy_drop: float = 0.0) -> tfma.EvalConfig:
    """Blesses a model only if its accuracy is ≥ ``min_accuracy`` and not worse than the baseline
    (the latest blessed model) by more than ``max_accuracy_drop``."""
    # Gate on the overall slice only; per-digit accuracies are reported, not gated.
    gate = tfma.PerSliceMetricThreshold(
        slicing_specs=[tfma.SlicingSpec()],
        threshold=tfma.MetricThreshold(
            value_threshold=tfma.GenericValueThreshold(lower_bound={"value": min_accuracy}),
            change_threshold=tfma.GenericChangeThreshold(
                direction=tfma.MetricDirection.HIGHER_IS_BETTER,
                absolute={"value": -max_accuracy_drop - 1e-10},
            ),
        ),
    )
    return tfma.EvalConfig(
        model_specs=[
            tfma.ModelSpec(
                signature_name=features.SIGNATURE_EXAMPLES,
                label_key=features.LABEL_KEY,
                prediction_key=features.OUTPUT_PROBABILITIES,
            )
        ],
        slicing_specs=[tfma.SlicingSpec(), tfma.SlicingSpec(feature_keys=[features.LABEL_KEY])],
        metrics_specs=[
            tfma.MetricsSpec(
                metrics=[
                    tfma.MetricConfig(class_name="ExampleCount"),
                    tfma.MetricConfig(class_name="SparseCategoricalAccuracy", per_slice_thresholds=[gate]),
                    tfma.MetricConfig(class_name="SparseCategoricalCrossentropy"),
                    tfma.MetricConfig(class_name="MultiClassConfusionMatrixPlot"),
                ],
            )
        ],
    )
