"""``lltolab shell``: IPython with a session loaded."""

from __future__ import annotations

import argparse
import sys
import threading

__all__ = ["shell_command"]


def shell_command(args: argparse.Namespace) -> int:
    """IPython at once; the session is built meanwhile and is ready for the first command."""
    from lltolab.session import start, use_shell_session  # noqa: PLC0415

    built: dict[str, object] = {}
    done = threading.Event()

    def build() -> None:
        try:
            session = start(args.config, sim=args.sim, catalog=args.catalog,
                            sample_id=args.sample_id, plots=args.plots,
                            api_key=args.api_key)
        except BaseException as exc:  # noqa: BLE001 - reported at the first command
            built["error"] = exc
            done.set()
            return
        built["session"] = session
        use_shell_session(session)  # start() inside the shell returns this session
        done.set()
        try:
            session.catalog.client()  # open the catalog now, in the background
        except Exception as exc:  # noqa: BLE001 - reported when the catalog is used
            print(f"lltolab shell: catalog not open yet: {exc}", file=sys.stderr)

    builder = threading.Thread(target=build, name="lltolab-session", daemon=True)
    builder.start()
    from IPython.terminal.ipapp import TerminalIPythonApp  # noqa: PLC0415

    app = TerminalIPythonApp.instance()
    app.display_banner = False
    app.initialize(argv=[])
    shell = app.shell
    print("lltolab shell: s (the session), RE, db, plans and the devices are ready at your "
          "first command" + (" (building the simulated lab)" if args.sim else ""))
    code = {"value": 0}

    def wait_for_session(*_: object) -> None:
        if "ready" in built:
            return
        done.wait(timeout=600)
        built["ready"] = True
        if "session" not in built:
            print(f"lltolab shell: could not build the session: {built.get('error')}",
                  file=sys.stderr)
            code["value"] = 2
            shell.ask_exit()
            return
        session = built["session"]
        namespace = {"s": session, "session": session, "RE": session.RE,
                     "db": session.catalog, "plans": session.plans, **session.devices}
        if session.lab is not None:
            namespace["lab"] = session.lab
        shell.push(namespace)
        if args.plots:
            try:
                shell.enable_matplotlib()
            except Exception as exc:  # noqa: BLE001 - no GUI: plots stay off screen
                print(f"lltolab shell: no interactive plots: {exc}", file=sys.stderr)

    shell.events.register("pre_run_cell", wait_for_session)
    try:
        app.start()
    finally:
        use_shell_session(None)
        done.wait(timeout=600)
        session = built.get("session")
        if session is not None:
            session.close()
    return code["value"]
