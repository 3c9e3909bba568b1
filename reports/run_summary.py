"""The end-of-run summary: components, test accuracy, blessing, pushed version, where things are."""

from __future__ import annotations

import dataclasses

from pipeline import configs
from reports import run_record, tfma_output


@dataclasses.dataclass(frozen=True)
class RunSummary:
    nodes: list[run_record.NodeRecord]
    test_accuracy: float | None
    blessed: bool | None
    pushed_path: str | None
    pushed_version: str | None

    def failed(self) -> list[str]:
        return [n.node_id for n in self.nodes if n.state not in ("COMPLETE", "CACHED")]


def summarize(config: configs.PipelineConfig) -> RunSummary:
    store = run_record.connect(config.metadata_path)
    nodes = run_record.latest_run(store, config.pipeline_name)
    by_id = {n.node_id: n for n in nodes}
    accuracy = blessed = pushed_path = pushed_version = None
    if "Evaluator" in by_id:
        for artifact in run_record.output_artifacts(store, by_id["Evaluator"].execution_id):
            if artifact.type == "ModelBlessing":
                blessed = run_record.custom_property(artifact, "blessed") == 1
            elif artifact.type == "ModelEvaluation":
                accuracy = tfma_output.overall_metrics(artifact.uri).get(tfma_output.ACCURACY_KEY)
    if "Pusher" in by_id:
        for artifact in run_record.output_artifacts(store, by_id["Pusher"].execution_id):
            if run_record.custom_property(artifact, "pushed") == 1:
                pushed_path = run_record.custom_property(artifact, "pushed_destination")
                pushed_version = run_record.custom_property(artifact, "pushed_version")
    return RunSummary(nodes, accuracy, blessed, pushed_path, pushed_version)


def render(summary: RunSummary, config: configs.PipelineConfig) -> str:
    lines = ["", "Run summary", "-----------"]
    for node in summary.nodes:
        lines.append(f"  {node.node_id:<32} {node.state:<9} {node.seconds:7.1f} s")
    if summary.test_accuracy is not None:
        lines.append(f"  test accuracy (official 10k test set or its slice): {summary.test_accuracy:.4%}")
    if summary.blessed is not None:
        lines.append(f"  blessing: {'BLESSED' if summary.blessed else 'NOT BLESSED (nothing pushed)'}")
    if summary.pushed_path:
        lines.append(f"  pushed: {summary.pushed_path} (version {summary.pushed_version})")
    lines += [
        "Where things are",
        f"  data           {config.data_dir}",
        f"  pipeline root  {config.pipeline_root}",
        f"  MLMD           {config.metadata_path}",
        f"  serving models {config.serving_model_dir}",
    ]
    return "\n".join(lines)
