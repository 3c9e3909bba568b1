"""Runs the pipeline locally on Apache Beam, with MLMD in SQLite under the home."""

from __future__ import annotations

from tfx.orchestration.beam import beam_dag_runner

from pipeline import configs
from pipeline.pipeline import create_pipeline


def run(config: configs.PipelineConfig, runner: beam_dag_runner.BeamDagRunner | None = None) -> None:
    """Runs the whole pipeline (with ``runner``, default a plain BeamDagRunner); raises if a component fails."""
    config.metadata_path.parent.mkdir(parents=True, exist_ok=True)
    (runner or beam_dag_runner.BeamDagRunner()).run(create_pipeline(config))
