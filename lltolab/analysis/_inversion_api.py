"""Run-level entry point of the image inversion: a JSON-able dict beside the boundary steps."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from lltolab.diffusion import BoundaryConductance, BulkDiffusivity

from ._figures import figure_path
from ._inversion import ImageInversion, invert_image
from ._inversion_figure import plot_inversion

__all__ = ["invert_image_run", "inversion_report", "preferred_dgb_over_delta"]


def invert_image_run(
    i6: np.ndarray,
    i7: np.ndarray,
    *,
    history: Sequence[Any],
    temperature_K: float,
    pixel_um: float | tuple[float, float],
    n_pulses: int | None = None,
    boundary_map: np.ndarray | None = None,
    grain_ids: np.ndarray | None = None,
    run: str = "image",
    figures_dir: str | Path | None = None,
    bulk: BulkDiffusivity | None = None,
    boundary: BoundaryConductance | None = None,
    step_median_cm_s: float | None = None,
) -> dict[str, Any]:
    """:func:`invert_image` on one image run; the summary dict plus the figure's path.

    The figure ``<run>_inversion.png`` shows data, model and residuals (and the boundary-step
    median ``step_median_cm_s`` for comparison). Bad input raises ValueError.
    """
    inv = invert_image(i6, i7, history=history, temperature_K=temperature_K,
                       pixel_um=pixel_um, n_pulses=n_pulses, boundary_map=boundary_map,
                       grain_ids=grain_ids, bulk=bulk, boundary=boundary)
    return inversion_report(inv, pixel_um=pixel_um, run=run, figures_dir=figures_dir,
                            step_median_cm_s=step_median_cm_s)


def inversion_report(
    inv: ImageInversion,
    *,
    pixel_um: float | tuple[float, float],
    run: str = "image",
    figures_dir: str | Path | None = None,
    step_median_cm_s: float | None = None,
) -> dict[str, Any]:
    """The summary dict of a finished :func:`invert_image` and, with ``figures_dir``, the path
    of its figure ``<run>_inversion.png`` (in ``figures``)."""
    out = inv.to_dict()
    out["figures"] = []
    if figures_dir is not None:
        px, py = (pixel_um, pixel_um) if np.ndim(pixel_um) == 0 else pixel_um  # type: ignore
        p = plot_inversion(inv, figure_path(figures_dir, run, "inversion"),
                           pixel_cm=(float(px) * 1e-4, float(py) * 1e-4),
                           step_median_cm_s=step_median_cm_s,
                           title=f"{run}: model-based inversion")
        out["figures"].append(str(p))
    return out


def preferred_dgb_over_delta(image_result: Mapping[str, Any]) -> dict[str, Any]:
    """Which D*_gb/δ (cm/s) an image result reports: the inversion when it converged, else the
    boundary-step median; with its interval (``[low, high]``, None for the steps)."""
    inv = image_result.get("inversion") or {}
    if inv.get("converged") and inv.get("dgb_over_delta_cm_s") is not None:
        return {"dgb_over_delta_cm_s": inv["dgb_over_delta_cm_s"],
                "dgb_over_delta_method": "inversion",
                "dgb_over_delta_cm_s_interval": inv.get("dgb_over_delta_cm_s_interval"),
                "dgb_over_delta_level": inv.get("level")}
    med = image_result.get("median_dgb_over_delta_cm_s")
    ok = med is not None and math.isfinite(float(med))
    return {"dgb_over_delta_cm_s": med if ok else None,
            "dgb_over_delta_method": "boundary_steps" if ok else None,
            "dgb_over_delta_cm_s_interval": None, "dgb_over_delta_level": None}
