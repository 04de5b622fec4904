"""The ``lltolab`` command line."""

from __future__ import annotations

import argparse
import sys

__all__ = ["main"]


def _demo(args: argparse.Namespace) -> int:
    print(
        "lltolab demo: the simulated exchange -> quench -> image -> anneal -> re-image workflow\n"
        "needs the instrument, SIMS-export and plans issues, which are not built yet.\n"
        "What exists today: the diffusion twin (lltolab.diffusion) and its benchmark\n"
        "(python benchmarks/twin.py)."
    )
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
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``lltolab`` command."""
    args = build_parser().parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
