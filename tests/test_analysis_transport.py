"""Series model, Nernst–Einstein, Haven ratio, Arrhenius fits and the consistency report."""

from __future__ import annotations

import math

import numpy as np
import pytest

from lltolab.analysis import (
    PAPER_VALUES,
    consistency_report,
    fit_arrhenius,
    haven_ratio,
    nernst_einstein_d,
    series_bound_dgb_over_delta,
    series_deff,
)
from lltolab.diffusion import K_B_EV


def test_series_model_eq6_and_eq5() -> None:
    # paper: D_bulk 2.6e-8, D_gb/δ 1.5e-6, l 16 µm -> 2.2e-9 cm²/s
    assert series_deff(2.6e-8, 1.5e-6, 16e-4) == pytest.approx(1 / (1 / 2.6e-8 + 1 / 2.4e-9))
    assert series_deff(2.6e-8, 1.5e-6, 16e-4) == pytest.approx(2.2e-9, rel=0.01)
    # eq. 5 with δ: (l + δ)/D_eff = l/D_bulk + δ/D_gb
    size, d, k, delta = 16e-4, 2.6e-8, 1.5e-6, 5e-8
    eq5 = series_deff(d, k, size, delta_cm=delta)
    assert (size + delta) / eq5 == pytest.approx(size / d + delta / (k * delta))
    assert eq5 == pytest.approx(series_deff(d, k, size), rel=1e-4)  # l ≫ δ
    # limits: fast boundaries -> D_bulk; array input
    assert series_deff(2.6e-8, 1e3, 16e-4) == pytest.approx(2.6e-8, rel=1e-6)
    out = series_deff(np.array([2.6e-8, 2.6e-8]), np.array([1.5e-6, 2.8e-6]), 16e-4)
    assert out.shape == (2,) and out[1] > out[0]
    assert series_bound_dgb_over_delta(series_deff(d, k, size), d, size) == pytest.approx(k)
    assert math.isnan(series_bound_dgb_over_delta(3e-8, 2.6e-8, size))
    with pytest.raises(ValueError, match="grain_size_cm"):
        series_deff(2.6e-8, 1.5e-6, 0.0)
    with pytest.raises(ValueError, match="dgb_over_delta"):
        series_deff(2.6e-8, np.nan, 16e-4)


def test_nernst_einstein_and_haven() -> None:
    # D = σ k T / (n q²): 1e-3 S/cm, 300.15 K, 5e21 cm⁻³
    d = nernst_einstein_d(1e-3, 300.15)
    assert d == pytest.approx(1e-3 * 1.380649e-23 * 300.15 / (5e21 * 1.602176634e-19**2))
    assert d == pytest.approx(3.23e-8, rel=2e-3)
    assert nernst_einstein_d(1e-3, 300.15, 1e22) == pytest.approx(d / 2)
    assert haven_ratio(2.6e-8, d) == pytest.approx(0.805, rel=2e-3)
    np.testing.assert_allclose(haven_ratio([1.0, 2.0], [2.0, 2.0]), [0.5, 1.0])
    with pytest.raises(ValueError, match="temperature_K"):
        nernst_einstein_d(1e-3, -5.0)
    with pytest.raises(ValueError, match="sigma_S_per_cm"):
        nernst_einstein_d(0.0, 300.0)
    with pytest.raises(ValueError, match="d_sigma"):
        haven_ratio(1.0, 0.0)


def test_arrhenius_exact_and_noisy() -> None:
    t = np.array([295.15, 333.15, 373.15, 423.15])
    d = 0.048 * np.exp(-0.43 / (K_B_EV * t))
    fit = fit_arrhenius(t, d)
    assert fit.ea_eV == pytest.approx(0.43, abs=1e-10)
    assert fit.prefactor == pytest.approx(0.048, rel=1e-9)
    assert fit.predict(400.0) == pytest.approx(0.048 * math.exp(-0.43 / (K_B_EV * 400.0)))
    rng = np.random.default_rng(2)
    pulls = []
    for _ in range(200):
        noisy = d * np.exp(rng.normal(0, 0.1, t.size))
        f = fit_arrhenius(t, noisy, sigma=0.1 * noisy)
        pulls.append((f.ea_eV - 0.43) / f.ea_stderr_eV)
    assert 0.8 < np.std(pulls) < 1.25  # stderr calibrated
    two = fit_arrhenius(t[:2], d[:2])
    assert two.ea_eV == pytest.approx(0.43) and math.isnan(two.ea_stderr_eV)
    assert fit.to_dict()["ea_eV"] == fit.ea_eV


@pytest.mark.parametrize(
    ("t", "d", "match"),
    [
        ([300.0], [1e-8], "cannot determine"),
        ([300.0, 300.0], [1e-8, 2e-8], "distinct"),
        ([300.0, 400.0], [1e-8, -1e-8], "d must be > 0"),
        ([300.0, -400.0], [1e-8, 1e-8], "temperature_K"),
        ([300.0, 400.0], [1e-8, np.nan], "finite"),
        ([300.0, 400.0], [1e-8], "values"),
        ([], [], "empty"),
    ],
)
def test_arrhenius_bad_input(t, d, match) -> None:
    with pytest.raises(ValueError, match=match):
        fit_arrhenius(t, d)


def test_consistency_report_flags_the_papers_known_misprints() -> None:
    rep = consistency_report()
    by = {c.name: c for c in rep.checks}
    flagged = {c.name for c in rep.flagged}
    # docs/science.md §3: series paragraph (2.8e-6 vs its 2.3e-9 result)
    assert "series-model D*_eff (eq. 6) from its own inputs" in flagged
    assert "1.5e-06" in by["series-model D*_eff (eq. 6) from its own inputs"].note
    assert "D*_gb/δ of the series paragraph vs imaging" in flagged
    # abstract 1.4e-13 vs body 7.6e-14 / 9.2e-14
    assert "abstract D*_gb vs the body's imaging values" in flagged
    # 200 °C D_eff 6.6e-6 above the series bound ~1.3e-6
    bound = [c for c in rep.flagged if c.kind == "upper_bound"]
    assert len(bound) == 1 and bound[0].recomputed == pytest.approx(1.3e-6, rel=0.05)
    assert "6.6e-07" in bound[0].note
    # n printed as 5.0e-21: an impossible Haven ratio
    haven = by["bulk Haven ratio D*_bulk / D_σ (Nernst–Einstein)"]
    assert haven.flagged and "5e+21" in haven.note
    # and what agrees is not flagged
    for name in ("imaging D*_gb/δ vs eq. 3 on Fig. 3e", "mean D*_gb within the reported range",
                 "fig3d: D*_gb = δ D*_bulk (dC/dy)/ΔC (eq. 3)",
                 "Arrhenius (l/δ)D*_gb at the exchange T vs imaging D*_gb/δ"):
        assert not by[name].flagged, name
    text = rep.format()
    assert text.count("!!") == len(rep.flagged)
    assert rep.to_dict()["n_flagged"] == len(rep.flagged)


def test_consistency_report_on_corrected_values() -> None:
    fixed = dict(PAPER_VALUES)
    fixed.update(n_li_per_cm3=5.0e21, deff_anneal_cm2_s=6.6e-7, d_bulk_alt_cm2_s=2.6e-8,
                 series_dgb_over_delta_cm_s=1.5e-6, dgb_abstract_cm2_s=8.4e-14,
                 deff_erfc_cm2_s=2.2e-9, deff_storage_cm2_s=2.2e-9,
                 fig3e_dgb_cm2_s=7.15e-14)
    rep = consistency_report(fixed)
    assert rep.ok, rep.format()
    # missing keys skip checks instead of failing
    few = consistency_report({"d_bulk_cm2_s": 2.6e-8, "fig3e_gradient_per_cm": 1.1,
                              "fig3e_step": 0.02, "dgb_over_delta_imaging_cm_s": 3e-6})
    assert [c.name for c in few.checks] == ["imaging D*_gb/δ vs eq. 3 on Fig. 3e"]
    assert few.checks[0].flagged
    with pytest.raises(ValueError, match="finite"):
        consistency_report({"d_bulk_cm2_s": float("nan")})
    with pytest.raises(ValueError, match="rtol"):
        consistency_report(rtol=0.0)
