"""The Trainer's hyper-parameters, defined once: ``PipelineConfig`` holds them, ``run_fn`` rebuilds them.

They travel to ``run_fn`` as the Trainer's ``custom_config`` (a JSON dict), the only channel TFX
offers; ``from_custom_config`` turns that dict back into this dataclass, validated the same way.
Imports nothing heavy: the CLI and the config read it before TensorFlow is loaded.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Mapping

from components import features


@dataclasses.dataclass(frozen=True)
class TrainingParams:
    """The seed lesson's hyper-parameters with the corrected loop (README "Training")."""

    epochs: int = 5
    batch_size: int = 32
    learning_rate: float = 1e-3
    shuffle_buffer: int = 1000
    seed: int = 42
    training_loop: str = "custom"  # "custom" (GradientTape) or "fit" (Keras compile/fit)
    distribution_strategy: str = "default"  # "default", "mirrored", "multi_worker_mirrored" (TF_CONFIG)

    def __post_init__(self) -> None:
        if self.epochs < 1 or self.batch_size < 1:
            raise ValueError("epochs and batch_size must be >= 1")
        if self.shuffle_buffer < 1:
            raise ValueError(f"shuffle_buffer must be >= 1, got {self.shuffle_buffer}")
        if not self.learning_rate > 0:
            raise ValueError(f"learning_rate must be > 0, got {self.learning_rate}")
        for name, choices in (
            ("training_loop", features.TRAINING_LOOPS),
            ("distribution_strategy", features.DISTRIBUTION_STRATEGIES),
        ):
            if getattr(self, name) not in choices:
                raise ValueError(f"{name} must be one of {', '.join(choices)}; got {getattr(self, name)!r}")

    def to_custom_config(self) -> dict[str, Any]:
        """What the Trainer passes to ``run_fn`` as ``custom_config``."""
        return dataclasses.asdict(self)

    @classmethod
    def from_custom_config(cls, custom_config: Mapping[str, Any] | None) -> TrainingParams:
        """The parameters ``to_custom_config`` wrote; an unknown key is an error, not ignored."""
        values = dict(custom_config or {})
        unknown = sorted(set(values) - {f.name for f in dataclasses.fields(cls)})
        if unknown:
            raise ValueError(f"unknown training parameters in custom_config: {', '.join(unknown)}")
        return cls(**values)
