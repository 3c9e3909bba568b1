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


def node_id_of(store: metadata_store.MetadataStore, execution_id: int, pipeline_name: str) -> str:
    """The pipeline node (component id) an execution belongs to, from its ``node`` context."""
    for context in store.get_contexts_by_execution(execution_id):
        if context.name.startswith(f"{pipeline_name}."):
            return context.name[len(pipeline_name) + 1 :]
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
    """Every execution of the newest run of ``pipeline_name``, in execution order."""
    runs = store.get_contexts_by_type("pipeline_run")  # the MLMD file holds one pipeline
    if not runs:
        return []
    newest = max(runs, key=lambda c: c.id)
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
