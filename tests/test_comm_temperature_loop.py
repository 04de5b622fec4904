"""TemperatureLoop settle logic against a small in-process plant (wall-clock dynamics)."""

from __future__ import annotations

import math
import threading
import time

import numpy as np
import pytest
from bluesky import RunEngine
from bluesky import plan_stubs as bps
from bluesky.protocols import Configurable, Movable, Readable, Stoppable
from ophyd import Signal

from lltolab.comm import InstrumentReportedError, InstrumentTimeout, MoveStopped, TemperatureLoop

pytestmark = pytest.mark.timeout(60)


class Plant:
    """Second-order plant in wall time: overshoot with damping < 1, a floor, reading noise.

    ``T'' = w^2 (sp - T) - 2 z w T'``, ``sp`` ramping at ``ramp_K_per_s`` (0: step);
    the temperature cannot go below ``floor_K``.
    """

    def __init__(self, T0=300.0, *, omega=20.0, zeta=1.0, noise_K=0.0, floor_K=0.0,
                 ramp_K_per_s=0.0, seed=0):
        self.T, self.v, self.sp, self.working = T0, 0.0, T0, T0
        self.omega, self.zeta, self.noise, self.floor = omega, zeta, noise_K, floor_K
        self.ramp = ramp_K_per_s
        self.rng = np.random.default_rng(seed)
        self.lock = threading.Lock()
        self.t = time.monotonic()
        self.writes: list[float] = []
        self.history: list[tuple[float, float]] = []

    def _advance(self):
        now = time.monotonic()
        while self.t < now:
            h = min(now - self.t, 1e-3)
            if self.ramp > 0 and self.working != self.sp:
                step = math.copysign(min(self.ramp * h, abs(self.sp - self.working)),
                                     self.sp - self.working)
                self.working += step
            elif self.ramp <= 0:
                self.working = self.sp
            a = self.omega**2 * (self.working - self.T) - 2 * self.zeta * self.omega * self.v
            self.v += a * h
            self.T += self.v * h
            if self.T < self.floor:
                self.T, self.v = self.floor, 0.0
            self.t += h

    def read(self) -> float:
        with self.lock:
            self._advance()
            value = self.T + (self.rng.normal(0, self.noise) if self.noise else 0.0)
            self.history.append((time.monotonic(), value))
            return value

    def write(self, value: float) -> None:
        with self.lock:
            self._advance()
            self.sp = value
            self.writes.append(value)


def make_loop(plant: Plant, **kw) -> TemperatureLoop:
    options = dict(tolerance=0.5, settle_time=0.2, timeout=3.0, poll_period=0.01,
                   limits=(50.0, 500.0))
    options.update(kw)
    return TemperatureLoop(name="loop", read_temperature=plant.read, write_setpoint=plant.write,
                           **options)


def test_settles_and_reports():
    plant = Plant()
    loop = make_loop(plant)
    t0 = time.monotonic()
    status = loop.set(320.0)
    status.wait(5)
    assert status.success
    assert abs(plant.read() - 320.0) < 0.5
    assert time.monotonic() - t0 >= 0.2
    assert not loop.moving
    assert loop.target.get() == 320.0
    assert plant.writes == [320.0]


def test_overshoot_requires_continuous_time_in_band():
    plant = Plant(omega=12.0, zeta=0.15)  # rings through the band several times
    loop = make_loop(plant, settle_time=0.3)
    status = loop.set(330.0)
    status.wait(8)
    assert status.success
    done = time.monotonic()
    hist = plant.history
    assert max(v for _, v in hist) > 330.5  # it did overshoot out of the band
    # the readback was inside the band for the last settle_time before completion
    recent = [v for t, v in hist if done - 0.28 <= t <= done]
    assert recent and all(abs(v - 330.0) <= 0.5 for v in recent)
    # the first time it entered the band was well before completion
    first_in = next(t for t, v in hist if abs(v - 330.0) <= 0.5)
    assert done - first_in > 0.3


def test_noise_within_band_settles():
    plant = Plant(noise_K=0.1, seed=4)
    loop = make_loop(plant)
    status = loop.set(310.0)
    status.wait(5)
    assert status.success


def test_noise_beyond_band_times_out_and_holds():
    plant = Plant(noise_K=2.0, seed=5)
    loop = make_loop(plant, settle_time=0.3, timeout=0.6)
    status = loop.set(310.0)
    with pytest.raises(InstrumentTimeout):
        status.wait(5)
    assert len(plant.writes) == 2  # target, then the hold


def test_unreachable_target_times_out_and_holds():
    plant = Plant(floor_K=150.0)
    loop = make_loop(plant, timeout=0.5, settle_time=0.1)
    t0 = time.monotonic()
    status = loop.set(100.0)
    with pytest.raises(InstrumentTimeout, match=r"100 K .*holding"):
        status.wait(5)
    elapsed = time.monotonic() - t0
    assert 0.5 <= elapsed < 2.0
    assert plant.writes[0] == 100.0
    assert plant.writes[-1] == pytest.approx(150.0, abs=0.5)  # held where it is
    assert not loop.moving
    assert isinstance(status.exception(), InstrumentTimeout)


def test_stop_mid_move_holds_and_fails_status():
    plant = Plant(ramp_K_per_s=20.0)
    loop = make_loop(plant, timeout=10.0)
    status = loop.set(400.0)
    time.sleep(0.3)
    loop.stop()
    with pytest.raises(MoveStopped):
        status.wait(2)
    held = plant.writes[-1]
    assert len(plant.writes) == 2 and 300.0 < held < 400.0
    assert not loop.moving
    loop.stop()  # idle: nothing happens
    loop.stop(success=True)
    assert len(plant.writes) == 2


def test_new_set_supersedes_running_move():
    plant = Plant(ramp_K_per_s=20.0)
    loop = make_loop(plant, timeout=10.0)
    first = loop.set(400.0)
    time.sleep(0.05)
    second = loop.set(305.0)
    with pytest.raises(MoveStopped, match="superseded"):
        first.wait(2)
    second.wait(5)
    assert second.success
    assert plant.writes == [400.0, 305.0]  # no hold written between the two


def test_ramp_aware_timeout():
    # 5 K at 5 K/s needs ~1 s; move_timeout alone (0.3 s + settle) is too short
    plant = Plant(ramp_K_per_s=5.0)
    loop = make_loop(plant, timeout=0.3, settle_time=0.1)
    status = loop.set(305.0)
    with pytest.raises(InstrumentTimeout):
        status.wait(5)
    plant2 = Plant(ramp_K_per_s=5.0)
    loop2 = make_loop(plant2, timeout=0.3, settle_time=0.1, ramp_rate=lambda: 5.0)
    status2 = loop2.set(305.0)
    status2.wait(5)
    assert status2.success


def test_explicit_timeout_overrides():
    plant = Plant(floor_K=200.0)
    loop = make_loop(plant, timeout=30.0)
    t0 = time.monotonic()
    with pytest.raises(InstrumentTimeout):
        loop.set(100.0, timeout=0.3).wait(5)
    assert time.monotonic() - t0 < 2.0


def test_instrument_error_fails_the_move():
    plant = Plant(ramp_K_per_s=10.0)
    broken = threading.Event()

    def check():
        if broken.is_set():
            raise InstrumentReportedError("input A status 1 (invalid reading)")

    loop = make_loop(plant, timeout=10.0, check=check)
    status = loop.set(400.0)
    time.sleep(0.1)
    broken.set()
    with pytest.raises(InstrumentReportedError, match="invalid reading"):
        status.wait(3)
    assert not loop.moving


@pytest.mark.parametrize("bad", [49.9, 500.1, float("nan"), float("inf"), "300", None, True])
def test_out_of_range_fails_before_any_io(bad):
    plant = Plant()
    loop = make_loop(plant)
    with pytest.raises(ValueError) as info:
        loop.set(bad)
    if bad == 49.9:
        assert "49.9" in str(info.value) and "50.0" in str(info.value)
    if bad == 500.1:
        assert "500.1" in str(info.value) and "500.0" in str(info.value)
    assert plant.writes == []


@pytest.mark.parametrize(
    "kw, match",
    [
        ({"tolerance": 0}, "tolerance"),
        ({"settle_time": -1}, "settle_time"),
        ({"timeout": 0}, "timeout"),
        ({"poll_period": float("nan")}, "poll_period"),
        ({"limits": (300, 100)}, "limits"),
    ],
)
def test_bad_configuration(kw, match):
    with pytest.raises(ValueError, match=match):
        make_loop(Plant(), **kw)


def test_needs_a_readback_and_a_setpoint_writer():
    with pytest.raises(ValueError, match="read_temperature"):
        TemperatureLoop(name="x", write_setpoint=lambda v: None)
    with pytest.raises(ValueError, match="write_setpoint"):
        TemperatureLoop(name="x", read_temperature=lambda: 1.0)


def test_signals_as_sources_and_protocols():
    temperature = Signal(name="t", value=250.0)
    setpoint = Signal(name="sp", value=0.0)
    loop = TemperatureLoop(name="loop", read_temperature=temperature, write_setpoint=setpoint,
                           settle_time=0.0, poll_period=0.01, timeout=2.0)
    for proto in (Readable, Movable, Stoppable, Configurable):
        assert isinstance(loop, proto)
    assert loop.describe().keys() == loop.read().keys()
    assert loop.describe_configuration().keys() == loop.read_configuration().keys()
    assert "loop" in loop.read()  # readback reported under the device name
    assert loop.read()["loop"]["value"] == 250.0
    assert loop.hints == {"fields": ["loop"]}
    status = loop.set(250.2)
    status.wait(2)
    assert setpoint.get() == 250.2
    assert loop.setpoint.get() == 250.2  # last written value


def test_runengine_mv_and_end_of_plan_stop():
    plant = Plant()
    loop = make_loop(plant, settle_time=0.1)
    RE = RunEngine({})
    RE(bps.mv(loop, 330.0))
    assert abs(plant.read() - 330.0) < 0.5
    assert plant.writes == [330.0]  # the RunEngine's stop() after the plan did nothing
