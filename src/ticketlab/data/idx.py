"""Reader for the IDX format that the original MNIST files use.

Written by hand (a few lines with numpy.frombuffer) rather than pulled from a dependency, so
that every way a file can be damaged gets its own one-line DataError naming the file, instead
of a reshape error deep in numpy.

Format: a 4-byte magic number ``0x00 0x00 <dtype code> <ndim>``, then ``ndim`` big-endian
uint32 dimension sizes, then the values in C order, big-endian. A file may be gzipped.
"""

from __future__ import annotations

import gzip
import zlib
from pathlib import Path

import numpy as np

from ticketlab.errors import DataError

# IDX dtype codes -> big-endian numpy dtypes.
IDX_DTYPES: dict[int, np.dtype] = {
    0x08: np.dtype(">u1"),
    0x09: np.dtype(">i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}
_GZIP_MAGIC = b"\x1f\x8b"


def read_idx(path: str | Path) -> np.ndarray:
    """The array stored in the IDX file at ``path`` (gzipped or not), in native byte order."""
    path = Path(path)
    raw = _read_bytes(path)
    dtype, dims = _parse_header(path, raw)
    header_len = 4 + 4 * len(dims)
    expected = int(np.prod(dims, dtype=np.int64)) * dtype.itemsize
    got = len(raw) - header_len
    if got < expected:
        raise DataError(
            f"{path}: truncated IDX file, header promises {expected} payload bytes for shape "
            f"{tuple(dims)} but only {got} follow; download the file again"
        )
    if got > expected:
        raise DataError(
            f"{path}: {got - expected} unexpected trailing bytes after the IDX payload of shape "
            f"{tuple(dims)}; the file is corrupt or not IDX, download it again"
        )
    data = np.frombuffer(raw, dtype=dtype, offset=header_len).reshape(dims)
    return data.astype(dtype.newbyteorder("="))


def _read_bytes(path: Path) -> bytes:
    """The file's bytes, decompressed when it starts with the gzip magic."""
    try:
        raw = path.read_bytes()
        return gzip.decompress(raw) if raw[:2] == _GZIP_MAGIC else raw
    except (EOFError, gzip.BadGzipFile, zlib.error) as err:
        raise DataError(f"{path}: damaged gzip stream ({err}); download the file again") from err
    except OSError as err:
        reason = err.strerror or err
        message = f"{path}: cannot read file ({reason}); check it exists and is readable"
        raise DataError(message) from err


def _parse_header(path: Path, raw: bytes) -> tuple[np.dtype, list[int]]:
    """(dtype, dims) from the magic number and dimension sizes at the start of ``raw``."""
    if len(raw) < 4:
        raise DataError(
            f"{path}: only {len(raw)} bytes, too short for an IDX header; download the file again"
        )
    zero0, zero1, code, ndim = raw[:4]
    if zero0 != 0 or zero1 != 0 or code not in IDX_DTYPES or ndim == 0:
        raise DataError(
            f"{path}: bad IDX magic number 0x{raw[:4].hex()} (expected 0x0000 + dtype code "
            f"08/09/0b/0c/0d/0e + ndim); this is not an uncompressed or gzipped IDX file"
        )
    if len(raw) < 4 + 4 * ndim:
        raise DataError(
            f"{path}: truncated IDX header ({ndim} dimensions declared); download the file again"
        )
    dims = np.frombuffer(raw, dtype=">u4", count=ndim, offset=4).astype(np.int64).tolist()
    return IDX_DTYPES[code], dims
