"""Training throughput of CNN_Basic on real MNIST, several ways, same model, data and batch.

custom  - the Trainer's GradientTape loop (components.training.custom_loop_epochs, @tf.function step)
fit     - Keras compile/fit on the same model and dataset (components.training.fit_epochs)
eager   - the custom loop without tf.function (the seed's step run eagerly)

The ways run in one process, interleaved epoch by epoch (custom, fit, eager, custom, ...), so a
slow spell of this shared VM hits every way alike; the first epoch (tracing) is left out and the
median of the rest is reported. The whole comparison runs twice, in two processes: with oneDNN
off (TensorFlow's default on this AVX2 CPU) and on (``TF_ENABLE_ONEDNN_OPTS=1``, what
``mnist-tfx run`` sets), because that switch only takes effect before TensorFlow is imported.
Writes bench/results/train_throughput.json.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Iterator

from bench import common

WAYS = ("custom", "fit", "eager")
SETTINGS = {"oneDNN off": "0", "oneDNN on": "1"}
EAGER_SETTING = "oneDNN off"  # eager is slow: measured once, for the record


def epochs_of(way: str, train_ds, test_ds, n: int) -> Iterator[float]:
    """Images/s of each ``next()`` epoch of one way, from a freshly seeded model and optimizer."""
    import keras
    import tensorflow as tf

    from components import training
    from components.model import build_cnn_basic

    keras.utils.set_random_seed(0)
    model, optimizer = build_cnn_basic(), keras.optimizers.Adam(1e-3)
    if way == "fit":
        results = training.fit_epochs(model, train_ds, test_ds, optimizer, n)
    else:
        results = training.custom_loop_epochs(model, train_ds, test_ds, optimizer, n)
    while True:
        tf.config.run_functions_eagerly(way == "eager")
        try:
            result = next(results)
        finally:
            tf.config.run_functions_eagerly(False)
        yield result.images_per_second


def measure_interleaved(args: argparse.Namespace, ways: list[str]) -> dict[str, list[float]]:
    """Per-epoch images/s of each way, the ways taking turns epoch by epoch (run in this process)."""
    from components import dataset, mnist_data

    data = common.data_dir(args.home)
    images, labels = mnist_data.load(data, "train")
    test_images, test_labels = mnist_data.load(data, "t10k")
    train_ds = dataset.batched(
        common.in_memory_examples(images[: args.images], labels[: args.images]),
        args.batch_size,
        common.SHUFFLE_BUFFER,
        seed=0,
    )
    test_ds = dataset.batched(common.in_memory_examples(test_images[:1000], test_labels[:1000]), args.batch_size)
    runs = {way: epochs_of(way, train_ds, test_ds, args.images) for way in ways}
    rates: dict[str, list[float]] = {way: [] for way in ways}
    for epoch in range(1, args.epochs + 1):
        for way, run in runs.items():
            rates[way].append(next(run))
            print(f"  epoch {epoch} {way:<7} {rates[way][-1]:6.0f} img/s", flush=True)
    return rates


def run_setting(args: argparse.Namespace, setting: str, ways: list[str]) -> dict[str, list[float]]:
    """``measure_interleaved`` in a fresh process with the oneDNN switch of ``setting``."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "rates.json"
        command = [
            sys.executable,
            "-m",
            "bench.train_throughput",
            "--rates-out",
            str(out),
            "--images",
            str(args.images),
            "--epochs",
            str(args.epochs),
            "--batch-size",
            str(args.batch_size),
            "--only",
            *ways,
        ]
        if args.home:
            command += ["--home", args.home]
        env = {**os.environ, "TF_ENABLE_ONEDNN_OPTS": SETTINGS[setting], "TF_CPP_MIN_LOG_LEVEL": "2"}
        print(f"{setting}:", flush=True)
        subprocess.run(command, cwd=common.REPO, env=env, check=True)
        return json.loads(out.read_text())


def main() -> None:
    started = time.perf_counter()
    p = common.parser(__doc__)
    p.add_argument("--images", type=int, help="training images (default 6400; quick 640)")
    p.add_argument("--epochs", type=int, help="epochs including one warm-up (default 4; quick 3)")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--home", help="home whose data/ holds MNIST (default: the configured home)")
    p.add_argument("--only", nargs="*", choices=WAYS, default=list(WAYS))
    p.add_argument("--rates-out", help=argparse.SUPPRESS)  # internal: one setting, rates to this file
    args = p.parse_args()
    args.images = args.images or (640 if args.quick else 6400)
    args.epochs = max(2, args.epochs or (3 if args.quick else 4))
    if args.rates_out:
        Path(args.rates_out).write_text(json.dumps(measure_interleaved(args, args.only)))
        return

    results: dict[str, dict[str, Any]] = {}
    for setting in SETTINGS:
        ways = [w for w in args.only if w != "eager" or setting == EAGER_SETTING]
        for way, rates in (run_setting(args, setting, ways) if ways else {}).items():
            results[f"{way}, {setting}"] = {
                "way": way,
                "setting": setting,
                "epochs": rates,
                "images_per_second": statistics.median(rates[1:]),
            }

    def rate(way: str, setting: str) -> float | None:
        return results.get(f"{way}, {setting}", {}).get("images_per_second")

    def ratio(a: float | None, b: float | None) -> float | None:
        return a / b if a and b else None

    stock_fit = rate("fit", EAGER_SETTING)
    rows = [
        [
            name,
            r["images_per_second"],
            ratio(r["images_per_second"], rate("fit", r["setting"])),
            ratio(r["images_per_second"], stock_fit),
            [round(x) for x in r["epochs"]],
        ]
        for name, r in results.items()
    ]
    print(f"\n{args.images} images, batch {args.batch_size}, median of epochs 2..{args.epochs}, ways interleaved")
    print(
        common.table(
            rows,
            ["way, setting", "images/s", "× fit (same setting)", "× fit (oneDNN off)", "per epoch"],
            floatfmt=".2f",
        )
    )
    ours = rate("custom", "oneDNN on")
    targets = [
        common.target(
            f"training: custom loop / fit, {setting}",
            ratio(rate("custom", setting), rate("fit", setting)),
            ">=",
            1.0,
            "×",
        )
        for setting in SETTINGS
    ]
    targets.append(
        common.target(
            "training: the Trainer's way (custom, oneDNN on) / stock fit (aim)", ratio(ours, stock_fit), ">=", 1.3, "×"
        )
    )
    common.write("train_throughput", args, results, targets, started)


if __name__ == "__main__":
    main()
