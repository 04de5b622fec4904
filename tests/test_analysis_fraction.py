"""Isotope fraction (eq. 1): dead-time correction, counting errors, saturation, bad input."""

from __future__ import annotations

import numpy as np
import pytest

from lltolab.analysis import dead_time_correct, isotope_fraction


def test_dead_time_correction_inverts_the_pulse_statistics() -> None:
    n = 1000
    mu = np.array([0.0, 0.01, 0.3, 1.0, 3.0])
    recorded = n * (1 - np.exp(-mu))  # expected recorded counts
    corrected, var, sat = dead_time_correct(recorded, n)
    np.testing.assert_allclose(corrected, n * mu, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(var, recorded / np.exp(-mu), rtol=1e-12)
    assert not sat.any()


def test_fraction_and_sigma_without_correction_are_poisson() -> None:
    fr = isotope_fraction([300, 0], [700, 50])
    assert fr.c[0] == pytest.approx(0.3)
    # sigma² = (b² a + a² b)/(a+b)^4 = a b / (a+b)^3
    assert fr.sigma[0] == pytest.approx(np.sqrt(300 * 700 / 1000**3))
    assert fr.c[1] == 0.0 and fr.sigma[1] > 0  # zero counts: variance floored at 1 count


def test_counting_error_matches_binomial_scatter() -> None:
    rng = np.random.default_rng(4)
    n, mu, c_true = 2048, 0.6, 0.3
    i6 = rng.binomial(n, -np.expm1(-mu * c_true), 20000)
    i7 = rng.binomial(n, -np.expm1(-mu * (1 - c_true)), 20000)
    fr = isotope_fraction(i6, i7, n)
    assert abs(np.mean(fr.c) - c_true) < 5 * np.std(fr.c) / np.sqrt(fr.c.size)
    pull = (fr.c - c_true) / fr.sigma
    assert np.std(pull) == pytest.approx(1.0, abs=0.03)
    # without the dead-time correction the fraction is biased (7Li saturates more)
    raw = isotope_fraction(i6, i7)
    assert np.mean(raw.c) - c_true > 0.02


def test_saturated_pixels_are_nan_and_flagged() -> None:
    fr = isotope_fraction([[10, 100], [0, 5]], [[100, 3], [0, 100]], n_pulses=100)
    assert fr.saturated.tolist() == [[True, True], [False, True]]
    assert np.isnan(fr.c[0, 0]) and np.isnan(fr.sigma[0, 1])
    assert np.isnan(fr.c[1, 0]) and not fr.saturated[1, 0]  # no counts: NaN, not saturated
    assert fr.valid.sum() == 0


@pytest.mark.parametrize(
    ("i6", "i7", "n", "match"),
    [
        ([], [], None, "empty"),
        ([-1], [2], None, ">= 0"),
        ([np.nan], [2], None, "NaN"),
        ([1, 2], [1], None, "differ in shape"),
        ([101], [2], 100, "exceed n_pulses"),
        ([1], [2], 0, "n_pulses"),
        ([1], [2], "many", "n_pulses"),
    ],
)
def test_bad_counts_raise(i6, i7, n, match) -> None:
    with pytest.raises(ValueError, match=match):
        isotope_fraction(i6, i7, n)
