"""The IDX file format of MNIST (uint8 only): parse, read, and write atomically.

An IDX file is a 4-byte magic number (0x00, 0x00, dtype 0x08 = uint8, number of dimensions),
one big-endian uint32 per dimension, then the data in C order. Files may be gzipped.
"""

from __future__ import annotations

import gzip
import math
import os
import tempfile
import zlib

import numpy as np

UINT8 = 0x08
_GZIP_HEADER = b"\x1f\x8b"


class DataFileError(Exception):
    """A data file is missing or invalid; the message names the file and the problem."""


class IdxFormatError(DataFileError, ValueError):
    """Bytes that are not a valid uint8 IDX file."""


def parse_idx(data: bytes, name: str, ndim: int | None = None) -> np.ndarray:
    """Decode IDX bytes (gzipped or not) named `name` in errors; `ndim` pins the expected rank."""
    if data[:2] == _GZIP_HEADER:
        try:
            data = gzip.decompress(data)
        except (OSError, EOFError, zlib.error) as e:
            raise IdxFormatError(f"{name}: corrupt gzip data ({e})") from None
    if len(data) < 4:
        raise IdxFormatError(f"{name}: truncated: {len(data)} bytes, too short for an IDX header")
    magic = int.from_bytes(data[:4], "big")
    rank = data[3]
    if data[:2] != b"\0\0" or data[2] != UINT8 or rank == 0 or (ndim is not None and rank != ndim):
        expected = (
            f"0x{0x800 + ndim:08x} for uint8 {ndim}-D"
            if ndim is not None
            else "0x000008NN: uint8 with NN >= 1 dimensions"
        )
        raise IdxFormatError(f"{name}: bad magic number 0x{magic:08x} (expected {expected})")
    header = 4 + 4 * rank
    if len(data) < header:
        raise IdxFormatError(
            f"{name}: truncated: expected a {header}-byte header, found {len(data)} bytes"
        )
    shape = tuple(int.from_bytes(data[i : i + 4], "big") for i in range(4, header, 4))
    size = math.prod(shape)
    found = len(data) - header
    if found < size:
        raise IdxFormatError(f"{name}: truncated: expected {size} bytes of data, found {found}")
    if found > size:
        raise IdxFormatError(
            f"{name}: {found - size} trailing bytes after the {size} bytes of data"
        )
    return np.frombuffer(data, np.uint8, size, header).reshape(shape).copy()


def read_idx(path: str | os.PathLike, ndim: int | None = None) -> np.ndarray:
    """Read the IDX file at `path` (gzipped or not); see `parse_idx`."""
    name = os.fspath(path)
    try:
        with open(name, "rb") as f:
            data = f.read()
    except OSError as e:
        raise DataFileError(f"{name}: cannot read ({e.strerror or e})") from None
    return parse_idx(data, name, ndim)


def write_idx(path: str | os.PathLike, array: np.ndarray, compress: bool = True) -> None:
    """Write a uint8 array as an IDX file (gzipped by default), atomically."""
    name = os.fspath(path)
    if array.dtype != np.uint8:
        raise ValueError(f"{name}: IDX arrays must be uint8, got {array.dtype}")
    if not 1 <= array.ndim <= 255 or any(d >= 2**32 for d in array.shape):
        raise ValueError(f"{name}: cannot write an array of shape {array.shape} as IDX")
    data = bytes([0, 0, UINT8, array.ndim]) + b"".join(
        d.to_bytes(4, "big") for d in array.shape
    ) + np.ascontiguousarray(array).tobytes()
    if compress:
        data = gzip.compress(data, compresslevel=6, mtime=0)
    write_atomic(name, data)


def write_atomic(path: str | os.PathLike, data: bytes) -> None:
    """Write `data` to `path` via a temporary file in the same directory and `os.replace`.

    On any error the temporary file is removed and `path` is left as it was.
    """
    name = os.fspath(path)
    fd, tmp = tempfile.mkstemp(
        dir=os.path.dirname(name) or ".", prefix=f".{os.path.basename(name)}.", suffix=".tmp"
    )
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, name)
    except BaseException:
        os.unlink(tmp)
        raise
