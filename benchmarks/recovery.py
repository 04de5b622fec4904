"""Recovery of D*_gb/δ at the simulator's default dose: inversion vs boundary steps. Not a test.

For each seed: the paper-default twin (log-normal boundary spread, factor ~2), 59 h of exchange
at 22 °C, a transfer and a quench, one image of the default raster (512 × 206 pixels,
2048 pulses per pixel, ~1e3 counts per pixel) rendered by the simulated SurfaceLab with its
dead-time counting, and the etched micrograph. Truth: the twin's k(22 °C) times the median of
its per-boundary multipliers (what the demo reports as the truth).

Targets: median ratio 0.9–1.1, every seed within 25 %, the 90 % interval covering the truth in
>= 80 % of seeds, <= 60 s CPU per inversion.

Usage: python benchmarks/recovery.py [--seeds N] [--first S] [--json]
With --json the last line is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _synthetic import synthetic_image  # noqa: E402

from lltolab.analysis import analyze_image, invert_image  # noqa: E402


def one(seed: int) -> dict[str, object]:
    """Both methods on one seeded image."""
    img = synthetic_image(seed)
    truth = img["truth"]["dgb_over_delta_cm_s"]
    cpu0, wall0 = time.process_time(), time.perf_counter()
    inv = invert_image(img["i6"], img["i7"], history=img["history"],
                       temperature_K=img["temperature_K"], pixel_um=img["pixel_um"],
                       n_pulses=img["n_pulses"], boundary_map=img["micrograph"])
    cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
    step = analyze_image(i6=img["i6"], i7=img["i7"], n_pulses=img["n_pulses"],
                         pixel_um=img["pixel_um"], boundary_map=img["micrograph"],
                         d_bulk=img["truth"]["d_bulk_cm2_s"])
    lo, hi = inv.interval_cm_s
    return {
        "seed": seed, "truth_cm_s": truth,
        "inversion_cm_s": inv.dgb_over_delta_cm_s, "ratio": inv.dgb_over_delta_cm_s / truth,
        "interval_ratio": [lo / truth, hi / truth], "covers": bool(lo <= truth <= hi),
        "stderr_ln": inv.stderr_ln_k, "stderr_ln_model": inv.stderr_ln_k_model,
        "d_bulk_ratio": inv.d_bulk_cm2_s / img["truth"]["d_bulk_cm2_s"],
        "deviance_per_dof": inv.deviance_per_dof, "pearson_per_dof": inv.pearson_per_dof,
        "blur_var_px2": inv.blur_var_px2, "converged": inv.converged,
        "iterations": inv.iterations, "forward_solves": inv.forward_solves,
        "coarse_forward_solves": inv.coarse_forward_solves,
        "cpu_s": cpu, "wall_s": wall,
        "step_median_ratio": (step["median_dgb_over_delta_cm_s"] or float("nan")) / truth,
    }


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark and print a table (and one JSON line with --json)."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seeds", type=int, default=8)
    p.add_argument("--first", type=int, default=0)
    p.add_argument("--json", action="store_true")
    args = p.parse_args(argv)
    rows = []
    for seed in range(args.first, args.first + args.seeds):
        r = one(seed)
        rows.append(r)
        print(f"seed {seed}: inversion {r['ratio']:.3f} [{r['interval_ratio'][0]:.3f}, "
              f"{r['interval_ratio'][1]:.3f}] dev/dof {r['deviance_per_dof']:.3f}, "
              f"step median {r['step_median_ratio']:.3f}, cpu {r['cpu_s']:.1f} s, "
              f"wall {r['wall_s']:.1f} s", flush=True)
    ratios = [r["ratio"] for r in rows]
    summary = {
        "n_seeds": len(rows),
        "median_ratio": statistics.median(ratios),
        "max_abs_deviation": max(abs(x - 1) for x in ratios),
        "coverage_90": sum(r["covers"] for r in rows) / len(rows),
        "step_median_ratio": statistics.median(r["step_median_ratio"] for r in rows),
        "step_max_abs_deviation": max(abs(r["step_median_ratio"] - 1) for r in rows),
        "cpu_s_max": max(r["cpu_s"] for r in rows),
        "wall_s_max": max(r["wall_s"] for r in rows),
        "all_converged": all(r["converged"] for r in rows),
    }
    summary["targets_met"] = bool(0.9 <= summary["median_ratio"] <= 1.1
                                  and summary["max_abs_deviation"] <= 0.25
                                  and summary["coverage_90"] >= 0.8
                                  and summary["cpu_s_max"] <= 60)
    print(f"median ratio {summary['median_ratio']:.3f}, worst |ratio-1| "
          f"{summary['max_abs_deviation']:.3f}, 90 % coverage {summary['coverage_90']:.2f}; "
          f"step method median {summary['step_median_ratio']:.3f}; max cpu "
          f"{summary['cpu_s_max']:.1f} s")
    if args.json:
        print(json.dumps({"summary": summary, "seeds": rows}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
