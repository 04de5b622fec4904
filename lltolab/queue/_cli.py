"""The ``lltolab queue`` and ``lltolab confirm`` commands."""

import argparse
import json
import signal
import sys
import threading
from pathlib import Path
from typing import Any

__all__ = ["register", "operator_folder"]


def _port(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a port number: {text!r}") from None
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"port must lie in [0, 65535], got {value}")
    return value


def register(sub: Any) -> None:
    """Add the ``queue`` and ``confirm`` subcommands to the ``lltolab`` parser."""
    from ._manager import DEFAULT_CONTROL_PORT, DEFAULT_INFO_PORT  # noqa: PLC0415

    q = sub.add_parser("queue", help="run bluesky-queueserver's RE Manager with lltolab plans")
    mode = q.add_mutually_exclusive_group(required=True)
    mode.add_argument("--sim", action="store_true", help="the virtual lab")
    mode.add_argument("--config", default=None, help="TOML configuration of the instruments")
    q.add_argument("--catalog", default=None, help="catalog folder or tiled server URI")
    q.add_argument("--api-key", default=None, help="API key of a tiled server catalog")
    q.add_argument("--redis", default=None, metavar="redis://HOST:PORT",
                   help="a running Redis (default: start redis-server on 127.0.0.1)")
    q.add_argument("--zmq-control-port", type=_port, default=DEFAULT_CONTROL_PORT,
                   help=f"ZMQ control port on 127.0.0.1 (default {DEFAULT_CONTROL_PORT}; "
                   "0: any free port)")
    q.add_argument("--zmq-info-port", type=_port, default=DEFAULT_INFO_PORT,
                   help=f"ZMQ info (console) port (default {DEFAULT_INFO_PORT}; 0: any free)")
    q.add_argument("--json", action="store_true",
                   help="print the ZMQ addresses as one JSON object on the first line")
    q.set_defaults(func=_queue)

    c = sub.add_parser("confirm", help="list or answer pending operator steps")
    c.add_argument("request_id", nargs="?", default=None, help="id of the step to answer")
    what = c.add_mutually_exclusive_group(required=True)
    what.add_argument("--list", action="store_true", help="list the pending steps")
    what.add_argument("--yes", action="store_true", help="the step is done")
    what.add_argument("--no", action="store_true", help="refuse the step (the plan fails)")
    c.add_argument("--note", default="", help="free text stored with the answer")
    c.add_argument("--folder", default=None, help="the confirmation folder")
    c.add_argument("--config", default=None, help="TOML configuration ([operator] folder)")
    c.add_argument("--catalog", default=None,
                   help="catalog folder (default folder: <catalog>/session/operator)")
    c.add_argument("--json", action="store_true", help="--list as JSON")
    c.set_defaults(func=_confirm)


def _queue(args: argparse.Namespace) -> int:
    from ._manager import QueueServer, QueueServerError  # noqa: PLC0415

    server = QueueServer(sim=args.sim, config=args.config, catalog=args.catalog,
                         api_key=args.api_key, redis=args.redis,
                         control_port=args.zmq_control_port, info_port=args.zmq_info_port)
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    try:
        addresses = server.start(cancel=stop)
    except QueueServerError as exc:
        print(f"lltolab queue: {exc}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(addresses), flush=True)
    else:
        print("lltolab queue: bluesky-queueserver RE Manager running (Ctrl-C to stop)")
        for key, value in addresses.items():
            print(f"  {key:17s} {value}")
        print(f"  log               {server.log_path}")
        print(f"  e.g. qserver --zmq-control-addr {addresses['zmq_control_addr']} "
              "environment open", flush=True)
    code = 0
    while not stop.wait(0.5):
        proc = server.process
        if proc is None or proc.poll() is not None:
            print(f"lltolab queue: the RE Manager exited; see {server.log_path}",
                  file=sys.stderr)
            code = 1
            break
    server.stop()
    return code


def operator_folder(folder: str | None, config: str | None, catalog: str | None) -> Path:
    """Where operator steps are posted: ``folder``, the config's, or the catalog's."""
    from lltolab.catalog import resolve_target  # noqa: PLC0415
    from lltolab.config import read_config_tables  # noqa: PLC0415

    if folder:
        return Path(folder).expanduser()
    cfg = read_config_tables(config) if config else {}
    op = cfg.get("operator", {})
    if op.get("folder"):
        return Path(op["folder"]).expanduser()
    cat = cfg.get("catalog", {})
    # the session's default: <state folder of the catalog target>/operator
    return resolve_target(catalog or cat.get("uri") or cat.get("path") or None).state_dir / \
        "operator"


def _confirm(args: argparse.Namespace) -> int:
    from lltolab.devices import FileConfirmation, check_request_id  # noqa: PLC0415

    folder = operator_folder(args.folder, args.config, args.catalog)
    if args.list:
        if args.request_id is not None:
            raise ValueError("--list takes no request id")
        pending = FileConfirmation(folder).pending() if folder.is_dir() else []
        if args.json:
            print(json.dumps([dict(vars(r)) for r in pending]))
        elif not pending:
            print(f"no pending operator steps in {folder}")
        else:
            import time  # noqa: PLC0415

            for r in pending:
                age = time.time() - r.created
                print(f"{r.request_id}  {r.action:6s} {age:7.0f} s ago  {r.message}")
        return 0
    if args.request_id is None:
        raise ValueError("give the id of the step to answer (see lltolab confirm --list)")
    check_request_id(args.request_id)
    if not folder.is_dir():
        raise ValueError(f"no operator folder {folder}")
    FileConfirmation(folder).answer(args.request_id, confirmed=bool(args.yes), note=args.note,
                                    require_pending=True)
    print(f"operator step {args.request_id}: {'done' if args.yes else 'refused'}")
    return 0
