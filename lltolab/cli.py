"""The ``lltolab`` command line."""

from __future__ import annotations

import argparse
import importlib
import json
import os
import signal
import sys
import threading
from typing import Any

from lltolab._cli_errors import OneLineArgumentParser, run_guarded

__all__ = ["console_main", "main"]


def _demo(args: argparse.Namespace) -> int:
    """The standard workflow on the virtual lab, stored, analysed, compared with the truth."""
    import time  # noqa: PLC0415

    t0 = time.perf_counter()

    import numpy as np  # noqa: PLC0415

    from lltolab.catalog import default_catalog_path, resolve_target  # noqa: PLC0415
    from lltolab.session import start  # noqa: PLC0415
    from lltolab.vocabulary import IMAGING_PLANS, ROOM_K, PlanName  # noqa: PLC0415

    target = resolve_target(args.catalog or default_catalog_path().parent / "demo")
    if not target.is_server:  # a new catalog's database is created while the lab is built
        threading.Thread(target=_init_quietly, args=(target.folder,), daemon=True,
                         name="lltolab-catalog-init").start()
    # figures next to the catalog folder, or next to the server's session state
    folder = target.folder if target.folder is not None else target.state_dir.parent
    sample_id = f"LLTO-demo-seed{args.seed}"
    exchange_s, anneal_K, anneal_s = 59 * 3600.0, 473.15, 3.8 * 3600.0
    positions = [0.05, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.6, 0.8, 1.0, 1.25, 1.5, 1.75, 2.0,
                 2.5, 3.0, 3.5, 4.0, 4.5, 5.0, 5.5, 6.0]
    with start(sim=True, catalog=target, sample_id=sample_id, seed=args.seed,
               time_scale=None, callbacks=not args.json, api_key=args.api_key) as session:
        plans = session.plans
        # each image is analysed, and the first inverted, while the workflow goes on
        early = _EarlyAnalyses(session.catalog, session.lab.sims.micrograph(),
                               session.writer, folder / "figures")
        token = session.RE.subscribe(early)
        try:
            uids = session.RE(plans.exchange_quench_image_anneal_reimage(
                **session.workflow_devices(), exchange_s=exchange_s, anneal_K=anneal_K,
                anneal_s=anneal_s, cycles=1, profile_positions_mm=positions,
                record=session.record, md={"sample_id": sample_id, "demo": True}))
        except Exception as exc:  # noqa: BLE001 - the run failed: say so, exit non-zero
            print(f"lltolab demo: the workflow failed: {type(exc).__name__}: {exc} "
                  f"(runs so far are in {folder})", file=sys.stderr)
            return 1
        finally:
            session.RE.unsubscribe(token)
        lab = session.lab
        micrograph = lab.sims.write_micrograph()
        cat = session.catalog
        # the plan names from the start documents seen; the catalog only for one not seen
        kinds = {u: early.plan_names.get(u) or cat[u].metadata["start"]["plan_name"]
                 for u in uids}
        wanted = [u for u in uids if kinds[u] in IMAGING_PLANS]
        first_image = [u for u in wanted if kinds[u] == PlanName.SIMS_IMAGE][:1]
        results, failures = _demo_analyses(cat, wanted, kinds, folder / "figures", micrograph,
                                           invert=first_image, inversions=early.futures,
                                           image_results=early.image_results)
        sample = lab.sample
        t22, t200 = ROOM_K, anneal_K
        spread = float(np.median(sample.micro.spread))
        truth = {
            "d_eff_cm2_s_22C": sample.truth(t22)["d_eff_m2_s"] * 1e4,
            "dgb_over_delta_cm_s_22C": sample.truth(t22)["k_gb_m_s"] * 100 * spread,
            "d_eff_cm2_s_200C": sample.truth(t200)["d_eff_m2_s"] * 1e4,
        }
        extracted, missing = demo_extracted(results, failures)
        images = [r for r in results if r.get("kind") == "image"]
        extracted.update(_dgb_methods(images[0] if images else {}, "_22C"))
        missing = {k: why for k, why in missing.items() if extracted.get(k) is None}
        out = {"catalog": str(target), "exports": str(lab.export_folder),
               "runs": list(uids), "truth": truth, "extracted": extracted,
               "missing": missing,
               "figures": [f for r in results for f in r.get("figures", [])],
               "wall_s": time.perf_counter() - t0}
    if args.json:
        print(json.dumps(out))
    else:
        print(demo_report(out))
        _print_dgb_methods(extracted, truth["dgb_over_delta_cm_s_22C"], "_22C")
    return 0


class _EarlyAnalyses:
    """RunEngine callback: at the stop of each successful image run, start its boundary-step
    analysis in the background, and for the first one its inversion too
    (:func:`lltolab.run_analysis.analyze_image_run_in_background`,
    :func:`lltolab.run_analysis.invert_run_in_background`); each reads its run once the
    catalog writer has stored it."""

    def __init__(self, catalog: object, micrograph: object, writer: object,
                 figures: object) -> None:
        self.catalog = catalog
        self.micrograph = micrograph
        self.writer = writer
        self.figures = figures
        self.futures: dict[str, object] = {}  # inversions by uid
        self.image_results: dict[str, object] = {}
        self.plan_names: dict[str, str] = {}  # of every run started, by uid
        self._image_uid: str | None = None
        # the analysis modules load while the workflow runs, not on the RunEngine's thread
        threading.Thread(target=importlib.import_module, args=("lltolab.run_analysis",),
                         name="lltolab-analysis-import", daemon=True).start()

    def __call__(self, name: str, doc: dict) -> None:
        from lltolab.vocabulary import PlanName  # noqa: PLC0415

        if name == "start":
            self.plan_names[doc["uid"]] = doc.get("plan_name", "")
        if name == "start" and doc.get("plan_name") == PlanName.SIMS_IMAGE:
            self._image_uid = doc["uid"]
        elif name == "stop" and self._image_uid and doc.get("run_start") == self._image_uid:
            uid, self._image_uid = self._image_uid, None
            if doc.get("exit_status") != "success":
                return
            from lltolab.run_analysis import (  # noqa: PLC0415
                analyze_image_run_in_background,
                invert_run_in_background,
            )

            def stored() -> None:
                self.writer.wait_stored(uid)  # type: ignore[attr-defined]

            self.image_results[uid] = analyze_image_run_in_background(
                self.catalog, uid, figures_dir=self.figures,  # type: ignore[arg-type]
                micrograph=self.micrograph, wait_for=stored)  # type: ignore[arg-type]
            if not self.futures:
                self.futures[uid] = invert_run_in_background(
                    self.catalog, uid, micrograph=self.micrograph,  # type: ignore[arg-type]
                    wait_for=stored)


def _init_quietly(folder: object) -> None:
    """Create a catalog folder's database ahead of time; errors surface when it is opened."""
    from lltolab.catalog import init_catalog  # noqa: PLC0415

    try:
        init_catalog(folder)  # type: ignore[arg-type]
    except Exception:  # noqa: BLE001, S110 - the session's open reports the same error
        pass


def demo_report(out: dict) -> str:
    """The text report of ``lltolab demo``: truth vs extracted, and why a value is missing."""
    lines = [f"\nlltolab demo: {len(out['runs'])} runs stored in {out['catalog']}",
             f"{'quantity':28s} {'truth':>12s} {'extracted':>12s} {'ratio':>7s}"]
    for key, true in out["truth"].items():
        got = out["extracted"].get(key)
        shown = "n/a" if got is None else format(got, "12.3e")
        ratio = "n/a" if got is None else format(got / true, "7.3f")
        lines.append(f"{key:28s} {true:12.3e} {shown:>12s} {ratio:>7s}")
    for key, why in out.get("missing", {}).items():
        lines.append(f"{key}: not extracted: {why}")
    lines.append(f"figures in {out['catalog']}/figures; wall time {out['wall_s']:.1f} s")
    return "\n".join(lines)


DEMO_QUANTITIES = ("d_eff_cm2_s_22C", "dgb_over_delta_cm_s_22C", "d_eff_cm2_s_200C")
"""What ``lltolab demo`` extracts: D_eff after the exchange (erfc fit of the first line
profile), D_gb/δ of the first image (boundary steps), D_eff of the anneal (time evolution
between the two line profiles)."""


def _demo_analyses(cat: object, uids: list[str], kinds: dict[str, str], figures: object,
                   micrograph: object, invert: object = True, inversions: object = None,
                   image_results: object = None) -> tuple[list[dict], dict[str, str]]:
    """All analyses of the demo's image and profile runs; a failing one is reported, not raised.

    Returns the results and, per kind of analysis that raised (``image`` / ``profiles``), the
    error text.
    """
    from lltolab.run_analysis import analyze_runs  # noqa: PLC0415

    try:
        return analyze_runs(cat, uids, figures_dir=figures, micrograph=micrograph,
                            invert=invert, inversions=inversions,
                            image_results=image_results), {}
    except Exception:  # noqa: BLE001 - retry per kind to find which analysis failed
        pass
    results: list[dict] = []
    failures: dict[str, str] = {}
    groups = {"image": [u for u in uids if kinds[u] == "sims_image"],
              "profiles": [u for u in uids if kinds[u] == "sims_line_profile"]}
    for kind, group in groups.items():
        try:
            results += analyze_runs(cat, group, figures_dir=figures, micrograph=micrograph,
                                    invert=invert, inversions=inversions,
                                    image_results=image_results)
        except Exception as exc:  # noqa: BLE001 - the report names it
            failures[kind] = f"{type(exc).__name__}: {exc}"
    return results, failures


def demo_extracted(results: list[dict], failures: dict[str, str] | None = None,
                   ) -> tuple[dict[str, float | None], dict[str, str]]:
    """The demo's extracted values, and for each one that is missing, why.

    Parameters
    ----------
    results : list of dict
        What :func:`lltolab.run_analysis.analyze_runs` returned for the demo's runs.
    failures : dict, optional
        Error text of analyses that raised, by kind (``image``, ``profiles``).

    Returns
    -------
    extracted : dict
        :data:`DEMO_QUANTITIES` -> value (cm²/s or cm/s) or None.
    missing : dict
        Quantity -> reason, for every None value.
    """
    failures = failures or {}
    images = [r for r in results if r.get("kind") == "image"]
    profs = [r for r in results if r.get("kind") == "profiles"]
    sources = {
        "d_eff_cm2_s_22C": ([r for r in profs if r.get("method") == "erfc"], "d_eff_cm2_s",
                            "profiles", "an erfc fit of the line profile taken after the "
                            "exchange (its thermal history must hold the exchange and no "
                            "anneal)"),
        "dgb_over_delta_cm_s_22C": (images, "median_dgb_over_delta_cm_s", "image",
                                    "a boundary-step analysis of the first image"),
        "d_eff_cm2_s_200C": ([r for r in profs if r.get("method") == "time_evolution"],
                             "d_eff_cm2_s", "profiles", "a time-evolution fit between the "
                             "two line profiles (the history between them must hold a "
                             "completed anneal)"),
    }
    extracted: dict[str, float | None] = {}
    missing: dict[str, str] = {}
    for key, (found, field, kind, needs) in sources.items():
        value = found[0].get(field) if found else None
        extracted[key] = None if value is None else float(value)
        if value is not None:
            continue
        if kind in failures:
            missing[key] = f"the {kind} analysis failed ({failures[kind]})"
        elif not found:
            missing[key] = f"no result: it needs {needs}"
        else:
            missing[key] = _why_no_value(found[0], field)
    return extracted, missing


def _why_no_value(result: dict, field: str) -> str:
    """Why an analysis result holds no finite ``field``."""
    if result.get("kind") == "image":
        b = result.get("boundaries", {}) or {}
        summary = b.get("summary", b) if isinstance(b, dict) else {}
        n_found = summary.get("n_boundaries", "?")
        n_sel = summary.get("n_selected", "?")
        return (f"the boundary-step analysis of run {result.get('run')} found {n_found} "
                f"boundaries, {n_sel} with a resolvable step: no finite median D_gb/δ")
    return (f"the {result.get('method', 'profile')} fit of run {result.get('run')} gave no "
            f"finite {field} (fit failed or did not converge)")


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


def _server(args: argparse.Namespace) -> int:
    from lltolab.catalog import ServerSettings, serve  # noqa: PLC0415

    settings = ServerSettings(args.catalog, tables=args.tables, data=args.data,
                              exports=args.exports, api_key=args.api_key)

    def ready(info: dict[str, str]) -> None:
        if args.json:
            print(json.dumps(info), flush=True)
        else:
            print(f"lltolab server: {info['uri']}  API key {info['api_key']}\n"
                  f"  SIMS exports read from {settings.exports}; Ctrl-C to stop", flush=True)

    serve(settings, host=args.host, port=args.port, ready=ready)
    return 0


def _open(args: argparse.Namespace) -> object:
    from lltolab.catalog import open_catalog, resolve_target  # noqa: PLC0415

    target = resolve_target(args.catalog)
    return open_catalog(target, api_key=getattr(args, "api_key", None), create=False)


def _runs(args: argparse.Namespace) -> int:
    from lltolab.catalog import format_runs, quick_list  # noqa: PLC0415 - fast: no tiled stack

    print(format_runs(quick_list(args.catalog, n=args.n, api_key=args.api_key)))
    return 0


def _replay(args: argparse.Namespace) -> int:
    import contextlib  # noqa: PLC0415

    from lltolab import catalog  # noqa: PLC0415 - fast path: no tiled stack for table/jsonl

    kind, *rest = args.callback
    if kind not in ("table", "bec", "jsonl"):
        raise ValueError(f"--callback must be table, bec or jsonl FILE, got {kind!r}")
    if kind == "jsonl" and len(rest) != 1:
        raise ValueError("--callback jsonl needs one output FILE ('-' for stdout)")
    if kind != "jsonl" and rest:
        raise ValueError(f"--callback {kind} takes no FILE (only jsonl writes one)")
    out_file = rest[0] if rest else None
    ref = catalog.parse_run_ref(args.run)
    uid = catalog.quick_uid(args.catalog, ref, api_key=args.api_key)
    if kind == "bec":
        from bluesky.callbacks.best_effort import BestEffortCallback  # noqa: PLC0415

        n = catalog.replay(_open(args)[uid], [BestEffortCallback()])
        _show_figures()
    else:
        if kind == "jsonl":
            from lltolab.queue._replay import JsonLinesWriter  # noqa: PLC0415

            context: Any = JsonLinesWriter(out_file)
        else:
            context = contextlib.nullcontext(catalog.ReplayTable())
        with context as callback:
            docs = catalog.iter_documents(args.catalog, uid, api_key=args.api_key)
            if docs is None:  # a run without a document archive: rebuilt by tiled
                n = catalog.replay(_open(args)[uid], [callback])
            else:
                n = 0
                for name, doc in docs:
                    if name == "stop" and not doc:
                        continue
                    callback(name, doc)
                    n += 1
    print(f"replayed {n} documents of run {uid}",
          file=sys.stderr if out_file == "-" else sys.stdout)
    return 0


def _show_figures() -> None:
    """Keep the BEC's figures open (interactive backends) until the user closes them."""
    import matplotlib  # noqa: PLC0415

    if matplotlib.get_backend().lower() in ("agg", "pdf", "svg", "ps", "cairo", "template"):
        return
    import matplotlib.pyplot as plt  # noqa: PLC0415

    plt.show()


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
    """IPython at once; the session is built meanwhile and is ready for the first command."""
    from lltolab.session import start, use_shell_session  # noqa: PLC0415

    built: dict[str, object] = {}
    done = threading.Event()

    def build() -> None:
        try:
            session = start(args.config, sim=args.sim, catalog=args.catalog,
                            sample_id=args.sample_id, plots=args.plots,
                            api_key=args.api_key)
        except BaseException as exc:  # noqa: BLE001 - reported at the first command
            built["error"] = exc
            done.set()
            return
        built["session"] = session
        use_shell_session(session)  # start() inside the shell returns this session
        done.set()
        try:
            session.catalog.client()  # open the catalog now, in the background
        except Exception as exc:  # noqa: BLE001 - reported when the catalog is used
            print(f"lltolab shell: catalog not open yet: {exc}", file=sys.stderr)

    builder = threading.Thread(target=build, name="lltolab-session", daemon=True)
    builder.start()
    from IPython.terminal.ipapp import TerminalIPythonApp  # noqa: PLC0415

    app = TerminalIPythonApp.instance()
    app.display_banner = False
    app.initialize(argv=[])
    shell = app.shell
    print("lltolab shell: s (the session), RE, db, plans and the devices are ready at your "
          "first command" + (" (building the simulated lab)" if args.sim else ""))
    code = {"value": 0}

    def wait_for_session(*_: object) -> None:
        if "ready" in built:
            return
        done.wait(timeout=600)
        built["ready"] = True
        if "session" not in built:
            print(f"lltolab shell: could not build the session: {built.get('error')}",
                  file=sys.stderr)
            code["value"] = 2
            shell.ask_exit()
            return
        session = built["session"]
        namespace = {"s": session, "session": session, "RE": session.RE,
                     "db": session.catalog, "plans": session.plans, **session.devices}
        if session.lab is not None:
            namespace["lab"] = session.lab
        shell.push(namespace)
        if args.plots:
            try:
                shell.enable_matplotlib()
            except Exception as exc:  # noqa: BLE001 - no GUI: plots stay off screen
                print(f"lltolab shell: no interactive plots: {exc}", file=sys.stderr)

    shell.events.register("pre_run_cell", wait_for_session)
    try:
        app.start()
    finally:
        use_shell_session(None)
        done.wait(timeout=600)
        session = built.get("session")
        if session is not None:
            session.close()
    return code["value"]


def build_parser() -> argparse.ArgumentParser:
    """Return the argument parser of the ``lltolab`` command."""
    parser = OneLineArgumentParser(prog="lltolab", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    demo = sub.add_parser("demo", help="run the full simulated workflow")
    demo.add_argument("--catalog", default=None, help="catalog folder or tiled server URI")
    demo.add_argument("--api-key", default=None, help="API key of a tiled server "
                      "(default $TILED_API_KEY)")
    demo.add_argument("--seed", type=int, default=0, help="random seed of the virtual sample")
    demo.add_argument("--json", action="store_true", help="print one JSON object")
    demo.set_defaults(func=_demo)

    runs = sub.add_parser("runs", help="list the newest runs of a catalog")
    runs.add_argument("--catalog", default=None, help="catalog folder or tiled server URI")
    runs.add_argument("--api-key", default=None)
    runs.add_argument("-n", type=int, default=20, help="how many runs (default 20)")
    runs.set_defaults(func=_runs)

    rep = sub.add_parser("replay", help="replay a stored run's documents to a callback")
    rep.add_argument("run", help="uid (prefix), scan_id, or -1 for the newest")
    rep.add_argument("--callback", nargs="+", default=["table"], metavar="KIND",
                     help="table: the BEC's text table (default); bec: table and plots; "
                     "jsonl FILE: the documents as [name, doc] JSON lines ('-': stdout)")
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

    srv = sub.add_parser("server", help="serve a catalog with tiled's server (API key "
                         "always required)")
    srv.add_argument("--catalog", required=True, help="catalog folder or postgresql:// URI")
    srv.add_argument("--tables", default=None,
                     help="tabular data: folder or postgresql:// URI (default: the catalog's)")
    srv.add_argument("--data", default=None, help="folder for arrays written by tiled")
    srv.add_argument("--exports", default=None,
                     help="folder of SIMS exports and assets the server reads")
    srv.add_argument("--host", default="127.0.0.1", help="interface (default 127.0.0.1)")
    srv.add_argument("--port", type=int, default=8000, help="TCP port (0: a free one)")
    srv.add_argument("--api-key", default=None, help="API key (default: generated)")
    srv.add_argument("--json", action="store_true",
                     help='print {"uri": ..., "api_key": ...} as the first stdout line')
    srv.set_defaults(func=_server)

    sh = sub.add_parser("shell", help="IPython with a session loaded")
    sh.add_argument("--sim", action="store_true", help="the virtual lab (else: --config)")
    sh.add_argument("--config", default=None, help="TOML configuration of the instruments")
    sh.add_argument("--catalog", default=None)
    sh.add_argument("--api-key", default=None)
    sh.add_argument("--sample-id", default=None)
    sh.add_argument("--plots", action="store_true", help="live plots of the BestEffortCallback")
    sh.set_defaults(func=_shell)

    from lltolab.queue._cli import register as register_queue  # noqa: PLC0415

    register_queue(sub)  # lltolab queue, lltolab confirm

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
    """Entry point of the ``lltolab`` command.

    Bad input gets one line on stderr and exit status 2 before anything runs or is written;
    an internal error one line and status 1 (the traceback with ``--debug``).
    """
    return run_guarded(build_parser, argv)


#: OpenBLAS threads of a command, unless the environment sets ``OPENBLAS_NUM_THREADS``
BLAS_THREADS = "1"


def console_main() -> None:
    """The ``lltolab`` console script and ``python -m lltolab.cli``: :func:`main`, then an exit
    that skips the interpreter's teardown (:func:`lltolab._prompt_exit.exit_promptly`).

    The commands run their parallel work in threads of their own (the twin, the catalog, the
    analyses, the inversion's workers), mostly in sparse solvers; OpenBLAS's own threads would
    only spin between its calls (2 s of CPU in ``lltolab demo``, for nothing). So the process
    starts with :data:`BLAS_THREADS` OpenBLAS thread unless ``OPENBLAS_NUM_THREADS`` is set.
    """
    from lltolab._prompt_exit import exit_promptly, exit_status  # noqa: PLC0415

    os.environ.setdefault("OPENBLAS_NUM_THREADS", BLAS_THREADS)  # read when numpy loads it
    try:
        status = main()
    except SystemExit as exc:
        status = exit_status(exc.code)
    exit_promptly(status)


if __name__ == "__main__":
    console_main()
