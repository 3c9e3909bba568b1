"""``mnist-tfx run``'s progress lines: a BeamDagRunner that prints each component's start and end.

Imports TFX: ``cli.run`` loads it only once the arguments and the data are known to be good.
"""

from __future__ import annotations

import time

from tfx.orchestration.beam import beam_dag_runner

from reports import run_record


def _line(node_id: str, text: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {node_id:<32} {text}", flush=True)


class _ReportingNodeDoFn(beam_dag_runner.PipelineNodeAsDoFn):
    """Prints `name started` / `name RESULT in N s` around each node (RESULT from MLMD)."""

    def process(self, element, *signals):  # no hints: Beam type-checks them against the signals
        node_id = self._pipeline_node.node_info.id
        _line(node_id, "started")
        started = time.monotonic()
        try:
            super().process(element, *signals)
        except BaseException:
            _line(node_id, f"FAILED after {time.monotonic() - started:.1f} s")
            raise
        store = run_record.connect(self._mlmd_connection_config.sqlite.filename_uri)
        record = run_record.latest_node_execution(store, self._pipeline_info.id, node_id)
        state = record.state if record else "DONE"
        _line(node_id, f"{state} in {time.monotonic() - started:.1f} s")


class ReportingBeamDagRunner(beam_dag_runner.BeamDagRunner):
    """BeamDagRunner that reports each component as it starts and ends."""

    _PIPELINE_NODE_DO_FN_CLS = _ReportingNodeDoFn
