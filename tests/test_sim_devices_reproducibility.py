"""A seed reproduces: lab time, not wall time, drives the virtual lab's physics.

The exchange → image → anneal → re-image workflow runs on a stepped lab clock
(``time_scale=None``): moves settle and poll in lab seconds, waits and acquisitions jump,
a suspension lasts as many lab seconds as the stage needs to cool again. The same seed must
then give the same counts, the same thermal history and the same extracted values, whatever
the machine's load.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from lltolab.diffusion import Microstructure, VirtualSample
from lltolab.plans import SUSPENDED_SOURCE, quench, sims_image
from lltolab.run_analysis import analyze_runs
from lltolab.session import STAGE_IMAGING_MAX_K, start
from lltolab.sim_devices import SimsSettings, VirtualClock, VirtualLab

PROFILE_MM = [0.05, 0.1, 0.2, 0.4, 0.7]


def _lab(seed: int, folder: Path) -> VirtualLab:
    """A small virtual lab (60 x 40 µm window) so that a whole workflow takes seconds."""
    micro = Microstructure.polycrystal(60e-6, 40e-6, 1e-6, seed=seed, origin_m=(-5e-6, 0.0))
    sample = VirtualSample(micro, line_extent_m=(-0.3e-3, 1.2e-3))
    settings = SimsSettings(field_of_view_um=(50.0, 30.0), pixels=(50, 30))
    return VirtualLab(seed=seed, sample=sample, time_scale=None, sims_settings=settings,
                      export_folder=folder / "exports")


class _Load:
    """A busy process competing with the run for the cores (the machine made slower)."""

    def __enter__(self) -> _Load:
        self._proc = subprocess.Popen([sys.executable, "-c", "while True: pass"])
        return self

    def __exit__(self, *exc: object) -> None:
        self._proc.kill()
        self._proc.wait(timeout=10)


def _workflow(seed: int, folder: Path) -> dict:
    """The exchange → image → anneal → re-image workflow on a small lab: what a
    reproducible run must repeat exactly."""
    lab = _lab(seed, folder)
    with start(sim=True, catalog=folder / "cat", sample_id="S", lab=lab, time_scale=None,
               callbacks=False) as s:
        uids = s.RE(s.plans.exchange_quench_image_anneal_reimage(
            **s.workflow_devices(), exchange_s=10 * 3600.0, anneal_K=473.15,
            anneal_s=1800.0, cycles=1, profile_positions_mm=PROFILE_MM, record=s.record))
        counts = hashlib.sha256()
        for p in sorted(lab.export_folder.glob("*.bif6")):
            counts.update(p.read_bytes())
        kinds = {u: s.catalog[u].metadata["start"]["plan_name"] for u in uids}
        profiles = [u for u in uids if kinds[u] == "sims_line_profile"]
        results = [r for r in analyze_runs(s.catalog, profiles) if r["kind"] == "profiles"]
        return {
            "counts": counts.hexdigest(),
            "n_exports": len(list(lab.export_folder.glob("*.bif6"))),
            "history": s.record.history(),
            "lab_end_s": lab.clock.now(),
            "sample_segments": [(g.start_s, g.end_s, g.temperature_K, g.immersed)
                                for g in lab.sample.history()],
            "d_eff": [r.get("d_eff_cm2_s") for r in results],
            "plans": [kinds[u] for u in uids],
        }


@pytest.mark.slow
@pytest.mark.timeout(1200)
def test_same_seed_same_counts_history_and_values_under_load(tmp_path) -> None:
    first = _workflow(4, tmp_path / "a")
    with _Load():
        loaded = _workflow(4, tmp_path / "b")
    assert first["n_exports"] == 4  # image + profile, twice
    assert len(first["d_eff"]) == 2 and all(d and d > 0 for d in first["d_eff"])
    for key in first:
        assert loaded[key] == first[key], key  # exact: not approximately


def test_stepped_clock_stands_still_between_jumps() -> None:
    clock = VirtualClock(None, start_s=10.0)
    assert clock.stepped and clock.time_scale is None
    t = clock.now()
    time.sleep(0.05)
    assert clock.now() == t == 10.0
    assert clock.wall_seconds(3600.0) == 0.0
    fired: list[tuple[float, float]] = []
    spans: list[tuple[float, float]] = []
    clock.on_jump(lambda a, b: spans.append((a, b)))
    clock.schedule(25.0, lambda at: fired.append((at, clock.now())))
    assert clock.jump(20.0) == 30.0
    assert fired == [(25.0, 25.0)]  # the event fired at its lab time, inside the jump
    assert spans == [(10.0, 25.0), (25.0, 30.0)]
    clock.sleep(5.0)  # a stepped clock's sleep is a jump
    assert clock.now() == 35.0
    with pytest.raises(ValueError, match="time_scale"):
        VirtualClock(0.0)
    with pytest.raises(ValueError, match="event time"):
        clock.schedule(float("nan"), lambda at: None)


def test_stage_move_takes_the_same_lab_time_however_slow_the_machine(tmp_path) -> None:
    """A quench settles after the same lab seconds and readings with or without CPU load."""
    ends = []
    for k, load in enumerate((False, True)):
        lab = _lab(1, tmp_path / str(k))
        with start(sim=True, catalog=tmp_path / f"cat{k}", sample_id="S", lab=lab,
                   time_scale=None, callbacks=False) as s:
            dv = s.devices
            t0 = lab.clock.now()
            if load:
                with _Load():
                    s.RE(quench(dv["stage"], dv["clock"], 163.15, record=s.record))
            else:
                s.RE(quench(dv["stage"], dv["clock"], 163.15, record=s.record))
            seg = s.record.history()[-1]
            ends.append((lab.clock.now() - t0, seg["temperature_K"], lab.stage.commands[-5:]))
    assert ends[0] == ends[1]
    assert ends[0][0] > 60.0  # the ramp and the 60 s settling took lab time
    assert ends[0][1][1] == pytest.approx(163.15, abs=0.5)


def _suspended_image(folder: Path) -> tuple[list[dict], float, float, str]:
    """LN₂ runs out 10 min before the end of a 5 h image and is refilled 5 min after it."""
    lab = _lab(2, folder)
    with start(sim=True, catalog=folder / "cat", sample_id="S", lab=lab, time_scale=None,
               callbacks=False) as s:
        dv = s.devices
        s.RE(quench(dv["stage"], dv["clock"], 163.15, record=s.record))
        t0 = lab.clock.now()
        acq = lab.sims.settings.duration_s
        lab.schedule(t0 + acq - 600.0, lambda _t: lab.stage.inject_fault("ln2_empty"))
        lab.schedule(t0 + acq + 300.0, lambda _t: lab.stage.clear_fault("ln2_empty"))
        states: list[str] = []
        s.RE.state_hook = lambda new, old: states.append(new)
        try:
            (uid,) = s.RE(sims_image(dv["sims"], dv["stage"], dv["clock"], record=s.record))
        finally:
            s.RE.state_hook = None
        assert "suspending" in states
        stop = s.catalog[uid].metadata["stop"]
        return s.record.history(), t0, lab.clock.now(), stop["exit_status"]


@pytest.mark.timeout(300)
def test_suspension_is_in_the_history_at_the_real_stage_temperature(tmp_path) -> None:
    history, t0, t_end, status = _suspended_image(tmp_path / "a")
    assert status == "success"
    image = [g for g in history if g["start_s"] >= t0]
    # contiguous from the image's start to its end, no gap, no overlap
    assert image[0]["start_s"] == t0 and image[-1]["end_s"] == t_end
    for a, b in zip(image[:-1], image[1:], strict=True):
        assert a["end_s"] == b["start_s"]
    suspended = [g for g in image if g["source"] == SUSPENDED_SOURCE]
    assert suspended, image
    temps = [t for g in image for t in np.atleast_1d(g["temperature_K"])]
    # LN₂ out for 15 min: the stage warmed well past the imaging limit (to ~190 K), and the
    # history says so instead of the setpoint
    assert max(temps) > STAGE_IMAGING_MAX_K + 5
    assert max(temps) < 250
    # the repeated acquisition (5 h, after the stage re-cooled) is the last segment, cold
    assert image[-1]["source"] == "sims_image"
    assert image[-1]["end_s"] - image[-1]["start_s"] >= 5 * 3600 - 1
    assert float(np.mean(image[-1]["temperature_K"])) < STAGE_IMAGING_MAX_K
    # and it reproduces exactly
    again = _suspended_image(tmp_path / "b")
    assert json.dumps(again[0]) == json.dumps(history)


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_lltolab_demo_reproduces_exactly(tmp_path) -> None:
    """`lltolab demo --seed 3` twice into one catalog, the second time beside a CPU-bound
    process: the second run is a new virtual sample, not a continuation of the first."""
    folder = tmp_path / "demo"

    def demo(seen: set[str]) -> dict:
        proc = subprocess.run([sys.executable, "-m", "lltolab.cli", "demo", "--json",
                               "--seed", "3", "--catalog", str(folder)],
                              capture_output=True, text=True, timeout=800)
        assert proc.returncode == 0, proc.stderr[-3000:]
        out = json.loads(proc.stdout.strip().splitlines()[-1])
        new = sorted(p for p in Path(out["exports"]).glob("*.bif6") if p.name not in seen)
        seen.update(p.name for p in new)
        counts = [hashlib.sha256(p.read_bytes()).hexdigest() for p in new]
        return {"extracted": out["extracted"], "truth": out["truth"], "counts": counts,
                "missing": out["missing"], "runs": len(out["runs"])}

    seen: set[str] = set()
    first = demo(seen)
    burner = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        second = demo(seen)
    finally:
        burner.kill()
        burner.wait(timeout=10)
    assert second == first
    assert first["missing"] == {} and len(first["counts"]) == 4
