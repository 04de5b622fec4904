"""A threaded TCP line server on loopback with wire-level fault injection.

Each client connection gets a thread. Lines end in LF (a preceding CR is dropped); the handler
maps one line to one reply line (or None for no reply); replies end in ``terminator``.
Wire faults: no reply, garbled reply, late reply, dropped connections, rejected connections.
"""

from __future__ import annotations

import logging
import socket
import threading
from collections.abc import Callable

__all__ = ["LineServer"]

logger = logging.getLogger(__name__)

_LOOPBACK = {"127.0.0.1", "localhost"}
_POLL_S = 0.1


class LineServer:
    """TCP line server bound to 127.0.0.1.

    Parameters
    ----------
    handler : callable
        ``handler(line) -> reply or None``; ``line`` has its terminator removed.
    host : str
        Must be loopback (``"127.0.0.1"``).
    port : int
        TCP port; 0 picks a free one (see :attr:`port`).
    terminator : str
        Appended to every reply (``"\\r\\n"``).
    name : str
        Thread name prefix.
    """

    def __init__(
        self,
        handler: Callable[[str], str | None],
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        terminator: str = "\r\n",
        name: str = "line-server",
    ) -> None:
        if host not in _LOOPBACK:
            raise ValueError(f"simulators bind to loopback only; host {host!r} is not 127.0.0.1")
        if not (isinstance(port, int) and 0 <= port <= 65535):
            raise ValueError(f"port must be an integer in 0..65535, got {port!r}")
        self._handler = handler
        self._host = "127.0.0.1"
        self._requested_port = port
        self._terminator = terminator.encode("ascii")
        self._name = name
        self._listener: socket.socket | None = None
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._clients: set[socket.socket] = set()
        self._lock = threading.Lock()
        # wire faults
        self.no_reply = False
        """Swallow every line (the instrument looks dead, nothing is executed)."""
        self.garble = False
        """Replace replies with unparseable text."""
        self.late_reply_s = 0.0
        """Delay each reply by this many seconds."""
        self.reject_connections = False
        """Accept and immediately close new connections."""

    # ------------------------------------------------------------------ lifecycle
    @property
    def port(self) -> int:
        """The bound TCP port (after :meth:`start`)."""
        if self._listener is None:
            raise RuntimeError("server not started")
        return self._listener.getsockname()[1]

    @property
    def running(self) -> bool:
        return self._listener is not None and not self._stop.is_set()

    def start(self) -> None:
        """Bind and start accepting connections (idempotent)."""
        if self._listener is not None:
            return
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind((self._host, self._requested_port))
        listener.listen(8)
        listener.settimeout(_POLL_S)
        self._listener = listener
        self._stop.clear()
        self._spawn(self._accept_loop, "accept")

    def close(self, timeout_s: float = 2.0) -> None:
        """Stop accepting, drop every client, join the threads (bounded by ``timeout_s``)."""
        self._stop.set()
        self.drop_connections()
        listener, self._listener = self._listener, None
        if listener is not None:
            listener.close()
        for thread in list(self._threads):
            if thread is not threading.current_thread():
                thread.join(timeout_s)
        self._threads = [t for t in self._threads if t.is_alive()]

    def drop_connections(self) -> int:
        """Close every client connection now (a dropped link); return how many."""
        with self._lock:
            clients = list(self._clients)
            self._clients.clear()
        for conn in clients:
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            conn.close()
        return len(clients)

    @property
    def client_count(self) -> int:
        with self._lock:
            return len(self._clients)

    # ------------------------------------------------------------------ threads
    def _spawn(self, target: Callable[..., None], label: str, *args: object) -> None:
        thread = threading.Thread(
            target=target, args=args, name=f"{self._name}-{label}", daemon=True
        )
        self._threads = [t for t in self._threads if t.is_alive()]
        self._threads.append(thread)
        thread.start()

    def _accept_loop(self) -> None:
        listener = self._listener
        while not self._stop.is_set() and listener is not None:
            try:
                conn, _addr = listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            if self.reject_connections or self._stop.is_set():
                conn.close()
                continue
            conn.settimeout(_POLL_S)
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            with self._lock:
                self._clients.add(conn)
            self._spawn(self._client_loop, "client", conn)

    def _client_loop(self, conn: socket.socket) -> None:
        buffer = b""
        try:
            while not self._stop.is_set():
                try:
                    chunk = conn.recv(4096)
                except TimeoutError:
                    continue
                except OSError:
                    return
                if not chunk:
                    return
                buffer += chunk
                while b"\n" in buffer:
                    raw, buffer = buffer.split(b"\n", 1)
                    if not self._serve_line(conn, raw.rstrip(b"\r")):
                        return
        finally:
            with self._lock:
                self._clients.discard(conn)
            conn.close()

    def _serve_line(self, conn: socket.socket, raw: bytes) -> bool:
        """Handle one raw line; False when the connection is gone."""
        if self.no_reply:
            return True
        try:
            line = raw.decode("ascii")
        except UnicodeDecodeError:
            line = raw.decode("ascii", errors="replace")
        try:
            reply = self._handler(line)
        except Exception:  # noqa: BLE001 - a simulator bug must not kill the connection
            logger.exception("%s: handler failed on %r", self._name, line)
            return True
        if reply is None:
            return True
        if self.late_reply_s > 0 and self._stop.wait(self.late_reply_s):
            return False
        data = _garbled(reply) if self.garble else reply.encode("ascii", errors="replace")
        try:
            conn.sendall(data + self._terminator)
        except OSError:
            return False
        return True


def _garbled(reply: str) -> bytes:
    """A corrupted reply line: digits and signs swapped for junk, framing kept."""
    table = str.maketrans("0123456789+-.,", "O!Z#A$b&B@%~:_")
    return ("?" + reply.translate(table) + "*").encode("ascii")
