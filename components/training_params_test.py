"""The training parameters survive the trip through the Trainer's ``custom_config``, and bad ones are refused."""

from __future__ import annotations

import json

import pytest

from components.training_params import TrainingParams


def test_custom_config_round_trip_through_json() -> None:
    params = TrainingParams(epochs=2, batch_size=64, learning_rate=5e-4, training_loop="fit")
    custom_config = json.loads(json.dumps(params.to_custom_config()))  # as TFX passes it to run_fn
    assert TrainingParams.from_custom_config(custom_config) == params


def test_run_fn_defaults_are_the_dataclass_defaults() -> None:
    assert TrainingParams.from_custom_config(None) == TrainingParams.from_custom_config({}) == TrainingParams()


@pytest.mark.parametrize(
    "custom_config, message",
    [
        ({"epochs": 0}, "epochs and batch_size must be >= 1"),
        ({"learning_rate": 0.0}, "learning_rate must be > 0"),
        ({"shuffle_buffer": 0}, "shuffle_buffer must be >= 1"),
        ({"training_loop": "magic"}, "training_loop must be one of custom, fit; got 'magic'"),
        ({"epoch": 3}, "unknown training parameters in custom_config: epoch"),
    ],
)
def test_bad_parameters_say_what_is_wrong(custom_config: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        TrainingParams.from_custom_config(custom_config)
