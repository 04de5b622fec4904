"""Speed and accuracy of the diffusion twin. Not a test.

P1  500 × 200 µm at 1 µm (10⁵ cells), 59 h exchange at 22 °C then 16 d sealed storage:
    wall time with default step control, max |ΔC| against a converged reference computed here
    (400 steps per segment), and the same problem on the same grid in FiPy (optional `bench`
    extra) as a time ratio.
P2  a 6 mm × 0.2 mm strip through the polycrystal (1 µm pixels in the 0.6 mm next to the liquid
    level, homogenised 5 µm cells beyond, one coupled network), 63 h exchange then 3.8 h at
    200 °C.

Usage: python benchmarks/twin.py [--json] [--no-fipy]
With --json the last line is one JSON object: p1_s, p1_max_err, p1_fipy_ratio, p2_s,
peak_mem_mb (p1_fipy_ratio is null when FiPy is not installed or skipped).
"""

from __future__ import annotations

import argparse
import json
import resource
import time

import numpy as np

from lltolab.diffusion import (
    BoundaryConductance,
    BulkDiffusivity,
    Conductivities,
    FixedCells,
    FVNetwork,
    Integrator,
    Microstructure,
    VirtualSample,
    celsius_to_kelvin,
)

T22 = celsius_to_kelvin(22)
EXCHANGE_S = 59 * 3600
STORAGE_S = 16 * 86400


def p1_problem(seed: int = 0):
    micro = Microstructure.polycrystal(500e-6, 200e-6, 1e-6, seed=seed, spread_sigma=np.log(2))
    net = FVNetwork.from_microstructure(micro)
    coeff = Conductivities(
        float(BulkDiffusivity.paper_default()(T22)), float(BoundaryConductance.paper_default()(T22))
    )
    ny, nx = micro.shape
    mask = np.zeros((ny, nx), dtype=bool)
    mask[:, :10] = True  # the immersed strip next to the liquid level
    return micro, net, coeff, FixedCells(mask.ravel(), 0.95, "bath"), np.full(nx * ny, 0.0759)


def p1_run(net, coeff, bath, c0, *, n_steps=None, control=None):
    it = Integrator(net, control)
    t = time.perf_counter()
    c = it.advance(c0, EXCHANGE_S, coeff, bath, n_steps=n_steps)
    steps = [it.last_steps]
    c = it.advance(c, STORAGE_S, coeff, None, n_steps=n_steps)
    steps.append(it.last_steps)
    return c, time.perf_counter() - t, steps


def p1_fipy(micro, net, coeff, bath, c0, n_steps: int):
    """Same grid, same face conductances, in FiPy: implicit Euler (its standard scheme), the
    bath held by a large implicit source, LU solver with a tight tolerance (FiPy's defaults
    silently return errors up to 0.27 in C on this problem, docs/science.md §5)."""
    import fipy  # noqa: PLC0415 - optional bench dependency

    ny, nx = micro.shape
    h = micro.pixel_m
    mesh = fipy.Grid2D(dx=h, dy=h, nx=nx, ny=ny)
    var = fipy.CellVariable(mesh=mesh, value=c0.copy())
    # face "diffusivity" such that D_face / h = G / area for every interior face
    g = net.conductance(coeff)
    d_face = fipy.FaceVariable(mesh=mesh, value=0.0)
    fc = mesh.faceCellIDs
    ids = np.asarray(fc.filled(-1))
    lookup = {}
    for k, (i, j) in enumerate(zip(net.face_i, net.face_j, strict=True)):
        lookup[(min(i, j), max(i, j))] = g[k] * h / h  # area = h, distance = h
    vals = np.zeros(mesh.numberOfFaces)
    for f in range(mesh.numberOfFaces):
        a, b = ids[0, f], ids[1, f]
        if a >= 0 and b >= 0:
            vals[f] = lookup[(min(a, b), max(a, b))]
    d_face.setValue(vals)
    big = 1e8  # 1/s: holds the bath cells to ~1e-8 (far above any exchange rate)
    held = fipy.CellVariable(mesh=mesh, value=bath.mask.astype(float))
    eq_bath = (fipy.TransientTerm() == fipy.DiffusionTerm(coeff=d_face)
               - fipy.ImplicitSourceTerm(coeff=big * held) + big * held * 0.95)
    eq_sealed = fipy.TransientTerm() == fipy.DiffusionTerm(coeff=d_face)
    # FiPy scales its stopping test by the right-hand side, which the bath source makes huge:
    # judge convergence against the initial residual instead
    solver = fipy.LinearLUSolver(tolerance=1e-12, criterion="initial", iterations=10)
    t = time.perf_counter()
    for eq, dur in ((eq_bath, EXCHANGE_S), (eq_sealed, STORAGE_S)):
        dt = dur / n_steps
        for _ in range(n_steps):
            eq.solve(var=var, dt=dt, solver=solver)
    return np.asarray(var.value), time.perf_counter() - t


def p2_run(seed: int = 0):
    t = time.perf_counter()
    sample = VirtualSample.paper_default(
        seed, window_m=(-20e-6, 580e-6, 0.0, 200e-6), line_extent_m=(-1e-3, 6e-3)
    )
    sample.set_environment(0.0, temperature_K=T22, immersed=True)
    t1 = 63 * 3600
    sample.set_environment(t1, temperature_K=celsius_to_kelvin(200), immersed=False)
    x = np.linspace(0.025e-3, 5.975e-3, 120)
    prof = sample.profile(x, t1 + 3.8 * 3600)
    return time.perf_counter() - t, sample, prof


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--no-fipy", action="store_true")
    parser.add_argument("--fipy-steps", type=int, default=128,
                        help="implicit-Euler steps per segment for FiPy (accuracy ~1e-3)")
    args = parser.parse_args()

    micro, net, coeff, bath, c0 = p1_problem()
    ref, ref_s, _ = p1_run(net, coeff, bath, c0, n_steps=400)
    c, p1_s, steps = p1_run(net, coeff, bath, c0)
    p1_err = float(np.max(np.abs(c - ref)))
    fipy_ratio = None
    fipy_s = fipy_err = None
    if not args.no_fipy:
        try:
            cf, fipy_s = p1_fipy(micro, net, coeff, bath, c0, n_steps=args.fipy_steps)
            fipy_err = float(np.max(np.abs(cf - ref)))
            fipy_ratio = fipy_s / p1_s
        except ImportError:
            pass
    p2_s, sample, prof = p2_run()
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

    rows = [
        ("P1 reference (400 steps/segment)", f"{ref_s:8.2f} s", "1.00"),
        (f"P1 lltolab (steps {steps})", f"{p1_s:8.2f} s", f"{p1_s / ref_s:.3f} of reference"),
        ("P1 max |dC| vs reference", f"{p1_err:.2e}", "target <= 1e-3"),
    ]
    if fipy_s is not None:
        rows.append((f"P1 FiPy, same grid, {args.fipy_steps} implicit-Euler steps",
                     f"{fipy_s:8.2f} s",
                     f"{fipy_ratio:.1f}x lltolab (max |dC| {fipy_err:.1e})"))
    else:
        rows.append(("P1 FiPy", "not run", "pip install -e '.[bench]'"))
    truth = sample.truth(celsius_to_kelvin(200))
    rows += [
        ("P2 6 mm strip, 63 h + 3.8 h @ 200 C", f"{p2_s:8.2f} s", "target <= 10 s"),
        ("P2 C at 1 / 3 mm", f"{prof[19]:.4f} / {prof[59]:.4f}",
         f"D_eff(200 C) = {truth['d_eff_m2_s'] * 1e4:.2e} cm2/s"),
        ("peak memory", f"{peak_mb:8.0f} MB", ""),
    ]
    for name, val, note in rows:
        print(f"{name:40s} {val:>14s}  {note}")
    if args.json:
        print(json.dumps({"p1_s": p1_s, "p1_max_err": p1_err, "p1_fipy_ratio": fipy_ratio,
                          "p2_s": p2_s, "peak_mem_mb": peak_mb}))


if __name__ == "__main__":
    main()
