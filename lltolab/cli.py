"""The ``lltolab`` command line."""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading

__all__ = ["main"]


def _demo(args: argparse.Namespace) -> int:
    print(
        "lltolab demo: the simulated exchange -> quench -> image -> anneal -> re-image workflow\n"
        "needs the instrument, SIMS-export and plans issues, which are not built yet.\n"
        "What exists today: the diffusion twin (lltolab.diffusion) and its benchmark\n"
        "(python benchmarks/twin.py)."
    )
    return 0


def _sim_serve(args: argparse.Namespace) -> int:
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


def build_parser() -> argparse.ArgumentParser:
    """Return the argument parser of the ``lltolab`` command."""
    parser = argparse.ArgumentParser(prog="lltolab", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    demo = sub.add_parser("demo", help="run the full simulated workflow")
    demo.add_argument("--catalog", default=None, help="catalog folder")
    demo.add_argument("--seed", type=int, default=0, help="random seed of the virtual sample")
    demo.add_argument("--json", action="store_true", help="print one JSON object")
    demo.set_defaults(func=_demo)

    sim = sub.add_parser("sim", help="simulated instruments").add_subparsers(
        dest="sim_command", required=True)
    serve = sim.add_parser("serve", help="serve the simulated instruments and the virtual lab")
    serve.add_argument("--json", action="store_true",
                       help="print the resource strings as one JSON object on the first line")
    serve.add_argument("--time-scale", type=_positive_float, default=60.0,
                       help="lab seconds per wall second for instrument dynamics (default 60)")
    serve.add_argument("--seed", type=int, default=0, help="seed of the virtual sample")
    serve.add_argument("--exports", default=None,
                       help="export folder of the simulated SurfaceLab (default: temporary)")
    serve.set_defaults(func=_sim_serve)
    return parser


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"must be a finite number > 0, got {text!r}")
    return value


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``lltolab`` command."""
    args = build_parser().parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
