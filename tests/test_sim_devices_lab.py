"""The virtual lab: one clock, one sample; the sample feels the temperature of where it is."""

from __future__ import annotations

import math
import os
import time

import minimalmodbus
import numpy as np
import pytest
import pyvisa
import serial

from lltolab.diffusion import Microstructure, VirtualSample, celsius_to_kelvin
from lltolab.sim_devices import VirtualLab


def _sample() -> VirtualSample:
    micro = Microstructure.polycrystal(60e-6, 40e-6, 1e-6, seed=5, origin_m=(-5e-6, 0.0))
    return VirtualSample(micro, line_extent_m=(-0.3e-3, 1.2e-3))


def _wait_until(predicate, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")
        time.sleep(0.05)


@pytest.fixture
def lab(tmp_path):
    with VirtualLab(sample=_sample(), time_scale=300.0, export_folder=tmp_path / "exp") as lab:
        yield lab


@pytest.mark.timeout(120)
def test_cold_stage_freezes_and_furnace_anneal_follows_the_twin(lab: VirtualLab) -> None:
    lab.dip()
    lab.clock.jump(10 * 3600)
    lab.lift()
    t_lift = lab.clock.now()

    # cool the stage over the wire, as any client would, then put the sample on it
    rm = pyvisa.ResourceManager("@py")
    stage = rm.open_resource(lab.resources()["cryostage"], read_termination="\r\n",
                             write_termination="\n", timeout=2000)
    try:
        stage.write("RANGE 1,3;SETP 1,163.15")
        _wait_until(lambda: abs(float(stage.query("KRDG? A")) - 163.15) < 1.0, 30, "stage cold")
    finally:
        stage.close()
    lab.move_sample("sims_stage")
    t0 = lab.clock.now()
    f0 = lab.view.field(t0)
    lab.clock.jump(5 * 3600)  # one 5 h acquisition at -110 °C
    f1 = lab.view.field(lab.clock.now())
    assert np.max(np.abs(f1 - f0)) < 2e-3
    segs = lab.sample.history(lab.clock.now())
    assert any(s.temperature_K < 170 and s.duration_s >= 5 * 3600 for s in segs)

    # heat the furnace over Modbus, then anneal 1 h at 200 °C
    port = serial.serial_for_url(lab.resources()["furnace"], baudrate=9600, timeout=1.0)
    furnace = minimalmodbus.Instrument(port, 1)
    furnace.write_register(2, 200.0, 1)
    _wait_until(lambda: abs(furnace.read_register(1, 1) - 200.0) < 1.0, 60, "furnace at 200 C")
    furnace.serial.close()
    lab.move_sample("furnace")
    t_in = lab.clock.now()
    lab.clock.jump(3600.0)
    lab.move_sample("storage")
    f_lab = lab.view.field(lab.clock.now())

    # the same steps, idealised (no ramps, stage exactly at -110 °C), in a fresh twin
    twin = _sample()
    twin.set_environment(0.0, temperature_K=295.15, immersed=True)
    twin.set_environment(10 * 3600, temperature_K=295.15, immersed=False)
    twin.set_environment(t0, temperature_K=163.15, immersed=False)
    twin.set_environment(t_in, temperature_K=celsius_to_kelvin(200), immersed=False)
    twin.set_environment(t_in + 3600, temperature_K=295.15, immersed=False)
    f_twin = twin.field(lab.clock.now())
    assert np.max(np.abs(f_lab - f1)) > 0.05  # the anneal moved the field
    # the lab's stage/room transfer minutes are the only differences from the ideal history
    assert np.max(np.abs(f_lab - f_twin)) < 0.02
    assert t_lift == pytest.approx(10 * 3600, abs=60)


@pytest.mark.timeout(60)
def test_locations_and_room_waits(lab: VirtualLab) -> None:
    with pytest.raises(ValueError, match="location must be one of"):
        lab.move_sample("glovebox")
    lab.dip()
    assert lab.location == "bath"
    lab.clock.jump(3600)
    segs = lab.sample.history(lab.flush())
    assert segs[-1].immersed and segs[-1].temperature_K == pytest.approx(295.15)
    lab.lift()
    lab.clock.jump(7200)
    t = lab.flush()
    segs = lab.sample.history(t)
    assert not segs[-1].immersed
    assert math.isclose(sum(s.duration_s for s in segs), t - segs[0].start_s)


@pytest.mark.timeout(120)
def test_stepped_lab_follows_a_warming_stage_through_one_jump(tmp_path) -> None:
    """LN₂ runs out during a single 3 h jump: the sample's history warms with the stage
    (sampled every substep of lab time), it does not take the end temperature for the whole
    jump, and lab time stands still between jumps."""
    with VirtualLab(sample=_sample(), time_scale=None, export_folder=tmp_path / "e",
                    substep_s=60.0) as lab:
        lab.stage.model.set_temperature(163.15)
        lab.stage.model.set_target(163.15)
        lab.stage.model.set_range(3)
        lab.move_sample("sims_stage")
        t0 = lab.clock.now()
        time.sleep(0.05)
        assert lab.clock.now() == t0  # stepped: no wall-clock drift
        lab.schedule(t0 + 3600.0, lambda _t: lab.stage.inject_fault("ln2_empty"))
        lab.clock.jump(3 * 3600.0)
        end_K = lab.stage.temperature_K
        segs = lab.sample.history(lab.flush())
    assert end_K > 250.0  # the stage drifted towards room temperature
    during = [s for s in segs if s.start_s >= t0]
    # cold until LN₂ ran out (the first segment closes once D leaves its band)
    assert during[0].temperature_K < 170.0 and during[0].end_s >= t0 + 3600.0
    warm = during[1:]
    assert len(warm) >= 3  # the warming is followed in steps
    temps = [s.temperature_K for s in warm]
    assert temps == sorted(temps) and temps[0] < 230.0 < temps[-1]


def test_the_lab_integrates_its_sample_in_a_worker_process_while_it_runs(tmp_path) -> None:
    lab = VirtualLab(sample=_sample(), time_scale=None, export_folder=tmp_path / "w")
    assert lab.sample.worker_pid is None
    with lab:
        pid = lab.sample.worker_pid
        assert pid is not None and pid != os.getpid()
        lab.pass_time(3600.0)
        assert lab.view.field(lab.clock.now()).shape == lab.sample.grain_ids.shape
    assert lab.sample.worker_pid is None
    with VirtualLab(sample=_sample(), time_scale=None, export_folder=tmp_path / "x",
                    twin_process=False) as lab:
        assert lab.sample.worker_pid is None
