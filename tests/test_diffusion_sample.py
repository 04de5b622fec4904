"""VirtualSample, microstructure statistics, the multiscale strip and input validation."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.special import erfc

from lltolab.diffusion import (
    Arrhenius,
    BoundaryConductance,
    BulkDiffusivity,
    Conductivities,
    FVNetwork,
    Integrator,
    Microstructure,
    StepControl,
    VirtualSample,
    celsius_to_kelvin,
)

T22 = celsius_to_kelvin(22)
T200 = celsius_to_kelvin(200)


def _small_sample(**kw) -> VirtualSample:
    micro = Microstructure.polycrystal(60e-6, 40e-6, 1e-6, seed=3, origin_m=(-5e-6, 0.0),
                                       spread_sigma=math.log(2))
    return VirtualSample(micro, line_extent_m=(-0.2e-3, 0.8e-3), coarse_dx_m=5e-6, **kw)


def _apply(sample: VirtualSample, changes: list[tuple[float, float, bool]]) -> None:
    for t, temp, imm in changes:
        sample.set_environment(t, temperature_K=temp, immersed=imm)


HISTORY = [(0.0, T22, True), (10 * 3600, T22, False), (11 * 3600, T200, False),
           (12 * 3600, celsius_to_kelvin(-110), False), (17 * 3600, T22, False)]


def test_history_equals_the_sum_of_its_parts() -> None:
    """Querying a history piecewise gives the one-shot result (1e-5 at tol 1e-7)."""
    ctl = StepControl(tol=1e-7)
    whole = _small_sample(control=ctl)
    _apply(whole, HISTORY)
    end = 20 * 3600
    one_shot = whole.field(end)
    parts = _small_sample(control=ctl)
    _apply(parts, HISTORY)
    for t in (3600.0, 5 * 3600, 10.5 * 3600, 11.2 * 3600, 14 * 3600, end):
        piecewise = parts.field(t)
    assert np.max(np.abs(piecewise - one_shot)) < 1e-5
    # declaring the changes lazily, just before each is needed, is the same history again
    lazy = _small_sample(control=ctl)
    for (t, temp, imm), nxt in zip(HISTORY, HISTORY[1:] + [(end, 0, 0)], strict=True):
        lazy.set_environment(t, temperature_K=temp, immersed=imm)
        lazy.field(nxt[0])
    assert np.max(np.abs(lazy.field(end) - one_shot)) < 1e-5
    assert [s.temperature_K for s in whole.history(end)] == [h[1] for h in HISTORY]


def test_sealed_sample_conserves_li6_and_cold_stage_freezes_it() -> None:
    sample = _small_sample()
    _apply(sample, HISTORY[:2])
    m0 = sample.inventory(10 * 3600)
    f0 = sample.field(10 * 3600)
    sample.set_environment(10 * 3600, temperature_K=celsius_to_kelvin(-110), immersed=False)
    f_cold = sample.field(15 * 3600)  # a 5 h acquisition at -110 °C
    assert abs(sample.inventory(15 * 3600) - m0) / m0 < 1e-9
    assert np.max(np.abs(f_cold - f0)) < 2e-3  # frozen to well below counting noise
    sample.set_environment(15 * 3600, temperature_K=T200, immersed=False)
    assert np.max(np.abs(sample.field(16 * 3600) - f_cold)) > 0.05  # 200 °C: it moves


def test_strip_far_field_follows_erfc_with_the_microstructures_own_d_eff() -> None:
    """Long-range profile of the multiscale strip vs eq. 4 with D_eff of the same grains."""
    sample = _small_sample()
    t = 59 * 3600
    sample.set_environment(0.0, temperature_K=T22, immersed=True)
    d_eff = sample.truth(T22)["d_eff_m2_s"]
    x = np.linspace(0.05e-3, 0.5e-3, 10)
    c = sample.profile(x, t, width_m=10e-6)
    exact = sample.c0 + (sample.cs - sample.c0) * erfc(x / (2 * math.sqrt(d_eff * t)))
    assert np.max(np.abs(c - exact)) < 0.01


def test_truth_is_consistent_with_laws_and_bounds() -> None:
    sample = _small_sample()
    tr = sample.truth(T22)
    assert tr["d_bulk_m2_s"] == pytest.approx(2.6e-12, rel=1e-9)
    assert tr["k_gb_m_s"] == pytest.approx(1.364e-8, rel=1e-3)
    # series bounds: D_eff between the all-boundary chain and the bulk value
    grain = 16e-6
    assert 0.3 / (1 / tr["d_bulk_m2_s"] + 1 / (grain * tr["k_gb_m_s"])) < tr["d_eff_m2_s"]
    assert tr["d_eff_m2_s"] < tr["d_bulk_m2_s"]


def test_microstructure_statistics_and_reproducibility() -> None:
    """Equivalent-circle diameters: mean 16 µm within 12 %, sd 11 µm within 30 %."""
    m = Microstructure.polycrystal(1000e-6, 500e-6, 1e-6, seed=7)
    d = m.equivalent_diameters_m()
    assert np.mean(d) == pytest.approx(16e-6, rel=0.12)
    assert np.std(d) == pytest.approx(11e-6, rel=0.30)
    again = Microstructure.polycrystal(1000e-6, 500e-6, 1e-6, seed=7)
    assert np.array_equal(again.grain_ids, m.grain_ids)
    other = Microstructure.polycrystal(1000e-6, 500e-6, 1e-6, seed=8)
    assert not np.array_equal(other.grain_ids, m.grain_ids)
    assert m.boundary_map().mean() == pytest.approx(0.25, abs=0.1)
    f = m.staircase_factor()
    assert np.all((f >= 1 - 1e-12) & (f <= math.sqrt(2) + 1e-12))


def test_pixel_size_and_rectangle_are_free() -> None:
    m = Microstructure.polycrystal(123e-6, 45e-6, 1.5e-6, seed=1, origin_m=(1e-3, 2e-3))
    assert m.shape == (30, 82)
    assert m.extent_m[0] == pytest.approx(1e-3)


def test_bulk_law_bends_down_above_177c() -> None:
    law = BulkDiffusivity.paper_default()
    straight = BulkDiffusivity.paper_default(bend=False)
    assert law(T22) == pytest.approx(2.6e-12, rel=1e-12)
    assert law(celsius_to_kelvin(100)) / straight(celsius_to_kelvin(100)) > 0.9
    assert law(celsius_to_kelvin(400)) / straight(celsius_to_kelvin(400)) < 0.5


@pytest.mark.parametrize(
    ("call", "name"),
    [
        (lambda: Microstructure.polycrystal(-1e-6, 1e-4), "width_m"),
        (lambda: Microstructure.polycrystal(1e-4, 1e-4, 0.0), "pixel_m"),
        (lambda: Microstructure.polycrystal(1e-4, float("nan")), "height_m"),
        (lambda: Arrhenius(1.0, 0.3)(0.0), "temperature_K"),
        (lambda: Arrhenius(-1.0, 0.3), "prefactor"),
        (lambda: Conductivities(-1.0, 1.0), "d_bulk_m2_s"),
        (lambda: celsius_to_kelvin(-300), "temperature"),
        (lambda: _small_sample(c0=1.2), "c0"),
        (lambda: _small_sample(cs=float("nan")), "cs"),
        (lambda: _small_sample().set_environment(0, temperature_K=-5.0, immersed=False),
         "temperature_K"),
        (lambda: BoundaryConductance.paper_default(grain_size_m=0), "grain_size_m"),
    ],
)
def test_bad_input_names_parameter_and_value(call, name: str) -> None:
    with pytest.raises(ValueError, match=name):
        call()


def test_negative_duration_and_going_back_in_time_are_refused() -> None:
    net = FVNetwork.line(np.linspace(0, 1e-5, 11))
    with pytest.raises(ValueError, match="duration_s.*-1"):
        Integrator(net).advance(np.zeros(10), -1.0, Conductivities(1e-12, 1e-8))
    sample = _small_sample()
    sample.field(100.0)
    with pytest.raises(ValueError, match="time_s=50"):
        sample.field(50.0)
    with pytest.raises(ValueError, match="time_s=10"):
        sample.set_environment(10.0, temperature_K=T22, immersed=True)


def test_effective_diffusivity_interpolation_is_within_0p2_percent() -> None:
    """The cached D_eff(k/D_bulk) interpolation against direct steady solves."""
    from lltolab.diffusion import EffectiveDiffusivity, effective_diffusivity

    micro = Microstructure.polycrystal(150e-6, 80e-6, 1e-6, seed=4, spread_sigma=math.log(2))
    interp = EffectiveDiffusivity(micro)
    for temp in (163.15, 295.15, 380.0, 473.15, 673.15):
        d = float(BulkDiffusivity.paper_default()(temp))
        k = float(BoundaryConductance.paper_default()(temp))
        exact = effective_diffusivity(micro, Conductivities(d, k))
        assert interp(d, k) == pytest.approx(exact, rel=2e-3)


def test_a_held_segment_is_integrated_before_the_next_change_with_the_same_numbers() -> None:
    """hold_until lets the background integration run to a segment's end, no further."""
    declared = _small_sample()
    _apply(declared, HISTORY[:3])
    reference = declared.field(13 * 3600)
    held = _small_sample()
    _apply(held, HISTORY[:2])
    assert held.advance_declared() == 10 * 3600  # the bath segment ends at the next change
    held.hold_until(11 * 3600)  # the second segment is closed, the third not yet declared
    assert held.advance_declared() == 11 * 3600
    with pytest.raises(ValueError, match="precedes the sample's history"):
        held.set_environment(10.5 * 3600, temperature_K=T200, immersed=False)
    with pytest.raises(ValueError, match="precedes the latest change"):
        held.hold_until(9 * 3600)
    held.set_environment(11 * 3600, temperature_K=T200, immersed=False)
    assert np.array_equal(held.field(13 * 3600), reference)


def test_the_quench_after_an_anneal_reuses_its_factorization() -> None:
    """The workflow's cycle (exchange, quench, cold stage, storage, anneal, quench again):
    the second quench reuses the first one's factorized step matrix, with the same field as
    an integrator that keeps fewer and factorizes it again."""
    quench = [(15.0, 266.7, False), (15.0, 225.3, False), (100.0, 165.3, False)]
    cycle = [[(5 * 3600.0, T22, True)], quench, [(3600.0, 163.15, False)],
             [(530.0, 294.2, False)], [(2 * 3600.0, T200, False)], quench]
    kept = _small_sample()
    fewer = _small_sample()
    fewer._integrator._cache_size = 2
    c_kept, c_fewer = kept._c, fewer._c
    for pieces in cycle:
        c_kept = kept.integrate_pieces(c_kept, pieces)
        c_fewer = fewer.integrate_pieces(c_fewer, pieces)
    assert np.array_equal(c_kept, c_fewer)
    assert fewer._integrator.factorizations == kept._integrator.factorizations + 1
