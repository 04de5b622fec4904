"""Each shared formula has one home: every layer's entry point gives the same numbers."""

from __future__ import annotations

import math

import numpy as np
import pytest

from lltolab import analysis, formats, formulas
from lltolab.diffusion import BoundaryConductance, BulkDiffusivity
from lltolab.plans import anneal_duration_for_length, quench_guard
from lltolab.vocabulary import BOUNDARY_WIDTH_M


def test_dead_time_correction_is_one_function() -> None:
    counts = np.array([0, 1, 50, 99, 100])
    corrected, variance, saturated = formulas.dead_time_correct(counts, 100)
    f_corr, f_sat = formats.dead_time_correct(counts, 100)
    a_corr, a_var, a_sat = analysis.dead_time_correct(counts, 100)
    np.testing.assert_array_equal(f_corr, corrected)
    np.testing.assert_array_equal(a_corr, corrected)
    np.testing.assert_array_equal(a_var, variance)
    assert f_sat.tolist() == a_sat.tolist() == saturated.tolist() == [0, 0, 0, 0, 1]
    assert corrected[2] == pytest.approx(-100 * math.log(0.5))


def test_stored_fraction_map_equals_the_analysis_fraction() -> None:
    rng = np.random.default_rng(1)
    i6 = rng.binomial(256, 0.3, (20, 30))
    i7 = rng.binomial(256, 0.7, (20, 30))
    i7[0, 0] = 256  # saturated
    i6[1, 1] = i7[1, 1] = 0  # no counts
    c_map, sat = formats.isotope_fraction_map(i6, i7, 256)
    frac = analysis.isotope_fraction(i6, i7, 256)
    np.testing.assert_allclose(c_map, frac.c, rtol=0, atol=0, equal_nan=True)
    np.testing.assert_array_equal(sat, frac.saturated)
    assert math.isnan(c_map[0, 0]) and math.isnan(c_map[1, 1])


def test_bad_counts_are_refused_naming_the_limit() -> None:
    with pytest.raises(ValueError, match="exceed n_pulses=100"):
        formulas.dead_time_correct([101], 100)
    with pytest.raises(ValueError, match="exceed the 100 pulses"):
        formats.dead_time_correct(np.array([101]), 100)
    with pytest.raises(ValueError, match="n_pulses"):
        formulas.dead_time_correct([1], 0)
    with pytest.raises(ValueError, match=">= 0 counts"):
        formulas.dead_time_correct([-1], 10)


def test_series_model_is_unit_agnostic_and_shared() -> None:
    d_b, k, ll = 2.6e-12, 1.5e-8, 16e-6  # m²/s, m/s, m
    si = formulas.series_deff(d_b, k, ll)
    cgs = analysis.series_deff(d_b * 1e4, k * 1e2, ll * 1e2)
    assert cgs == pytest.approx(si * 1e4, rel=1e-12)
    assert si == pytest.approx(1 / (1 / d_b + 1 / (ll * k)))
    with_delta = formulas.series_deff(d_b, k, ll, 0.5e-9)
    assert with_delta == pytest.approx((ll + 0.5e-9) / (ll / d_b + 1 / k))
    # the plans' anneal planner inverts the same model
    t_k, length = 473.15, 0.5e-3
    bulk, boundary = BulkDiffusivity.paper_default(), BoundaryConductance.paper_default()
    d_eff = formulas.series_deff(float(bulk(t_k)), float(boundary(t_k)), 22e-6)
    assert anneal_duration_for_length(t_k, length) == pytest.approx(length**2 / d_eff)


def test_quench_guard_uses_the_diffusion_length() -> None:
    assert formulas.diffusion_length(2.0, 4.0) == pytest.approx(4.0)
    with pytest.raises(ValueError, match="time_s"):
        formulas.diffusion_length(1.0, -1.0)
    t_k, acq = 295.15, 3600.0
    guard = quench_guard(t_k, acq, 1.0)
    d_b = float(BulkDiffusivity.paper_default()(t_k))
    d_gb = float(BoundaryConductance.paper_default()(t_k)) * BOUNDARY_WIDTH_M
    assert guard["bulk_um"] == pytest.approx(formulas.diffusion_length(d_b, acq) * 1e6)
    assert guard["boundary_um"] == pytest.approx(formulas.diffusion_length(d_gb, acq) * 1e6)


def test_stored_reduction_passes_empty_arrays_through() -> None:
    c, sat = formats.isotope_fraction_map(np.zeros((0,), int), np.zeros((0,), int), 10)
    assert c.shape == sat.shape == (0,)
    corr, sat = formats.dead_time_correct(np.zeros((2, 0), int), 10)
    assert corr.shape == sat.shape == (2, 0)
    with pytest.raises(ValueError, match="integer"):
        formats.dead_time_correct(np.array([1]), 10.5)
