"""``lltolab sim serve``: the simulated instruments for another process."""

from __future__ import annotations

import argparse
import json
import signal
import threading

__all__ = ["sim_serve_command"]


def sim_serve_command(args: argparse.Namespace) -> int:
    from lltolab.sim_devices import VirtualLab  # noqa: PLC0415 - heavy import, CLI only

    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    with VirtualLab(seed=args.seed, time_scale=args.time_scale,
                    export_folder=args.exports) as lab:
        resources = lab.resources()
        if args.json:
            print(json.dumps(resources), flush=True)
        else:
            print("lltolab simulated instruments (127.0.0.1), Ctrl-C to stop:")
            for key, value in resources.items():
                print(f"  {key:10s} {value}")
            print("  e.g. pyvisa.ResourceManager('@py').open_resource(cryostage, "
                  "read_termination='\\r\\n')", flush=True)
        while not stop.wait(0.2):
            pass
    return 0
