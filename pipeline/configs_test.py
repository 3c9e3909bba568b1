import os
from pathlib import Path

import pytest

from pipeline import configs
from pipeline.configs import PipelineConfig


def test_paths_derive_from_home(tmp_path: Path) -> None:
    config = PipelineConfig(home=tmp_path)
    assert config.data_dir == tmp_path / "data"
    assert config.pipeline_root == tmp_path / "pipelines" / "mnist-tfx"
    assert config.metadata_path == tmp_path / "metadata" / "mnist-tfx" / "metadata.sqlite"
    assert config.serving_model_dir == tmp_path / "serving_model" / "mnist"


def test_environment_then_flags(tmp_path: Path) -> None:
    env = {"MNIST_TFX_HOME": str(tmp_path), "MNIST_TFX_EPOCHS": "3", "MNIST_TFX_BEAM_ARGS": "--a=1 --b=2",
           "MNIST_TFX_MIN_ACCURACY": "0.9"}
    config = PipelineConfig.from_env(env, epochs=5, train_limit=None)
    assert (config.home, config.training.epochs, config.beam_args, config.min_accuracy) == (
        tmp_path, 5, ("--a=1", "--b=2"), 0.9)
    assert config.training.to_custom_config()["epochs"] == 5


@pytest.mark.parametrize(
    "env, message",
    [
        ({"MNIST_TFX_EPOCHS": "many"}, "MNIST_TFX_EPOCHS='many'"),
        ({"MNIST_TFX_TRAIN_LIMIT": "0"}, "train_limit must be a positive number"),
        ({"MNIST_TFX_TRAINING_LOOP": "magic"}, "training_loop must be one of custom, fit; got 'magic'"),
    ],
)
def test_bad_settings_say_what_is_wrong(env: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message.replace("(", r"\(")):
        PipelineConfig.from_env(env)


def test_pipeline_tf_env_turns_on_onednn_unless_already_set(monkeypatch) -> None:
    import subprocess
    import sys

    monkeypatch.setenv("TF_ENABLE_ONEDNN_OPTS", "0")
    configs.apply_pipeline_tf_env()
    assert os.environ["TF_ENABLE_ONEDNN_OPTS"] == "0"  # the user's choice wins
    monkeypatch.delenv("TF_ENABLE_ONEDNN_OPTS")
    code = ("from pipeline import configs; configs.apply_pipeline_tf_env(); import tensorflow; "
            "from tensorflow.python.util import _pywrap_util_port as port; print('oneDNN', port.IsMklEnabled())")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                          env={k: v for k, v in os.environ.items() if k != "TF_ENABLE_ONEDNN_OPTS"})
    assert "oneDNN True" in done.stdout, done.stderr[-2000:]
