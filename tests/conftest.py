"""Shared fixtures: real MNIST in a temporary home, and one real pipeline run on a slice."""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
from pathlib import Path

import pytest

from components import features
from pipeline.configs import PipelineConfig

REPO = Path(__file__).resolve().parents[1]
# The node ids of `create_pipeline`, in data order: what every runner's record must list.
PIPELINE_NODES = (
    "MnistExampleGen",
    "StatisticsGen",
    "SchemaGen",
    "ExampleValidator",
    "Transform",
    "Trainer",
    "latest_blessed_model_resolver",
    "Evaluator",
    "InfraValidator",
    "Pusher",
)
# A slice big enough for a model that clearly learns (≈85 % after one epoch), small enough for CI.
SLICE_ARGS = ["--train-limit", "1000", "--eval-limit", "300", "--epochs", "1", "--min-accuracy", "0.5"]


@dataclasses.dataclass
class CliRun:
    returncode: int
    output: str


def clean_env(home: Path, settings: dict[str, str]) -> dict[str, str]:
    """This process's environment without Airflow or mnist-tfx settings, plus ``settings`` and ``home``
    (what ``scripts/airflow.sh`` then writes into ``<home>/airflow/env.sh``)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "MNIST_TFX_"))}
    return {**env, **settings, "MNIST_TFX_HOME": str(home), "TF_CPP_MIN_LOG_LEVEL": "2"}


def mnist_tfx(*args: str, home: Path, timeout: float = 900) -> CliRun:
    """Runs the real console script in a subprocess (fresh TF/TFX state), output captured."""
    env = {**os.environ, "MNIST_TFX_HOME": str(home), "TF_CPP_MIN_LOG_LEVEL": "2"}
    done = subprocess.run(
        [str(Path(sys.executable).parent / "mnist-tfx"), *args],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        timeout=timeout,
    )
    return CliRun(done.returncode, done.stdout)


def slice_run(home: Path, data_dir: Path) -> CliRun:
    """One real `mnist-tfx run` of the whole pipeline on the slice, in a new ``home``."""
    (home / "data").symlink_to(data_dir, target_is_directory=True)
    run = mnist_tfx("run", "--home", str(home), *SLICE_ARGS, home=home)
    assert run.returncode == 0, run.output[-5000:]
    return run


@pytest.fixture(scope="session")
def slice_home(tmp_path_factory: pytest.TempPathFactory, data_dir: Path) -> tuple[Path, CliRun]:
    """A home after one slice run; shared by the whole session, so tests must not run it again."""
    home = tmp_path_factory.mktemp("home")
    return home, slice_run(home, data_dir)


@pytest.fixture(scope="session")
def pushed_mnist_model(slice_home: tuple[Path, CliRun]) -> Path:
    """``<home>/serving_model/mnist`` holding the model the slice run pushed."""
    base = PipelineConfig(home=slice_home[0]).serving_model_dir
    assert any(p.name.isdigit() for p in base.iterdir()), f"nothing pushed to {base}"
    return base


@pytest.fixture(scope="session")
def mnist_server(pushed_mnist_model: Path):
    """`mnist-tfx serve`'s server, in process on free ports, serving the pushed model as "mnist"."""
    from tests.serving_conftest_helpers import serve_in_process, single_model_config

    with serve_in_process(single_model_config(features.MODEL_NAME, pushed_mnist_model)) as running:
        yield running
