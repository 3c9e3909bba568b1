"""The seed's training: a ``tf.GradientTape`` loop (default) or Keras ``compile``/``fit``."""

from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path
from typing import Callable

import keras
import tensorflow as tf

from components import features


@dataclasses.dataclass(frozen=True)
class EpochResult:
    epoch: int
    loss: float
    accuracy: float
    test_loss: float
    test_accuracy: float
    images_per_second: float

    def line(self) -> str:
        """The seed's per-epoch line, accuracies in percent, plus throughput."""
        return (
            f"Epoch {self.epoch}, Loss: {self.loss:.4f}, Accuracy: {self.accuracy * 100:.2f}, "
            f"Test Loss: {self.test_loss:.4f}, Test Accuracy: {self.test_accuracy * 100:.2f}, "
            f"Images/s: {self.images_per_second:.0f}"
        )


def _print_line(result: EpochResult) -> None:
    print(result.line(), flush=True)


def make_strategy(name: str) -> tf.distribute.Strategy:
    """``default`` = one device; ``mirrored`` = all local GPUs (or CPU); ``multi_worker_mirrored`` =
    synchronous training across the workers described by the ``TF_CONFIG`` environment variable."""
    if name == "mirrored":
        return tf.distribute.MirroredStrategy()
    if name == "multi_worker_mirrored":
        return tf.distribute.MultiWorkerMirroredStrategy()
    if name == "default":
        return tf.distribute.get_strategy()
    raise ValueError(f"unknown distribution strategy {name!r}; choose one of {', '.join(features.DISTRIBUTION_STRATEGIES)}")


def make_optimizer(learning_rate: float, total_steps: int) -> keras.optimizers.Optimizer:
    """Adam with cosine decay to zero over the whole run (steadier final accuracy than a fixed rate)."""
    schedule = keras.optimizers.schedules.CosineDecay(learning_rate, decay_steps=max(total_steps, 1))
    return keras.optimizers.Adam(schedule)


def train_custom_loop(
    model: keras.Model,
    train_ds: tf.data.Dataset,
    test_ds: tf.data.Dataset,
    epochs: int,
    optimizer: keras.optimizers.Optimizer,
    num_train_images: int,
    log_dir: str | None = None,
    on_epoch: Callable[[EpochResult], None] = _print_line,
    strategy: tf.distribute.Strategy | None = None,
) -> list[EpochResult]:
    """The seed's loop, corrected: accuracy metrics are accuracies and all metrics reset per epoch.

    Runs each step through ``strategy`` (default: the single-device default strategy); the model,
    optimizer and this function must then be created under ``strategy.scope()``.
    """
    strategy = strategy or tf.distribute.get_strategy()
    loss_object = keras.losses.SparseCategoricalCrossentropy(reduction=None)  # per example
    train_loss = keras.metrics.Mean(name="train_loss")
    train_accuracy = keras.metrics.SparseCategoricalAccuracy(name="train_accuracy")
    test_loss = keras.metrics.Mean(name="test_loss")
    test_accuracy = keras.metrics.SparseCategoricalAccuracy(name="test_accuracy")

    def replica_train_step(images: tf.Tensor, labels: tf.Tensor) -> None:
        with tf.GradientTape() as tape:
            predictions = model(images, training=True)
            losses = loss_object(labels, predictions)
            loss = tf.nn.compute_average_loss(losses)  # mean over the global batch
        gradients = tape.gradient(loss, model.trainable_variables)
        optimizer.apply_gradients(zip(gradients, model.trainable_variables))
        train_loss.update_state(losses)
        train_accuracy.update_state(labels, predictions)

    def replica_test_step(images: tf.Tensor, labels: tf.Tensor) -> None:
        predictions = model(images, training=False)
        test_loss.update_state(loss_object(labels, predictions))
        test_accuracy.update_state(labels, predictions)

    @tf.function
    def train_step(images: tf.Tensor, labels: tf.Tensor) -> None:
        strategy.run(replica_train_step, args=(images, labels))

    @tf.function
    def test_step(images: tf.Tensor, labels: tf.Tensor) -> None:
        strategy.run(replica_test_step, args=(images, labels))

    if not optimizer.built:  # its slots must exist before the first (replicated) step
        with strategy.scope():
            optimizer.build(model.trainable_variables)
    train_batches = strategy.experimental_distribute_dataset(train_ds)
    test_batches = strategy.experimental_distribute_dataset(test_ds)
    writer = tf.summary.create_file_writer(log_dir) if log_dir else None
    results = []
    for epoch in range(1, epochs + 1):
        for metric in (train_loss, train_accuracy, test_loss, test_accuracy):
            metric.reset_state()
        started = time.perf_counter()
        for images, labels in train_batches:
            train_step(images, labels)
        seconds = time.perf_counter() - started
        for images, labels in test_batches:
            test_step(images, labels)
        result = EpochResult(
            epoch,
            float(train_loss.result()),
            float(train_accuracy.result()),
            float(test_loss.result()),
            float(test_accuracy.result()),
            num_train_images / seconds,
        )
        results.append(result)
        on_epoch(result)
        if writer:
            _write_scalars(writer, result)
    return results


def train_fit(
    model: keras.Model,
    train_ds: tf.data.Dataset,
    test_ds: tf.data.Dataset,
    epochs: int,
    optimizer: keras.optimizers.Optimizer,
    num_train_images: int,
    log_dir: str | None = None,
    on_epoch: Callable[[EpochResult], None] = _print_line,
) -> list[EpochResult]:
    """The same model trained with Keras ``compile``/``fit`` (the seed's other path)."""
    model.compile(
        optimizer=optimizer,
        loss=keras.losses.SparseCategoricalCrossentropy(),
        metrics=[keras.metrics.SparseCategoricalAccuracy(name="accuracy")],
    )
    results: list[EpochResult] = []

    class _Report(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
            self.started = time.perf_counter()

        def on_train_batch_end(self, batch: int, logs: dict | None = None) -> None:
            self.train_done = time.perf_counter()

        def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
            logs = logs or {}
            result = EpochResult(
                epoch + 1, logs["loss"], logs["accuracy"], logs["val_loss"], logs["val_accuracy"],
                num_train_images / (self.train_done - self.started),
            )
            results.append(result)
            on_epoch(result)

    callbacks: list[keras.callbacks.Callback] = [_Report()]
    if log_dir:
        callbacks.append(keras.callbacks.TensorBoard(log_dir=log_dir))
    model.fit(train_ds, validation_data=test_ds, epochs=epochs, callbacks=callbacks, verbose=0)
    return results


def _write_scalars(writer: tf.summary.SummaryWriter, result: EpochResult) -> None:
    with writer.as_default(step=result.epoch):
        tf.summary.scalar("train/loss", result.loss)
        tf.summary.scalar("train/accuracy", result.accuracy)
        tf.summary.scalar("test/loss", result.test_loss)
        tf.summary.scalar("test/accuracy", result.test_accuracy)
        tf.summary.scalar("train/images_per_second", result.images_per_second)
    writer.flush()


def save_history(results: list[EpochResult], path: Path) -> None:
    """Per-epoch metrics as JSON beside the TensorBoard logs (for plots and reports)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps([dataclasses.asdict(r) for r in results], indent=2))
