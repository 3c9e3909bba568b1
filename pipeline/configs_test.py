import os
import re
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
    env = {
        "MNIST_TFX_HOME": str(tmp_path),
        "MNIST_TFX_EPOCHS": "3",
        "MNIST_TFX_BEAM_ARGS": "--a=1 --b=2",
        "MNIST_TFX_MIN_ACCURACY": "0.9",
    }
    config = PipelineConfig.from_env(env, epochs=5, train_limit=None)
    assert (config.home, config.training.epochs, config.beam_args, config.min_accuracy) == (
        tmp_path,
        5,
        ("--a=1", "--b=2"),
        0.9,
    )
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
    code = (
        "from pipeline import configs; configs.apply_pipeline_tf_env(); import tensorflow; "
        "from tensorflow.python.util import _pywrap_util_port as port; print('oneDNN', port.IsMklEnabled())"
    )
    done = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=300,
        env={k: v for k, v in os.environ.items() if k != "TF_ENABLE_ONEDNN_OPTS"},
    )
    assert "oneDNN True" in done.stdout, done.stderr[-2000:]


@pytest.mark.parametrize("scheme", ["gs", "s3", "hdfs"])
def test_uri_home_stays_a_uri_in_every_root(scheme: str, tmp_path: Path) -> None:
    home = f"{scheme}://bucket/team/"
    config = PipelineConfig.from_env({"MNIST_TFX_HOME": home, "MNIST_TFX_METADATA_PATH": str(tmp_path / "m.db")})
    assert (config.home, config.data_dir, config.pipeline_root, config.serving_model_dir) == (
        f"{scheme}://bucket/team",
        f"{scheme}://bucket/team/data",
        f"{scheme}://bucket/team/pipelines/mnist-tfx",
        f"{scheme}://bucket/team/serving_model/mnist",
    )
    assert config.metadata_path == tmp_path / "m.db" and not config.is_local


def test_each_root_on_its_own_flag_or_variable(tmp_path: Path) -> None:
    env = {
        "MNIST_TFX_HOME": str(tmp_path),
        "MNIST_TFX_DATA_ROOT": "gs://data-bucket",
        "MNIST_TFX_SERVING_ROOT": "s3://models/serving",
    }
    config = PipelineConfig.from_env(env, pipeline_root="hdfs://namenode/tfx", metadata_path="~/m.sqlite")
    assert config.data_dir == "gs://data-bucket"
    assert config.pipeline_root == "hdfs://namenode/tfx"
    assert config.serving_model_dir == "s3://models/serving/mnist"
    assert config.metadata_path == Path("~/m.sqlite").expanduser()
    assert str(config.metadata_connection_config().sqlite.filename_uri) == str(Path("~/m.sqlite").expanduser())
    local = PipelineConfig.from_env(env, data_root="relative/data")
    assert local.data_dir == Path("relative/data").resolve() and local.home == tmp_path


def test_remote_home_needs_a_metadata_setting() -> None:
    config = PipelineConfig(home="gs://bucket")
    assert config.metadata_path is None
    with pytest.raises(ValueError, match="MLMD cannot live on an object store: set --metadata-path"):
        config.metadata_connection_config()


def test_mysql_metadata_connection() -> None:
    config = PipelineConfig(home="gs://bucket", metadata_path="mysql://ml%40team:s%3Acret@db.internal:3307/mlmd")
    mysql = config.metadata_connection_config().mysql
    assert (mysql.host, mysql.port, mysql.database, mysql.user, mysql.password) == (
        "db.internal",
        3307,
        "mlmd",
        "ml@team",
        "s:cret",
    )


@pytest.mark.parametrize(
    "overrides, message",
    [
        ({"home": "http://example.com/x"}, "home 'http://example.com/x': scheme http:// is not supported"),
        ({"data_root": "gs://"}, "data_root 'gs://': a URI needs a bucket or host after gs://"),
        ({"metadata_path": "gs://bucket/m.db"}, "MLMD needs a local SQLite file or a mysql:// URI"),
        ({"metadata_path": "mysql://host"}, "expected mysql://USER:PASSWORD@HOST:PORT/DATABASE"),
    ],
)
def test_bad_locations_say_what_is_wrong(overrides: dict, message: str, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        PipelineConfig(**{"home": tmp_path, **overrides}).metadata_connection_config()


def test_data_layout_is_picked_by_span_folders(tmp_path: Path) -> None:
    config = PipelineConfig.from_env({"MNIST_TFX_HOME": str(tmp_path), "MNIST_TFX_TRAIN_SPANS": "2"})
    assert config.train_spans == 2 and config.data_spans() == []
    assert config.data_layout() == "the four IDX files (no span-N folders)"
    for n in (1, 2, 10):
        (tmp_path / "data" / f"span-{n}").mkdir(parents=True)
    assert config.data_spans() == [1, 2, 10]
    assert config.data_layout() == (
        "spans (1, 2, 10): ExampleGen ingests the latest, span 10; training on the latest 2 ingested spans"
    )
    assert PipelineConfig.from_env({"MNIST_TFX_HOME": str(tmp_path)}, train_spans=1).train_spans == 1
    for bad in (0, 60_001):
        with pytest.raises(ValueError, match=f"train_spans must be 1 to 60000 spans, got {bad}"):
            PipelineConfig(home=tmp_path, train_spans=bad)
