"""Property-based fault tests of the export readers and the export watcher.

Hypothesis feeds mutated and random BIF6 files, sidecars and folders to the real readers
(:func:`lltolab.formats.bif6_status`, :func:`read_bif6`, :func:`read_sidecar`,
:func:`read_export`) and to the :class:`lltolab.devices.ExportWatcher` + reducer. Every outcome
must be a correct read or an :class:`lltolab.formats.ExportFormatError` — never another
exception, never a hang (each example has a deadline) — and a rejected export never blocks the
folder. The default run tries a few hundred cases per target; ``-m slow`` thousands.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import struct
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lltolab.devices import ExportReducer, ExportWatcher
from lltolab.formats import (
    BIF6_HEADER_BYTES,
    BIF6_MAGIC,
    Bif6Image,
    ExportFormatError,
    SimsSidecar,
    bif6_expected_size,
    bif6_status,
    read_bif6,
    read_export,
    read_sidecar,
    sidecar_path_for,
)
from lltolab.testing import image_sidecar

pytestmark = pytest.mark.timeout(300)

DEFAULT_CASES = 300
SLOW_CASES = 3000
#: outcomes per target, printed at the end of the module (the figures in docs/reliability.md)
OUTCOMES: dict[str, Counter] = {}


@pytest.fixture(scope="module", autouse=True)
def _report_outcomes():
    yield
    for target, counts in sorted(OUTCOMES.items()):
        print(f"\n{target}: {sum(counts.values())} cases: {dict(counts)}")


def _count(target: str, outcome: str) -> None:
    OUTCOMES.setdefault(target, Counter())[outcome] += 1


def _fuzz(n: int):
    """Hypothesis settings: the default run draws the same cases every time (its figures
    reproduce); the long runs explore new ones."""
    return settings(max_examples=n, deadline=5000, derandomize=n <= DEFAULT_CASES,
                    database=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


# ------------------------------------------------------------------------------ BIF6 bytes
def _valid_bif6(n: int, nx: int, ny: int, seed: int) -> bytes:
    rng = np.random.default_rng(seed)
    parts = [BIF6_MAGIC + struct.pack("<HHH", n, nx, ny)]
    for k in range(n):
        parts.append(struct.pack("<Ifff", k + 1, 6.015 + k, 5.95 + k, 6.08 + k))
        parts.append(rng.integers(0, 100, nx * ny, dtype=np.uint32).astype("<u4").tobytes())
    return b"".join(parts)


@st.composite
def bif6_bytes(draw) -> bytes:
    kind = draw(st.sampled_from(["random", "valid", "flipped", "cut", "extended", "header"]))
    if kind == "random":
        return draw(st.binary(max_size=300))
    blob = bytearray(_valid_bif6(draw(st.integers(1, 3)), draw(st.integers(1, 9)),
                                 draw(st.integers(1, 5)), draw(st.integers(0, 9))))
    if kind == "flipped":
        for _ in range(draw(st.integers(1, 8))):
            i = draw(st.integers(0, len(blob) - 1))
            blob[i] = draw(st.integers(0, 255))
    elif kind == "cut":
        blob = blob[: draw(st.integers(0, len(blob) - 1))]
    elif kind == "extended":
        blob += draw(st.binary(min_size=1, max_size=64))
    elif kind == "header":
        n, nx, ny = (draw(st.integers(0, 0xFFFF)) for _ in range(3))
        blob[6:12] = struct.pack("<HHH", n, nx, ny)
    return bytes(blob)


def _check_bif6(path: Path, blob: bytes, target: str) -> None:
    try:
        state, size, _ = bif6_status(path)
    except ExportFormatError:
        state = "rejected"
    else:
        assert size == len(blob)
        assert state in ("partial", "complete")
    try:
        images = read_bif6(path)
    except ExportFormatError as exc:
        assert str(path) in str(exc)
        _count(target, f"{state} / rejected")
        return
    # a read is a correct read: the header's images, every byte accounted for
    assert state == "complete"
    n, nx, ny = struct.unpack("<HHH", blob[6:12])
    assert blob[:6] == BIF6_MAGIC and len(images) == n
    assert len(blob) == bif6_expected_size(n, nx, ny)
    offset = BIF6_HEADER_BYTES
    for im in images:
        assert im.counts.shape == (ny, nx) and im.counts.dtype == np.uint32
        assert im.lower_u <= im.upper_u and math.isfinite(im.centre_u)
        raw = np.frombuffer(blob, "<u4", count=nx * ny, offset=offset + 16)
        np.testing.assert_array_equal(im.counts.ravel(), raw)
        offset += 16 + 4 * nx * ny
    _count(target, "complete / read")


def _bif6_property(target: str, n: int):
    @_fuzz(n)
    @given(blob=bif6_bytes())
    def check(blob: bytes) -> None:
        with tempfile.TemporaryDirectory() as d:
            path = Path(d) / "f.bif6"
            path.write_bytes(blob)
            _check_bif6(path, blob, target)

    return check


def test_fuzz_bif6_reader() -> None:
    _bif6_property("BIF6 reader", DEFAULT_CASES)()


@pytest.mark.slow
def test_fuzz_bif6_reader_long() -> None:
    _bif6_property("BIF6 reader (slow)", SLOW_CASES)()


# ------------------------------------------------------------------------------ sidecars
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False)
    | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4)
    | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=12,
)
_GOOD = image_sidecar("f.bif6", 4, 3, 100).to_dict()


@st.composite
def sidecar_bytes(draw) -> bytes:
    kind = draw(st.sampled_from(["random", "value", "drop", "extra", "text", "raw", "deep"]))
    if kind == "random":
        return draw(st.binary(max_size=400))
    d = dict(_GOOD)
    if kind == "value":
        for _ in range(draw(st.integers(1, 3))):
            d[draw(st.sampled_from(sorted(d)))] = draw(json_values)
    elif kind == "drop":
        d.pop(draw(st.sampled_from(sorted(d))))
    elif kind == "extra":
        d["extra"] = draw(json_values)
    text = json.dumps(d, ensure_ascii=draw(st.booleans()))
    if kind == "raw":  # a literal JSON cannot express through dumps
        key = draw(st.sampled_from(sorted(d)))
        literal = draw(st.sampled_from(["NaN", "Infinity", "-Infinity", "1e999", "9" * 5000,
                                        "true", "false", '"\\ud800"', '"\\u0000"', "-0"]))
        d[key] = "@@"
        text = json.dumps(d).replace('"@@"', literal)
    if kind == "deep":
        depth = draw(st.integers(10, 3000))
        d["extra"] = "@@"
        text = json.dumps(d).replace('"@@"', "[" * depth + "]" * depth)
    blob = text.encode("utf-8", "surrogatepass")
    if kind == "text":
        cut = draw(st.integers(0, len(blob)))
        blob = blob[:cut] + draw(st.binary(max_size=8)) + blob[cut:]
    return blob


def _check_sidecar(path: Path, target: str) -> None:
    try:
        sc = read_sidecar(path)
    except ExportFormatError as exc:
        assert str(path) in str(exc)
        _count(target, "rejected")
        return
    # a read is a sound sidecar: typed values, re-serialisable, re-validated
    assert isinstance(sc, SimsSidecar)
    for name in ("shots_per_pixel", "scans", "pulses_per_pixel"):
        assert type(getattr(sc, name)) is int
    for name in ("primary_energy_keV", "primary_current_pA", "dose_ions_per_cm2",
                 "stage_temperature_K"):
        v = getattr(sc, name)
        assert not isinstance(v, bool) and math.isfinite(v)
    assert all(type(v) is int for v in sc.pixels)
    json.dumps(sc.to_dict(), allow_nan=False).encode("utf-8")
    _count(target, "ok")


def _sidecar_property(target: str, n: int):
    @_fuzz(n)
    @given(blob=sidecar_bytes())
    def check(blob: bytes) -> None:
        with tempfile.TemporaryDirectory() as d:
            path = Path(d) / "f.json"
            path.write_bytes(blob)
            _check_sidecar(path, target)

    return check


def test_fuzz_sidecar_reader() -> None:
    _sidecar_property("sidecar reader", DEFAULT_CASES)()


@pytest.mark.slow
def test_fuzz_sidecar_reader_long() -> None:
    _sidecar_property("sidecar reader (slow)", SLOW_CASES)()


# ------------------------------------------------------------------------------ watcher
@st.composite
def export_folders(draw) -> dict:
    nx, ny = 4, 3
    bif6 = draw(st.one_of(bif6_bytes(), st.just(b"")))
    if draw(st.booleans()):
        bif6 = _valid_bif6(2, nx, ny, draw(st.integers(0, 9)))
    sidecar = draw(st.sampled_from(["good", "good", "fuzzed", "none", "none", "directory",
                                    "outside_link"]))
    return {"bif6": bif6, "sidecar": sidecar,
            "sidecar_bytes": draw(sidecar_bytes()) if sidecar == "fuzzed" else b"",
            "bif6_link": draw(st.sampled_from([False, False, False, True]))}


def _make_folder(root: Path, case: dict) -> Path:
    folder = root / "export"
    folder.mkdir(exist_ok=True)
    outside = root / "outside"
    outside.mkdir()
    if case["bif6_link"]:
        (outside / "f.bif6").write_bytes(case["bif6"])
        (folder / "f.bif6").symlink_to(outside / "f.bif6")
    else:
        (folder / "f.bif6").write_bytes(case["bif6"])
    sc = sidecar_path_for(folder / "f.bif6")
    if case["sidecar"] == "good":
        good = dict(image_sidecar("f.bif6", 4, 3, 100).to_dict())
        sc.write_text(json.dumps(good))
    elif case["sidecar"] == "fuzzed":
        sc.write_bytes(case["sidecar_bytes"])
    elif case["sidecar"] == "directory":
        sc.mkdir()
    elif case["sidecar"] == "outside_link":
        (outside / "f.json").write_text(json.dumps(image_sidecar("f.bif6", 4, 3).to_dict()))
        sc.symlink_to(outside / "f.json")
    return folder


def _check_watcher(case: dict, target: str, optional: bool) -> None:
    root = Path(tempfile.mkdtemp())
    try:
        (root / "export").mkdir()
        watcher = ExportWatcher(root / "export", sidecar_grace_s=0.01, poll_s=0.01,
                                sidecar_optional=optional)
        folder = _make_folder(root, case)  # after the watcher: all of it is new
        time.sleep(0.02)  # past the grace period
        reducer = ExportReducer(n_bands=2)
        from lltolab.formats import MetadataFallback  # noqa: PLC0415
        fallback = MetadataFallback((50.0, 20.0), 100) if optional else None
        outcome = None
        for _ in range(3):
            try:
                ready = watcher.poll("image")
            except ExportFormatError:
                outcome = "rejected by watcher"
                # set aside: moved out of the folder, with the reason next to it
                assert not os.path.lexists(folder / "f.bif6")
                assert (folder / "rejected" / "f.bif6.reason.txt").is_file()
                assert watcher.poll("image") is None  # the folder is not blocked
                break
            if ready is None:
                outcome = outcome or "not ready"
                time.sleep(0.02)
                continue
            try:
                export = read_export(ready.bif6_path,
                                     fallback=fallback if ready.sidecar_path is None else None)
                red = reducer.reduce(export, "image")
            except ExportFormatError as exc:
                watcher.set_aside(ready.bif6_path, exc.defect)
                outcome = "rejected by reader"
            else:
                assert red.arrays["c_fraction"].shape == export.images[0].counts.shape
                assert case["sidecar"] != "outside_link" and not case["bif6_link"]
                outcome = f"acquired ({export.metadata.source})"
            break
        _count(target, outcome or "not ready")
    finally:
        shutil.rmtree(root, ignore_errors=True)


def _watcher_property(target: str, n: int):
    @_fuzz(n)
    @given(case=export_folders(), optional=st.booleans())
    def check(case: dict, optional: bool) -> None:
        _check_watcher(case, target, optional)

    return check


def test_fuzz_export_watcher() -> None:
    _watcher_property("export watcher + reader", 200)()


@pytest.mark.slow
def test_fuzz_export_watcher_long() -> None:
    _watcher_property("export watcher + reader (slow)", 2000)()


@st.composite
def chunked_writes(draw) -> tuple[bytes, list[int], bool]:
    """A valid export's BIF6, the offsets at which its writer pauses, sidecar first or last."""
    blob = _valid_bif6(2, draw(st.integers(1, 6)), draw(st.integers(1, 4)),
                       draw(st.integers(0, 9)))
    cuts = sorted(set(draw(st.lists(st.integers(0, len(blob) - 1), max_size=5))))
    return blob, cuts, draw(st.booleans())


def _check_concurrent_writer(case: tuple[bytes, list[int], bool], target: str) -> None:
    """A writer thread publishes the export in pieces while the watcher waits: the watcher
    must offer it only once it is complete, and the read must equal what was written."""
    blob, cuts, sidecar_first = case
    n, nx, ny = struct.unpack("<HHH", blob[6:12])
    root = Path(tempfile.mkdtemp())
    try:
        folder = root / "export"
        folder.mkdir()
        watcher = ExportWatcher(folder, sidecar_grace_s=2.0, poll_s=0.002)
        sc = sidecar_path_for(folder / "f.bif6")
        sidecar = json.dumps(image_sidecar("f.bif6", nx, ny, 100).to_dict())
        done = threading.Event()

        def write() -> None:
            if sidecar_first:
                sc.write_text(sidecar)
            with (folder / "f.bif6").open("wb") as fh:
                last = 0
                for cut in [*cuts, len(blob)]:
                    fh.write(blob[last:cut])
                    fh.flush()
                    last = cut
                    time.sleep(0.005)
            if not sidecar_first:
                sc.write_text(sidecar)
            done.set()

        writer = threading.Thread(target=write, daemon=True)
        writer.start()
        ready = watcher.wait("image", deadline=time.monotonic() + 10)
        assert ready is not None
        assert ready.identity[1] == len(blob)  # offered only once complete ...
        assert ready.sidecar_path is not None  # ... and with its sidecar
        images = read_export(ready.bif6_path).images
        assert len(images) == n and images[0].counts.shape == (ny, nx)
        writer.join(5)
        assert done.is_set()
        _count(target, "acquired when complete")
    finally:
        shutil.rmtree(root, ignore_errors=True)


def test_fuzz_watcher_against_a_concurrent_writer() -> None:
    @_fuzz(40)
    @given(case=chunked_writes())
    def check(case) -> None:
        _check_concurrent_writer(case, "watcher vs concurrent writer")

    check()


@pytest.mark.slow
def test_fuzz_watcher_against_a_concurrent_writer_long() -> None:
    @_fuzz(400)
    @given(case=chunked_writes())
    def check(case) -> None:
        _check_concurrent_writer(case, "watcher vs concurrent writer (slow)")

    check()


def test_a_bif6_fifo_never_hangs_the_readers(tmp_path: Path) -> None:
    """A named pipe where a file is expected is refused, not opened (opening would block)."""
    watcher = ExportWatcher(tmp_path, sidecar_grace_s=0.01)
    fifo = tmp_path / "p.bif6"
    os.mkfifo(fifo)
    sc = tmp_path / "p.json"
    os.mkfifo(sc)
    result: list[str] = []

    def run() -> None:
        for call in (lambda: read_bif6(fifo), lambda: bif6_status(fifo),
                     lambda: read_sidecar(sc)):
            try:
                call()
            except ExportFormatError as exc:
                result.append(exc.defect)

    t = threading.Thread(target=run, daemon=True)
    t.start()
    t.join(5)
    assert not t.is_alive(), "a reader blocked on a FIFO"
    assert len(result) == 3 and all("not a regular file" in r for r in result), result
    assert watcher.poll("image") is None  # a FIFO is no export


def test_reader_fixture_images_are_plain() -> None:
    """The valid BIF6 the fuzzers start from reads back as written (guards the generator)."""
    with tempfile.TemporaryDirectory() as d:
        p = Path(d) / "v.bif6"
        p.write_bytes(_valid_bif6(2, 4, 3, 1))
        imgs = read_bif6(p)
        assert [im.peak_id for im in imgs] == [1, 2]
        assert isinstance(imgs[0], Bif6Image) and imgs[0].counts.shape == (3, 4)
