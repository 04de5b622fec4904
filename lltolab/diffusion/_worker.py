"""A child Python process that integrates a :class:`VirtualSample`'s declared segments.

The twin's numerics (sparse LU, triangular solves, matrix-vector products) release the
interpreter lock, but between two of them the integrating thread must take the lock back.
While another thread of the same process runs Python code (a RunEngine, a catalog server, an
analysis drawing a figure) every such hand-back waits up to the interpreter's switch interval
(5 ms): measured on two cores, 12 TR-BDF2 steps on the 115 000-cell strip took 0.43 s alone
and 2.3 s beside one busy Python thread. A child process has a lock of its own.

The child rebuilds the same sample from its construction parameters and integrates with the
same code (:meth:`VirtualSample.integrate_pieces`, which has no worker there), so the field it
returns is the one the parent would have computed, to the last bit; it also returns the
homogenisation nodes it solved, which the parent adopts (the sample's true D_eff then comes
from the same numbers).

Messages are pickles on the child's standard input and output (the child writes nothing else
there: its ``sys.stdout`` goes to standard error). The child ignores SIGINT (Ctrl-C at the
parent's prompt is the parent's to handle) and ends when its standard input closes, which
happens when the parent closes the worker or ends in any way.
"""

from __future__ import annotations

import os
import pickle
import queue
import subprocess
import sys
import threading
import weakref
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["WORKER_TIMEOUT_S", "SampleWorker", "WorkerLost"]

WORKER_TIMEOUT_S = 900.0
"""Longest wait (s) for the worker's answer to one request (its start included)."""

_PROTOCOL = pickle.HIGHEST_PROTOCOL
# SIGINT is ignored before the imports: Ctrl-C at the parent's prompt is the parent's
_CHILD = ("import signal; signal.signal(signal.SIGINT, signal.SIG_IGN); "
          "from lltolab.diffusion._worker import _main; _main()")


class WorkerLost(RuntimeError):
    """The worker process ended, broke its pipe, or did not answer in time."""


class SampleWorker:
    """Parent side of the worker process of one sample.

    Parameters
    ----------
    spec : dict
        Keyword arguments that rebuild the sample (:meth:`VirtualSample.worker_spec`).
    timeout_s : float
        Longest wait for one answer (s).

    Raises
    ------
    OSError
        If the child process cannot be started.
    """

    def __init__(self, spec: dict[str, Any], *, timeout_s: float = WORKER_TIMEOUT_S) -> None:
        if not timeout_s > 0:
            raise ValueError(f"timeout_s must be > 0 s, got {timeout_s!r}")
        self.timeout_s = float(timeout_s)
        if not sys.executable:
            raise OSError("sys.executable is empty: no Python interpreter to start the worker")
        env = dict(os.environ)
        # the child imports this very copy of lltolab, wherever the parent found it
        here = str(Path(__file__).resolve().parents[2])
        env["PYTHONPATH"] = os.pathsep.join(p for p in (here, env.get("PYTHONPATH")) if p)
        self._proc = subprocess.Popen([sys.executable, "-c", _CHILD], stdin=subprocess.PIPE,
                                      stdout=subprocess.PIPE, env=env)
        self._replies: queue.SimpleQueue[tuple[str, Any]] = queue.SimpleQueue()
        # requests go out on a thread of their own: a write to a child that does not read
        # (still importing, or hung) then never blocks the caller past its timeout
        self._outbox: queue.SimpleQueue[tuple[str, Any] | None] = queue.SimpleQueue()
        self._lock = threading.Lock()  # one request at a time
        self._ready = threading.Event()  # the child has built its sample
        threading.Thread(target=_read_replies,
                         args=(self._proc.stdout, self._replies, self._ready),
                         name="twin-worker-reader", daemon=True).start()
        threading.Thread(target=_write_requests,
                         args=(self._proc.stdin, self._outbox, self._replies),
                         name="twin-worker-writer", daemon=True).start()
        self._outbox.put(("spec", spec))
        self._finalizer = weakref.finalize(self, _stop_process, self._proc, self._outbox)

    @property
    def pid(self) -> int:
        """Process id of the worker."""
        return self._proc.pid

    def wait_ready(self, timeout_s: float = 60.0) -> bool:
        """Wait until the worker has built its sample (True), at most ``timeout_s`` s."""
        return self._ready.wait(timeout_s)

    def integrate(self, c: np.ndarray, pieces: list[tuple[float, float, bool]],
                  ) -> tuple[np.ndarray, dict[int, float]]:
        """The field after ``pieces`` of (duration s, temperature K, immersed), and the
        homogenisation nodes the worker solved on the way.

        Raises
        ------
        WorkerLost
            If the worker has ended or does not answer within :attr:`timeout_s`.
        Exception
            What the integration itself raised in the worker (the same type).
        """
        with self._lock:
            self._outbox.put(("integrate", (np.asarray(c, dtype=float), list(pieces))))
            try:
                kind, payload = self._replies.get(timeout=self.timeout_s)
            except queue.Empty:
                self._proc.kill()  # hung: it would not read a closed input either
                self.close()
                raise WorkerLost(f"twin worker (pid {self.pid}) did not answer within "
                                 f"{self.timeout_s:g} s; stopped it") from None
        if kind == "done":
            return payload
        if kind == "error":
            raise payload
        raise WorkerLost(f"twin worker (pid {self.pid}) ended "
                         f"(exit status {self._proc.poll()})")

    def close(self) -> None:
        """End the worker (idempotent): close its input, wait up to 5 s for it, then kill."""
        self._finalizer()


def _send(stream: Any, message: tuple[str, Any]) -> None:
    """One whole message: pickled first, so a pickling error never leaves half of one."""
    stream.write(pickle.dumps(message, protocol=_PROTOCOL))
    stream.flush()


def _read_replies(stdout: Any, replies: queue.SimpleQueue, ready: threading.Event) -> None:
    while True:
        try:
            message = pickle.load(stdout)
        except Exception:  # noqa: BLE001 - EOF or a broken message: the child is lost
            replies.put(("lost", None))
            return
        if message[0] == "ready":
            ready.set()
        else:
            replies.put(message)


def _write_requests(stdin: Any, outbox: queue.SimpleQueue,
                    replies: queue.SimpleQueue) -> None:
    try:
        while (message := outbox.get()) is not None:
            _send(stdin, message)
    except Exception:  # noqa: BLE001 - a broken pipe: the child is gone
        replies.put(("lost", None))
    finally:
        try:
            stdin.close()  # the child ends at the end of its input
        except Exception:  # noqa: BLE001, S110 - already broken
            pass


def _stop_process(proc: subprocess.Popen, outbox: queue.SimpleQueue) -> None:
    outbox.put(None)
    try:
        proc.wait(timeout=5.0)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=5.0)


def _serve(stdin: Any, stdout: Any) -> None:
    """The worker's loop: a spec, then requests, until standard input closes."""
    from ._sample import VirtualSample  # noqa: PLC0415

    sample: VirtualSample | None = None
    while True:
        try:
            kind, payload = pickle.load(stdin)
        except Exception:  # noqa: BLE001 - end of input (or a parent gone mid-message)
            return
        if kind == "spec":
            sample = VirtualSample(**payload)
            _send(stdout, ("ready", None))
            continue
        try:
            if sample is None:
                raise RuntimeError("twin worker: integrate requested before its spec")
            known = set(sample.strip.d_eff.nodes())
            c = sample.integrate_pieces(*payload)  # no worker of its own: here
            nodes = {k: v for k, v in sample.strip.d_eff.nodes().items() if k not in known}
            reply: tuple[str, Any] = ("done", (c, nodes))
        except Exception as exc:  # noqa: BLE001 - the parent re-raises it
            reply = ("error", exc)
        try:
            _send(stdout, reply)
        except (pickle.PicklingError, TypeError, AttributeError):  # an unpicklable error
            _send(stdout, ("error", RuntimeError(repr(reply[1]))))


def _main() -> None:
    stdout = os.fdopen(os.dup(sys.stdout.fileno()), "wb")
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())  # stray prints cannot break a message
    _serve(sys.stdin.buffer, stdout)

