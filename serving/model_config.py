"""One served model's configuration, and reading it from a text-format ModelServerConfig.

Shared by the flags (serving/options.py) and the manager (serving/model_manager.py). The proto
parser imports TensorFlow Serving's protos, so it is imported lazily where `--help` must be fast.
"""

from __future__ import annotations

import dataclasses
from typing import Iterable


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


def parse_model_server_config(text: str) -> list[ModelConfig]:
    """ModelConfigs from a text-format ModelServerConfig (`--model_config_file`)."""
    from google.protobuf import text_format
    from tensorflow_serving.config import model_server_config_pb2

    config = model_server_config_pb2.ModelServerConfig()
    try:
        text_format.Parse(text, config)
    except text_format.ParseError as e:
        raise ValueError(f"Invalid ModelServerConfig: {e}") from e
    if config.WhichOneof("config") != "model_config_list":
        raise ValueError("ModelServerConfig must contain a model_config_list")
    models: list[ModelConfig] = []
    for model in config.model_config_list.config:
        if not model.name or not model.base_path:
            raise ValueError(f"Each model config needs a name and a base_path: {model}")
        if model.model_platform not in ("", "tensorflow"):
            raise ValueError(f"Model {model.name}: unsupported model_platform "
                             f"{model.model_platform!r} (only 'tensorflow')")
        if any(m.name == model.name for m in models):
            raise ValueError(f"Duplicate model name: {model.name}")
        policy = model.model_version_policy.WhichOneof("policy_choice") or "latest"
        specific = frozenset(model.model_version_policy.specific.versions)
        if policy == "specific" and not specific:
            raise ValueError(f"Model {model.name}: specific version policy lists no versions")
        models.append(ModelConfig(
            name=model.name,
            base_path=model.base_path,
            policy=policy,
            num_versions=model.model_version_policy.latest.num_versions or 1,
            versions=specific,
            labels=tuple(sorted(model.version_labels.items())),
        ))
    if not models:
        raise ValueError("ModelServerConfig lists no models")
    return models
