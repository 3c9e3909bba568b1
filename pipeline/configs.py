"""The one configuration object that feeds every runner (Beam, Airflow, Kubeflow).

Names, paths of the home layout, split limits, Beam args and gates are defined here once; the
training hyper-parameters are ``components.training_params.TrainingParams``, held as ``training``.
Values come from the dataclass defaults, then ``MNIST_TFX_*`` environment variables, then CLI flags.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any, Mapping

from components import features
from components.training_params import TrainingParams

PIPELINE_NAME = "mnist-tfx"  # also a valid Kubeflow/Vertex name: [a-z0-9][a-z0-9-]{0,127}
DEFAULT_HOME = Path("~/mnist-tfx")
HOME_ENV = "MNIST_TFX_HOME"

# Dotted paths of the code TFX calls (the penguin template's convention).
# Settings TensorFlow reads once, when it is imported, for the processes that run the pipeline.
# oneDNN kernels (off by default on CPUs without AVX-512) train CNN_Basic 1.1-1.3x faster on this
# project's 2-core AVX2 machines (bench/train_throughput.py). The serving server keeps TensorFlow's
# default: there oneDNN made one-image Predict slower (3.3 vs 2.2 ms). A value already set wins.
PIPELINE_TF_ENV = {"TF_ENABLE_ONEDNN_OPTS": "1"}


def apply_pipeline_tf_env() -> None:
    """Sets ``PIPELINE_TF_ENV`` (unless already set); call before TensorFlow is imported."""
    for name, value in PIPELINE_TF_ENV.items():
        os.environ.setdefault(name, value)


PREPROCESSING_FN = "components.preprocessing.preprocessing_fn"
RUN_FN = "components.trainer.run_fn"


def default_home() -> Path:
    """``$MNIST_TFX_HOME`` or ``~/mnist-tfx``, absolute."""
    return Path(os.environ.get(HOME_ENV) or DEFAULT_HOME).expanduser().resolve()


@dataclasses.dataclass(frozen=True)
class PipelineConfig:
    """Everything a runner needs; derived paths are properties so they cannot disagree."""

    home: Path = dataclasses.field(default_factory=default_home)
    pipeline_name: str = PIPELINE_NAME
    # Data: first N examples of each split (None = all 60,000 / 10,000).
    train_limit: int | None = None
    eval_limit: int | None = None
    beam_args: tuple[str, ...] = ()  # e.g. --direct_running_mode=multi_processing
    training: TrainingParams = dataclasses.field(default_factory=TrainingParams)
    # Evaluation gates.
    min_accuracy: float = 0.992
    max_accuracy_drop: float = 0.0

    def __post_init__(self) -> None:
        object.__setattr__(self, "home", Path(self.home).expanduser().resolve())
        for name in ("train_limit", "eval_limit"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ValueError(f"{name} must be a positive number of examples, got {value}")

    @property
    def data_dir(self) -> Path:
        return self.home / "data"

    @property
    def pipeline_root(self) -> Path:
        return self.home / "pipelines" / self.pipeline_name

    @property
    def metadata_path(self) -> Path:
        return self.home / "metadata" / self.pipeline_name / "metadata.sqlite"

    @property
    def serving_model_dir(self) -> Path:
        return self.home / "serving_model" / features.MODEL_NAME

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> PipelineConfig:
        """Defaults, then ``MNIST_TFX_<FIELD>`` variables, then ``overrides`` (None = unset).

        Fields of ``training`` are set flat, like the others: ``MNIST_TFX_EPOCHS``, ``epochs=``.
        """
        environ = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        for name in setting_types():
            raw = environ.get(f"MNIST_TFX_{name.upper()}")
            if raw is not None and raw != "":
                values[name] = _parse(name, raw)
        values.update({k: v for k, v in overrides.items() if v is not None})
        training_names = {f.name for f in dataclasses.fields(TrainingParams)}
        training = {k: values.pop(k) for k in list(values) if k in training_names}
        return cls(**values, training=TrainingParams(**training))


def setting_types() -> dict[str, str]:
    """Every flat setting (``PipelineConfig``'s own fields, then ``TrainingParams``'s) and its type."""
    own = [f for f in dataclasses.fields(PipelineConfig) if f.name != "training"]
    return {f.name: str(f.type) for f in (*own, *dataclasses.fields(TrainingParams))}


def _parse(name: str, raw: str) -> Any:
    """Parses one environment value by the field's declared type."""
    kind = setting_types()[name]
    try:
        if "int" in kind:
            return int(raw)
        if "float" in kind:
            return float(raw)
        if "tuple" in kind:
            return tuple(raw.split())
        return raw
    except ValueError as err:
        raise ValueError(f"environment variable MNIST_TFX_{name.upper()}={raw!r}: {err}") from None
