"""MnistExampleGen: a FileBasedExampleGen whose Beam executor reads the standard MNIST IDX files.

Each input split pattern (``train-*``, ``t10k-*``) matches one images file and one labels file;
every image becomes a ``tf.train.Example`` with ``image`` (784 raw int64 pixels) and ``label``.
The optional per-split limit keeps the first N examples (deterministic) for fast runs.
With data spans (``<data>/span-N/``, components/spans.py) the patterns are TFX span patterns,
``span-{SPAN}/train-*``: TFX's driver resolves the latest span and records it as the Examples
artifact's ``span`` property.
"""

from __future__ import annotations

import json
import os
from typing import Any, Iterator, Mapping

import apache_beam as beam
import numpy as np
import tensorflow as tf
from google.protobuf import any_pb2, struct_pb2
from tfx.components.example_gen import base_example_gen_executor
from tfx.components.example_gen.component import FileBasedExampleGen
from tfx.dsl.components.base.executor_spec import BeamExecutorSpec
from tfx.proto import example_gen_pb2
from tfx.utils import proto_utils

from components import features, spans
from components.idx import IdxFormatError, read_idx_stream

# Input splits: the official training files become `train`, the official test files `eval`.
SPLIT_PATTERNS = {features.TRAIN_SPLIT: "train-*", features.EVAL_SPLIT: "t10k-*"}


def input_config(span_layout: bool = False) -> example_gen_pb2.Input:
    """One input split per official MNIST part; in the latest ``span-{SPAN}/`` folder with ``span_layout``."""
    prefix = f"{spans.SPAN_PATTERN_DIR}/" if span_layout else ""
    return example_gen_pb2.Input(
        splits=[example_gen_pb2.Input.Split(name=n, pattern=prefix + p) for n, p in SPLIT_PATTERNS.items()]
    )


def limits_config(limits: Mapping[str, int | None]) -> example_gen_pb2.CustomConfig:
    """Packs per-split example limits (``None`` = all) into ExampleGen's ``custom_config``."""
    struct = struct_pb2.Struct()
    struct.update({"limits": {k: v for k, v in limits.items() if v is not None}})
    packed = any_pb2.Any()
    packed.Pack(struct)
    return example_gen_pb2.CustomConfig(custom_config=packed)


def _limits_from(exec_properties: Mapping[str, Any]) -> dict[str, int]:
    raw = exec_properties.get("custom_config")
    if not raw:
        return {}
    config = (
        raw
        if isinstance(raw, example_gen_pb2.CustomConfig)
        else proto_utils.json_to_proto(raw if isinstance(raw, str) else json.dumps(raw), example_gen_pb2.CustomConfig())
    )
    struct = struct_pb2.Struct()
    if not config.custom_config.Unpack(struct):
        raise ValueError("MnistExampleGen custom_config must pack a google.protobuf.Struct")
    return {k: int(v) for k, v in dict(struct).get("limits", {}).items()}


def _split_name(exec_properties: Mapping[str, Any], split_pattern: str) -> str:
    config = proto_utils.json_to_proto(exec_properties["input_config"], example_gen_pb2.Input())
    for split in config.splits:
        if split.pattern == split_pattern:
            return split.name
    raise ValueError(f"no input split has pattern {split_pattern!r}")


def _read_idx(path: str) -> np.ndarray:
    with tf.io.gfile.GFile(path, "rb") as handle:
        return read_idx_stream(handle, path)


def read_split(split_pattern: str, limit: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Reads the one images and one labels IDX file matching ``split_pattern``; first ``limit``."""
    paths = sorted(tf.io.gfile.glob(split_pattern))
    images = [p for p in paths if "images" in os.path.basename(p)]
    labels = [p for p in paths if "labels" in os.path.basename(p)]
    if len(images) != 1 or len(labels) != 1:
        raise IdxFormatError(f"{split_pattern}: expected one images and one labels IDX file, found {paths or 'none'}")
    pixels, targets = _read_idx(images[0]), _read_idx(labels[0])
    if pixels.ndim != 3 or pixels.shape[1:] != (features.IMAGE_HEIGHT, features.IMAGE_WIDTH):
        raise IdxFormatError(f"{images[0]}: expected N×28×28 images, found shape {pixels.shape}")
    if targets.shape != (pixels.shape[0],):
        raise IdxFormatError(f"{labels[0]}: {targets.shape[0]} labels for {pixels.shape[0]} images in {images[0]}")
    if targets.size and targets.max() >= features.NUM_CLASSES:
        index = int(np.argmax(targets >= features.NUM_CLASSES))
        raise IdxFormatError(f"{labels[0]}: label {targets[index]} at index {index} is not 0-9")
    return pixels[:limit], targets[:limit]


def to_example(image: np.ndarray, label: int) -> tf.train.Example:
    """One MNIST image as the raw tf.Example every later component reads."""
    return tf.train.Example(
        features=tf.train.Features(
            feature={
                features.IMAGE_KEY: tf.train.Feature(int64_list=tf.train.Int64List(value=image.reshape(-1).tolist())),
                features.LABEL_KEY: tf.train.Feature(int64_list=tf.train.Int64List(value=[int(label)])),
            }
        )
    )


def _examples(split_pattern: str, limit: int | None) -> Iterator[tf.train.Example]:
    pixels, targets = read_split(split_pattern, limit)
    for image, label in zip(pixels, targets):
        yield to_example(image, label)


@beam.ptransform_fn
@beam.typehints.with_input_types(beam.Pipeline)
@beam.typehints.with_output_types(tf.train.Example)
def _IdxToExample(  # pylint: disable=invalid-name
    pipeline: beam.Pipeline, exec_properties: dict[str, Any], split_pattern: str
) -> beam.pvalue.PCollection:
    limit = _limits_from(exec_properties).get(_split_name(exec_properties, split_pattern))
    return (
        pipeline
        | "SplitPattern" >> beam.Create([os.path.join(exec_properties["input_base"], split_pattern)])
        | "ReadIdx" >> beam.FlatMap(_examples, limit)
    )


class Executor(base_example_gen_executor.BaseExampleGenExecutor):
    """Reads MNIST IDX files (gzipped or not) into tf.Examples."""

    def GetInputSourceToExamplePTransform(self) -> beam.PTransform:
        return _IdxToExample


class MnistExampleGen(FileBasedExampleGen):
    """ExampleGen for the MNIST IDX files in ``input_base`` (or its latest span): splits ``train`` and ``eval``."""

    EXECUTOR_SPEC = BeamExecutorSpec(Executor)

    def __init__(self, input_base: str, limits: Mapping[str, int | None] | None = None, span_layout: bool = False):
        super().__init__(
            input_base=input_base,
            input_config=input_config(span_layout),
            custom_config=limits_config(limits or {}),
        )
