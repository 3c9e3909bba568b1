"""The lineage of the pushed model in MLMD: which executions and artifacts produced it.

From the Pusher's input Model (or the Model its InfraBlessing validated), walk upwards: the execution that produced an artifact (for a cached
component, the first execution that output it), then that execution's inputs, and so on, up to
ExampleGen. Each step lists its execution id, node, state and its input artifacts with their URIs.
Examples artifacts carry the data span TFX's ExampleGen recorded (0 for the plain layout), so the
lineage says which spans trained the model.
"""

from __future__ import annotations

import dataclasses

from ml_metadata import metadata_store
from ml_metadata.proto import metadata_store_pb2

from reports import run_record

_INPUTS = (metadata_store_pb2.Event.INPUT, metadata_store_pb2.Event.DECLARED_INPUT)
SPAN_PROPERTY = "span"  # TFX's name for it (tfx.dsl.input_resolution.strategies.span_range_strategy)
_OUTPUTS = (metadata_store_pb2.Event.OUTPUT, metadata_store_pb2.Event.DECLARED_OUTPUT)


@dataclasses.dataclass(frozen=True)
class ArtifactRef:
    artifact_id: int
    type: str
    keys: tuple[str, ...]  # its input names at the consuming execution (examples, transform_graph, …)
    uri: str
    producer_id: int | None  # the execution that produced it
    span: int | None = None  # an Examples artifact's data span (ExampleGen's ``span`` property)


@dataclasses.dataclass(frozen=True)
class Step:
    execution_id: int
    node_id: str
    state: str
    inputs: list[ArtifactRef]


@dataclasses.dataclass(frozen=True)
class Lineage:
    model: ArtifactRef  # the Pusher's input Model
    steps: list[Step]  # the producing executions, newest first (Trainer … ExampleGen)

    @property
    def spans(self) -> list[int]:
        """The data spans of every Examples artifact upstream of the model, ascending (0: no spans)."""
        return sorted({a.span for step in self.steps for a in step.inputs if a.span is not None})


def latest_run_id(store: metadata_store.MetadataStore, pipeline_name: str) -> str | None:
    """The newest run's id (local, Kubeflow or Airflow), or None without a run."""
    newest = run_record.newest_run(store)
    return None if newest is None else run_record.run_id(newest, pipeline_name)


def _keys(event: metadata_store_pb2.Event) -> tuple[str, ...]:
    """One event can hold several roles, e.g. a model that is both ``model`` and ``baseline_model``."""
    return tuple(sorted(step.key for step in event.path.steps if step.HasField("key")))


def _span(artifact: metadata_store_pb2.Artifact) -> int | None:
    """ExampleGen's ``span`` property (an int; a string in old TFX versions), or None."""
    value = run_record.custom_property(artifact, SPAN_PROPERTY)
    return None if value is None else int(value)


def _producer(store: metadata_store.MetadataStore, artifact_id: int) -> int | None:
    events = store.get_events_by_artifact_ids([artifact_id])
    outputs = [e.execution_id for e in events if e.type in _OUTPUTS]
    return min(outputs) if outputs else None


def input_artifacts(store: metadata_store.MetadataStore, execution_id: int) -> list[ArtifactRef]:
    """What an execution took, sorted by input name."""
    types = {t.id: t.name for t in store.get_artifact_types()}
    events = [e for e in store.get_events_by_execution_ids([execution_id]) if e.type in _INPUTS]
    artifacts = {a.id: a for a in store.get_artifacts_by_id([e.artifact_id for e in events])} if events else {}
    refs = [
        ArtifactRef(a.id, types.get(a.type_id, "?"), _keys(e), a.uri, _producer(store, a.id), _span(a))
        for e in events
        for a in [artifacts[e.artifact_id]]
    ]
    return sorted(refs, key=lambda r: (r.keys, r.artifact_id))


def pushed_model_lineage(
    store: metadata_store.MetadataStore, pusher_execution_id: int, pipeline_name: str
) -> Lineage | None:
    """The lineage of the Model the given Pusher execution took, or None if it took none.

    A Pusher fed by InfraValidator takes its InfraBlessing (which holds the validated copy with
    warmup records): the Model is then the one that InfraValidator execution took.
    """
    inputs = input_artifacts(store, pusher_execution_id)
    model = next((r for r in inputs if r.type == "Model"), None)
    infra = next((r for r in inputs if r.type == "InfraBlessing"), None)
    if model is None and infra is not None and infra.producer_id is not None:
        model = next((r for r in input_artifacts(store, infra.producer_id) if r.type == "Model"), None)
    if model is None:
        return None
    steps: list[Step] = []
    pending = [model.producer_id] if model.producer_id is not None else []
    seen: set[int] = set()
    while pending:
        execution_id = pending.pop(0)
        if execution_id in seen:
            continue
        seen.add(execution_id)
        [execution] = store.get_executions_by_id([execution_id])
        record = run_record.node_record(execution, run_record.node_id_of(store, execution_id, pipeline_name))
        inputs = input_artifacts(store, execution_id)
        steps.append(Step(execution_id, record.node_id, record.state, inputs))
        pending += [r.producer_id for r in inputs if r.producer_id is not None]
    return Lineage(model, sorted(steps, key=lambda s: -s.execution_id))
