"""Data spans through TFX itself: ExampleGen takes the latest span, the span-range resolver the latest R."""

from __future__ import annotations

from pathlib import Path

import pytest
import tensorflow as tf
from ml_metadata.proto import metadata_store_pb2
from tfx.orchestration import pipeline as tfx_pipeline
from tfx.orchestration.beam import beam_dag_runner
from tfx.types import artifact_utils

from components import example_gen, features, mnist_data, spans
from pipeline import configs
from pipeline.pipeline import ingestion
from reports import lineage, run_record
from tests.conftest import mnist_tfx

pytestmark = pytest.mark.slow

LIMITS = {"train_limit": 30, "eval_limit": 10}


def _ingest(home: Path, train_spans: int = 1) -> None:
    """Runs the pipeline's own ExampleGen and span resolver (nothing after them) on ``home``'s data."""
    config = configs.PipelineConfig(home=home, train_spans=train_spans, **LIMITS)
    nodes = [node for node in ingestion(config) if node is not None]
    beam_dag_runner.BeamDagRunner().run(
        tfx_pipeline.Pipeline(
            pipeline_name=config.pipeline_name,
            pipeline_root=str(config.pipeline_root),
            components=nodes,
            metadata_connection_config=config.metadata_connection_config(),
            enable_cache=True,
        )
    )


def _span(artifact) -> int:
    return int(run_record.custom_property(artifact, "span"))


def _latest_outputs(home: Path, node_id: str) -> list:
    """The artifacts the node's latest execution output (a resolver's are INTERNAL_OUTPUT events)."""
    store = run_record.connect(configs.PipelineConfig(home=home).metadata_path)
    record = run_record.latest_node_execution(store, configs.PIPELINE_NAME, node_id)
    outputs = (metadata_store_pb2.Event.OUTPUT, metadata_store_pb2.Event.INTERNAL_OUTPUT)
    events = [e for e in store.get_events_by_execution_ids([record.execution_id]) if e.type in outputs]
    return store.get_artifacts_by_id([e.artifact_id for e in events])


def _train_labels(uri: str) -> list[int]:
    files = tf.io.gfile.glob(f"{artifact_utils.get_split_uri([_as_examples(uri)], features.TRAIN_SPLIT)}/*.gz")
    records = tf.data.TFRecordDataset(files, compression_type="GZIP").as_numpy_iterator()
    return sorted(
        tf.train.Example.FromString(r).features.feature[features.LABEL_KEY].int64_list.value[0] for r in records
    )


def _as_examples(uri: str):
    from tfx.types import standard_artifacts

    examples = standard_artifacts.Examples()
    examples.uri = uri
    examples.split_names = artifact_utils.encode_split_names([features.TRAIN_SPLIT, features.EVAL_SPLIT])
    return examples


def test_example_gen_takes_the_latest_span_and_the_resolver_the_latest_r(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "no-keras"))
    home = tmp_path / "home"
    data = configs.PipelineConfig(home=home).data_dir
    for n in (1, 2):
        spans.materialize_span(data, n, 3)
    official_labels = mnist_data.read_hub_pickle(mnist_data.hub_pickle_path())["train"][1]
    assert "ExampleGen ingests the latest, span 2" in configs.PipelineConfig(home=home).data_layout()

    _ingest(home)
    (examples,) = _latest_outputs(home, "MnistExampleGen")
    assert _span(examples) == 2
    span2 = spans.span_slice(2, 3)
    assert _train_labels(examples.uri) == sorted(official_labels[span2.start : span2.start + 30].tolist())
    assert [_span(a) for a in _latest_outputs(home, "span_range_resolver")] == [2]

    spans.materialize_span(data, 3, 3)  # new data arrive
    _ingest(home, train_spans=2)
    (examples,) = _latest_outputs(home, "MnistExampleGen")
    assert _span(examples) == 3
    resolved = _latest_outputs(home, "span_range_resolver")
    assert sorted(_span(a) for a in resolved) == [2, 3]
    assert len({a.uri for a in resolved}) == 2

    _ingest(home, train_spans=5)  # more spans asked for than ingested: the ones there are (never span 0)
    assert sorted(_span(a) for a in _latest_outputs(home, "span_range_resolver")) == [2, 3]


def test_plain_layout_keeps_todays_patterns(tmp_path: Path) -> None:
    config = configs.PipelineConfig(home=tmp_path)
    example_gen_node, resolver = ingestion(config)
    assert resolver is None
    assert [s.pattern for s in example_gen.input_config().splits] == ["train-*", "t10k-*"]
    assert "span" not in example_gen_node.exec_properties["input_config"]
    (tmp_path / "data" / "span-1").mkdir(parents=True)
    example_gen_node, resolver = ingestion(configs.PipelineConfig(home=tmp_path))
    assert resolver is not None and "span-{SPAN}/train-*" in example_gen_node.exec_properties["input_config"]


def test_run_on_the_latest_two_spans_and_the_report_names_them(tmp_path: Path, monkeypatch) -> None:
    """Span 1 ingested earlier, span 2 arrives: `run --train-spans 2` trains on both; the report says so."""
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "no-keras"))
    home = tmp_path / "home"
    data = configs.PipelineConfig(home=home).data_dir
    spans.materialize_span(data, 1, 2)
    _ingest(home)
    spans.materialize_span(data, 2, 2)
    limits = ["--train-limit", str(LIMITS["train_limit"]), "--eval-limit", str(LIMITS["eval_limit"])]
    run = mnist_tfx("run", *limits, "--epochs", "1", "--min-accuracy", "0", "--train-spans", "2", home=home)
    assert run.returncode == 0, run.output[-5000:]
    assert (
        f"data: {data} (spans (1, 2): ExampleGen ingests the latest, span 2; "
        "training on the latest 2 ingested spans)" in run.output
    )
    store = run_record.connect(configs.PipelineConfig(home=home).metadata_path)
    nodes = {n.node_id: n for n in run_record.latest_run(store, configs.PIPELINE_NAME)}
    assert nodes["Pusher"].state == "COMPLETE"
    transform_inputs = lineage.input_artifacts(store, nodes["Transform"].execution_id)
    assert sorted(a.span for a in transform_inputs if a.keys == ("examples",)) == [1, 2]

    report = mnist_tfx("report", "--home", str(home), home=home)
    assert report.returncode == 0, report.output[-5000:]
    page = Path(report.output.strip().splitlines()[-1]).read_text(encoding="utf-8")
    assert '<span id="spans">spans 1, 2</span>' in page
