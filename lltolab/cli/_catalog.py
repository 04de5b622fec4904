"""The catalog commands: ``lltolab server``, ``runs``, ``replay`` and ``analyze``."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

__all__ = ["analyze_command", "replay_command", "runs_command", "server_command"]


def server_command(args: argparse.Namespace) -> int:
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


def runs_command(args: argparse.Namespace) -> int:
    from lltolab.catalog import format_runs, quick_list  # noqa: PLC0415 - fast: no tiled stack

    print(format_runs(quick_list(args.catalog, n=args.n, api_key=args.api_key)))
    return 0


def replay_command(args: argparse.Namespace) -> int:
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


def analyze_command(args: argparse.Namespace) -> int:
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
