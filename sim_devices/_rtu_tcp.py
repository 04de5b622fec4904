"""Raw Modbus RTU frames over TCP on 127.0.0.1 (what a serial-to-Ethernet bridge carries).

A pyserial ``socket://127.0.0.1:PORT`` URL connects to it, so minimalmodbus and
:class:`lltolab.comm.ModbusRtuTransport` talk to the simulated slave unchanged.
"""

from __future__ import annotations

import contextlib
import select
import socket
import threading

from ._modbus_rtu import RtuSlave, split_frames

__all__ = ["RtuTcpServer"]

_GAP_S = 0.02  # silence that ends a frame of unknown length (RTU: 3.5 character times)
_POLL_S = 0.1


class RtuTcpServer:
    """Serve one :class:`RtuSlave` on a TCP port of 127.0.0.1.

    Parameters
    ----------
    slave : RtuSlave
        The slave answering the frames.
    port : int
        TCP port; 0 picks a free one (see :attr:`port` / :attr:`url`).
    """

    def __init__(self, slave: RtuSlave, port: int = 0) -> None:
        if not isinstance(port, int) or not 0 <= port <= 65535:
            raise ValueError(f"port must be an int in 0..65535, got {port!r}")
        self.slave = slave
        self._requested_port = port
        self._listener: socket.socket | None = None
        self._clients: set[socket.socket] = set()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self.connections_accepted = 0

    @property
    def port(self) -> int:
        if self._listener is None:
            raise RuntimeError("server not started")
        return int(self._listener.getsockname()[1])

    @property
    def url(self) -> str:
        """pyserial URL of the server: ``socket://127.0.0.1:PORT``."""
        return f"socket://127.0.0.1:{self.port}"

    def start(self) -> RtuTcpServer:
        if self._listener is not None:
            return self
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self._requested_port))
        listener.listen(8)
        listener.settimeout(_POLL_S)
        self._listener = listener
        self._stop.clear()
        self.slave.add_drop_listener(self.drop_connections)
        thread = threading.Thread(target=self._accept_loop, name="rtu-tcp-accept", daemon=True)
        thread.start()
        self._threads.append(thread)
        return self

    def close(self) -> None:
        """Stop accepting, cut every client and join the threads (bounded wait)."""
        self._stop.set()
        self.slave.remove_drop_listener(self.drop_connections)
        self.drop_connections()
        if self._listener is not None:
            with contextlib.suppress(OSError):  # wakes a waiting accept() at once (Linux)
                self._listener.shutdown(socket.SHUT_RDWR)
        for thread in self._threads:
            thread.join(timeout=2.0)
        self._threads.clear()
        if self._listener is not None:
            with contextlib.suppress(OSError):
                self._listener.close()
            self._listener = None

    def drop_connections(self) -> None:
        """Close every client socket (a dropped link); clients may connect again."""
        with self._lock:
            clients, self._clients = self._clients, set()
        for client in clients:
            with contextlib.suppress(OSError):
                client.shutdown(socket.SHUT_RDWR)
            with contextlib.suppress(OSError):
                client.close()

    def __enter__(self) -> RtuTcpServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _accept_loop(self) -> None:
        listener = self._listener
        assert listener is not None
        while not self._stop.is_set():
            try:
                client, _ = listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            client.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            with self._lock:
                self._clients.add(client)
            self.connections_accepted += 1
            thread = threading.Thread(
                target=self._serve_client, args=(client,), name="rtu-tcp-client", daemon=True
            )
            thread.start()
            self._threads = [t for t in self._threads if t.is_alive()] + [thread]

    def _serve_client(self, client: socket.socket) -> None:
        buffer = bytearray()
        try:
            while not self._stop.is_set():
                with self._lock:
                    if client not in self._clients:
                        return
                timeout = _GAP_S if buffer else _POLL_S
                ready, _, _ = select.select([client], [], [], timeout)
                if not ready:
                    if buffer:
                        self._answer(client, split_frames(buffer, end_of_burst=True))
                    continue
                data = client.recv(4096)
                if not data:
                    return
                buffer.extend(data)
                self._answer(client, split_frames(buffer, end_of_burst=False))
        except (OSError, ValueError):
            return
        finally:
            with self._lock:
                self._clients.discard(client)
            with contextlib.suppress(OSError):
                client.close()

    def _answer(self, client: socket.socket, frames: list[bytes]) -> None:
        for frame in frames:
            reply = self.slave.handle_frame(frame)
            if reply is not None:
                delay = self.slave.take_reply_delay()
                if delay > 0 and self._stop.wait(delay):
                    return
                client.sendall(reply)
