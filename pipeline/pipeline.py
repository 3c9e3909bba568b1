"""The TFX pipeline, in data order: one ``create_pipeline`` for every runner."""

from __future__ import annotations

from tfx.components import (
    Evaluator,
    ExampleValidator,
    SchemaGen,
    StatisticsGen,
    Trainer,
    Transform,
)
from tfx.dsl.components.common.resolver import Resolver
from tfx.dsl.input_resolution.strategies.latest_blessed_model_strategy import LatestBlessedModelStrategy
from tfx.dsl.input_resolution.strategies.span_range_strategy import SpanRangeStrategy
from tfx.orchestration import pipeline
from tfx.proto import pusher_pb2, range_config_pb2, trainer_pb2
from tfx.types import Channel, standard_artifacts

from components import features
from components.eval_config import eval_config
from components.example_gen import MnistExampleGen
from components.infra_validator import local_infra_validator
from components.pusher import AtomicPusher
from pipeline import configs


def ingestion(config: configs.PipelineConfig) -> tuple[MnistExampleGen, Resolver | None]:
    """ExampleGen, and with data spans the resolver of the latest ``train_spans`` spans it ingested."""
    # Read the MNIST IDX files: `train` = official 60k training set (or the latest span's slice of it),
    # `eval` = official 10k test set.
    span_layout = bool(config.data_spans())
    example_gen = MnistExampleGen(
        input_base=str(config.data_dir),
        limits={features.TRAIN_SPLIT: config.train_limit, features.EVAL_SPLIT: config.eval_limit},
        span_layout=span_layout,
    )
    if not span_layout:
        return example_gen, None
    # The latest `train_spans` spans ExampleGen ingested, in this run or earlier ones (TFX's span-range
    # resolution): an unbound Channel reads every run's Examples, not only this run's.
    span_resolver = Resolver(
        strategy_class=SpanRangeStrategy,
        config={"range_config": span_range(config.train_spans)},
        examples=Channel(type=standard_artifacts.Examples, producer_component_id=example_gen.id),
    ).with_id("span_range_resolver")
    span_resolver.add_upstream_node(example_gen)  # after this run's ExampleGen, so it sees the newest span
    return example_gen, span_resolver


def create_pipeline(
    config: configs.PipelineConfig, with_metadata: bool = True, with_infra_validation: bool = True
) -> pipeline.Pipeline:
    """ExampleGen → statistics/schema/validation → Transform → Trainer → Evaluator → InfraValidator → Pusher.

    ``with_infra_validation=False`` leaves InfraValidator out (the Pusher then pushes the Evaluator-blessed
    model, without warmup records): TFX's Kubeflow V2 compiler refuses the InfraValidator component.
    """
    example_gen, span_resolver = ingestion(config)
    training_examples = (example_gen if span_resolver is None else span_resolver).outputs["examples"]
    # Compute statistics, infer a schema, check the data against it.
    statistics_gen = StatisticsGen(examples=example_gen.outputs["examples"])
    schema_gen = SchemaGen(statistics=statistics_gen.outputs["statistics"], infer_feature_shape=True)
    example_validator = ExampleValidator(
        statistics=statistics_gen.outputs["statistics"], schema=schema_gen.outputs["schema"]
    )
    # Reshape to 28×28×1 and scale to [0, 1]; the same graph is baked into every serving signature.
    transform = Transform(
        examples=training_examples,
        schema=schema_gen.outputs["schema"],
        preprocessing_fn=configs.PREPROCESSING_FN,
    )
    # Train CNN_Basic with the GradientTape loop (or Keras fit) on the transformed examples.
    trainer = Trainer(
        run_fn=config.run_fn,
        examples=transform.outputs["transformed_examples"],
        transform_graph=transform.outputs["transform_graph"],
        schema=schema_gen.outputs["schema"],
        train_args=trainer_pb2.TrainArgs(splits=[features.TRAIN_SPLIT]),
        eval_args=trainer_pb2.EvalArgs(splits=[features.EVAL_SPLIT]),
        custom_config=config.training.to_custom_config(),
    )
    # The latest blessed model is the baseline a new model must not fall below.
    model_resolver = Resolver(
        strategy_class=LatestBlessedModelStrategy,
        model=Channel(type=standard_artifacts.Model),
        model_blessing=Channel(type=standard_artifacts.ModelBlessing),
    ).with_id("latest_blessed_model_resolver")
    # Evaluate on the official test set: accuracy gates, per-digit slices, loss, confusion matrix.
    evaluator = Evaluator(
        examples=example_gen.outputs["examples"],
        model=trainer.outputs["model"],
        baseline_model=model_resolver.outputs["model"],
        eval_config=eval_config(config.min_accuracy, config.max_accuracy_drop),
    )
    # Load a copy in a real model server, query it through REST and gRPC with eval examples; the copy
    # that answered well gets assets.extra/tf_serving_warmup_requests (components/infra_validator.py).
    infra_validator = (
        local_infra_validator(trainer.outputs["model"], example_gen.outputs["examples"])
        if with_infra_validation
        else None
    )
    # Push the infra-validated copy (with its warmup records) when both validators blessed it, to
    # <serving_root>/mnist/<version>/: atomically on a local disk, saved_model.pb last on an object
    # store (components/pusher.py).
    pushed_model = (
        {"infra_blessing": infra_validator.outputs["blessing"]}
        if infra_validator
        else {"model": trainer.outputs["model"]}
    )
    pusher = AtomicPusher(
        **pushed_model,
        model_blessing=evaluator.outputs["blessing"],
        push_destination=pusher_pb2.PushDestination(
            filesystem=pusher_pb2.PushDestination.Filesystem(base_directory=str(config.serving_model_dir))
        ),
    ).with_id("Pusher")
    return pipeline.Pipeline(
        pipeline_name=config.pipeline_name,
        pipeline_root=str(config.pipeline_root),
        components=[
            example_gen,
            *([span_resolver] if span_resolver else []),
            statistics_gen,
            schema_gen,
            example_validator,
            transform,
            trainer,
            model_resolver,
            evaluator,
            *([infra_validator] if infra_validator else []),
            pusher,
        ],
        enable_cache=True,
        metadata_connection_config=config.metadata_connection_config() if with_metadata else None,
        beam_pipeline_args=list(config.beam_args),
    )


def span_range(num_spans: int) -> range_config_pb2.RangeConfig:
    """The latest ``num_spans`` spans, never span 0 (what ExampleGen records for the plain layout)."""
    return range_config_pb2.RangeConfig(
        rolling_range=range_config_pb2.RollingRange(start_span_number=1, num_spans=num_spans)
    )
