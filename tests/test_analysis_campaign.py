"""Arrhenius energy of the boundaries from a synthetic 4-temperature campaign on the twin, and
the boundary analysis on a SIMS-like raster (512 × 206 over 500 × 200 µm, resampled)."""

from __future__ import annotations

import numpy as np
import pytest

from lltolab.analysis import analyze_boundaries, analyze_campaign, fit_arrhenius, isotope_fraction
from lltolab.diffusion import VirtualSample, celsius_to_kelvin

T22 = celsius_to_kelvin(22)
COLD = celsius_to_kelvin(-110)
EXCHANGE_S = 59 * 3600.0


def _count(rng, c: np.ndarray, n: int = 20000):
    return isotope_fraction(rng.binomial(n, -np.expm1(-0.6 * c)),
                            rng.binomial(n, -np.expm1(-0.6 * (1 - c))), n)


def _campaign(seed: int, temps_c=(22, 60, 100, 140)):
    """Exchange 59 h at 22 °C, image; then for each further T anneal (2 h × D_bulk(22)/D_bulk(T),
    ≫ the grains' relaxation time), quench to -110 °C and image. Returns (T, median k, ref)."""
    sample = VirtualSample.paper_default(seed)
    sample.set_environment(0.0, temperature_K=T22, immersed=True)
    t = EXCHANGE_S
    sample.set_environment(t, temperature_K=T22, immersed=False)
    rng = np.random.default_rng(seed + 100)
    d22 = sample.truth(T22)["d_bulk_m2_s"]
    out = []
    for tc in temps_c:
        temp = celsius_to_kelvin(tc)
        truth = sample.truth(temp)
        if tc != 22:
            sample.set_environment(t, temperature_K=temp, immersed=False)
            t += 2 * 3600 * d22 / truth["d_bulk_m2_s"]
            sample.set_environment(t, temperature_K=COLD, immersed=False)
        frac = _count(rng, sample.field(t))
        res = analyze_boundaries(frac.c, pixel_cm=1e-4, d_bulk=truth["d_bulk_m2_s"] * 1e4,
                                 boundary_map=sample.boundary_map, sigma_map=frac.sigma)
        ref = truth["k_gb_m_s"] * 100 * float(np.median(sample.micro.spread))
        out.append((temp, res.median, res.median_stderr, ref))
    return out


@pytest.mark.slow
@pytest.mark.timeout(180)
def test_boundary_activation_energy_from_a_four_temperature_campaign() -> None:
    rows = _campaign(0)
    temps = np.array([r[0] for r in rows])
    k = np.array([r[1] for r in rows])
    for temp, med, _, ref in rows:
        assert med == pytest.approx(ref, rel=0.25), temp
    fit = fit_arrhenius(temps, k)
    assert fit.ea_eV == pytest.approx(0.43, abs=0.03)
    # the same through the campaign API: (l/δ)D_gb = l k, prefactor ≈ 0.048 × median spread
    out = analyze_campaign([{"temperature_K": t, "dgb_over_delta_cm_s": m,
                             "dgb_over_delta_cm_s_stderr": e} for t, m, e, _ in rows])
    assert out["arrhenius"]["(l/δ)D_gb"]["ea_eV"] == pytest.approx(0.43, abs=0.03)


@pytest.mark.slow
@pytest.mark.timeout(600)
@pytest.mark.parametrize("seed", [1, 2])
def test_boundary_activation_energy_other_microstructures(seed: int) -> None:
    rows = _campaign(seed)
    fit = fit_arrhenius([r[0] for r in rows], [r[1] for r in rows])
    assert fit.ea_eV == pytest.approx(0.43, abs=0.03)


@pytest.mark.slow
@pytest.mark.timeout(600)
@pytest.mark.parametrize("pulses", [2048, 20000])
def test_sims_raster_route_with_micrograph(pulses: int) -> None:
    """The simulated SurfaceLab's raster (bilinear resampling, non-square pixels) and its
    micrograph mapping, as the image runs will deliver them."""
    from lltolab.sim_devices import resample_bilinear

    sample = VirtualSample.paper_default(0)
    sample.set_environment(0.0, temperature_K=T22, immersed=True)
    sample.set_environment(EXCHANGE_S, temperature_K=T22, immersed=False)
    c = sample.field(EXCHANGE_S)
    x0, _, y0, _ = sample.window_m
    pitch = (500 / 512, 200 / 206)
    origin = (0.0, 5.0)
    raster = resample_bilinear(c, (x0 * 1e6, y0 * 1e6), 1.0, origin, pitch, (206, 512))
    ys = origin[1] + (np.arange(206) + 0.5) * pitch[1] - y0 * 1e6
    xs = origin[0] + (np.arange(512) + 0.5) * pitch[0] - x0 * 1e6
    gb = sample.boundary_map
    micrograph = gb[np.clip(ys.astype(int), 0, gb.shape[0] - 1)][
        :, np.clip(xs.astype(int), 0, gb.shape[1] - 1)]
    frac = _count(np.random.default_rng(5), raster, pulses)
    truth = sample.truth(T22)
    res = analyze_boundaries(frac.c, pixel_cm=(pitch[0] * 1e-4, pitch[1] * 1e-4),
                             d_bulk=truth["d_bulk_m2_s"] * 1e4, boundary_map=micrograph,
                             sigma_map=frac.sigma)
    ref = truth["k_gb_m_s"] * 100 * float(np.median(sample.micro.spread))
    assert len(res.selected) > 150
    if pulses >= 20000:  # ~1e4 counts per pixel: the accuracy the issue asks for
        assert res.median == pytest.approx(ref, rel=0.25)
        assert "warning" not in res.summary()
    else:  # ~1e3 counts (the simulator's default dose): per-boundary gradients are noise
        assert "noise-dominated" in res.summary()["warning"]
