"""Runs the pipeline locally on Apache Beam with MLMD in SQLite, one run per home at a time."""

from __future__ import annotations

from pathlib import Path

from tfx.orchestration.beam import beam_dag_runner

from components import locks
from pipeline import configs
from pipeline.pipeline import create_pipeline


def run_lock_dir(config: configs.PipelineConfig) -> Path:
    """The local directory whose lock a run holds: the home, or the SQLite file's when home is a URI.

    A MySQL MLMD shared by runs on several machines is not guarded here: one run per pipeline there.
    """
    if isinstance(config.home, Path):
        return config.home
    if isinstance(config.metadata_path, Path):
        return config.metadata_path.parent
    return Path(configs.DEFAULT_HOME).expanduser()


def run(config: configs.PipelineConfig, runner: beam_dag_runner.BeamDagRunner | None = None) -> None:
    """Runs the whole pipeline (with ``runner``, default a plain BeamDagRunner); raises if a component fails.

    Holds the home's lock (:func:`run_lock_dir`) throughout: two runs would share MLMD, the pipeline
    root and the serving directory. A busy home raises :class:`components.locks.LockHeldError` naming the holder.
    """
    with locks.hold(run_lock_dir(config), f"mnist-tfx run of {config.pipeline_name}"):
        if isinstance(config.metadata_path, Path):
            config.metadata_path.parent.mkdir(parents=True, exist_ok=True)
        (runner or beam_dag_runner.BeamDagRunner()).run(create_pipeline(config))
