"""``lltolab demo``: the standard workflow on the virtual lab, stored, analysed and compared
with the twin's truth."""

from __future__ import annotations

import argparse
import contextlib
import json
import sys

__all__ = ["DEMO_QUANTITIES", "demo_command", "demo_extracted", "demo_report"]


def demo_command(args: argparse.Namespace) -> int:
    """The standard workflow on the virtual lab, stored, analysed, compared with the truth."""
    import time  # noqa: PLC0415

    t0 = time.perf_counter()

    import numpy as np  # noqa: PLC0415

    from lltolab.catalog import default_catalog_path, resolve_target  # noqa: PLC0415
    from lltolab.session import start  # noqa: PLC0415
    from lltolab.vocabulary import IMAGING_PLANS, ROOM_K, PlanName  # noqa: PLC0415

    from ._early import EarlyAnalyses  # noqa: PLC0415 - numpy loads after the BLAS setting

    target = resolve_target(args.catalog or default_catalog_path().parent / "demo")
    # No head start for the catalog: the session opens (and for a new folder creates) it on
    # the writer's thread once the lab is built. Most of that open is tiled's imports, which
    # share this interpreter with the lab's start; begun earlier, they only delay the first
    # run and with it the twin, which integrates in a process of its own (measured: the demo
    # took 1.5 s longer). The first documents wait in the writer's queue meanwhile.
    # figures next to the catalog folder, or next to the server's session state
    folder = target.folder if target.folder is not None else target.state_dir.parent
    sample_id = f"LLTO-demo-seed{args.seed}"
    exchange_s, anneal_K, anneal_s = 59 * 3600.0, 473.15, 3.8 * 3600.0
    positions = [0.05, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.6, 0.8, 1.0, 1.25, 1.5, 1.75, 2.0,
                 2.5, 3.0, 3.5, 4.0, 4.5, 5.0, 5.5, 6.0]
    with start(sim=True, catalog=target, sample_id=sample_id, seed=args.seed,
               time_scale=None, callbacks=not args.json, api_key=args.api_key) as session, \
            contextlib.ExitStack() as stack:
        plans = session.plans
        # each image is analysed, and the first inverted, while the workflow goes on
        early = EarlyAnalyses(session.lab.sims.micrograph(), folder / "figures")
        stack.callback(early.close)
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
                                           invert=first_image, inversions=early.inversions,
                                           image_results=early.image_results,
                                           profile_results=early.profile_results,
                                           inversion_reports=early.inversion_reports)
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
                   image_results: object = None, profile_results: object = None,
                   inversion_reports: object = None) -> tuple[list[dict], dict[str, str]]:
    """All analyses of the demo's image and profile runs; a failing one is reported, not raised.

    Returns the results and, per kind of analysis that raised (``image`` / ``profiles``), the
    error text.
    """
    from lltolab.run_analysis import analyze_runs  # noqa: PLC0415

    try:
        return analyze_runs(cat, uids, figures_dir=figures, micrograph=micrograph,
                            invert=invert, inversions=inversions,
                            image_results=image_results,
                            profile_results=profile_results,
                            inversion_reports=inversion_reports), {}
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
                                    image_results=image_results,
                                    profile_results=profile_results,
                                    inversion_reports=inversion_reports)
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
