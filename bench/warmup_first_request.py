"""First-request latency after a load, per warmup file the InfraValidator could put in the pushed model.

The warmup file is made by the pipeline's InfraValidator executor (``components/infra_validator.py``,
a real `mnist-tfx serve` validation) from real MNIST eval images on a pushed MNIST model. Three
copies of that model are then served, each started ``--loads`` times (interleaved):

- ``no_warmup``: no ``assets.extra/tf_serving_warmup_requests``;
- ``examples_only``: only the request builder's records (``predict_examples``, ``classify``), the
  file before the client signatures were added;
- ``all_signatures``: the whole file (plus ``serving_default`` and ``predict_image_bytes``).

The measured call is what clients send: one eval image as REST ``serving_default`` Predict, the
first request after the server reports REST up (the model AVAILABLE, warmup done).

    .venv/bin/python -m bench.warmup_first_request --model <home>/serving_model/mnist/<version>
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np

from bench.common import data_dir, start_serve
from bench.serving_loading_ab import REPO, Client

WARMUP = Path("assets.extra") / "tf_serving_warmup_requests"
NUM_EXAMPLES = 10  # eval examples per signature, as the pipeline's InfraValidator


def make_warmup(model: Path, data: Path, tmp: Path) -> Path:
    """The InfraValidator's validated copy of `model` (with its warmup file), made by its executor."""
    import tensorflow as tf
    from tfx.types import standard_artifacts

    from components import example_gen, features, infra_validator

    model_artifact = standard_artifacts.Model()
    model_artifact.uri = str(tmp / "model")
    shutil.copytree(model, tmp / "model" / "Format-Serving", ignore=shutil.ignore_patterns("assets.extra"))
    examples = standard_artifacts.Examples()
    examples.uri = str(tmp / "examples")
    examples.split_names = f'["{features.EVAL_SPLIT}"]'
    split = tmp / "examples" / f"Split-{features.EVAL_SPLIT}"
    split.mkdir(parents=True)
    images, labels = example_gen.read_split(str(data / "t10k-*"), limit=NUM_EXAMPLES)
    with tf.io.TFRecordWriter(str(split / "data.gz"), options="GZIP") as writer:
        for image, label in zip(images, labels):
            writer.write(example_gen.to_example(image, label).SerializeToString())
    blessing = infra_validator.validate_once(
        model_artifact, examples, str(tmp / "blessing"), str(tmp / "exec"), NUM_EXAMPLES
    )
    stamped = Path(blessing.uri) / "stamped_model"
    if not (stamped / WARMUP).exists():
        raise RuntimeError(f"the model was not infra-blessed: {list(Path(blessing.uri).iterdir())}")
    return stamped


def keep_only(warmup: Path, signatures: tuple[str, ...]) -> None:
    """Rewrites `warmup` with only the records for `signatures`."""
    import tensorflow as tf
    from tensorflow_serving.apis import prediction_log_pb2

    kept = []
    for raw in tf.data.TFRecordDataset(str(warmup)).as_numpy_iterator():
        log = prediction_log_pb2.PredictionLog.FromString(raw)
        if getattr(log, log.WhichOneof("log_type")).request.model_spec.signature_name in signatures:
            kept.append(raw)
    with tf.io.TFRecordWriter(str(warmup)) as writer:
        for raw in kept:
            writer.write(raw)


def first_request_ms(base_path: Path, body: dict) -> float:
    proc, _, rest_port = start_serve(REPO / ".venv" / "bin" / "python", REPO, "mnist", base_path)
    try:
        return Client(rest_port, "mnist", body).call() * 1e3
    finally:
        proc.terminate()
        proc.wait(30)


def main() -> None:
    from components import example_gen, features, infra_validator

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", type=Path, required=True, help="a pushed MNIST model version folder")
    parser.add_argument("--data", type=Path, help="MNIST IDX files (default: the configured home's)")
    parser.add_argument("--loads", type=int, default=3, help="server starts per setting")
    args = parser.parse_args()
    data = args.data or data_dir()
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        stamped = make_warmup(args.model, data, tmp / "validate")
        bases = {}
        for setting in ("no_warmup", "examples_only", "all_signatures"):
            version = tmp / setting / "mnist" / "1"
            shutil.copytree(stamped, version)
            bases[setting] = version.parent
        (tmp / "no_warmup" / "mnist" / "1" / WARMUP).unlink()
        keep_only(tmp / "examples_only" / "mnist" / "1" / WARMUP, infra_validator.REQUEST_SIGNATURES)
        images, _ = example_gen.read_split(str(data / "t10k-*"), limit=NUM_EXAMPLES + 1)
        image = images[NUM_EXAMPLES].reshape(features.PIXELS_SHAPE).astype(np.float64)  # not a warmup image
        body = {"signature_name": features.SIGNATURE_PIXELS, "instances": [image.tolist()]}
        results: dict[str, list[float]] = {setting: [] for setting in bases}
        for _ in range(args.loads):  # interleaved
            for setting, base in bases.items():
                results[setting].append(round(first_request_ms(base, body), 1))
            print(json.dumps(results), flush=True)
    print(json.dumps({"first_request_ms": results}, indent=2))


if __name__ == "__main__":
    sys.exit(main())
