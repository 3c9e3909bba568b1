"""The Beam components through Beam's portable runner, SDK workers in an external worker pool.

This is the route Flink and Spark take (a job service, workers in other processes that the runner
reaches over gRPC), with Beam's Python job service (``--job_endpoint=embed``) standing in for the
Flink/Spark job server, and a worker pool this test starts as its own process on loopback.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
# A partial run of the real pipeline (ExampleGen → StatisticsGen, both Beam pipelines) on a slice.
RUN_SCRIPT = """
import sys
from tfx.orchestration.beam import beam_dag_runner
from tfx.orchestration.pipeline import RunOptions
from pipeline import configs
from pipeline.pipeline import create_pipeline
config = configs.PipelineConfig(home=sys.argv[1], train_limit=50, eval_limit=20, beam_args=(
    "--runner=PortableRunner", "--job_endpoint=embed", "--environment_type=EXTERNAL",
    f"--environment_config=127.0.0.1:{sys.argv[2]}"))
config.metadata_path.parent.mkdir(parents=True, exist_ok=True)
beam_dag_runner.BeamDagRunner().run(
    create_pipeline(config), run_options=RunOptions(from_nodes=["MnistExampleGen"], to_nodes=["StatisticsGen"]))
"""


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.mark.slow
def test_beam_components_run_on_the_portable_runner_with_an_external_worker_pool(
    tmp_path: Path, data_dir: Path
) -> None:
    from ml_metadata.proto import metadata_store_pb2

    from pipeline.configs import PipelineConfig
    from reports import run_record

    home = tmp_path / "home"
    home.mkdir()
    (home / "data").symlink_to(data_dir, target_is_directory=True)
    port = _free_port()
    # The pool starts each SDK worker as `python` from PATH: this environment's.
    env = {
        **os.environ,
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
        "TF_CPP_MIN_LOG_LEVEL": "2",
    }
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
        done = subprocess.run(
            [sys.executable, "-c", RUN_SCRIPT, str(home), str(port)],
            cwd=REPO,
            env=env,
            capture_output=True,
            text=True,
            timeout=900,
        )
    finally:
        pool.terminate()
        pool.wait(timeout=60)
    assert done.returncode == 0, done.stderr[-5000:]
    workers = pool_log.read_text().count("Starting worker with command")
    assert workers >= 2, pool_log.read_text()[-3000:]  # one SDK worker per Beam pipeline, in the pool
    store = run_record.connect(PipelineConfig(home=home).metadata_path)
    states = {
        store.get_execution_types_by_id([e.type_id])[0].name.rsplit(".", 1)[-1]: e.last_known_state
        for e in store.get_executions()
    }
    assert states == {
        "MnistExampleGen": metadata_store_pb2.Execution.COMPLETE,
        "StatisticsGen": metadata_store_pb2.Execution.COMPLETE,
    }, states
