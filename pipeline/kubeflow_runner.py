"""``mnist-tfx compile``: the pipeline as a Kubeflow Pipelines v2 / Vertex AI Pipelines spec.

Compiled offline with TFX's ``KubeflowV2DagRunner`` from the same ``create_pipeline`` and
``PipelineConfig`` as ``mnist-tfx run``. ``.json`` writes a Vertex ``PipelineJob``; ``.yaml``/``.yml``
writes the bare ``PipelineSpec`` that ``kfp.Client`` uploads. Paths from the config (data, serving
model) must be valid inside the image; artifacts go to ``--pipeline-root`` (e.g. ``gs://…``).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from pipeline import cli

DEFAULT_IMAGE = "mnist-tfx:latest"
SUFFIXES = (".json", ".yaml", ".yml")


def parser() -> argparse.ArgumentParser:
    """``mnist-tfx run``'s data/training options plus the compile target, output, image and root."""
    compile_parser = argparse.ArgumentParser(
        prog="mnist-tfx compile",
        description="Compile the pipeline for Kubeflow Pipelines v2 / Vertex AI Pipelines.",
        parents=[cli.run_parser()],
        add_help=False,
    )
    add = compile_parser.add_argument
    add("--target", choices=("kubeflow",), default="kubeflow",
        help="orchestrator to compile for (default %(default)s: KubeflowV2DagRunner)")
    add("--out", required=True, metavar="FILE",
        help="spec file: FILE.json (Vertex PipelineJob) or FILE.yaml (KFP PipelineSpec)")
    add("--image", default=DEFAULT_IMAGE,
        help="container image with this project installed that runs every component (default %(default)s)")
    add("--pipeline-root", metavar="URI",
        help="where components write artifacts, e.g. gs://BUCKET/mnist-tfx (default: the config's)")
    return compile_parser


def main(argv: list[str]) -> int:
    """Compiles to ``--out``; exit status 0, or 2 with ``error: …`` on stderr for bad arguments."""
    compile_parser = parser()
    args = compile_parser.parse_args(argv)
    out = Path(args.out)
    if out.is_dir():
        compile_parser.error(f"--out {args.out!r} is a directory")
    if out.suffix not in SUFFIXES:
        compile_parser.error(f"--out must end in one of {', '.join(SUFFIXES)}, got {args.out!r}")
    if not args.image.strip():
        compile_parser.error("--image must not be empty")
    compile_args = ("target", "out", "image", "pipeline_root")
    run_args = argparse.Namespace(**{k: v for k, v in vars(args).items() if k not in compile_args})
    try:
        config = cli.config_from_args(run_args)
    except ValueError as err:
        compile_parser.error(str(err))

    # TFX takes about a minute to import: only once the arguments are known to be good.
    from tfx.orchestration.kubeflow.v2 import kubeflow_v2_dag_runner

    from pipeline.pipeline import create_pipeline

    tfx_pipeline = create_pipeline(config, with_metadata=False)  # the orchestrator brings MLMD
    tfx_pipeline.pipeline_info.pipeline_root = args.pipeline_root or str(config.pipeline_root)
    runner = kubeflow_v2_dag_runner.KubeflowV2DagRunner(
        config=kubeflow_v2_dag_runner.KubeflowV2DagRunnerConfig(default_image=args.image),
        output_dir=str(out.parent.resolve()),
        output_filename=out.name,
    )
    runner.run(tfx_pipeline)
    print(f"compiled {config.pipeline_name} ({len(tfx_pipeline.components)} components, "
          f"image {args.image}, root {tfx_pipeline.pipeline_info.pipeline_root}) -> {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
