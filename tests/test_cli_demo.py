"""`lltolab demo` end to end, and the catalog commands on its output."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest


def _cli(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "lltolab.cli", *args], capture_output=True,
                          text=True, timeout=timeout)


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_demo_json_recovers_the_truth_and_runs_are_browsable(tmp_path) -> None:
    folder = tmp_path / "demo"
    proc = _cli("demo", "--catalog", str(folder), "--seed", "1", "--json", timeout=500)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert set(out) >= {"catalog", "exports", "runs", "truth", "extracted", "wall_s"}
    assert len(out["runs"]) == 14
    truth, got = out["truth"], out["extracted"]
    assert got["d_eff_cm2_s_22C"] == pytest.approx(truth["d_eff_cm2_s_22C"], rel=0.10)
    assert got["d_eff_cm2_s_200C"] == pytest.approx(truth["d_eff_cm2_s_200C"], rel=0.10)
    # At the simulator's default dose (2048 pulses, ~1e3 counts per pixel) the boundary-step
    # median is biased low (0.6-0.8 seen; docs/analysis.md). Within 25 % needs ~1e4 counts
    # per pixel, which tests/test_analysis_* check. Here: the right order, biased low.
    ratio = got["dgb_over_delta_cm_s_22C"] / truth["dgb_over_delta_cm_s_22C"]
    assert 0.4 < ratio < 1.3

    runs = _cli("runs", "--catalog", str(folder), "-n", "20")
    assert runs.returncode == 0, runs.stderr
    assert runs.stdout.count("LLTO-demo-seed1") == 14
    replay = _cli("replay", "-1", "--catalog", str(folder))
    assert replay.returncode == 0 and "replayed" in replay.stdout
    images = [u for u in out["runs"]][3:5]  # sims_image, sims_line_profile of cycle 0
    ana = _cli("analyze", *images, "--catalog", str(folder), "--json",
               "--figures", str(tmp_path / "fig"))
    assert ana.returncode == 0, ana.stderr[-2000:]
    kinds = sorted(r["kind"] for r in json.loads(ana.stdout.strip().splitlines()[-1]))
    assert kinds == ["image", "profiles"]
    assert list((tmp_path / "fig").glob("*.png"))


def test_analyze_refuses_a_missing_catalog(tmp_path) -> None:
    proc = _cli("analyze", "1", "--catalog", str(tmp_path / "none"))
    assert proc.returncode == 2
    assert "no catalog" in proc.stderr


def test_campaign_points_leave_out_non_positive_rates() -> None:
    from lltolab.diffusion import BulkDiffusivity
    from lltolab.run_analysis import _campaign_points

    results = [
        {"kind": "image", "temperature_K": 295.15, "median_dgb_over_delta_cm_s": 1e-6},
        {"kind": "profiles", "temperature_K": 295.15, "d_eff_cm2_s": 2e-9},
        {"kind": "image", "temperature_K": 473.15, "median_dgb_over_delta_cm_s": -3e-3},
        {"kind": "profiles", "temperature_K": 473.15, "d_eff_cm2_s": 1e-6},
    ]
    pts = _campaign_points(results, BulkDiffusivity.paper_default())
    assert [p["temperature_K"] for p in pts] == [295.15, 473.15]
    assert pts[0]["dgb_over_delta_cm_s"] == 1e-6
    assert "dgb_over_delta_cm_s" not in pts[1] and pts[1]["d_eff_cm2_s"] == 1e-6


@pytest.mark.timeout(180)
def test_shell_sim_loads_a_session(tmp_path) -> None:
    """`lltolab shell --sim` starts IPython with the session and its devices in the namespace."""
    proc = subprocess.run(
        [sys.executable, "-m", "lltolab.cli", "shell", "--sim", "--catalog",
         str(tmp_path / "cat"), "--sample-id", "S1"],
        input='print("NDEV", len(session.devices), stage.name, RE.md["sample_id"])\nexit()\n',
        capture_output=True, text=True, timeout=150,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "NDEV 7 stage S1" in proc.stdout


def test_shell_needs_sim_or_config() -> None:
    proc = _cli("shell")
    assert proc.returncode == 2
    assert "--sim" in proc.stderr


def test_demo_report_names_a_missing_value_instead_of_crashing() -> None:
    """A None extracted value once crashed the text report (format of None); now the report
    says which quantity is missing and why, and the values that exist are still shown."""
    from lltolab.cli import DEMO_QUANTITIES, demo_extracted, demo_report

    results = [
        {"kind": "image", "run": "scan4_ab", "median_dgb_over_delta_cm_s": None,
         "boundaries": {"n_boundaries": 31, "n_selected": 0}},
        {"kind": "profiles", "run": "scan5_cd", "method": "erfc", "d_eff_cm2_s": 2.2e-9},
    ]
    extracted, missing = demo_extracted(results)
    assert set(extracted) == set(DEMO_QUANTITIES)
    assert extracted["d_eff_cm2_s_22C"] == 2.2e-9
    assert extracted["dgb_over_delta_cm_s_22C"] is None
    assert "31 boundaries, 0 with a resolvable step" in missing["dgb_over_delta_cm_s_22C"]
    assert "time-evolution" in missing["d_eff_cm2_s_200C"]  # no such result at all
    assert "d_eff_cm2_s_22C" not in missing
    out = {"runs": ["u"] * 14, "catalog": "/tmp/x", "wall_s": 12.0, "extracted": extracted,
           "missing": missing, "truth": {k: 1e-6 for k in DEMO_QUANTITIES}}
    text = demo_report(out)
    assert "n/a" in text and "dgb_over_delta_cm_s_22C: not extracted:" in text
    assert "2.200e-09" in text

    _, failed = demo_extracted([], {"image": "ValueError: no boundaries"})
    assert failed["dgb_over_delta_cm_s_22C"].startswith("the image analysis failed")
