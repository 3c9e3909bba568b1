"""Fixtures shared by the unit tests beside the code and the end-to-end tests in tests/."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


@pytest.fixture(scope="session")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The four verified MNIST IDX files (all 70,000 images), materialized once per session."""
    from components import mnist_data

    path = tmp_path_factory.mktemp("mnist") / "data"
    mnist_data.materialize(path)
    return path
