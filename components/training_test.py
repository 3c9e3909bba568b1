import json

import keras
import numpy as np
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
    results = training.train_custom_loop(
        build_cnn_basic(), data, data, epochs=4, optimizer=keras.optimizers.Adam(1e-3), num_train_images=64,
        log_dir=str(tmp_path / "tb"), on_epoch=lambda r: lines.append(r.line()),
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
    results = training.train_fit(
        build_cnn_basic(), data, data, 3, keras.optimizers.Adam(1e-3), num_train_images=64, on_epoch=lambda r: None
    )
    assert [r.epoch for r in results] == [1, 2, 3]
    assert results[-1].loss < results[0].loss


def test_custom_loop_runs_replicated_under_mirrored_strategy(data_dir) -> None:
    """Two logical CPUs, one replica each: the same loop trains through MirroredStrategy."""
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
        x = (images[:64].astype(np.float32) / 255.0)[..., None]
        data = tf.data.Dataset.from_tensor_slices((x, labels[:64].astype(np.int64))).batch(32)
        strategy = training.make_strategy("mirrored")
        assert strategy.num_replicas_in_sync == 2, strategy.num_replicas_in_sync
        keras.utils.set_random_seed(0)
        with strategy.scope():
            model, optimizer = build_cnn_basic(), keras.optimizers.Adam(1e-3)
        results = training.train_custom_loop(model, data, data, 2, optimizer, 64, strategy=strategy,
                                             on_epoch=lambda r: None)
        assert results[-1].loss < results[0].loss, results
        print("replicas", strategy.num_replicas_in_sync, "loss", results[0].loss, "->", results[-1].loss)
    """)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "replicas 2" in done.stdout
