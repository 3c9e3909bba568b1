"""``mnist-tfx run``: the whole pipeline on Apache Beam, one line per component, then a summary."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from cli.commands import COMMANDS
from components import features, locations, locks
from components.training_params import TrainingParams
from pipeline import configs


def add_location_flags(parser: argparse.ArgumentParser) -> None:
    """--home, --data-root, --pipeline-root, --serving-root and --metadata-path (run, compile, report)."""
    add = parser.add_argument
    add(
        "--home",
        metavar="PATH_OR_URI",
        help=f"home directory or gs://, s3://, hdfs:// URI (default ${configs.HOME_ENV} or {configs.DEFAULT_HOME})",
    )
    add("--data-root", metavar="PATH_OR_URI", help="the four MNIST IDX files (default HOME/data)")
    add(
        "--pipeline-root",
        metavar="PATH_OR_URI",
        help="where components write artifacts, e.g. gs://BUCKET/mnist-tfx (default HOME/pipelines/mnist-tfx)",
    )
    add(
        "--serving-root",
        metavar="PATH_OR_URI",
        help="pushed models go to SERVING_ROOT/mnist/VERSION/ (default HOME/serving_model)",
    )
    add(
        "--metadata-path",
        metavar="FILE_OR_URI",
        help="MLMD: a local SQLite file (default HOME/metadata/mnist-tfx/metadata.sqlite; required when HOME "
        "is a URI) or mysql://USER:PASSWORD@HOST:PORT/DATABASE",
    )


def run_parser() -> argparse.ArgumentParser:
    """The data, training and gate options; ``mnist-tfx compile`` takes the same ones."""
    config_defaults = configs.PipelineConfig.__dataclass_fields__
    training = TrainingParams()
    parser = argparse.ArgumentParser(prog="mnist-tfx run", description=COMMANDS["run"])
    add = parser.add_argument
    add_location_flags(parser)
    add("--train-limit", type=int, help="use the first N training images (default: all 60,000)")
    add("--eval-limit", type=int, help="use the first N test images (default: all 10,000)")
    add(
        "--train-spans",
        type=int,
        metavar="R",
        help="with data spans (DATA_ROOT/span-N/): train on the latest R spans ingested (default: the latest only)",
    )
    add(
        "--beam-arg",
        action="append",
        dest="beam_args",
        metavar="ARG",
        help="a Beam pipeline argument, repeatable (e.g. --beam-arg=--direct_num_workers=2)",
    )
    add("--epochs", type=int, help=f"training epochs (default {training.epochs})")
    add("--batch-size", type=int, help=f"batch size (default {training.batch_size})")
    add("--learning-rate", type=float, help=f"Adam's initial learning rate (default {training.learning_rate})")
    add("--training-loop", choices=features.TRAINING_LOOPS, help="GradientTape loop (default) or Keras fit")
    add(
        "--distribution-strategy",
        choices=features.DISTRIBUTION_STRATEGIES,
        help="tf.distribute strategy for training (multi_worker_mirrored reads TF_CONFIG)",
    )
    add(
        "--min-accuracy",
        type=float,
        help=f"bless only at or above this test accuracy (default {config_defaults['min_accuracy'].default})",
    )
    add("--max-accuracy-drop", type=float, help="tolerated accuracy drop against the last blessed model (default 0)")
    return parser


def config_from_args(args: argparse.Namespace) -> configs.PipelineConfig:
    """Defaults, then ``MNIST_TFX_*`` variables, then the flags given."""
    overrides = {k: v for k, v in vars(args).items() if v is not None}
    if "beam_args" in overrides:
        overrides["beam_args"] = tuple(overrides["beam_args"])
    return configs.PipelineConfig.from_env(**overrides)


def main(argv: list[str]) -> int:
    args = run_parser().parse_args(argv)
    try:
        config = config_from_args(args)
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    if config.metadata_path is None:
        print(
            f"error: home {config.home} is a URI: set --metadata-path (MLMD is a local SQLite file or MySQL)",
            file=sys.stderr,
        )
        return 2
    from components import mnist_data  # imports numpy only

    if config.data_spans():  # `mnist-tfx data --span N --of K` wrote and verified each span
        source = config.data_layout()
    elif locations.is_uri(config.data_dir):  # ExampleGen reads it there; `mnist-tfx data --dest URI` puts it there
        source = "not materialized here: upload it with mnist-tfx data --dest URI"
    else:
        try:
            source, _ = mnist_data.materialize(config.data_dir)
        except Exception as err:  # noqa: BLE001 - any data problem is reported, not raised
            print(f"error: {err}", file=sys.stderr)
            return 2
    print(f"data: {config.data_dir} ({source})", flush=True)
    started = time.monotonic()
    print("loading TFX …", flush=True)
    configs.apply_pipeline_tf_env()
    from cli import progress
    from pipeline import local_runner

    try:
        local_runner.run(config, progress.ReportingBeamDagRunner())
    except locks.LockHeldError as err:  # another run owns this home: its MLMD is not ours to summarize
        print(f"error: {err}; wait for that run to finish, or use another --home", file=sys.stderr, flush=True)
        return 2
    except BaseException:  # a failed run is summarized too: which component failed, after how long
        _summarize(config, started)
        raise
    _summarize(config, started)
    return 0


def _summarize(config: configs.PipelineConfig, started: float) -> None:
    from reports import run_summary

    if isinstance(config.metadata_path, Path) and config.metadata_path.exists():
        print(run_summary.render(run_summary.summarize(config), config))
    print(f"  wall time {time.monotonic() - started:.0f} s")
