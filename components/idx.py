"""The IDX file format of MNIST (uint8 only): parse, read, and write atomically.

An IDX file is a 4-byte magic number (0x00, 0x00, dtype 0x08 = uint8, number of dimensions),
one big-endian uint32 per dimension, then the data in C order. Files may be gzipped.

Reading streams: a gzipped file is inflated in chunks, the size the header declares is checked
against ``max_bytes`` before any data is read, and at most one byte past the declared data is read,
so a small file that inflates to gigabytes (or a link to ``/dev/zero``) costs no more memory than
the data the caller expects. Only regular files are read: a FIFO or a device is refused by name.
"""

from __future__ import annotations

import gzip
import io
import math
import os
import stat
import tempfile
import zlib
from typing import BinaryIO

import numpy as np

UINT8 = 0x08
_GZIP_HEADER = b"\x1f\x8b"
MAX_DATA_BYTES = 1 << 30  # default bound on the data of one file; MNIST's largest holds 47,040,000
_CHUNK = 1 << 20
_FILE_KINDS = {
    stat.S_IFDIR: "a directory",
    stat.S_IFCHR: "a character device",
    stat.S_IFBLK: "a block device",
    stat.S_IFIFO: "a FIFO (named pipe)",
    stat.S_IFSOCK: "a socket",
}


class DataFileError(Exception):
    """A data file is missing or invalid; the message names the file and the problem."""


class IdxFormatError(DataFileError, ValueError):
    """Bytes that are not a valid uint8 IDX file."""


def _read_upto(stream: BinaryIO, n: int) -> bytes:
    """Up to ``n`` bytes; fewer only at the end of the stream."""
    parts, got = [], 0
    while got < n:
        part = stream.read(min(n - got, _CHUNK))
        if not part:
            break
        parts.append(part)
        got += len(part)
    return b"".join(parts)


def _bytes_left(stream: BinaryIO) -> int | None:
    """How many bytes a plain seekable stream still holds (for messages), else None."""
    try:
        here = stream.tell()
        stream.seek(0, io.SEEK_END)
        end = stream.tell()
        stream.seek(here)
    except (OSError, AttributeError, ValueError):
        return None
    return end - here


def read_idx_stream(
    stream: BinaryIO, name: str, ndim: int | None = None, max_bytes: int = MAX_DATA_BYTES
) -> np.ndarray:
    """Decode the IDX file (gzipped or not) read from ``stream``, named ``name`` in errors.

    ``ndim`` pins the expected rank; a header declaring more than ``max_bytes`` of data is refused
    before its data are read. ``stream`` must be seekable if the file is gzipped.
    """
    gzipped = stream.read(2) == _GZIP_HEADER
    stream.seek(0)
    source = gzip.GzipFile(fileobj=stream, mode="rb") if gzipped else stream
    try:
        return _decode(source, name, ndim, max_bytes, None if gzipped else source)
    except (OSError, EOFError, zlib.error) as e:
        if not gzipped:
            raise
        raise IdxFormatError(f"{name}: corrupt gzip data ({e})") from None


def _decode(source: BinaryIO, name: str, ndim: int | None, max_bytes: int, plain: BinaryIO | None) -> np.ndarray:
    data = _read_upto(source, 4)
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
    data += _read_upto(source, header - 4)
    if len(data) < header:
        raise IdxFormatError(f"{name}: truncated: expected a {header}-byte header, found {len(data)} bytes")
    shape = tuple(int.from_bytes(data[i : i + 4], "big") for i in range(4, header, 4))
    size = math.prod(shape)
    if size > max_bytes:
        raise IdxFormatError(
            f"{name}: header declares shape {list(shape)}, {size} bytes of data, "
            f"more than the {max_bytes} bytes expected"
        )
    array = np.empty(size, np.uint8)
    found = 0
    while found < size:
        part = source.read(min(size - found, _CHUNK))
        if not part:
            raise IdxFormatError(f"{name}: truncated: expected {size} bytes of data, found {found}")
        array[found : found + len(part)] = np.frombuffer(part, np.uint8)
        found += len(part)
    left = _bytes_left(plain) if plain is not None else None
    if left or (left is None and source.read(1)):
        extra = f"{left} trailing bytes" if left else "trailing bytes"
        raise IdxFormatError(f"{name}: {extra} after the {size} bytes of data")
    return array.reshape(shape)


def parse_idx(data: bytes, name: str, ndim: int | None = None, max_bytes: int = MAX_DATA_BYTES) -> np.ndarray:
    """Decode IDX bytes (gzipped or not) named `name` in errors; see :func:`read_idx_stream`."""
    return read_idx_stream(io.BytesIO(data), name, ndim, max_bytes)


def open_regular(path: str | os.PathLike) -> BinaryIO:
    """Open ``path`` for reading if it is a regular file (after symlinks); else DataFileError.

    Opened non-blocking, so a FIFO cannot stall the open; its type is checked on the open file.
    """
    name = os.fspath(path)
    try:
        fd = os.open(name, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as e:
        raise DataFileError(f"{name}: cannot read ({e.strerror or e})") from None
    mode = os.fstat(fd).st_mode
    if not stat.S_ISREG(mode):
        os.close(fd)
        kind = _FILE_KINDS.get(stat.S_IFMT(mode), "not a regular file")
        raise DataFileError(f"{name}: not a regular file ({kind}); only regular files are read")
    os.set_blocking(fd, True)
    return os.fdopen(fd, "rb")


def read_idx(path: str | os.PathLike, ndim: int | None = None, max_bytes: int = MAX_DATA_BYTES) -> np.ndarray:
    """Read the IDX file at `path` (gzipped or not), streaming; see :func:`read_idx_stream`."""
    name = os.fspath(path)
    with open_regular(name) as f:
        try:
            return read_idx_stream(f, name, ndim, max_bytes)
        except OSError as e:
            raise DataFileError(f"{name}: cannot read ({e.strerror or e})") from None


def idx_header(shape: tuple[int, ...]) -> bytes:
    """The header of a uint8 IDX file of this shape: magic number, then each dimension."""
    return bytes([0, 0, UINT8, len(shape)]) + b"".join(d.to_bytes(4, "big") for d in shape)


def write_idx(path: str | os.PathLike, array: np.ndarray, compress: bool = True) -> None:
    """Write a uint8 array as an IDX file (gzipped by default), atomically."""
    name = os.fspath(path)
    if array.dtype != np.uint8:
        raise ValueError(f"{name}: IDX arrays must be uint8, got {array.dtype}")
    if not 1 <= array.ndim <= 255 or any(d >= 2**32 for d in array.shape):
        raise ValueError(f"{name}: cannot write an array of shape {array.shape} as IDX")
    data = idx_header(array.shape) + np.ascontiguousarray(array).tobytes()
    if compress:
        data = gzip.compress(data, compresslevel=6, mtime=0)
    write_atomic(name, data)


def write_atomic(path: str | os.PathLike, data: bytes) -> None:
    """Write `data` to `path` via a temporary file in the same directory and `os.replace`.

    On any error the temporary file is removed and `path` is left as it was.
    """
    name = os.fspath(path)
    fd, tmp = tempfile.mkstemp(dir=os.path.dirname(name) or ".", prefix=f".{os.path.basename(name)}.", suffix=".tmp")
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
