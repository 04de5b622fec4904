"""Speed of the analysis. Not a test.

A1  fit_time_evolution on 3 profiles of 600 points (sealed storage of the twin: 59 h exchange,
    then profiles at +14 d and +42 d over the whole 10 mm strip); target <= 2 s.
A2  boundary analysis of a 512 × 206 map (the twin after 59 h, ~1e4 counts per pixel) with the
    etched micrograph (boundary map -> grains -> per-boundary fits); target <= 1 s. Also
    reported: with the twin's grain ids, and with boundaries located in the C map itself.

Times are the median of ``--repeat`` runs; ``ratio`` divides each by a reference operation
timed in the same process (a 600 × 600 dense LU solve, scipy) so that numbers from machines of
different speed compare.

Usage: python benchmarks/analysis.py [--json] [--repeat N]
With --json the last line is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import numpy as np
import scipy.linalg

from lltolab.analysis import analyze_boundaries, fit_time_evolution, isotope_fraction
from lltolab.diffusion import VirtualSample, celsius_to_kelvin

T22 = celsius_to_kelvin(22)
EXCHANGE_S = 59 * 3600.0


def _median_time(fn, repeat: int) -> tuple[float, object]:
    times = []
    out = None
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), out


def reference_op(repeat: int) -> float:
    """Median time of the reference: a dense 600 × 600 LU solve (scipy/LAPACK)."""
    rng = np.random.default_rng(0)
    a = rng.standard_normal((600, 600)) + 600 * np.eye(600)
    b = rng.standard_normal(600)
    scipy.linalg.solve(a, b)  # warm-up (library and thread-pool start)
    t, _ = _median_time(lambda: scipy.linalg.solve(a, b), max(7, repeat))
    return t


def profiles_problem():
    sample = VirtualSample.paper_default(0, window_m=(-10e-6, 110e-6, 0.0, 60e-6))
    sample.set_environment(0.0, temperature_K=T22, immersed=True)
    sample.set_environment(EXCHANGE_S, temperature_K=T22, immersed=False)
    x_m = np.linspace(-0.97e-3, 8.97e-3, 600)
    times = [EXCHANGE_S, EXCHANGE_S + 14 * 86400, EXCHANGE_S + 42 * 86400]
    rng = np.random.default_rng(1)
    profs = [np.clip(sample.profile(x_m, t) + rng.normal(0, 0.003, x_m.size), 0, 1)
             for t in times]
    return sample, x_m * 100, profs, times


def map_problem():
    sample = VirtualSample.paper_default(0, window_m=(-10e-6, 502e-6, 0.0, 206e-6))
    sample.set_environment(0.0, temperature_K=T22, immersed=True)
    sample.set_environment(EXCHANGE_S, temperature_K=T22, immersed=False)
    c = sample.field(EXCHANGE_S)
    rng = np.random.default_rng(2)
    n = 20000
    frac = isotope_fraction(rng.binomial(n, -np.expm1(-0.6 * c)),
                            rng.binomial(n, -np.expm1(-0.6 * (1 - c))), n)
    return sample, frac


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    ref_before = reference_op(args.repeat)

    sample, x_cm, profs, times = profiles_problem()
    truth = sample.truth(T22)["d_eff_m2_s"] * 1e4
    a1, fit = _median_time(lambda: fit_time_evolution(x_cm, profs, times, domain_cm=(-0.1, 0.9),
                                                      width_cm=50e-4), args.repeat)
    msample, frac = map_problem()
    d_bulk = msample.truth(T22)["d_bulk_m2_s"] * 1e4
    k_ref = msample.truth(T22)["k_gb_m_s"] * 100 * float(np.median(msample.micro.spread))
    common = dict(pixel_cm=1e-4, d_bulk=d_bulk, sigma_map=frac.sigma)
    a2, res = _median_time(lambda: analyze_boundaries(
        frac.c, boundary_map=msample.boundary_map, **common), args.repeat)
    a2_ids, _ = _median_time(lambda: analyze_boundaries(
        frac.c, grain_ids=msample.grain_ids, **common), args.repeat)
    a2_cmap, res_c = _median_time(lambda: analyze_boundaries(frac.c, **common), args.repeat)
    ref = min(ref_before, reference_op(args.repeat))  # before and after: less load noise
    out = {
        "reference_s": ref,
        "a1_time_evolution_s": a1, "a1_ratio": a1 / ref,
        "a1_d_eff_rel_err": fit.d_eff / truth - 1, "a1_nfev": fit.nfev,
        "a2_boundaries_micrograph_s": a2, "a2_ratio": a2 / ref,
        "a2_boundaries_grain_ids_s": a2_ids, "a2_boundaries_from_c_map_s": a2_cmap,
        "a2_map_shape": list(frac.c.shape), "a2_n_boundaries": len(res.steps),
        "a2_n_selected": len(res.selected), "a2_median_over_reference": res.median / k_ref,
        "a2_c_map_median_over_reference": res_c.median / k_ref,
    }
    print(f"reference op (600x600 LU solve): {ref * 1e3:.2f} ms")
    print(f"A1 fit_time_evolution 3 x 600 points: {a1:.3f} s (target 2 s), "
          f"{a1 / ref:.0f} x reference; D_eff error {100 * (fit.d_eff / truth - 1):+.2f} %")
    print(f"A2 boundary analysis {frac.c.shape[1]} x {frac.c.shape[0]} map (micrograph): "
          f"{a2:.3f} s (target 1 s), {a2 / ref:.0f} x reference; {len(res.selected)} of "
          f"{len(res.steps)} boundaries, median / truth {res.median / k_ref:.3f}")
    print(f"   with grain ids: {a2_ids:.3f} s; boundaries from the C map: {a2_cmap:.3f} s "
          f"(median / truth {res_c.median / k_ref:.3f})")
    if args.json:
        print(json.dumps(out))


if __name__ == "__main__":
    main()
