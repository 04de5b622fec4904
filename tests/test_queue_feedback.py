"""Live feedback: progress of temperature moves and lab waits, replay callbacks, the shell."""

import io
import json
import math
import os
import subprocess
import sys
import threading
import time

import pytest
from bluesky.utils import TerminalProgressBar

from lltolab.comm import TemperatureLoop
from lltolab.devices import LabClock, WallClock
from lltolab.sim_devices import VirtualClock


class _Bath:
    """A first-order thermal stage: approaches the setpoint with time constant tau (wall s)."""

    def __init__(self, start_K: float, tau_s: float) -> None:
        self.T, self.sp, self.tau, self.t = start_K, start_K, tau_s, time.monotonic()
        self.lock = threading.Lock()

    def read(self) -> float:
        with self.lock:
            now = time.monotonic()
            self.T = self.sp + (self.T - self.sp) * math.exp(-(now - self.t) / self.tau)
            self.t = now
            return self.T

    def write(self, value: float) -> None:
        self.read()
        with self.lock:
            self.sp = value


def test_temperature_move_reports_progress_fractions():
    bath = _Bath(295.0, tau_s=0.3)
    loop = TemperatureLoop(name="stage", read_temperature=bath.read, write_setpoint=bath.write,
                           limits=(77.0, 500.0), tolerance=0.5, settle_time=0.1,
                           poll_period=0.02, timeout=20)
    seen: list[dict] = []
    status = loop.set(200.0)
    status.watch(lambda **kw: seen.append(kw))
    status.wait(timeout=20)
    with_values = [s for s in seen if "current" in s]
    assert len(with_values) >= 5
    assert all(s["name"] == "stage" and s["unit"] == "K" and s["target"] == 200.0
               for s in with_values)
    assert with_values[0]["initial"] == pytest.approx(295.0, abs=10)
    fractions = [s["fraction"] for s in with_values]
    assert fractions[0] > 0.5 and fractions[-1] < 0.05
    assert all(0.0 <= f <= 1.0 for f in fractions)
    assert fractions == sorted(fractions, reverse=True)  # monotonic approach


def test_progress_bar_shows_a_bar_for_moves_and_waits():
    bath = _Bath(295.0, tau_s=0.5)
    loop = TemperatureLoop(name="stage", read_temperature=bath.read, write_setpoint=bath.write,
                           limits=(77.0, 500.0), tolerance=0.5, settle_time=0.1,
                           poll_period=0.02, timeout=20)
    clock = LabClock(name="clock", source=WallClock(), progress_period_s=0.05)
    move, wait = loop.set(250.0), clock.set(0.5)
    bar = TerminalProgressBar([move, wait], delay_draw=0)
    bar.fp = io.StringIO()
    time.sleep(0.3)
    meters = list(bar.meters)
    move.wait(timeout=20)
    wait.wait(timeout=10)
    bar.clear()
    assert "No progress bar available" not in " ".join(meters), meters
    assert "stage" in meters[0] and "K" in meters[0]
    assert "clock" in meters[1] and "s (lab)" in meters[1]


def test_lab_wait_reports_elapsed_and_total_lab_time():
    clock = LabClock(name="clock", source=WallClock(), progress_period_s=0.02)
    seen: list[dict] = []
    status = clock.set(0.6)
    status.watch(lambda **kw: seen.append(kw))
    status.wait(timeout=10)
    seen = [s for s in seen if "current" in s]
    assert seen and all(s["target"] == 0.6 and s["unit"] == "s (lab)" for s in seen)
    elapsed = [s["current"] for s in seen]
    assert elapsed == sorted(elapsed) and 0 <= elapsed[0] <= elapsed[-1] <= 0.6
    assert len(seen) >= 3 and elapsed[-1] > elapsed[0]
    fractions = [s["fraction"] for s in seen]
    assert fractions[0] > fractions[-1] and all(0 <= f <= 1 for f in fractions)
    # a simulated lab's clock jumps: the wait still completes with its total
    jump = LabClock(name="clock", source=VirtualClock(3600.0)).set(1800.0)
    jump.wait(timeout=10)
    assert jump.elapsed_s in (0.0, 1800.0)
    with pytest.raises(ValueError, match="progress_period_s"):
        LabClock(name="c", progress_period_s=0)


def test_replay_callbacks_jsonl_and_bad_input(tmp_path, capsys):
    from bluesky import RunEngine
    from bluesky.plans import count
    from ophyd.sim import det

    from lltolab.catalog import catalog_writer, close_catalogs

    RE = RunEngine({})
    writer = catalog_writer(str(tmp_path / "cat"))
    RE.subscribe(writer)
    (uid,) = RE(count([det], num=3), sample_id="S1")
    if hasattr(writer, "close"):
        writer.close()
    close_catalogs()
    base = [sys.executable, "-m", "lltolab.cli", "replay", uid[:8], "--catalog",
            str(tmp_path / "cat")]
    out = subprocess.run([*base, "--callback", "jsonl", str(tmp_path / "docs.jsonl")],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    lines = [json.loads(x) for x in (tmp_path / "docs.jsonl").read_text().splitlines()]
    names = [name for name, _ in lines]
    assert names[0] == "start" and names[-1] == "stop" and names.count("event") == 3
    assert lines[0][1]["uid"] == uid
    from lltolab.cli import main

    for bad in (["jsonl"], ["table", "x.jsonl"], ["plot"]):
        assert main(["replay", uid[:8], "--catalog", str(tmp_path / "nowhere"),
                     "--callback", *bad]) == 2
    assert "callback" in capsys.readouterr().err


@pytest.mark.slow
def test_replay_to_the_table_and_the_plotting_bec(tmp_path):
    from bluesky import RunEngine
    from bluesky.plans import count
    from ophyd.sim import det

    from lltolab.catalog import catalog_writer, close_catalogs

    RE = RunEngine({})
    writer = catalog_writer(str(tmp_path / "cat"))
    RE.subscribe(writer)
    (uid,) = RE(count([det], num=3), sample_id="S1")
    if hasattr(writer, "close"):
        writer.close()
    close_catalogs()
    base = [sys.executable, "-m", "lltolab.cli", "replay", uid[:8], "--catalog",
            str(tmp_path / "cat")]
    table = subprocess.run([*base, "--callback", "table"], capture_output=True, text=True,
                           timeout=120)
    assert table.returncode == 0, table.stderr
    assert "det" in table.stdout  # the BEC table's column
    bec = subprocess.run([*base, "--callback", "bec"], capture_output=True, text=True,
                         timeout=120, env={**os.environ, "MPLBACKEND": "Agg"})
    assert bec.returncode == 0, bec.stderr


def test_shell_prompt_comes_first_and_start_returns_the_shells_session(tmp_path):
    """The prompt appears before the lab is built; the README's start() gives the shell's s."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(
        [sys.executable, "-m", "lltolab.cli", "shell", "--sim", "--catalog",
         str(tmp_path / "cat"), "--sample-id", "S1"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    buf = b""
    while b"In [1]" not in buf:
        chunk = proc.stdout.read1(100)
        if not chunk:
            break
        buf += chunk
    prompt_s = time.perf_counter() - t0
    script = (
        "from lltolab.session import start\n"
        "s2 = start(sim=True, catalog='~/lltolab-data', sample_id='LLTO-A1')\n"
        "print('SAME', s2 is s, s2.RE is RE, RE.md['sample_id'], s.bec.plots)\n"
        "exit()\n")
    out, err = proc.communicate(script.encode(), timeout=240)
    assert proc.returncode == 0, err.decode()[-2000:]
    assert b"In [1]" in buf, (buf + out).decode()[-2000:]
    assert "SAME True True S1 False" in out.decode(), out.decode()[-2000:]
    assert prompt_s < 15.0, f"prompt after {prompt_s:.1f} s"  # about 1-2 s on idle cores
    assert not (tmp_path / "lltolab-data").exists()


def test_lazy_best_effort_callback_builds_on_first_document_and_switches_plots():
    from bluesky import RunEngine
    from bluesky.plans import count
    from ophyd.sim import det

    from lltolab._feedback import LazyBestEffortCallback

    bec = LazyBestEffortCallback()
    assert bec.plots is False and bec._bec is None
    bec.enable_plots()
    assert bec.plots is True
    bec.disable_plots()
    RE = RunEngine({})
    RE.subscribe(bec)
    RE(count([det], num=2))
    assert bec._bec is not None and bec._bec._plots_enabled is False
    bec.enable_plots()
    assert bec._bec._plots_enabled is True
    with pytest.raises(TypeError, match="plots"):
        LazyBestEffortCallback(plots="yes")


def test_shell_with_a_bad_configuration_says_so_in_one_line(tmp_path):
    """Refused before IPython starts (the CLI's early checks), or at the first command."""
    proc = subprocess.run(
        [sys.executable, "-m", "lltolab.cli", "shell", "--config", str(tmp_path / "no.toml")],
        input="print('AFTER')\n", capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "does not exist" in proc.stderr and "Traceback" not in proc.stderr
    assert "AFTER" not in proc.stdout
