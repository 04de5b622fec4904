"""The simulated Eurotherm: RTU frames on the wire, exception codes, thermal model, faults."""

from __future__ import annotations

import math
import socket
import struct
import subprocess
import sys
import time

import minimalmodbus
import pytest
import serial

from lltolab.sim_devices import (
    EUROTHERM_STATUS_BITS,
    EurothermSimulator,
    VirtualClock,
    check_crc,
    crc16,
    request_length,
    with_crc,
)

pytestmark = [pytest.mark.timeout(60), pytest.mark.simulator("eurotherm", manual_wall=True)]


def frame(hex_text: str) -> bytes:
    return bytes.fromhex(hex_text)


@pytest.fixture
def tcp(sim: EurothermSimulator):
    """A raw TCP connection to the simulator's RTU-over-TCP port."""
    sock = socket.create_connection(("127.0.0.1", int(sim.url.rsplit(":", 1)[1])), timeout=2)
    yield sock
    sock.close()


def exchange(sock: socket.socket, request: bytes, expect: int, timeout: float = 1.0) -> bytes:
    sock.settimeout(timeout)
    sock.sendall(request)
    reply = b""
    deadline = time.monotonic() + timeout
    while len(reply) < expect and time.monotonic() < deadline:
        try:
            chunk = sock.recv(expect - len(reply))
        except TimeoutError:
            break
        if not chunk:
            break
        reply += chunk
    return reply


def silent(sock: socket.socket, request: bytes, wait: float = 0.3) -> bool:
    return exchange(sock, request, 1, timeout=wait) == b""


# -- CRC and framing --------------------------------------------------------------------------
def test_crc_matches_published_frames():
    # read 1 register at 1 (Eurotherm PV) and the Modbus spec's read of 10 registers at 0
    assert with_crc(frame("01 03 00 01 00 01")) == frame("01 03 00 01 00 01 D5 CA")
    assert with_crc(frame("01 03 00 00 00 0A")) == frame("01 03 00 00 00 0A C5 CD")
    # the exception reply used in the Modbus spec's examples
    assert with_crc(frame("01 83 02")) == frame("01 83 02 C0 F1")
    assert crc16(b"123456789") == 0x4B37  # CRC-16/MODBUS check value
    assert check_crc(frame("01 03 00 01 00 01 D5 CA"))
    assert not check_crc(frame("01 03 00 01 00 01 D5 CB"))


def test_request_length_by_function_code():
    assert request_length(frame("01 03")) == 8
    assert request_length(frame("01 06")) == 8
    assert request_length(frame("01 10 00 01 00 02 04")) == 13
    assert request_length(frame("01 10 00 01")) is None
    assert request_length(frame("01 2B")) is None


# -- request/response pairs on the wire ----------------------------------------------------------
def test_read_pv_frame(tcp):
    # 22.0 degC at one decimal place = 220 = 0x00DC
    assert exchange(tcp, frame("01 03 00 01 00 01 D5 CA"), 7) == frame("01 03 02 00 DC B9 DD")


def test_function_code_4_reads_the_same_parameters(tcp):
    request = with_crc(frame("01 04 00 01 00 01"))
    assert exchange(tcp, request, 7) == frame("01 04 02 00 DC B8 A9")


def test_write_single_register_echoes_the_request(tcp, sim):
    request = frame("01 06 00 02 07 D0 2B A6")  # target setpoint 200.0 degC
    assert exchange(tcp, request, 8) == request
    assert sim.target_setpoint_C == pytest.approx(200.0)
    reply = exchange(tcp, with_crc(frame("01 03 00 02 00 01")), 7)
    assert reply == with_crc(frame("01 03 02 07 D0"))


def test_write_multiple_registers_replies_address_and_count(tcp, sim):
    # setpoint limits 11/12 := 10.0 and 900.0 degC in one function-16 request
    request = with_crc(frame("01 10 00 0B 00 02 04 00 64 23 28"))
    assert exchange(tcp, request, 8) == with_crc(frame("01 10 00 0B 00 02"))
    assert (sim.sp_low_C, sim.sp_high_C) == (10.0, 900.0)


def test_negative_temperatures_are_twos_complement(tcp, sim):
    exchange(tcp, with_crc(frame("01 06 00 0B FF 9C")), 8)  # low limit -10.0 degC
    assert sim.sp_low_C == -10.0
    assert exchange(tcp, with_crc(frame("01 03 00 0B 00 01")), 7) == with_crc(
        frame("01 03 02 FF 9C")
    )


def test_block_read_of_consecutive_parameters(tcp):
    reply = exchange(tcp, with_crc(frame("01 03 00 01 00 05")), 15)
    assert check_crc(reply) and reply[:3] == frame("01 03 0A")
    pv, tsp, op, wop, wsp = struct.unpack(">5h", reply[3:13])
    assert (pv, tsp, op, wop, wsp) == (220, 220, 0, 0, 220)


@pytest.mark.parametrize(
    ("request_hex", "reply_hex"),
    [
        ("01 05 00 01 FF 00", "01 85 01"),  # write coil: illegal function
        ("01 03 00 07 00 01", "01 83 02"),  # no parameter at 7: illegal data address
        ("01 03 00 01 00 00", "01 83 03"),  # zero registers: illegal data value
        ("01 03 00 01 00 7E", "01 83 03"),  # 126 registers: illegal data value
        ("01 06 00 01 00 64", "01 86 02"),  # PV is read only
        ("01 06 00 02 3A 98", "01 86 03"),  # 1500.0 degC above the 1200.0 high limit
        ("01 06 00 23 FF F6", "01 86 03"),  # negative ramp rate
        ("01 10 00 02 00 01 04 00 00 00 00", "01 90 03"),  # byte count != 2 * count
    ],
)
def test_exception_codes(tcp, request_hex, reply_hex):
    reply = exchange(tcp, with_crc(frame(request_hex)), 5)
    assert reply == with_crc(frame(reply_hex))


def test_slave_ignores_bad_crc_and_other_addresses(tcp):
    assert silent(tcp, frame("01 03 00 01 00 01 D5 CB"))
    assert silent(tcp, with_crc(frame("02 03 00 01 00 01")))
    # still alive afterwards
    assert exchange(tcp, frame("01 03 00 01 00 01 D5 CA"), 7) == frame("01 03 02 00 DC B9 DD")


def test_float_mirror_registers(tcp, sim):
    exchange(tcp, frame("01 06 00 02 07 D0 2B A6"), 8)
    reply = exchange(tcp, with_crc(frame("01 03 80 04 00 02")), 9)  # 0x8000 + 2 * 2
    assert check_crc(reply)
    assert struct.unpack(">f", reply[3:7])[0] == pytest.approx(200.0)
    # write the target as a float: 123.25 degC (full resolution)
    body = frame("01 10 80 04 00 02 04") + struct.pack(">f", 123.25)
    assert exchange(tcp, with_crc(body), 8) == with_crc(frame("01 10 80 04 00 02"))
    assert sim.target_setpoint_C == pytest.approx(123.25)
    # half a float is refused
    half = with_crc(frame("01 10 80 04 00 01 02 42 F6"))
    assert exchange(tcp, half, 5) == with_crc(frame("01 90 03"))


# -- third-party master unchanged ---------------------------------------------------------------
@pytest.mark.parametrize("carrier", ["url", "loop_url"])
def test_plain_minimalmodbus_against_the_simulator(sim, carrier):
    port = serial.serial_for_url(getattr(sim, carrier), baudrate=9600, timeout=0.3)
    try:
        instrument = minimalmodbus.Instrument(port, 1)
        assert instrument.read_register(1, 1) == pytest.approx(22.0)
        instrument.write_register(2, 350.5, 1, functioncode=6)
        assert instrument.read_register(2, 1) == pytest.approx(350.5)
        assert instrument.read_float(0x8000 + 2 * 2) == pytest.approx(350.5)
        assert instrument.read_register(122) == 0x2408
        with pytest.raises(minimalmodbus.IllegalRequestError):
            instrument.read_register(7)
    finally:
        port.close()


def test_calls_of_the_minimalmodbus_eurotherm3500_example_driver(sim, wall):
    """The register set of minimalmodbus' Eurotherm 3500 example driver works unchanged."""
    port = serial.serial_for_url(sim.url, baudrate=9600, timeout=0.3)
    try:
        instrument = minimalmodbus.Instrument(port, 1)
        assert instrument.read_register(289, 1) == pytest.approx(22.0)  # PV loop 1
        assert not instrument.read_register(273, 1) > 0  # auto mode
        instrument.write_register(24, 95, 1)  # SP1
        assert instrument.read_register(2, 1) == pytest.approx(95.0)  # target
        instrument.write_register(35, 5.0, 1)  # SP rate, degC/min
        assert instrument.read_register(35, 1) == pytest.approx(5.0)
        instrument.write_register(78, 1, 0)  # disable the SP rate
        assert instrument.read_register(78, 1) > 0
        assert instrument.read_register(5, 1) == pytest.approx(95.0)  # working SP jumped
        wall.t += 30.0
        assert instrument.read_register(85, 1) > 50  # heating hard
        instrument.write_register(268, 1, 0)  # inhibit control
        assert instrument.read_register(268, 1) > 0
        assert instrument.read_register(85, 1) == 0
        instrument.write_register(10241, 900.0, 1)  # alarm 1 threshold
        assert sim.alarm_threshold_C == pytest.approx(900.0)
    finally:
        port.close()


def test_second_process_with_plain_minimalmodbus(sim):
    """Another Python process reaches the simulator with pyserial + minimalmodbus only."""
    code = (
        "import sys, serial, minimalmodbus\n"
        "port = serial.serial_for_url(sys.argv[1], baudrate=9600, timeout=1.0)\n"
        "instrument = minimalmodbus.Instrument(port, 1)\n"
        "instrument.write_register(2, 123.4, 1)\n"
        "print(instrument.read_register(1, 1), instrument.read_register(2, 1))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code, sim.url], capture_output=True, text=True, timeout=30
    )
    assert done.returncode == 0, done.stderr
    pv, target = (float(v) for v in done.stdout.split())
    assert (pv, target) == (22.0, 123.4)
    assert sim.target_setpoint_C == pytest.approx(123.4)


def test_in_process_url_refuses_unknown_names():
    with pytest.raises(serial.SerialException, match="no such simulated slave"):
        serial.serial_for_url("simloop://nobody-here", timeout=0.1)


# -- transport faults ---------------------------------------------------------------------------
def test_no_reply_fault(tcp, sim):
    sim.no_reply = True
    assert silent(tcp, frame("01 03 00 01 00 01 D5 CA"))
    sim.no_reply = False
    assert exchange(tcp, frame("01 03 00 01 00 01 D5 CA"), 7) == frame("01 03 02 00 DC B9 DD")


def test_garbled_reply_fault(tcp, sim):
    sim.garble_replies = True
    reply = exchange(tcp, frame("01 03 00 01 00 01 D5 CA"), 7)
    assert len(reply) == 7 and reply[:5] == frame("01 03 02 00 DC")
    assert not check_crc(reply)


def test_dropped_connection_then_reconnect(tcp, sim):
    assert exchange(tcp, frame("01 03 00 01 00 01 D5 CA"), 7)  # connection is being served
    sim.drop_connections()
    tcp.settimeout(1.0)
    assert tcp.recv(16) == b""  # peer closed
    again = socket.create_connection(("127.0.0.1", int(sim.url.rsplit(":", 1)[1])), timeout=2)
    try:
        assert exchange(again, frame("01 03 00 01 00 01 D5 CA"), 7) == frame(
            "01 03 02 00 DC B9 DD"
        )
    finally:
        again.close()


def test_close_stops_serving(wall):
    simulator = EurothermSimulator(VirtualClock(wall=wall)).start()
    url = simulator.url
    simulator.close()
    with pytest.raises(serial.SerialException):
        serial.serial_for_url(url, timeout=0.2)
    with pytest.raises(RuntimeError):
        _ = simulator.url


# -- thermal model ------------------------------------------------------------------------------
def test_heats_to_setpoint_and_holds(sim, wall):
    sim.write_registers(2, [2000])  # 200.0 degC
    wall.t += 60.0
    early = sim.temperature_K
    assert 295.15 < early < 473.15
    assert sim.read_registers(3, 1, 3)[0] == 1000  # saturated at 100.0 %
    wall.t += 4 * 3600.0
    assert sim.temperature_K == pytest.approx(473.15, abs=0.01)
    op = sim.read_registers(3, 1, 3)[0] / 10
    assert 0 < op < 100  # holding needs part of the power


def test_ramp_rate_limits_the_working_setpoint(sim, wall):
    sim.write_registers(35, [100])  # 10.0 degC/min
    sim.write_registers(2, [2000])
    wall.t += 300.0  # 5 min
    wsp = sim.read_registers(5, 1, 3)[0] / 10
    assert wsp == pytest.approx(22.0 + 50.0, abs=0.2)
    assert sim.temperature_K - 273.15 < wsp + 0.1


def test_clock_jump_relaxes_the_furnace(wall):
    clock = VirtualClock(wall=wall)
    simulator = EurothermSimulator(clock)
    simulator.write_registers(2, [4000])
    t0 = time.perf_counter()
    clock.jump(59 * 3600.0)
    assert time.perf_counter() - t0 < 1.0
    assert simulator.temperature_K == pytest.approx(673.15, abs=0.01)
    simulator.write_registers(2, [220])
    clock.jump(10 * 3600.0)  # passive cooling, tau 20 min
    assert simulator.temperature_K == pytest.approx(295.15, abs=0.05)


def test_sensor_break(sim, wall, tcp):
    sim.write_registers(2, [2000])
    wall.t += 600.0
    sim.sensor_break = True
    status = sim.read_registers(75, 1, 3)[0]
    assert status & (1 << EUROTHERM_STATUS_BITS["sensor_break"])
    assert exchange(tcp, frame("01 03 00 01 00 01 D5 CA"), 7) == with_crc(frame("01 03 02 80 00"))
    reply = exchange(tcp, with_crc(frame("01 03 80 02 00 02")), 9)
    assert math.isnan(struct.unpack(">f", reply[3:7])[0])
    hot = sim.temperature_K
    wall.t += 600.0
    assert sim.read_registers(3, 1, 3)[0] == 0  # output off
    assert sim.temperature_K < hot
    sim.clear_faults()
    assert sim.status_word == 0


def test_heater_failure(sim, wall):
    sim.heater_failure = True
    sim.write_registers(2, [2000])
    wall.t += 600.0
    assert sim.temperature_K == pytest.approx(295.15, abs=1e-6)
    assert sim.status_word & (1 << EUROTHERM_STATUS_BITS["heater_fail"])


def test_over_temperature(sim, wall):
    sim.write_registers(13, [3000])  # alarm 1 at 300.0 degC
    sim.write_registers(2, [2000])
    sim.over_temperature = True
    wall.t += 3600.0
    assert sim.temperature_K - 273.15 > 300.0
    assert sim.status_word & (1 << EUROTHERM_STATUS_BITS["alarm_1"])


def test_limits_clamp_the_target(sim):
    sim.write_registers(2, [5000])
    sim.write_registers(12, [3000])
    assert sim.target_setpoint_C == pytest.approx(300.0)


def test_pv_noise_is_reproducible(wall):
    values = []
    for _ in range(2):
        simulator = EurothermSimulator(VirtualClock(wall=wall), noise_K=0.2, seed=3)
        values.append([simulator.read_registers(1, 1, 3)[0] for _ in range(20)])
    assert values[0] == values[1]
    assert len(set(values[0])) > 1


# -- one-shot reply faults ------------------------------------------------------------------------
READ_PV = "01 03 00 01 00 01 D5 CA"
PV_REPLY = "01 03 02 00 DC B9 DD"


@pytest.mark.parametrize(("fault", "expect"), [
    ("bad_crc", lambda r: r[:-2] == frame(PV_REPLY)[:-2] and not check_crc(r)),
    ("wrong_slave", lambda r: r[0] == 2 and with_crc(r[:-2]) == r),
    ("wrong_function", lambda r: r[1] == 4 and with_crc(r[:-2]) == r),
    ("duplicate", lambda r: r == frame(PV_REPLY) * 2),
    ("extra_bytes", lambda r: r.startswith(frame(PV_REPLY)) and len(r) == 10),
    ("exception", lambda r: r[1] == 0x83 and r[2] == 4 and with_crc(r[:-2]) == r),
    (lambda reply: b"\x00" + reply, lambda r: r == b"\x00" + frame(PV_REPLY)),
])
def test_one_shot_rtu_reply_faults(sim, tcp, fault, expect):
    sim.queue_reply_fault(fault)
    reply = exchange(tcp, frame(READ_PV), 14, timeout=0.3)
    assert expect(reply), reply.hex(" ")
    assert exchange(tcp, frame(READ_PV), 7) == frame(PV_REPLY)  # one-shot
    assert sim.replies_faulted == 1


def test_partial_silent_and_late_rtu_replies(sim, tcp):
    sim.queue_reply_fault("partial")
    assert exchange(tcp, frame(READ_PV), 7, timeout=0.3) == frame(PV_REPLY)[:3]
    sim.queue_reply_fault("silent")
    assert exchange(tcp, frame(READ_PV), 7, timeout=0.3) == b""
    sim.queue_reply_fault("late", delay_s=0.2)
    started = time.monotonic()
    assert exchange(tcp, frame(READ_PV), 7, timeout=1.0) == frame(PV_REPLY)
    assert time.monotonic() - started >= 0.15
    assert sim.take_reply_delay() == 0.0  # the delay was one-shot


def test_wrong_echo_changes_a_write_reply(sim, tcp):
    sim.queue_reply_fault("wrong_echo")
    request = with_crc(frame("01 06 00 02 03 E8"))  # target setpoint := 100.0 degC
    reply = exchange(tcp, request, 8, timeout=0.5)
    assert reply != request and with_crc(reply[:-2]) == reply and reply[3] == 0x03


def test_rtu_reply_fault_arguments_are_checked(sim):
    with pytest.raises(ValueError, match="unknown reply fault 'bogus'"):
        sim.queue_reply_fault("bogus")
    with pytest.raises(ValueError, match="delay_s"):
        sim.queue_reply_fault("late", delay_s=100.0)
    sim.queue_reply_fault("silent")
    assert sim.pending_reply_faults == 1
    sim.clear_reply_faults()
    assert sim.pending_reply_faults == 0
