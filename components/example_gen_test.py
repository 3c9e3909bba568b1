"""The MNIST ExampleGen executor on real IDX files, run by Beam in-process."""

from __future__ import annotations

import gzip
import shutil
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf
from tfx.types import artifact_utils, standard_artifacts
from tfx.utils import proto_utils

from components import example_gen, features
from components.idx import IdxFormatError, write_idx


def _run_executor(input_base: Path, output: Path, limits: dict) -> standard_artifacts.Examples:
    examples = standard_artifacts.Examples()
    examples.uri = str(output)
    exec_properties = {
        "input_base": str(input_base),
        "input_config": proto_utils.proto_to_json(example_gen.input_config()),
        "output_config": example_gen.MnistExampleGen(str(input_base)).exec_properties["output_config"],
        "custom_config": proto_utils.proto_to_json(example_gen.limits_config(limits)),
        "output_data_format": 6,  # FORMAT_TF_EXAMPLE
        "output_file_format": 5,  # FORMAT_TFRECORDS_GZIP
    }
    example_gen.Executor().Do({}, {"examples": [examples]}, exec_properties)
    return examples


def _read(examples: standard_artifacts.Examples, split: str) -> list[tf.train.Example]:
    uri = artifact_utils.get_split_uri([examples], split)
    files = [str(p) for p in Path(uri).glob("*.gz")]
    return [
        tf.train.Example.FromString(r)
        for r in tf.data.TFRecordDataset(files, compression_type="GZIP").as_numpy_iterator()
    ]


def test_slice_gives_expected_counts_and_raw_features(data_dir: Path, tmp_path: Path) -> None:
    examples = _run_executor(data_dir, tmp_path / "out", {features.TRAIN_SPLIT: 120, features.EVAL_SPLIT: 40})
    assert sorted(artifact_utils.decode_split_names(examples.split_names)) == ["eval", "train"]
    train, test = _read(examples, features.TRAIN_SPLIT), _read(examples, features.EVAL_SPLIT)
    assert (len(train), len(test)) == (120, 40)
    images, labels = example_gen.read_split(str(data_dir / "train-*"), limit=120)
    by_label = sorted(
        (
            e.features.feature[features.LABEL_KEY].int64_list.value[0],
            tuple(e.features.feature[features.IMAGE_KEY].int64_list.value),
        )
        for e in train
    )
    assert by_label == sorted(
        (int(label), tuple(int(p) for p in image.reshape(-1))) for image, label in zip(images, labels)
    )
    assert all(len(e.features.feature[features.IMAGE_KEY].int64_list.value) == 784 for e in test)


def test_uncompressed_idx_files_are_read_too(data_dir: Path, tmp_path: Path) -> None:
    raw = tmp_path / "raw"
    raw.mkdir()
    for path in data_dir.glob("*.gz"):
        (raw / path.name[:-3]).write_bytes(gzip.decompress(path.read_bytes()))
    images, labels = example_gen.read_split(str(raw / "t10k-*"), limit=5)
    expected_images, expected_labels = example_gen.read_split(str(data_dir / "t10k-*"), limit=5)
    np.testing.assert_array_equal(images, expected_images)
    np.testing.assert_array_equal(labels, expected_labels)


def test_label_out_of_range_is_reported_with_file_and_index(data_dir: Path, tmp_path: Path) -> None:
    shutil.copy(data_dir / "t10k-images-idx3-ubyte.gz", tmp_path)
    labels = np.zeros(10_000, np.uint8)
    labels[17] = 10
    write_idx(tmp_path / "t10k-labels-idx1-ubyte.gz", labels)
    with pytest.raises(IdxFormatError, match=r"t10k-labels-idx1-ubyte.gz: label 10 at index 17"):
        example_gen.read_split(str(tmp_path / "t10k-*"))


def test_missing_labels_file_is_reported(data_dir: Path, tmp_path: Path) -> None:
    shutil.copy(data_dir / "t10k-images-idx3-ubyte.gz", tmp_path)
    with pytest.raises(IdxFormatError, match="expected one images and one labels IDX file"):
        example_gen.read_split(str(tmp_path / "t10k-*"))
