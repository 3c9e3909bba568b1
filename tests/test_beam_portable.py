"""The whole pipeline with its Beam components on Beam's portable runner, SDK workers in an external pool.

This is the route Flink and Spark take (a job service, workers in other processes that the runner
reaches over gRPC), with Beam's Python job service (``--job_endpoint=embed``) standing in for the
Flink/Spark job server, and a worker pool this test starts as its own process on loopback. The Beam
components (ExampleGen, StatisticsGen, Transform, Evaluator) run their pipelines there; the others
(SchemaGen, ExampleValidator, Trainer, InfraValidator, Pusher) run in the orchestrating process.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from bench.common import free_port
from tests.conftest import PIPELINE_NODES, clean_env

REPO = Path(__file__).resolve().parents[1]
# A small slice: enough eval examples for InfraValidator's requests (10), a few training steps.
PORTABLE_SLICE_ARGS = ["--train-limit", "100", "--eval-limit", "40", "--epochs", "1", "--min-accuracy", "0"]
BEAM_COMPONENTS = ("MnistExampleGen", "StatisticsGen", "Transform", "Evaluator")  # one Beam pipeline each


def portable_beam_args(worker_pool_port: int) -> list[str]:
    """`mnist-tfx run`'s Beam arguments for the portable runner with SDK workers in the pool at the port."""
    beam_args = (
        "--runner=PortableRunner",
        "--job_endpoint=embed",
        "--environment_type=EXTERNAL",
        f"--environment_config=127.0.0.1:{worker_pool_port}",
    )
    return [f"--beam-arg={arg}" for arg in beam_args]


@pytest.mark.slow
def test_whole_pipeline_runs_on_the_portable_runner_with_an_external_worker_pool(
    tmp_path: Path, data_dir: Path
) -> None:
    from pipeline import configs
    from reports import run_record

    home = tmp_path / "home"
    home.mkdir()
    (home / "data").symlink_to(data_dir, target_is_directory=True)
    port = free_port()
    # The pool starts each SDK worker as `python` from PATH: this environment's.
    env = clean_env(home, {"PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"})
    pool_log = tmp_path / "pool.log"
    with pool_log.open("wb") as out:
        pool = subprocess.Popen(
            [sys.executable, "-m", "apache_beam.runners.worker.worker_pool_main", f"--service_port={port}"],
            cwd=REPO,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        run = subprocess.run(
            [str(Path(sys.executable).parent / "mnist-tfx"), "run", "--home", str(home), *PORTABLE_SLICE_ARGS]
            + portable_beam_args(port),
            cwd=REPO,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            timeout=1500,
        )
    finally:
        pool.terminate()
        pool.wait(timeout=60)
    assert run.returncode == 0, run.stdout[-5000:]
    workers = pool_log.read_text().count("Starting worker with command")
    assert workers >= len(BEAM_COMPONENTS), pool_log.read_text()[-3000:]  # each Beam pipeline's SDK worker(s)
    config = configs.PipelineConfig(home=home)
    store = run_record.connect(config.metadata_path)
    states = {node.node_id: node.state for node in run_record.latest_run(store, configs.PIPELINE_NAME)}
    assert states == {name: "COMPLETE" for name in PIPELINE_NODES}, states
    versions = [p.name for p in config.serving_model_dir.iterdir() if p.name.isdigit()]
    assert len(versions) == 1 and f"pushed: {config.serving_model_dir}/{versions[0]} " in run.stdout
    assert (config.serving_model_dir / versions[0] / "saved_model.pb").is_file()
