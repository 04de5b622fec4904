"""Furnace (Eurotherm over Modbus RTU) against the simulated controller."""

from __future__ import annotations

import time

import pytest
from bluesky import RunEngine
from bluesky import plan_stubs as bps
from bluesky import plans as bp
from bluesky.protocols import Configurable, Movable, Readable, Stoppable

from lltolab.comm import (
    InstrumentProtocolError,
    InstrumentReportedError,
    InstrumentTimeout,
    MoveStopped,
)
from lltolab.devices import Furnace
from lltolab.sim_devices import EurothermSimulator, VirtualClock

C = 273.15
SCALE = 1000.0  # lab seconds per wall second: a 60 s loop time constant takes 60 ms

pytestmark = [pytest.mark.timeout(60), pytest.mark.simulator("eurotherm", time_scale=SCALE)]


def make_sim(**kwargs) -> EurothermSimulator:
    return EurothermSimulator(VirtualClock(time_scale=SCALE), **kwargs).start()


def make_furnace(url: str, **kwargs) -> Furnace:
    options = dict(tolerance=0.5, settle_time=0.2, timeout=10.0, poll_period=0.02, timeout_s=0.2)
    options.update(kwargs)
    return Furnace(url, name="furnace", **options)


@pytest.fixture
def furnace(sim):
    device = make_furnace(sim.loop_url)
    yield device
    device.close()


# -- conformance --------------------------------------------------------------------------------
def test_bluesky_protocols(furnace):
    for protocol in (Readable, Movable, Stoppable, Configurable):
        assert isinstance(furnace, protocol), protocol


def test_describe_matches_read(furnace):
    reading = furnace.read()
    description = furnace.describe()
    assert reading.keys() == description.keys()
    assert reading["furnace"]["value"] == pytest.approx(22.0 + C)
    assert description["furnace"]["units"] == "K"
    assert description["furnace_output"]["units"] == "%"
    assert furnace.hints == {"fields": ["furnace"]}
    names = [walk.item.name for walk in furnace.walk_signals(include_lazy=True)]
    assert len(names) == len(set(names))


def test_configuration_readable(furnace):
    config = furnace.read_configuration()
    assert config.keys() == furnace.describe_configuration().keys()
    assert config["furnace_setpoint_low"]["value"] == pytest.approx(0.0 + C)
    assert config["furnace_setpoint_high"]["value"] == pytest.approx(1200.0 + C)
    assert config["furnace_ramp_rate"]["value"] == 0.0
    assert furnace.describe_configuration()["furnace_ramp_rate"]["units"] == "K/min"
    assert furnace.controller_limits == pytest.approx((C, 1200.0 + C))


def test_signals_convert_kelvin_and_status_bits(furnace, sim):
    sim.write_registers(2, [1500])  # 150.0 degC
    assert furnace.setpoint.get() == pytest.approx(150.0 + C)
    assert furnace.working_setpoint.get() == pytest.approx(150.0 + C)
    assert 0 < furnace.output.get() <= 100
    furnace.ramp_rate.put(12.5)
    assert sim.read_registers(35, 1, 3) == [125]
    assert furnace.ramp_rate.get() == pytest.approx(12.5)
    assert furnace.status.get() == 0
    assert furnace.sensor_break.get() is False
    sim.sensor_break = True
    assert furnace.sensor_break.get() is True
    with pytest.raises(InstrumentReportedError, match="sensor break"):
        furnace.readback.get()


# -- moves ----------------------------------------------------------------------------------------
def test_set_settles_within_tolerance_for_settle_time(furnace, sim):
    t0 = time.monotonic()
    status = furnace.set(200.0 + C)
    status.wait(10)
    assert status.success
    assert time.monotonic() - t0 >= 0.2  # settle_time in band
    assert abs(sim.temperature_K - (200.0 + C)) <= 0.5
    assert furnace.position == pytest.approx(200.0 + C, abs=0.5)
    assert sim.target_setpoint_C == pytest.approx(200.0)
    assert not furnace.moving


def test_set_with_ramp_and_noise(sim):
    sim.noise_K = 0.2
    device = make_furnace(sim.loop_url, tolerance=1.0)
    try:
        device.ramp_rate.put(6.0)  # 0.1 K/s of lab time, 100 K/s of wall time
        status = device.set(150.0 + C)
        time.sleep(0.05)
        assert not status.done
        assert device.working_setpoint.get() < 150.0 + C  # ramping
        status.wait(10)
        assert status.success
    finally:
        device.close()


def test_out_of_range_fails_before_any_io(furnace, sim):
    furnace.refresh_limits()
    before = sim.frames_handled
    with pytest.raises(ValueError, match="1600.0 K is above the high limit 1473.15 K"):
        furnace.set(1600.0)
    with pytest.raises(ValueError, match="200.0 K is below the low limit 273.15 K"):
        furnace.set(200.0)
    with pytest.raises(ValueError):
        furnace.set(float("nan"))
    assert sim.frames_handled == before


def test_controller_limits_are_checked_before_writing(sim):
    sim.write_registers(12, [3000])  # controller allows at most 300.0 degC
    device = make_furnace(sim.loop_url)
    try:
        with pytest.raises(ValueError, match="controller setpoint high limit 573.15 K"):
            device.set(400.0 + C)  # within the software limits
        assert sim.target_setpoint_C == pytest.approx(22.0)  # nothing written
        before = sim.frames_handled
        with pytest.raises(ValueError, match="573.15"):
            device.set(350.0 + C)  # limits now cached: no I/O at all
        assert sim.frames_handled == before
    finally:
        device.close()


def test_stop_mid_move_holds_present_temperature(furnace, sim):
    status = furnace.set(800.0 + C)
    time.sleep(0.1)
    furnace.stop()
    with pytest.raises(MoveStopped):
        status.wait(5)
    held = sim.target_setpoint_C + C
    assert 22.0 + C < held < 800.0 + C
    assert held == pytest.approx(sim.temperature_K, abs=30.0)


def test_stop_when_idle_does_nothing(furnace, sim):
    furnace.set(100.0 + C).wait(10)
    before = sim.frames_handled
    furnace.stop()
    assert sim.frames_handled == before
    assert sim.target_setpoint_C == pytest.approx(100.0)


def test_unreachable_target_times_out_and_holds():
    simulator = make_sim(max_rise_K=100.0)  # full power gives only room + 100 K
    device = make_furnace(simulator.loop_url, timeout=0.5, settle_time=0.1)
    try:
        status = device.set(300.0 + C)
        with pytest.raises(InstrumentTimeout, match="not settled"):
            status.wait(10)
        assert simulator.target_setpoint_C < 125.0  # held near the present temperature
    finally:
        device.close()
        simulator.close()


@pytest.mark.parametrize(
    ("fault", "error", "match"),
    [
        ("sensor_break", InstrumentReportedError, "sensor break"),
        ("heater_failure", InstrumentReportedError, "heater fail"),
        ("no_reply", InstrumentTimeout, "no reply"),
        ("garble_replies", InstrumentProtocolError, "invalid reply"),
    ],
)
def test_faults_fail_the_move_without_hanging(furnace, sim, fault, error, match):
    status = furnace.set(600.0 + C)  # about 0.6 s of heating at this time scale
    time.sleep(0.05)
    assert not status.done
    setattr(sim, fault, True)
    t0 = time.monotonic()
    with pytest.raises(error, match=match):
        status.wait(10)
    assert time.monotonic() - t0 < 5


def test_over_temperature_alarm_fails_the_move(furnace, sim):
    sim.alarm_threshold_C = 250.0
    sim.over_temperature = True
    status = furnace.set(200.0 + C)
    with pytest.raises(InstrumentReportedError, match="alarm 1"):
        status.wait(10)


def test_dropped_link_during_polling_is_survived(furnace, sim):
    status = furnace.set(600.0 + C)
    time.sleep(0.05)
    assert not status.done
    sim.drop_connections()
    status.wait(10)  # reads retry once after reopening the link
    assert status.success


# -- bluesky ---------------------------------------------------------------------------------------
@pytest.fixture
def RE():
    engine = RunEngine({}, call_returns_result=True)
    yield engine
    if engine.state != "idle":
        engine.halt()


def test_runengine_mv_over_tcp(RE):
    simulator = make_sim()
    device = make_furnace(simulator.url)  # socket://127.0.0.1:PORT
    try:
        RE(bps.mv(device, 180.0 + C))
        assert device.position == pytest.approx(180.0 + C, abs=0.5)
        # the RunEngine called stop() at the end of the plan: nothing changed
        assert simulator.target_setpoint_C == pytest.approx(180.0)
    finally:
        device.close()
        simulator.close()


def test_runengine_scan_records_events(RE, sim, furnace):
    docs: list[tuple[str, dict]] = []
    RE(bp.list_scan([furnace], furnace, [60.0 + C, 80.0 + C]), lambda n, d: docs.append((n, d)))
    events = [d for n, d in docs if n == "event"]
    assert len(events) == 2
    assert events[-1]["data"]["furnace"] == pytest.approx(80.0 + C, abs=0.5)
    descriptor = next(d for n, d in docs if n == "descriptor")
    assert descriptor["configuration"]["furnace"]["data"]["furnace_setpoint_high"] == (
        pytest.approx(1200.0 + C)
    )
