"""The whole pipeline on a real MNIST slice: runs, caches, gates, pushes a model that serves.

A regressed model and one whose serving signature breaks are refused in tests/test_production_loop.py.

The tests that run the pipeline again use a home of their own (``rerun_home``), in file order:
later runs build on earlier ones. The session's ``slice_home`` is only read.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image
from tensorflow_serving.apis import prediction_log_pb2

from components import example_gen, features, infra_blessing, infra_validator
from pipeline import configs
from reports import run_record
from serving import warmup
from tests.conftest import PIPELINE_NODES, SLICE_ARGS, CliRun, mnist_tfx, slice_run

pytestmark = pytest.mark.slow

COMPONENTS = set(PIPELINE_NODES)


@pytest.fixture(scope="module")
def rerun_home(tmp_path_factory: pytest.TempPathFactory, data_dir: Path) -> Path:
    """A home with one blessed slice run, for the tests that run the pipeline again."""
    home = tmp_path_factory.mktemp("rerun-home")
    slice_run(home, data_dir)
    return home


def _run_states(home: Path) -> dict[str, str]:
    store = run_record.connect(configs.PipelineConfig(home=home).metadata_path)
    return {n.node_id: n.state for n in run_record.latest_run(store, configs.PIPELINE_NAME)}


def _versions(home: Path) -> list[str]:
    return sorted(
        p.name for p in configs.PipelineConfig(home=home).serving_model_dir.iterdir() if p.name.isdigit()
    )  # not the lock


def _pusher_pushed(home: Path) -> int | None:
    store = run_record.connect(configs.PipelineConfig(home=home).metadata_path)
    pusher = next(n for n in run_record.latest_run(store, configs.PIPELINE_NAME) if n.node_id == "Pusher")
    (artifact,) = run_record.output_artifacts(store, pusher.execution_id)
    return run_record.custom_property(artifact, "pushed")


def _infra_blessing(home: Path) -> run_record.metadata_store_pb2.Artifact:
    store = run_record.connect(configs.PipelineConfig(home=home).metadata_path)
    node = next(n for n in run_record.latest_run(store, configs.PIPELINE_NAME) if n.node_id == "InfraValidator")
    (artifact,) = run_record.output_artifacts(store, node.execution_id)
    return artifact


def test_first_run_completes_every_component_and_records_it_in_mlmd(slice_home: tuple[Path, CliRun]) -> None:
    home, run = slice_home
    assert _run_states(home) == {name: "COMPLETE" for name in COMPONENTS}
    for name in COMPONENTS - {"latest_blessed_model_resolver"}:
        assert f"{name:<32} COMPLETE in" in run.output  # one progress line per component
    assert "Epoch 1, Loss: " in run.output and ", Test Accuracy: " in run.output
    assert "blessing: BLESSED" in run.output
    assert f"pushed: {configs.PipelineConfig(home=home).serving_model_dir}/" in run.output


def test_example_gen_wrote_the_slice_with_raw_features(slice_home: tuple[Path, CliRun]) -> None:
    home, _ = slice_home
    root = configs.PipelineConfig(home=home).pipeline_root / "MnistExampleGen" / "examples"
    (execution_dir,) = list(root.iterdir())
    counts = {}
    for split in (features.TRAIN_SPLIT, features.EVAL_SPLIT):
        files = sorted(str(p) for p in (execution_dir / f"Split-{split}").glob("*.gz"))
        records = list(tf.data.TFRecordDataset(files, compression_type="GZIP").as_numpy_iterator())
        counts[split] = len(records)
        first = tf.train.Example.FromString(records[0]).features.feature
        assert len(first[features.IMAGE_KEY].int64_list.value) == features.NUM_PIXELS
        assert 0 <= first[features.LABEL_KEY].int64_list.value[0] <= 9
    assert counts == {features.TRAIN_SPLIT: 1000, features.EVAL_SPLIT: 300}


def test_pushed_model_signatures_agree_on_pixels_png_and_examples(
    slice_home: tuple[Path, CliRun], data_dir: Path
) -> None:
    home, _ = slice_home
    (version,) = _versions(home)
    model = tf.saved_model.load(str(configs.PipelineConfig(home=home).serving_model_dir / version))
    images, labels = example_gen.read_split(str(data_dir / "t10k-*"), limit=16)

    by_pixels = model.signatures[features.SIGNATURE_PIXELS](images=tf.constant(images, tf.float32))
    pngs = []
    for image in images:
        buffer = io.BytesIO()
        Image.fromarray(image, mode="L").save(buffer, format="PNG")
        pngs.append(buffer.getvalue())
    by_png = model.signatures[features.SIGNATURE_IMAGE_BYTES](image_bytes=tf.constant(pngs))
    serialized = [example_gen.to_example(image, label).SerializeToString() for image, label in zip(images, labels)]
    by_example = model.signatures[features.SIGNATURE_EXAMPLES](examples=tf.constant(serialized))
    classified = model.signatures[features.SIGNATURE_CLASSIFY](inputs=tf.constant(serialized))

    probabilities = by_pixels[features.OUTPUT_PROBABILITIES].numpy()
    assert probabilities.shape == (16, 10)
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(by_png[features.OUTPUT_PROBABILITIES].numpy(), probabilities, atol=1e-6)
    np.testing.assert_allclose(by_example[features.OUTPUT_PROBABILITIES].numpy(), probabilities, atol=1e-6)
    np.testing.assert_allclose(classified["scores"].numpy(), probabilities, atol=1e-6)
    assert by_pixels[features.OUTPUT_CLASSES].numpy().tolist() == probabilities.argmax(axis=1).tolist()
    assert (by_pixels[features.OUTPUT_CLASSES].numpy() == labels).mean() >= 0.5  # it learned


def test_pushed_model_is_the_infra_validated_copy_with_warmup_records(slice_home: tuple[Path, CliRun]) -> None:
    home, run = slice_home
    binary = infra_validator.describe(infra_validator.serving_command())
    assert f"infra validation: BLESSED by {binary}, loaded in " in run.output
    blessing = _infra_blessing(home)
    assert run_record.custom_property(blessing, infra_blessing.BLESSED_PROPERTY) == 1
    assert run_record.custom_property(blessing, infra_blessing.SERVING_BINARY_PROPERTY) == binary
    assert run_record.custom_property(blessing, infra_blessing.LOAD_SECONDS_PROPERTY) > 0
    (version,) = _versions(home)
    path = warmup.warmup_requests_path(str(configs.PipelineConfig(home=home).serving_model_dir / version))
    records = [
        prediction_log_pb2.PredictionLog.FromString(r) for r in tf.data.TFRecordDataset(path).as_numpy_iterator()
    ]
    kinds = [(r.WhichOneof("log_type"), r.predict_log.request.model_spec.signature_name) for r in records]
    assert kinds.count(("predict_log", features.SIGNATURE_EXAMPLES)) == infra_validator.NUM_EXAMPLES
    assert [k for k, _ in kinds].count("classify_log") == infra_validator.NUM_EXAMPLES
    served = tf.saved_model.load(path.rsplit("/assets.extra/", 1)[0])  # the warmup copy is the whole model
    assert set(served.signatures) >= {features.SIGNATURE_PIXELS, features.SIGNATURE_CLASSIFY}


def test_unchanged_rerun_is_cached_and_pushes_no_duplicate(rerun_home: Path) -> None:
    home = rerun_home
    before = _versions(home)
    second = mnist_tfx("run", "--home", str(home), *SLICE_ARGS, home=home)
    assert second.returncode == 0, second.output[-3000:]
    states = _run_states(home)
    # The baseline is now the blessed model itself, so only Evaluator (and Pusher) run again.
    assert {n for n, s in states.items() if s == "CACHED"} == COMPONENTS - {
        "latest_blessed_model_resolver",
        "Evaluator",
        "Pusher",
    }
    assert _versions(home) == before
    third = mnist_tfx("run", "--home", str(home), *SLICE_ARGS, home=home)
    assert third.returncode == 0, third.output[-3000:]
    assert {s for n, s in _run_states(home).items() if n != "latest_blessed_model_resolver"} == {"CACHED"}
    assert _versions(home) == before


def test_impossible_accuracy_threshold_blesses_and_pushes_nothing(rerun_home: Path) -> None:
    home = rerun_home
    before = _versions(home)
    args = [a if a != "0.5" else "1.01" for a in SLICE_ARGS]
    run = mnist_tfx("run", "--home", str(home), *args, home=home)
    assert run.returncode == 0, run.output[-3000:]
    assert "blessing: NOT BLESSED (nothing pushed)" in run.output
    assert _pusher_pushed(home) == 0
    assert _versions(home) == before
