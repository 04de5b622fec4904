"""The diffusion twin against analytic solutions (docs/science.md §5), each with a tolerance."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.optimize import curve_fit
from scipy.special import erfc

from lltolab.diffusion import (
    Conductivities,
    FixedCells,
    FVNetwork,
    Integrator,
    Microstructure,
    StepControl,
    effective_diffusivity,
)

D_B = 2.6e-12  # m²/s, LLTO bulk at 22 °C
K_GB = 1.4e-8  # m/s, boundary conductance at 22 °C


def _line(n: int, h: float, boundaries: np.ndarray | None = None) -> FVNetwork:
    return FVNetwork.line(np.arange(n + 1) * h, boundaries_m=boundaries)


def test_erfc_profile_eq4_within_1e_4() -> None:
    """Constant surface fraction into a semi-infinite bulk: eq. 4 to 1e-4 (absolute C)."""
    h, n, t = 1e-6, 2000, 1e4  # sqrt(D t) = 51 µm = 51 cells; domain 39 sqrt(Dt) long
    net = _line(n, h)
    mask = np.zeros(n, dtype=bool)
    mask[0] = True
    c0, cs = 0.0759, 0.95
    it = Integrator(net, StepControl(tol=1e-6))
    c = it.advance(np.full(n, c0), t, Conductivities(D_B, K_GB), FixedCells(mask, cs, "bath"))
    x = np.arange(n) * h  # distance from the held cell's centre
    exact = c0 + (cs - c0) * erfc(x / (2 * math.sqrt(D_B * t)))
    assert np.max(np.abs(c - exact)) < 1e-4


def _cosine_series_discrete(c_init: np.ndarray, d: float, h: float, t: float) -> np.ndarray:
    """Exact solution of the semi-discrete sealed problem: discrete cosine modes."""
    n = len(c_init)
    j = np.arange(n)
    out = np.full(n, c_init.mean())
    for k in range(1, n):
        mode = np.cos(k * math.pi * (j + 0.5) / n)
        amp = np.dot(c_init, mode) / np.dot(mode, mode)
        lam = d * (4 / h**2) * math.sin(k * math.pi / (2 * n)) ** 2
        out += amp * math.exp(-lam * t) * mode
    return out


def test_sealed_redistribution_matches_cosine_series_and_conserves_mass() -> None:
    """No-flux redistribution of a step: cosine series to 1e-5, mass drift <= 1e-8."""
    h, n = 1e-6, 400
    length = n * h
    t = 0.02 * length**2 / D_B
    c_init = np.where(np.arange(n) < n // 4, 0.95, 0.0759)
    it = Integrator(_line(n, h), StepControl(tol=1e-7))
    c = it.advance(c_init, t, Conductivities(D_B, K_GB))
    exact = _cosine_series_discrete(c_init, D_B, h, t)
    assert np.max(np.abs(c - exact)) < 1e-5
    assert abs(c.sum() - c_init.sum()) / c_init.sum() < 1e-8
    # and the continuous cosine series, to the O(h²) of the grid
    x = (np.arange(n) + 0.5) * h
    a = length / 4
    cont = 0.0759 + (0.95 - 0.0759) * (
        a / length
        + sum(
            2 / (k * math.pi) * math.sin(k * math.pi * a / length)
            * np.cos(k * math.pi * x / length) * math.exp(-D_B * (k * math.pi / length) ** 2 * t)
            for k in range(1, 400)
        )
    )
    assert np.max(np.abs(c - cont)) < 1e-3


def test_steady_chain_equals_series_resistance() -> None:
    """Steady flux through N grains and N-1 boundaries: Nl/(Nl/D_b + (N-1)/k) to 1e-8 rel."""
    h, per_grain, n_grains = 1e-6, 16, 12
    n = per_grain * n_grains
    # held cells: the first and the last; grain walls every 16 cells, starting half a cell in
    edges = (np.arange(n + 1) - 0.5) * h
    walls = edges[per_grain:n:per_grain][: n_grains - 1]
    net = FVNetwork.line(edges, boundaries_m=walls)
    mask = np.zeros(n, dtype=bool)
    mask[[0, -1]] = True
    value = np.zeros(n)
    value[0] = 1.0
    coeff = Conductivities(D_B, K_GB)
    c = Integrator(net).steady_state(coeff, FixedCells(mask, value, "ends"))
    flux = net.conductance(coeff)[0] * (c[0] - c[1])
    length = (n - 1) * h
    d_eff = flux * length
    exact = length / (length / D_B + (n_grains - 1) / K_GB)
    assert d_eff == pytest.approx(exact, rel=1e-8)


def test_chain_recovers_eq6_when_grains_are_small() -> None:
    """A chain of l = 8 µm grains over sqrt(D_eff t) = 40 l behaves like eq. 6 within 2 %."""
    h, l_cells = 1e-6, 8
    grain = l_cells * h
    n = 4000
    edges = np.arange(n + 1) * h
    net = FVNetwork.line(edges, boundaries_m=edges[l_cells:n:l_cells])
    coeff = Conductivities(D_B, K_GB)
    d_eq6 = 1 / (1 / D_B + 1 / (grain * K_GB))
    t = (40 * grain) ** 2 / d_eq6
    mask = np.zeros(n, dtype=bool)
    mask[0] = True
    c = Integrator(net).advance(np.zeros(n), t, coeff, FixedCells(mask, 1.0, "bath"))
    x = (np.arange(n) + 0.5) * h
    sel = c > 1e-3

    def model(xx: np.ndarray, d: float) -> np.ndarray:
        return erfc(xx / (2 * np.sqrt(d * 1e-14 * t)))

    (d_fit,), _ = curve_fit(model, x[sel], c[sel], p0=[d_eq6 * 1e14])
    assert d_fit * 1e-14 == pytest.approx(d_eq6, rel=0.02)


def _quad_extrapolate(x: np.ndarray, c: np.ndarray, at: float) -> tuple[float, float]:
    p = np.polyfit(x - at, c, 2)
    return float(p[2]), float(p[1])  # value and slope at `at`


def test_eq3_recovered_from_a_simulated_boundary_step() -> None:
    """D_bulk dC/dy|bulk = k ΔC_gb (eq. 3): quadratic fits next to the boundary give k to 2 %."""
    h, n = 0.5e-6, 600
    edges = np.arange(n + 1) * h
    wall = edges[200]
    net = FVNetwork.line(edges, boundaries_m=[wall])
    mask = np.zeros(n, dtype=bool)
    mask[0] = True
    coeff = Conductivities(D_B, K_GB)
    t = 0.5 * (100e-6) ** 2 / D_B
    c = Integrator(net, StepControl(tol=1e-7)).advance(
        np.zeros(n), t, coeff, FixedCells(mask, 1.0, "bath")
    )
    x = (np.arange(n) + 0.5) * h
    left = slice(200 - 14, 200)
    right = slice(200, 200 + 14)
    c_l, _ = _quad_extrapolate(x[left], c[left], wall)
    c_r, slope_r = _quad_extrapolate(x[right], c[right], wall)
    k_est = D_B * (-slope_r) / (c_l - c_r)
    assert k_est == pytest.approx(K_GB, rel=0.02)


def _square_grains(nx: int, ny: int, side: int, h: float) -> Microstructure:
    gx, gy = np.meshgrid(np.arange(nx) // side, np.arange(ny) // side)
    ncol = (nx + side - 1) // side
    ids = gy * ncol + gx
    nrow = (ny + side - 1) // side
    cx, cy = np.meshgrid((np.arange(ncol) + 0.5) * side * h, (np.arange(nrow) + 0.5) * side * h)
    return Microstructure.from_grain_ids(ids, h, np.column_stack([cx.ravel(), cy.ravel()]))


def test_aligned_square_grains_match_the_exact_series_value() -> None:
    """Square grains aligned with the grid: D_eff equals the 1-D series value to 1e-8 rel."""
    h, side, n_across = 1e-6, 10, 12
    nx, ny = side * n_across, 40
    micro = _square_grains(nx, ny, side, h)
    coeff = Conductivities(D_B, K_GB)
    d_eff = effective_diffusivity(micro, coeff)
    length = (nx - 1) * h
    exact = length / (length / D_B + (n_across - 1) / K_GB)
    assert d_eff == pytest.approx(exact, rel=1e-8)


def _two_grains(theta_deg: float, size: int, h: float) -> tuple[Microstructure, float]:
    th = math.radians(theta_deg)
    normal = np.array([math.cos(th), math.sin(th)])
    centre = np.array([size * h / 2, size * h / 2])
    xs = (np.arange(size) + 0.5) * h
    gx, gy = np.meshgrid(xs, xs)
    side = (gx - centre[0]) * normal[0] + (gy - centre[1]) * normal[1]
    ids = (side > 0).astype(int)
    seeds = np.stack([centre - 10 * h * normal, centre + 10 * h * normal])
    chord = size * h / max(abs(math.sin(th)), abs(math.cos(th)))
    return Microstructure.from_grain_ids(ids, h, seeds), chord


@pytest.mark.parametrize("theta_deg", [0.0, 30.0, 45.0, 60.0])
def test_two_grain_exchange_rate_with_staircase_correction(theta_deg: float) -> None:
    """Two grains across a straight boundary: rate k L (1/V1 + 1/V2) within 1 %."""
    h, size = 1e-6, 160
    micro, chord = _two_grains(theta_deg, size, h)
    d_fast = 1e-8  # Biot number k l / D ~ 1e-4: grains stay uniform
    coeff = Conductivities(d_fast, K_GB)
    ids = micro.grain_ids.ravel()
    v1, v2 = np.sum(ids == 0) * h * h, np.sum(ids == 1) * h * h
    rate = K_GB * chord * (1 / v1 + 1 / v2)
    t = 0.5 / rate

    def measured(correction: bool) -> float:
        net = FVNetwork.from_microstructure(micro, staircase_correction=correction)
        c = Integrator(net, StepControl(tol=1e-6)).advance(
            (ids == 0).astype(float), t, coeff
        )
        delta = c[ids == 0].mean() - c[ids == 1].mean()
        return -math.log(delta) / t

    assert measured(True) == pytest.approx(rate, rel=0.01)
    if theta_deg == 45.0:  # the uncorrected staircase over-counts the boundary by ~√2
        assert measured(False) > 1.3 * rate


def test_honeycomb_network_matches_sqrt3_k_s() -> None:
    """Hexagonal grains (side s), fast bulk: D_eff = √3 k s within 1 % (staircase corrected)."""
    h, s = 0.5e-6, 10e-6
    d = math.sqrt(3) * s
    rows, cols = 8, 12
    centres = []
    for r in range(-1, rows + 2):
        for c in range(-1, cols + 2):
            centres.append(((c + 0.5 * (r % 2)) * d, r * 1.5 * s))
    centres = np.array(centres)
    nx, ny = round(cols * d / h), round(rows * 1.5 * s / h)
    xs, ys = (np.arange(nx) + 0.5) * h, (np.arange(ny) + 0.5) * h
    gx, gy = np.meshgrid(xs, ys)
    from scipy.spatial import cKDTree

    _, owner = cKDTree(centres).query(np.column_stack([gx.ravel(), gy.ravel()]))
    used, ids = np.unique(owner, return_inverse=True)
    micro = Microstructure.from_grain_ids(ids.reshape(ny, nx), h, centres[used])
    coeff = Conductivities(1e-8, K_GB)
    net = FVNetwork.from_microstructure(micro)
    mask = np.zeros((ny, nx), dtype=bool)
    mask[:, 0] = mask[:, -1] = True
    value = np.zeros((ny, nx))
    value[:, 0] = 1.0
    c = Integrator(net).steady_state(coeff, FixedCells(mask.ravel(), value.ravel(), "ends"))
    grain = micro.grain_ids.ravel()
    means = np.bincount(grain, c) / np.bincount(grain)
    seed_x = micro.seeds_m[:, 0]
    inner = (seed_x > 0.3 * nx * h) & (seed_x < 0.7 * nx * h)
    slope = np.polyfit(seed_x[inner], means[inner], 1)[0]
    mid = nx // 2
    face = np.arange(ny) * (nx - 1) + (mid - 1)
    g = net.conductance(coeff)
    flux = np.sum(g[face] * (c[net.face_i[face]] - c[net.face_j[face]]))
    d_eff = flux / (ny * h) / (-slope)
    assert d_eff == pytest.approx(math.sqrt(3) * K_GB * s, rel=0.01)


def test_trbdf2_error_falls_fourfold_per_halving_of_dt() -> None:
    """Second order in time: error ratio 4 ± 0.6 per halving of the step (smooth data)."""
    h, n = 1e-6, 100
    x = (np.arange(n) + 0.5) / n
    c_init = 0.5 + 0.3 * np.cos(math.pi * x) + 0.1 * np.cos(3 * math.pi * x)
    t = 0.05 * (n * h) ** 2 / D_B
    exact = _cosine_series_discrete(c_init, D_B, h, t)
    it = Integrator(_line(n, h))
    errs = [
        np.max(np.abs(it.advance(c_init, t, Conductivities(D_B, K_GB), n_steps=k) - exact))
        for k in (8, 16, 32)
    ]
    assert errs[0] / errs[1] == pytest.approx(4.0, abs=0.6)
    assert errs[1] / errs[2] == pytest.approx(4.0, abs=0.6)
