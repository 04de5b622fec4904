"""Run bluesky-queueserver's RE Manager with the lltolab startup module (and Redis if needed).

:class:`QueueServer` starts ``start-re-manager`` (bluesky-queueserver's own manager process)
with :mod:`lltolab.queue.startup`, the shipped ``existing_plans_and_devices.yaml`` and
``user_group_permissions.yaml``, ZMQ on 127.0.0.1, and either a given Redis or one it starts
itself on 127.0.0.1 (``redis-server``, persisting the queue in the catalog's session folder).
"""

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from importlib import resources
from pathlib import Path
from typing import Any

from lltolab.catalog import is_server_uri

from ._profile import queue_env

__all__ = [
    "QueueServer",
    "RedisServer",
    "QueueServerError",
    "check_redis",
    "free_port",
    "shipped_file",
    "EXISTING_PLANS_AND_DEVICES",
    "USER_GROUP_PERMISSIONS",
    "DEFAULT_CONTROL_PORT",
    "DEFAULT_INFO_PORT",
]

EXISTING_PLANS_AND_DEVICES = "existing_plans_and_devices.yaml"
USER_GROUP_PERMISSIONS = "user_group_permissions.yaml"
DEFAULT_CONTROL_PORT = 60615
"""bluesky-queueserver's default ZMQ control port (``qserver`` talks to it by default)."""
DEFAULT_INFO_PORT = 60625
"""bluesky-queueserver's default ZMQ info (console output) port."""


class QueueServerError(RuntimeError):
    """The RE Manager or its Redis could not be started or reached."""


def shipped_file(name: str) -> Path:
    """Path of a file shipped in :mod:`lltolab.queue` (the two YAML files)."""
    path = Path(str(resources.files("lltolab.queue") / name))
    if not path.is_file():
        raise QueueServerError(f"{name} is missing from the lltolab.queue package ({path})")
    return path


def free_port() -> int:
    """A TCP port on 127.0.0.1 that is free now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _check_port(name: str, port: int) -> int:
    if isinstance(port, bool) or not isinstance(port, int) or not 0 <= port <= 65535:
        raise ValueError(f"{name} must be a TCP port in [0, 65535] (0: any free port), "
                         f"got {port!r}")
    return port or free_port()


def _split_redis(url: str) -> tuple[str, int, str]:
    """``redis://HOST:PORT[/DB]`` (or ``HOST:PORT``) → (host, port, db)."""
    text = url.removeprefix("redis://")
    if "://" in text:
        raise ValueError(f"Redis address must be redis://HOST:PORT, got {url!r}")
    hostport, _, db = text.partition("/")
    host, _, port_text = hostport.rpartition(":")
    if not host:
        host, port_text = hostport, "6379"
    try:
        port = int(port_text)
    except ValueError:
        raise ValueError(f"Redis address must be redis://HOST:PORT, got {url!r}") from None
    if not 0 < port <= 65535 or not host:
        raise ValueError(f"Redis address must be redis://HOST:PORT, got {url!r}")
    return host, port, db


def check_redis(url: str, *, timeout_s: float = 5.0) -> None:
    """Raise :class:`QueueServerError` unless a Redis server answers PING at ``url``."""
    import redis  # noqa: PLC0415

    host, port, db = _split_redis(url)
    deadline = time.monotonic() + timeout_s
    last: Exception | None = None
    while time.monotonic() < deadline:
        client = redis.Redis(host=host, port=port, db=int(db or 0), socket_timeout=1.0,
                             socket_connect_timeout=1.0)
        try:
            if client.ping():
                return
        except redis.RedisError as exc:
            last = exc
        finally:
            client.close()
        time.sleep(0.1)
    raise QueueServerError(f"no Redis server answers at {url} within {timeout_s} s ({last})")


class RedisServer:
    """A ``redis-server`` on 127.0.0.1 with its data (the queue) kept in ``folder``.

    Parameters
    ----------
    folder : path
        Data directory (``dump.rdb`` and the append-only file).
    port : int
        TCP port (0: any free port).
    executable : str, optional
        Default: ``redis-server`` on the PATH, else ``/usr/bin/redis-server``.
    """

    def __init__(self, folder: str | os.PathLike[str], *, port: int = 0,
                 executable: str | None = None) -> None:
        self.folder = Path(folder)
        self.port = _check_port("port", port)
        exe = executable or shutil.which("redis-server") or "/usr/bin/redis-server"
        if not Path(exe).is_file():
            raise QueueServerError(
                "redis-server not found: install Redis (Debian/Ubuntu: apt-get install "
                "redis-server) or give the address of a running one (--redis redis://HOST:PORT)")
        self.executable = exe
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """``redis://127.0.0.1:PORT``."""
        return f"redis://127.0.0.1:{self.port}"

    def start(self, timeout_s: float = 20.0) -> str:
        """Start the server and wait until it answers; return its URL."""
        self.folder.mkdir(parents=True, exist_ok=True)
        log = (self.folder / "redis.log").open("ab")
        self.process = subprocess.Popen(
            [self.executable, "--bind", "127.0.0.1", "--port", str(self.port),
             "--dir", str(self.folder), "--appendonly", "yes", "--save", "60 1",
             "--protected-mode", "yes", "--daemonize", "no"],
            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        log.close()
        try:
            check_redis(self.url, timeout_s=timeout_s)
        except QueueServerError:
            self.stop()
            raise
        return self.url

    def stop(self, timeout_s: float = 10.0) -> None:
        """SIGTERM (Redis saves its data), then SIGKILL after ``timeout_s``."""
        proc, self.process = self.process, None
        if proc is None or proc.poll() is not None:
            return
        proc.terminate()
        try:
            proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)


class QueueServer:
    """bluesky-queueserver's RE Manager running :mod:`lltolab.queue.startup`.

    Parameters
    ----------
    sim : bool
        The simulated lab (True) or the real instruments of ``config``.
    config : path, optional
        TOML configuration (:func:`lltolab.session.example_config`).
    catalog : str, optional
        Catalog folder or tiled URI for the worker's session.
    api_key : str, optional
        API key of a tiled server catalog.
    redis : str, optional
        ``redis://HOST:PORT`` of a running Redis; default: start one on 127.0.0.1 that keeps
        its data in ``state_dir/redis``.
    control_port, info_port : int
        ZMQ ports on 127.0.0.1 (0: any free port).
    state_dir : path, optional
        Folder for the manager's log and the own Redis (default: next to the catalog).
    env : dict, optional
        Extra environment variables for the manager and its worker.
    """

    def __init__(
        self, *, sim: bool, config: str | None = None, catalog: str | None = None,
        api_key: str | None = None, redis: str | None = None,
        control_port: int = DEFAULT_CONTROL_PORT, info_port: int = DEFAULT_INFO_PORT,
        state_dir: str | os.PathLike[str] | None = None, env: dict[str, str] | None = None,
    ) -> None:
        if not sim and config is None:
            raise ValueError("give sim=True or a configuration file (config=...)")
        if config is not None:
            if not Path(config).expanduser().is_file():
                raise ValueError(f"configuration file {config!r} does not exist")
            config = str(Path(config).expanduser().resolve())
        if redis is not None:
            _split_redis(redis)
        if catalog is not None and not is_server_uri(str(catalog)):
            catalog = str(Path(catalog).expanduser().resolve())  # the worker's cwd may differ
        self.sim, self.config, self.catalog, self.api_key = sim, config, catalog, api_key
        self.redis = redis
        self.control_port = _check_port("zmq control port", control_port)
        self.info_port = _check_port("zmq info port", info_port)
        if self.info_port == self.control_port:
            raise ValueError(f"the ZMQ control and info ports must differ, both {control_port}")
        self.state_dir = Path(state_dir) if state_dir is not None else _state_dir(catalog,
                                                                                  config)
        self.env = dict(env or {})
        self.process: subprocess.Popen[bytes] | None = None
        self._redis_server: RedisServer | None = None

    @property
    def zmq_control_addr(self) -> str:
        """``tcp://127.0.0.1:N``."""
        return f"tcp://127.0.0.1:{self.control_port}"

    @property
    def zmq_info_addr(self) -> str:
        """``tcp://127.0.0.1:M``."""
        return f"tcp://127.0.0.1:{self.info_port}"

    @property
    def log_path(self) -> Path:
        """The RE Manager's output (and its worker's)."""
        return self.state_dir / "re-manager.log"

    def addresses(self) -> dict[str, str]:
        """``{"zmq_control_addr": ..., "zmq_info_addr": ...}``."""
        return {"zmq_control_addr": self.zmq_control_addr, "zmq_info_addr": self.zmq_info_addr}

    def command(self, redis_url: str) -> list[str]:
        """The ``start-re-manager`` command line."""
        host, port, db = _split_redis(redis_url)
        redis_addr = f"{host}:{port}" + (f"/{db}" if db else "")
        return [
            sys.executable, "-c",
            "import sys; from bluesky_queueserver.manager.start_manager import start_manager; "
            "sys.exit(start_manager())",
            "--startup-module", "lltolab.queue.startup",
            "--existing-plans-devices", str(shipped_file(EXISTING_PLANS_AND_DEVICES)),
            "--update-existing-plans-devices", "NEVER",
            "--user-group-permissions", str(shipped_file(USER_GROUP_PERMISSIONS)),
            "--redis-addr", redis_addr,
            "--zmq-control-addr", self.zmq_control_addr,
            "--zmq-info-addr", self.zmq_info_addr,
            "--zmq-publish-console", "ON",
            "--keep-re",
        ]

    def start(
        self, timeout_s: float = 120.0, cancel: threading.Event | None = None,
    ) -> dict[str, str]:
        """Start Redis (unless given) and the manager; wait until it answers; addresses.

        Setting ``cancel`` (e.g. from a signal handler) ends the wait with QueueServerError.
        """
        if self.redis is None:
            self._redis_server = RedisServer(self.state_dir / "redis")
            redis_url = self._redis_server.start()
        else:
            check_redis(self.redis)
            redis_url = self.redis
        env = {**os.environ, **queue_env(sim=self.sim, config=self.config,
                                         catalog=self.catalog, api_key=self.api_key),
               **self.env}
        self.state_dir.mkdir(parents=True, exist_ok=True)
        log = self.log_path.open("ab")
        try:
            self.process = subprocess.Popen(self.command(redis_url), stdout=log,
                                            stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                            env=env, start_new_session=True)
        finally:
            log.close()
        try:
            self._wait_ready(timeout_s, cancel or threading.Event())
        except BaseException:
            self.stop()
            raise
        return self.addresses()

    def _api(self, timeout_s: float = 5.0) -> Any:
        from bluesky_queueserver_api.zmq import REManagerAPI  # noqa: PLC0415

        return REManagerAPI(zmq_control_addr=self.zmq_control_addr,
                            zmq_info_addr=self.zmq_info_addr, timeout_recv=timeout_s,
                            timeout_send=timeout_s)

    def _wait_ready(self, timeout_s: float, cancel: threading.Event) -> None:
        deadline = time.monotonic() + timeout_s
        api = self._api(timeout_s=1.0)
        try:
            while True:
                if self.process is None or self.process.poll() is not None:
                    raise QueueServerError(
                        f"the RE Manager exited at start (code "
                        f"{None if self.process is None else self.process.returncode}); "
                        f"see {self.log_path}")
                try:
                    status = api.status()
                    if status.get("manager_state") in ("idle", "executing_queue", "paused",
                                                       "creating_environment"):
                        return
                except Exception:  # noqa: BLE001 - not listening yet
                    pass
                if time.monotonic() > deadline:
                    raise QueueServerError(
                        f"the RE Manager did not answer on {self.zmq_control_addr} within "
                        f"{timeout_s} s; see {self.log_path}")
                if cancel.wait(0.2):
                    raise QueueServerError("start of the RE Manager cancelled")
        finally:
            api.close()

    def stop(self, timeout_s: float = 60.0) -> None:
        """Abort a running plan, stop the manager (closing its worker), stop the own Redis.

        A plan in progress is paused at once and aborted, so its run ends with a stop document
        (exit status ``abort``) and everything taken so far is in the catalog. Then the
        manager gets ``manager_stop``; if it is still alive after ``timeout_s`` it gets
        SIGTERM, then SIGKILL.
        """
        proc = self.process
        if proc is not None and proc.poll() is None:
            api = self._api(timeout_s=5.0)
            try:
                self._abort_running_plan(api, timeout_s)
                api.send_request(method="manager_stop", params={"option": "safe_off"})
            except Exception:  # noqa: BLE001 - fall back to signals
                pass
            finally:
                api.close()
            try:
                proc.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                _signal_group(proc, signal.SIGTERM)
                try:
                    proc.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    _signal_group(proc, signal.SIGKILL)
                    proc.wait(timeout=10)
        self.process = None
        if self._redis_server is not None:
            self._redis_server.stop()
            self._redis_server = None

    @staticmethod
    def _abort_running_plan(api: Any, timeout_s: float) -> None:
        state = api.status().get("manager_state")
        if state == "executing_queue":
            api.re_pause(option="immediate")
            api.wait_for_idle_or_paused(timeout=timeout_s)
            state = api.status().get("manager_state")
        if state == "paused":
            api.re_abort()
            api.wait_for_idle(timeout=timeout_s)

    def __enter__(self) -> "QueueServer":
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _signal_group(proc: subprocess.Popen[bytes], sig: int) -> None:
    """Signal the manager and its worker (own process group)."""
    try:
        os.killpg(proc.pid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def _state_dir(catalog: str | None, config: str | None) -> Path:
    """The manager's state: ``queue`` in the session state folder of the catalog target."""
    from lltolab.catalog import resolve_target  # noqa: PLC0415
    from lltolab.config import read_config_tables  # noqa: PLC0415

    cat_cfg = read_config_tables(config).get("catalog", {}) if config else {}
    target = resolve_target(catalog or cat_cfg.get("uri") or cat_cfg.get("path") or None)
    return target.state_dir / "queue"


def addresses_json(server: QueueServer) -> str:
    """The first stdout line of ``lltolab queue --json``."""
    return json.dumps(server.addresses())
