"""Scale-out by configuration: the local run with Beam's multi-processing DirectRunner."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipeline import configs
from reports import run_record
from tests.conftest import PIPELINE_NODES, mnist_tfx

pytestmark = pytest.mark.slow

COMPONENTS = PIPELINE_NODES


def test_run_with_two_worker_processes_completes_and_pushes(tmp_path: Path, data_dir: Path) -> None:
    (tmp_path / "data").symlink_to(data_dir, target_is_directory=True)
    run = mnist_tfx(
        "run",
        "--train-limit",
        "200",
        "--eval-limit",
        "100",
        "--epochs",
        "1",
        "--min-accuracy",
        "0.05",
        "--beam-arg=--direct_running_mode=multi_processing",
        "--beam-arg=--direct_num_workers=2",
        home=tmp_path,
        timeout=1700,  # ~16 min on 2 busy cores: each Beam stage starts 2 workers
    )
    assert run.returncode == 0, run.output[-5000:]
    # Log lines relayed from Beam's SDK worker subprocesses: the work really left this process.
    assert "local_job_service:Worker:" in run.output
    store = run_record.connect(configs.PipelineConfig(home=tmp_path).metadata_path)
    states = {n.node_id: n.state for n in run_record.latest_run(store, configs.PIPELINE_NAME)}
    assert states == {name: "COMPLETE" for name in COMPONENTS}
    versions = [p for p in configs.PipelineConfig(home=tmp_path).serving_model_dir.iterdir() if p.name.isdigit()]
    assert len(versions) == 1 and (versions[0] / "saved_model.pb").is_file()
