"""CryoStage (real device class) against the Lake Shore simulator and a recording server."""

from __future__ import annotations

import threading
import time

import pytest
from bluesky import RunEngine
from bluesky import plan_stubs as bps
from bluesky import plans as bp
from bluesky.protocols import Configurable, Movable, Readable, Stoppable

from lltolab.comm import (
    InstrumentDisconnected,
    InstrumentProtocolError,
    InstrumentReportedError,
    InstrumentTimeout,
    MoveStopped,
    VisaLineTransport,
)
from lltolab.devices import CryoStage
from lltolab.sim_devices import LineServer

# 200 lab seconds per wall second: the ~60 s lab cool-down time constant takes 0.3 s
pytestmark = [pytest.mark.timeout(60),
              pytest.mark.simulator("lakeshore", time_scale=200.0, seed=2, noise_K=0.01)]

IO_TIMEOUT_S = 0.5


@pytest.fixture
def stage(sim):
    dev = CryoStage(sim.resource, name="stage", tolerance=0.5, settle_time=0.3,
                    poll_period=0.05, timeout=10.0, heater_range=3, timeout_s=IO_TIMEOUT_S)
    yield dev
    dev.close()


def sent(sim, since: int) -> list[str]:
    return sim.commands[since:]


# ---------------------------------------------------------------------- conformance
def test_bluesky_protocols_and_keys(stage):
    for proto in (Readable, Movable, Stoppable, Configurable):
        assert isinstance(stage, proto), proto
    reading = stage.read()
    assert stage.describe().keys() == reading.keys()
    config = stage.read_configuration()
    assert stage.describe_configuration().keys() == config.keys()
    names = list(reading) + list(config)
    assert len(names) == len(set(names))
    assert all(n == "stage" or n.startswith("stage_") for n in names)
    assert stage.hints == {"fields": ["stage"]}
    assert stage.describe()["stage"]["units"] == "K"
    assert stage.describe()["stage"]["dtype"] == "number"
    assert config["stage_identity"]["value"].startswith("LSCI,MODEL336")
    assert config["stage_heater_range"]["value"] == 0
    assert config["stage_low_limit"]["value"] == 77.0


def _between(read, sim) -> tuple[float, float, float]:
    """``read()`` with the simulated temperature (K) just before and just after it: the lab
    clock runs at 200× wall time, so a loaded machine lets it move between the two reads."""
    before = sim.temperature_K
    value = read()
    return value, min(before, sim.temperature_K), max(before, sim.temperature_K)


def test_reading_matches_the_simulated_stage(sim, stage):
    value, low, high = _between(lambda: stage.position, sim)
    assert low - 0.2 <= value <= high + 0.2
    value, low, high = _between(stage.temperature_C.get, sim)
    assert low - 273.15 - 0.2 <= value <= high - 273.15 + 0.2
    assert stage.heater_status.get() == 0
    assert stage.input_status.get() == 0


# ---------------------------------------------------------------------- commands on the wire
def test_writes_expected_commands(sim, stage):
    n = len(sim.commands)
    stage.ramp_rate.put(12.5)
    stage.ramp_rate.put(0)
    stage.heater_range.put(2)
    stage.setpoint.put(150.0)
    assert sent(sim, n) == [
        "RAMP 1,1,12.5;*ESR?",
        "RAMP 1,0,0;*ESR?",
        "RANGE 1,2;*ESR?",
        "SETP 1,150.0000;*ESR?",
    ]
    assert stage.ramp_rate.get() == 0.0
    assert stage.heater_range.get() == 2


def test_move_sequence_on_the_wire(sim, stage):
    n = len(sim.commands)
    stage.set(200.0).wait(10)
    lines = sent(sim, n)
    # ramp query (timeout), range check + fix, setpoint, then polls
    assert lines[:4] == ["RAMP? 1", "RANGE? 1", "RANGE 1,3;*ESR?", "SETP 1,200.0000;*ESR?"]
    assert set(lines[4:]) == {"KRDG? A;RDGST? A;HTRST? 1"}


class Recorder:
    """A loopback line server that records lines and answers like a quiet Lake Shore."""

    def __init__(self) -> None:
        self.lines: list[str] = []
        self.server = LineServer(self.handle, name="recorder")
        self.server.start()

    def handle(self, line: str) -> str | None:
        self.lines.append(line)
        replies = {"KRDG? B;RDGST? B": "+100.000;0", "RAMP? 2": "0,+0.0",
                   "KRDG? B;RDGST? B;HTRST? 2": "+100.000;0;0", "SETP? 2": "+100.000"}
        if line.endswith(";*ESR?"):
            return "0"
        return replies.get(line)

    @property
    def resource(self) -> str:
        return f"TCPIP::127.0.0.1::{self.server.port}::SOCKET"


@pytest.fixture
def recorder():
    r = Recorder()
    yield r
    r.server.close()


def test_other_input_and_loop(recorder):
    dev = CryoStage(recorder.resource, name="cs", input_channel="B", loop=2,
                    settle_time=0.0, poll_period=0.01, timeout=2.0, timeout_s=IO_TIMEOUT_S)
    try:
        assert dev.position == 100.0
        dev.set(100.2).wait(5)
        dev.heater_range.put(1)
        dev.ramp_rate.put(5)
    finally:
        dev.close()
    assert recorder.lines[:4] == [
        "KRDG? B;RDGST? B", "RAMP? 2", "SETP 2,100.2000;*ESR?", "KRDG? B;RDGST? B;HTRST? 2",
    ]
    assert recorder.lines[-2:] == ["RANGE 2,1;*ESR?", "RAMP 2,1,5.0;*ESR?"]


# ---------------------------------------------------------------------- limits
def test_out_of_range_fails_before_any_io(sim, stage):
    n = len(sim.commands)
    with pytest.raises(ValueError, match=r"600.0 K is above the high limit 500.0 K"):
        stage.set(600.0)
    with pytest.raises(ValueError, match=r"50.0 K is below the low limit 77.0 K"):
        stage.set(50.0)
    with pytest.raises(ValueError, match=r"600.0 K is above the high limit 500.0 K"):
        stage.setpoint.put(600.0)
    with pytest.raises(ValueError, match="5 is above the high limit 3"):
        stage.heater_range.put(5)
    with pytest.raises(ValueError, match="integer"):
        stage.heater_range.put(1.5)
    with pytest.raises(ValueError, match="0.05 K/min is below the lowest ramp rate"):
        stage.ramp_rate.put(0.05)
    with pytest.raises(ValueError, match="150.0 K/min is above the high limit 100.0 K/min"):
        stage.ramp_rate.put(150.0)
    assert sent(sim, n) == []


def test_bad_constructor_arguments(sim):
    with pytest.raises(ValueError, match="input_channel"):
        CryoStage(sim.resource, name="x", input_channel="E")
    with pytest.raises(ValueError, match="loop"):
        CryoStage(sim.resource, name="x", loop=3)
    with pytest.raises(ValueError, match="heater_range"):
        CryoStage(sim.resource, name="x", heater_range=4)
    with pytest.raises(TypeError, match="resource"):
        CryoStage(42, name="x")


# ---------------------------------------------------------------------- moves
def test_move_settles_with_ramp(sim, stage):
    stage.ramp_rate.put(60.0)  # 1 K/s lab = 200 K/s wall
    t0 = time.monotonic()
    status = stage.set(180.0)
    status.wait(15)
    assert status.success
    assert sim.temperature_K == pytest.approx(180.0, abs=0.5)
    assert time.monotonic() - t0 >= 0.3
    assert stage.target.get() == 180.0
    assert stage.setpoint.get() == pytest.approx(180.0)


def test_stop_mid_move_holds(sim, stage):
    stage.set(100.0).wait(15)
    stage.ramp_rate.put(10.0)  # 10 K/min lab = 33 K/s wall: 200 K take ~6 s
    status = stage.set(300.0)
    time.sleep(0.5)
    stage.stop()
    with pytest.raises(MoveStopped):
        status.wait(2)
    held = float(sim.model.target_K)
    assert 100.5 < held < 200.0
    assert not stage.moving
    n = len(sim.commands)
    stage.stop()  # idle: no I/O at all
    assert sent(sim, n) == []


def test_unreachable_target_times_out_and_holds(sim, stage):
    stage.move_timeout.put(0.6)
    status = stage.set(78.0)  # below the LN2-limited floor (~81 K)
    with pytest.raises(InstrumentTimeout, match="78 K"):
        status.wait(10)
    assert sim.model.target_K > 80.0  # held at the temperature reached, not at 78 K


def test_ln2_run_out_cannot_stay_cold(sim, stage):
    stage.set(100.0).wait(15)
    sim.inject_fault("ln2_empty")
    sim.clock.jump(3 * 3600)
    stage.move_timeout.put(0.5)
    with pytest.raises(InstrumentTimeout):
        stage.set(100.0).wait(10)


# ---------------------------------------------------------------------- faults
def test_esr_error_is_reported(sim):
    dev = CryoStage(sim.resource, name="wide", limits=(1.0, 2000.0), timeout_s=IO_TIMEOUT_S)
    try:
        with pytest.raises(InstrumentReportedError, match=r"execution error"):
            dev.setpoint.put(1600.0)  # allowed here, refused by the controller
    finally:
        dev.close()


def test_power_on_bit_is_not_an_error(sim, stage):
    stage.heater_range.put(1)  # first *ESR? after power-up returns 128: fine


def test_sensor_break_raises_on_read_and_fails_moves(sim, stage):
    stage.set(150.0).wait(15)
    sim.inject_fault("sensor_break")
    with pytest.raises(InstrumentReportedError, match="input A status 1 .invalid reading"):
        stage.read()
    with pytest.raises(InstrumentReportedError, match="invalid reading"):
        stage.set(160.0).wait(5)
    assert stage.input_status.get() == 1
    sim.clear_fault()
    assert stage.position == pytest.approx(sim.temperature_K, abs=0.5)


def test_heater_failure_fails_the_move(sim, stage):
    sim.inject_fault("heater_failure")
    with pytest.raises(InstrumentReportedError, match="heater open load"):
        stage.set(200.0).wait(5)
    assert stage.heater_status.get() == 1


def test_timeout_is_an_instrument_timeout(sim, stage):
    _ = stage.position
    sim.inject_fault("no_reply")
    t0 = time.monotonic()
    with pytest.raises(InstrumentTimeout):
        stage.readback.get()
    with pytest.raises(InstrumentTimeout):
        stage.setpoint.put(200.0)
    assert time.monotonic() - t0 < 6 * IO_TIMEOUT_S + 1.0
    with pytest.raises(InstrumentTimeout):
        stage.set(200.0).wait(5)  # the ramp-rate query fails before the setpoint is written
    sim.clear_fault()
    assert stage.position > 0


def test_garbled_reply_is_a_protocol_error(sim, stage):
    sim.inject_fault("garbled")
    with pytest.raises(InstrumentProtocolError):
        stage.readback.get()
    with pytest.raises(InstrumentProtocolError):
        stage.heater_range.put(1)
    sim.clear_fault()
    assert stage.heater_range.get() in (0, 1)


def test_disconnect_then_reconnect(sim, stage):
    _ = stage.position
    time.sleep(0.05)
    sim.inject_fault("drop")
    time.sleep(0.05)
    assert stage.position > 0  # reopened transparently
    assert stage.transport.transport.reconnects >= 1
    sim.inject_fault("reject_connections")
    sim.inject_fault("drop")
    time.sleep(0.05)
    with pytest.raises((InstrumentDisconnected, InstrumentTimeout)):
        stage.read()
    sim.clear_fault()
    assert stage.position > 0


def test_fault_during_move_never_hangs(sim, stage):
    status = stage.set(250.0)
    threading.Timer(0.1, sim.inject_fault, args=("no_reply",)).start()
    with pytest.raises((InstrumentTimeout, InstrumentDisconnected)):
        status.wait(10)


def test_accepts_an_open_transport(sim):
    link = VisaLineTransport(sim.resource, timeout_s=IO_TIMEOUT_S)
    dev = CryoStage(link, name="shared")
    try:
        assert dev.identity.get().startswith("LSCI")
    finally:
        dev.close()
    assert not link.is_open


# ---------------------------------------------------------------------- RunEngine
def test_runengine_mv_and_scan(sim, stage):
    RE = RunEngine({})
    docs: list[tuple[str, dict]] = []
    RE.subscribe(lambda name, doc: docs.append((name, doc)))
    RE(bps.mv(stage, 160.0))
    assert stage.position == pytest.approx(160.0, abs=0.5)
    docs.clear()
    RE(bp.scan([stage], stage, 150.0, 170.0, 3))
    events = [d for n, d in docs if n == "event"]
    assert [round(e["data"]["stage"]) for e in events] == [150, 160, 170]
    for e, target in zip(events, (150.0, 160.0, 170.0), strict=True):
        assert abs(e["data"]["stage"] - target) <= 0.5
        assert e["data"]["stage_target"] == target
    descriptor = next(d for n, d in docs if n == "descriptor")
    assert "stage_ramp_rate" in descriptor["configuration"]["stage"]["data"]
    stop = next(d for n, d in docs if n == "stop")
    assert stop["exit_status"] == "success"
