"""The one reader of the Evaluator's TFMA output: overall metrics, per-digit slices, confusion matrix.

Only the candidate model's values count (``model_name`` "" or "candidate"); diffs against the
baseline are skipped. Metric names are those TFMA gives the metrics of ``components.eval_config``.
"""

from __future__ import annotations

import dataclasses
from typing import Iterator

import numpy as np

from components import features

ACCURACY_KEY = "sparse_categorical_accuracy"
EXAMPLE_COUNT_KEY = "example_count"
_CANDIDATE = ("", "candidate")


@dataclasses.dataclass(frozen=True)
class Evaluation:
    """What the Evaluator wrote: the overall example count, per-digit accuracy, confusion matrix."""

    example_count: int
    digit_accuracy: list[float]
    digit_counts: list[int]
    confusion: np.ndarray


def _metric_slices(uri: str) -> Iterator[tuple[tuple, dict[str, float]]]:
    """(slice keys, the candidate's metric values) for each slice in the metrics file."""
    import tensorflow_model_analysis as tfma  # heavy; only needed here

    for metrics in tfma.load_metrics(uri):
        values = {
            kv.key.name: kv.value.double_value.value
            for kv in metrics.metric_keys_and_values
            if not kv.key.is_diff and kv.key.model_name in _CANDIDATE
        }
        yield tuple(metrics.slice_key.single_slice_keys), values


def overall_metrics(uri: str) -> dict[str, float]:
    """The candidate's metrics on the overall slice (empty if the file has none)."""
    return next((values for keys, values in _metric_slices(uri) if not keys), {})


def read_evaluation(uri: str) -> Evaluation:
    """Overall count, per-``label`` slices and the overall confusion plot; ValueError if no count."""
    import tensorflow_model_analysis as tfma

    accuracy, counts, example_count = [0.0] * features.NUM_CLASSES, [0] * features.NUM_CLASSES, 0
    for keys, values in _metric_slices(uri):
        if not keys:
            example_count = int(values.get(EXAMPLE_COUNT_KEY, 0))
        elif keys[0].column == features.LABEL_KEY:
            digit = int(keys[0].int64_value)
            accuracy[digit] = values.get(ACCURACY_KEY, 0.0)
            counts[digit] = int(values.get(EXAMPLE_COUNT_KEY, 0))
    confusion = np.zeros((features.NUM_CLASSES, features.NUM_CLASSES))
    for plots in tfma.load_plots(uri):
        if plots.slice_key.single_slice_keys:
            continue
        for kv in plots.plot_keys_and_values:
            matrices = kv.value.multi_class_confusion_matrix_at_thresholds.matrices
            if kv.key.model_name in _CANDIDATE and matrices:  # one matrix: threshold 0, the argmax
                for entry in matrices[0].entries:
                    confusion[entry.actual_class_id, entry.predicted_class_id] += entry.num_weighted_examples
    if example_count == 0:
        raise ValueError(f"no example count in {uri}")
    return Evaluation(example_count, accuracy, counts, confusion)
