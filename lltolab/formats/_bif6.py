"""BIF6, the IONTOF SurfaceLab binary image export (little-endian).

Layout (the file holds no pixel size, field of view or dose; see :mod:`lltolab.formats` for
the sidecar that carries them)::

    0   6 bytes   00 00 'B' 'I' 'F' '6'
    6   uint16    number of images n
    8   uint16    nx (row length, fast axis)
    10  uint16    ny (rows)
    per image:
    +0  uint32    peak id (SurfaceLab numbering)
    +4  float32   centre mass (u)
    +8  float32   lower mass (u)
    +12 float32   upper mass (u)
    +16 uint32    nx * ny counts, row-major, x fastest

A file is complete only at 12 + n * (16 + 4 * nx * ny) bytes. BIF6 holds no pixel size, field
of view or dose (see the sidecar). A header implying more than :data:`BIF6_MAX_BYTES` is
rejected before anything past it is read, and images are read one at a time.
"""

from __future__ import annotations

import math
import os
import stat
import struct
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

import numpy as np

from ._errors import ExportFormatError

__all__ = [
    "BIF6_MAGIC",
    "BIF6_HEADER_BYTES",
    "BIF6_MAX_PIXELS",
    "BIF6_MAX_BYTES",
    "Bif6Image",
    "Bif6Header",
    "bif6_expected_size",
    "read_bif6_header",
    "bif6_status",
    "read_bif6",
    "write_bif6",
]

BIF6_MAGIC = b"\x00\x00BIF6"
BIF6_HEADER_BYTES = 12
_IMAGE_HEADER = struct.Struct("<Ifff")
_FILE_HEADER = struct.Struct("<6sHHH")
#: Largest accepted nx * ny (a 4096 x 4096 image); anything larger is treated as absurd.
BIF6_MAX_PIXELS = 4096 * 4096
#: Largest accepted number of images (peaks) in one export.
BIF6_MAX_IMAGES = 1024
#: Largest accepted file (bytes, 1 GiB: e.g. 16 images of 4096 x 4096 pixels).
BIF6_MAX_BYTES = 1 << 30


@dataclass(frozen=True)
class Bif6Header:
    """The 12-byte file header.

    Attributes
    ----------
    n_images, nx, ny : int
        Number of images, row length (fast axis) and number of rows.
    """

    n_images: int
    nx: int
    ny: int

    @property
    def expected_size(self) -> int:
        """Size in bytes of the complete file."""
        return bif6_expected_size(self.n_images, self.nx, self.ny)


@dataclass(frozen=True, eq=False)
class Bif6Image:
    """One peak image of a BIF6 export.

    Attributes
    ----------
    peak_id : int
        SurfaceLab peak number (uint32).
    centre_u, lower_u, upper_u : float
        Mass window in atomic mass units (stored as float32).
    counts : np.ndarray
        uint32 counts, shape (ny, nx), x fastest.
    """

    peak_id: int
    centre_u: float
    lower_u: float
    upper_u: float
    counts: np.ndarray = field(repr=False)

    def contains_mass(self, mass_u: float) -> bool:
        """True when ``mass_u`` lies inside [lower_u, upper_u]."""
        return self.lower_u <= mass_u <= self.upper_u


def bif6_expected_size(n_images: int, nx: int, ny: int) -> int:
    """Bytes of a complete BIF6 file with ``n_images`` images of ``nx`` x ``ny`` pixels."""
    return BIF6_HEADER_BYTES + n_images * (16 + 4 * nx * ny)


def _check_dimensions(path: Path | str, n: int, nx: int, ny: int) -> None:
    if n < 1:
        raise ExportFormatError(path, f"header declares {n} images (at least 1 needed)")
    if n > BIF6_MAX_IMAGES:
        raise ExportFormatError(
            path, f"absurd dimensions: {n} images (limit {BIF6_MAX_IMAGES})"
        )
    if nx < 1 or ny < 1:
        raise ExportFormatError(path, f"absurd dimensions: nx={nx}, ny={ny} (both must be >= 1)")
    if nx * ny > BIF6_MAX_PIXELS:
        raise ExportFormatError(
            path, f"absurd dimensions: nx*ny={nx * ny} pixels (limit {BIF6_MAX_PIXELS})"
        )
    size = bif6_expected_size(n, nx, ny)
    if size > BIF6_MAX_BYTES:
        raise ExportFormatError(
            path, f"absurd dimensions: the header implies {size} bytes "
            f"(limit {BIF6_MAX_BYTES} bytes)"
        )


def _parse_header(path: Path | str, head: bytes) -> Bif6Header:
    if head[: len(BIF6_MAGIC)] != BIF6_MAGIC[: len(head)]:
        raise ExportFormatError(
            path, f"wrong magic {head[:6]!r}, expected {BIF6_MAGIC!r} (not a BIF6 export)"
        )
    if len(head) < BIF6_HEADER_BYTES:
        raise ExportFormatError(
            path, f"truncated: {len(head)} bytes, shorter than the {BIF6_HEADER_BYTES}-byte header"
        )
    _, n, nx, ny = _FILE_HEADER.unpack(head[:BIF6_HEADER_BYTES])
    _check_dimensions(path, n, nx, ny)
    return Bif6Header(n, nx, ny)


def read_bif6_header(path: str | os.PathLike[str]) -> Bif6Header:
    """Read and validate the 12-byte header of ``path``.

    Raises
    ------
    ExportFormatError
        Wrong magic, a file shorter than the header, or absurd dimensions.
    """
    p = Path(path)
    with _open(p) as fh:
        head = fh.read(BIF6_HEADER_BYTES)
    return _parse_header(p, head)


def bif6_status(path: str | os.PathLike[str]) -> tuple[str, int, int]:
    """Completeness of a BIF6 file that may still be being written.

    Returns
    -------
    state : str
        ``"partial"`` while the file is shorter than its header or than the size its header
        implies, ``"complete"`` at exactly that size.
    size, expected : int
        Current size and the complete size (0 while the header is not yet there).

    Raises
    ------
    ExportFormatError
        Defects that no amount of waiting repairs: wrong magic, absurd dimensions, a file
        larger than its header allows, or a path that cannot be read as a file.
    FileNotFoundError
        The file vanished.
    """
    p = Path(path)
    with _open(p) as fh:
        head = fh.read(BIF6_HEADER_BYTES)
        size = os.fstat(fh.fileno()).st_size
    if head[: len(BIF6_MAGIC)] != BIF6_MAGIC[: len(head)]:
        _parse_header(p, head)  # raises wrong magic
    if len(head) < BIF6_HEADER_BYTES:
        return "partial", size, 0
    expected = _parse_header(p, head).expected_size
    if size > expected:
        raise ExportFormatError(
            p,
            f"sizes inconsistent with header: {size} bytes, but n/nx/ny in the header imply "
            f"{expected} bytes",
        )
    return ("complete" if size == expected else "partial"), size, expected


def read_bif6(path: str | os.PathLike[str]) -> list[Bif6Image]:
    """Read every image of a complete BIF6 export.

    Parameters
    ----------
    path : path-like
        The ``.bif6`` file.

    Returns
    -------
    list of Bif6Image
        In file order; ``counts`` are uint32 arrays of shape (ny, nx) (native byte order).

    Raises
    ------
    ExportFormatError
        Wrong magic, truncated file, size inconsistent with the header, absurd dimensions,
        non-finite or inverted mass windows.
    """
    p = Path(path)
    with _open(p) as fh:
        size = os.fstat(fh.fileno()).st_size
        header = _parse_header(p, fh.read(BIF6_HEADER_BYTES))
        expected = header.expected_size
        if size < expected:
            raise ExportFormatError(
                p, f"truncated: {size} bytes of the {expected} the header implies"
            )
        if size > expected:
            raise ExportFormatError(
                p,
                f"sizes inconsistent with header: {size} bytes, but n={header.n_images}, "
                f"nx={header.nx}, ny={header.ny} imply {expected} bytes",
            )
        npix = header.nx * header.ny
        images: list[Bif6Image] = []
        for k in range(header.n_images):
            head = fh.read(_IMAGE_HEADER.size)
            counts = np.fromfile(fh, dtype="<u4", count=npix)
            if len(head) < _IMAGE_HEADER.size or counts.size < npix:
                raise ExportFormatError(p, f"truncated while reading image {k} (file shrank)")
            peak_id, centre, lower, upper = _IMAGE_HEADER.unpack(head)
            if not all(math.isfinite(v) for v in (centre, lower, upper)):
                raise ExportFormatError(p, f"image {k} (peak {peak_id}): non-finite mass window")
            if not lower <= upper:
                raise ExportFormatError(
                    p, f"image {k} (peak {peak_id}): lower mass {lower} u > upper mass {upper} u"
                )
            images.append(
                Bif6Image(
                    int(peak_id), float(centre), float(lower), float(upper),
                    counts.astype(np.uint32).reshape(header.ny, header.nx),
                )
            )
    return images


def _open(p: Path) -> BinaryIO:
    """``p`` opened for binary reading; unreadable paths (a folder, no permission) as
    ExportFormatError, a vanished file as FileNotFoundError."""
    try:
        mode = p.stat().st_mode
        if stat.S_ISDIR(mode):
            raise ExportFormatError(p, "is a directory, not a BIF6 file")
        if not stat.S_ISREG(mode):  # a FIFO or device would block or never end
            raise ExportFormatError(p, "not a regular file")
        return p.open("rb")
    except FileNotFoundError:
        raise
    except IsADirectoryError:
        raise ExportFormatError(p, "is a directory, not a BIF6 file") from None
    except OSError as exc:
        raise ExportFormatError(p, f"cannot be read ({exc.strerror or exc})") from None


def write_bif6(path: str | os.PathLike[str], images: Sequence[Bif6Image]) -> int:
    """Write ``images`` as a BIF6 export at ``path``; return the number of bytes written.

    The file is written in place (callers that publish into a watched folder write to a
    temporary name and rename).

    Raises
    ------
    ValueError
        No images, differing shapes, counts outside uint32, absurd dimensions.
    """
    p = Path(path)
    if not images:
        raise ValueError("write_bif6 needs at least one image")
    shape = np.shape(images[0].counts)
    if len(shape) != 2:
        raise ValueError(f"counts must be 2-D (ny, nx), got shape {shape}")
    ny, nx = shape
    if nx > 0xFFFF or ny > 0xFFFF:
        raise ValueError(f"nx={nx}, ny={ny} exceed the uint16 header fields (65535)")
    _check_dimensions(p, len(images), nx, ny)
    parts = [_FILE_HEADER.pack(BIF6_MAGIC, len(images), nx, ny)]
    for img in images:
        counts = np.asarray(img.counts)
        if counts.shape != shape:
            raise ValueError(
                f"all images must share shape {shape}; peak {img.peak_id} has {counts.shape}"
            )
        if counts.dtype.kind not in "ui":
            raise ValueError(f"peak {img.peak_id}: counts must be integers, got {counts.dtype}")
        if counts.size and (counts.min() < 0 or counts.max() > 0xFFFFFFFF):
            raise ValueError(f"peak {img.peak_id}: counts outside the uint32 range")
        if not 0 <= img.peak_id <= 0xFFFFFFFF:
            raise ValueError(f"peak id {img.peak_id} outside the uint32 range")
        parts.append(_IMAGE_HEADER.pack(img.peak_id, img.centre_u, img.lower_u, img.upper_u))
        parts.append(np.ascontiguousarray(counts, dtype="<u4").tobytes())
    blob = b"".join(parts)
    with p.open("wb") as fh:
        fh.write(blob)
    return len(blob)
