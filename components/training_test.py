import json

import keras
import numpy as np
import pytest
import tensorflow as tf

from components import training
from components.model import build_cnn_basic


def _tiny_dataset(data_dir, n: int = 64) -> tf.data.Dataset:
    from components import mnist_data

    images, labels = mnist_data.load(data_dir, "train")
    x = (images[:n].astype(np.float32) / 255.0)[..., None]
    return tf.data.Dataset.from_tensor_slices((x, labels[:n].astype(np.int64))).batch(32)


def test_custom_loop_lowers_the_loss_and_logs_every_epoch(data_dir, tmp_path) -> None:
    keras.utils.set_random_seed(0)
    data = _tiny_dataset(data_dir)
    lines = []
    results = training.train(
        build_cnn_basic(),
        data,
        data,
        epochs=4,
        optimizer=keras.optimizers.Adam(1e-3),
        num_train_images=64,
        log_dir=str(tmp_path / "tb"),
        on_epoch=lambda r: lines.append(r.line()),
    )
    assert results[-1].loss < results[0].loss * 0.8
    assert results[-1].test_loss < results[0].test_loss
    assert all(0.0 <= r.accuracy <= 1.0 and 0.0 <= r.test_accuracy <= 1.0 for r in results)
    assert lines[0].startswith("Epoch 1, Loss: ") and ", Test Accuracy: " in lines[0] and "Images/s: " in lines[0]
    assert list((tmp_path / "tb").glob("events.out.tfevents.*"))  # TensorBoard scalars
    training.save_history(results, tmp_path / "history.json")
    assert [e["epoch"] for e in json.loads((tmp_path / "history.json").read_text())] == [1, 2, 3, 4]


def test_fit_path_trains_the_same_model(data_dir) -> None:
    keras.utils.set_random_seed(0)
    data = _tiny_dataset(data_dir)
    results = training.train(
        build_cnn_basic(),
        data,
        data,
        3,
        keras.optimizers.Adam(1e-3),
        num_train_images=64,
        loop="fit",
        on_epoch=lambda r: None,
    )
    assert [r.epoch for r in results] == [1, 2, 3]
    assert results[-1].loss < results[0].loss


@pytest.mark.parametrize("strategy_name, replicas", [("mirrored", 2), ("multi_worker_mirrored", 1)])
def test_custom_loop_runs_under_distribution_strategies(data_dir, strategy_name, replicas) -> None:
    """Two logical CPUs: MirroredStrategy runs one replica on each; MultiWorkerMirroredStrategy
    without ``TF_CONFIG`` is one worker (its epochs run until the iterator is exhausted)."""
    import subprocess
    import sys
    import textwrap

    script = textwrap.dedent(f"""
        import keras, numpy as np, tensorflow as tf
        cpu = tf.config.list_physical_devices("CPU")[0]
        tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
        from components import mnist_data, training
        from components.model import build_cnn_basic
        images, labels = mnist_data.load({str(data_dir)!r}, "train")
        x = (images[:70].astype(np.float32) / 255.0)[..., None]
        data = tf.data.Dataset.from_tensor_slices((x, labels[:70].astype(np.int64))).batch(32)
        strategy = training.make_strategy({strategy_name!r})
        assert strategy.num_replicas_in_sync == {replicas}, strategy.num_replicas_in_sync
        keras.utils.set_random_seed(0)
        with strategy.scope():
            model, optimizer = build_cnn_basic(), keras.optimizers.Adam(1e-3)
        results = training.train(model, data, data, 2, optimizer, 70, strategy=strategy,
                                 on_epoch=lambda r: None)
        assert results[-1].loss < results[0].loss, results
        print("replicas", strategy.num_replicas_in_sync, "loss", results[0].loss, "->", results[-1].loss)
    """)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert f"replicas {replicas}" in done.stdout


def test_steps_per_epoch_known_counted_and_refused() -> None:
    batches = tf.data.Dataset.range(70).batch(32)
    assert training.steps_per_epoch(batches) == 3  # the partial last batch is a step
    assert training.steps_per_epoch(tf.data.Dataset.range(70).filter(lambda x: x % 2 == 0).batch(5)) == 7
    with pytest.raises(ValueError, match="repeats forever"):
        training.steps_per_epoch(batches.repeat())
    with pytest.raises(ValueError, match="empty"):
        training.steps_per_epoch(tf.data.Dataset.range(0).batch(32))


def test_fit_and_custom_loop_epochs_continue_where_they_stopped(data_dir) -> None:
    """The generators behind the bench's interleaving: each ``next()`` is one more epoch."""
    data = _tiny_dataset(data_dir, 70)  # 3 batches, the last one partial
    keras.utils.set_random_seed(0)
    custom = training.custom_loop_epochs(build_cnn_basic(), data, data, keras.optimizers.Adam(1e-3), 70)
    keras.utils.set_random_seed(0)
    fit = training.fit_epochs(build_cnn_basic(), data, data, keras.optimizers.Adam(1e-3), 70)
    firsts = next(custom), next(fit)
    seconds = next(custom), next(fit)
    assert [r.epoch for r in firsts + seconds] == [1, 1, 2, 2]
    assert all(second.loss < first.loss for first, second in zip(firsts, seconds))


def test_each_epoch_reads_every_batch_once_from_the_one_iterator() -> None:
    examples = tf.data.Dataset.range(70).shuffle(70, seed=0, reshuffle_each_iteration=True).batch(32)
    seen: list[list[int]] = []

    def step(batches) -> None:
        seen.append(sorted(next(batches).numpy().tolist()))

    run_epoch = training._epoch_runner(examples, step, tf.distribute.get_strategy())
    for _ in range(2):
        run_epoch()
    first, second = seen[:3], seen[3:]
    assert [len(b) for b in seen] == [32, 32, 6, 32, 32, 6]
    assert sorted(sum(first, [])) == sorted(sum(second, [])) == list(range(70))
    assert first != second  # reshuffled between epochs


def test_unknown_training_loop_is_refused_by_name() -> None:
    with pytest.raises(ValueError, match="unknown training loop 'sgd'; choose one of custom, fit"):
        training.train(None, None, None, 1, None, 0, loop="sgd")
