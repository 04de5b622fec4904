"""The Lake Shore 336 simulator: wire protocol (raw sockets), thermal model, faults."""

from __future__ import annotations

import re
import socket
import time

import pytest

from lltolab.sim_devices import LakeShoreSimulator

pytestmark = [pytest.mark.timeout(60),
              pytest.mark.simulator("lakeshore", time_scale=1.0, seed=3, noise_K=0.0)]

NUMBER = re.compile(r"^[+-]\d+\.\d+$")


class RawClient:
    """A bare TCP client speaking lines, as a terminal program would."""

    def __init__(self, address: tuple[str, int], timeout_s: float = 1.0) -> None:
        self.sock = socket.create_connection(address, timeout=timeout_s)
        self.buffer = b""

    def send(self, line: str, eol: bytes = b"\r\n") -> None:
        self.sock.sendall(line.encode("ascii") + eol)

    def read_raw(self) -> bytes:
        """One reply including its terminator; raises TimeoutError if none comes."""
        while b"\n" not in self.buffer:
            chunk = self.sock.recv(4096)
            if not chunk:
                raise ConnectionError("closed by the simulator")
            self.buffer += chunk
        raw, self.buffer = self.buffer.split(b"\n", 1)
        return raw + b"\n"

    def ask(self, line: str, eol: bytes = b"\r\n") -> str:
        self.send(line, eol)
        raw = self.read_raw()
        assert raw.endswith(b"\r\n"), raw
        return raw[:-2].decode("ascii")

    def do(self, line: str) -> None:
        """Send commands and wait until they are executed (``*OPC?`` answers 1)."""
        assert self.ask(f"{line};*OPC?") == "1"

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def client(sim):
    c = RawClient(sim.address)
    yield c
    c.close()


# ---------------------------------------------------------------------- protocol pairs
def test_identity_and_resource_string(sim, client):
    assert re.fullmatch(r"TCPIP::127\.0\.0\.1::\d+::SOCKET", sim.resource)
    assert sim.port > 0
    idn = client.ask("*IDN?")
    maker, model, serial, firmware = idn.split(",")
    assert (maker, model) == ("LSCI", "MODEL336")
    assert serial.startswith(sim.serial)
    assert re.fullmatch(r"\d+\.\d+", firmware)


def test_event_status_register_power_on_then_cleared(client):
    assert client.ask("*ESR?") == "128"  # power-on bit after start
    assert client.ask("*ESR?") == "0"  # reading clears it


def test_kelvin_reading_formats(sim, client):
    reply = client.ask("KRDG? A")
    assert NUMBER.match(reply)
    assert float(reply) == pytest.approx(sim.temperature_K, abs=0.01)
    assert NUMBER.match(client.ask("KRDG?A"))  # no space, as some drivers send
    assert NUMBER.match(client.ask("krdg? a"))  # case-insensitive
    fields = client.ask("KRDG? 0").split(",")
    assert len(fields) == 4 and all(NUMBER.match(f) for f in fields)
    assert float(client.ask("CRDG? A")) == pytest.approx(sim.temperature_K - 273.15, abs=0.01)


def test_setpoint_ramp_range_round_trips(client):
    client.send("SETP 1,250.5")
    assert client.ask("SETP? 1") == "+250.500"
    client.send("RAMP 1, 1, 10")  # spaces after commas are tolerated
    assert client.ask("RAMP? 1") == "1,+10.0"
    client.send("RAMP 1,0,0")
    assert client.ask("RAMP? 1") == "0,+0.0"
    client.send("RANGE 1,2")
    assert client.ask("RANGE? 1") == "2"
    assert re.fullmatch(r"[+-]\d+\.\d", client.ask("HTR? 1"))
    assert client.ask("HTRST? 1") == "0"
    assert client.ask("RDGST? A") == "0"
    client.ask("*ESR?")
    assert client.ask("*ESR?") == "0"


def test_commands_are_silent_and_queries_join_on_one_line(client):
    client.send("SETP 1,200")
    assert client.ask("*OPC?") == "1"  # the SETP produced no reply line
    reply = client.ask("KRDG? A;SETP? 1;RANGE? 1")
    kelvin, setp, rng = reply.split(";")
    assert NUMBER.match(kelvin) and setp == "+200.000" and rng == "0"
    # Lake Shore's own Python driver joins with ';:' and appends *ESR?
    client.ask("*ESR?")
    assert client.ask("SETP 1,210;:*ESR?") == "0"
    assert client.ask("SETP? 1") == "+210.000"


def test_lf_only_terminator_accepted(client):
    assert client.ask("RANGE? 1", eol=b"\n") == "0"


def test_errors_set_event_status_bits(client):
    client.ask("*ESR?")
    client.send("FOO 1")  # unknown command -> command error, no reply
    assert client.ask("*ESR?") == "32"
    client.send("RANGE 1,7")  # out of range -> execution error
    assert client.ask("*ESR?") == "16"
    client.send("SETP 3,100")  # no output 3
    client.send("*CLS")
    assert client.ask("*ESR?") == "0"


def test_setp_query_returns_ramping_working_setpoint(sim, clock, client):
    client.do("SETP 1,295")
    client.do("RAMP 1,1,60")  # 60 K/min = 1 K/s
    client.do("SETP 1,195")
    clock.jump(10.0)
    working = float(client.ask("SETP? 1"))
    # ramps from the old working setpoint: 10 s at 1 K/s (plus the real seconds elapsed)
    assert 283.5 < working <= 285.0
    assert client.ask("RAMPST? 1") == "1"
    clock.jump(200.0)
    assert client.ask("SETP? 1") == "+195.000"
    assert client.ask("RAMPST? 1") == "0"


# ---------------------------------------------------------------------- thermal model
def test_ln2_floor_limits_cooling(sim, clock, client):
    client.do("SETP 1,50")
    clock.jump(3600.0)
    floor = sim.model.floor_K
    assert 78.0 < floor < 90.0
    assert sim.temperature_K == pytest.approx(floor, abs=0.05)
    assert float(client.ask("KRDG? A")) >= floor - 0.05


def test_heater_holds_setpoint(sim, clock, client):
    client.do("RANGE 1,3;SETP 1,163.15")
    clock.jump(900.0)
    assert sim.temperature_K == pytest.approx(163.15, abs=0.01)
    assert 0.0 < float(client.ask("HTR? 1")) < 100.0


def test_low_range_cannot_reach_high_target(sim, clock, client):
    client.do("RANGE 1,1;SETP 1,300")
    clock.jump(3600.0)
    assert sim.temperature_K < 100.0
    assert float(client.ask("HTR? 1")) == pytest.approx(100.0)


def test_long_lab_jump_is_cheap(sim, clock, client):
    client.do("RANGE 1,3;RAMP 1,1,10;SETP 1,200")
    t0 = time.perf_counter()
    clock.jump(59 * 3600.0)
    assert sim.temperature_K == pytest.approx(200.0, abs=0.01)
    assert time.perf_counter() - t0 < 1.0


def test_ln2_run_out_warms_the_stage(sim, clock, client):
    client.do("RANGE 1,3;SETP 1,90")
    clock.jump(900.0)
    assert sim.temperature_K == pytest.approx(90.0, abs=0.05)
    sim.inject_fault("ln2_empty")
    clock.jump(3 * 3600.0)
    assert sim.temperature_K > 250.0  # cannot stay cold
    sim.clear_fault("ln2_empty")
    clock.jump(3600.0)
    assert sim.temperature_K == pytest.approx(90.0, abs=0.05)


def test_heater_failure(sim, clock, client):
    clock.jump(3600.0)  # at the floor
    sim.inject_fault("heater_failure")
    client.do("RANGE 1,3;SETP 1,250")
    clock.jump(900.0)
    assert sim.temperature_K < 90.0
    assert client.ask("HTRST? 1") == "1"
    assert float(client.ask("HTR? 1")) == 0.0


def test_sensor_break(sim, clock, client):
    sim.inject_fault("sensor_break")
    assert client.ask("KRDG? A") == "+0.000"
    assert int(client.ask("RDGST? A")) != 0
    client.do("RANGE 1,3;SETP 1,250")
    clock.jump(3600.0)
    assert sim.temperature_K < 90.0  # heater off on a broken control sensor
    sim.clear_fault()
    assert client.ask("RDGST? A") == "0"


def test_jump_listener_advances_model(sim, clock):
    before = sim.model._t
    clock.jump(100.0)
    assert sim.model._t >= before + 100.0


# ---------------------------------------------------------------------- wire faults
def test_no_reply_fault(sim, client):
    sim.inject_fault("no_reply")
    client.sock.settimeout(0.3)
    client.send("*IDN?")
    with pytest.raises(TimeoutError):
        client.read_raw()
    sim.clear_fault("no_reply")
    client.sock.settimeout(1.0)
    assert client.ask("*IDN?").startswith("LSCI")


def test_garbled_fault(sim, client):
    sim.inject_fault("garbled")
    reply = client.ask("KRDG? A")
    with pytest.raises(ValueError):
        float(reply)
    sim.clear_fault()
    assert NUMBER.match(client.ask("KRDG? A"))


def test_late_reply_fault(sim, client):
    sim.inject_fault("late_reply", delay_s=0.5)
    client.sock.settimeout(0.2)
    client.send("RANGE? 1")
    with pytest.raises(TimeoutError):
        client.read_raw()
    client.sock.settimeout(2.0)
    assert client.read_raw() == b"0\r\n"  # the stale reply arrives later


def test_drop_and_reject_connections(sim, client):
    assert client.ask("*IDN?").startswith("LSCI")  # the server has registered the client
    assert sim._server.client_count == 1
    sim.inject_fault("drop")
    with pytest.raises((ConnectionError, OSError)):
        client.ask("*IDN?")
    sim.inject_fault("reject_connections")
    other = RawClient(sim.address)
    try:
        with pytest.raises((ConnectionError, OSError)):
            other.ask("*IDN?")
    finally:
        other.close()
    sim.clear_fault("reject_connections")
    fresh = RawClient(sim.address)
    try:
        assert fresh.ask("*IDN?").startswith("LSCI")
    finally:
        fresh.close()


def test_bad_arguments():
    with pytest.raises(ValueError, match="loopback"):
        LakeShoreSimulator(host="0.0.0.0")
    with pytest.raises(ValueError, match="noise_K"):
        LakeShoreSimulator(noise_K=-1)
    sim = LakeShoreSimulator()
    with pytest.raises(ValueError, match="unknown fault"):
        sim.inject_fault("meteor")


def test_close_stops_serving():
    sim = LakeShoreSimulator().start()
    address = sim.address
    sim.close()
    with pytest.raises(OSError):
        socket.create_connection(address, timeout=0.5).close()


# ---------------------------------------------------------------------- third-party usage
def test_plain_pyvisa_against_simulator(sim):
    pyvisa = pytest.importorskip("pyvisa")
    rm = pyvisa.ResourceManager("@py")
    inst = rm.open_resource(sim.resource, read_termination="\r\n", timeout=2000)
    try:
        assert inst.query("*IDN?").startswith("LSCI,MODEL336")
        assert float(inst.query("KRDG? A")) == pytest.approx(sim.temperature_K, abs=0.05)
        inst.write("SETP 1,123.4")
        assert float(inst.query("SETP? 1")) == pytest.approx(123.4)
        on, rate = inst.query("RAMP? 1").split(",")
        assert int(on) == 0 and float(rate) == 0.0
    finally:
        inst.close()
        rm.close()


@pytest.mark.parametrize("heater_range, target, start", [(3, 200.0, 81.3), (3, 100.0, 295.0),
                                                         (2, 160.0, 81.3), (1, 300.0, 81.3)])
def test_thermal_model_is_independent_of_how_time_is_sliced(heater_range, target, start):
    from lltolab.sim_devices import CryoStageThermalModel

    results = []
    for steps in (1, 7, 600):
        now = [0.0]
        model = CryoStageThermalModel(lambda now=now: now[0], initial_K=start)
        model.set_range(heater_range)
        model.set_target(target)
        for _ in range(steps):
            now[0] += 60.0 / steps
            model.advance()
        results.append(model.temperature_K)
    assert max(results) - min(results) < 1e-6
    assert min(start, target) - 1e-9 <= results[0] <= max(start, target) + 1e-9


# ---------------------------------------------------------------------- one-shot reply faults
def test_one_shot_reply_faults_apply_in_turn(sim, client):
    sim.queue_reply_fault("duplicate")
    sim.queue_reply_fault("extra_line")
    sim.queue_reply_fault(lambda reply: b"spoilt" + reply)
    assert client.ask("*OPC?") == "1"
    assert client.read_raw() == b"1\r\n"  # the duplicate
    assert client.ask("*OPC?") == "1"
    assert client.read_raw() == b"+000.000\r\n"  # the unsolicited line
    assert client.ask("*OPC?") == "spoilt1"
    assert client.ask("*OPC?") == "1"  # faults are one-shot
    assert sim.replies_faulted == 3


def test_partial_and_split_late_replies(sim, client):
    sim.queue_reply_fault("split_late", delay_s=0.2)
    client.send("*IDN?")
    started = time.monotonic()
    raw = client.read_raw()
    assert raw.startswith(b"LSCI,MODEL336") and time.monotonic() - started >= 0.15
    sim.queue_reply_fault("partial")
    client.send("*IDN?")
    client.sock.settimeout(0.3)
    with pytest.raises(TimeoutError):
        client.read_raw()
    assert client.buffer.startswith(b"LSCI") and b"\n" not in client.buffer


def test_silent_and_drop_reply_faults(sim):
    c = RawClient(sim.address, timeout_s=0.3)
    try:
        sim.queue_reply_fault("silent")
        c.send("*OPC?")
        with pytest.raises(TimeoutError):
            c.read_raw()
        sim.queue_reply_fault("drop")
        c.send("*OPC?")
        with pytest.raises((ConnectionError, TimeoutError)):
            c.read_raw()
    finally:
        c.close()


def test_reply_fault_arguments_are_checked(sim):
    with pytest.raises(ValueError, match="unknown reply fault 'bogus'"):
        sim.queue_reply_fault("bogus")
    with pytest.raises(ValueError, match="delay_s"):
        sim.queue_reply_fault("late", delay_s=-1.0)
    with pytest.raises(ValueError, match="delay_s"):
        sim.queue_reply_fault("late", delay_s=float("nan"))
    sim.queue_reply_fault("garble")
    sim.clear_fault()
    assert sim._server.pending_reply_faults == 0
