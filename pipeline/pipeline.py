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
from tfx.orchestration import pipeline
from tfx.proto import pusher_pb2, trainer_pb2
from tfx.types import Channel, standard_artifacts

from components import features
from components.eval_config import eval_config
from components.example_gen import MnistExampleGen
from components.infra_validator import local_infra_validator
from components.pusher import AtomicPusher
from pipeline import configs


def create_pipeline(config: configs.PipelineConfig, with_metadata: bool = True) -> pipeline.Pipeline:
    """ExampleGen → statistics/schema/validation → Transform → Trainer → Evaluator → InfraValidator → Pusher."""
    # Read the MNIST IDX files: `train` = official 60k training set, `eval` = official 10k test set.
    example_gen = MnistExampleGen(
        input_base=str(config.data_dir),
        limits={features.TRAIN_SPLIT: config.train_limit, features.EVAL_SPLIT: config.eval_limit},
    )
    # Compute statistics, infer a schema, check the data against it.
    statistics_gen = StatisticsGen(examples=example_gen.outputs["examples"])
    schema_gen = SchemaGen(statistics=statistics_gen.outputs["statistics"], infer_feature_shape=True)
    example_validator = ExampleValidator(
        statistics=statistics_gen.outputs["statistics"], schema=schema_gen.outputs["schema"]
    )
    # Reshape to 28×28×1 and scale to [0, 1]; the same graph is baked into every serving signature.
    transform = Transform(
        examples=example_gen.outputs["examples"],
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
    infra_validator = local_infra_validator(trainer.outputs["model"], example_gen.outputs["examples"])
    # Push the infra-validated copy (with its warmup records) when both validators blessed it, to
    # <serving_root>/mnist/<version>/: atomically on a local disk, saved_model.pb last on an object
    # store (components/pusher.py).
    pusher = AtomicPusher(
        infra_blessing=infra_validator.outputs["blessing"],
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
            statistics_gen,
            schema_gen,
            example_validator,
            transform,
            trainer,
            model_resolver,
            evaluator,
            infra_validator,
            pusher,
        ],
        enable_cache=True,
        metadata_connection_config=config.metadata_connection_config() if with_metadata else None,
        beam_pipeline_args=list(config.beam_args),
    )
