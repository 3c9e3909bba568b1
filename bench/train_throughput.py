"""Training throughput of CNN_Basic on real MNIST, three ways, in one process, same data and batch.

custom  - the Trainer's GradientTape loop (@tf.function train_step)
fit     - Keras compile/fit on the same model and dataset
eager   - the same loop without tf.function (the seed's step run eagerly)

Median images/s over the measured epochs after one warm-up epoch. Writes bench/results/train_throughput.json.
Usage: python bench/train_throughput.py [--images N] [--epochs E] [--batch-size B] [--data-dir DIR]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from components import mnist_data, training
from components.model import build_cnn_basic
from pipeline import configs


def in_memory_dataset(images: np.ndarray, labels: np.ndarray, batch_size: int) -> tf.data.Dataset:
    x = (images.astype(np.float32) / 255.0)[..., np.newaxis]
    return (
        tf.data.Dataset.from_tensor_slices((x, labels.astype(np.int64)))
        .cache()
        .shuffle(1000, seed=0)
        .batch(batch_size)
        .prefetch(tf.data.AUTOTUNE)
    )


def measure(name: str, train_ds: tf.data.Dataset, test_ds: tf.data.Dataset, epochs: int, n: int) -> list[float]:
    keras.utils.set_random_seed(0)
    model = build_cnn_basic()
    optimizer = keras.optimizers.Adam(1e-3)
    rates: list[float] = []
    quiet = lambda r: rates.append(r.images_per_second)  # noqa: E731
    if name == "fit":
        training.train_fit(model, train_ds, test_ds, epochs, optimizer, n, on_epoch=quiet)
    elif name == "eager":
        tf.config.run_functions_eagerly(True)
        try:
            training.train_custom_loop(model, train_ds, test_ds, epochs, optimizer, n, on_epoch=quiet)
        finally:
            tf.config.run_functions_eagerly(False)
    else:
        training.train_custom_loop(model, train_ds, test_ds, epochs, optimizer, n, on_epoch=quiet)
    return rates


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=6400)
    parser.add_argument("--epochs", type=int, default=3, help="including one warm-up epoch")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--data-dir", default=str(configs.PipelineConfig().data_dir))
    parser.add_argument("--only", nargs="*", default=["custom", "fit", "eager"])
    args = parser.parse_args()
    mnist_data.materialize(args.data_dir)
    images, labels = mnist_data.load(args.data_dir, "train")
    test_images, test_labels = mnist_data.load(args.data_dir, "t10k")
    train_ds = in_memory_dataset(images[: args.images], labels[: args.images], args.batch_size)
    test_ds = in_memory_dataset(test_images[:1000], test_labels[:1000], args.batch_size)
    results = {}
    for name in args.only:
        started = time.perf_counter()
        rates = measure(name, train_ds, test_ds, args.epochs, args.images)
        measured = rates[1:] or rates
        results[name] = {"images_per_second": statistics.median(measured), "epochs": rates,
                         "seconds": time.perf_counter() - started}
        print(f"{name:<8} {results[name]['images_per_second']:8.0f} img/s  (per epoch: {[round(r) for r in rates]})", flush=True)
    if "fit" in results:
        for name in results:
            print(f"{name:<8} / fit = {results[name]['images_per_second'] / results['fit']['images_per_second']:.2f}x")
    out = Path(__file__).parent / "results" / "train_throughput.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps({"args": vars(args), "results": results}, indent=2))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
