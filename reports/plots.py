"""The report's pictures as PNG bytes, rendered headless (Agg, object API, no pyplot).

Every figure has a fixed pixel size (``*_SIZE`` or ``gallery_size``) so callers and tests know it.
"""

from __future__ import annotations

import io
import math
from typing import Sequence

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from components.features import NUM_CLASSES

DPI = 100
CURVES_SIZE = (1000, 400)
CONFUSION_SIZE = (640, 560)
PER_DIGIT_SIZE = (720, 360)
GALLERY_COLUMNS = 10
GALLERY_CELL = (100, 125)  # the data grid's cell, so both pictures read alike


def _figure(size: tuple[int, int]) -> Figure:
    figure = Figure(figsize=(size[0] / DPI, size[1] / DPI), dpi=DPI)
    FigureCanvasAgg(figure)
    return figure


def _png(figure: Figure) -> bytes:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=DPI)  # no bbox_inches: keeps the declared size
    return buffer.getvalue()


def training_curves(history: Sequence[dict]) -> bytes:
    """Loss and accuracy per epoch, train and test, from the Trainer's ``history.json`` records."""
    if not history:
        raise ValueError("training history is empty")
    epochs = [int(h["epoch"]) for h in history]
    figure = _figure(CURVES_SIZE)
    for index, (metric, title) in enumerate((("loss", "loss"), ("accuracy", "accuracy"))):
        axes = figure.add_subplot(1, 2, index + 1)
        axes.plot(epochs, [h[metric] for h in history], "o-", label="train")
        axes.plot(epochs, [h[f"test_{metric}"] for h in history], "s--", label="test")
        axes.set_title(title)
        axes.set_xlabel("epoch")
        axes.set_xticks(epochs)
        axes.grid(alpha=0.3)
        axes.legend()
    figure.tight_layout()
    return _png(figure)


def confusion_matrix(matrix: np.ndarray) -> bytes:
    """A 10×10 count matrix (rows: true digit, columns: predicted digit) as an annotated heat map."""
    matrix = np.asarray(matrix)
    if matrix.shape != (NUM_CLASSES, NUM_CLASSES):
        raise ValueError(f"confusion matrix must be {NUM_CLASSES}×{NUM_CLASSES}, got {matrix.shape}")
    figure = _figure(CONFUSION_SIZE)
    axes = figure.add_subplot(1, 1, 1)
    shown = axes.imshow(matrix, cmap="Blues")
    figure.colorbar(shown, ax=axes, fraction=0.046, pad=0.04)
    threshold = matrix.max() / 2 if matrix.max() > 0 else 1
    for (true, predicted), count in np.ndenumerate(matrix):
        if count:
            axes.text(
                predicted,
                true,
                f"{count:g}",
                ha="center",
                va="center",
                fontsize=8,
                color="white" if count > threshold else "black",
            )
    axes.set_xticks(range(NUM_CLASSES))
    axes.set_yticks(range(NUM_CLASSES))
    axes.set_xlabel("predicted digit")
    axes.set_ylabel("true digit")
    axes.set_title("confusion matrix")
    figure.tight_layout()
    return _png(figure)


def per_digit_accuracy(accuracy: Sequence[float], counts: Sequence[int]) -> bytes:
    """One bar per digit: its accuracy, labelled with the number of test images of that digit."""
    if len(accuracy) != NUM_CLASSES or len(counts) != NUM_CLASSES:
        raise ValueError(f"need {NUM_CLASSES} accuracies and counts, got {len(accuracy)} and {len(counts)}")
    figure = _figure(PER_DIGIT_SIZE)
    axes = figure.add_subplot(1, 1, 1)
    bars = axes.bar(range(NUM_CLASSES), accuracy, color="#4a7bd0")
    axes.bar_label(bars, labels=[f"{a:.1%}\nn={n}" for a, n in zip(accuracy, counts)], fontsize=7)
    axes.set_xticks(range(NUM_CLASSES))
    axes.set_ylim(0, 1.15)
    axes.set_xlabel("true digit")
    axes.set_ylabel("accuracy")
    axes.set_title("accuracy per digit")
    figure.tight_layout()
    return _png(figure)


def gallery_size(n: int) -> tuple[int, int]:
    """Pixel size of a gallery of ``n`` images (one cell for the "none" message when ``n`` is 0)."""
    columns = max(1, min(n, GALLERY_COLUMNS))
    return columns * GALLERY_CELL[0], max(1, math.ceil(n / columns)) * GALLERY_CELL[1]


def misclassified_gallery(images: np.ndarray, predicted: Sequence[int], true: Sequence[int]) -> bytes:
    """Images uint8 [N, 28, 28], each titled "predicted/true"; N may be 0."""
    if not len(images) == len(predicted) == len(true):
        raise ValueError("images, predicted and true labels differ in length")
    n = len(images)
    columns = max(1, min(n, GALLERY_COLUMNS))
    figure = _figure(gallery_size(n))
    if n == 0:
        figure.text(0.5, 0.5, "none", ha="center", va="center")
    for i in range(n):
        axes = figure.add_subplot(math.ceil(n / columns), columns, i + 1)
        axes.imshow(images[i], cmap="gray", vmin=0, vmax=255)
        axes.set_title(f"{int(predicted[i])}/{int(true[i])}", color="#b00020")
        axes.axis("off")
    figure.tight_layout()
    return _png(figure)
