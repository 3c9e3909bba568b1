"""Training throughput of CNN_Basic on real MNIST, several ways, in one process, same data and batch.

custom  - the Trainer's GradientTape loop (components.training.train_custom_loop, @tf.function step)
fit     - Keras compile/fit on the same model and dataset (components.training.train_fit)
eager   - the custom loop without tf.function (the seed's step run eagerly)

Median images/s over the epochs after one warm-up epoch; ratios against ``fit``.
Writes bench/results/train_throughput.json.
"""

from __future__ import annotations

import statistics
import time

import keras
import numpy as np
import tensorflow as tf

from bench import common
from components import mnist_data, training
from components.model import build_cnn_basic

WAYS = ("custom", "fit", "eager")


def in_memory_dataset(images: np.ndarray, labels: np.ndarray, batch_size: int, shuffle: int = 1000) -> tf.data.Dataset:
    """uint8 arrays → the Trainer's (image [28, 28, 1] in [0, 1], label) batches, cached in memory."""
    x = (images.astype(np.float32) / 255.0)[..., np.newaxis]
    ds = tf.data.Dataset.from_tensor_slices((x, labels.astype(np.int64))).cache()
    if shuffle:
        ds = ds.shuffle(shuffle, seed=0, reshuffle_each_iteration=True)
    return ds.batch(batch_size).prefetch(tf.data.AUTOTUNE)


def measure(way: str, train_ds: tf.data.Dataset, test_ds: tf.data.Dataset, epochs: int, n: int) -> list[float]:
    """Images/s of each epoch of one way, from a freshly seeded model and optimizer."""
    keras.utils.set_random_seed(0)
    model = build_cnn_basic()
    optimizer = keras.optimizers.Adam(1e-3)
    rates: list[float] = []
    record = lambda r: rates.append(r.images_per_second)  # noqa: E731
    if way == "fit":
        training.train_fit(model, train_ds, test_ds, epochs, optimizer, n, on_epoch=record)
    else:
        tf.config.run_functions_eagerly(way == "eager")
        try:
            training.train_custom_loop(model, train_ds, test_ds, epochs, optimizer, n, on_epoch=record)
        finally:
            tf.config.run_functions_eagerly(False)
    return rates


def main() -> None:
    started = time.perf_counter()
    p = common.parser(__doc__)
    p.add_argument("--images", type=int, help="training images (default 6400; quick 640)")
    p.add_argument("--epochs", type=int, help="epochs including one warm-up (default 4; quick 3)")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--home", help="home whose data/ holds MNIST (default: the configured home)")
    p.add_argument("--only", nargs="*", choices=WAYS, default=list(WAYS))
    args = p.parse_args()
    args.images = args.images or (640 if args.quick else 6400)
    args.epochs = args.epochs or (3 if args.quick else 4)
    data = common.data_dir(args.home)
    images, labels = mnist_data.load(data, "train")
    test_images, test_labels = mnist_data.load(data, "t10k")
    train_ds = in_memory_dataset(images[: args.images], labels[: args.images], args.batch_size)
    test_ds = in_memory_dataset(test_images[:1000], test_labels[:1000], args.batch_size, shuffle=0)
    results = {}
    for way in args.only:
        t0 = time.perf_counter()
        rates = measure(way, train_ds, test_ds, args.epochs, args.images)
        results[way] = {"images_per_second": statistics.median(rates[1:] or rates), "epochs": rates,
                        "seconds": time.perf_counter() - t0}
        print(f"{way:<7} {results[way]['images_per_second']:7.0f} img/s  per epoch {[round(r) for r in rates]}",
              flush=True)
    fit = results.get("fit", {}).get("images_per_second")
    rows = [[way, r["images_per_second"], r["images_per_second"] / fit if fit else None] for way, r in results.items()]
    print(f"\n{args.images} images, batch {args.batch_size}, median of epochs 2..{args.epochs}")
    print(common.table(rows, ["way", "images/s", "× fit"], floatfmt=".2f"))
    ours = results["custom"]["images_per_second"] / fit if "custom" in results and fit else None
    targets = [common.target("training: custom loop / fit", ours, ">=", 1.0, "×"),
               common.target("training: custom loop / fit (aim)", ours, ">=", 1.3, "×")]
    common.write("train_throughput", args, results, targets, started)


if __name__ == "__main__":
    main()
