"""Runs the pipeline locally on Apache Beam with MLMD in SQLite, one progress line per component."""

from __future__ import annotations

import contextlib
import sys
import time
from collections.abc import Iterator

from tfx.orchestration.beam import beam_dag_runner

from components import locks
from pipeline import configs, run_record
from pipeline.pipeline import create_pipeline


class _ReportingNodeDoFn(beam_dag_runner.PipelineNodeAsDoFn):
    """Prints `name started` / `name RESULT in N s` around each node (RESULT from MLMD)."""

    def process(self, element, *signals):  # no hints: Beam type-checks them against the signals
        node_id = self._pipeline_node.node_info.id
        print(f"[{time.strftime('%H:%M:%S')}] {node_id:<32} started", flush=True)
        started = time.monotonic()
        try:
            super().process(element, *signals)
        except BaseException:
            print(f"[{time.strftime('%H:%M:%S')}] {node_id:<32} FAILED after {time.monotonic() - started:.1f} s", flush=True)
            raise
        store = run_record.connect(self._mlmd_connection_config.sqlite.filename_uri)
        record = run_record.latest_node_execution(store, self._pipeline_info.id, node_id)
        state = record.state if record else "DONE"
        print(f"[{time.strftime('%H:%M:%S')}] {node_id:<32} {state} in {time.monotonic() - started:.1f} s", flush=True)


class ReportingBeamDagRunner(beam_dag_runner.BeamDagRunner):
    """BeamDagRunner that reports each component as it starts and ends."""

    _PIPELINE_NODE_DO_FN_CLS = _ReportingNodeDoFn


@contextlib.contextmanager
def home_lock(config: configs.PipelineConfig) -> Iterator[None]:
    """Holds the home's lock for the block; if another run holds it, says which and exits with 2.

    One run per home at a time: two would share MLMD, the pipeline root and the serving directory.
    """
    with contextlib.ExitStack() as held:
        try:
            held.enter_context(locks.hold(config.home, f"mnist-tfx run of {config.pipeline_name}"))
        except locks.LockHeldError as e:
            print(f"error: {e}; wait for that run to finish, or use another --home", file=sys.stderr, flush=True)
            raise SystemExit(2) from None
        yield


def run(config: configs.PipelineConfig) -> None:
    """Runs the whole pipeline under :func:`home_lock`; raises if a component fails."""
    with home_lock(config):
        config.metadata_path.parent.mkdir(parents=True, exist_ok=True)
        ReportingBeamDagRunner().run(create_pipeline(config))
