"""The ``lltolab`` command line."""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading

__all__ = ["main"]


def _demo(args: argparse.Namespace) -> int:
    """The card's workflow on the virtual lab, stored, analysed, compared with the truth."""
    import time  # noqa: PLC0415

    t0 = time.perf_counter()
    from pathlib import Path  # noqa: PLC0415

    import numpy as np  # noqa: PLC0415

    from lltolab.catalog import default_catalog_path  # noqa: PLC0415
    from lltolab.run_analysis import analyze_runs  # noqa: PLC0415
    from lltolab.session import start  # noqa: PLC0415

    folder = Path(args.catalog or default_catalog_path().parent / "demo").expanduser()
    sample_id = f"LLTO-demo-seed{args.seed}"
    exchange_s, anneal_K, anneal_s = 59 * 3600.0, 473.15, 3.8 * 3600.0
    positions = [0.05, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.6, 0.8, 1.0, 1.25, 1.5, 1.75, 2.0,
                 2.5, 3.0, 3.5, 4.0, 4.5, 5.0, 5.5, 6.0]
    with start(sim=True, catalog=folder, sample_id=sample_id, seed=args.seed,
               callbacks=not args.json) as session:
        plans = session.plans
        uids = session.RE(plans.exchange_quench_image_anneal_reimage(
            **session.workflow_devices(), exchange_s=exchange_s, anneal_K=anneal_K,
            anneal_s=anneal_s, cycles=1, profile_positions_mm=positions,
            record=session.record, md={"sample_id": sample_id, "demo": True}))
        lab = session.lab
        micrograph = lab.sims.write_micrograph()
        cat = session.catalog
        kinds = {u: cat[u].metadata["start"]["plan_name"] for u in uids}
        wanted = [u for u in uids if kinds[u] in ("sims_image", "sims_line_profile")]
        first_image = [u for u in wanted if kinds[u] == "sims_image"][:1]
        results = analyze_runs(cat, wanted, figures_dir=folder / "figures",
                               micrograph=micrograph, invert=first_image)
        sample = lab.sample
        t22, t200 = 295.15, anneal_K
        spread = float(np.median(sample.micro.spread))
        truth = {
            "d_eff_cm2_s_22C": sample.truth(t22)["d_eff_m2_s"] * 1e4,
            "dgb_over_delta_cm_s_22C": sample.truth(t22)["k_gb_m_s"] * 100 * spread,
            "d_eff_cm2_s_200C": sample.truth(t200)["d_eff_m2_s"] * 1e4,
        }
        images = [r for r in results if r["kind"] == "image"]
        profs = [r for r in results if r["kind"] == "profiles"]
        erfc = [r for r in profs if r.get("method") == "erfc"]
        evo = [r for r in profs if r.get("method") == "time_evolution"]
        extracted = {
            "d_eff_cm2_s_22C": erfc[0]["d_eff_cm2_s"] if erfc else None,
            "dgb_over_delta_cm_s_22C": images[0]["median_dgb_over_delta_cm_s"] if images
            else None,
            "d_eff_cm2_s_200C": evo[0]["d_eff_cm2_s"] if evo else None,
        }
        extracted.update(_dgb_methods(images[0] if images else {}, "_22C"))
        out = {"catalog": str(folder), "exports": str(lab.export_folder),
               "runs": list(uids), "truth": truth, "extracted": extracted,
               "figures": [f for r in results for f in r.get("figures", [])],
               "wall_s": time.perf_counter() - t0}
    if args.json:
        print(json.dumps(out))
    else:
        print(f"\nlltolab demo: {len(uids)} runs stored in {folder}")
        print(f"{'quantity':28s} {'truth':>12s} {'extracted':>12s} {'ratio':>7s}")
        for key, true in truth.items():
            got = extracted[key]
            ratio = f"{got / true:7.3f}" if got else "   n/a"
            print(f"{key:28s} {true:12.3e} {got if got is None else format(got, '12.3e'):>12} "
                  f"{ratio}")
        _print_dgb_methods(extracted, truth["dgb_over_delta_cm_s_22C"], "_22C")
        print(f"figures in {folder / 'figures'}; wall time {out['wall_s']:.1f} s")
    return 0


def _dgb_methods(image: dict, suffix: str) -> dict:
    """D_gb/δ of an image result by both methods; the headline from the preferred one."""
    key = f"dgb_over_delta_cm_s{suffix}"
    inv = image.get("inversion") or {}
    out = {f"{key}_boundary_steps": image.get("median_dgb_over_delta_cm_s"),
           f"{key}_inversion": inv.get("dgb_over_delta_cm_s"),
           f"{key}_interval": image.get("dgb_over_delta_cm_s_interval"),
           f"{key}_method": image.get("dgb_over_delta_method")}
    if image.get("dgb_over_delta_method"):
        out[key] = image.get("dgb_over_delta_cm_s")
    return out


def _print_dgb_methods(extracted: dict, true: float, suffix: str) -> None:
    key = f"dgb_over_delta_cm_s{suffix}"
    steps, inv = extracted.get(f"{key}_boundary_steps"), extracted.get(f"{key}_inversion")
    interval = extracted.get(f"{key}_interval")
    text = f"{key}: from {extracted.get(f'{key}_method')}"
    if inv is not None:
        text += f"; inversion {inv:.3e} (ratio {inv / true:.3f})"
        if interval and None not in interval:
            text += f", 90 % interval [{interval[0]:.3e}, {interval[1]:.3e}]"
    if steps is not None:
        text += f"; boundary steps {steps:.3e} (ratio {steps / true:.3f})"
    print(text)


def _sim_serve(args: argparse.Namespace) -> int:
    from lltolab.sim_devices import VirtualLab  # noqa: PLC0415 - heavy import, CLI only

    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    with VirtualLab(seed=args.seed, time_scale=args.time_scale,
                    export_folder=args.exports) as lab:
        resources = lab.resources()
        if args.json:
            print(json.dumps(resources), flush=True)
        else:
            print("lltolab simulated instruments (127.0.0.1), Ctrl-C to stop:")
            for key, value in resources.items():
                print(f"  {key:10s} {value}")
            print("  e.g. pyvisa.ResourceManager('@py').open_resource(cryostage, "
                  "read_termination='\\r\\n')", flush=True)
        while not stop.wait(0.2):
            pass
    return 0


def _open(args: argparse.Namespace) -> object:
    from lltolab.catalog import default_catalog_path, open_catalog  # noqa: PLC0415

    target = args.catalog or default_catalog_path()
    return open_catalog(str(target), api_key=getattr(args, "api_key", None), create=False)


def _runs(args: argparse.Namespace) -> int:
    from lltolab.catalog import format_runs, list_runs  # noqa: PLC0415

    print(format_runs(list_runs(_open(args), n=args.n)))
    return 0


def _replay(args: argparse.Namespace) -> int:
    from bluesky.callbacks.best_effort import BestEffortCallback  # noqa: PLC0415

    from lltolab.catalog import replay  # noqa: PLC0415

    cat = _open(args)
    run = cat[int(args.run) if args.run.lstrip("-").isdigit() else args.run]
    bec = BestEffortCallback()
    bec.disable_plots()
    n = replay(run, [bec])
    print(f"replayed {n} documents of run {run.metadata['start']['uid']}")
    return 0


def _analyze(args: argparse.Namespace) -> int:
    from lltolab.run_analysis import analyze_runs  # noqa: PLC0415

    results = analyze_runs(_open(args), args.runs, figures_dir=args.figures,
                           micrograph=args.micrograph, fit_x0=args.fit_x0)
    if args.json:
        print(json.dumps(results))
        return 0
    for r in results:
        if r["kind"] == "image":
            print(f"{r['run']}: image, mean C {r['c_mean']:.4f}, median D_gb/delta "
                  f"{r['median_dgb_over_delta_cm_s']} cm/s at {r['temperature_K']} K")
            _print_inversion(r)
        elif r["kind"] == "profiles":
            print(f"{r['run']}: profiles ({r['method']}), D_eff = {r['d_eff_cm2_s']:.3e} "
                  f"± {r['d_eff_stderr_cm2_s']:.1e} cm2/s")
        else:
            fits = r.get("arrhenius", {})
            text = ", ".join(f"{k}: Ea = {v.get('ea_eV', float('nan')):.3f} eV"
                             for k, v in fits.items() if isinstance(v, dict))
            print(f"campaign over {len(r.get('points', []))} temperatures: {text or 'no fit'}")
        for f in r.get("figures", []):
            print(f"    figure {f}")
    return 0


def _print_inversion(r: dict) -> None:
    inv = r.get("inversion")
    if not inv:
        return
    if inv.get("error"):
        print(f"    inversion not done: {inv['error']}")
        return
    lo, hi = inv.get("dgb_over_delta_cm_s_interval") or (None, None)
    print(f"    inversion: D_gb/delta {inv['dgb_over_delta_cm_s']:.3e} cm/s "
          f"[{lo}, {hi}] ({inv['level']:.0%}), D_bulk {inv['d_bulk_cm2_s']:.3e} cm2/s, "
          f"deviance/dof {inv['deviance_per_dof']:.3f}, converged {inv['converged']}; "
          f"reported: {r.get('dgb_over_delta_method')}")


def _shell(args: argparse.Namespace) -> int:
    import IPython  # noqa: PLC0415

    from lltolab.session import start  # noqa: PLC0415

    session = start(args.config, sim=args.sim, catalog=args.catalog,
                    sample_id=args.sample_id)
    namespace = {"session": session, "RE": session.RE, "db": session.catalog,
                 "plans": session.plans, **session.devices}
    if session.lab is not None:
        namespace["lab"] = session.lab
    try:
        IPython.start_ipython(argv=[], user_ns=namespace)
    finally:
        session.close()
    return 0


def build_parser() -> argparse.ArgumentParser:
    """Return the argument parser of the ``lltolab`` command."""
    parser = argparse.ArgumentParser(prog="lltolab", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    demo = sub.add_parser("demo", help="run the full simulated workflow")
    demo.add_argument("--catalog", default=None, help="catalog folder")
    demo.add_argument("--seed", type=int, default=0, help="random seed of the virtual sample")
    demo.add_argument("--json", action="store_true", help="print one JSON object")
    demo.set_defaults(func=_demo)

    runs = sub.add_parser("runs", help="list the newest runs of a catalog")
    runs.add_argument("--catalog", default=None, help="catalog folder or tiled server URI")
    runs.add_argument("--api-key", default=None)
    runs.add_argument("-n", type=int, default=20, help="how many runs (default 20)")
    runs.set_defaults(func=_runs)

    rep = sub.add_parser("replay", help="replay a stored run's documents to the BEC table")
    rep.add_argument("run", help="uid (prefix), scan_id, or -1 for the newest")
    rep.add_argument("--catalog", default=None)
    rep.add_argument("--api-key", default=None)
    rep.set_defaults(func=_replay)

    ana = sub.add_parser("analyze", help="analyse image and line-profile runs")
    ana.add_argument("runs", nargs="+", help="uids (prefixes) or scan_ids")
    ana.add_argument("--catalog", default=None)
    ana.add_argument("--api-key", default=None)
    ana.add_argument("--json", action="store_true", help="print the results as JSON")
    ana.add_argument("--figures", default=None, help="folder for PNG figures")
    ana.add_argument("--micrograph", default=None,
                     help=".npy grain-boundary map of the imaged area")
    ana.add_argument("--fit-x0", action="store_true",
                     help="fit a surface offset (meniscus) in the erfc fit")
    ana.set_defaults(func=_analyze)

    sh = sub.add_parser("shell", help="IPython with a session loaded")
    sh.add_argument("--sim", action="store_true", help="the virtual lab (else: --config)")
    sh.add_argument("--config", default=None, help="TOML configuration of the instruments")
    sh.add_argument("--catalog", default=None)
    sh.add_argument("--sample-id", default=None)
    sh.set_defaults(func=_shell)

    sim = sub.add_parser("sim", help="simulated instruments").add_subparsers(
        dest="sim_command", required=True)
    serve = sim.add_parser("serve", help="serve the simulated instruments and the virtual lab")
    serve.add_argument("--json", action="store_true",
                       help="print the resource strings as one JSON object on the first line")
    serve.add_argument("--time-scale", type=_positive_float, default=60.0,
                       help="lab seconds per wall second for instrument dynamics (default 60)")
    serve.add_argument("--seed", type=int, default=0, help="seed of the virtual sample")
    serve.add_argument("--exports", default=None,
                       help="export folder of the simulated SurfaceLab (default: temporary)")
    serve.set_defaults(func=_sim_serve)
    return parser


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"must be a finite number > 0, got {text!r}")
    return value


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``lltolab`` command."""
    args = build_parser().parse_args(argv)
    if getattr(args, "command", None) == "shell" and not args.sim and args.config is None:
        print("lltolab shell: give --sim (virtual lab) or --config FILE (instruments)",
              file=sys.stderr)
        return 2
    try:
        return int(args.func(args))
    except ValueError as exc:  # bad input: a clear message, not a traceback
        print(f"lltolab {args.command}: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
