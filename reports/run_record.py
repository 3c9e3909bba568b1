"""What a pipeline run left in MLMD: each component's result and time, blessing, push, accuracy."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from ml_metadata import metadata_store
from ml_metadata.proto import metadata_store_pb2

STATE_NAMES = {v: k for k, v in metadata_store_pb2.Execution.State.items()}


@dataclasses.dataclass(frozen=True)
class NodeRecord:
    node_id: str
    state: str  # COMPLETE, CACHED, FAILED, RUNNING, …
    seconds: float
    execution_id: int


def connect(metadata_path: Path) -> metadata_store.MetadataStore:
    config = metadata_store_pb2.ConnectionConfig()
    config.sqlite.filename_uri = str(metadata_path)
    config.sqlite.connection_mode = metadata_store_pb2.SqliteMetadataSourceConfig.READONLY
    return metadata_store.MetadataStore(config)


# Run contexts: ``pipeline_run`` from the IR-based runners (local Beam, Kubeflow), ``run`` from TFX's
# Airflow launcher, whose executions hang on ``component_run`` contexts named ``<run context>.<node>``.
RUN_CONTEXT_TYPES = ("pipeline_run", "run")
AIRFLOW_RUN, AIRFLOW_COMPONENT_RUN = "run", "component_run"


def newest_run(store: metadata_store.MetadataStore) -> metadata_store_pb2.Context | None:
    """The newest run context of any runner (contexts' ids grow with time), or None without a run."""
    runs = [c for t in RUN_CONTEXT_TYPES for c in store.get_contexts_by_type(t)]
    return max(runs, key=lambda c: c.id) if runs else None


def run_id(run: metadata_store_pb2.Context, pipeline_name: str) -> str:
    """A run context's run id: Airflow's ``<pipeline>.`` prefix dropped."""
    return run.name.removeprefix(f"{pipeline_name}.")


def node_id_of(store: metadata_store.MetadataStore, execution_id: int, pipeline_name: str) -> str:
    """The pipeline node (component id) an execution belongs to: from its ``node`` context, or from its
    Airflow ``component_run`` context (``<pipeline>.<run id>.<node>``)."""
    types = {t.id: t.name for t in store.get_context_types()}
    contexts = store.get_contexts_by_execution(execution_id)
    for context in contexts:
        if types.get(context.type_id) == "node" and context.name.startswith(f"{pipeline_name}."):
            return context.name[len(pipeline_name) + 1 :]
    runs = [c.name for c in store.get_contexts_by_type(AIRFLOW_RUN)]  # not always linked to the execution
    for context in contexts:
        if types.get(context.type_id) == AIRFLOW_COMPONENT_RUN:
            for run in runs:
                if context.name.startswith(f"{run}."):
                    return context.name[len(run) + 1 :]
    return "?"


def latest_node_execution(store: metadata_store.MetadataStore, pipeline_name: str, node_id: str) -> NodeRecord | None:
    """The newest execution of one node (any run)."""
    context = store.get_context_by_type_and_name("node", f"{pipeline_name}.{node_id}")
    if context is None:
        return None
    executions = store.get_executions_by_context(context.id)
    if not executions:
        return None
    newest = max(executions, key=lambda e: e.id)
    return node_record(newest, node_id)


def node_record(execution: metadata_store_pb2.Execution, node_id: str) -> NodeRecord:
    """An execution's state and duration (MLMD's create → last update times)."""
    seconds = (execution.last_update_time_since_epoch - execution.create_time_since_epoch) / 1000
    return NodeRecord(node_id, STATE_NAMES.get(execution.last_known_state, "UNKNOWN"), seconds, execution.id)


def latest_run(store: metadata_store.MetadataStore, pipeline_name: str) -> list[NodeRecord]:
    """Every execution of the newest run of ``pipeline_name`` (any runner), in execution order."""
    newest = newest_run(store)  # the MLMD file holds one pipeline
    if newest is None:
        return []
    if store.get_context_types_by_id([newest.type_id])[0].name == AIRFLOW_RUN:
        component_runs = store.get_contexts_by_type(AIRFLOW_COMPONENT_RUN)
        ids = {
            e.id: e
            for c in component_runs
            if c.name.startswith(f"{newest.name}.")
            for e in store.get_executions_by_context(c.id)
        }
        executions = sorted(ids.values(), key=lambda e: e.id)
    else:
        executions = sorted(store.get_executions_by_context(newest.id), key=lambda e: e.id)
    return [node_record(e, node_id_of(store, e.id, pipeline_name)) for e in executions]


def output_artifacts(store: metadata_store.MetadataStore, execution_id: int) -> list[metadata_store_pb2.Artifact]:
    """Artifacts an execution produced (for a cached execution: the reused ones)."""
    events = store.get_events_by_execution_ids([execution_id])
    ids = [
        e.artifact_id
        for e in events
        if e.type in (metadata_store_pb2.Event.OUTPUT, metadata_store_pb2.Event.DECLARED_OUTPUT)
    ]
    return store.get_artifacts_by_id(ids) if ids else []


def custom_property(artifact: metadata_store_pb2.Artifact, name: str) -> str | int | float | None:
    if name not in artifact.custom_properties:
        return None
    value = artifact.custom_properties[name]
    return getattr(value, value.WhichOneof("value"))
