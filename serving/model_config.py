"""One served model's configuration, and reading it from a text-format ModelServerConfig.

Shared by the flags (serving/options.py) and the manager (serving/model_manager.py). The proto
parser imports TensorFlow Serving's protos, so it is imported lazily where `--help` must be fast.
"""

from __future__ import annotations

import dataclasses
import os
import stat
from typing import TYPE_CHECKING, Iterable

if TYPE_CHECKING:
    from tensorflow_serving.config import model_server_config_pb2

MAX_CONFIG_FILE_BYTES = 16 * 1024 * 1024
MAX_MODELS = 1000  # models in one config: each is a directory polled every poll period
CONFIG_PROTO_NAME = "tensorflow.serving.ModelServerConfig"


@dataclasses.dataclass(frozen=True)
class ModelConfig:
    """One served model: name, base path, version policy and version labels."""

    name: str
    base_path: str
    policy: str = "latest"  # "latest" | "all" | "specific"
    num_versions: int = 1  # for "latest"
    versions: frozenset[int] = frozenset()  # for "specific"
    labels: tuple[tuple[str, int], ...] = ()

    def aspired(self, on_disk: Iterable[int]) -> set[int]:
        """The versions this policy wants served, out of those on disk."""
        available = sorted(on_disk, reverse=True)
        if self.policy == "all":
            return set(available)
        if self.policy == "specific":
            return self.versions & set(available)
        return set(available[: self.num_versions])


@dataclasses.dataclass(frozen=True)
class LoadRetries:
    """How failed loads are retried (TF Serving's --max_num_load_retries and
    --load_retry_interval_micros, with its defaults: 5 retries, one minute apart)."""

    max_num_load_retries: int = 5
    load_retry_interval_micros: int = 60 * 1000 * 1000

    @property
    def interval_seconds(self) -> float:
        return self.load_retry_interval_micros / 1e6


def is_uri(path: str) -> bool:
    """Whether ``path`` is a URI (``gs://``, ``s3://``, ``hdfs://`` …): read through ``tf.io.gfile``
    as TF Serving reads it, where a local path keeps the ``os`` calls and their checks."""
    return "://" in path


def path_exists(path: str) -> bool:
    """``os.path.exists`` for a local path, ``tf.io.gfile.exists`` for a URI."""
    if not is_uri(path):
        return os.path.exists(path)
    import tensorflow as tf

    return tf.io.gfile.exists(path)


def read_regular_file(path: str, max_bytes: int = MAX_CONFIG_FILE_BYTES) -> bytes:
    """A file's bytes, at most ``max_bytes``; locally a FIFO, device or socket is an error, never a
    blocking read (an object store has none of those)."""
    if is_uri(path):
        return _read_uri(path, max_bytes)
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise OSError(f"{path} is not a regular file")
        if info.st_size > max_bytes:
            raise OSError(f"{path} is larger than {max_bytes} bytes")
        with os.fdopen(fd, "rb", closefd=False) as f:
            return _at_most(f.read(max_bytes + 1), path, max_bytes)
    finally:
        os.close(fd)


def _at_most(data: bytes, path: str, max_bytes: int) -> bytes:
    """``data`` read as ``max_bytes + 1`` bytes: a file that grew past the bound since it was checked
    (or, on an object store, was never checked) is refused, never cut short."""
    if len(data) > max_bytes:
        raise OSError(f"{path} is larger than {max_bytes} bytes")
    return data


def _read_uri(path: str, max_bytes: int) -> bytes:
    import tensorflow as tf

    try:
        with tf.io.gfile.GFile(path, "rb") as f:
            return _at_most(f.read(max_bytes + 1), path, max_bytes)
    except tf.errors.OpError as e:
        raise OSError(f"{path}: {e.message}") from e


def parse_model_server_config(text: str) -> list[ModelConfig]:
    """ModelConfigs from a text-format ModelServerConfig (`--model_config_file`)."""
    from google.protobuf import text_format
    from tensorflow_serving.config import model_server_config_pb2

    config = model_server_config_pb2.ModelServerConfig()
    try:
        text_format.Parse(text, config)
    except text_format.ParseError as e:
        raise ValueError(f"Error parsing text-format {CONFIG_PROTO_NAME}: {e}") from e
    if config.WhichOneof("config") != "model_config_list":
        raise ValueError("ModelServerConfig must contain a model_config_list")
    models = model_configs_from_proto(config.model_config_list)
    if not models:
        raise ValueError("ModelServerConfig lists no models")
    return models


def model_configs_from_proto(config_list: model_server_config_pb2.ModelConfigList) -> list[ModelConfig]:
    """Validated ModelConfigs of a ModelConfigList (ServerCore's ValidateModelConfigList)."""
    if len(config_list.config) > MAX_MODELS:
        raise ValueError(f"A ModelConfigList may list at most {MAX_MODELS} models; " f"got {len(config_list.config)}")
    models: list[ModelConfig] = []
    for model in config_list.config:
        if not model.name or not model.base_path:
            raise ValueError(f"Each model config needs a name and a base_path: {model}")
        if model.model_platform not in ("", "tensorflow"):
            raise ValueError(
                f"Model {model.name}: unsupported model_platform " f"{model.model_platform!r} (only 'tensorflow')"
            )
        if any(m.name == model.name for m in models):
            raise ValueError(f"Illegal to list model {model.name} multiple times in config list")
        if not os.path.isabs(model.base_path) and "://" not in model.base_path:
            raise ValueError(
                f"Expected model {model.name} to have an absolute path or URI; " f"got base_path()={model.base_path}"
            )
        policy = model.model_version_policy.WhichOneof("policy_choice") or "latest"
        specific = frozenset(model.model_version_policy.specific.versions)
        if policy == "specific" and not specific:
            raise ValueError(f"Model {model.name}: specific version policy lists no versions")
        models.append(
            ModelConfig(
                name=model.name,
                base_path=model.base_path,
                policy=policy,
                num_versions=model.model_version_policy.latest.num_versions or 1,
                versions=specific,
                labels=tuple(sorted(model.version_labels.items())),
            )
        )
    return models
