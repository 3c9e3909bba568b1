"""The pipeline as a Kubeflow Pipelines v2 / Vertex AI Pipelines spec (``mnist-tfx compile``).

Compiled offline with TFX's ``KubeflowV2DagRunner`` from the same ``create_pipeline`` and
``PipelineConfig`` as ``mnist-tfx run``. ``.json`` writes a Vertex ``PipelineJob``; ``.yaml``/``.yml``
writes the bare ``PipelineSpec`` that ``kfp.Client`` uploads. It has no InfraValidator: TFX's
Kubeflow V2 compiler does not support that component. Every location comes from the config
(``--home`` or ``--data-root``/``--pipeline-root``/``--serving-root``): give URIs the cluster reaches
(``gs://…``); a local path in the spec would name a directory that does not exist there.
"""

from __future__ import annotations

from pathlib import Path

from pipeline import configs

DEFAULT_IMAGE = "mnist-tfx:latest"
SUFFIXES = (".json", ".yaml", ".yml")


def compile_pipeline(config: configs.PipelineConfig, out: Path, image: str = DEFAULT_IMAGE) -> tuple[int, str]:
    """Writes the spec to ``out`` (its suffix picks the format); returns (components, pipeline root)."""
    # TFX takes about a minute to import: callers check their arguments first.
    from tfx.orchestration.kubeflow.v2 import kubeflow_v2_dag_runner

    from pipeline.pipeline import create_pipeline

    # The orchestrator brings MLMD. TFX 1.16's Kubeflow V2 step builder raises NotImplementedError for
    # InfraValidator, so the compiled pipeline pushes the Evaluator-blessed model without the serving check.
    tfx_pipeline = create_pipeline(config, with_metadata=False, with_infra_validation=False)
    runner = kubeflow_v2_dag_runner.KubeflowV2DagRunner(
        config=kubeflow_v2_dag_runner.KubeflowV2DagRunnerConfig(default_image=image),
        output_dir=str(out.parent.resolve()),
        output_filename=out.name,
    )
    runner.run(tfx_pipeline)
    return len(tfx_pipeline.components), tfx_pipeline.pipeline_info.pipeline_root
