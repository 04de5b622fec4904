"""Consistency report: recompute every derivable reported value and flag disagreements.

Given reported values (by default the paper's, docs/science.md §3, under the keys of
:data:`PAPER_VALUES`), every relation the software knows (eq. 3, eq. 5/6 and its bound,
Arrhenius, Nernst–Einstein, Haven ratio) recomputes what it can and compares with what was
reported. Disagreements beyond the tolerance are flagged, not hidden; missing keys skip the
checks that need them. Units: cm, s, K, eV, S/cm, cm⁻³ (as in the key names).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass

from lltolab.diffusion import K_B_EV
from lltolab.vocabulary import BOUNDARY_WIDTH_CM, ROOM_K

from ._checks import as_positive
from ._transport import haven_ratio, nernst_einstein_d, series_deff

__all__ = ["PAPER_VALUES", "ConsistencyCheck", "ConsistencyReport", "consistency_report"]

PAPER_VALUES: dict[str, float] = {
    "d_bulk_cm2_s": 2.6e-8,  # D_NMR,bulk at 22 °C, taken as D*_bulk
    "d_bulk_alt_cm2_s": 2.8e-8,  # the same quantity, printed once
    "delta_cm": BOUNDARY_WIDTH_CM,  # 0.5 nm
    "grain_size_cm": 16e-4,  # EBSD mean 16 µm
    "fig3e_gradient_per_cm": 1.1,
    "fig3e_step": 0.02,
    "fig3e_dgb_cm2_s": 7.6e-14,
    "fig3d_gradient_per_cm": 0.65,
    "fig3d_step": 0.009,
    "fig3d_dgb_cm2_s": 9.2e-14,
    "dgb_over_delta_imaging_cm_s": 1.5e-6,
    "dgb_min_cm2_s": 2.6e-14,
    "dgb_max_cm2_s": 1.5e-13,
    "dgb_mean_cm2_s": 6.8e-14,
    "dgb_abstract_cm2_s": 1.4e-13,
    "series_dgb_over_delta_cm_s": 2.8e-6,  # used in the series-model paragraph
    "series_deff_cm2_s": 2.3e-9,  # its stated result
    "gb_ea_eV": 0.43,  # (l/δ) D*_gb, Fig. 5c
    "gb_prefactor_cm2_s": 0.048,
    "gb_sigma_ea_eV": 0.43,  # (l/δ) D_σ,gb from impedance
    "gb_sigma_prefactor_cm2_s": 0.20,
    "deff_erfc_cm2_s": 8.0e-9,  # 110 h exchange, erfc fit
    "deff_storage_cm2_s": 3.0e-9,  # 2 and 6 weeks of storage
    "deff_anneal_cm2_s": 6.6e-6,  # after 63 h exchange + 3.8 h at 200 °C, as printed
    "anneal_temperature_K": 473.15,
    "sigma_bulk_S_per_cm": 1e-3,  # about 1e-3 S/cm at 27 °C
    "sigma_temperature_K": 300.15,
    "n_li_per_cm3": 5.0e-21,  # as printed (wrong exponent sign)
    "exchange_temperature_K": ROOM_K,
}
"""The paper's reported values (docs/science.md §3), as printed."""


@dataclass(frozen=True)
class ConsistencyCheck:
    """One recomputation.

    Attributes
    ----------
    name : str
        What is checked.
    reported : float
        The reported value (or the bound's subject).
    recomputed : float
        The value recomputed from other reported values (or the bound; NaN for a
        plausibility check, whose limits are in ``formula``).
    rel_diff : float
        |reported − recomputed| / |recomputed| for equalities; for bounds and ranges the
        relative excess beyond the limit (0 when within).
    tolerance : float
        Relative tolerance applied.
    flagged : bool
        True when the disagreement exceeds the tolerance.
    kind : str
        'equal', 'upper_bound', 'range' or 'plausible'.
    formula : str
        How ``recomputed`` was obtained.
    note : str
        Interpretation (likely cause of a disagreement).
    """

    name: str
    reported: float
    recomputed: float
    rel_diff: float
    tolerance: float
    flagged: bool
    kind: str
    formula: str
    note: str = ""

    def to_dict(self) -> dict[str, object]:
        """Plain JSON-able dict."""
        d = asdict(self)
        for k in ("reported", "recomputed", "rel_diff"):
            if not math.isfinite(d[k]):
                d[k] = None
        return d


@dataclass(frozen=True)
class ConsistencyReport:
    """All checks that the given values allowed."""

    checks: tuple[ConsistencyCheck, ...]
    rtol: float

    @property
    def flagged(self) -> list[ConsistencyCheck]:
        """The checks that disagree beyond their tolerance."""
        return [c for c in self.checks if c.flagged]

    @property
    def ok(self) -> bool:
        """True when nothing is flagged."""
        return not self.flagged

    def to_dict(self) -> dict[str, object]:
        """Plain JSON-able dict."""
        return {"rtol": self.rtol, "n_checks": len(self.checks),
                "n_flagged": len(self.flagged), "checks": [c.to_dict() for c in self.checks]}

    def format(self) -> str:
        """A text table, flagged rows marked with '!!'."""
        lines = [f"{'':2} {'check':52} {'reported':>10} {'recomputed':>10} {'diff':>7}"]
        for c in self.checks:
            mark = "!!" if c.flagged else "ok"
            diff = f"{100 * c.rel_diff:6.0f}%" if math.isfinite(c.rel_diff) else "    n/a"
            lines.append(f"{mark:2} {c.name[:52]:52} {c.reported:10.3g} {c.recomputed:10.3g} "
                         f"{diff}")
            if c.flagged and c.note:
                lines.append(f"{'':5}{c.note}")
        return "\n".join(lines)


def _equal(name: str, reported: float, recomputed: float, tol: float, formula: str,
           note_if_flagged: str = "", note: str = "") -> ConsistencyCheck:
    rel = abs(reported - recomputed) / abs(recomputed) if recomputed != 0 else math.inf
    flagged = rel > tol
    return ConsistencyCheck(name, reported, recomputed, rel, tol, flagged, "equal", formula,
                            note_if_flagged if flagged else note)


def _upper(name: str, reported: float, bound: float, tol: float, formula: str,
           note_if_flagged: str = "") -> ConsistencyCheck:
    excess = max(0.0, reported / bound - 1.0)
    flagged = excess > tol
    return ConsistencyCheck(name, reported, bound, excess, tol, flagged, "upper_bound",
                            formula, note_if_flagged if flagged else "")


def consistency_report(
    values: Mapping[str, float] | None = None,
    *,
    rtol: float = 0.15,
    duplicate_rtol: float = 0.01,
    haven_range: tuple[float, float] = (0.05, 2.0),
) -> ConsistencyReport:
    """Recompute every derivable value of ``values`` and flag disagreements.

    Parameters
    ----------
    values : mapping, optional
        Reported values under the keys of :data:`PAPER_VALUES` (default: the paper's).
        Missing keys skip the checks that need them.
    rtol : float
        Relative tolerance of recomputed values (and of bounds).
    duplicate_rtol : float
        Tolerance for one quantity printed twice (should be identical).
    haven_range : (float, float)
        Plausible Haven ratios; outside means an input is wrong (e.g. an exponent's sign).

    Returns
    -------
    ConsistencyReport
    """
    v = dict(PAPER_VALUES if values is None else values)
    for k, x in v.items():
        if not isinstance(x, int | float) or not math.isfinite(float(x)):
            raise ValueError(f"reported value {k!r} must be a finite number, got {x!r}")
    rtol = as_positive("rtol", rtol)
    duplicate_rtol = as_positive("duplicate_rtol", duplicate_rtol)
    checks: list[ConsistencyCheck] = []

    def have(*keys: str) -> bool:
        return all(k in v for k in keys)

    def add(make: Callable[[], ConsistencyCheck], *keys: str) -> None:
        if have(*keys):
            checks.append(make())

    d = v.get("d_bulk_cm2_s", math.nan)
    delta = v.get("delta_cm", math.nan)
    add(lambda: _equal("D*_bulk(22 °C) printed twice", v["d_bulk_alt_cm2_s"], d,
                       duplicate_rtol, "same quantity",
                       "two different values for one quantity; the body's 7.6e-14 D*_gb "
                       "follows from the second one"),
        "d_bulk_cm2_s", "d_bulk_alt_cm2_s")
    for fig in ("fig3e", "fig3d"):
        keys = (f"{fig}_gradient_per_cm", f"{fig}_step", "d_bulk_cm2_s")
        if have(*keys):
            k = d * v[keys[0]] / v[keys[1]]
            add(lambda k=k, fig=fig: _equal(
                f"{fig}: D*_gb = δ D*_bulk (dC/dy)/ΔC (eq. 3)", v[f"{fig}_dgb_cm2_s"],
                k * delta, rtol, "eq. 3 × δ", "the printed D*_gb does not follow from the "
                "printed gradient and step"), f"{fig}_dgb_cm2_s", "delta_cm")
            if fig == "fig3e":
                add(lambda k=k: _equal("imaging D*_gb/δ vs eq. 3 on Fig. 3e",
                                       v["dgb_over_delta_imaging_cm_s"], k, rtol, "eq. 3"),
                    "dgb_over_delta_imaging_cm_s")
    add(lambda: ConsistencyCheck(
        "mean D*_gb within the reported range", v["dgb_mean_cm2_s"],
        math.sqrt(v["dgb_min_cm2_s"] * v["dgb_max_cm2_s"]),
        _range_excess(v["dgb_mean_cm2_s"], v["dgb_min_cm2_s"], v["dgb_max_cm2_s"]), rtol,
        _range_excess(v["dgb_mean_cm2_s"], v["dgb_min_cm2_s"], v["dgb_max_cm2_s"]) > rtol,
        "range", "geometric centre of [min, max]"), "dgb_mean_cm2_s", "dgb_min_cm2_s",
        "dgb_max_cm2_s")
    if have("dgb_abstract_cm2_s", "fig3e_dgb_cm2_s", "fig3d_dgb_cm2_s"):
        body = 0.5 * (v["fig3e_dgb_cm2_s"] + v["fig3d_dgb_cm2_s"])
        note = "the body gives {:.2g} / {:.2g}".format(v["fig3e_dgb_cm2_s"],
                                                       v["fig3d_dgb_cm2_s"])
        if have("series_dgb_over_delta_cm_s", "delta_cm"):
            note += "; the abstract equals {:.2g} cm/s × δ = {:.2g}".format(
                v["series_dgb_over_delta_cm_s"], v["series_dgb_over_delta_cm_s"] * delta)
        checks.append(_equal("abstract D*_gb vs the body's imaging values",
                             v["dgb_abstract_cm2_s"], body, rtol, "mean of Fig. 3e/3d D*_gb",
                             note))
    add(lambda: _equal("D*_gb/δ of the series paragraph vs imaging",
                       v["series_dgb_over_delta_cm_s"], v["dgb_over_delta_imaging_cm_s"], rtol,
                       "imaging value", "the series-model paragraph uses a different D*_gb/δ "
                       "than the imaging"), "series_dgb_over_delta_cm_s",
        "dgb_over_delta_imaging_cm_s")
    if have("series_deff_cm2_s", "series_dgb_over_delta_cm_s", "d_bulk_cm2_s",
            "grain_size_cm"):
        rec = float(series_deff(d, v["series_dgb_over_delta_cm_s"], v["grain_size_cm"]))
        note = ""
        if "dgb_over_delta_imaging_cm_s" in v:
            alt = float(series_deff(d, v["dgb_over_delta_imaging_cm_s"], v["grain_size_cm"]))
            note = (f"the stated result follows from D*_gb/δ = "
                    f"{v['dgb_over_delta_imaging_cm_s']:.2g} cm/s (gives {alt:.2g}), not from "
                    f"{v['series_dgb_over_delta_cm_s']:.2g}")
        checks.append(_equal("series-model D*_eff (eq. 6) from its own inputs",
                             v["series_deff_cm2_s"], rec, rtol, "eq. 6", note))
    if have("deff_storage_cm2_s", "dgb_over_delta_imaging_cm_s", "d_bulk_cm2_s",
            "grain_size_cm"):
        rec = float(series_deff(d, v["dgb_over_delta_imaging_cm_s"], v["grain_size_cm"]))
        checks.append(_equal(
            "storage D*_eff vs eq. 6 (imaging D*_gb/δ, EBSD l)", v["deff_storage_cm2_s"], rec,
            rtol, "eq. 6", "eq. 6 with the EBSD mean l underestimates the polycrystal's own "
            "D*_eff: its effective l is ~1.4x the mean diameter (docs/science.md §5)"))
    add(lambda: _equal("erfc D*_eff vs storage D*_eff", v["deff_erfc_cm2_s"],
                       v["deff_storage_cm2_s"], rtol, "storage (time-evolution) value",
                       "erfc fit overestimates (meniscus raises the exchanged edge); fit x0"),
        "deff_erfc_cm2_s", "deff_storage_cm2_s")
    if have("gb_ea_eV", "gb_prefactor_cm2_s", "grain_size_cm"):
        t_ex = v.get("exchange_temperature_K", ROOM_K)
        lk = v["gb_prefactor_cm2_s"] * math.exp(-v["gb_ea_eV"] / (K_B_EV * t_ex))
        add(lambda: _equal("Arrhenius (l/δ)D*_gb at the exchange T vs imaging D*_gb/δ",
                           v["dgb_over_delta_imaging_cm_s"], lk / v["grain_size_cm"], rtol,
                           "prefactor exp(-Ea/kT) / l"), "dgb_over_delta_imaging_cm_s")
        if have("deff_anneal_cm2_s", "anneal_temperature_K"):
            t_an = v["anneal_temperature_K"]
            bound = v["gb_prefactor_cm2_s"] * math.exp(-v["gb_ea_eV"] / (K_B_EV * t_an))
            checks.append(_upper(
                f"D*_eff after the {t_an - 273.15:.0f} °C anneal <= (l/δ)D*_gb (series bound)",
                v["deff_anneal_cm2_s"], bound, rtol, "eq. 6: D_eff < (l/δ) D*_gb(T)",
                f"exceeds the series bound {bound:.2g} cm²/s; "
                f"probably {v['deff_anneal_cm2_s'] / 10:.2g} (exponent misprint)"))
    if have("gb_prefactor_cm2_s", "gb_sigma_prefactor_cm2_s", "gb_ea_eV", "gb_sigma_ea_eV"):
        hr = v["gb_prefactor_cm2_s"] / v["gb_sigma_prefactor_cm2_s"] * math.exp(
            -(v["gb_ea_eV"] - v["gb_sigma_ea_eV"]) / (K_B_EV * v.get("exchange_temperature_K",
                                                                       ROOM_K)))
        checks.append(_plausible("grain-boundary Haven ratio (tracer / impedance)", hr,
                                 haven_range, "(l/δ)D*_gb / (l/δ)D_σ,gb at the exchange T"))
    if have("sigma_bulk_S_per_cm", "sigma_temperature_K", "n_li_per_cm3", "d_bulk_cm2_s"):
        n = v["n_li_per_cm3"]
        d_sigma = float(nernst_einstein_d(v["sigma_bulk_S_per_cm"], v["sigma_temperature_K"],
                                          n))
        hr = float(haven_ratio(d, d_sigma))
        note = ""
        if n < 1:
            exp10 = math.floor(math.log10(n))
            flipped = n / 10.0**exp10 * 10.0**-exp10
            fixed = float(haven_ratio(d, nernst_einstein_d(v["sigma_bulk_S_per_cm"],
                                                           v["sigma_temperature_K"], flipped)))
            note = (f"n = {n:.2g} cm⁻³ is impossible; with {flipped:.2g} (exponent sign) "
                    f"H_R = {fixed:.2f}")
        checks.append(_plausible("bulk Haven ratio D*_bulk / D_σ (Nernst–Einstein)", hr,
                                 haven_range, "D_σ = σ k_B T / (n q²)", note))
    return ConsistencyReport(tuple(checks), rtol)


def _range_excess(x: float, lo: float, hi: float) -> float:
    if x < lo:
        return (lo - x) / lo
    if x > hi:
        return (x - hi) / hi
    return 0.0


def _plausible(name: str, value: float, rng: tuple[float, float], formula: str,
               note: str = "") -> ConsistencyCheck:
    lo, hi = rng
    excess = _range_excess(value, lo, hi)
    return ConsistencyCheck(name, value, math.nan, excess, 0.0, excess > 0,
                            "plausible", f"{formula}; plausible {lo:g}..{hi:g}",
                            note if excess > 0 else "")
