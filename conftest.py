"""Fixtures shared by the unit tests beside the code and the end-to-end tests in tests/."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def pytest_sessionstart(session: pytest.Session) -> None:
    """Stop at once, saying where to put them, when TF Serving's test data are missing: the serving
    and object-store tests load its models, and would otherwise fail one by one deep in a load."""
    from bench.common import TF_SERVING_TESTDATA

    if not (TF_SERVING_TESTDATA / "saved_model_half_plus_two_cpu").is_dir():
        raise pytest.UsageError(
            f"TF Serving's test data not found at {TF_SERVING_TESTDATA}: check out beside ../shared, "
            "or set TF_SERVING_TESTDATA to its fixtures/tf_serving_testdata folder"
        )


@pytest.fixture(scope="session")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The four verified MNIST IDX files (all 70,000 images), materialized once per session."""
    from components import mnist_data

    path = tmp_path_factory.mktemp("mnist") / "data"
    mnist_data.materialize(path)
    return path
