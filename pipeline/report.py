"""``mnist-tfx report``: one self-contained HTML page about the latest pipeline run.

Layout: ``<out>/report.html`` (everything embedded) beside the same pictures as PNG files; ``<out>``
defaults to ``<home>/reports/<run id>/``.
"""

from __future__ import annotations

import argparse
import base64
import dataclasses
import datetime
import json
import re
import sys
from pathlib import Path

import numpy as np

from pipeline import configs, report_html, report_lineage, run_record, run_summary

REPORT_FILE = "report.html"
HISTORY_FILE = "history.json"  # components.trainer.HISTORY_FILE (not imported: it pulls in TFX)
GALLERY_MAX = 40
GRID_IMAGES = 20
_BATCH = 500


@dataclasses.dataclass(frozen=True)
class Picture:
    name: str  # file stem and HTML id
    title: str
    caption: str
    png: bytes

    @property
    def base64(self) -> str:
        return base64.b64encode(self.png).decode("ascii")

    @property
    def width(self) -> int:
        return int.from_bytes(self.png[16:20], "big")  # the PNG IHDR chunk

    @property
    def height(self) -> int:
        return int.from_bytes(self.png[20:24], "big")


@dataclasses.dataclass(frozen=True)
class Evaluation:
    """What the Evaluator wrote: the overall example count, per-digit accuracy, confusion matrix."""

    example_count: int
    digit_accuracy: list[float]
    digit_counts: list[int]
    confusion: np.ndarray


def parse_args(argv: list[str], default_home: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="mnist-tfx report", description="Write an HTML report of the latest run.")
    parser.add_argument("--home", default=default_home, help=f"the pipeline's home (default {default_home})")
    parser.add_argument("--out", help="output directory (default <home>/reports/<run id>/)")
    return parser.parse_args(argv)


def main(argv: list[str], default_home: str) -> int:
    args = parse_args(argv, default_home)
    config = configs.PipelineConfig(home=Path(args.home))
    run_id = None
    if config.metadata_path.is_file():
        run_id = report_lineage.latest_run_id(run_record.connect(config.metadata_path))
    if run_id is None:
        print(f"error: no pipeline run recorded in {config.metadata_path}", file=sys.stderr)
        return 2
    out = Path(args.out) if args.out else config.home / "reports" / re.sub(r"[^A-Za-z0-9._-]", "-", run_id)
    print(write_report(config, run_id, out))
    return 0


def write_report(config: configs.PipelineConfig, run_id: str, out: Path) -> Path:
    """Writes the pictures and ``report.html`` into ``out``; returns the page's path."""
    store = run_record.connect(config.metadata_path)
    summary = run_summary.summarize(config)
    by_id = {n.node_id: n for n in summary.nodes}
    outputs = {node: _artifacts_by_type(store, record.execution_id) for node, record in by_id.items()}
    try:
        evaluation: Evaluation | str = _evaluation(outputs.get("Evaluator", {}))
    except MissingInput as reason:
        evaluation = str(reason)
    builders = {
        "training curves": lambda: [_curves(outputs.get("Trainer", {}))],
        "evaluation pictures": lambda: _evaluation_pictures(_evaluated(evaluation)),
        "misclassified images": lambda: [_gallery(config, store, summary, by_id, _evaluated(evaluation))],
        "data grid": lambda: [_data_grid(config, out)],
    }
    pictures: list[Picture] = []
    missing: list[tuple[str, str]] = []
    for name, build in builders.items():
        try:
            pictures += build()
        except MissingInput as reason:
            missing.append((name, str(reason)))
    lineage = None
    if summary.pushed_version is not None:
        lineage = report_lineage.pushed_model_lineage(store, by_id["Pusher"].execution_id, config.pipeline_name)

    out.mkdir(parents=True, exist_ok=True)
    for picture in pictures:
        (out / f"{picture.name}.png").write_bytes(picture.png)
    page = out / REPORT_FILE
    page.write_text(report_html.render(
        pipeline_name=config.pipeline_name, run_id=run_id, metadata_path=str(config.metadata_path),
        generated=datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        accuracy=summary.test_accuracy, blessed=bool(summary.blessed),
        blessing={True: "BLESSED", False: "NOT BLESSED"}.get(summary.blessed, "no Evaluator result"),
        pushed_version=summary.pushed_version, pushed_path=summary.pushed_path,
        nodes=summary.nodes, lineage=lineage,
        figures=pictures, missing=missing,
    ), encoding="utf-8")
    return page


class MissingInput(Exception):
    """A picture's input is not in this run (component failed or did not run)."""


def _evaluated(evaluation: Evaluation | str) -> Evaluation:
    if isinstance(evaluation, str):
        raise MissingInput(evaluation)
    return evaluation


def _artifacts_by_type(store, execution_id: int) -> dict:
    return {a.type: a for a in run_record.output_artifacts(store, execution_id)}


def _curves(trainer_outputs: dict) -> Picture:
    from pipeline import report_plots

    if "ModelRun" not in trainer_outputs:
        raise MissingInput("no Trainer output")
    path = Path(trainer_outputs["ModelRun"].uri) / HISTORY_FILE
    if not path.is_file():
        raise MissingInput(f"{path} does not exist")
    history = json.loads(path.read_text())
    return Picture("training_curves", "Training curves",
                   f"Loss and accuracy per epoch on the training and test images ({len(history)} epochs), "
                   f"from {path}.", report_plots.training_curves(history))


def _evaluation(evaluator_outputs: dict) -> Evaluation:
    """Reads the Evaluator's TFMA output: overall count, per-``label`` slices, the confusion plot."""
    import tensorflow_model_analysis as tfma

    if "ModelEvaluation" not in evaluator_outputs:
        raise MissingInput("no Evaluator output")
    uri = evaluator_outputs["ModelEvaluation"].uri
    accuracy, counts, example_count = [0.0] * 10, [0] * 10, 0
    for metrics in tfma.load_metrics(uri):
        values = {kv.key.name: kv.value.double_value.value for kv in metrics.metric_keys_and_values
                  if not kv.key.is_diff and kv.key.model_name in ("", "candidate")}
        keys = metrics.slice_key.single_slice_keys
        if not keys:
            example_count = int(values.get("example_count", 0))
        elif keys[0].column == "label":
            digit = int(keys[0].int64_value)
            accuracy[digit] = values.get(run_summary.ACCURACY_KEY, 0.0)
            counts[digit] = int(values.get("example_count", 0))
    confusion = np.zeros((10, 10))
    for plots in tfma.load_plots(uri):
        if plots.slice_key.single_slice_keys:
            continue
        for kv in plots.plot_keys_and_values:
            matrices = kv.value.multi_class_confusion_matrix_at_thresholds.matrices
            if kv.key.model_name in ("", "candidate") and matrices:  # one matrix: threshold 0, the argmax
                for entry in matrices[0].entries:
                    confusion[entry.actual_class_id, entry.predicted_class_id] += entry.num_weighted_examples
    if example_count == 0:
        raise MissingInput(f"no example count in {uri}")
    return Evaluation(example_count, accuracy, counts, confusion)


def _evaluation_pictures(evaluation: Evaluation) -> list[Picture]:
    from pipeline import report_plots

    wrong = int(evaluation.confusion.sum() - np.trace(evaluation.confusion))
    return [
        Picture("confusion_matrix", "Confusion matrix",
                f"The Evaluator's counts on its {evaluation.example_count} test images; "
                f"{wrong} off the diagonal.", report_plots.confusion_matrix(evaluation.confusion)),
        Picture("per_digit_accuracy", "Accuracy per digit",
                "The Evaluator's accuracy on the test images of each digit (its per-label slices).",
                report_plots.per_digit_accuracy(evaluation.digit_accuracy, evaluation.digit_counts)),
    ]


def _gallery(config: configs.PipelineConfig, store, summary: run_summary.RunSummary, by_id: dict,
             evaluation: Evaluation) -> Picture:
    """Runs the pushed model (else the Evaluator's candidate) on the test images the Evaluator saw."""
    from pipeline import report_plots

    model_dir, which = summary.pushed_path, f"the pushed model (version {summary.pushed_version})"
    if model_dir is None:
        model_dir, which = _candidate_model(store, by_id), "the evaluated, unpushed candidate model"
    images, labels = _mnist(config, "t10k")
    images, labels = images[: evaluation.example_count], labels[: evaluation.example_count]
    predicted = predict_digits(model_dir, images)
    wrong = np.flatnonzero(predicted != labels)
    shown = wrong[:GALLERY_MAX]
    return Picture("misclassified", "Misclassified test images",
                   f"Titled predicted/true: {len(shown)} of the {len(wrong)} images that {which} gets wrong "
                   f"among the first {len(labels)} official test images (those the Evaluator saw).",
                   report_plots.misclassified_gallery(images[shown], predicted[shown], labels[shown]))


def _candidate_model(store, by_id: dict) -> str:
    if "Evaluator" not in by_id:
        raise MissingInput("no Evaluator execution")
    inputs = report_lineage.input_artifacts(store, by_id["Evaluator"].execution_id)
    model = next((a for a in inputs if "model" in a.keys), None)
    if model is None:
        raise MissingInput("the Evaluator took no model")
    uri = Path(model.uri)
    return str(uri / "Format-Serving" if (uri / "Format-Serving").is_dir() else uri)


def predict_digits(model_dir: str, images: np.ndarray) -> np.ndarray:
    """The ``serving_default`` signature's classes for uint8 images [N, 28, 28], in batches."""
    import tensorflow as tf

    from components import features

    signature = tf.saved_model.load(model_dir).signatures[features.SIGNATURE_PIXELS]
    batches = [
        signature(**{features.INPUT_IMAGES: tf.constant(images[i : i + _BATCH], tf.float32)})[features.OUTPUT_CLASSES]
        for i in range(0, len(images), _BATCH)
    ]
    return np.concatenate([b.numpy() for b in batches]) if batches else np.zeros(0, np.int64)


def _data_grid(config: configs.PipelineConfig, out: Path) -> Picture:
    from components import data_grid

    images, labels = _mnist(config, "train")
    out.mkdir(parents=True, exist_ok=True)
    path = out / "data_grid.png"
    data_grid.save_grid(images, labels, path, GRID_IMAGES)
    return Picture("data_grid", "Training data",
                   f"The first {GRID_IMAGES} official training images as ExampleGen reads them, titled with "
                   "their labels.",
                   path.read_bytes())


def _mnist(config: configs.PipelineConfig, part: str) -> tuple[np.ndarray, np.ndarray]:
    from components import mnist_data

    try:
        return mnist_data.load(config.data_dir, part)
    except mnist_data.MnistDataError as err:
        raise MissingInput(str(err)) from None
