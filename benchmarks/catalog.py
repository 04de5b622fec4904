"""Speed of the run catalog, embedded (a folder, SQLite) and served (``lltolab server`` on a
private PostgreSQL cluster). Not a test.

C1  events/s written by ``catalog_writer`` (journal + TiledWriter), ``count([det], N)``, with
    batch sizes 1 and 100, embedded and served.
C2  ``lltolab runs`` (a new process, Python start included) on catalogs of 100 and 10 000 runs,
    and ``quick_list`` of all 10 000 runs in-process. The 10 000-run catalog is the 100-run
    one with its run records repeated in SQL (listing reads only those records).
C3  reading one SIMS image (206 × 512, an external HDF5 asset) of a stored run, embedded and
    served, through the tiled client.

Usage: python benchmarks/catalog.py [--json] [--events N] [--no-server]
With --json the last line is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

KEY = "benchmarkkey0123"


def _events_per_s(target, n: int, batch: int, api_key: str | None = None) -> float:
    from bluesky import RunEngine
    from bluesky.plans import count
    from ophyd.sim import det

    from lltolab.catalog import catalog_writer

    engine = RunEngine({})
    engine.subscribe(catalog_writer(target, api_key=api_key, batch_size=batch))
    engine(count([det], num=3), sample_id="warm-up")
    t0 = time.perf_counter()
    engine(count([det], num=n), sample_id="bench")
    return n / (time.perf_counter() - t0)


def _image_run(target, exports: Path, api_key: str | None = None) -> str:
    from bluesky import RunEngine
    from bluesky.plans import count

    from lltolab.catalog import catalog_writer
    from lltolab.devices import SurfaceLabExport
    from lltolab.diffusion import VirtualSample
    from lltolab.sim_devices import SurfaceLabSimulator, VirtualClock

    sample = VirtualSample.paper_default(seed=2)
    sample.set_environment(0.0, temperature_K=295.15, immersed=True)
    sample.set_environment(59 * 3600.0, temperature_K=163.15, immersed=False)
    sim = SurfaceLabSimulator(sample, VirtualClock(start_s=59 * 3600.0), exports, seed=21)
    sims = SurfaceLabExport(exports, name="sims", request=sim.request, timeout_s=120.0,
                            poll_s=0.02, sidecar_grace_s=0.3)
    engine = RunEngine({})
    engine.subscribe(catalog_writer(target, api_key=api_key, batch_size=1,
                                    readable_storage=[exports]))
    (uid,) = engine(count([sims], num=1), sample_id="bench-image")
    return uid


def _image_read_s(catalog, uid: str) -> float:
    t0 = time.perf_counter()
    counts = catalog[uid]["primary"]["sims_li6_counts"].read()
    elapsed = time.perf_counter() - t0
    assert counts.shape[1:] == (206, 512), counts.shape
    return elapsed


def _cli_runs_s(target: str, api_key: str | None = None) -> float:
    args = [sys.executable, "-m", "lltolab.cli", "runs", "--catalog", target]
    if api_key:
        args += ["--api-key", api_key]
    t0 = time.perf_counter()
    subprocess.run(args, check=True, capture_output=True, timeout=300)
    return time.perf_counter() - t0


def _fill_runs(folder: Path, total: int) -> None:
    """Repeat the run records of ``folder/catalog.db`` until it lists ``total`` runs."""
    with sqlite3.connect(folder / "catalog.db") as con:
        root = con.execute("SELECT id FROM nodes WHERE parent IS NULL").fetchone()[0]
        rows = con.execute("SELECT structure_family, metadata, specs FROM nodes "
                           "WHERE parent = ?", (root,)).fetchall()
        have = len(rows)
        for k in range(total - have):
            family, metadata, specs = rows[k % have]
            md = json.loads(metadata)
            uid = str(uuid.uuid4())
            md["start"]["uid"], md["start"]["scan_id"] = uid, have + k + 1
            con.execute("INSERT INTO nodes (parent, key, structure_family, metadata, specs) "
                        "VALUES (?, ?, ?, ?, ?)", (root, uid, family, json.dumps(md), specs))


def _write_runs(target, n: int, api_key: str | None = None) -> None:
    from bluesky import RunEngine
    from bluesky.plans import count
    from ophyd.sim import det

    from lltolab.catalog import catalog_writer

    engine = RunEngine({})
    engine.subscribe(catalog_writer(target, api_key=api_key))
    for k in range(n):
        engine(count([det], num=2), sample_id=f"S{k % 7}")


def _start_server(pg, root: Path) -> tuple[subprocess.Popen, str]:
    catalog = pg.create_database("bench")
    proc = subprocess.Popen(
        [sys.executable, "-m", "lltolab.cli", "server", "--catalog", catalog,
         "--data", str(root / "data"), "--exports", str(root / "exports"), "--port", "0",
         "--api-key", KEY, "--json"], stdout=subprocess.PIPE, text=True)
    line: list[str] = []
    reader = threading.Thread(target=lambda: line.append(proc.stdout.readline()), daemon=True)
    reader.start()
    reader.join(timeout=300)
    if not line or not line[0].strip():
        proc.terminate()
        raise RuntimeError("lltolab server did not start within 300 s")
    return proc, json.loads(line[0])["uri"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--events", type=int, default=300, help="events per write test")
    parser.add_argument("--no-server", action="store_true", help="embedded only")
    args = parser.parse_args()
    if args.events < 10:
        parser.error(f"--events must be >= 10, got {args.events}")

    from lltolab.catalog import PostgresCluster, close_catalogs, open_catalog, quick_list

    out: dict[str, object] = {"events": args.events}
    with tempfile.TemporaryDirectory(prefix="lltolab-bench-") as tmp:
        root = Path(tmp)
        folder = root / "embedded"
        for batch in (1, 100):
            out[f"embedded_events_per_s_batch{batch}"] = _events_per_s(folder, args.events,
                                                                       batch)
        uid = _image_run(folder, root / "exports-embedded")
        out["embedded_image_read_s"] = _image_read_s(open_catalog(folder), uid)
        listing = root / "listing"
        _write_runs(listing, 100)
        close_catalogs()
        out["runs_cli_s_100"] = _cli_runs_s(str(listing))
        _fill_runs(listing, 10_000)
        out["runs_cli_s_10000"] = _cli_runs_s(str(listing))
        t0 = time.perf_counter()
        rows = quick_list(listing, n=10_000)
        out["list_all_s_10000"] = time.perf_counter() - t0
        assert len(rows) == 10_000

        if not args.no_server:
            with PostgresCluster() as pg:
                proc, uri = _start_server(pg, root / "server")
                try:
                    for batch in (1, 100):
                        out[f"served_events_per_s_batch{batch}"] = _events_per_s(
                            uri, args.events, batch, api_key=KEY)
                    uid = _image_run(uri, root / "server" / "exports", api_key=KEY)
                    out["served_image_read_s"] = _image_read_s(open_catalog(uri, api_key=KEY),
                                                               uid)
                    _write_runs(uri, 100 - 3, api_key=KEY)
                    out["served_runs_cli_s_100"] = _cli_runs_s(uri, api_key=KEY)
                finally:
                    proc.terminate()
                    proc.wait(timeout=60)
        close_catalogs()
    if args.json:
        print(json.dumps(out))
    else:
        for key, value in out.items():
            print(f"{key:34s} {value:.3f}" if isinstance(value, float) else f"{key:34s} {value}")


if __name__ == "__main__":
    main()
