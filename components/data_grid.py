"""A PNG grid of MNIST images titled with their labels, rendered headless (Agg, no pyplot)."""

from __future__ import annotations

import io
import math
import os

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from components.idx import write_atomic

_COLUMNS = 10


def save_grid(images: np.ndarray, labels: np.ndarray, out_path: str | os.PathLike, n: int) -> None:
    """Write the first `n` images, each titled with its label, as a PNG grid (atomically)."""
    available = min(len(images), len(labels))
    if not 1 <= n <= available:
        raise ValueError(f"n must be between 1 and {available} (the number of images), got {n}")
    columns = min(n, _COLUMNS)
    rows = math.ceil(n / columns)
    figure = Figure(figsize=(columns * 1.0, rows * 1.25), dpi=100)  # 100x125 px a cell
    FigureCanvasAgg(figure)
    for i in range(n):
        axes = figure.add_subplot(rows, columns, i + 1)
        axes.imshow(images[i], cmap="gray", vmin=0, vmax=255)
        axes.set_title(str(int(labels[i])))
        axes.axis("off")
    figure.tight_layout()
    png = io.BytesIO()
    figure.savefig(png, format="png")
    write_atomic(out_path, png.getvalue())
