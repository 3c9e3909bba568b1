"""Runs the pipeline locally on Apache Beam with MLMD in SQLite, one run per home at a time."""

from __future__ import annotations

from tfx.orchestration.beam import beam_dag_runner

from components import locks
from pipeline import configs
from pipeline.pipeline import create_pipeline


def run(config: configs.PipelineConfig, runner: beam_dag_runner.BeamDagRunner | None = None) -> None:
    """Runs the whole pipeline (with ``runner``, default a plain BeamDagRunner); raises if a component fails.

    Holds the home's lock throughout: two runs would share MLMD, the pipeline root and the serving
    directory. A busy home raises :class:`components.locks.LockHeldError` naming the holder.
    """
    with locks.hold(config.home, f"mnist-tfx run of {config.pipeline_name}"):
        config.metadata_path.parent.mkdir(parents=True, exist_ok=True)
        (runner or beam_dag_runner.BeamDagRunner()).run(create_pipeline(config))
