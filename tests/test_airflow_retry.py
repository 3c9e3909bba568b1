"""What an Airflow retry of a failed TFX task does, on the launcher path TFX's Airflow operator runs.

``AirflowComponent`` calls ``_airflow_component_launcher``: it sets the Airflow run id on the
pipeline info, then ``launcher_class.create(...).launch()``. A retry calls it again with the same run
id. Here ExampleGen fails (no data yet), is launched again once the data are there, and StatisticsGen
then fails on its output: the evidence behind docs/orchestration.md's "Retries" section
(tensorflow/tfx#1754, #2805).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from ml_metadata.proto import metadata_store_pb2
from tfx.orchestration import data_types, metadata
from tfx.orchestration.airflow.airflow_dag_runner import AirflowPipelineConfig
from tfx.orchestration.config import config_utils

from components.mnist_data import FILES
from pipeline import configs
from pipeline.pipeline import create_pipeline
from reports import run_record

pytestmark = pytest.mark.slow

RUN_ID = "scheduled__2024-06-01T00:00:00+00:00"


def _launch(tfx_pipeline, node_id: str) -> None:
    """One Airflow task attempt of ``node_id``, as airflow_component._airflow_component_launcher runs it."""
    component = next(c for c in tfx_pipeline.components if c.id == node_id)
    launcher_class, component_config = config_utils.find_component_launch_info(AirflowPipelineConfig(), component)
    pipeline_info = tfx_pipeline.pipeline_info
    pipeline_info.run_id = RUN_ID
    launcher_class.create(
        component=component,
        pipeline_info=pipeline_info,
        driver_args=data_types.DriverArgs(enable_cache=True),
        metadata_connection=metadata.Metadata(tfx_pipeline.metadata_connection_config),
        beam_pipeline_args=tfx_pipeline.beam_pipeline_args,
        additional_pipeline_args={"tmp_dir": os.path.join(pipeline_info.pipeline_root, ".temp", "")},
        component_config=component_config,
    ).launch()


def _executions(store, node_type_suffix: str) -> list[metadata_store_pb2.Execution]:
    types = {t.id: t.name for t in store.get_execution_types()}
    return sorted(
        (e for e in store.get_executions() if types[e.type_id].endswith(node_type_suffix)), key=lambda e: e.id
    )


def _published(store, execution_id: int, event_types) -> list[metadata_store_pb2.Artifact]:
    events = [e for e in store.get_events_by_execution_ids([execution_id]) if e.type in event_types]
    return store.get_artifacts_by_id([e.artifact_id for e in events]) if events else []


def test_a_retried_task_breaks_the_next_one_so_the_dag_never_retries(tmp_path: Path, data_dir: Path) -> None:
    """TFX 1.16: the retry reuses the failed attempt's execution and URI, and publishes its output twice.

    If this test fails, TFX changed: revisit ``retries`` in pipeline/airflow_dag.py and the docs.
    """
    config = configs.PipelineConfig(home=tmp_path, train_limit=30, eval_limit=10)
    config.data_dir.mkdir(parents=True)  # empty: the first attempt fails
    config.metadata_path.parent.mkdir(parents=True)
    tfx_pipeline = create_pipeline(config)

    # Beam reads the two splits in either order: either one's "no IDX file" error fails the attempt.
    with pytest.raises(Exception, match=r"(train|t10k)-\*: expected one images and one labels IDX file"):
        _launch(tfx_pipeline, "MnistExampleGen")
    for name in FILES.values():  # the data arrive; Airflow retries the task
        (config.data_dir / name).symlink_to(data_dir / name)
    _launch(tfx_pipeline, "MnistExampleGen")  # the retry "succeeds" …

    store = run_record.connect(config.metadata_path)
    (execution,) = _executions(store, "MnistExampleGen")  # … in the failed attempt's execution,
    assert execution.last_known_state == metadata_store_pb2.Execution.COMPLETE
    outputs = (metadata_store_pb2.Event.OUTPUT, metadata_store_pb2.Event.DECLARED_OUTPUT)
    published = _published(store, execution.id, outputs)
    assert len(published) == 2  # … with two output artifacts on one URI (tfx#1754's URI, now a warning),
    assert {a.uri for a in published} == {str(config.pipeline_root / "MnistExampleGen" / "examples" / "1")}
    with pytest.raises(ValueError, match="expected list length of one but got 2"):  # … and tfx#2805's failure
        _launch(tfx_pipeline, "StatisticsGen")
