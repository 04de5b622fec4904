"""Figure of an image inversion: data, model and residual maps plus column means."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ._figures import _figure, _save

if TYPE_CHECKING:
    from ._inversion import ImageInversion

__all__ = ["plot_inversion"]


def plot_inversion(
    inv: ImageInversion,
    path: str | Path,
    *,
    pixel_cm: float | tuple[float, float] = 1e-4,
    step_median_cm_s: float | None = None,
    title: str = "",
) -> Path:
    """Measured C, model C, Pearson residual (σ units) and the column means of data and model.

    ``step_median_cm_s`` (the boundary-step median, cm/s) is shown beside the inversion's
    D*_gb/δ when given.
    """
    px, py = (pixel_cm, pixel_cm) if np.ndim(pixel_cm) == 0 else pixel_cm  # type: ignore[misc]
    data, model, resid = inv.c_data, inv.c_model, inv.residual
    ny, nx = data.shape
    extent = (0.0, nx * px * 1e4, 0.0, ny * py * 1e4)
    fig = _figure(figsize=(11, 11))
    lo, hi = np.nanpercentile(data, [1, 99])
    panels = [(data, "measured C", "viridis", lo, hi), (model, "model C", "viridis", lo, hi),
              (resid, "Pearson residual (σ)", "RdBu_r", -3.0, 3.0)]
    for i, (img, label, cmap, vmin, vmax) in enumerate(panels):
        ax = fig.add_axes((0.07, 0.71 - 0.215 * i, 0.82, 0.19))
        cax = fig.add_axes((0.91, 0.71 - 0.215 * i, 0.015, 0.19))
        im = ax.imshow(img, origin="lower", extent=extent, cmap=cmap, vmin=vmin, vmax=vmax,
                       aspect="equal", interpolation="nearest")
        fig.colorbar(im, cax=cax, label=label)
        ax.set_ylabel("y (µm)")
        ax.set_xticklabels([])
    ax = fig.add_axes((0.07, 0.05, 0.82, 0.18))
    x_um = (np.arange(nx) + 0.5) * px * 1e4
    fitted = np.isfinite(resid)
    with np.errstate(invalid="ignore", divide="ignore"):
        n = fitted.sum(axis=0)
        d_mean = np.where(fitted, data, 0.0).sum(axis=0) / n
        m_mean = np.where(fitted, model, 0.0).sum(axis=0) / n
    ax.plot(x_um, d_mean, ".", ms=2, color="0.4", label="measured (mean over fitted pixels)")
    ax.plot(x_um, m_mean, "-", color="C3", label="model (same pixels)")
    ax.set_xlim(extent[0], extent[1])
    ax.set_xlabel("x from liquid level (µm)")
    ax.set_ylabel("C")
    ax.legend(fontsize=8)
    lo_k, hi_k = inv.interval_cm_s
    text = (f"inversion: D*_gb/δ = {inv.dgb_over_delta_cm_s:.3g} cm/s "
            f"[{lo_k:.3g}, {hi_k:.3g}] ({inv.level:.0%}), D*_bulk = {inv.d_bulk_cm2_s:.3g} "
            f"cm²/s, deviance/dof = {inv.deviance_per_dof:.3f}")
    if step_median_cm_s is not None:
        text += f"; boundary steps: median {step_median_cm_s:.3g} cm/s"
    fig.suptitle((title + "\n" if title else "") + text, fontsize=9, y=0.975)
    return _save(fig, Path(path))
