"""The Trainer's input (Transform's gzipped TFRecords → components.dataset) against in-memory tensors.

Transform's output is made here without TFX: real MNIST written as transformed tf.Examples
(``image`` float [28, 28, 1] in [0, 1], ``label`` int64), one gzipped shard per split as Transform
writes it, read with Transform's transformed feature spec. Both sources get the same
``dataset.batched`` (shuffle, batch, prefetch). Timed per epoch, just iterating: epoch 1 of the
Trainer's dataset parses and fills its cache, later epochs read the cache. Then both feed the
Trainer's custom loop. Writes bench/results/input_pipeline.json.
"""

from __future__ import annotations

import statistics
import tempfile
import time
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from bench import common
from components import dataset, features, mnist_data, training
from components.model import build_cnn_basic

FEATURE_SPEC = {  # what tft.TFTransformOutput.transformed_feature_spec() gives for preprocessing_fn
    features.IMAGE_KEY: tf.io.FixedLenFeature(list(features.MODEL_INPUT_SHAPE), tf.float32),
    features.LABEL_KEY: tf.io.FixedLenFeature([], tf.int64),
}


def write_transformed(images: np.ndarray, labels: np.ndarray, split_dir: Path) -> str:
    """uint8 images/labels → ``split_dir/transformed_examples-00000-of-00001.gz``; returns its glob."""
    split_dir.mkdir(parents=True)
    scaled = images.reshape(len(images), -1).astype(np.float32) / 255.0
    path = split_dir / "transformed_examples-00000-of-00001.gz"
    with tf.io.TFRecordWriter(str(path), tf.io.TFRecordOptions(compression_type="GZIP")) as writer:
        for pixels, label in zip(scaled, labels):
            example = tf.train.Example(
                features=tf.train.Features(
                    feature={
                        features.IMAGE_KEY: tf.train.Feature(float_list=tf.train.FloatList(value=pixels)),
                        features.LABEL_KEY: tf.train.Feature(int64_list=tf.train.Int64List(value=[int(label)])),
                    }
                )
            )
            writer.write(example.SerializeToString())
    return str(split_dir / "transformed_examples-*.gz")


def iterate_epochs(examples: tf.data.Dataset, batch_size: int, epochs: int, n: int) -> list[float]:
    """Images/s of each epoch of iterating the batched dataset in Python, as a training loop does."""
    ds = dataset.batched(examples, batch_size, common.SHUFFLE_BUFFER, seed=0)
    rates = []
    for _ in range(epochs):
        started = time.perf_counter()
        for _batch in ds:
            pass
        rates.append(n / (time.perf_counter() - started))
    return rates


def train_epochs(examples: tf.data.Dataset, test: tf.data.Dataset, batch_size: int, epochs: int, n: int) -> list[float]:
    """Images/s of each epoch of the Trainer's custom loop fed by ``examples``."""
    keras.utils.set_random_seed(0)
    rates: list[float] = []
    training.train(
        build_cnn_basic(),
        dataset.batched(examples, batch_size, common.SHUFFLE_BUFFER, seed=0),
        dataset.batched(test, batch_size),
        epochs,
        keras.optimizers.Adam(1e-3),
        n,
        on_epoch=lambda r: rates.append(r.images_per_second),
    )
    return rates


def summary(rates: list[float]) -> dict[str, float | list[float]]:
    return {"first_epoch": rates[0], "later_epochs_median": statistics.median(rates[1:]), "epochs": rates}


def main() -> None:
    started = time.perf_counter()
    p = common.parser(__doc__)
    p.add_argument("--images", type=int, help="training images (default all 60000; quick 3000)")
    p.add_argument("--epochs", type=int, help="iteration epochs, the first parses (default 4; quick 3)")
    p.add_argument("--train-images", type=int, help="images for the training-fed comparison (default 6400; quick 640)")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--home", help="home whose data/ holds MNIST (default: the configured home)")
    args = p.parse_args()
    args.images = args.images or (3000 if args.quick else 60000)
    args.epochs = max(2, args.epochs or (3 if args.quick else 4))
    args.train_images = args.train_images or (640 if args.quick else 6400)
    data = common.data_dir(args.home)
    images, labels = mnist_data.load(data, "train")
    images, labels = images[: args.images], labels[: args.images]
    test_images, test_labels = mnist_data.load(data, "t10k")
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        pattern = write_transformed(images, labels, Path(tmp) / "Split-train")
        write_seconds = time.perf_counter() - t0
        transformed = dataset.load_transformed([pattern], FEATURE_SPEC)
        iterate = {
            "trainer_dataset": summary(iterate_epochs(transformed, args.batch_size, args.epochs, args.images)),
            "in_memory": summary(
                iterate_epochs(common.in_memory_examples(images, labels), args.batch_size, args.epochs, args.images)
            ),
        }
        m = args.train_images
        test = common.in_memory_examples(test_images[:1000], test_labels[:1000])
        fed = {
            "trainer_dataset": summary(train_epochs(transformed.take(m), test, args.batch_size, 3, m)),
            "in_memory": summary(
                train_epochs(common.in_memory_examples(images[:m], labels[:m]), test, args.batch_size, 3, m)
            ),
        }
    ratio = iterate["trainer_dataset"]["later_epochs_median"] / iterate["in_memory"]["later_epochs_median"]
    first = iterate["trainer_dataset"]["first_epoch"] / iterate["in_memory"]["first_epoch"]
    fed_ratio = fed["trainer_dataset"]["later_epochs_median"] / fed["in_memory"]["later_epochs_median"]
    rows = [
        [
            "iterate, epoch 1 (Trainer's: parse + cache)",
            iterate["trainer_dataset"]["first_epoch"],
            iterate["in_memory"]["first_epoch"],
            first,
        ],
        [
            "iterate, later epochs (median)",
            iterate["trainer_dataset"]["later_epochs_median"],
            iterate["in_memory"]["later_epochs_median"],
            ratio,
        ],
        [
            "training, epochs 2-3 (median)",
            fed["trainer_dataset"]["later_epochs_median"],
            fed["in_memory"]["later_epochs_median"],
            fed_ratio,
        ],
    ]
    print(
        f"\n{args.images} images ({m} for training), batch {args.batch_size}; "
        f"writing the TFRecords took {write_seconds:.1f} s"
    )
    print(common.table(rows, ["images/s", "Trainer's dataset", "in-memory", "ratio"], floatfmt=".2f"))
    results = {
        "write_seconds": write_seconds,
        "iterate": iterate,
        "training": fed,
        "ratio_iterate": ratio,
        "ratio_first_epoch": first,
        "ratio_training": fed_ratio,
    }
    targets = [
        common.target("input: Trainer's dataset / in-memory (cached epochs)", ratio, ">=", 0.9, "×"),
        common.target("input: same, feeding training", fed_ratio, ">=", 0.9, "×"),
    ]
    common.write("input_pipeline", args, results, targets, started)


if __name__ == "__main__":
    main()
