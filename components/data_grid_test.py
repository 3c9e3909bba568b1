"""Tests of the PNG grid of MNIST images."""

import os

import numpy as np
import pytest
from PIL import Image

from components.data_grid import save_grid


def _data(count=25):
    rng = np.random.default_rng(0)
    return rng.integers(0, 256, (count, 28, 28), dtype=np.uint8), rng.integers(0, 10, count, dtype=np.uint8)


@pytest.mark.parametrize("n, size", [(1, (100, 125)), (12, (1000, 250)), (25, (1000, 375))])
def test_grid_is_a_png_of_the_expected_size(tmp_path, n, size):
    out = tmp_path / "grid.png"
    save_grid(*_data(), out, n)
    assert os.listdir(tmp_path) == ["grid.png"]
    with Image.open(out) as image:
        assert image.format == "PNG" and image.size == size
        pixels = np.asarray(image.convert("L"))
    assert pixels.std() > 10  # images drawn, not a blank canvas


@pytest.mark.parametrize("n", [0, 26, -1])
def test_n_out_of_range(tmp_path, n):
    with pytest.raises(ValueError, match=f"^n must be between 1 and 25 \\(the number of images\\), got {n}$"):
        save_grid(*_data(), tmp_path / "grid.png", n)
    assert os.listdir(tmp_path) == []
