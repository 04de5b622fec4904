"""A threaded TCP line server on loopback with wire-level fault injection.

Each client connection gets a thread. Lines end in LF (a preceding CR is dropped); the handler
maps one line to one reply line (or None for no reply); replies end in ``terminator``.
Wire faults: no reply, garbled reply, late reply, dropped connections, rejected connections;
and one-shot faults applied to the next replies in turn (:meth:`LineServer.queue_reply_fault`):
a duplicated, partial, garbled, late or missing reply, an extra line, a dropped connection, or
any bytes a callable makes of the reply.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import threading
from collections import deque
from collections.abc import Callable

__all__ = ["LineServer", "REPLY_FAULTS", "ReplyFault"]

ReplyFault = str | Callable[[bytes], bytes]
"""A one-shot reply fault: a name from :data:`REPLY_FAULTS`, or ``fn(reply) -> bytes`` that
turns the reply line (with its terminator) into the bytes actually sent."""

REPLY_FAULTS = frozenset(
    {"duplicate", "extra_line", "garble", "partial", "late", "silent", "drop", "split_late"}
)
"""Names of the one-shot reply faults: ``duplicate`` (the reply twice), ``extra_line`` (an
unsolicited line after the reply), ``garble`` (digits and signs replaced), ``partial`` (the
first half, no terminator, the rest never), ``late`` (the reply after ``delay_s``),
``silent`` (no reply), ``drop`` (the connection closed instead of replying), ``split_late``
(half the reply now, the rest after ``delay_s``)."""

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
        self._reply_faults: deque[tuple[ReplyFault, float]] = deque()
        self.replies_faulted = 0
        """Replies a one-shot fault was applied to."""

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
            with contextlib.suppress(OSError):  # wakes a waiting accept() at once (Linux)
                listener.shutdown(socket.SHUT_RDWR)
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

    def queue_reply_fault(self, fault: ReplyFault, *, delay_s: float = 1.0) -> None:
        """Apply ``fault`` to the next reply not yet faulted (one-shot, first in first out).

        Parameters
        ----------
        fault : str or callable
            A name from :data:`REPLY_FAULTS` or ``fn(reply_bytes) -> bytes_to_send``.
        delay_s : float
            Delay of ``late`` and ``split_late`` (s, finite, 0..60).
        """
        if not callable(fault) and fault not in REPLY_FAULTS:
            raise ValueError(f"unknown reply fault {fault!r}; expected a callable or one of "
                             f"{sorted(REPLY_FAULTS)}")
        if not (isinstance(delay_s, int | float) and 0 <= delay_s <= 60):
            raise ValueError(f"delay_s must be a number of seconds in 0..60, got {delay_s!r}")
        with self._lock:
            self._reply_faults.append((fault, float(delay_s)))

    def clear_reply_faults(self) -> None:
        """Forget the queued one-shot reply faults."""
        with self._lock:
            self._reply_faults.clear()

    @property
    def pending_reply_faults(self) -> int:
        """One-shot reply faults not yet applied."""
        with self._lock:
            return len(self._reply_faults)

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
        data += self._terminator
        with self._lock:
            one_shot = self._reply_faults.popleft() if self._reply_faults else None
        if one_shot is not None:
            self.replies_faulted += 1
            return self._send_faulted(conn, data, *one_shot)
        try:
            conn.sendall(data)
        except OSError:
            return False
        return True

    def _send_faulted(self, conn: socket.socket, data: bytes, fault: ReplyFault,
                      delay_s: float) -> bool:
        """Send ``data`` spoilt by ``fault``; False when the connection is gone."""
        chunks: list[tuple[float, bytes]]
        if callable(fault):
            chunks = [(0.0, bytes(fault(data)))]
        elif fault == "duplicate":
            chunks = [(0.0, data + data)]
        elif fault == "extra_line":
            chunks = [(0.0, data + b"+000.000" + self._terminator)]
        elif fault == "garble":
            text = data[: len(data) - len(self._terminator)].decode("ascii", errors="replace")
            chunks = [(0.0, _garbled(text) + self._terminator)]
        elif fault == "partial":
            chunks = [(0.0, data[: max(1, (len(data) - len(self._terminator)) // 2)])]
        elif fault == "late":
            chunks = [(delay_s, data)]
        elif fault == "split_late":
            half = max(1, (len(data) - len(self._terminator)) // 2)
            chunks = [(0.0, data[:half]), (delay_s, data[half:])]
        elif fault == "silent":
            chunks = []
        else:  # "drop"
            with self._lock:
                self._clients.discard(conn)
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            return False
        for delay, chunk in chunks:
            if delay > 0 and self._stop.wait(delay):
                return False
            try:
                conn.sendall(chunk)
            except OSError:
                return False
        return True


def _garbled(reply: str) -> bytes:
    """A corrupted reply line: digits and signs swapped for junk, framing kept."""
    table = str.maketrans("0123456789+-.,", "O!Z#A$b&B@%~:_")
    return ("?" + reply.translate(table) + "*").encode("ascii")
