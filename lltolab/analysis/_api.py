"""Function-level entry points: plain (JSON-able) dicts plus figure paths.

The ``lltolab analyze RUN...`` command only loads a run's data and calls one of these:
:func:`analyze_image` for SIMS images, :func:`analyze_profiles` for line profiles,
:func:`analyze_campaign` for a set of results at several temperatures.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ._arrhenius import fit_arrhenius
from ._boundaries import DEFAULT_D_BULK_CM2_S, DEFAULT_DELTA_CM, analyze_boundaries
from ._checks import as_positive
from ._erfc import fit_erfc_profile
from ._evolution import fit_time_evolution
from ._figures import (
    figure_path,
    plot_arrhenius,
    plot_boundary_profiles,
    plot_c_map,
    plot_profiles,
)
from ._fraction import isotope_fraction
from ._transport import haven_ratio, nernst_einstein_d, series_deff

__all__ = ["analyze_image", "analyze_profiles", "analyze_campaign"]

C_NATURAL = 0.0759
C_SOLUTION = 0.95


def _clean(obj: Any) -> Any:
    """Make numbers JSON-able (NaN/inf -> None, numpy scalars -> Python)."""
    if isinstance(obj, dict):
        return {str(k): _clean(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_clean(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return _clean(obj.tolist())
    if isinstance(obj, np.integer | np.bool_):
        return obj.item()
    if isinstance(obj, float | np.floating):
        f = float(obj)
        return f if math.isfinite(f) else None
    return obj


def analyze_image(
    c_map: np.ndarray | None = None,
    *,
    i6: np.ndarray | None = None,
    i7: np.ndarray | None = None,
    n_pulses: int | None = None,
    sigma_map: np.ndarray | None = None,
    pixel_um: float | tuple[float, float] = 1.0,
    run: str = "image",
    d_bulk: float = DEFAULT_D_BULK_CM2_S,
    delta_cm: float = DEFAULT_DELTA_CM,
    temperature_K: float | None = None,
    boundary_map: np.ndarray | None = None,
    grain_ids: np.ndarray | None = None,
    figures_dir: str | Path | None = None,
    **boundary_options: Any,
) -> dict[str, Any]:
    """Boundary-step analysis of one SIMS image.

    Give either ``c_map`` (with optional ``sigma_map``) or the ⁶Li/⁷Li counts ``i6``, ``i7``
    (+ ``n_pulses`` for the dead-time correction). ``pixel_um`` is the pixel pitch (µm; a pair
    for non-square pixels). ``d_bulk`` (cm²/s) is D*_bulk at the temperature the map
    represents (``temperature_K``, recorded in the result). Extra keyword arguments go to
    :func:`analyze_boundaries`.

    Returns
    -------
    dict
        ``run``, ``kind`` ('image'), ``shape``, ``pixel_um``, ``temperature_K``,
        ``c_mean``, ``n_saturated``, ``boundaries`` (summary + per-boundary table),
        ``median_dgb_over_delta_cm_s``, ``median_dgb_cm2_s`` and ``figures`` (paths).
    """
    n_sat = 0
    if c_map is None:
        if i6 is None or i7 is None:
            raise ValueError("give c_map, or both i6 and i7 counts")
        frac = isotope_fraction(i6, i7, n_pulses)
        c = frac.c
        sigma_map = frac.sigma if sigma_map is None else sigma_map
        n_sat = int(frac.saturated.sum())
    else:
        if i6 is not None or i7 is not None:
            raise ValueError("give either c_map or counts (i6, i7), not both")
        c = np.asarray(c_map, dtype=float)
    if np.ndim(pixel_um) == 0:
        px = py = as_positive("pixel_um", pixel_um)
    else:
        px, py = (as_positive("pixel_um[x]", pixel_um[0]),  # type: ignore[index]
                  as_positive("pixel_um[y]", pixel_um[1]))  # type: ignore[index]
    pixel_cm = (px * 1e-4, py * 1e-4)
    res = analyze_boundaries(c, pixel_cm=pixel_cm, d_bulk=d_bulk, delta_cm=delta_cm,
                             grain_ids=grain_ids, boundary_map=boundary_map,
                             sigma_map=sigma_map, **boundary_options)
    summary = res.summary()
    out: dict[str, Any] = {
        "run": run, "kind": "image", "shape": list(c.shape), "pixel_um": [px, py],
        "temperature_K": temperature_K, "c_mean": float(np.nanmean(c)),
        "n_saturated": n_sat, "boundaries": res.to_dict(),
        "median_dgb_over_delta_cm_s": summary["median_dgb_over_delta_cm_s"],
        "median_stderr_cm_s": summary["median_stderr_cm_s"],
        "median_dgb_cm2_s": summary["median_dgb_cm2_s"],
        "figures": [],
    }
    if figures_dir is not None:
        p = plot_c_map(c, figure_path(figures_dir, run, "c_map_boundaries"),
                       pixel_cm=pixel_cm, analysis=res, title=f"{run}: ⁶Li fraction")
        out["figures"].append(str(p))
        p = plot_boundary_profiles(res, c, figure_path(figures_dir, run, "boundary_profiles"),
                                   title=f"{run}: profiles across boundaries")
        out["figures"].append(str(p))
    return _clean(out)


def analyze_profiles(
    x_cm: np.ndarray | Sequence[np.ndarray],
    profiles: Sequence[np.ndarray],
    times_s: Sequence[float] | None = None,
    *,
    run: str = "profiles",
    exchange_s: float | None = None,
    c0: float = C_NATURAL,
    cs: float = C_SOLUTION,
    fit_x0: bool = True,
    free_c0: bool = False,
    free_cs: bool = False,
    sigma: Sequence[np.ndarray] | None = None,
    domain_cm: tuple[float, float] | None = None,
    outside: tuple[float | None, float | None] = (None, None),
    width_cm: float | None = None,
    figures_dir: str | Path | None = None,
) -> dict[str, Any]:
    """D*_eff from line profiles.

    For the time evolution give ``domain_cm``, the sealed sample's extent along x (e.g.
    (-0.1, 0.9) for an edge dipped 1 mm of a 10 mm sample), and ``outside`` = (C of the
    formerly immersed part, None) when the profiles start at the liquid level: sealing the
    model at the first measured point ignores that ⁶Li (D*_eff came out 80 % low on the twin).

    With ``exchange_s`` (duration of the exchange before the first profile, s) the first
    profile is fitted with eq. 4 (``erfc``); with two or more profiles and ``times_s`` the
    sealed evolution is fitted (``time_evolution``, the paper's most reliable D*_eff).

    Returns
    -------
    dict
        ``run``, ``kind`` ('profiles'), ``erfc`` and/or ``time_evolution`` results,
        ``d_eff_cm2_s`` (time evolution if available, else erfc) and ``figures``.
    """
    profs = [np.asarray(p, dtype=float) for p in profiles]
    if not profs:
        raise ValueError("profiles is empty")
    if isinstance(x_cm, np.ndarray) and x_cm.ndim == 1 or (
            len(x_cm) and np.ndim(x_cm[0]) == 0):  # type: ignore[arg-type]
        xs = [np.asarray(x_cm, dtype=float)] * len(profs)
    else:
        xs = [np.asarray(v, dtype=float) for v in x_cm]  # type: ignore[union-attr]
    out: dict[str, Any] = {"run": run, "kind": "profiles", "n_profiles": len(profs),
                           "figures": []}
    models = []
    erfc = None
    if exchange_s is not None:
        sig0 = None if sigma is None else sigma[0]
        erfc = fit_erfc_profile(xs[0], profs[0], exchange_s, c0=c0, cs=cs, fit_x0=fit_x0,
                                free_c0=free_c0, free_cs=free_cs, sigma=sig0)
        out["erfc"] = erfc.to_dict()
        xx = np.linspace(xs[0].min(), xs[0].max(), 400)
        models.append((xx, erfc.predict(xx), f"erfc, D = {erfc.d_eff:.3g} cm²/s"))
    evo = None
    if len(profs) >= 2:
        if times_s is None:
            raise ValueError("times_s is needed to fit the evolution of several profiles")
        evo = fit_time_evolution(xs, profs, times_s, sigma=sigma, domain_cm=domain_cm,
                                 outside=outside, width_cm=width_cm)
        out["time_evolution"] = evo.to_dict()
        for i in range(1, len(profs)):
            xx = np.sort(xs[i])
            models.append((xx, evo.predict(xx, evo.times_s[i]),
                           f"sealed model t+{evo.times_s[i] / 86400:.3g} d"))
    if erfc is None and evo is None:
        raise ValueError("nothing to fit: give exchange_s (erfc) or >= 2 profiles with times_s")
    best = evo if evo is not None else erfc
    out["d_eff_cm2_s"] = best.d_eff  # type: ignore[union-attr]
    out["d_eff_stderr_cm2_s"] = best.stderr  # type: ignore[union-attr]
    out["method"] = "time_evolution" if evo is not None else "erfc"
    if figures_dir is not None:
        labels = [f"profile {i}" + (f" (t = {times_s[i]:.3g} s)" if times_s is not None else "")
                  for i in range(len(profs))]
        p = plot_profiles(xs, profs, labels, figure_path(figures_dir, run, "profiles_fit"),
                          models=models, title=f"{run}: D*_eff = {best.d_eff:.3g} cm²/s")
        out["figures"].append(str(p))
    return _clean(out)


_CAMPAIGN_KEYS = ("d_eff_cm2_s", "dgb_over_delta_cm_s", "d_bulk_cm2_s", "sigma_S_per_cm")


def analyze_campaign(
    points: Sequence[Mapping[str, Any]],
    *,
    run: str = "campaign",
    grain_size_cm: float = 16e-4,
    delta_cm: float = DEFAULT_DELTA_CM,
    n_per_cm3: float = 5.0e21,
    rtol: float = 0.15,
    figures_dir: str | Path | None = None,
) -> dict[str, Any]:
    """Arrhenius analysis of results at several temperatures.

    Parameters
    ----------
    points : sequence of mappings
        One per temperature: ``temperature_K`` (required) and any of ``d_eff_cm2_s``,
        ``dgb_over_delta_cm_s`` (e.g. an image's median), ``d_bulk_cm2_s``,
        ``sigma_S_per_cm`` (bulk conductivity), each optionally with ``<key>_stderr``
        (e.g. ``d_eff_cm2_s_stderr``).
    grain_size_cm : float
        l for (l/δ) D*_gb = l · D*_gb/δ and the series model (cm).
    delta_cm : float
        δ (cm) for D*_gb.
    n_per_cm3 : float
        Li concentration for Nernst–Einstein (cm⁻³).
    rtol : float
        Tolerance of the series-model consistency check per temperature.

    Returns
    -------
    dict
        ``arrhenius`` (fits of 'D_eff', '(l/δ)D_gb', 'D_bulk', 'D_sigma' where >= 2 points),
        ``points`` (with derived D*_gb, (l/δ)D*_gb, series D*_eff, Haven ratio),
        ``consistency`` (series-model check per temperature), ``figures``.
    """
    if len(points) == 0:
        raise ValueError("points is empty")
    grain_size_cm = as_positive("grain_size_cm", grain_size_cm)
    delta_cm = as_positive("delta_cm", delta_cm)
    rows = []
    for i, p in enumerate(points):
        if "temperature_K" not in p:
            raise ValueError(f"points[{i}] has no temperature_K")
        t = as_positive(f"points[{i}].temperature_K", p["temperature_K"])
        row: dict[str, Any] = {"temperature_K": t}
        for k in _CAMPAIGN_KEYS:
            if p.get(k) is not None:
                row[k] = as_positive(f"points[{i}].{k}", p[k])
                if p.get(f"{k}_stderr") is not None:
                    row[f"{k}_stderr"] = as_positive(f"points[{i}].{k}_stderr",
                                                     p[f"{k}_stderr"])
        if "dgb_over_delta_cm_s" in row:
            row["dgb_cm2_s"] = row["dgb_over_delta_cm_s"] * delta_cm
            row["l_over_delta_dgb_cm2_s"] = row["dgb_over_delta_cm_s"] * grain_size_cm
        if "sigma_S_per_cm" in row:
            row["d_sigma_cm2_s"] = float(nernst_einstein_d(row["sigma_S_per_cm"], t,
                                                           n_per_cm3))
            if "d_bulk_cm2_s" in row:
                row["haven_ratio"] = float(haven_ratio(row["d_bulk_cm2_s"],
                                                       row["d_sigma_cm2_s"]))
        if "d_bulk_cm2_s" in row and "dgb_over_delta_cm_s" in row:
            row["series_d_eff_cm2_s"] = float(series_deff(row["d_bulk_cm2_s"],
                                                          row["dgb_over_delta_cm_s"],
                                                          grain_size_cm))
        rows.append(row)
    names = {"D_eff": "d_eff_cm2_s", "(l/δ)D_gb": "l_over_delta_dgb_cm2_s",
             "D_bulk": "d_bulk_cm2_s", "D_sigma": "d_sigma_cm2_s"}
    series: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray | None]] = {}
    fits = {}
    for label, key in names.items():
        have = [r for r in rows if key in r]
        if not have:
            continue
        t = np.array([r["temperature_K"] for r in have])
        d = np.array([r[key] for r in have])
        err = None
        src = {"l_over_delta_dgb_cm2_s": "dgb_over_delta_cm_s"}.get(key, key)
        if all(f"{src}_stderr" in r for r in have):
            scale = grain_size_cm if key == "l_over_delta_dgb_cm2_s" else 1.0
            err = np.array([r[f"{src}_stderr"] * scale for r in have])
        series[label] = (t, d, err)
        if len(np.unique(t)) >= 2:
            fits[label] = fit_arrhenius(t, d, sigma=err)
    checks = []
    for r in rows:
        if "series_d_eff_cm2_s" in r and "d_eff_cm2_s" in r:
            rel = abs(r["d_eff_cm2_s"] - r["series_d_eff_cm2_s"]) / r["series_d_eff_cm2_s"]
            checks.append({"temperature_K": r["temperature_K"], "d_eff_cm2_s": r["d_eff_cm2_s"],
                           "series_d_eff_cm2_s": r["series_d_eff_cm2_s"], "rel_diff": rel,
                           "flagged": rel > rtol})
            bound = min(r["d_bulk_cm2_s"], r["l_over_delta_dgb_cm2_s"])
            if r["d_eff_cm2_s"] > bound * (1 + rtol):
                checks[-1]["note"] = "D_eff exceeds the series bound min(D_bulk, (l/δ)D_gb)"
    out: dict[str, Any] = {
        "run": run, "kind": "campaign", "grain_size_cm": grain_size_cm, "delta_cm": delta_cm,
        "points": rows, "arrhenius": {k: f.to_dict() for k, f in fits.items()},
        "consistency": checks, "figures": [],
    }
    if figures_dir is not None and series:
        p = plot_arrhenius(series, figure_path(figures_dir, run, "arrhenius"), fits=fits,
                           title=f"{run}: Arrhenius")
        out["figures"].append(str(p))
    return _clean(out)
