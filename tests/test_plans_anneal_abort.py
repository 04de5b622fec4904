"""The anneal's safety abort: whatever fails, the sample is asked out and its time recorded.

A real RunEngine drives the anneal plan with a real Furnace over Modbus RTU (TCP) to the
simulated Eurotherm, a SampleHandler whose operator is a callback, a LabClock on a virtual
clock and a SampleRecord on disk.
"""

from __future__ import annotations

import math
import threading
import time

import pytest
from bluesky import RunEngine

from lltolab.devices import (
    CallbackConfirmation,
    Furnace,
    LabClock,
    SampleHandler,
    SampleRecord,
)
from lltolab.plans import AnnealAborted, anneal
from lltolab.sim_devices import EurothermSimulator, VirtualClock

pytestmark = pytest.mark.timeout(120)

ANNEAL_K = 473.15
SCALE = 2000.0  # lab seconds per wall second


class Lab:
    """The anneal's devices on a simulated furnace; ``moves`` lists every operator request."""

    def __init__(self, tmp_path, *, refuse: set[str] | None = None) -> None:
        self.clock = VirtualClock(time_scale=SCALE)
        self.sim = EurothermSimulator(self.clock, control_tau_s=30.0, heat_tau_s=60.0).start()
        self.furnace = Furnace(self.sim.url, name="furnace", tolerance=2.0, settle_time=5.0,
                               timeout=3600.0, poll_period=0.02, timeout_s=0.2)
        self.moves: list[str] = []
        self.refuse = refuse or set()

        def operator(request) -> None:
            location = request.params["location"]
            self.moves.append(location)
            if location in self.refuse:
                raise RuntimeError(f"operator could not move the sample to {location}")

        self.handler = SampleHandler(name="handler", confirmation=CallbackConfirmation(operator),
                                     timeout_s=5.0)
        self.lab_clock = LabClock(name="clock", source=self.clock)
        self.record = SampleRecord(name="record", sample_id="LLTO-abort",
                                   path=tmp_path / "sample.json")
        self.RE = RunEngine({})
        self.messages: list[str] = []
        self.RE.msg_hook = lambda msg: self.messages.append(msg.command)

    def close(self) -> None:
        self.furnace.close()
        self.sim.close()


@pytest.fixture
def lab(tmp_path):
    made = Lab(tmp_path)
    yield made
    made.close()


def _kill_link_during_hold(lab: Lab, after_clock_sets: int = 2) -> None:
    """Close the simulated controller (link refused) once the hold has begun."""
    count = {"clock": 0}

    def hook(msg) -> None:
        lab.messages.append(msg.command)
        if msg.command == "set" and getattr(msg.obj, "name", "") == "clock":
            count["clock"] += 1
            if count["clock"] == after_clock_sets:
                lab.sim.close()

    lab.RE.msg_hook = hook


def test_link_death_during_anneal_still_takes_the_sample_out_and_records_it(lab):
    """The furnace link dies mid-hold: the safe setpoint cannot be sent, yet the sample is
    asked out and its time in the furnace (at the last temperature read) is recorded."""
    _kill_link_during_hold(lab)
    with pytest.raises(AnnealAborted) as info:
        lab.RE(anneal(lab.furnace, lab.handler, lab.lab_clock, ANNEAL_K, 3600.0,
                      check_interval_s=600.0, safe_K=295.15, record=lab.record))
    err = info.value
    assert lab.moves == ["furnace", "storage"]
    assert lab.handler.location.get() == "storage"
    (segment,) = lab.record.history()
    assert segment["source"] == "anneal_aborted"
    assert segment["location"] == "furnace"
    assert segment["temperature_K"] == pytest.approx(ANNEAL_K, abs=3.0)
    assert 600.0 <= segment["end_s"] - segment["start_s"] < 3600.0
    # the safe setpoint could not reach the dead link: said, not hidden
    assert any("safe setpoint" in f for f in err.safety_failures)
    assert "safe setpoint" in str(err)


def test_failed_sample_move_does_not_skip_the_record_or_the_safe_setpoint(tmp_path):
    """The operator cannot take the sample out: the history and the safe setpoint still
    happen, and the error names the failed step."""
    lab = Lab(tmp_path, refuse={"storage"})
    try:
        count = {"clock": 0}

        def hook(msg) -> None:
            if msg.command == "set" and getattr(msg.obj, "name", "") == "clock":
                count["clock"] += 1
                if count["clock"] == 2:
                    lab.sim.sensor_break = True

        lab.RE.msg_hook = hook
        with pytest.raises(AnnealAborted, match="sensor break") as info:
            lab.RE(anneal(lab.furnace, lab.handler, lab.lab_clock, ANNEAL_K, 3600.0,
                          check_interval_s=600.0, safe_K=300.15, record=lab.record))
        assert lab.moves == ["furnace", "storage"]
        assert [f for f in info.value.safety_failures if "moving the sample out" in f]
        (segment,) = lab.record.history()
        assert segment["source"] == "anneal_aborted"
        assert lab.sim.target_setpoint_C == pytest.approx(27.0, abs=0.05)
    finally:
        lab.close()


def test_fault_while_heating_asks_the_sample_out_and_records_nothing(lab):
    """A fault before the sample went in: it is still asked to storage (always), the
    furnace goes to the safe setpoint, and no anneal enters the history."""
    def hook(msg) -> None:
        if msg.command == "set" and getattr(msg.obj, "name", "") == "furnace":
            lab.sim.sensor_break = True

    lab.RE.msg_hook = hook
    with pytest.raises(AnnealAborted, match="sensor break") as info:
        lab.RE(anneal(lab.furnace, lab.handler, lab.lab_clock, ANNEAL_K, 3600.0,
                      safe_K=300.15, record=lab.record))
    assert lab.moves == ["storage"]
    assert lab.record.history() == []
    assert info.value.safety_failures == []
    assert lab.sim.target_setpoint_C == pytest.approx(27.0, abs=0.05)


@pytest.mark.parametrize("safe_K", [math.nan, math.inf, -1.0, 0.0, True, "295", 5000.0, 100.0])
def test_bad_safe_K_is_rejected_before_the_first_message(lab, safe_K):
    """NaN, infinite, non-positive, non-numeric or outside the furnace's limits (default
    273.15..1473.15 K): ValueError (TypeError for a non-number) naming the value, before any
    message or any I/O."""
    frames = lab.sim.frames_handled
    with pytest.raises((ValueError, TypeError), match="safe_K|limit|target"):
        lab.RE(anneal(lab.furnace, lab.handler, lab.lab_clock, ANNEAL_K, 3600.0,
                      safe_K=safe_K, record=lab.record))
    assert lab.messages == []
    assert lab.sim.frames_handled == frames
    assert lab.moves == []


def test_furnace_fault_signal_reports_the_status_bits(lab):
    """The furnace's ``fault`` signal is the one place status bits are decoded."""
    assert lab.furnace.fault.get() == ""
    lab.sim.sensor_break = True
    assert lab.furnace.fault.get() == "sensor break"
    lab.sim.over_temperature = True
    lab.sim.sensor_break = False
    lab.furnace.setpoint.put(1473.15)
    lab.clock.jump(3600.0)
    assert "alarm 1 (over-temperature)" in lab.furnace.fault.get()


def test_operator_abort_during_the_hold_still_takes_the_sample_out(lab):
    """The run is paused during the hold and aborted: the sample is asked out, its time in
    the furnace is recorded and the furnace goes to the safe setpoint before the run ends."""
    from bluesky.utils import RunEngineInterrupted

    count = {"clock": 0}

    def hook(msg) -> None:
        if msg.command == "set" and getattr(msg.obj, "name", "") == "clock":
            count["clock"] += 1
            if count["clock"] == 2:  # the pause request must come from another thread
                threading.Thread(target=lab.RE.request_pause, kwargs={"defer": False},
                                 daemon=True).start()
                time.sleep(0.2)

    lab.RE.msg_hook = hook
    with pytest.raises(RunEngineInterrupted):
        lab.RE(anneal(lab.furnace, lab.handler, lab.lab_clock, ANNEAL_K, 3600.0,
                      check_interval_s=600.0, safe_K=300.15, record=lab.record))
    assert lab.RE.state == "paused"
    lab.RE.msg_hook = None
    lab.RE.abort("operator abort during the hold")
    assert lab.RE.state == "idle"
    assert lab.moves == ["furnace", "storage"]
    (segment,) = lab.record.history()
    assert segment["source"] == "anneal_aborted"
    assert segment["end_s"] > segment["start_s"]
    assert lab.sim.target_setpoint_C == pytest.approx(27.0, abs=0.05)


def test_any_failure_during_the_hold_ends_it_safely(lab):
    """A failure that is not the furnace's (here the lab clock) still runs the abort."""
    count = {"clock": 0}
    original = lab.lab_clock.set

    def failing_set(duration_s):
        count["clock"] += 1
        if count["clock"] == 2:
            raise RuntimeError("lab clock failed")
        return original(duration_s)

    lab.lab_clock.set = failing_set
    with pytest.raises(AnnealAborted, match="lab clock failed"):
        lab.RE(anneal(lab.furnace, lab.handler, lab.lab_clock, ANNEAL_K, 3600.0,
                      check_interval_s=600.0, safe_K=300.15, record=lab.record))
    assert lab.moves == ["furnace", "storage"]
    (segment,) = lab.record.history()
    assert segment["source"] == "anneal_aborted"
    assert lab.sim.target_setpoint_C == pytest.approx(27.0, abs=0.05)
