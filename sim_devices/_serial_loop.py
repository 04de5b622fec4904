"""In-process pyserial URL handler: ``simloop://NAME`` talks to a registered RTU slave.

Registering a slave makes ``serial.serial_for_url("simloop://NAME")`` return a port whose
writes go to the slave and whose reads return its replies, with pyserial's read-timeout
semantics (short data on timeout). Unit tests use it instead of a TCP socket or a pty.

pyserial finds URL handlers as ``<package>.protocol_<scheme>`` modules of the packages in
``serial.protocol_handler_packages``; this module registers itself under that name.
"""

from __future__ import annotations

import sys
import threading
import time

import serial
from serial.serialutil import PortNotOpenError, SerialBase, SerialException

from ._modbus_rtu import RtuSlave, split_frames

__all__ = ["SCHEME", "register_loop", "unregister_loop", "loop_url"]

SCHEME = "simloop"
_registry: dict[str, RtuSlave] = {}
_registry_lock = threading.Lock()


def loop_url(name: str) -> str:
    """The pyserial URL of the slave registered as ``name``."""
    return f"{SCHEME}://{name}"


def register_loop(name: str, slave: RtuSlave) -> str:
    """Make ``slave`` reachable as ``simloop://name``; return the URL."""
    if not name or "/" in name:
        raise ValueError(f"loop name must be non-empty without '/', got {name!r}")
    _install_handler()
    with _registry_lock:
        if name in _registry and _registry[name] is not slave:
            raise ValueError(f"serial loop name {name!r} is already in use")
        _registry[name] = slave
    return loop_url(name)


def unregister_loop(name: str) -> None:
    """Forget ``name``: ports opened on it see a dropped link, new opens fail."""
    with _registry_lock:
        slave = _registry.pop(name, None)
    if slave is not None:
        slave.drop_connections()


def _lookup(name: str) -> RtuSlave:
    with _registry_lock:
        slave = _registry.get(name)
    if slave is None:
        raise SerialException(f"could not open port {loop_url(name)}: no such simulated slave")
    return slave


def _install_handler() -> None:
    module_name = f"{__name__}.protocol_{SCHEME}"
    sys.modules.setdefault(module_name, sys.modules[__name__])
    if __name__ not in serial.protocol_handler_packages:
        serial.protocol_handler_packages.append(__name__)


class Serial(SerialBase):
    """A pyserial port connected in-process to a simulated RTU slave."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        self._slave: RtuSlave | None = None
        self._rx = bytearray()  # bytes the slave sent, waiting to be read
        self._tx = bytearray()  # request bytes not yet forming a frame
        self._cond = threading.Condition()
        self._dropped = False
        super().__init__(*args, **kwargs)

    def open(self) -> None:
        if self.is_open:
            raise SerialException("Port is already open.")
        if self._port is None:
            raise SerialException("Port must be configured before it can be used.")
        name = str(self.portstr).split("://", 1)[-1].rstrip("/")
        slave = _lookup(name)
        with self._cond:
            self._slave = slave
            self._dropped = False
            self._rx.clear()
            self._tx.clear()
        slave.add_drop_listener(self._on_drop)
        self.is_open = True

    def close(self) -> None:
        if self._slave is not None:
            self._slave.remove_drop_listener(self._on_drop)
        self._slave = None
        self.is_open = False

    def _reconfigure_port(self) -> None:
        """Line settings mean nothing in-process."""

    def _on_drop(self) -> None:
        with self._cond:
            self._dropped = True
            self._rx.clear()
            self._cond.notify_all()

    def _check_link(self) -> RtuSlave:
        if not self.is_open or self._slave is None:
            raise PortNotOpenError()
        if self._dropped:
            raise SerialException("simulated link dropped")
        return self._slave

    @property
    def in_waiting(self) -> int:
        self._check_link()
        with self._cond:
            return len(self._rx)

    def read(self, size: int = 1) -> bytes:
        self._check_link()
        deadline = None if self._timeout is None else time.monotonic() + self._timeout
        with self._cond:
            while len(self._rx) < size:
                if self._dropped:
                    raise SerialException("simulated link dropped")
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    break
                self._cond.wait(remaining)
            data = bytes(self._rx[:size])
            del self._rx[:size]
            return data

    def write(self, data: bytes) -> int:
        slave = self._check_link()
        data = bytes(data)
        with self._cond:
            self._tx.extend(data)
            # each write of a master is one burst: the line goes silent after it
            frames = split_frames(self._tx, end_of_burst=True)
        replies = [reply for reply in map(slave.handle_frame, frames) if reply is not None]
        with self._cond:
            if self._dropped:
                raise SerialException("simulated link dropped")
        delay = slave.take_reply_delay() if replies else slave.reply_delay_s
        if delay > 0 and replies:
            timer = threading.Timer(delay, self._deliver, args=(replies,))
            timer.daemon = True
            timer.start()
        else:
            self._deliver(replies)
        return len(data)

    def _deliver(self, replies: list[bytes]) -> None:
        with self._cond:
            if self._dropped or not self.is_open:
                return
            for reply in replies:
                self._rx.extend(reply)
            self._cond.notify_all()

    def reset_input_buffer(self) -> None:
        self._check_link()
        with self._cond:
            self._rx.clear()

    def reset_output_buffer(self) -> None:
        self._check_link()
        with self._cond:
            self._tx.clear()

    def flush(self) -> None:
        self._check_link()

    @property
    def out_waiting(self) -> int:
        return 0

    def send_break(self, duration: float = 0.25) -> None:
        self._check_link()

    def _update_break_state(self) -> None:
        pass

    def _update_rts_state(self) -> None:
        pass

    def _update_dtr_state(self) -> None:
        pass

    @property
    def cts(self) -> bool:
        return True

    @property
    def dsr(self) -> bool:
        return True

    @property
    def ri(self) -> bool:
        return False

    @property
    def cd(self) -> bool:
        return True
