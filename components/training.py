"""The seed's training: a ``tf.GradientTape`` loop (default) or Keras ``compile``/``fit``."""

from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path
from typing import Callable

import keras
import tensorflow as tf


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
    log_dir: str | None = None,
    on_epoch: Callable[[EpochResult], None] = lambda r: print(r.line(), flush=True),
) -> list[EpochResult]:
    """The seed's loop, corrected: accuracy metrics are accuracies and all metrics reset per epoch."""
    loss_object = keras.losses.SparseCategoricalCrossentropy()
    train_loss = keras.metrics.Mean(name="train_loss")
    train_accuracy = keras.metrics.SparseCategoricalAccuracy(name="train_accuracy")
    test_loss = keras.metrics.Mean(name="test_loss")
    test_accuracy = keras.metrics.SparseCategoricalAccuracy(name="test_accuracy")

    @tf.function
    def train_step(images: tf.Tensor, labels: tf.Tensor) -> None:
        with tf.GradientTape() as tape:
            predictions = model(images, training=True)
            loss = loss_object(labels, predictions)
        gradients = tape.gradient(loss, model.trainable_variables)
        optimizer.apply_gradients(zip(gradients, model.trainable_variables))
        train_loss.update_state(loss)
        train_accuracy.update_state(labels, predictions)

    @tf.function
    def test_step(images: tf.Tensor, labels: tf.Tensor) -> None:
        predictions = model(images, training=False)
        test_loss.update_state(loss_object(labels, predictions))
        test_accuracy.update_state(labels, predictions)

    writer = tf.summary.create_file_writer(log_dir) if log_dir else None
    results = []
    for epoch in range(1, epochs + 1):
        for metric in (train_loss, train_accuracy, test_loss, test_accuracy):
            metric.reset_state()
        started, images = time.perf_counter(), 0
        for batch_images, batch_labels in train_ds:
            train_step(batch_images, batch_labels)
            images += int(batch_images.shape[0])
        seconds = time.perf_counter() - started
        for batch_images, batch_labels in test_ds:
            test_step(batch_images, batch_labels)
        result = EpochResult(
            epoch,
            float(train_loss.result()),
            float(train_accuracy.result()),
            float(test_loss.result()),
            float(test_accuracy.result()),
            images / seconds,
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
    on_epoch: Callable[[EpochResult], None] = lambda r: print(r.line(), flush=True),
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
