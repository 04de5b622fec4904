"""Simulated SurfaceLab: geometry, counting statistics, exports on the lab clock, micrograph.

``ErfcSample`` (from :mod:`lltolab.testing`) is an analytic pattern source with the
VirtualSample interface (erfc profile along x with steps at a grain-boundary grid); it is
injected physics, not a mock of the simulator. One test runs against the real
``lltolab.diffusion.VirtualSample``.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from lltolab.formats import isotope_fraction_map, read_export
from lltolab.sim_devices import (
    SimsSettings,
    SurfaceLabSimulator,
    VirtualClock,
    resample_bilinear,
)
from lltolab.testing import ErfcSample


def _sim(tmp_path: Path, sample=None, seed: int = 0, **settings) -> SurfaceLabSimulator:
    return SurfaceLabSimulator(
        sample or ErfcSample(), VirtualClock(time_scale=1.0), tmp_path / "export",
        settings=SimsSettings(**settings), seed=seed,
    )


def test_bilinear_resampling_is_exact_for_linear_fields() -> None:
    yy, xx = np.mgrid[0:30, 0:50].astype(float)
    src = 0.5 + 0.01 * xx - 0.003 * yy  # value at cell centre (x + 0.5, y + 0.5) µm
    out = resample_bilinear(src, (0.0, 0.0), 1.0, (5.0, 3.0), (0.7, 0.9), (20, 40))
    xc = 5.0 + (np.arange(40) + 0.5) * 0.7
    yc = 3.0 + (np.arange(20) + 0.5) * 0.9
    expect = 0.5 + 0.01 * (xc[None, :] - 0.5) - 0.003 * (yc[:, None] - 0.5)
    np.testing.assert_allclose(out, expect, atol=1e-12)


def test_raster_outside_window_is_refused(tmp_path: Path) -> None:
    sim = _sim(tmp_path, field_of_view_um=(600.0, 200.0))
    with pytest.raises(ValueError, match="leaves the sample window"):
        sim.acquire_image()


def test_counting_statistics_of_a_uniform_image(tmp_path: Path) -> None:
    """Every pixel draws Binomial(N, 1 - exp(-mu)): check mean and variance over 10^5 pixels."""
    c_true = 0.3
    sim = _sim(tmp_path, ErfcSample(uniform=c_true), seed=11)
    path = sim.acquire_image()
    exp = read_export(path)
    n = exp.sidecar.pulses_per_pixel
    y = sim.settings.li_ions_per_pulse
    npix = 512 * 206
    for mass, mu in ((6.015, y * c_true), (7.016, y * (1 - c_true))):
        counts = exp.select(mass).counts.astype(float)
        p = -math.expm1(-mu)
        mean, var = n * p, n * p * (1 - p)
        assert abs(counts.mean() - mean) < 5 * math.sqrt(var / npix)
        # the sample variance of 1e5 draws is within ~0.5 % (1 sigma) of the true one
        assert counts.var() == pytest.approx(var, rel=0.03)
        # Poisson would give var = mean: the binomial (dead-time) variance is smaller
        assert counts.var() < 0.9 * mean if p > 0.1 else True


def test_per_pixel_mean_and_variance_over_repeated_acquisitions(tmp_path: Path) -> None:
    sim = _sim(tmp_path, seed=5, pixels=(32, 16), field_of_view_um=(480.0, 16.0),
               origin_um=(0.0, 0.0), shots_per_pixel=4, scans=64)
    c = sim.true_c_under_raster(sim.sample.field(0.0))
    assert c.min() < 0.5 < c.max()  # a real gradient across the raster
    reps = np.stack([sim.render_images(c)[0].counts for _ in range(300)]).astype(float)
    n = sim.settings.pulses_per_pixel
    p = -np.expm1(-sim.settings.li_ions_per_pulse * c)
    z = (reps.mean(0) - n * p) / np.sqrt(n * p * (1 - p) / reps.shape[0])
    assert abs(z.mean()) < 0.2 and 0.85 < z.std() < 1.15
    ratio = reps.var(0, ddof=1) / (n * p * (1 - p))
    assert 0.93 < ratio.mean() < 1.07


def test_7li_saturation_biases_raw_ratios(tmp_path: Path) -> None:
    sim = _sim(tmp_path, ErfcSample(uniform=0.0759), seed=2)
    exp = read_export(sim.acquire_image())
    i6, i7 = exp.select(6.015).counts, exp.select(7.016).counts
    n = exp.sidecar.pulses_per_pixel
    assert i7.mean() / n > 0.35  # 7Li records on a large share of pulses
    raw = i6.sum() / (i6.sum() + i7.sum())
    corrected, _ = isotope_fraction_map(i6.sum(), i7.sum(), n * i6.size)
    assert raw > 1.15 * 0.0759
    assert float(corrected) == pytest.approx(0.0759, rel=0.01)


def test_image_acquisition_on_the_lab_clock(tmp_path: Path) -> None:
    sample = ErfcSample(temperature_K=160.0)
    sim = _sim(tmp_path, sample, duration_s=5 * 3600.0, background_per_pulse=1e-4,
               matrix_peak=True)
    t0 = sim.clock.now()
    path = sim.acquire_image()
    t1 = sim.clock.now()
    assert t1 - t0 == pytest.approx(5 * 3600.0, abs=1.0)
    assert sample.queries[0] == pytest.approx(t0, abs=1.0)
    assert sample.queries[-1] == pytest.approx(t1, abs=1.0)
    assert path.parent == tmp_path / "export" and path.suffix == ".bif6"
    assert sorted(p.name for p in path.parent.iterdir()) == [path.name, path.stem + ".json"]
    exp = read_export(path)
    sc = exp.sidecar
    assert sc.kind == "image" and sc.pixels == (512, 206)
    assert sc.field_of_view_um == (500.0, 200.0)
    assert sc.stage_temperature_K == 160.0
    assert sc.duration_s == pytest.approx(5 * 3600.0, abs=1.0)
    assert sc.pulses_per_pixel == 2048
    # 0.5 pA for 5 h on 500 x 200 µm
    assert sc.dose_ions_per_cm2 == pytest.approx(0.5e-12 * 18000 / 1.602e-19 / 1e-3, rel=1e-3)
    assert [im.peak_id for im in exp.images] == [1, 2, 3]
    assert exp.select(47.948).counts.mean() > 0
    # default raster starts at the liquid level: its first column sits near C = cs
    c = sim.last_true_c
    assert c.shape == (206, 512)
    assert c[:, 0].max() > 0.9 and c[:, -1].max() < 0.3
    # the next export gets a new name, nothing is overwritten
    assert sim.acquire_image() != path


def test_line_profile_export(tmp_path: Path) -> None:
    sample = ErfcSample()
    sim = _sim(tmp_path, sample, seed=3, profile_duration_per_point_s=100.0)
    x_mm = [0.0, 0.05, 0.1, 0.2, 0.4, 1.0, 3.0]
    t0 = sim.clock.now()
    path = sim.acquire_line_profile(x_mm)
    assert sim.clock.now() - t0 == pytest.approx(700.0, abs=1.0)
    exp = read_export(path)
    assert exp.sidecar.kind == "line_profile"
    assert exp.sidecar.positions_mm == tuple(x_mm)
    assert exp.sidecar.pixels == (7, 1)
    c, sat = isotope_fraction_map(exp.select(6.015).counts, exp.select(7.016).counts,
                                  exp.sidecar.pulses_per_pixel)
    assert not sat.any()
    np.testing.assert_allclose(c[0], sample.line(np.asarray(x_mm) * 1e-3), atol=0.003)
    with pytest.raises(ValueError, match="finite"):
        sim.acquire_line_profile([0.0, float("nan")])


def test_request_hook_dispatches(tmp_path: Path) -> None:
    sim = _sim(tmp_path, duration_s=0.0)
    sim.request("image", None)
    sim.request("line_profile", (0.0, 1.0))
    kinds = sorted(json.loads(p.read_text())["kind"] for p in (tmp_path / "export").glob("*.json"))
    assert kinds == ["image", "line_profile"]
    with pytest.raises(ValueError, match="unknown acquisition kind"):
        sim.request("movie", None)
    with pytest.raises(ValueError, match="needs positions_mm"):
        sim.request("line_profile", None)


def test_micrograph_of_the_imaged_area(tmp_path: Path) -> None:
    sample = ErfcSample()
    sim = _sim(tmp_path, sample, pixels=(500, 200))  # 1 µm pixels: aligned with the sample
    npy = sim.write_micrograph()
    img = np.load(npy)
    assert img.dtype == bool and img.shape == (200, 500)
    ox, oy = sim.raster_origin_um()
    i0, j0 = round(ox + 10), round(oy)  # sample window starts at x = -10 µm
    np.testing.assert_array_equal(img, sample.boundary_map[j0:j0 + 200, i0:i0 + 500])
    np.testing.assert_array_equal(sim.micrograph(), img)  # the same map, nothing written
    png = npy.with_suffix(".png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and b"IHDR" in png[:16]
    meta = json.loads(npy.with_suffix(".json").read_text())
    assert meta["kind"] == "optical_micrograph" and meta["pixels"] == [500, 200]
    assert not list((tmp_path / "export").glob(".*"))  # no temporary files left


@pytest.mark.timeout(60)
def test_against_the_real_virtual_sample(tmp_path: Path) -> None:
    from lltolab.diffusion import VirtualSample

    sample = VirtualSample.paper_default(seed=1, window_m=(-10e-6, 130e-6, 0.0, 60e-6))
    sample.set_environment(0.0, temperature_K=295.15, immersed=True)
    sample.set_environment(59 * 3600.0, temperature_K=163.15, immersed=False)
    clock = VirtualClock(start_s=59 * 3600.0)
    sim = SurfaceLabSimulator(
        sample, clock, tmp_path / "export", seed=4,
        settings=SimsSettings(field_of_view_um=(100.0, 40.0), pixels=(128, 51)),
    )
    exp = read_export(sim.acquire_image())
    assert exp.sidecar.stage_temperature_K == pytest.approx(163.15)
    c, _ = isotope_fraction_map(exp.select(6.015).counts, exp.select(7.016).counts,
                                exp.sidecar.pulses_per_pixel)
    truth = sim.last_true_c
    assert truth[:, :5].mean() > 0.5 and truth[:, -5:].mean() < truth[:, :5].mean()
    # column means of the measured map follow the true ones
    np.testing.assert_allclose(np.nanmean(c, 0), truth.mean(0), atol=0.01)
