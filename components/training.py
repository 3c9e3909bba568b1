"""The seed's training: a ``tf.GradientTape`` loop (default) or Keras ``compile``/``fit``."""

from __future__ import annotations

import dataclasses
import itertools
import json
import os
import time
from typing import Callable, Iterator

import keras
import tensorflow as tf

from components import dataset, features


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
    raise ValueError(
        f"unknown distribution strategy {name!r}; choose one of {', '.join(features.DISTRIBUTION_STRATEGIES)}"
    )


def make_optimizer(learning_rate: float, total_steps: int) -> keras.optimizers.Optimizer:
    """Adam with cosine decay to zero over the whole run (steadier final accuracy than a fixed rate)."""
    schedule = keras.optimizers.schedules.CosineDecay(learning_rate, decay_steps=max(total_steps, 1))
    return keras.optimizers.Adam(schedule)


def custom_loop_epochs(
    model: keras.Model,
    train_ds: tf.data.Dataset,
    test_ds: tf.data.Dataset,
    optimizer: keras.optimizers.Optimizer,
    num_train_images: int,
    strategy: tf.distribute.Strategy | None = None,
) -> Iterator[EpochResult]:
    """The seed's loop, corrected, one epoch per ``next()``: accuracy metrics are accuracies and
    all metrics reset per epoch.

    Runs each step through ``strategy`` (default: the single-device default strategy); the model,
    optimizer and this generator must then be created under ``strategy.scope()``.

    Each dataset is read through one iterator over its endless repetition, ``cardinality`` steps
    per epoch, and the step takes its batch from the iterator inside the graph (as Keras ``fit``
    does): tearing down an exhausted tf.data iterator every epoch cost up to 2 s per epoch here.
    Multi-worker training keeps one iterator per epoch, run until it is exhausted, because each
    worker reads only its shard of the batches.
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
    def train_step(batches: Iterator) -> None:
        strategy.run(replica_train_step, args=next(batches))

    @tf.function
    def test_step(batches: Iterator) -> None:
        strategy.run(replica_test_step, args=next(batches))

    if not optimizer.built:  # its slots must exist before the first (replicated) step
        with strategy.scope():
            optimizer.build(model.trainable_variables)
    run_train_epoch = _epoch_runner(train_ds, train_step, strategy)
    run_test_epoch = _epoch_runner(test_ds, test_step, strategy)
    for epoch in itertools.count(1):
        for metric in (train_loss, train_accuracy, test_loss, test_accuracy):
            metric.reset_state()
        started = time.perf_counter()
        run_train_epoch()
        seconds = time.perf_counter() - started
        run_test_epoch()
        yield EpochResult(
            epoch,
            float(train_loss.result()),
            float(train_accuracy.result()),
            float(test_loss.result()),
            float(test_accuracy.result()),
            num_train_images / seconds,
        )


def _epoch_runner(
    ds: tf.data.Dataset, step: Callable[[Iterator], None], strategy: tf.distribute.Strategy
) -> Callable[[], None]:
    """A function that runs ``step`` over one epoch of ``ds`` (see :func:`custom_loop_epochs`)."""
    if isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
        distributed = strategy.experimental_distribute_dataset(ds)

        def until_exhausted() -> None:
            batches = iter(distributed)
            while True:
                try:
                    step(batches)
                except tf.errors.OutOfRangeError:
                    return

        return until_exhausted

    steps = steps_per_epoch(ds)
    batches = iter(strategy.experimental_distribute_dataset(ds.repeat()))

    def fixed_steps() -> None:
        for _ in range(steps):
            step(batches)

    return fixed_steps


def steps_per_epoch(ds: tf.data.Dataset) -> int:
    """Batches in one pass over ``ds``: its cardinality, or counted when tf.data does not know it."""
    cardinality = int(ds.cardinality())
    if cardinality == tf.data.INFINITE_CARDINALITY:
        raise ValueError("the dataset repeats forever: an epoch needs a finite dataset (drop .repeat())")
    if cardinality == tf.data.UNKNOWN_CARDINALITY:
        cardinality = dataset.count(ds)
    if cardinality == 0:
        raise ValueError("the dataset is empty: there is nothing to train or evaluate on")
    return cardinality


def fit_epochs(
    model: keras.Model,
    train_ds: tf.data.Dataset,
    test_ds: tf.data.Dataset,
    optimizer: keras.optimizers.Optimizer,
    num_train_images: int,
    log_dir: str | None = None,
) -> Iterator[EpochResult]:
    """The same model trained with Keras ``compile``/``fit`` (the seed's other path), one epoch per
    ``next()``: ``fit(initial_epoch=e - 1, epochs=e)`` keeps the compiled train function."""
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
            results.append(
                EpochResult(
                    epoch + 1,
                    logs["loss"],
                    logs["accuracy"],
                    logs["val_loss"],
                    logs["val_accuracy"],
                    num_train_images / (self.train_done - self.started),
                )
            )

    callbacks: list[keras.callbacks.Callback] = [_Report()]
    if log_dir:
        callbacks.append(keras.callbacks.TensorBoard(log_dir=log_dir))
    for epoch in itertools.count(1):
        model.fit(
            train_ds, validation_data=test_ds, initial_epoch=epoch - 1, epochs=epoch, callbacks=callbacks, verbose=0
        )
        yield results[-1]


def train(
    model: keras.Model,
    train_ds: tf.data.Dataset,
    test_ds: tf.data.Dataset,
    epochs: int,
    optimizer: keras.optimizers.Optimizer,
    num_train_images: int,
    *,
    loop: str = "custom",
    log_dir: str | None = None,
    on_epoch: Callable[[EpochResult], None] = _print_line,
    strategy: tf.distribute.Strategy | None = None,
) -> list[EpochResult]:
    """``epochs`` epochs of the custom loop (:func:`custom_loop_epochs`) or of ``fit``
    (:func:`fit_epochs`), each reported to ``on_epoch`` and logged to TensorBoard in ``log_dir``.
    Create the model and optimizer under ``strategy.scope()``."""
    strategy = strategy or tf.distribute.get_strategy()
    if loop == "fit":
        with strategy.scope():
            return _run(fit_epochs(model, train_ds, test_ds, optimizer, num_train_images, log_dir), epochs, on_epoch)
    if loop != "custom":
        raise ValueError(f"unknown training loop {loop!r}; choose one of {', '.join(features.TRAINING_LOOPS)}")
    epoch_results = custom_loop_epochs(model, train_ds, test_ds, optimizer, num_train_images, strategy)
    return _run(epoch_results, epochs, on_epoch, tf.summary.create_file_writer(log_dir) if log_dir else None)


def _run(
    epoch_results: Iterator[EpochResult],
    epochs: int,
    on_epoch: Callable[[EpochResult], None],
    writer: tf.summary.SummaryWriter | None = None,
) -> list[EpochResult]:
    results = []
    for result in itertools.islice(epoch_results, epochs):
        results.append(result)
        on_epoch(result)
        if writer:
            _write_scalars(writer, result)
    return results


def _write_scalars(writer: tf.summary.SummaryWriter, result: EpochResult) -> None:
    with writer.as_default(step=result.epoch):
        tf.summary.scalar("train/loss", result.loss)
        tf.summary.scalar("train/accuracy", result.accuracy)
        tf.summary.scalar("test/loss", result.test_loss)
        tf.summary.scalar("test/accuracy", result.test_accuracy)
        tf.summary.scalar("train/images_per_second", result.images_per_second)
    writer.flush()


def save_history(results: list[EpochResult], path: str | os.PathLike) -> None:
    """Per-epoch metrics as JSON beside the TensorBoard logs (for plots and reports); ``path`` may be a URI."""
    tf.io.gfile.makedirs(os.path.dirname(os.fspath(path)))
    with tf.io.gfile.GFile(os.fspath(path), "w") as out:
        out.write(json.dumps([dataclasses.asdict(r) for r in results], indent=2))
