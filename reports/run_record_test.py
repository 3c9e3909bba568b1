"""Fast tests of the MLMD readers on a throwaway SQLite MLMD holding a small, real run record.

The store is written with ml_metadata itself, laid out as TFX records a run: a ``pipeline_run``
context and one ``node`` context (``<pipeline>.<node id>``) per component, executions with their
states, artifacts linked by INPUT/OUTPUT events with their keys, TFX's custom properties.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from types import MappingProxyType

import pytest
from ml_metadata import metadata_store
from ml_metadata.proto import metadata_store_pb2 as mlmd

from pipeline.configs import PipelineConfig
from reports import lineage, report, run_record, run_summary

COMPLETE, CACHED, FAILED = mlmd.Execution.COMPLETE, mlmd.Execution.CACHED, mlmd.Execution.FAILED


class RunWriter:
    """Writes executions, artifacts and events into a new SQLite MLMD the way TFX does."""

    def __init__(self, path: Path, pipeline_name: str) -> None:
        config = mlmd.ConnectionConfig()
        config.sqlite.filename_uri = str(path)
        config.sqlite.connection_mode = mlmd.SqliteMetadataSourceConfig.READWRITE_OPENCREATE
        self.store = metadata_store.MetadataStore(config)
        self.pipeline_name = pipeline_name
        self._types: dict[tuple[str, str], int] = {}

    def _type(self, kind: str, name: str) -> int:
        if (kind, name) not in self._types:
            put = {
                "artifact": (self.store.put_artifact_type, mlmd.ArtifactType),
                "execution": (self.store.put_execution_type, mlmd.ExecutionType),
                "context": (self.store.put_context_type, mlmd.ContextType),
            }[kind]
            self._types[kind, name] = put[0](put[1](name=name))
        return self._types[kind, name]

    def run_context(self, run_id: str) -> int:
        [context_id] = self.store.put_contexts(
            [mlmd.Context(type_id=self._type("context", "pipeline_run"), name=run_id)]
        )
        return context_id

    def artifact(self, type_name: str, uri: str, **properties: int | str) -> mlmd.Artifact:
        artifact = mlmd.Artifact(type_id=self._type("artifact", type_name), uri=uri, state=mlmd.Artifact.LIVE)
        for name, value in properties.items():
            field = "int_value" if isinstance(value, int) else "string_value"
            setattr(artifact.custom_properties[name], field, value)
        [artifact.id] = self.store.put_artifacts([artifact])
        return artifact

    def execution(
        self,
        run_context_id: int,
        node_id: str,
        state: int,
        inputs: Mapping[str, list[mlmd.Artifact]] = MappingProxyType({}),
        outputs: Mapping[str, list[mlmd.Artifact]] = MappingProxyType({}),
    ) -> int:
        node = self.store.get_context_by_type_and_name("node", f"{self.pipeline_name}.{node_id}")
        if node is None:
            node = mlmd.Context(type_id=self._type("context", "node"), name=f"{self.pipeline_name}.{node_id}")
            [node.id] = self.store.put_contexts([node])
        execution = mlmd.Execution(type_id=self._type("execution", node_id), last_known_state=state)
        events = []
        for kind, by_key in ((mlmd.Event.INPUT, inputs), (mlmd.Event.OUTPUT, outputs)):
            for key, artifacts in by_key.items():
                for index, artifact in enumerate(artifacts):
                    event = mlmd.Event(type=kind)
                    event.path.steps.add().key = key
                    event.path.steps.add().index = index
                    events.append((artifact, event))
        [run] = self.store.get_contexts_by_id([run_context_id])
        execution_id, _, _ = self.store.put_execution(execution, events, [run, node])
        return execution_id

    def airflow_execution(self, run_id: str, node_id: str, state: int) -> int:
        """An execution as TFX's Airflow launcher records it: ``run`` and ``component_run`` contexts, no ``node``."""
        run_name = f"{self.pipeline_name}.{run_id}"
        run = self.store.get_context_by_type_and_name("run", run_name)
        if run is None:
            run = mlmd.Context(type_id=self._type("context", "run"), name=run_name)
            [run.id] = self.store.put_contexts([run])
        component = mlmd.Context(type_id=self._type("context", "component_run"), name=f"{run_name}.{node_id}")
        [component.id] = self.store.put_contexts([component])
        execution = mlmd.Execution(type_id=self._type("execution", node_id), last_known_state=state)
        execution_id, _, _ = self.store.put_execution(execution, [], [component])
        return execution_id


@pytest.fixture()
def recorded(tmp_path: Path) -> tuple[PipelineConfig, dict[str, int], dict[str, mlmd.Artifact]]:
    """An older run, then a newer one in which the Trainer's model was blessed and pushed."""
    config = PipelineConfig(home=tmp_path)
    config.metadata_path.parent.mkdir(parents=True)
    writer = RunWriter(config.metadata_path, config.pipeline_name)
    old_run = writer.run_context("run-1")
    writer.execution(old_run, "MnistExampleGen", FAILED)
    run = writer.run_context("run-2")
    examples = writer.artifact("Examples", str(tmp_path / "examples"))
    model = writer.artifact("Model", str(tmp_path / "model"))
    blessing = writer.artifact("ModelBlessing", str(tmp_path / "blessing"), blessed=1)
    pushed = writer.artifact(
        "PushedModel",
        str(tmp_path / "pushed"),
        pushed=1,
        pushed_version="1700000000",
        pushed_destination=str(config.serving_model_dir / "1700000000"),
    )
    ids = {
        "MnistExampleGen": writer.execution(run, "MnistExampleGen", CACHED, outputs={"examples": [examples]}),
        "Trainer": writer.execution(
            run, "Trainer", COMPLETE, inputs={"examples": [examples]}, outputs={"model": [model]}
        ),
        "Evaluator": writer.execution(
            run,
            "Evaluator",
            COMPLETE,
            inputs={"examples": [examples], "model": [model]},
            outputs={"blessing": [blessing]},
        ),
        "Pusher": writer.execution(
            run,
            "Pusher",
            COMPLETE,
            inputs={"model": [model], "model_blessing": [blessing]},
            outputs={"pushed_model": [pushed]},
        ),
    }
    return config, ids, {"examples": examples, "model": model, "blessing": blessing, "pushed": pushed}


def test_latest_run_lists_its_executions_in_order(recorded) -> None:
    config, ids, _ = recorded
    store = run_record.connect(config.metadata_path)
    nodes = run_record.latest_run(store, config.pipeline_name)
    assert [(n.node_id, n.state, n.execution_id) for n in nodes] == [
        ("MnistExampleGen", "CACHED", ids["MnistExampleGen"]),
        ("Trainer", "COMPLETE", ids["Trainer"]),
        ("Evaluator", "COMPLETE", ids["Evaluator"]),
        ("Pusher", "COMPLETE", ids["Pusher"]),
    ]
    assert all(n.seconds >= 0 for n in nodes)
    assert run_record.latest_node_execution(store, config.pipeline_name, "MnistExampleGen").state == "CACHED"
    assert run_record.latest_node_execution(store, config.pipeline_name, "Transform") is None
    assert report.latest_run_id(config) == "run-2"


def test_an_airflow_run_after_a_local_run_is_the_latest(recorded) -> None:
    """`mnist-tfx report` and the summary read the newest run whichever runner made it."""
    config, _, _ = recorded
    writer = RunWriter(config.metadata_path, config.pipeline_name)
    run_id = "manual__2024-06-02T00:00:00+00:00"
    ids = [writer.airflow_execution(run_id, node, COMPLETE) for node in ("MnistExampleGen", "Pusher")]
    store = run_record.connect(config.metadata_path)
    nodes = run_record.latest_run(store, config.pipeline_name)
    assert [(n.node_id, n.state, n.execution_id) for n in nodes] == [
        ("MnistExampleGen", "COMPLETE", ids[0]),
        ("Pusher", "COMPLETE", ids[1]),
    ]
    assert report.latest_run_id(config) == run_id


def test_output_artifacts_and_custom_properties(recorded) -> None:
    config, ids, artifacts = recorded
    store = run_record.connect(config.metadata_path)
    [pushed] = run_record.output_artifacts(store, ids["Pusher"])
    assert pushed.uri == artifacts["pushed"].uri
    assert run_record.custom_property(pushed, "pushed") == 1
    assert run_record.custom_property(pushed, "pushed_version") == "1700000000"
    assert run_record.custom_property(pushed, "no_such_property") is None


def test_summary_reads_blessing_and_push(recorded) -> None:
    config, _, _ = recorded
    summary = run_summary.summarize(config)
    assert (summary.blessed, summary.pushed_version, summary.test_accuracy) == (True, "1700000000", None)
    assert summary.pushed_path == str(config.serving_model_dir / "1700000000") and summary.failed() == []
    text = run_summary.render(summary, config)
    assert "blessing: BLESSED" in text and f"serving models {config.serving_model_dir}" in text


def test_lineage_walks_from_the_pushed_model_to_example_gen(recorded) -> None:
    config, ids, artifacts = recorded
    store = run_record.connect(config.metadata_path)
    found = lineage.pushed_model_lineage(store, ids["Pusher"], config.pipeline_name)
    assert found.model.artifact_id == artifacts["model"].id and found.model.producer_id == ids["Trainer"]
    assert [(s.node_id, s.state) for s in found.steps] == [("Trainer", "COMPLETE"), ("MnistExampleGen", "CACHED")]
    [examples] = found.steps[0].inputs
    assert (examples.type, examples.keys, examples.producer_id) == ("Examples", ("examples",), ids["MnistExampleGen"])


def test_no_run_recorded(tmp_path: Path) -> None:
    assert report.latest_run_id(PipelineConfig(home=tmp_path)) is None
