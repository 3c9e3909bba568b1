"""Tests of the IDX reader and atomic writer."""

import gzip
import os
import re

import numpy as np
import pytest

from bench.data_abuse import write_gzip_bomb
from components.idx import (
    MAX_DATA_BYTES,
    DataFileError,
    IdxFormatError,
    idx_header,
    parse_idx,
    read_idx,
    read_idx_stream,
    write_atomic,
    write_idx,
)


def _raw_idx(array: np.ndarray) -> bytes:
    header = bytes([0, 0, 8, array.ndim]) + b"".join(d.to_bytes(4, "big") for d in array.shape)
    return header + array.tobytes()


@pytest.mark.parametrize("compress", [True, False])
@pytest.mark.parametrize("shape", [(7,), (5, 4, 3), (2, 1, 3, 2)])
def test_round_trip(tmp_path, compress, shape):
    array = np.random.default_rng(0).integers(0, 256, shape, dtype=np.uint8)
    path = tmp_path / "a.idx"
    write_idx(path, array, compress=compress)
    data = path.read_bytes()
    assert data[:2] == (b"\x1f\x8b" if compress else b"\0\0")
    assert (gzip.decompress(data) if compress else data) == _raw_idx(array)
    back = read_idx(path)
    assert back.dtype == np.uint8 and back.shape == shape
    np.testing.assert_array_equal(back, array)
    assert os.listdir(tmp_path) == ["a.idx"]


def test_parse_checks_rank_against_magic():
    data = _raw_idx(np.zeros((1, 2, 3, 4), np.uint8))
    assert parse_idx(data, "x").shape == (1, 2, 3, 4)
    name = "/x/train-images-idx3-ubyte.gz"
    with pytest.raises(IdxFormatError) as e:
        parse_idx(gzip.compress(data), name, ndim=3)
    assert str(e.value) == (f"{name}: bad magic number 0x00000804 (expected 0x00000803 for uint8 3-D)")


@pytest.mark.parametrize("magic", [b"\0\0\x09\x01", b"\x01\0\x08\x01", b"\0\0\x08\0", b"PK\x03\x04"])
def test_bad_magic(magic):
    data = magic + (3).to_bytes(4, "big") + b"abc"
    with pytest.raises(IdxFormatError, match=r"^f\.idx: bad magic number 0x[0-9a-f]{8} \(expected"):
        parse_idx(data, "f.idx")


@pytest.mark.parametrize(
    "data, problem",
    [
        (b"\0\0\x08", "truncated: 3 bytes, too short for an IDX header"),
        (b"\0\0\x08\x02\0\0\0\x05", "truncated: expected a 12-byte header, found 8 bytes"),
        (_raw_idx(np.ones((4, 5), np.uint8))[:-3], "truncated: expected 20 bytes of data, found 17"),
        (_raw_idx(np.ones((4, 5), np.uint8)) + b"\0\0", "2 trailing bytes after the 20 bytes of data"),
    ],
)
def test_wrong_length(data, problem):
    # Inflating stops one byte past the declared data, so a gzipped file's extra bytes go uncounted.
    for blob, said in ((data, problem), (gzip.compress(data), problem.replace("2 trailing", "trailing"))):
        with pytest.raises(IdxFormatError) as e:
            parse_idx(blob, "/d/f.idx")
        assert str(e.value) == f"/d/f.idx: {said}"


@pytest.mark.parametrize("damage", ["flip", "cut"])
def test_corrupt_gzip(damage):
    data = bytearray(gzip.compress(_raw_idx(np.arange(200, dtype=np.uint8))))
    if damage == "flip":
        data[len(data) // 2] ^= 0xFF
    else:
        del data[-10:]
    with pytest.raises(IdxFormatError, match=r"^/d/f\.gz: corrupt gzip data \("):
        parse_idx(bytes(data), "/d/f.gz")


def test_read_missing_file(tmp_path):
    path = tmp_path / "nope.gz"
    with pytest.raises(DataFileError, match=f"^{re.escape(str(path))}: cannot read \\(No such file or directory\\)$"):
        read_idx(path)


def test_write_rejects_non_uint8_and_leaves_nothing(tmp_path):
    with pytest.raises(ValueError, match=r"a\.gz: IDX arrays must be uint8, got float32"):
        write_idx(tmp_path / "a.gz", np.zeros(3, np.float32))
    with pytest.raises(ValueError, match=r"cannot write an array of shape \(\) as IDX"):
        write_idx(tmp_path / "a.gz", np.zeros((), np.uint8))
    assert os.listdir(tmp_path) == []


def test_failed_write_keeps_old_file_and_no_temp(tmp_path):
    path = tmp_path / "a.idx"
    write_idx(path, np.arange(5, dtype=np.uint8), compress=False)
    old = path.read_bytes()
    with pytest.raises(TypeError):
        write_atomic(path, "not bytes")  # fails after the temporary file was created
    (tmp_path / "d").mkdir()
    with pytest.raises(IsADirectoryError):
        write_idx(tmp_path / "d", np.arange(5, dtype=np.uint8))  # os.replace onto a directory
    assert sorted(os.listdir(tmp_path)) == ["a.idx", "d"]
    assert os.listdir(tmp_path / "d") == []
    assert path.read_bytes() == old


def test_gzip_bomb_is_refused_one_byte_past_the_declared_data(tmp_path):
    path = tmp_path / "bomb.gz"
    write_gzip_bomb(path, idx_header((1000,)), 200 << 20)  # ~200 KB inflating to 200 MB
    with open(path, "rb") as f:
        with pytest.raises(IdxFormatError) as e:
            read_idx_stream(f, str(path))
        stopped_at = f.tell()
    assert str(e.value) == f"{path}: trailing bytes after the 1000 bytes of data"
    assert stopped_at < 64 << 10 < path.stat().st_size  # most of the bomb was never even read


@pytest.mark.parametrize("compress", [True, False])
def test_header_declaring_more_than_expected_is_refused_before_the_data(tmp_path, compress):
    path = tmp_path / "big.idx"
    data = idx_header((2**32 - 1, 2**32 - 1)) + b"\0" * 100
    path.write_bytes(gzip.compress(data) if compress else data)
    with pytest.raises(IdxFormatError) as e:
        read_idx(path)
    assert str(e.value) == (
        f"{path}: header declares shape [4294967295, 4294967295], {(2**32 - 1) ** 2} bytes of data, "
        f"more than the {MAX_DATA_BYTES} bytes expected"
    )
    write_idx(tmp_path / "b.gz", np.zeros(5, np.uint8))
    with pytest.raises(IdxFormatError, match=r"b\.gz: header declares shape \[5\], 5 bytes of data, more than the 4 "):
        read_idx(tmp_path / "b.gz", max_bytes=4)


@pytest.mark.parametrize(
    "make, kind",
    [
        (lambda p: p.symlink_to("/dev/zero"), "a character device"),
        (lambda p: os.mkfifo(p), "a FIFO (named pipe)"),  # opening it must not wait for a writer
        (lambda p: p.mkdir(), "a directory"),
    ],
)
def test_only_regular_files_are_read(tmp_path, make, kind):
    path = tmp_path / "train-images-idx3-ubyte"
    make(path)
    with pytest.raises(DataFileError) as e:
        read_idx(path, ndim=3)
    assert str(e.value) == f"{path}: not a regular file ({kind}); only regular files are read"


def test_a_symlink_to_a_regular_file_is_read(tmp_path):
    write_idx(tmp_path / "a.gz", np.arange(6, dtype=np.uint8).reshape(2, 3))
    (tmp_path / "link.gz").symlink_to(tmp_path / "a.gz")
    assert read_idx(tmp_path / "link.gz", ndim=2).tolist() == [[0, 1, 2], [3, 4, 5]]
