"""Model-based inversion of a SIMS image (lltolab.analysis.invert_image)."""

from __future__ import annotations

import math
import tempfile
from pathlib import Path

import numpy as np
import pytest

from lltolab.analysis import (
    HeatStage,
    ImageForwardModel,
    equivalent_history,
    invert_image,
    invert_image_run,
    preferred_dgb_over_delta,
)
from lltolab.diffusion import VirtualSample, celsius_to_kelvin
from lltolab.sim_devices import SimsSettings, SurfaceLabSimulator
from lltolab.sim_devices._clock import VirtualClock

T22 = celsius_to_kelvin(22)
EXCHANGE_S = 1.5 * 3600.0
HISTORY = [  # as recorded: exchange, an unrecorded minute on the bench, transfer, quench
    {"start_s": 0.0, "end_s": EXCHANGE_S, "temperature_K": T22, "immersed": True},
    {"start_s": EXCHANGE_S + 60.0, "end_s": EXCHANGE_S + 240.0, "temperature_K": T22,
     "immersed": False},
    {"start_s": EXCHANGE_S + 240.0, "end_s": EXCHANGE_S + 300.0,
     "temperature_K": [T22, celsius_to_kelvin(-110)], "immersed": False},
]


T_ANNEAL = celsius_to_kelvin(200)
ANNEAL_AT_S, ANNEAL_S = EXCHANGE_S + 1800.0, 120.0
AFTER_ANNEAL = [  # the image at -110 °C, warm-up, 2 min at 200 °C, quench
    *HISTORY,
    {"start_s": EXCHANGE_S + 300.0, "end_s": ANNEAL_AT_S - 300.0,
     "temperature_K": celsius_to_kelvin(-110), "immersed": False},
    {"start_s": ANNEAL_AT_S - 300.0, "end_s": ANNEAL_AT_S, "temperature_K": T22,
     "immersed": False},
    {"start_s": ANNEAL_AT_S, "end_s": ANNEAL_AT_S + ANNEAL_S, "temperature_K": T_ANNEAL,
     "immersed": False},
    {"start_s": ANNEAL_AT_S + ANNEAL_S, "end_s": ANNEAL_AT_S + ANNEAL_S + 300.0,
     "temperature_K": celsius_to_kelvin(-110), "immersed": False},
]


def _twin_image(seed: int, *, spread_sigma: float = 0.0, pixels=(150, 60),
                anneal: bool = False) -> dict:
    """A small image of the twin rendered by the simulator (default dose, dead time), after
    the exchange (HISTORY) or after a later anneal at 200 °C (AFTER_ANNEAL)."""
    sample = VirtualSample.paper_default(seed, window_m=(-10e-6, 160e-6, 0.0, 70e-6),
                                         spread_sigma=spread_sigma)
    history = AFTER_ANNEAL if anneal else HISTORY
    # the recorded history is what the sample went through (the unrecorded minute: 22 °C)
    sample.set_environment(0.0, temperature_K=T22, immersed=True)
    sample.set_environment(EXCHANGE_S, temperature_K=T22, immersed=False)
    for seg in history[2:]:
        temp = seg["temperature_K"]
        mid = 0.5 * (temp[0] + temp[-1]) if isinstance(temp, list) else temp
        sample.set_environment(seg["start_s"], temperature_K=mid, immersed=False)
    settings = SimsSettings(field_of_view_um=(150.0, 60.0), pixels=pixels)
    with tempfile.TemporaryDirectory() as tmp:
        sim = SurfaceLabSimulator(sample, VirtualClock(1.0), tmp, settings=settings,
                                  seed=seed + 7)
        c = sim.true_c_under_raster(sample.field(history[-1]["end_s"] + 100.0))
        i6, i7 = sim.count(c, settings.pulses_per_pixel)
        micrograph = np.load(sim.write_micrograph("m"))
    truth = sample.truth(T_ANNEAL if anneal else T22)
    return {"i6": i6, "i7": i7, "n_pulses": settings.pulses_per_pixel,
            "pixel_um": (150.0 / pixels[0], 60.0 / pixels[1]), "micrograph": micrograph,
            "k_cm_s": truth["k_gb_m_s"] * 100 * float(np.median(sample.micro.spread)),
            "d_bulk_cm2_s": truth["d_bulk_m2_s"] * 1e4}


@pytest.fixture(scope="module")
def twin_image() -> dict:
    return _twin_image(3)


def _model_counts(ids, d_cm2_s, k_cm_s, *, c_off=0.0759, c_bath=0.95, n_pulses=None,
                  scale=1e7):
    """Counts equal (to rounding) to the model's expectation: a noise-free image."""
    model = ImageForwardModel(ids, (1e-6, 1e-6), equivalent_history(HISTORY),
                              temperature_K=T22)
    u, _ = model.solve(d_cm2_s * 1e-4, k_cm_s * 1e-2, sensitivities=False)
    c = c_off + (c_bath - c_off) * u
    if n_pulses is None:
        return np.round(scale * c), np.round(scale * (1 - c))
    y = 0.6
    return (np.round(n_pulses * -np.expm1(-y * c)), np.round(n_pulses * -np.expm1(-y * (1 - c))))


@pytest.fixture(scope="module")
def small_grains() -> np.ndarray:
    return VirtualSample.paper_default(5, window_m=(0.0, 120e-6, 0.0, 40e-6)).grain_ids


def test_noise_free_recovery_is_exact(small_grains) -> None:
    """Data that the model produces exactly: D_bulk, k and both fractions come back."""
    d, k = 2.6e-8, 1.1e-6
    i6, i7 = _model_counts(small_grains, d, k, n_pulses=10**9)
    inv = invert_image(i6, i7, history=HISTORY, temperature_K=T22, pixel_um=1.0,
                       n_pulses=10**9, grain_ids=small_grains, k_start_cm_s=3e-6,
                       d_bulk_start_cm2_s=1e-8)
    assert inv.converged, inv.message
    assert inv.dgb_over_delta_cm_s == pytest.approx(k, rel=2e-3)
    assert inv.d_bulk_cm2_s == pytest.approx(d, rel=1e-2)
    assert inv.c_offset == pytest.approx(0.0759, abs=1e-4)
    assert inv.c_bath == pytest.approx(0.95, abs=2e-3)
    assert inv.blur_var_px2 < 0.02
    assert inv.interval_cm_s[0] < k < inv.interval_cm_s[1]


def test_noise_free_without_dead_time(small_grains) -> None:
    """The Poisson limit (no n_pulses): binomial of I6 given I6 + I7."""
    d, k = 2.6e-8, 2.0e-6
    i6, i7 = _model_counts(small_grains, d, k)
    inv = invert_image(i6, i7, history=HISTORY, temperature_K=T22, pixel_um=1.0,
                       grain_ids=small_grains)
    assert inv.converged
    assert inv.dgb_over_delta_cm_s == pytest.approx(k, rel=2e-3)


def test_the_estimates_do_not_depend_on_the_worker_threads(small_grains) -> None:
    """A background inversion uses one thread; the fit is the same as with two."""
    rng = np.random.default_rng(4)
    i6, i7 = _model_counts(small_grains, 2.6e-8, 1.1e-6, n_pulses=2048)
    i6, i7 = rng.binomial(2048, i6 / 2048), rng.binomial(2048, i7 / 2048)
    fits = [invert_image(i6, i7, history=HISTORY, temperature_K=T22, pixel_um=1.0,
                         n_pulses=2048, grain_ids=small_grains, workers=w) for w in (1, 2)]
    assert fits[0].dgb_over_delta_cm_s == fits[1].dgb_over_delta_cm_s
    assert fits[0].interval_cm_s == fits[1].interval_cm_s
    with pytest.raises(ValueError, match="workers must be a whole number >= 1, got 0"):
        invert_image(i6, i7, history=HISTORY, temperature_K=T22, grain_ids=small_grains,
                     workers=0)


def test_tangent_sensitivities_match_finite_differences(small_grains) -> None:
    model = ImageForwardModel(small_grains[:, :60], (1e-6, 1e-6),
                              equivalent_history(HISTORY), temperature_K=T22)
    d, k = 2.6e-12, 1.4e-8
    _, du = model.solve(d, k)
    for i, (dd, kk) in enumerate(((d * 1.001, k), (d, k * 1.001))):
        up, _ = model.solve(dd, kk, sensitivities=False)
        dn, _ = model.solve(d * d / dd, k * k / kk, sensitivities=False)
        fd = (up - dn) / (2 * math.log(1.001))
        assert np.max(np.abs(du[i] - fd)) < 1e-4 * max(1e-3, np.max(np.abs(fd))) + 1e-7


def _covers_the_twin(img: dict, history: list, temperature_K: float):
    """Invert a twin image with its micrograph; the interval covers k, the fit is near noise."""
    inv = invert_image(img["i6"], img["i7"], history=history, temperature_K=temperature_K,
                       pixel_um=img["pixel_um"], n_pulses=img["n_pulses"],
                       boundary_map=img["micrograph"])
    assert inv.converged, inv.message
    lo, hi = inv.interval_cm_s
    assert lo < img["k_cm_s"] < hi
    assert inv.dgb_over_delta_cm_s == pytest.approx(img["k_cm_s"], rel=0.25)
    assert 0.9 < inv.deviance_per_dof < 1.2
    return inv


def test_twin_image_at_default_dose_interval_covers(twin_image) -> None:
    """A twin image rendered by the simulator (~1e3 counts per pixel, dead time) with the
    etched micrograph: the 90 % interval covers the twin's k and the fit is near the noise."""
    inv = _covers_the_twin(twin_image, HISTORY, T22)
    assert 0.9 < inv.pearson_per_dof < 1.2
    assert inv.grain_source == "boundary_map"
    assert inv.stderr_ln_k >= inv.stderr_ln_k_model > 0


def test_twin_image_after_an_anneal() -> None:
    """After 2 min at 200 °C the grains have evened out and the image spans C ≈ 0.4–0.6: the
    fractions' priors anchor its level (without them the interval is 6× wide), and k(200 °C)
    comes back inside the interval."""
    inv = _covers_the_twin(_twin_image(3, anneal=True), AFTER_ANNEAL, T_ANNEAL)
    lo, hi = inv.interval_cm_s
    assert hi / lo < 2.0  # 1.6 (6.1 without the fractions' priors)
    corr = inv.correlation
    assert np.allclose(np.diag(corr), 1.0) and np.all(np.abs(corr) <= 1.0 + 1e-9)


def test_run_level_dict_and_figure(tmp_path: Path) -> None:
    img = _twin_image(4, pixels=(154, 62))  # pixels of 0.974 x 0.968 µm
    out = invert_image_run(img["i6"], img["i7"], history=HISTORY, temperature_K=T22,
                           pixel_um=img["pixel_um"], n_pulses=img["n_pulses"],
                           boundary_map=img["micrograph"], run="r1", figures_dir=tmp_path,
                           step_median_cm_s=1e-6)
    assert out["method"] == "inversion"
    assert len(out["dgb_over_delta_cm_s_interval"]) == 2
    assert Path(out["figures"][0]).name == "r1_inversion.png"
    assert Path(out["figures"][0]).stat().st_size > 10_000
    pref = preferred_dgb_over_delta({"inversion": out, "median_dgb_over_delta_cm_s": 5e-7})
    assert pref["dgb_over_delta_method"] == ("inversion" if out["converged"] else
                                             "boundary_steps")
    steps = preferred_dgb_over_delta({"inversion": {"converged": False},
                                      "median_dgb_over_delta_cm_s": 5e-7})
    assert steps == {"dgb_over_delta_cm_s": 5e-7, "dgb_over_delta_method": "boundary_steps",
                     "dgb_over_delta_cm_s_interval": None, "dgb_over_delta_level": None}


def test_equivalent_history_merges_splits_and_fills_gaps() -> None:
    hist = [
        {"start_s": 0.0, "end_s": 100.0, "temperature_K": 295.15, "immersed": True},
        {"start_s": 150.0, "end_s": 160.0, "temperature_K": 295.15, "immersed": False},
        {"start_s": 160.0, "end_s": 200.0, "temperature_K": [295.15, 163.15],
         "immersed": False},
        {"start_s": 200.0, "end_s": 1000.0, "temperature_K": 473.15, "immersed": False},
    ]
    st = equivalent_history(hist)
    assert st[0] == HeatStage(100.0, pytest.approx(295.15, abs=1e-3), True)
    assert st[1].immersed is False and st[1].duration_s > 50.0  # gap + transfer merged
    assert st[-1].temperature_K == pytest.approx(473.15, abs=1e-3)
    assert st[-1].duration_s == pytest.approx(800.0)
    assert sum(s.duration_s for s in st) == pytest.approx(1000.0)
    # in any order, the same stages; overlapping segments are refused, touching ones are not
    assert equivalent_history(hist[::-1]) == st
    stepped = [hist[0], {**hist[1], "start_s": 99.6}]  # a clock step back: clipped
    assert sum(s.duration_s for s in equivalent_history(stepped)) == pytest.approx(160.0)
    again = [*hist, {**hist[0], "start_s": 0.0, "end_s": 100.0}]
    with pytest.raises(ValueError, match=r"overlap: one starts at 0\.0 s before an earlier "
                       r"one ends at 100\.0 s"):
        equivalent_history(again)


ANNEAL_HISTORY = [*HISTORY,  # an image at -110 °C, then an anneal at 200 °C with ramps
    {"start_s": EXCHANGE_S + 300.0, "end_s": EXCHANGE_S + 3900.0,
     "temperature_K": celsius_to_kelvin(-110), "immersed": False},
    {"start_s": EXCHANGE_S + 3900.0, "end_s": EXCHANGE_S + 4500.0,
     "temperature_K": [celsius_to_kelvin(-110), T22], "immersed": False},
    {"start_s": EXCHANGE_S + 4500.0, "end_s": EXCHANGE_S + 5400.0,
     "temperature_K": [T22, celsius_to_kelvin(200)], "immersed": False},
    {"start_s": EXCHANGE_S + 5400.0, "end_s": EXCHANGE_S + 6600.0,
     "temperature_K": celsius_to_kelvin(200), "immersed": False},
    {"start_s": EXCHANGE_S + 6600.0, "end_s": EXCHANGE_S + 7500.0,
     "temperature_K": [celsius_to_kelvin(200), T22], "immersed": False},
]


def _pieces(history, n_ramp):
    """The history as constant pieces (ramps cut in n_ramp), one stage each: no merging."""
    from lltolab.diffusion import BoundaryConductance, BulkDiffusivity

    bulk, gb = BulkDiffusivity.paper_default(), BoundaryConductance.paper_default()
    out, t_prev = [], 0.0
    for seg in history:
        if seg["start_s"] > t_prev:
            out.append((seg["start_s"] - t_prev, T22, False))
        temps = seg["temperature_K"]
        dur = seg["end_s"] - seg["start_s"]
        if isinstance(temps, list):
            a, b = temps
            out += [(dur / n_ramp, a + (b - a) * (i + 0.5) / n_ramp, seg["immersed"])
                    for i in range(n_ramp)]
        else:
            out.append((dur, temps, seg["immersed"]))
        t_prev = seg["end_s"]
    return out, bulk, gb


def test_merged_stages_keep_the_time_integrals_of_d_bulk_and_k() -> None:
    stages = equivalent_history(ANNEAL_HISTORY, ramp_pieces=16)
    pieces, bulk, gb = _pieces(ANNEAL_HISTORY, 16)
    assert len(stages) < len(pieces) / 4  # the ramps and the cold image collapse
    assert [s.immersed for s in stages][:1] == [True]
    for name, law, factor in (("D_bulk", bulk, lambda s: 1.0), ("k", gb, lambda s: s.k_factor)):
        exact = sum(d * float(law(t)) for d, t, _ in pieces)
        merged = sum(s.duration_s * factor(s) * float(law(s.temperature_K)) for s in stages)
        assert merged == pytest.approx(exact, rel=1e-9), name
    assert sum(s.duration_s for s in stages) == pytest.approx(EXCHANGE_S + 7500.0)


def test_merged_stages_give_the_field_of_the_piecewise_history(small_grains) -> None:
    """The field after the anneal history: merged stages vs one stage per constant piece."""
    pieces, _, _ = _pieces(ANNEAL_HISTORY, 16)
    fine = [HeatStage(d, t, imm) for d, t, imm in pieces]
    args = dict(temperature_K=T22, steps_per_stage=24)
    d, k = 2.6e-12, 1.36e-8
    merged = ImageForwardModel(small_grains, (1e-6, 1e-6), equivalent_history(ANNEAL_HISTORY),
                               **args)
    piecewise = ImageForwardModel(small_grains, (1e-6, 1e-6), fine, **args)
    u_merged, du_merged = merged.solve(d, k)
    u_fine, du_fine = piecewise.solve(d, k)
    assert merged.factorizations < piecewise.factorizations / 3
    assert np.max(np.abs(u_merged - u_fine)) < 1e-3  # 2.4e-4; 5.7e-3 without k_factor
    assert np.max(np.abs(du_merged - du_fine)) < 1e-3


def test_the_coarse_start_changes_the_path_not_the_optimum(twin_image) -> None:
    """The 2 x 2-binned fit only gives the start: with and without it, and from starts 2x off
    on either side, the full fit ends at the same k (within its tolerance, 0.2 %)."""
    kw = {"history": HISTORY, "temperature_K": T22, "pixel_um": twin_image["pixel_um"],
          "n_pulses": twin_image["n_pulses"], "boundary_map": twin_image["micrograph"]}
    img = (twin_image["i6"], twin_image["i7"])
    ref = invert_image(*img, **kw, coarse_start=False, tolerance_ln_k=2e-4)
    assert ref.coarse_forward_solves == 0
    for start in (None, 2.0 * ref.dgb_over_delta_cm_s, 0.5 * ref.dgb_over_delta_cm_s):
        inv = invert_image(*img, **kw, k_start_cm_s=start)
        assert inv.converged, inv.message
        assert inv.coarse_forward_solves > 0
        assert inv.dgb_over_delta_cm_s == pytest.approx(ref.dgb_over_delta_cm_s, rel=3e-3)
        assert inv.interval_cm_s[0] == pytest.approx(ref.interval_cm_s[0], rel=1e-2)


def test_a_parameter_at_its_bound_is_held_and_the_others_re_solved() -> None:
    """ln D_bulk at its upper bound (10x the law) with a Newton step pushing it further: the
    step holds it and is the Newton step of the other parameters alone (not the full step
    with its D part clipped, whose k part assumed D would move)."""
    from lltolab.analysis._inversion import _LN_D_RANGE, _Fitter

    fitter = _Fitter.__new__(_Fitter)
    fitter.prior_mu = np.array([math.log(2.6e-12), 0.0, 0.0759, 0.95, 0.0])
    theta = np.array([fitter.prior_mu[0] + _LN_D_RANGE, math.log(1e-8), 0.07, 0.94, 0.3])
    rng = np.random.default_rng(1)
    m = rng.normal(size=(5, 5))
    a = m @ m.T + 5 * np.eye(5)
    a[0, 1] = a[1, 0] = 0.8 * math.sqrt(a[0, 0] * a[1, 1])  # D and k strongly correlated
    full = np.linalg.solve(a, np.ones(5))
    g = a @ np.array([1.0, 0.1, 0.0, 0.0, 0.0])  # the full step raises ln D by 1
    step = fitter._step(theta, a, g)
    assert step[0] == 0.0
    free = [1, 2, 3, 4]
    expected = np.linalg.solve(a[np.ix_(free, free)], g[free])
    assert np.allclose(step[free], expected)
    assert not np.allclose(np.linalg.solve(a, g)[free], expected)  # clipping would differ
    # inside the bounds, or pointing back in, it is the full Newton step
    assert np.allclose(fitter._step(theta - np.array([1, 0, 0, 0, 0]), a, np.ones(5)), full)
    assert np.allclose(fitter._step(theta, a, -g), np.linalg.solve(a, -g))
    # the blur variance at 0 with the step pushing below is held too
    low = theta.copy()
    low[0], low[4] = fitter.prior_mu[0], 0.0
    g4 = a @ np.array([0.0, 0.0, 0.0, 0.0, -0.5])
    assert fitter._step(low, a, g4)[4] == 0.0


@pytest.mark.parametrize("bad, match", [
    ({"history": []}, "history is empty"),
    ({"history": [{"start_s": 0, "end_s": 10, "temperature_K": -3, "immersed": True}]},
     "temperature_K must be > 0"),
    ({"history": [{"start_s": 5, "end_s": 1, "temperature_K": 295, "immersed": True}]},
     "start_s <= end_s"),
    ({"history": [{"start_s": 0, "end_s": 60, "temperature_K": 163, "immersed": True}]},
     "diffused"),
    ({"level": 1.5}, "level must be in"),
    ({"n_pulses": 10}, "exceed n_pulses=10"),
    ({"pixel_um": 0.0}, "pixel_um must be finite and > 0"),
    ({"grain_ids": np.zeros((3, 3), int)}, "grain_ids has shape"),
    ({"temperature_K": 0.0}, "temperature_K must be > 0"),
    ({"cluster_um": -1.0}, "cluster_um must be finite and > 0"),
    ({"tolerance_ln_k": 0.0}, "tolerance_ln_k must be finite and > 0"),
    ({"tolerance_loglik": -1.0}, "tolerance_loglik must be > 0"),
])
def test_bad_input_is_rejected_early(small_grains, bad, match) -> None:
    i6 = np.full(small_grains.shape, 100.0)
    kw = {"history": HISTORY, "temperature_K": T22, "pixel_um": 1.0,
          "grain_ids": small_grains}
    kw.update(bad)
    with pytest.raises(ValueError, match=match):
        invert_image(i6, i6 * 9, **kw)


def test_bad_counts_are_rejected() -> None:
    good = np.full((10, 12), 50.0)
    with pytest.raises(ValueError, match="non-negative whole counts"):
        invert_image(good - 60, good, history=HISTORY, temperature_K=T22)
    with pytest.raises(ValueError, match="as i6"):
        invert_image(good, good[:, :5], history=HISTORY, temperature_K=T22)
    with pytest.raises(ValueError, match="2-D count image"):
        invert_image(good[0], good[0], history=HISTORY, temperature_K=T22)


def test_the_analysis_does_not_import_scipy_stats() -> None:
    """scipy.stats costs about 1 s of import; the interval's Student-t quantile needs
    only scipy.special.stdtrit (what scipy.stats.t.ppf evaluates)."""
    import subprocess
    import sys

    code = "import sys, lltolab.run_analysis; print('scipy.stats' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=120, check=True)
    assert out.stdout.strip() == "False"
