"""Speed of one simulated SIMS image. Not a test.

Times, for one 512 x 206 image pair (6Li, 7Li; 2048 pulses per pixel):
  render  resample the sample's field to the raster + binomial counting,
  export  write BIF6 + sidecar (temporary name, rename) into the export folder (reported as
          acquire_image() minus a separately timed render),
  convert what SurfaceLabExport does per image: read and check BIF6 + sidecar, dead-time
          corrected C, write the HDF5 asset.
The field comes from lltolab.diffusion.VirtualSample after a 59 h exchange at 22 C (computed once
before timing; diffusion cost is not part of this benchmark). The reference operation is a
numpy binomial draw of the same size (2 x 512 x 206, same N and probabilities) in the same
process; the ratio makes the number comparable across machines. Target: total <= 0.2 s.

Usage: python benchmarks/sims_render.py [--repeat N] [--json]
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

from lltolab.diffusion import VirtualSample
from lltolab.formats import isotope_fraction_map, read_export, write_sims_asset
from lltolab.sim_devices import SimsSettings, SurfaceLabSimulator, VirtualClock
from lltolab.vocabulary import ROOM_K


class FrozenSample:
    """A VirtualSample's field frozen at one time (so only rendering is timed)."""

    def __init__(self, sample: VirtualSample, time_s: float) -> None:
        self._field = sample.field(time_s)
        self.pixel_m = sample.pixel_m
        self.window_m = sample.window_m
        self.boundary_map = sample.boundary_map
        self.history = []

    def field(self, time_s: float) -> np.ndarray:
        return self._field

    def profile(self, x_m, time_s, *, width_m=50e-6):  # not used here
        raise NotImplementedError


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=7, help="timed repetitions (median reported)")
    ap.add_argument("--json", action="store_true", help="last line: one JSON object")
    args = ap.parse_args()

    sample = VirtualSample.paper_default(seed=0)
    sample.set_environment(0.0, temperature_K=ROOM_K, immersed=True)
    frozen = FrozenSample(sample, 59 * 3600.0)

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "export"
        assets = Path(tmp) / "assets"
        assets.mkdir()
        sim = SurfaceLabSimulator(frozen, VirtualClock(), folder, seed=1,
                                  settings=SimsSettings(duration_s=0.0))
        n = sim.settings.pulses_per_pixel
        render, export, convert, total, ref = [], [], [], [], []
        for k in range(args.repeat + 1):  # first round warms caches, not counted
            t0 = time.perf_counter()
            c_true = sim.true_c_under_raster(frozen.field(0.0))
            sim.render_images(c_true)
            t1 = time.perf_counter()  # render alone (again inside acquire_image below)
            t1b = time.perf_counter()
            path = sim.acquire_image()  # render + BIF6 + sidecar (temporary name, rename)
            t2 = time.perf_counter()
            exp = read_export(path)
            i6, i7 = exp.select(6.015).counts, exp.select(7.016).counts
            c, _ = isotope_fraction_map(i6, i7, exp.sidecar.pulses_per_pixel)
            write_sims_asset(assets / f"a{k}.h5",
                             {"li6_counts": i6, "li7_counts": i7, "c_fraction": c})
            t3 = time.perf_counter()
            # reference: the bare binomial draw of the same size
            y = sim.settings.li_ions_per_pulse
            p = -np.expm1(-y * np.stack([c_true, 1.0 - c_true]))
            t4 = time.perf_counter()
            sim.rng.binomial(n, p)
            t5 = time.perf_counter()
            if k:
                render.append(t1 - t0)
                export.append(t2 - t1b - (t1 - t0))
                convert.append(t3 - t2)
                total.append(t3 - t1b)
                ref.append(t5 - t4)

    med = statistics.median
    result = {
        "render_s": med(render), "export_s": med(export), "convert_s": med(convert),
        "total_s": med(total), "reference_binomial_s": med(ref),
        "ratio_to_reference": med(total) / med(ref), "target_s": 0.2,
        "meets_target": med(total) <= 0.2, "pixels": [512, 206], "pulses_per_pixel": n,
    }
    print(f"one 512 x 206 image pair, {n} pulses/pixel, median of {args.repeat}:")
    print(f"  render (resample + binomial counts) {result['render_s'] * 1e3:7.1f} ms")
    print(f"  export (BIF6 + sidecar, rename)     {result['export_s'] * 1e3:7.1f} ms")
    print(f"  convert (read, C, HDF5 asset)       {result['convert_s'] * 1e3:7.1f} ms")
    print(f"  total                               {result['total_s'] * 1e3:7.1f} ms "
          f"(target <= 200 ms: {'met' if result['meets_target'] else 'MISSED'})")
    print(f"  reference numpy binomial draw       {result['reference_binomial_s'] * 1e3:7.1f} ms"
          f"  -> ratio {result['ratio_to_reference']:.2f}")
    if args.json:
        print(json.dumps(result))


if __name__ == "__main__":
    main()
