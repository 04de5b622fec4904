"""Synthetic SIMS images from the twin and the simulated SurfaceLab's renderer (no lab run).

``synthetic_image(seed)`` builds the paper-default virtual sample of that seed, takes it
through 59 h of exchange at 22 °C, a 10 min transfer on the bench and a quench to −110 °C,
and renders one image of the default raster with the simulator's counting model (dead time,
default dose ~1e3 counts per pixel) and the etched micrograph of the same area.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from lltolab.diffusion import VirtualSample, celsius_to_kelvin
from lltolab.sim_devices import SimsSettings, SurfaceLabSimulator
from lltolab.sim_devices._clock import VirtualClock

T22 = celsius_to_kelvin(22)
T_CRYO = celsius_to_kelvin(-110)
EXCHANGE_S = 59 * 3600.0


def synthetic_image(seed: int, *, settings: SimsSettings | None = None,
                    window_m: tuple[float, float, float, float] = (-10e-6, 530e-6, 0.0, 210e-6),
                    exchange_s: float = EXCHANGE_S, **sample_kw: Any) -> dict[str, Any]:
    """Counts, micrograph, history and truth of one simulated image (seeded)."""
    sample = VirtualSample.paper_default(seed, window_m=window_m, **sample_kw)
    sample.set_environment(0.0, temperature_K=T22, immersed=True)
    sample.set_environment(exchange_s, temperature_K=T22, immersed=False)
    sample.set_environment(exchange_s + 600.0, temperature_K=T_CRYO, immersed=False)
    settings = settings or SimsSettings()
    t_img = exchange_s + 1200.0
    with tempfile.TemporaryDirectory() as tmp:
        sim = SurfaceLabSimulator(sample, VirtualClock(1.0), tmp, settings=settings,
                                  seed=seed + 1000)
        c0 = sim.true_c_under_raster(sample.field(t_img))
        c1 = sim.true_c_under_raster(sample.field(t_img + settings.duration_s))
        c = 0.5 * (c0 + c1)
        i6, i7 = sim.count(c, settings.pulses_per_pixel)
        micrograph = np.load(sim.write_micrograph(Path(tmp, "m").name))
    fx, fy = settings.field_of_view_um
    nx, ny = settings.pixels
    history = [dict(s.__dict__) for s in sample.history(until_s=t_img)]
    for h in history:
        h["temperature_K"] = float(h["temperature_K"])
    truth = sample.truth(T22)
    return {
        "i6": i6, "i7": i7, "n_pulses": settings.pulses_per_pixel,
        "pixel_um": (fx / nx, fy / ny), "micrograph": micrograph, "history": history,
        "true_c": c, "temperature_K": T22,
        "truth": {"dgb_over_delta_cm_s": truth["k_gb_m_s"] * 100
                  * float(np.median(sample.micro.spread)),
                  "k_nominal_cm_s": truth["k_gb_m_s"] * 100,
                  "d_bulk_cm2_s": truth["d_bulk_m2_s"] * 1e4,
                  "d_eff_cm2_s": truth["d_eff_m2_s"] * 1e4},
    }
