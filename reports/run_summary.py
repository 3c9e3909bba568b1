"""The end-of-run summary: components, test accuracy, blessings, pushed version, where things are."""

from __future__ import annotations

import dataclasses

from components import infra_blessing
from pipeline import configs
from reports import run_record, tfma_output


@dataclasses.dataclass(frozen=True)
class InfraValidation:
    """InfraValidator's verdict, from its InfraBlessing (components/infra_blessing.py records these)."""

    blessed: bool
    serving_binary: str | None
    load_seconds: float | None  # model server start to the model AVAILABLE
    reason: str | None  # why not blessed

    def describe(self) -> str:
        if not self.blessed:
            return f"NOT BLESSED by {self.serving_binary} (nothing pushed): {self.reason}"
        load = f", loaded in {self.load_seconds:.1f} s" if self.load_seconds is not None else ""
        return f"BLESSED by {self.serving_binary}{load}"


@dataclasses.dataclass(frozen=True)
class RunSummary:
    nodes: list[run_record.NodeRecord]
    test_accuracy: float | None
    blessed: bool | None
    pushed_path: str | None
    pushed_version: str | None
    infra: InfraValidation | None = None

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
    infra = None
    if "InfraValidator" in by_id:
        for artifact in run_record.output_artifacts(store, by_id["InfraValidator"].execution_id):
            if artifact.type == "InfraBlessing":
                infra = InfraValidation(
                    blessed=run_record.custom_property(artifact, infra_blessing.BLESSED_PROPERTY) == 1,
                    serving_binary=run_record.custom_property(artifact, infra_blessing.SERVING_BINARY_PROPERTY),
                    load_seconds=run_record.custom_property(artifact, infra_blessing.LOAD_SECONDS_PROPERTY),
                    reason=run_record.custom_property(artifact, infra_blessing.REASON_PROPERTY),
                )
    if "Pusher" in by_id:
        for artifact in run_record.output_artifacts(store, by_id["Pusher"].execution_id):
            if run_record.custom_property(artifact, "pushed") == 1:
                pushed_path = run_record.custom_property(artifact, "pushed_destination")
                pushed_version = run_record.custom_property(artifact, "pushed_version")
    return RunSummary(nodes, accuracy, blessed, pushed_path, pushed_version, infra)


def render(summary: RunSummary, config: configs.PipelineConfig) -> str:
    lines = ["", "Run summary", "-----------"]
    for node in summary.nodes:
        lines.append(f"  {node.node_id:<32} {node.state:<9} {node.seconds:7.1f} s")
    if summary.test_accuracy is not None:
        lines.append(f"  test accuracy (official 10k test set or its slice): {summary.test_accuracy:.4%}")
    if summary.blessed is not None:
        lines.append(f"  blessing: {'BLESSED' if summary.blessed else 'NOT BLESSED (nothing pushed)'}")
    if summary.infra is not None:
        lines.append(f"  infra validation: {summary.infra.describe()}")
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
