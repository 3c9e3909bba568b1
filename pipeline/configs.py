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

from components import features, spans
from components.locations import URI_PATTERN, Location, is_uri, join, location
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


MYSQL_SCHEME = "mysql"  # --metadata-path mysql://USER:PASSWORD@HOST:PORT/DATABASE


def default_home() -> Location:
    """``$MNIST_TFX_HOME`` or ``~/mnist-tfx``: an absolute path, or a URI."""
    return location(os.environ.get(HOME_ENV) or str(DEFAULT_HOME), HOME_ENV)


@dataclasses.dataclass(frozen=True)
class PipelineConfig:
    """Everything a runner needs; derived paths are properties so they cannot disagree."""

    home: Location = dataclasses.field(default_factory=default_home)
    pipeline_name: str = PIPELINE_NAME
    # Each root defaults to its place under ``home`` (filled in by __post_init__); each may be a URI.
    data_root: Location | None = None  # the four IDX files: <home>/data
    pipeline_root: Location | None = None  # TFX artifacts: <home>/pipelines/<name>
    serving_root: Location | None = None  # TF Serving's model base paths: <home>/serving_model
    # MLMD: a local SQLite file (<home>/metadata/<name>/metadata.sqlite when home is local), or
    # mysql://USER:PASSWORD@HOST:PORT/DATABASE for a shared store. Never on an object store.
    metadata_path: Path | str | None = None
    # Data: first N examples of each split (None = all 60,000 / 10,000).
    train_limit: int | None = None
    eval_limit: int | None = None
    # With data spans (<data>/span-N/): train on the latest N spans ExampleGen has ingested.
    train_spans: int = 1
    beam_args: tuple[str, ...] = ()  # e.g. --direct_running_mode=multi_processing
    training: TrainingParams = dataclasses.field(default_factory=TrainingParams)
    # The Trainer's run_fn (dotted path); MNIST_TFX_RUN_FN swaps in other training code, e.g. a test's.
    run_fn: str = RUN_FN
    # Evaluation gates.
    min_accuracy: float = 0.992
    max_accuracy_drop: float = 0.0

    def __post_init__(self) -> None:
        home = location(self.home, "home")
        defaults = {
            "data_root": join(home, "data"),
            "pipeline_root": join(home, "pipelines", self.pipeline_name),
            "serving_root": join(home, "serving_model"),
        }
        object.__setattr__(self, "home", home)
        for name, default in defaults.items():
            value = getattr(self, name)
            object.__setattr__(self, name, default if value is None else location(value, name))
        object.__setattr__(self, "metadata_path", self._metadata_location(home))
        for name in ("train_limit", "eval_limit"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ValueError(f"{name} must be a positive number of examples, got {value}")
        if not 1 <= self.train_spans <= spans.MAX_SPANS:
            raise ValueError(f"train_spans must be 1 to {spans.MAX_SPANS} spans, got {self.train_spans}")

    def _metadata_location(self, home: Location) -> Path | str | None:
        """The SQLite file (local Path), a mysql:// URI, or None when home is remote and none was set."""
        value = self.metadata_path
        if value is None:
            return None if is_uri(home) else join(home, "metadata", self.pipeline_name, "metadata.sqlite")
        if isinstance(value, str) and (match := URI_PATTERN.match(value)):
            if match["scheme"] != MYSQL_SCHEME:
                raise ValueError(f"metadata_path {value!r}: MLMD needs a local SQLite file or a mysql:// URI")
            return value
        return Path(value).expanduser().resolve()

    @property
    def data_dir(self) -> Location:
        return self.data_root

    def data_spans(self) -> list[int]:
        """The spans in a local data root (``span-N`` folders), ascending; [] for the plain layout.

        The one place that picks the data layout: with spans, ExampleGen reads the latest with TFX's
        span patterns and a span-range resolver feeds the latest ``train_spans`` to Transform. A data
        root on an object store is not listed (``mnist-tfx compile`` must work offline): plain layout.
        """
        return [] if is_uri(self.data_root) else spans.span_numbers(self.data_root)

    def data_layout(self) -> str:
        """One line for ``mnist-tfx run``'s output: which data layout the pipeline reads."""
        found = self.data_spans()
        if not found:
            return "the four IDX files (no span-N folders)"
        listed = ", ".join(map(str, found[-5:]))
        return (
            f"spans ({'…, ' if len(found) > 5 else ''}{listed}): ExampleGen ingests the latest, span {found[-1]}; "
            f"training on the latest {self.train_spans} ingested span{'s' if self.train_spans > 1 else ''}"
        )

    @property
    def serving_model_dir(self) -> Location:
        """The one model's base path TF Serving polls: <serving_root>/<model name>."""
        return join(self.serving_root, features.MODEL_NAME)

    @property
    def is_local(self) -> bool:
        """Whether home, data, artifacts and models are all local paths (locks and ``os`` work there)."""
        return all(isinstance(p, Path) for p in (self.home, self.data_root, self.pipeline_root, self.serving_root))

    def metadata_connection_config(self) -> Any:
        """MLMD's connection: SQLite (the default) or MySQL; raises if a remote home left it unset."""
        from tfx.orchestration import metadata

        if self.metadata_path is None:
            raise ValueError(
                f"home {self.home} is not a local path, and MLMD cannot live on an object store: "
                "set --metadata-path (a local SQLite file, or mysql://USER:PASSWORD@HOST:PORT/DATABASE)"
            )
        if isinstance(self.metadata_path, Path):
            return metadata.sqlite_metadata_connection_config(str(self.metadata_path))
        return metadata.mysql_metadata_connection_config(**mysql_settings(self.metadata_path))

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


def mysql_settings(uri: str) -> dict[str, Any]:
    """``mysql://USER:PASSWORD@HOST:PORT/DATABASE`` as the keyword arguments of TFX's MySQL config."""
    from urllib.parse import unquote, urlsplit

    parts = urlsplit(uri)
    database = parts.path.lstrip("/")
    if parts.scheme != MYSQL_SCHEME or not parts.hostname or not database or "/" in database:
        raise ValueError(f"metadata_path {uri!r}: expected mysql://USER:PASSWORD@HOST:PORT/DATABASE")
    return {
        "host": parts.hostname,
        "port": parts.port or 3306,
        "database": database,
        "username": unquote(parts.username or ""),
        "password": unquote(parts.password or ""),
    }


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
