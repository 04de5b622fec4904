"""Named regressions of the instrument links: in step, no impossible value, nothing invalid sent.

Real device classes over real transports (pyvisa-py to the Lake Shore simulator, pyserial
``socket://`` Modbus RTU to the Eurotherm simulator), on a frozen lab clock and without reading
noise, so every correct answer is known exactly. The simulators spoil chosen replies.
"""

from __future__ import annotations

import math
import struct

import pytest

from lltolab.comm import (
    InstrumentError,
    InstrumentProtocolError,
    InstrumentReportedError,
    MessageSignal,
    ModbusRtuTransport,
    VisaLineTransport,
    parse_float,
    parse_int,
)
from lltolab.devices import CryoStage, Furnace
from lltolab.sim_devices import EurothermSimulator, LakeShoreSimulator, VirtualClock, with_crc

pytestmark = pytest.mark.timeout(60)

IO_TIMEOUT_S = 0.5
STAGE_K = 295.0
SETPOINT_K = 150.0
C = 273.15


def frozen_clock() -> VirtualClock:
    return VirtualClock(wall=lambda: 0.0)


@pytest.fixture
def ls():
    with LakeShoreSimulator(clock=frozen_clock(), initial_K=STAGE_K, noise_K=0.0) as sim:
        yield sim


@pytest.fixture
def stage(ls):
    dev = CryoStage(ls.resource, name="stage", timeout_s=IO_TIMEOUT_S)
    dev.setpoint.put(SETPOINT_K)
    assert dev.position == pytest.approx(STAGE_K)
    assert dev.setpoint.get() == pytest.approx(SETPOINT_K)
    yield dev
    dev.close()


@pytest.fixture
def eu():
    sim = EurothermSimulator(frozen_clock()).start()
    yield sim
    sim.close()


@pytest.fixture
def furnace(eu):
    dev = Furnace(eu.url, name="furnace", timeout_s=0.2)
    yield dev
    dev.close()


def reply_as(text: bytes):
    """A reply fault sending ``text`` instead of the reply."""
    return lambda _reply: text


def register_reply(*words: int):
    """A Modbus fault answering a read of ``len(words)`` registers with ``words``."""
    def fault(reply: bytes) -> bytes:
        return with_crc(bytes([reply[0], reply[1], 2 * len(words)]) +
                        struct.pack(f">{len(words)}H", *words))
    return fault


# ======================================================================== links in step
def test_duplicated_lakeshore_reply_does_not_shift_later_readings(ls, stage):
    """One reply sent twice: the stale copy is discarded, every later query gets its own."""
    ls.queue_reply_fault("duplicate")
    assert stage.position == pytest.approx(STAGE_K)
    for _ in range(3):
        assert stage.setpoint.get() == pytest.approx(SETPOINT_K)
        assert stage.position == pytest.approx(STAGE_K)
        assert stage.heater_output.get() == pytest.approx(0.0)
    assert stage.transport.transport.discarded_bytes > 0


def test_unsolicited_line_is_discarded(ls, stage):
    ls.queue_reply_fault("extra_line")
    assert stage.setpoint.get() == pytest.approx(SETPOINT_K)
    assert stage.position == pytest.approx(STAGE_K)


@pytest.mark.parametrize("fault", ["partial", "split_late"])
def test_partial_reply_never_answers_the_next_query(ls, stage, fault):
    """Half a reply, the rest never or too late: the query is repeated on a fresh link (it is
    idempotent) and gets its own answer, as does every later query."""
    ls.queue_reply_fault(fault, delay_s=1.5 * IO_TIMEOUT_S)
    reconnects = stage.transport.transport.reconnects
    assert stage.setpoint.get() == pytest.approx(SETPOINT_K)
    assert stage.transport.transport.reconnects == reconnects + 1
    for _ in range(3):
        assert stage.position == pytest.approx(STAGE_K)
        assert stage.setpoint.get() == pytest.approx(SETPOINT_K)


def test_partial_reply_to_a_command_is_an_error_then_the_link_is_in_step(ls, stage):
    """A command's ``*ESR?`` reply cut short: never repeated, an error, the link reopened."""
    ls.queue_reply_fault("split_late", delay_s=1.5 * IO_TIMEOUT_S)
    with pytest.raises(InstrumentError):
        stage.setpoint.put(SETPOINT_K + 1.0)
    assert stage.position == pytest.approx(STAGE_K)
    assert stage.setpoint.get() == pytest.approx(SETPOINT_K + 1.0)


def test_unterminated_reply_is_a_protocol_error():
    """A line without its termination (the peer then closes) is never taken as a reply."""
    import socket
    import threading

    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)

    def serve() -> None:
        conn, _ = listener.accept()
        conn.recv(100)
        conn.sendall(b"+77.3")
        conn.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    link = VisaLineTransport(f"TCPIP::127.0.0.1::{listener.getsockname()[1]}::SOCKET",
                             timeout_s=IO_TIMEOUT_S)
    try:
        with pytest.raises(InstrumentError):
            link.query("KRDG? A", idempotent=False)
    finally:
        link.close()
        listener.close()
        thread.join(2)


def test_late_reply_is_never_taken_for_the_next_answer(ls, stage):
    ls.queue_reply_fault("late", delay_s=1.5 * IO_TIMEOUT_S)
    assert stage.setpoint.get() == pytest.approx(SETPOINT_K)  # retried on a fresh link
    assert stage.position == pytest.approx(STAGE_K)
    assert stage.heater_output.get() == pytest.approx(0.0)


def test_reply_of_the_wrong_shape_resynchronises(ls, stage):
    link = stage.transport.transport
    before = link.reconnects
    ls.queue_reply_fault(reply_as(b"+1.0,+2.0,+3.0\r\n"))
    with pytest.raises(InstrumentProtocolError):
        stage.position  # noqa: B018 - the read is the test
    assert link.reconnects == before + 1
    assert stage.position == pytest.approx(STAGE_K)


@pytest.mark.parametrize("fault", ["bad_crc", "wrong_slave", "wrong_function", "partial"])
def test_modbus_reply_must_fit_its_request(eu, furnace, fault):
    """CRC, slave address and function code are checked; the next read is answered."""
    eu.queue_reply_fault(fault)
    with pytest.raises(InstrumentProtocolError):
        furnace.position  # noqa: B018
    assert furnace.position == pytest.approx(22.0 + C)


def test_modbus_write_echo_is_checked(eu, furnace):
    eu.queue_reply_fault("wrong_echo")
    with pytest.raises(InstrumentProtocolError):
        furnace.modbus.write_value(2, 100.0, 1)
    assert furnace.modbus.read_value(2, 1) == pytest.approx(100.0)


@pytest.mark.parametrize("fault", ["duplicate", "extra_bytes"])
def test_modbus_extra_bytes_do_not_shift_later_reads(eu, furnace, fault):
    eu.queue_reply_fault(fault)
    assert furnace.position == pytest.approx(22.0 + C)
    assert furnace.status.get() == 0
    assert furnace.working_setpoint.get() == pytest.approx(eu.target_setpoint_C + C)


# ======================================================================== no impossible value
@pytest.mark.parametrize("reply", [b"+000.000;0\r\n", b"-5.000;0\r\n", b"+2500.0;0\r\n"])
def test_impossible_kelvin_is_an_error(ls, stage, reply):
    ls.queue_reply_fault(reply_as(reply))
    with pytest.raises(InstrumentProtocolError, match="K"):
        stage.position  # noqa: B018
    assert stage.position == pytest.approx(STAGE_K)


@pytest.mark.parametrize("text", ["1_77.35", "inf", "nan", "0x1F", "1 77", "+", "", "1e999",
                                  "١٢٣", "177.35\x00"])
def test_strict_numeric_grammar(text):
    with pytest.raises(InstrumentProtocolError):
        parse_float(text)


def test_underscore_reading_is_not_177_35(ls, stage):
    ls.queue_reply_fault(reply_as(b"1_77.35;0\r\n"))
    with pytest.raises(InstrumentProtocolError, match="1_77.35"):
        stage.position  # noqa: B018


def test_5000_digit_reply_stays_in_the_error_family(ls, stage):
    with pytest.raises(InstrumentProtocolError):
        parse_int("9" * 5000)
    with pytest.raises(InstrumentProtocolError):
        parse_float("9" * 5000)
    ls.queue_reply_fault(reply_as(b"9" * 5000 + b"\r\n"))
    with pytest.raises(InstrumentProtocolError):
        stage.heater_status.get()
    ls.queue_reply_fault(reply_as(b"9" * 5000 + b";0\r\n"))
    with pytest.raises(InstrumentError):
        stage.position  # noqa: B018
    assert stage.heater_status.get() == 0


def test_modbus_float_nan_and_inf_are_errors(eu, furnace):
    eu.sensor_break = True  # the PV's float mirror reads NaN
    with pytest.raises(InstrumentProtocolError, match="nan"):
        furnace.modbus.read_float(0x8000 + 2)
    eu.queue_reply_fault(register_reply(0x7F80, 0x0000))  # +inf
    with pytest.raises(InstrumentProtocolError, match="inf"):
        furnace.modbus.read_float(0x8000 + 4)
    eu.sensor_break = False
    assert furnace.modbus.read_float(0x8000 + 2) == pytest.approx(22.0)


@pytest.mark.parametrize("signal", ["readback", "setpoint", "working_setpoint",
                                    "setpoint_low", "setpoint_high"])
def test_sensor_break_word_is_checked_on_every_temperature_register(eu, furnace, signal):
    """0x8000 on any temperature register is a sensor break, never -3003.65 K."""
    eu.queue_reply_fault(register_reply(0x8000))
    with pytest.raises(InstrumentReportedError, match="sensor break"):
        getattr(furnace, signal).get()


def test_furnace_reading_at_or_below_0_K_is_an_error(eu, furnace):
    eu.queue_reply_fault(register_reply((-3000) & 0xFFFF))  # -300.0 degC
    with pytest.raises(InstrumentProtocolError, match="0 K"):
        furnace.position  # noqa: B018
    assert furnace.position == pytest.approx(22.0 + C)


def test_impossible_output_and_ramp_are_errors(eu, furnace):
    eu.queue_reply_fault(register_reply(2000))  # 200.0 %
    with pytest.raises(InstrumentProtocolError, match="%"):
        furnace.output.get()
    eu.queue_reply_fault(register_reply((-50) & 0xFFFF))  # -5.0 K/min
    with pytest.raises(InstrumentProtocolError, match="K/min"):
        furnace.ramp_rate.get()


# ======================================================================== nothing invalid sent
@pytest.fixture
def modbus(eu):
    link = ModbusRtuTransport(eu.url, slave_address=1, timeout_s=0.2)
    yield link
    link.close()


@pytest.mark.parametrize("call", [
    lambda m: m.write_word(2, True),
    lambda m: m.write_word(True, 5),
    lambda m: m.write_words(2, [1, False]),
    lambda m: m.write_value(2, True, 1),
    lambda m: m.write_float(0x8004, False),
    lambda m: m.read_words(1, True),
    lambda m: m.write_words(65535, [1, 2]),
    lambda m: m.write_words(65500, [0] * 100),
    lambda m: m.read_words(65530, 10),
    lambda m: m.write_float(65535, 1.0),
    lambda m: m.write_word(2, 65536),
    lambda m: m.write_value(2, math.nan, 1),
    lambda m: m.write_value(2, 5000.0, 1),
])
def test_invalid_modbus_writes_never_reach_the_wire(eu, modbus, call):
    frames = eu.frames_handled
    with pytest.raises(ValueError, match=r"\d|True|False|nan"):
        call(modbus)
    assert eu.frames_handled == frames


def test_bool_slave_address_rejected(eu):
    with pytest.raises(ValueError, match="True"):
        ModbusRtuTransport(eu.url, slave_address=True)


def test_setpoint_put_respects_the_controller_limits(tmp_path):
    """setpoint.put is checked like set(): the controller's own limits (read first) apply."""
    sim = EurothermSimulator(frozen_clock(), setpoint_limits_C=(0.0, 500.0)).start()
    furnace = Furnace(sim.url, name="furnace", timeout_s=0.2)
    try:
        with pytest.raises(ValueError, match="controller setpoint high limit 773.15 K"):
            furnace.setpoint.put(900.0 + C)
        assert sim.target_setpoint_C == pytest.approx(22.0)
        with pytest.raises(ValueError, match="limit"):
            furnace.setpoint.put(1600.0 + C)
        with pytest.raises(ValueError, match="True"):
            furnace.setpoint.put(True)
        furnace.setpoint.put(400.0 + C)
        assert sim.target_setpoint_C == pytest.approx(400.0)
    finally:
        furnace.close()
        sim.close()


@pytest.mark.parametrize("line", ["SETP 1,100\x00", "SETP 1,100\x1b[2J", "RANGE 1,3\t",
                                  "KRDG? A\n", "A" * 100_000, "SETP 1,\u00b0"])
def test_invalid_lines_never_reach_the_wire(ls, line):
    link = VisaLineTransport(ls.resource, timeout_s=IO_TIMEOUT_S)
    try:
        before = len(ls.commands)
        with pytest.raises(ValueError, match="command"):
            link.write(line)
        with pytest.raises(ValueError, match="command"):
            link.query(line)
        assert len(ls.commands) == before
    finally:
        link.close()


def test_string_signal_rejects_control_characters(ls):
    link = VisaLineTransport(ls.resource, timeout_s=IO_TIMEOUT_S)
    sig = MessageSignal(name="label", write="INNAME A,{value}", value_type=str, transport=link)
    try:
        with pytest.raises(ValueError, match="printable"):
            sig.put("stage\x00;*RST")
    finally:
        link.close()


def test_stage_setpoint_put_is_checked(ls, stage):
    before = len(ls.commands)
    for bad in (True, math.nan, 10.0, 900.0, "100"):
        with pytest.raises(ValueError):
            stage.setpoint.put(bad)
    assert len(ls.commands) == before
