"""``mnist-tfx compile``: the pipeline as a Kubeflow Pipelines v2 / Vertex AI spec file.

Arguments are checked before TFX is imported (about a minute); ``pipeline.kubeflow_runner`` compiles.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from cli.run import config_from_args, run_parser
from pipeline.kubeflow_runner import DEFAULT_IMAGE, SUFFIXES, compile_pipeline

_COMPILE_ARGS = ("target", "out", "image")


def parser() -> argparse.ArgumentParser:
    """``mnist-tfx run``'s options (roots included: give URIs the cluster reaches) plus target, output, image."""
    compile_parser = argparse.ArgumentParser(
        prog="mnist-tfx compile",
        description="Compile the pipeline for Kubeflow Pipelines v2 / Vertex AI Pipelines.",
        parents=[run_parser()],
        add_help=False,
    )
    add = compile_parser.add_argument
    add(
        "--target",
        choices=("kubeflow",),
        default="kubeflow",
        help="orchestrator to compile for (default %(default)s: KubeflowV2DagRunner)",
    )
    add(
        "--out",
        required=True,
        metavar="FILE",
        help="spec file: FILE.json (Vertex PipelineJob) or FILE.yaml (KFP PipelineSpec)",
    )
    add(
        "--image",
        default=DEFAULT_IMAGE,
        help="container image with this project installed that runs every component (default %(default)s)",
    )
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
    run_args = argparse.Namespace(**{k: v for k, v in vars(args).items() if k not in _COMPILE_ARGS})
    try:
        config = config_from_args(run_args)
    except ValueError as err:
        compile_parser.error(str(err))
    components, root = compile_pipeline(config, out, args.image)
    print(f"compiled {config.pipeline_name} ({components} components, image {args.image}, root {root}) -> {out}")
    return 0
