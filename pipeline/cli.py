"""``mnist-tfx``: one console script, one sub-command per job. Heavy imports happen per command."""

from __future__ import annotations

import argparse
import sys
import time

from components import features
from pipeline import configs

COMMANDS = {
    "data": "materialize and verify the MNIST IDX files; --show N draws a grid",
    "run": "run the TFX pipeline locally on Apache Beam",
    "serve": "serve pushed models over the TensorFlow Serving REST/gRPC API",
    "predict": "ask a running server (REST or gRPC) to classify images",
    "compile": "compile the pipeline for Kubeflow Pipelines / Vertex AI",
    "report": "write an HTML report of the latest run",
}


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] in ("-h", "--help") or argv[0] not in COMMANDS:
        width = max(map(len, COMMANDS))
        usage = "\n".join(f"  {name:<{width}}  {text}" for name, text in COMMANDS.items())
        print(f"usage: mnist-tfx COMMAND [options]   (mnist-tfx COMMAND --help)\n\ncommands:\n{usage}")
        return 0 if argv and argv[0] in ("-h", "--help") else 2
    command, rest = argv[0], argv[1:]
    home = configs.default_home()
    if command == "data":
        from components import data_cli

        return data_cli.main(rest, default_dest=str(home / "data"))
    if command == "serve":
        from serving import options  # no TensorFlow: --help and flag errors answer at once

        default_base_path = str(home / "serving_model" / configs.MODEL_NAME)
        if options.build_parser(default_base_path).parse_args(rest).version:
            print(options.version_text())
            return 0
        from serving import server

        return server.main(rest, default_model_base_path=default_base_path)
    if command == "predict":
        from serving import predict_cli

        return predict_cli.main(rest, default_data_dir=str(home / "data"))
    if command == "compile":
        from pipeline import kubeflow_runner

        return kubeflow_runner.main(rest)
    if command == "report":
        from pipeline import report

        return report.main(rest, default_home=str(home))
    return run_main(rest)


def run_parser() -> argparse.ArgumentParser:
    defaults = configs.PipelineConfig.__dataclass_fields__
    parser = argparse.ArgumentParser(prog="mnist-tfx run", description=COMMANDS["run"])
    add = parser.add_argument
    add("--home", help=f"home directory (default ${configs.HOME_ENV} or {configs.DEFAULT_HOME})")
    add("--train-limit", type=int, help="use the first N training images (default: all 60,000)")
    add("--eval-limit", type=int, help="use the first N test images (default: all 10,000)")
    add("--beam-arg", action="append", dest="beam_args", metavar="ARG",
        help="a Beam pipeline argument, repeatable (e.g. --beam-arg=--direct_num_workers=2)")
    add("--epochs", type=int, help=f"training epochs (default {defaults['epochs'].default})")
    add("--batch-size", type=int, help=f"batch size (default {defaults['batch_size'].default})")
    add("--learning-rate", type=float, help=f"Adam's initial learning rate (default {defaults['learning_rate'].default})")
    add("--training-loop", choices=features.TRAINING_LOOPS, help="GradientTape loop (default) or Keras fit")
    add("--distribution-strategy", choices=features.DISTRIBUTION_STRATEGIES,
        help="tf.distribute strategy for training (multi_worker_mirrored reads TF_CONFIG)")
    add("--min-accuracy", type=float,
        help=f"bless only at or above this test accuracy (default {defaults['min_accuracy'].default})")
    add("--max-accuracy-drop", type=float, help="tolerated accuracy drop against the last blessed model (default 0)")
    return parser


def config_from_args(args: argparse.Namespace) -> configs.PipelineConfig:
    overrides = {k: v for k, v in vars(args).items() if v is not None}
    if "beam_args" in overrides:
        overrides["beam_args"] = tuple(overrides["beam_args"])
    return configs.PipelineConfig.from_env(**overrides)


def run_main(argv: list[str]) -> int:
    args = run_parser().parse_args(argv)
    try:
        config = config_from_args(args)
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    from components import mnist_data  # noqa: E402  (imports numpy only)

    try:
        source, _ = mnist_data.materialize(config.data_dir)
    except Exception as err:  # noqa: BLE001 - any data problem is reported, not raised
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(f"data: {config.data_dir} ({source})", flush=True)
    started = time.monotonic()
    print("loading TFX …", flush=True)
    configs.apply_pipeline_tf_env()
    from pipeline import local_runner, run_summary

    try:
        local_runner.run(config)
    finally:  # a failed run is summarized too: which component failed, after how long
        if config.metadata_path.exists():
            print(run_summary.render(run_summary.summarize(config), config))
        print(f"  wall time {time.monotonic() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
