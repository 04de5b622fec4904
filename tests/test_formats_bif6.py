"""BIF6 reader/writer: byte layout, bit-exact round trip, completeness, malformed files."""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
import pytest

from lltolab.formats import (
    BIF6_MAGIC,
    Bif6Image,
    ExportFormatError,
    bif6_expected_size,
    bif6_status,
    read_bif6,
    read_bif6_header,
    write_bif6,
)

NX, NY = 512, 206


def _images(rng: np.random.Generator, n: int = 3, nx: int = NX, ny: int = NY) -> list[Bif6Image]:
    masses = [(1, 6.015), (2, 7.016), (3, 47.948)]
    out = []
    for k in range(n):
        pid, m = masses[k % 3]
        counts = rng.integers(0, 2**32, size=(ny, nx), dtype=np.uint64).astype(np.uint32)
        out.append(Bif6Image(pid + 10 * k, m, m - 0.2, m + 0.2, counts))
    return out


def test_round_trip_is_bit_exact_for_512x206x3(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    images = _images(rng)
    path = tmp_path / "a.bif6"
    size = write_bif6(path, images)
    assert size == path.stat().st_size == 12 + 3 * (16 + 4 * NX * NY)
    back = read_bif6(path)
    assert len(back) == 3
    for a, b in zip(images, back, strict=True):
        assert b.peak_id == a.peak_id
        assert b.counts.dtype == np.uint32 and b.counts.shape == (NY, NX)
        np.testing.assert_array_equal(b.counts, a.counts)
        for name in ("centre_u", "lower_u", "upper_u"):
            assert getattr(b, name) == float(np.float32(getattr(a, name)))
    # rewriting what was read gives the identical bytes
    path2 = tmp_path / "b.bif6"
    write_bif6(path2, back)
    assert path2.read_bytes() == path.read_bytes()


def test_byte_layout_matches_the_spec(tmp_path: Path) -> None:
    counts = np.arange(6, dtype=np.uint32).reshape(2, 3)  # ny=2, nx=3
    path = tmp_path / "small.bif6"
    write_bif6(path, [Bif6Image(7, 6.015, 5.9, 6.1, counts)])
    raw = path.read_bytes()
    assert raw[:6] == b"\x00\x00BIF6"
    assert struct.unpack_from("<HHH", raw, 6) == (1, 3, 2)
    assert struct.unpack_from("<I", raw, 12) == (7,)
    assert struct.unpack_from("<fff", raw, 16) == tuple(
        float(np.float32(v)) for v in (6.015, 5.9, 6.1)
    )
    # x fastest: the first row (y=0) comes first
    assert struct.unpack_from("<6I", raw, 28) == (0, 1, 2, 3, 4, 5)
    assert len(raw) == bif6_expected_size(1, 3, 2) == 12 + 16 + 24
    h = read_bif6_header(path)
    assert (h.n_images, h.nx, h.ny) == (1, 3, 2)


def test_completeness_by_size(tmp_path: Path) -> None:
    rng = np.random.default_rng(2)
    full = tmp_path / "full.bif6"
    write_bif6(full, _images(rng, 2, 40, 30))
    blob = full.read_bytes()
    part = tmp_path / "part.bif6"
    for cut in (0, 3, 11, 12, 500, len(blob) - 1):
        part.write_bytes(blob[:cut])
        state, size, _ = bif6_status(part)
        assert state == "partial" and size == cut
    part.write_bytes(blob)
    assert bif6_status(part) == ("complete", len(blob), len(blob))


def _blob(n: int = 1, nx: int = 4, ny: int = 3) -> bytearray:
    path_bytes = bytearray(struct.pack("<6sHHH", BIF6_MAGIC, n, nx, ny))
    for k in range(n):
        path_bytes += struct.pack("<Ifff", k, 6.015, 5.9, 6.1)
        path_bytes += np.zeros(nx * ny, "<u4").tobytes()
    return path_bytes


@pytest.mark.parametrize(
    ("mutate", "defect"),
    [
        (lambda b: b"\x00\x00BIF7" + b[6:], "wrong magic"),
        (lambda b: b"PK\x03\x04" + b[4:], "wrong magic"),
        (lambda b: b[:-5], "truncated"),
        (lambda b: b[:8], "truncated"),
        (lambda b: b + b"\x00" * 4, "sizes inconsistent with header"),
        (lambda b: b[:6] + struct.pack("<HHH", 2, 4, 3) + b[12:], "truncated"),
        (lambda b: b[:6] + struct.pack("<HHH", 1, 4, 2) + b[12:], "sizes inconsistent"),
        (lambda b: b[:6] + struct.pack("<HHH", 1, 0, 3) + b[12:], "absurd dimensions"),
        (lambda b: b[:6] + struct.pack("<HHH", 1, 65535, 65535) + b[12:], "absurd dimensions"),
        (lambda b: b[:6] + struct.pack("<HHH", 0, 4, 3) + b[12:], "0 images"),
        (lambda b: b[:6] + struct.pack("<HHH", 5000, 4, 3) + b[12:], "absurd dimensions"),
        (lambda b: b[:16] + struct.pack("<fff", 6.0, 6.2, 5.8) + b[28:], "lower mass"),
        (lambda b: b[:16] + struct.pack("<fff", float("nan"), 5.9, 6.1) + b[28:], "non-finite"),
    ],
)
def test_malformed_files_raise_naming_file_and_defect(tmp_path: Path, mutate, defect) -> None:
    path = tmp_path / "bad.bif6"
    path.write_bytes(bytes(mutate(bytes(_blob()))))
    with pytest.raises(ExportFormatError, match=defect) as info:
        read_bif6(path)
    assert isinstance(info.value, ValueError)
    assert str(path) in str(info.value)
    assert info.value.path == path


def test_status_rejects_unrepairable_files_early(tmp_path: Path) -> None:
    path = tmp_path / "x.bif6"
    path.write_bytes(b"\x00\x00BIX")  # wrong even as a prefix
    with pytest.raises(ExportFormatError, match="wrong magic"):
        bif6_status(path)
    path.write_bytes(bytes(_blob()) + b"\x00")
    with pytest.raises(ExportFormatError, match="sizes inconsistent"):
        bif6_status(path)


def test_writer_rejects_bad_input(tmp_path: Path) -> None:
    p = tmp_path / "w.bif6"
    with pytest.raises(ValueError, match="at least one image"):
        write_bif6(p, [])
    a = Bif6Image(1, 6.0, 5.9, 6.1, np.zeros((2, 3), np.uint32))
    b = Bif6Image(2, 7.0, 6.9, 7.1, np.zeros((3, 2), np.uint32))
    with pytest.raises(ValueError, match="share shape"):
        write_bif6(p, [a, b])
    neg = Bif6Image(1, 6.0, 5.9, 6.1, -np.ones((2, 3), np.int64))
    with pytest.raises(ValueError, match="uint32 range"):
        write_bif6(p, [neg])
    flt = Bif6Image(1, 6.0, 5.9, 6.1, np.zeros((2, 3)))
    with pytest.raises(ValueError, match="integers"):
        write_bif6(p, [flt])


def test_header_claiming_gigabytes_is_rejected_before_reading(tmp_path: Path) -> None:
    from lltolab.formats import BIF6_MAX_BYTES

    p = tmp_path / "huge.bif6"
    # 60 images of 4096 x 4096 pixels: a 4 GB claim in a 12-byte file
    p.write_bytes(BIF6_MAGIC + struct.pack("<HHH", 60, 4096, 4096))
    assert bif6_expected_size(60, 4096, 4096) > BIF6_MAX_BYTES
    for call in (read_bif6, bif6_status, read_bif6_header):
        with pytest.raises(ExportFormatError, match="absurd dimensions.*bytes"):
            call(p)
    # within the limit, a short file is "truncated" from its size alone
    p.write_bytes(BIF6_MAGIC + struct.pack("<HHH", 2, 4096, 4096) + b"\x00" * 100)
    with pytest.raises(ExportFormatError, match="truncated"):
        read_bif6(p)
    assert bif6_status(p)[0] == "partial"


def test_paths_that_are_no_bif6_file(tmp_path: Path) -> None:
    d = tmp_path / "dir.bif6"
    d.mkdir()
    with pytest.raises(ExportFormatError, match="is a directory"):
        read_bif6(d)
    with pytest.raises(ExportFormatError, match="is a directory"):
        bif6_status(d)
    with pytest.raises(FileNotFoundError):  # a vanished file stays distinguishable
        bif6_status(tmp_path / "gone.bif6")
