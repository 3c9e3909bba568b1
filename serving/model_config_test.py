"""read_regular_file: the bound and the file kinds every config file (--model_config_file,
--batching_parameters_file, a version's batching_params.pbtxt) is read under."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from serving.model_config import read_regular_file


def test_a_file_up_to_the_bound_is_read_whole(tmp_path: Path) -> None:
    path = tmp_path / "models.config"
    path.write_bytes(b"x" * 16)
    assert read_regular_file(str(path), max_bytes=16) == b"x" * 16


def test_a_file_over_the_bound_is_refused_naming_it(tmp_path: Path) -> None:
    path = tmp_path / "models.config"
    path.write_bytes(b"x" * 17)
    with pytest.raises(OSError, match=f"{path} is larger than 16 bytes"):
        read_regular_file(str(path), max_bytes=16)


def test_a_fifo_is_refused_without_blocking(tmp_path: Path) -> None:
    path = tmp_path / "models.config"
    os.mkfifo(path)
    with pytest.raises(OSError, match="is not a regular file"):
        read_regular_file(str(path))
