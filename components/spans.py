"""Data spans: span N of K equal, disjoint, contiguous slices of the official 60,000 training images.

Each span lives in ``<data>/span-N/`` with the four IDX files under their usual names: its slice of
the training set, and the whole official test set as its eval data. New data "arrive" as a new
span folder; TFX's span patterns (``span-{SPAN}/train-*``) let ExampleGen pick the latest one.
A span folder is written in a staging folder, verified, then renamed into place: never half there.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile

import numpy as np

from components import mnist_data
from components.idx import DataFileError, write_idx

SPAN_DIR_PREFIX = "span-"
SPAN_DIR = re.compile(rf"{SPAN_DIR_PREFIX}(?P<span>[1-9][0-9]*)")
# TFX's span placeholder in a split pattern; ExampleGen resolves it to the latest span it finds.
SPAN_PATTERN_DIR = f"{SPAN_DIR_PREFIX}{{SPAN}}"
MAX_SPANS = mnist_data.SIZES["train"]  # a span holds at least one training image


class SpanError(ValueError):
    """A span number or span count that cannot be served; the message says which and why."""


def check_span(span: int, of: int) -> None:
    """Raise SpanError unless 1 <= span <= of <= 60,000."""
    if not 1 <= of <= MAX_SPANS:
        raise SpanError(f"--of {of}: the number of spans must be 1 to {MAX_SPANS} (one training image each at most)")
    if not 1 <= span <= of:
        raise SpanError(f"--span {span}: must be 1 to {of} (--of {of})")


def span_slice(span: int, of: int) -> slice:
    """The training images of span ``span`` of ``of``: contiguous; sizes differ by at most one."""
    check_span(span, of)
    total = mnist_data.SIZES["train"]
    return slice((span - 1) * total // of, span * total // of)


def span_dir(data_dir: str | os.PathLike, span: int) -> str:
    return os.path.join(os.fspath(data_dir), f"{SPAN_DIR_PREFIX}{span}")


def span_numbers(data_dir: str | os.PathLike) -> list[int]:
    """The spans present in ``data_dir`` (folders ``span-N``), ascending; [] without any."""
    try:
        names = os.listdir(data_dir)
    except (FileNotFoundError, NotADirectoryError):
        return []
    found = (SPAN_DIR.fullmatch(n) for n in names)
    return sorted(int(m["span"]) for m in found if m and os.path.isdir(os.path.join(data_dir, m.string)))


def _verify(directory: str, expected: dict[str, mnist_data.Arrays], span: int, of: int) -> list[str]:
    """Check the four IDX files in ``directory`` hold exactly ``expected``; say what was verified."""
    names = {key: mnist_data._path(directory, *key) for key in mnist_data.FILES}
    where = span_slice(span, of)
    for part in mnist_data.PARTS:
        images, labels = mnist_data.load(directory, part)
        want_images, want_labels = expected[part]
        for got, want, kind in ((images, want_images, "images"), (labels, want_labels, "labels")):
            if got.shape != want.shape or not np.array_equal(got, want):
                what = f"training images {where.start}-{where.stop - 1}" if part == "train" else "the test set"
                raise mnist_data.MnistDataError(
                    f"{names[part, kind]}: not span {span} of {of} ({what} of the official MNIST {kind})"
                )
    n_train, n_test = len(expected["train"][1]), len(expected["t10k"][1])
    counts = " ".join(str(int(c)) for c in np.bincount(expected["train"][1], minlength=10))
    return [
        f"{names['train', 'images']}: magic 0x00000803, {n_train} images of 28x28 uint8 "
        f"(official training images {where.start}-{where.stop - 1})",
        f"{names['train', 'labels']}: magic 0x00000801, {n_train} uint8 labels, all 0-9, per-digit counts {counts}",
        f"{names['t10k', 'images']}: magic 0x00000803, {n_test} images of 28x28 uint8 (the official test set)",
        f"{names['t10k', 'labels']}: magic 0x00000801, {n_test} uint8 labels, all 0-9, official per-digit counts",
    ]


def materialize_span(
    data_dir: str | os.PathLike,
    span: int,
    of: int,
    source: str | os.PathLike | None = None,
    *,
    hub_pickle: str | os.PathLike | None = None,
) -> tuple[str, list[str]]:
    """Write ``<data_dir>/span-N/`` (span N of K), verified; return (source used, verify lines).

    The source is found and checked as by :func:`mnist_data.materialize`. A span folder that
    already holds exactly this span is kept; any other content there is replaced. The files are
    written to a staging folder beside it and verified before the rename, so on failure nothing
    this call wrote is left and an existing folder is untouched.
    """
    check_span(span, of)
    data_dir = os.fspath(data_dir)
    source = None if source is None else os.fspath(source)
    if source is not None and not os.path.isdir(source):
        raise mnist_data.MnistDataError(f"{source}: source directory does not exist")
    description, parts, names = mnist_data._find_source(source, hub_pickle)
    mnist_data._check_all(parts, names)
    train_images, train_labels = parts["train"]
    where = span_slice(span, of)
    expected = {"train": (train_images[where], train_labels[where]), "t10k": parts["t10k"]}
    target = span_dir(data_dir, span)
    if os.path.isdir(target):
        try:
            return f"existing files in {target}", _verify(target, expected, span, of)
        except DataFileError:
            pass  # replaced below
    os.makedirs(data_dir, exist_ok=True)
    staging = tempfile.mkdtemp(dir=data_dir, prefix=f".{SPAN_DIR_PREFIX}{span}.staging-")
    try:
        for (part, kind), name in mnist_data.FILES.items():
            write_idx(os.path.join(staging, name), expected[part][mnist_data.KINDS.index(kind)])
        _verify(staging, expected, span, of)
        os.chmod(staging, 0o755)
        if os.path.isdir(target):  # a wrong or partial span folder: swap it out, then drop it
            stale = tempfile.mkdtemp(dir=data_dir, prefix=f".{SPAN_DIR_PREFIX}{span}.stale-")
            os.replace(target, os.path.join(stale, "old"))
            os.replace(staging, target)
            shutil.rmtree(stale)
        else:
            os.replace(staging, target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return description, _verify(target, expected, span, of)
