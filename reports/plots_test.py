"""Fast tests of the report's plots on small synthetic inputs: each is a PNG of its declared size."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from reports import plots


def decoded(png: bytes) -> Image.Image:
    image = Image.open(io.BytesIO(png))
    image.load()
    assert image.format == "PNG"
    low, high = image.convert("L").getextrema()
    assert low < high, "the image is blank"
    return image


def history(epochs: int) -> list[dict]:
    return [
        {
            "epoch": e,
            "loss": 1 / e,
            "accuracy": 1 - 0.5 / e,
            "test_loss": 1.2 / e,
            "test_accuracy": 1 - 0.6 / e,
            "images_per_second": 300.0,
        }
        for e in range(1, epochs + 1)
    ]


@pytest.mark.parametrize("epochs", [1, 3])
def test_training_curves(epochs):
    assert decoded(plots.training_curves(history(epochs))).size == plots.CURVES_SIZE


def test_training_curves_need_history():
    with pytest.raises(ValueError, match="empty"):
        plots.training_curves([])


def test_confusion_matrix():
    matrix = np.diag(np.arange(10, 20)).astype(float)
    matrix[3, 5] = 4
    assert decoded(plots.confusion_matrix(matrix)).size == plots.CONFUSION_SIZE


def test_confusion_matrix_shape_is_checked():
    with pytest.raises(ValueError, match="10×10"):
        plots.confusion_matrix(np.zeros((3, 3)))


def test_per_digit_accuracy():
    png = plots.per_digit_accuracy([0.9 + d / 100 for d in range(10)], list(range(100, 110)))
    assert decoded(png).size == plots.PER_DIGIT_SIZE


def test_per_digit_accuracy_needs_ten_digits():
    with pytest.raises(ValueError, match="10 accuracies"):
        plots.per_digit_accuracy([1.0], [1])


@pytest.mark.parametrize("n, size", [(0, (100, 125)), (3, (300, 125)), (10, (1000, 125)), (23, (1000, 375))])
def test_misclassified_gallery(n, size):
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)
    png = plots.misclassified_gallery(images, rng.integers(0, 10, n), rng.integers(0, 10, n))
    assert plots.gallery_size(n) == size
    assert decoded(png).size == size


def test_misclassified_gallery_lengths_must_agree():
    with pytest.raises(ValueError, match="differ in length"):
        plots.misclassified_gallery(np.zeros((2, 28, 28), np.uint8), [1], [2, 3])
