"""`lltolab sim serve`: a second process talks to the simulators with plain pyvisa/minimalmodbus."""

from __future__ import annotations

import json
import signal
import subprocess
import sys

import minimalmodbus
import pytest
import pyvisa
import serial


@pytest.mark.timeout(90)
def test_sim_serve_json_then_plain_clients(tmp_path) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "lltolab.cli", "sim", "serve", "--json", "--time-scale", "30",
         "--exports", str(tmp_path / "exports")],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        line = proc.stdout.readline()
        res = json.loads(line)
        assert res["cryostage"].startswith("TCPIP::127.0.0.1::")
        assert res["furnace"].startswith("socket://127.0.0.1:")
        inst = pyvisa.ResourceManager("@py").open_resource(
            res["cryostage"], read_termination="\r\n", write_termination="\n", timeout=2000)
        try:
            assert "336" in inst.query("*IDN?")
            assert 50 < float(inst.query("KRDG? A")) < 400
            inst.write("SETP 1, 200.0")
            assert float(inst.query("SETP? 1")) > 0
        finally:
            inst.close()
        port = serial.serial_for_url(res["furnace"], baudrate=9600, timeout=1.0)
        try:
            furnace = minimalmodbus.Instrument(port, 1)
            assert 15.0 < furnace.read_register(1, 1) < 30.0  # PV in °C, one decimal
        finally:
            port.close()
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            raise
    assert proc.returncode == 0, proc.stderr.read()


def test_sim_serve_rejects_bad_time_scale() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "lltolab.cli", "sim", "serve", "--time-scale", "-3"],
        capture_output=True, text=True, timeout=60,
    )
    assert proc.returncode == 2
    assert "-3" in proc.stderr
