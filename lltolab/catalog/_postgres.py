"""A private PostgreSQL cluster on 127.0.0.1 in a folder of its own (tests, benchmarks, a
single-machine lab).

It runs the distribution's own server binaries (``initdb``, ``pg_ctl``, ``postgres``; Debian:
``apt-get install postgresql``). PostgreSQL refuses to run as root: under root the cluster's
folder is given to the ``postgres`` system user and the binaries run as that user (``runuser``).
"""

from __future__ import annotations

import glob
import os
import re
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

__all__ = ["PostgresCluster", "PostgresUnavailable", "find_postgres_bin"]

_DB_NAME = re.compile(r"[a-z_][a-z0-9_]{0,62}")


class PostgresUnavailable(RuntimeError):
    """PostgreSQL's server binaries are missing or the cluster did not start."""


def find_postgres_bin() -> Path:
    """The folder of ``initdb`` / ``pg_ctl`` (``$LLTOLAB_POSTGRES_BIN``, PATH, Debian's layout).

    Raises
    ------
    PostgresUnavailable
        If no folder holding ``initdb`` and ``pg_ctl`` is found.
    """
    candidates = []
    if os.environ.get("LLTOLAB_POSTGRES_BIN"):
        candidates.append(Path(os.environ["LLTOLAB_POSTGRES_BIN"]))
    found = shutil.which("initdb")
    if found:
        candidates += [Path(found).parent, Path(found).resolve().parent]
    candidates += [Path(p) for p in sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True)]
    for folder in candidates:
        if all((folder / tool).exists() for tool in ("initdb", "pg_ctl", "createdb")):
            return folder
    raise PostgresUnavailable(
        "PostgreSQL server binaries (initdb, pg_ctl, createdb) not found; install them "
        "(Debian: apt-get install postgresql) or set LLTOLAB_POSTGRES_BIN"
    )


def _is_root() -> bool:
    return getattr(os, "geteuid", lambda: -1)() == 0


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class PostgresCluster:
    """Start / stop a throw-away PostgreSQL cluster listening on 127.0.0.1 only.

    Parameters
    ----------
    port : int, optional
        TCP port (default: a free one).
    timeout_s : float
        Longest wait for each of initdb, start, database creation and stop (s).

    Examples
    --------
    >>> with PostgresCluster() as pg:                                  # doctest: +SKIP
    ...     uri = pg.create_database("lltolab")   # postgresql://postgres@127.0.0.1:PORT/lltolab
    """

    def __init__(self, *, port: int | None = None, timeout_s: float = 120.0) -> None:
        if port is not None and not (isinstance(port, int) and 0 < port < 65536):
            raise ValueError(f"port must be an integer in 1..65535, got {port!r}")
        if not timeout_s > 0:
            raise ValueError(f"timeout_s must be > 0, got {timeout_s!r}")
        self.port = port or _free_port()
        self.timeout_s = float(timeout_s)
        self.bin = find_postgres_bin()
        self.folder: Path | None = None
        self._running = False

    @property
    def uri(self) -> str:
        """``postgresql://postgres@127.0.0.1:PORT`` (no database)."""
        return f"postgresql://postgres@127.0.0.1:{self.port}"

    def _run(self, *cmd: str) -> subprocess.CompletedProcess[str]:
        argv = list(cmd)
        if _is_root():
            argv = ["runuser", "-u", "postgres", "--", *argv]
        try:
            proc = subprocess.run(argv, capture_output=True, text=True,
                                  timeout=self.timeout_s, check=False, cwd="/")
        except subprocess.TimeoutExpired as exc:
            raise PostgresUnavailable(f"{cmd[0]} did not finish within {self.timeout_s} s") from exc
        if proc.returncode != 0:
            raise PostgresUnavailable(
                f"{Path(cmd[0]).name} failed ({proc.returncode}): "
                f"{(proc.stderr or proc.stdout).strip()[-800:]}"
            )
        return proc

    def start(self) -> str:
        """Create the cluster in a new temporary folder and start it; returns :attr:`uri`."""
        if self._running:
            return self.uri
        self.folder = Path(tempfile.mkdtemp(prefix="lltolab-pg-"))
        data = self.folder / "data"
        try:
            if _is_root():
                shutil.chown(self.folder, "postgres", "postgres")
            self._run(str(self.bin / "initdb"), "-D", str(data), "-U", "postgres", "-A",
                      "trust", "-E", "UTF8", "--no-sync")
            options = (f"-h 127.0.0.1 -p {self.port} -k {self.folder} -F "
                       "-c max_connections=200 -c shared_buffers=32MB")
            self._run(str(self.bin / "pg_ctl"), "-D", str(data), "-o", options,
                      "-l", str(self.folder / "server.log"), "-w", "-t",
                      str(int(self.timeout_s)), "start")
        except BaseException:
            shutil.rmtree(self.folder, ignore_errors=True)
            self.folder = None
            raise
        self._running = True
        return self.uri

    def create_database(self, name: str) -> str:
        """Create database ``name``; returns its ``postgresql://`` URI."""
        if not isinstance(name, str) or not _DB_NAME.fullmatch(name):
            raise ValueError(f"database name must match {_DB_NAME.pattern}, got {name!r}")
        if not self._running:
            raise PostgresUnavailable("the cluster is not running; call start() first")
        self._run(str(self.bin / "createdb"), "-h", "127.0.0.1", "-p", str(self.port),
                  "-U", "postgres", name)
        return f"{self.uri}/{name}"

    def stop(self) -> None:
        """Stop the server (fast shutdown) and delete its folder."""
        if self.folder is None:
            return
        if self._running:
            try:
                self._run(str(self.bin / "pg_ctl"), "-D", str(self.folder / "data"),
                          "-m", "fast", "-w", "-t", str(int(self.timeout_s)), "stop")
            finally:
                self._running = False
        deadline = time.monotonic() + 10.0
        while True:
            try:
                shutil.rmtree(self.folder)
                break
            except OSError:
                if time.monotonic() > deadline:
                    break
                time.sleep(0.1)
        self.folder = None

    def __enter__(self) -> PostgresCluster:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
