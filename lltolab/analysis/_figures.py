"""Figures of the analysis (matplotlib, Agg canvas, no pyplot state): PNG files named after
the run and the quantity, ``<run>_<quantity>.png``."""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:  # matplotlib is imported when a figure is drawn, not with the package
    from matplotlib.figure import Figure

    from ._arrhenius import ArrheniusFit
    from ._boundaries import BoundaryAnalysis

__all__ = ["figure_path", "plot_c_map", "plot_boundary_profiles", "plot_profiles",
           "plot_arrhenius"]

_TABLE_ROWS = 18
_STEP_COLUMNS = ("x (µm)", "y (µm)", "angle (°)", "length (µm)", "ΔC", "−dC/dn (cm⁻¹)",
                 "D*_gb/δ (cm/s)")


def figure_path(folder: str | Path, run: str, quantity: str) -> Path:
    """``folder/<run>_<quantity>.png`` with unsafe characters replaced; creates the folder."""
    safe = "_".join(re.sub(r"[^A-Za-z0-9_.+-]+", "-", str(p)).strip("-") or "x"
                    for p in (run, quantity))
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    return folder / f"{safe}.png"


def _figure(**kw):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(**kw)
    FigureCanvasAgg(fig)
    return fig


def _save(fig: Figure, path: Path) -> Path:
    # zlib level 1: half the time of the default level for 2 % larger files
    fig.savefig(path, dpi=110, pil_kwargs={"compress_level": 1})
    return path


def _step_table(analysis: BoundaryAnalysis, rows: int = _TABLE_ROWS) -> str:
    """The selected boundaries with the largest steps ΔC (at most ``rows``) as a text table:
    position, angle, length, ΔC, gradient and D*_gb/δ with their standard errors."""
    chosen = sorted(analysis.selected, key=lambda s: -s.step)[:rows]
    cells = [[f"{s.x_cm * 1e4:.0f}", f"{s.y_cm * 1e4:.0f}", f"{s.angle_deg:.0f}",
              f"{s.length_cm * 1e4:.0f}", f"{s.step:.4f} ± {s.step_err:.4f}",
              f"{s.gradient_per_cm:.3g} ± {s.gradient_err:.2g}",
              f"{s.dgb_over_delta:.3g} ± {s.dgb_over_delta_err:.2g}"] for s in chosen]
    return _text_table(_STEP_COLUMNS, cells)


def _text_table(labels: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """Rows of text cells as aligned columns (right-aligned, header underlined)."""
    widths = [max(len(str(v)) for v in col) for col in zip(labels, *rows, strict=False)]

    def line(cells: Sequence[str]) -> str:
        return "   ".join(f"{v:>{w}}" for v, w in zip(cells, widths, strict=True))

    return "\n".join([line(labels), line(["─" * w for w in widths]), *map(line, rows)])


def _outline(ids: np.ndarray) -> np.ndarray:
    b = np.zeros(ids.shape, dtype=bool)
    b[:, 1:] |= ids[:, 1:] != ids[:, :-1]
    b[1:, :] |= ids[1:, :] != ids[:-1, :]
    return b


def plot_c_map(
    c_map: np.ndarray,
    path: str | Path,
    *,
    pixel_cm: float | tuple[float, float] = 1e-4,
    analysis: BoundaryAnalysis | None = None,
    title: str = "",
) -> Path:
    """C map (x = distance from the liquid level, µm) with the analysed boundaries overlaid
    (grey lines; selected boundaries marked and coloured by D*_gb/δ) and, when an analysis is
    given, a table of the boundary steps (the selected ones with the largest steps)."""
    c = np.asarray(c_map, dtype=float)
    px, py = (pixel_cm, pixel_cm) if np.ndim(pixel_cm) == 0 else pixel_cm  # type: ignore[misc]
    ny, nx = c.shape
    extent = (0.0, nx * px * 1e4, 0.0, ny * py * 1e4)
    from matplotlib.colors import LogNorm

    fig = _figure(figsize=(12, 7.5) if analysis is not None else (10, 4.5))
    if analysis is not None:
        ax = fig.add_axes((0.06, 0.45, 0.86, 0.5))
        cax = fig.add_axes((0.93, 0.45, 0.015, 0.5))
        tab = fig.add_axes((0.02, 0.01, 0.96, 0.36))
        tab.axis("off")
    else:
        ax = fig.add_axes((0.07, 0.12, 0.82, 0.78))
        cax = fig.add_axes((0.91, 0.12, 0.02, 0.78))
    im = ax.imshow(c, origin="lower", extent=extent, cmap="viridis", aspect="equal",
                   interpolation="nearest")
    fig.colorbar(im, cax=cax, label="⁶Li fraction C")
    ax.set_xlabel("x from liquid level (µm)")
    ax.set_ylabel("y (µm)")
    ax.set_title(title or "⁶Li fraction")
    if analysis is not None:
        edge = np.ma.masked_where(~_outline(analysis.grain_ids), np.ones(c.shape))
        ax.imshow(edge, origin="lower", extent=extent, cmap="gray", vmin=0, vmax=2,
                  alpha=0.6, aspect="equal", interpolation="nearest")
        sel = [s for s in analysis.selected if s.dgb_over_delta > 0]
        if sel:
            ks = np.array([s.dgb_over_delta for s in sel])
            sc = ax.scatter([s.x_cm * 1e4 for s in sel], [s.y_cm * 1e4 for s in sel], c=ks,
                            s=14, cmap="plasma", norm=LogNorm(ks.min(), max(ks.max(),
                                                                             ks.min() * 1.01)),
                            edgecolors="white", linewidths=0.4)
            fig.colorbar(sc, ax=ax, orientation="horizontal", fraction=0.05, pad=0.18,
                         label="D*_gb/δ (cm/s)")
        summ = analysis.summary()
        med = summ["median_dgb_over_delta_cm_s"]
        head = (f"{summ['n_selected']} of {summ['n_boundaries']} boundaries selected; median "
                f"D*_gb/δ = {med:.3g} cm/s" if med is not None else "no boundary selected")
        tab.set_title(head, fontsize=9, loc="left")
        if analysis.selected:
            # one monospace block (a table of 133 cell artists drew slower and cut off its last row)
            tab.text(0.0, 1.0, _step_table(analysis), transform=tab.transAxes,
                     family="monospace", fontsize=8, va="top", ha="left")
    return _save(fig, Path(path))


def plot_profiles(
    x_cm: Sequence[np.ndarray],
    profiles: Sequence[np.ndarray],
    labels: Sequence[str],
    path: str | Path,
    *,
    models: Sequence[tuple[np.ndarray, np.ndarray, str]] = (),
    title: str = "",
) -> Path:
    """Measured profiles (points) with model curves ``(x_cm, c, label)`` (lines)."""
    fig = _figure(figsize=(8, 5))
    ax = fig.add_subplot(1, 1, 1)
    for i, (x, c, lab) in enumerate(zip(x_cm, profiles, labels, strict=True)):
        ax.plot(np.asarray(x) * 10.0, c, ".", ms=3, color=f"C{i}", label=lab)
    for j, (x, c, lab) in enumerate(models):
        ax.plot(np.asarray(x) * 10.0, c, "-", lw=1.3, color=f"C{j + 1}" if "erfc" not in lab
                else "k", label=lab)
    ax.set_xlabel("x from liquid level (mm)")
    ax.set_ylabel("⁶Li fraction C")
    ax.set_title(title or "profiles")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    return _save(fig, Path(path))


def plot_arrhenius(
    series: Mapping[str, tuple[np.ndarray, np.ndarray, np.ndarray | None]],
    path: str | Path,
    *,
    fits: Mapping[str, ArrheniusFit] | None = None,
    title: str = "",
) -> Path:
    """log10 D against 1000/T for named series ``name -> (T_K, D, err or None)``, with the
    fitted Arrhenius lines and their energies in the legend."""
    fig = _figure(figsize=(7, 5))
    ax = fig.add_subplot(1, 1, 1)
    fits = fits or {}
    for i, (name, (t, d, err)) in enumerate(series.items()):
        t = np.asarray(t, dtype=float)
        d = np.asarray(d, dtype=float)
        ok = np.isfinite(d) & (d > 0)
        if not ok.any():
            continue
        yerr = None
        if err is not None:
            e = np.asarray(err, dtype=float)[ok]
            yerr = np.abs(np.vstack([np.log10(d[ok]) - np.log10(np.maximum(d[ok] - e,
                                                                            d[ok] * 1e-3)),
                                     np.log10(d[ok] + e) - np.log10(d[ok])]))
        label = name
        if name in fits:
            f = fits[name]
            se = f"±{f.ea_stderr_eV:.2f}" if math.isfinite(f.ea_stderr_eV) else ""
            label = f"{name}: Ea = {f.ea_eV:.2f}{se} eV"
            tt = np.linspace(t[ok].min() * 0.97, t[ok].max() * 1.03, 50)
            ax.plot(1000.0 / tt, np.log10(f.predict(tt)), "-", color=f"C{i}", lw=1)
        ax.errorbar(1000.0 / t[ok], np.log10(d[ok]), yerr=yerr, fmt="o", color=f"C{i}",
                    label=label, ms=5, capsize=2)
    ax.set_xlabel("1000 / T (1/K)")
    ax.set_ylabel("log10 D (cm²/s)")
    ax.set_title(title or "Arrhenius")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    return _save(fig, Path(path))


def plot_boundary_profiles(
    analysis: BoundaryAnalysis,
    c_map: np.ndarray,
    path: str | Path,
    *,
    n: int = 6,
    title: str = "",
) -> Path:
    """Profiles across the ``n`` selected boundaries with the largest steps (bin means along
    the boundary) with the fitted quadratics, as the paper's Fig. 3e."""
    from ._boundaries import boundary_profile

    order = sorted((i for i, s in enumerate(analysis.steps) if s.selected),
                   key=lambda i: -analysis.steps[i].step)[:max(1, int(n))]
    cols = 3
    rows = max(1, math.ceil(len(order) / cols))
    fig = _figure(figsize=(11, 3.2 * rows + 0.6))
    fig.suptitle(title or "profiles across boundaries")
    for k, i in enumerate(order):
        st = analysis.steps[i]
        prof = boundary_profile(analysis, c_map, i)
        ax = fig.add_subplot(rows, cols, k + 1)
        ax.plot(prof["s_cm"] * 1e4, prof["c"], "o", ms=3)
        ax.plot(prof["model_s_cm"] * 1e4, prof["model_c"], "-", color="k", lw=1)
        ax.axvline(0.0, color="grey", lw=0.6, ls=":")
        ax.set_title(f"({st.x_cm * 1e4:.0f}, {st.y_cm * 1e4:.0f}) µm  ΔC={st.step:.3f}\n"
                     f"−dC/dn={st.gradient_per_cm:.2g} cm⁻¹  D*_gb/δ={st.dgb_over_delta:.2g} cm/s",
                     fontsize=8)
        ax.set_xlabel("distance across boundary (µm)", fontsize=8)
        ax.set_ylabel("C", fontsize=8)
        ax.tick_params(labelsize=7)
    if not order:
        ax = fig.add_subplot(1, 1, 1)
        ax.text(0.5, 0.5, "no boundary selected", ha="center", va="center")
        ax.axis("off")
    _grid_margins(fig, rows, cols)
    return _save(fig, Path(path))


def _grid_margins(fig: Figure, rows: int, cols: int) -> None:
    """Fixed margins (inches) for a grid of axes with two-line titles under a suptitle.

    Close to what ``tight_layout`` finds for these figures (checked on the rendered PNG),
    without its extra draw of the figure (about 0.4 s of the figure's 1.1 s).
    """
    w, h = fig.get_size_inches()
    top, bottom, left, right = 0.95, 0.5, 0.6, 0.15  # suptitle + title; labels; ylabel
    gap_y, gap_x = 0.95, 0.7  # x label of a row + title of the next; y tick labels + label
    ax_h = (h - top - bottom - (rows - 1) * gap_y) / rows
    ax_w = (w - left - right - (cols - 1) * gap_x) / cols
    fig.subplots_adjust(left=left / w, right=1 - right / w, bottom=bottom / h,
                        top=1 - top / h, hspace=gap_y / ax_h, wspace=gap_x / ax_w)
