"""Speed of the product path (issue: plans, session, storage, CLI). Not a test.

1. ``session.start(sim=True)`` wall time (target <= 3 s).
2. ``lltolab demo`` wall time in a subprocess (target <= 30 s on 2 cores).
3. Framework overhead: the same number of documents (a 200-point count of scalar detectors)
   through bare bluesky + TiledWriter with ophyd.sim detectors, vs through an lltolab session
   (its journaled catalog writer) with the same detectors; printed as a ratio (target <= 1.3).

Usage: python benchmarks/demo.py [--json] [--no-demo]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def bare_bluesky(folder: Path, n: int) -> float:
    from bluesky import RunEngine
    from bluesky.plans import count
    from bluesky_tiled_plugins import TiledWriter
    from ophyd.sim import det1, det2

    from lltolab.catalog import open_catalog

    client = open_catalog(folder)
    RE = RunEngine({})
    RE.subscribe(TiledWriter(client))
    RE(count([det1, det2], 5))  # warm-up
    t = time.perf_counter()
    RE(count([det1, det2], n))
    return time.perf_counter() - t


def through_lltolab(folder: Path, n: int) -> tuple[float, float]:
    from bluesky.plans import count
    from ophyd.sim import det1, det2

    from lltolab.session import start

    t = time.perf_counter()
    session = start(sim=True, catalog=folder, sample_id="bench", callbacks=False)
    start_s = time.perf_counter() - t
    try:
        session.RE(count([det1, det2], 5))  # warm-up (waits for the background open)
        t = time.perf_counter()
        session.RE(count([det1, det2], n))
        return start_s, time.perf_counter() - t
    finally:
        session.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--no-demo", action="store_true")
    parser.add_argument("-n", type=int, default=200)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        start_s, ours = through_lltolab(tmp / "ours", args.n)
        bare = bare_bluesky(tmp / "bare", args.n)
        demo_s = None
        if not args.no_demo:
            t = time.perf_counter()
            subprocess.run([sys.executable, "-m", "lltolab.cli", "demo", "--json",
                            "--catalog", str(tmp / "demo")], check=True, capture_output=True,
                           timeout=900)
            demo_s = time.perf_counter() - t
    ratio = ours / bare
    print(f"{'session.start(sim=True)':40s} {start_s:8.2f} s   target <= 3 s")
    print(f"{'count x' + str(args.n) + ', bare bluesky + TiledWriter':40s} {bare:8.2f} s   1.00")
    print(f"{'count x' + str(args.n) + ', lltolab session':40s} {ours:8.2f} s   "
          f"{ratio:.2f} (target <= 1.3)")
    if demo_s is not None:
        print(f"{'lltolab demo (subprocess)':40s} {demo_s:8.2f} s   target <= 30 s")
    if args.json:
        print(json.dumps({"start_s": start_s, "bare_s": bare, "lltolab_s": ours,
                          "overhead_ratio": ratio, "demo_s": demo_s}))


if __name__ == "__main__":
    main()
