"""SurfaceLabExport (ophyd v1) against real export files and the simulated SurfaceLab."""

from __future__ import annotations

import json
import math
import struct
import threading
import time
from pathlib import Path
from urllib.parse import urlparse

import h5py
import numpy as np
import pytest
from bluesky import RunEngine
from bluesky.plans import count
from ophyd.status import wait as status_wait

from lltolab.comm import InstrumentError, InstrumentTimeout
from lltolab.devices import SurfaceLabExport
from lltolab.formats import (
    Bif6Image,
    ExportFormatError,
    dead_time_correct,
    isotope_fraction_map,
    read_bif6,
    sidecar_path_for,
    write_sidecar,
)
from lltolab.sim_devices import SimsSettings, SurfaceLabSimulator, VirtualClock
from lltolab.testing import ErfcSample, image_sidecar, write_image_export

pytestmark = [pytest.mark.timeout(60), pytest.mark.simulator(
    "surfacelab", seed=21,
    settings=SimsSettings(field_of_view_um=(250.0, 100.0), pixels=(256, 103)))]


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    d = tmp_path / "export"
    d.mkdir()
    return d


def _device(folder: Path, **kw) -> SurfaceLabExport:
    kw.setdefault("timeout_s", 5.0)
    kw.setdefault("poll_s", 0.02)
    kw.setdefault("sidecar_grace_s", 0.3)
    return SurfaceLabExport(folder, name="sims", **kw)


def _wait(status, timeout: float = 10.0) -> None:
    status_wait(status, timeout=timeout)


# --------------------------------------------------------------------- conversion
def test_dead_time_correction_recovers_true_c_where_raw_counts_are_biased(tmp_path) -> None:
    sim = SurfaceLabSimulator(
        ErfcSample(d_m2_s=5e-14), VirtualClock(), tmp_path / "x", seed=9,
        settings=SimsSettings(shots_per_pixel=64, scans=128, li_ions_per_pulse=1.2),
    )
    c_true = sim.true_c_under_raster(sim.sample.field(0.0))
    i6, i7 = sim.count(c_true, sim.settings.pulses_per_pixel)
    raw, _ = isotope_fraction_map(i6, i7)
    corr, sat = isotope_fraction_map(i6, i7, sim.settings.pulses_per_pixel)
    assert not sat.any()
    lo, hi = c_true < 0.2, c_true > 0.8
    assert lo.sum() > 1000 and hi.sum() > 1000
    # raw ratios are biased towards 1/2 by the saturated majority isotope ...
    assert np.mean(raw[lo] - c_true[lo]) > 0.03
    assert np.mean(raw[hi] - c_true[hi]) < -0.01
    # ... the Poisson correction removes the bias to well below the counting noise
    assert abs(np.mean(corr[lo] - c_true[lo])) < 0.002
    assert abs(np.mean(corr[hi] - c_true[hi])) < 0.002


def test_dead_time_correction_values_and_saturation() -> None:
    corr, sat = dead_time_correct(np.array([0, 50, 99, 100]), 100)
    assert corr[0] == 0 and corr[1] == pytest.approx(-100 * math.log(0.5))
    assert corr[2] == pytest.approx(-100 * math.log(0.01))
    assert math.isnan(corr[3]) and sat.tolist() == [False, False, False, True]
    c, s = isotope_fraction_map(np.array([100, 10]), np.array([10, 10]), 100)
    assert math.isnan(c[0]) and s[0] and c[1] == pytest.approx(0.5)
    with pytest.raises(ValueError, match="exceed the 100 pulses"):
        dead_time_correct(np.array([101]), 100)
    with pytest.raises(ValueError, match="n_pulses"):
        dead_time_correct(np.array([1]), 0)


# --------------------------------------------------------------------- trigger / read
def test_trigger_reads_a_new_export(folder: Path) -> None:
    write_image_export(folder, "old.bif6")  # present at construction: not new
    det = _device(folder, n_bands=4)
    path = write_image_export(folder, "e1.bif6", seed=1)
    _wait(det.trigger())
    imgs = read_bif6(path)
    c, _ = isotope_fraction_map(imgs[0].counts, imgs[1].counts, 100)
    r = det.read()
    assert r["sims_source_file"]["value"] == str(path)
    assert r["sims_mean_c"]["value"] == pytest.approx(np.nanmean(c))
    assert r["sims_li6_total"]["value"] == int(imgs[0].counts.sum())
    assert r["sims_li7_total"]["value"] == int(imgs[1].counts.sum())
    for k in range(4):
        assert r[f"sims_c_row_band_{k}"]["value"] == pytest.approx(np.nanmean(c[2 * k:2 * k + 2]))
        assert r[f"sims_c_column_band_{k}"]["value"] == pytest.approx(
            np.nanmean(c[:, 4 * k:4 * k + 4]))
    # inline values are scalars or strings only (SQL-table friendly)
    assert all(np.ndim(v["value"]) == 0 for v in r.values())
    assert r["sims_stage_temperature_K"]["value"] == 163.0
    d = det.describe()
    external = {k for k, v in d.items() if v.get("external") == "STREAM:"}
    assert external == {"sims_li6_counts", "sims_li7_counts", "sims_c_fraction"}
    assert set(d) - external == set(r)
    assert d["sims_li6_counts"]["shape"] == [8, 16]
    cfg = det.read_configuration()
    assert cfg["sims_pulses_per_pixel"]["value"] == 100
    assert cfg["sims_field_of_view_x_um"]["value"] == 50.0
    assert cfg["sims_primary_species"]["value"] == "Bi+"
    assert cfg["sims_mode"]["value"] == "image"
    assert set(cfg) == set(det.describe_configuration())
    # the asset holds exactly the data
    with h5py.File(det.last_asset) as f:
        np.testing.assert_array_equal(f["li6_counts"][0], imgs[0].counts)
        np.testing.assert_array_equal(f["c_fraction"][0], c)
        assert f.attrs["bif6_path"] == str(path)
    # the same export is not picked up twice
    det.timeout_s = 0.3
    with pytest.raises(InstrumentTimeout, match="no new complete image export"):
        _wait(det.trigger())


def test_partially_written_file_is_not_picked_up_until_complete(folder: Path) -> None:
    det = _device(folder)
    full = write_image_export(folder.parent, "e2.bif6", seed=2)
    blob = full.read_bytes()
    target = folder / "e2.bif6"
    write_sidecar(sidecar_path_for(target), image_sidecar("e2.bif6", 16, 8))
    status = det.trigger()
    with target.open("wb") as fh:
        for cut in (5, 12, 300, len(blob) - 1):
            fh.write(blob[fh.tell():cut])
            fh.flush()
            time.sleep(0.15)
            assert not status.done, f"picked up at {cut} of {len(blob)} bytes"
        fh.write(blob[fh.tell():])
    _wait(status)
    assert status.success
    assert det.read()["sims_source_file"]["value"] == str(target)


def test_complete_file_waits_for_its_sidecar(folder: Path) -> None:
    det = _device(folder, sidecar_grace_s=5.0)
    path = write_image_export(folder, "e3.bif6", sidecar=False)
    status = det.trigger()
    time.sleep(0.2)
    assert not status.done
    write_sidecar(sidecar_path_for(path), image_sidecar("e3.bif6", 16, 8))
    _wait(status)
    assert status.success


def _malformed_cases(folder: Path) -> dict[str, tuple]:
    def wrong_magic():
        p = write_image_export(folder, "m.bif6")
        p.write_bytes(b"\x00\x00BIF5" + p.read_bytes()[6:])

    def too_long():
        p = write_image_export(folder, "m.bif6")
        p.write_bytes(p.read_bytes() + b"\x00" * 8)

    def absurd():
        p = write_image_export(folder, "m.bif6")
        b = bytearray(p.read_bytes())
        b[8:10] = (0).to_bytes(2, "little")
        p.write_bytes(bytes(b))

    def missing_masses():
        img = Bif6Image(5, 23.0, 22.9, 23.1, np.ones((8, 16), np.uint32))
        img7 = Bif6Image(2, 7.016, 6.95, 7.08, np.ones((8, 16), np.uint32))
        write_image_export(folder, "m.bif6", images=[img, img7])

    def no_sidecar():
        write_image_export(folder, "m.bif6", sidecar=False)

    def contradictory():
        p = write_image_export(folder, "m.bif6", sidecar=False)
        write_sidecar(sidecar_path_for(p), image_sidecar("m.bif6", 16, 9))

    def bad_json():
        p = write_image_export(folder, "m.bif6", sidecar=False)
        sidecar_path_for(p).write_text('{"format": "lltolab.sims-sidecar", "kind": "im')

    def too_many_counts():
        write_image_export(folder, "m.bif6", n=50)

    return {
        "wrong magic": (wrong_magic, "wrong magic"),
        "sizes": (too_long, "sizes inconsistent with header"),
        "absurd": (absurd, "absurd dimensions"),
        "masses": (missing_masses, "missing masses"),
        "sidecar missing": (no_sidecar, "sidecar missing"),
        "contradictory": (contradictory, "contradict the BIF6 header"),
        "bad json": (bad_json, "not valid JSON"),
        "counts": (too_many_counts, "exceed the sidecar's 50 pulses"),
    }


@pytest.mark.parametrize(
    "case", ["wrong magic", "sizes", "absurd", "masses", "sidecar missing", "contradictory",
             "bad json", "counts"]
)
def test_malformed_exports_fail_the_trigger_and_touch_nothing(folder: Path, case) -> None:
    det = _device(folder)
    good = write_image_export(folder, "good.bif6", seed=4)
    _wait(det.trigger())
    before = det.read()
    assets_before = sorted(det.asset_dir.iterdir())
    list(det.collect_asset_docs())
    make, defect = _malformed_cases(folder)[case]
    if case in ("sidecar missing", "bad json"):
        make()
        time.sleep(0.35)  # older than the sidecar grace
    else:
        make()
    status = det.trigger()
    with pytest.raises(ExportFormatError, match=defect) as info:
        _wait(status)
    assert "m." in str(info.value)  # names the file
    after = det.read()
    for key, reading in before.items():
        np.testing.assert_array_equal(after[key]["value"], reading["value"])
    assert sorted(det.asset_dir.iterdir()) == assets_before
    assert list(det.collect_asset_docs()) == []
    assert good.exists()
    # the bad export is not retried; a following good one is read
    write_image_export(folder, "next.bif6", seed=5)
    _wait(det.trigger())
    assert det.read()["sims_source_file"]["value"].endswith("next.bif6")


def test_truncated_export_times_out_naming_it(folder: Path) -> None:
    det = _device(folder, timeout_s=0.4)
    p = write_image_export(folder, "t.bif6")
    p.write_bytes(p.read_bytes()[:-10])
    with pytest.raises(InstrumentTimeout, match=r"t.bif6: incomplete"):
        _wait(det.trigger())


def test_peak_ids_and_windows_select_images(folder: Path) -> None:
    rng = np.random.default_rng(0)
    a = rng.integers(0, 30, (8, 16)).astype(np.uint32)
    b = rng.integers(0, 30, (8, 16)).astype(np.uint32)
    imgs = [Bif6Image(11, 7.016, 6.95, 7.08, b), Bif6Image(12, 6.015, 5.95, 6.08, a)]
    det = _device(folder, li6_peak_id=12, li7_window_u=(6.9, 7.1))
    write_image_export(folder, "p.bif6", images=imgs)
    _wait(det.trigger())
    assert det.read()["sims_li6_total"]["value"] == int(a.sum())
    det2 = _device(folder, li6_peak_id=11)
    write_image_export(folder, "q.bif6", images=imgs)
    with pytest.raises(ExportFormatError, match="does not contain 6.015"):
        _wait(det2.trigger())


def test_stop_aborts_a_pending_trigger(folder: Path) -> None:
    det = _device(folder, timeout_s=30.0)
    status = det.trigger()
    time.sleep(0.1)
    det.stop()
    with pytest.raises(InstrumentError, match="stopped"):
        _wait(status, timeout=5)


def test_constructor_validation(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="not an existing folder"):
        SurfaceLabExport(tmp_path / "nope", name="s")
    with pytest.raises(ValueError, match="timeout_s"):
        SurfaceLabExport(tmp_path, name="s", timeout_s=0)
    with pytest.raises(ValueError, match="li6_window_u"):
        SurfaceLabExport(tmp_path, name="s", li6_window_u=(6.1, 5.9))
    det = SurfaceLabExport(tmp_path, name="s")
    with pytest.raises(ValueError, match="mode must be one of"):
        det.mode.put("movie")


# --------------------------------------------------------------------- with the simulator
def test_line_profile_mode(sim: SurfaceLabSimulator) -> None:
    det = _device(sim.export_folder, request=sim.request)
    det.mode.put("line_profile")
    x = [0.0, 0.1, 0.3, 1.0]
    det.positions_mm.put(np.array(x))
    _wait(det.trigger())
    r = det.read()
    d = det.describe()
    external = {k for k, v in d.items() if v.get("external") == "STREAM:"}
    assert external == {"sims_profile_x_mm", "sims_profile_c", "sims_profile_li6_counts",
                        "sims_profile_li7_counts"}
    assert set(r) == set(d) - external
    assert r["sims_n_points"]["value"] == 4
    prof = det.last_profile
    np.testing.assert_array_equal(prof.x_mm, x)
    np.testing.assert_allclose(prof.c, sim.sample.line(np.array(x) * 1e-3), atol=0.003)
    assert prof.li7_counts.shape == (4,)
    docs = list(det.collect_asset_docs())
    data = _resolve([(n, dict(doc, descriptor="")) for n, doc in docs])
    np.testing.assert_array_equal(data["sims_profile_x_mm"][0], x)
    np.testing.assert_array_equal(data["sims_profile_c"][0], prof.c)
    assert d["sims_profile_c"]["shape"] == [4]
    # an image export is not taken for a profile, and vice versa
    sim.acquire_image()
    det.request = None
    det.timeout_s = 0.3
    with pytest.raises(InstrumentTimeout):
        _wait(det.trigger())
    det.mode.put("image")
    _wait(det.trigger())
    assert det.read()["sims_source_file"]["value"] == str(sim.last_export)
    # positions that differ from the requested ones are an error
    det2 = _device(sim.export_folder)
    det2.mode.put("line_profile")
    det2.positions_mm.put(np.array([0.0, 0.2]))
    sim.acquire_line_profile([0.0, 0.3])
    with pytest.raises(ExportFormatError, match="contradict the requested"):
        _wait(det2.trigger())


def _resolve(docs: list[tuple[str, dict]]) -> dict[str, list[np.ndarray]]:
    """Resolve StreamResource/StreamDatum documents to arrays (per data key, per event)."""
    resources = {d["uid"]: d for n, d in docs if n == "stream_resource"}
    out: dict[str, list[np.ndarray]] = {}
    for name, d in docs:
        if name != "stream_datum":
            continue
        sres = resources[d["stream_resource"]]
        assert sres["mimetype"] == "application/x-hdf5"
        path = urlparse(sres["uri"]).path
        with h5py.File(path, "r") as f:
            ds = f[sres["parameters"]["dataset"]]
            block = ds[d["indices"]["start"]:d["indices"]["stop"]]
        out.setdefault(sres["data_key"], []).extend(block)
    return out


@pytest.mark.timeout(120)
def test_run_engine_count_stores_images_that_read_back_identically(
    sim: SurfaceLabSimulator,
) -> None:
    det = _device(sim.export_folder, request=sim.request)
    docs: list[tuple[str, dict]] = []
    RE = RunEngine({}, call_returns_result=True)
    RE.subscribe(lambda name, doc: docs.append((name, doc)))
    t0 = sim.clock.now()
    result = RE(count([det], num=2))
    assert result.exit_status == "success"
    assert sim.clock.now() - t0 == pytest.approx(2 * 5 * 3600.0, abs=5.0)
    names = [n for n, _ in docs]
    assert names.count("stream_resource") == 6 and names.count("stream_datum") == 6
    assert names.count("event") == 2
    desc = next(d for n, d in docs if n == "descriptor")
    for key in ("sims_li6_counts", "sims_li7_counts", "sims_c_fraction"):
        assert desc["data_keys"][key]["external"] == "STREAM:"
        assert desc["data_keys"][key]["shape"] == [103, 256]
    assert desc["configuration"]["sims"]["data"]["sims_pulses_per_pixel"] == 2048
    datums = [d for n, d in docs if n == "stream_datum"]
    assert {d["descriptor"] for d in datums} == {desc["uid"]}
    assert sorted(d["seq_nums"]["start"] for d in datums) == [1, 1, 1, 2, 2, 2]
    events = [d for n, d in docs if n == "event"]
    data = _resolve(docs)
    for k, ev in enumerate(events):
        bif6 = Path(ev["data"]["sims_source_file"])
        imgs = read_bif6(bif6)
        i6 = next(im for im in imgs if im.peak_id == 1).counts
        i7 = next(im for im in imgs if im.peak_id == 2).counts
        np.testing.assert_array_equal(data["sims_li6_counts"][k], i6)
        np.testing.assert_array_equal(data["sims_li7_counts"][k], i7)
        c, _ = isotope_fraction_map(i6, i7, 2048)
        np.testing.assert_array_equal(data["sims_c_fraction"][k], c)
        assert ev["data"]["sims_mean_c"] == pytest.approx(np.nanmean(c))
        # the measured map follows the sample's true field
        assert np.nanmean(np.abs(c - _true(sim, k))) < 0.05
    assert events[0]["data"]["sims_source_file"] != events[1]["data"]["sims_source_file"]


def _true(sim: SurfaceLabSimulator, k: int) -> np.ndarray:
    return sim.last_true_c  # ErfcSample's field does not change with time


def test_trigger_runs_in_the_background(folder: Path) -> None:
    det = _device(folder)
    status = det.trigger()
    assert not status.done
    threading.Timer(0.2, lambda: write_image_export(folder, "late.bif6")).start()
    _wait(status)
    assert det.read()["sims_source_file"]["value"].endswith("late.bif6")


@pytest.mark.timeout(120)
def test_images_read_back_identically_from_a_tiled_catalog(tmp_path: Path) -> None:
    """The real VirtualSample, exchanged 59 h and quenched, imaged twice through the simulator;
    the documents go through bluesky-tiled-plugins' TiledWriter into an embedded tiled catalog
    (SQLite): the external images read back from the catalog equal the BIF6 data."""
    from bluesky_tiled_plugins import TiledWriter
    from tiled.catalog import from_uri
    from tiled.client import Context, from_context
    from tiled.server.app import build_app

    from lltolab.diffusion import VirtualSample

    sample = VirtualSample.paper_default(seed=2, window_m=(-10e-6, 260e-6, 0.0, 110e-6))
    sample.set_environment(0.0, temperature_K=295.15, immersed=True)
    sample.set_environment(59 * 3600.0, temperature_K=163.15, immersed=False)
    sim = SurfaceLabSimulator(
        sample, VirtualClock(start_s=59 * 3600.0), tmp_path / "export", seed=21,
        settings=SimsSettings(field_of_view_um=(250.0, 100.0), pixels=(256, 103)),
    )

    store = tmp_path / "catalog"
    (store / "data").mkdir(parents=True)
    adapter = from_uri(
        f"sqlite:///{store}/catalog.db",
        writable_storage=[str(store / "data"), f"sqlite:///{store}/tables.db"],
        readable_storage=[str(sim.export_folder)],
        init_if_not_exists=True,
    )
    with Context.from_app(build_app(adapter)) as ctx:
        client = from_context(ctx)
        det = _device(sim.export_folder, request=sim.request)
        RE = RunEngine({})
        RE.subscribe(TiledWriter(client))
        (uid,) = RE(count([det], num=2))
        stream = client[uid]["primary"]
        li6 = stream["sims_li6_counts"].read()
        li7 = stream["sims_li7_counts"].read()
        c = stream["sims_c_fraction"].read()
        sources = stream["sims_source_file"].read()
        assert li6.shape == (2, 103, 256) and li6.dtype == np.uint32
        for k in range(2):
            imgs = read_bif6(str(sources[k]))
            np.testing.assert_array_equal(li6[k], imgs[0].counts)
            np.testing.assert_array_equal(li7[k], imgs[1].counts)
            expect, _ = isotope_fraction_map(imgs[0].counts, imgs[1].counts, 2048)
            np.testing.assert_array_equal(c[k], expect)
        # the measured map shows the exchanged edge and follows the true field
        assert np.nanmean(c[1][:, :10]) > 0.5 > np.nanmean(c[1][:, -10:])
        assert abs(np.nanmean(c[1]) - sim.last_true_c.mean()) < 0.005
        assert stream["sims_stage_temperature_K"].read()[0] == pytest.approx(163.15)


def test_request_hook_failures_surface_and_hangs_time_out(folder: Path) -> None:
    def broken(kind, positions):
        raise RuntimeError("operator cancelled")

    det = _device(folder, request=broken)
    with pytest.raises(InstrumentError, match="request failed: operator cancelled"):
        _wait(det.trigger())
    release = threading.Event()
    det = _device(folder, timeout_s=0.3, request=lambda kind, positions: release.wait(10))
    with pytest.raises(InstrumentTimeout):
        _wait(det.trigger())
    release.set()
    calls = []
    det = _device(folder, request=lambda kind, positions: calls.append((kind, positions)))
    det.mode.put("line_profile")
    det.positions_mm.put(np.array([0.0, 2.0]))
    det.timeout_s = 0.2
    with pytest.raises(InstrumentTimeout):
        _wait(det.trigger())
    assert calls == [("line_profile", (0.0, 2.0))]


def test_image_and_line_profile_in_one_run_on_separate_streams(
    sim: SurfaceLabSimulator,
) -> None:
    import bluesky.plan_stubs as bps

    det = _device(sim.export_folder, request=sim.request)
    docs: list[tuple[str, dict]] = []
    RE = RunEngine({})
    RE.subscribe(lambda name, doc: docs.append((name, doc)))

    def plan():
        yield from bps.open_run()
        yield from bps.trigger_and_read([det], name="image")
        yield from bps.mv(det.mode, "line_profile", det.positions_mm, np.array([0.0, 0.5, 2.0]))
        yield from bps.trigger_and_read([det], name="profile")
        yield from bps.close_run()

    RE(plan())
    descs = {d["name"]: d for n, d in docs if n == "descriptor"}
    assert set(descs) == {"image", "profile"}
    assert "sims_c_fraction" in descs["image"]["data_keys"]
    assert descs["profile"]["data_keys"]["sims_profile_c"]["shape"] == [3]
    data = _resolve(docs)
    np.testing.assert_array_equal(data["sims_profile_x_mm"][0], [0.0, 0.5, 2.0])
    np.testing.assert_array_equal(data["sims_profile_c"][0], det.last_profile.c)
    assert data["sims_c_fraction"][0].shape == (103, 256)


# --------------------------------------------------------------------- plain SurfaceLab exports
def test_plain_bif6_without_sidecar_is_acquired_with_configured_metadata(folder: Path) -> None:
    det = _device(folder, field_of_view_um=(500.0, 200.0), n_pulses=100)
    path = write_image_export(folder, "plain.bif6", seed=7, sidecar=False)
    status = det.trigger()
    time.sleep(0.1)
    assert not status.done  # a sidecar may still come within the grace period
    _wait(status)
    imgs = read_bif6(path)
    c, _ = isotope_fraction_map(imgs[0].counts, imgs[1].counts, 100)
    r = det.read()
    assert r["sims_source_file"]["value"] == str(path)
    assert r["sims_mean_c"]["value"] == pytest.approx(np.nanmean(c))
    assert math.isnan(r["sims_stage_temperature_K"]["value"])  # unknown without a sidecar
    cfg = det.read_configuration()
    assert cfg["sims_metadata_source"]["value"] == "configuration"
    assert cfg["sims_pulses_per_pixel"]["value"] == 100
    assert cfg["sims_field_of_view_x_um"]["value"] == 500.0
    assert cfg["sims_pixels_x"]["value"] == 16 and cfg["sims_pixels_y"]["value"] == 8
    with h5py.File(det.last_asset) as f:
        np.testing.assert_array_equal(f["c_fraction"][0], c)
        assert f.attrs["metadata_source"] == "configuration"
    # a sidecar, when there is one, wins over the configuration
    write_image_export(folder, "with_sidecar.bif6", seed=8)
    _wait(det.trigger())
    cfg = det.read_configuration()
    assert cfg["sims_metadata_source"]["value"] == "sidecar"
    assert cfg["sims_field_of_view_x_um"]["value"] == 50.0
    assert det.read()["sims_stage_temperature_K"]["value"] == 163.0


def test_exports_without_sidecars_need_no_grace_period(folder: Path) -> None:
    det = _device(folder, sidecar_pattern=None, sidecar_grace_s=60.0,
                  field_of_view_um=(500.0, 200.0), n_pulses=100)
    write_image_export(folder, "plain.bif6", sidecar=False)
    t0 = time.monotonic()
    _wait(det.trigger())
    assert time.monotonic() - t0 < 5.0
    # counts above the configured pulses are a contradiction, named as such
    write_image_export(folder, "hot.bif6", sidecar=False, images=[
        Bif6Image(1, 6.015, 5.95, 6.08, np.full((8, 16), 150, np.uint32)),
        Bif6Image(2, 7.016, 6.95, 7.08, np.full((8, 16), 10, np.uint32))])
    with pytest.raises(ExportFormatError, match="exceed the configured 100 pulses"):
        _wait(det.trigger())


def test_plain_line_profile_takes_the_requested_positions(folder: Path) -> None:
    det = _device(folder, sidecar_pattern=None, field_of_view_um=(50.0, 50.0), n_pulses=100)
    det.mode.put("line_profile")
    det.positions_mm.put(np.array([0.0, 0.5, 1.0]))
    rng = np.random.default_rng(3)
    imgs = [Bif6Image(1, 6.015, 5.95, 6.08, rng.integers(0, 30, (1, 3)).astype(np.uint32)),
            Bif6Image(2, 7.016, 6.95, 7.08, rng.integers(20, 90, (1, 3)).astype(np.uint32))]
    write_image_export(folder, "prof.bif6", images=imgs, sidecar=False)
    _wait(det.trigger())
    np.testing.assert_array_equal(det.last_profile.x_mm, [0.0, 0.5, 1.0])
    assert det.read()["sims_n_points"]["value"] == 3
    det.positions_mm.put(np.array([0.0, 0.5]))
    write_image_export(folder, "prof2.bif6", images=imgs, sidecar=False)
    with pytest.raises(ExportFormatError, match="needs the requested positions_mm"):
        _wait(det.trigger())


def test_configured_metadata_is_validated(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="go together"):
        SurfaceLabExport(tmp_path, name="s", n_pulses=100)
    with pytest.raises(ValueError, match="n_pulses must be an integer"):
        SurfaceLabExport(tmp_path, name="s", field_of_view_um=(5.0, 5.0), n_pulses=True)
    with pytest.raises(ValueError, match="field_of_view_um"):
        SurfaceLabExport(tmp_path, name="s", field_of_view_um=(5.0, math.nan), n_pulses=10)
    with pytest.raises(ValueError, match="sidecar_optional"):
        SurfaceLabExport(tmp_path, name="s", sidecar_pattern=None)
    with pytest.raises(ValueError, match="timeout_s"):
        SurfaceLabExport(tmp_path, name="s", timeout_s=True)


# --------------------------------------------------------------------- a blocked export folder
def _bad_sidecar_cases() -> dict[str, tuple]:
    """case -> (writes the sidecar of BIF6 ``p``, defect expected in the error)."""
    def text(content: str | bytes):
        def make(p: Path) -> None:
            sc = sidecar_path_for(p)
            if isinstance(content, bytes):
                sc.write_bytes(content)
            else:
                sc.write_text(content, encoding="utf-8")
        return make

    good = image_sidecar("m.bif6", 16, 8).to_dict()

    def with_value(key: str, raw: str):
        d = dict(good)
        d[key] = "@@"
        return text(json.dumps(d).replace('"@@"', raw))

    def directory(p: Path) -> None:
        sidecar_path_for(p).mkdir()

    return {
        "non_utf8_byte": (text(json.dumps(good).encode().replace(b"Bi+", b"Bi\xff")),
                          "not UTF-8 text"),
        "deep_nesting": (with_value("extra", '{"a":' * 5000 + "1" + "}" * 5000),
                         "nested deeper than"),
        "moderate_nesting": (with_value("extra", "[" * 40 + "]" * 40), "nested deeper than"),
        "huge_integer": (with_value("scans", "9" * 5000), "digits"),
        "huge_float": (with_value("stage_temperature_K", "1e999"), "m.json: .*float range"),
        "nan": (with_value("stage_temperature_K", "NaN"), "NaN is not a number"),
        "directory": (directory, "is a directory"),
        "boolean_temperature": (with_value("stage_temperature_K", "true"),
                                "stage_temperature_K must be in"),
        "boolean_pixels": (with_value("pixels", "[true, 8]"), "pixels must be two integers"),
        "string_array": (with_value("pixels", '"16x8"'), "pixels must be a JSON array"),
        "lone_surrogate": (with_value("primary_species", '"\\ud800"'), "unpaired surrogate"),
    }


@pytest.mark.parametrize("case", list(_bad_sidecar_cases()))
def test_bad_sidecar_is_set_aside_and_the_next_export_acquired(folder: Path, case) -> None:
    make, defect = _bad_sidecar_cases()[case]
    det = _device(folder)
    p = write_image_export(folder, "m.bif6", sidecar=False)
    make(p)
    status = det.trigger()
    with pytest.raises(ExportFormatError, match=defect) as info:
        _wait(status)
    assert "m." in str(info.value) and "set aside" in str(info.value)
    rejected = folder / "rejected"
    assert (rejected / "m.bif6").is_file()
    assert (rejected / "m.json").exists()
    reason = (rejected / "m.bif6.reason.txt").read_text()
    assert "m.bif6" in reason
    assert not p.exists() and not sidecar_path_for(p).exists()
    # the folder is not blocked: the next good export is acquired
    write_image_export(folder, "next.bif6", seed=5)
    _wait(det.trigger())
    assert det.read()["sims_source_file"]["value"].endswith("next.bif6")


def test_sidecar_caught_mid_write_waits_out_the_grace_period(folder: Path) -> None:
    det = _device(folder, sidecar_grace_s=3.0)
    p = write_image_export(folder, "w.bif6", sidecar=False)
    blob = json.dumps(image_sidecar("w.bif6", 16, 8, primary_species="Bi₃⁺").to_dict(),
                      ensure_ascii=False)
    data = blob.encode()
    cut = data.index("₃".encode()) + 1  # in the middle of a multi-byte UTF-8 character
    sc = sidecar_path_for(p)
    sc.write_bytes(data[:cut])
    status = det.trigger()
    time.sleep(0.5)
    assert not status.done  # half a sidecar is not yet a defect
    sc.write_bytes(data)
    _wait(status)
    assert status.success
    assert det.read_configuration()["sims_primary_species"]["value"] == "Bi₃⁺"
    # a sidecar that stays broken past the grace period is a defect
    det = _device(folder, sidecar_grace_s=0.5)
    p = write_image_export(folder, "x.bif6", sidecar=False)
    sidecar_path_for(p).write_bytes(data[:cut])
    t0 = time.monotonic()
    with pytest.raises(ExportFormatError, match="not UTF-8"):
        _wait(det.trigger())
    assert time.monotonic() - t0 >= 0.4


def test_symlinks_leading_outside_the_folder_are_not_followed(folder: Path) -> None:
    outside = folder.parent / "outside"
    outside.mkdir()
    target = write_image_export(outside, "secret.bif6", seed=3)
    det = _device(folder)
    (folder / "link.bif6").symlink_to(target)
    with pytest.raises(ExportFormatError, match="symbolic link leading outside"):
        _wait(det.trigger())
    assert (folder / "rejected" / "link.bif6").is_symlink()
    assert target.exists()  # the link was moved, not what it points to
    # a sidecar link leading outside
    p = write_image_export(folder, "s.bif6", sidecar=False)
    sidecar_path_for(p).symlink_to(sidecar_path_for(target))
    with pytest.raises(ExportFormatError, match="sidecar is a symbolic link leading outside"):
        _wait(det.trigger())
    # links inside the folder are fine
    inner = write_image_export(folder / "rejected", "inner.bif6", seed=4, sidecar=False)
    (folder / "in.bif6").symlink_to(inner)
    write_sidecar(folder / "in.json", image_sidecar("in.bif6", 16, 8))
    _wait(det.trigger())
    assert det.read()["sims_source_file"]["value"].endswith("in.bif6")


def test_bif6_header_claiming_gigabytes_is_rejected_unread(folder: Path) -> None:
    from lltolab.formats import BIF6_MAGIC

    det = _device(folder)
    # 100 images of 4096 x 4096: 6.7 GB claimed by a 12-byte file
    (folder / "huge.bif6").write_bytes(BIF6_MAGIC + struct.pack("<HHH", 100, 4096, 4096))
    with pytest.raises(ExportFormatError, match="absurd dimensions.*bytes"):
        _wait(det.trigger())
    assert (folder / "rejected" / "huge.bif6").exists()
    write_image_export(folder, "next.bif6")
    _wait(det.trigger())


def test_a_folder_that_cannot_take_the_rejected_export_still_moves_on(folder: Path) -> None:
    det = _device(folder, rejected_dir=None)
    p = write_image_export(folder, "m.bif6", sidecar=False)
    sidecar_path_for(p).write_bytes(b"\xff")
    with pytest.raises(ExportFormatError, match="not UTF-8"):
        _wait(det.trigger())
    assert p.exists()  # left in place, remembered as seen
    write_image_export(folder, "next.bif6", seed=5)
    _wait(det.trigger())
    assert det.read()["sims_source_file"]["value"].endswith("next.bif6")


# --------------------------------------------------------------------- stop / pause
def test_stop_and_pause_end_the_acquisition_in_flight(folder: Path) -> None:
    release = threading.Event()
    requested: list[str] = []

    def request(kind, positions):
        requested.append(kind)
        release.wait(10)
        write_image_export(folder, f"r{len(requested)}.bif6", seed=len(requested))

    det = _device(folder, request=request)
    first = det.trigger()
    time.sleep(0.1)
    det.pause()  # what the RunEngine does on suspend: the status ends, without failing
    assert first.done and first.success
    second = det.trigger()  # the repeat waits for the interrupted request to return
    time.sleep(0.2)
    assert len(requested) == 1 and not second.done
    release.set()
    _wait(second)
    assert second.success and len(requested) == 2
    # the interrupted acquisition's export is not this trigger's image
    assert det.read()["sims_source_file"]["value"].endswith("r2.bif6")
    assert det.get_index() == 1
    docs = list(det.collect_asset_docs())
    assert [n for n, _ in docs].count("stream_resource") == 3
    assert len(list(det.asset_dir.iterdir())) == 1  # no asset of the interrupted acquisition
