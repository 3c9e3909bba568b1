"""tf.data input for the Trainer, read from Transform's materialized output."""

from __future__ import annotations

from typing import Sequence

import tensorflow as tf

from components import features

_PARSE_BATCH = 1024  # parse many records per call: far cheaper than one at a time


def load_transformed(file_patterns: Sequence[str], feature_spec: dict[str, tf.io.FixedLenFeature]) -> tf.data.Dataset:
    """All (image, label) pairs of the gzipped TFRecord files, parsed once and cached in memory."""
    files = sorted(f for pattern in file_patterns for f in tf.io.gfile.glob(pattern))
    if not files:
        raise FileNotFoundError(f"no transformed examples match {list(file_patterns)}")
    spec = {k: feature_spec[k] for k in (features.IMAGE_KEY, features.LABEL_KEY)}
    return (
        tf.data.TFRecordDataset(files, compression_type="GZIP")
        .batch(_PARSE_BATCH)
        .map(lambda records: tf.io.parse_example(records, spec), num_parallel_calls=tf.data.AUTOTUNE)
        .map(lambda parsed: (parsed[features.IMAGE_KEY], parsed[features.LABEL_KEY]))
        .unbatch()
        .cache()
    )


def batched(
    examples: tf.data.Dataset, batch_size: int, shuffle_buffer: int = 0, seed: int | None = None
) -> tf.data.Dataset:
    """The seed's pipeline: shuffle (training only), batch, prefetch."""
    if shuffle_buffer:
        examples = examples.shuffle(shuffle_buffer, seed=seed, reshuffle_each_iteration=True)
    return examples.batch(batch_size).prefetch(tf.data.AUTOTUNE)


def count(examples: tf.data.Dataset) -> int:
    """Elements in one pass over ``examples`` (reads it all; fills a ``cache()`` on the way)."""
    return int(examples.reduce(tf.constant(0, tf.int64), lambda n, _: n + 1))
