"""The run report: one self-contained HTML page about a pipeline run (``mnist-tfx report``).

Layout: ``<out>/report.html`` (everything embedded) beside the same pictures as PNG files; ``<out>``
defaults to ``<home>/reports/<run id>/``.
"""

from __future__ import annotations

import base64
import dataclasses
import datetime
import json
import re
from pathlib import Path

import numpy as np

from components import features
from pipeline import configs
from reports import html_page, lineage, run_record, run_summary, tfma_output
from reports.tfma_output import Evaluation

REPORT_FILE = "report.html"
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


def latest_run_id(config: configs.PipelineConfig) -> str | None:
    """The id of the newest run recorded in the config's MLMD, or None without one."""
    if not config.metadata_path.is_file():
        return None
    return lineage.latest_run_id(run_record.connect(config.metadata_path), config.pipeline_name)


def default_out(config: configs.PipelineConfig, run_id: str) -> Path:
    """``<home>/reports/<run id>/``, the run id made safe as a folder name."""
    return config.home / "reports" / re.sub(r"[^A-Za-z0-9._-]", "-", run_id)


def write_report(config: configs.PipelineConfig, run_id: str, out: Path) -> Path:
    """Writes the pictures and ``report.html`` into ``out``; returns the page's path."""
    store = run_record.connect(config.metadata_path)
    summary = run_summary.summarize(config)
    by_id = {n.node_id: n for n in summary.nodes}
    outputs = {node: _artifacts_by_type(store, record.execution_id) for node, record in by_id.items()}
    try:
        evaluation: Evaluation | str = _evaluation(outputs.get("Evaluator", {}))
    except MissingInputError as reason:
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
        except MissingInputError as reason:
            missing.append((name, str(reason)))
    pushed_lineage = None
    if summary.pushed_version is not None:
        pushed_lineage = lineage.pushed_model_lineage(store, by_id["Pusher"].execution_id, config.pipeline_name)

    out.mkdir(parents=True, exist_ok=True)
    for picture in pictures:
        (out / f"{picture.name}.png").write_bytes(picture.png)
    page = out / REPORT_FILE
    page.write_text(
        html_page.render(
            pipeline_name=config.pipeline_name,
            run_id=run_id,
            metadata_path=str(config.metadata_path),
            generated=datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
            accuracy=summary.test_accuracy,
            blessed=bool(summary.blessed),
            blessing={True: "BLESSED", False: "NOT BLESSED"}.get(summary.blessed, "no Evaluator result"),
            infra=summary.infra,
            pushed_version=summary.pushed_version,
            pushed_path=summary.pushed_path,
            nodes=summary.nodes,
            lineage=pushed_lineage,
            figures=pictures,
            missing=missing,
        ),
        encoding="utf-8",
    )
    return page


class MissingInputError(Exception):
    """A picture's input is not in this run (component failed or did not run)."""


def _evaluated(evaluation: Evaluation | str) -> Evaluation:
    if isinstance(evaluation, str):
        raise MissingInputError(evaluation)
    return evaluation


def _artifacts_by_type(store, execution_id: int) -> dict:
    return {a.type: a for a in run_record.output_artifacts(store, execution_id)}


def _curves(trainer_outputs: dict) -> Picture:
    from reports import plots

    if "ModelRun" not in trainer_outputs:
        raise MissingInputError("no Trainer output")
    import tensorflow as tf  # the artifact may be on an object store: read it through tf.io.gfile

    path = f"{trainer_outputs['ModelRun'].uri.rstrip('/')}/{features.HISTORY_FILE}"
    if not tf.io.gfile.exists(path):
        raise MissingInputError(f"{path} does not exist")
    with tf.io.gfile.GFile(path) as f:
        history = json.loads(f.read())
    return Picture(
        "training_curves",
        "Training curves",
        f"Loss and accuracy per epoch on the training and test images ({len(history)} epochs), " f"from {path}.",
        plots.training_curves(history),
    )


def _evaluation(evaluator_outputs: dict) -> Evaluation:
    if "ModelEvaluation" not in evaluator_outputs:
        raise MissingInputError("no Evaluator output")
    try:
        return tfma_output.read_evaluation(evaluator_outputs["ModelEvaluation"].uri)
    except ValueError as reason:
        raise MissingInputError(str(reason)) from None


def _evaluation_pictures(evaluation: Evaluation) -> list[Picture]:
    from reports import plots

    wrong = int(evaluation.confusion.sum() - np.trace(evaluation.confusion))
    return [
        Picture(
            "confusion_matrix",
            "Confusion matrix",
            f"The Evaluator's counts on its {evaluation.example_count} test images; " f"{wrong} off the diagonal.",
            plots.confusion_matrix(evaluation.confusion),
        ),
        Picture(
            "per_digit_accuracy",
            "Accuracy per digit",
            "The Evaluator's accuracy on the test images of each digit (its per-label slices).",
            plots.per_digit_accuracy(evaluation.digit_accuracy, evaluation.digit_counts),
        ),
    ]


def _gallery(
    config: configs.PipelineConfig, store, summary: run_summary.RunSummary, by_id: dict, evaluation: Evaluation
) -> Picture:
    """Runs the pushed model (else the Evaluator's candidate) on the test images the Evaluator saw."""
    from reports import plots

    model_dir, which = summary.pushed_path, f"the pushed model (version {summary.pushed_version})"
    if model_dir is None:
        model_dir, which = _candidate_model(store, by_id), "the evaluated, unpushed candidate model"
    images, labels = _mnist(config, "t10k")
    images, labels = images[: evaluation.example_count], labels[: evaluation.example_count]
    predicted = predict_digits(model_dir, images)
    wrong = np.flatnonzero(predicted != labels)
    shown = wrong[:GALLERY_MAX]
    return Picture(
        "misclassified",
        "Misclassified test images",
        f"Titled predicted/true: {len(shown)} of the {len(wrong)} images that {which} gets wrong "
        f"among the first {len(labels)} official test images (those the Evaluator saw).",
        plots.misclassified_gallery(images[shown], predicted[shown], labels[shown]),
    )


def _candidate_model(store, by_id: dict) -> str:
    if "Evaluator" not in by_id:
        raise MissingInputError("no Evaluator execution")
    inputs = lineage.input_artifacts(store, by_id["Evaluator"].execution_id)
    model = next((a for a in inputs if "model" in a.keys), None)
    if model is None:
        raise MissingInputError("the Evaluator took no model")
    import tensorflow as tf

    uri = model.uri.rstrip("/")
    serving = f"{uri}/Format-Serving"
    return serving if tf.io.gfile.isdir(serving) else uri


def predict_digits(model_dir: str, images: np.ndarray) -> np.ndarray:
    """The ``serving_default`` signature's classes for uint8 images [N, 28, 28], in batches."""
    import tensorflow as tf

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
    return Picture(
        "data_grid",
        "Training data",
        f"The first {GRID_IMAGES} official training images as ExampleGen reads them, titled with " "their labels.",
        path.read_bytes(),
    )


def _mnist(config: configs.PipelineConfig, part: str) -> tuple[np.ndarray, np.ndarray]:
    from components import mnist_data

    try:
        return mnist_data.load(config.data_dir, part)
    except mnist_data.MnistDataError as err:
        raise MissingInputError(str(err)) from None
