"""The ``lltolab`` command line."""

from __future__ import annotations

import argparse
import os

from lltolab._cli_errors import OneLineArgumentParser, run_guarded

from ._catalog import analyze_command, replay_command, runs_command, server_command
from ._demo import DEMO_QUANTITIES, demo_command, demo_extracted, demo_report
from ._shell import shell_command
from ._sim import sim_serve_command

__all__ = ["BLAS_THREADS", "DEMO_QUANTITIES", "build_parser", "console_main", "demo_extracted",
           "demo_report", "main"]


def build_parser() -> argparse.ArgumentParser:
    """Return the argument parser of the ``lltolab`` command."""
    parser = OneLineArgumentParser(prog="lltolab", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    demo = sub.add_parser("demo", help="run the full simulated workflow")
    demo.add_argument("--catalog", default=None, help="catalog folder or tiled server URI")
    demo.add_argument("--api-key", default=None, help="API key of a tiled server "
                      "(default $TILED_API_KEY)")
    demo.add_argument("--seed", type=int, default=0, help="random seed of the virtual sample")
    demo.add_argument("--json", action="store_true", help="print one JSON object")
    demo.set_defaults(func=demo_command)

    runs = sub.add_parser("runs", help="list the newest runs of a catalog")
    runs.add_argument("--catalog", default=None, help="catalog folder or tiled server URI")
    runs.add_argument("--api-key", default=None)
    runs.add_argument("-n", type=int, default=20, help="how many runs (default 20)")
    runs.set_defaults(func=runs_command)

    rep = sub.add_parser("replay", help="replay a stored run's documents to a callback")
    rep.add_argument("run", help="uid (prefix), scan_id, or -1 for the newest")
    rep.add_argument("--callback", nargs="+", default=["table"], metavar="KIND",
                     help="table: the BEC's text table (default); bec: table and plots; "
                     "jsonl FILE: the documents as [name, doc] JSON lines ('-': stdout)")
    rep.add_argument("--catalog", default=None)
    rep.add_argument("--api-key", default=None)
    rep.set_defaults(func=replay_command)

    ana = sub.add_parser("analyze", help="analyse image and line-profile runs")
    ana.add_argument("runs", nargs="+", help="uids (prefixes) or scan_ids")
    ana.add_argument("--catalog", default=None)
    ana.add_argument("--api-key", default=None)
    ana.add_argument("--json", action="store_true", help="print the results as JSON")
    ana.add_argument("--figures", default=None, help="folder for PNG figures")
    ana.add_argument("--micrograph", default=None,
                     help=".npy grain-boundary map of the imaged area")
    ana.add_argument("--fit-x0", action="store_true",
                     help="fit a surface offset (meniscus) in the erfc fit")
    ana.set_defaults(func=analyze_command)

    srv = sub.add_parser("server", help="serve a catalog with tiled's server (API key "
                         "always required)")
    srv.add_argument("--catalog", required=True, help="catalog folder or postgresql:// URI")
    srv.add_argument("--tables", default=None,
                     help="tabular data: folder or postgresql:// URI (default: the catalog's)")
    srv.add_argument("--data", default=None, help="folder for arrays written by tiled")
    srv.add_argument("--exports", default=None,
                     help="folder of SIMS exports and assets the server reads")
    srv.add_argument("--host", default="127.0.0.1", help="interface (default 127.0.0.1)")
    srv.add_argument("--port", type=int, default=8000, help="TCP port (0: a free one)")
    srv.add_argument("--api-key", default=None, help="API key (default: generated)")
    srv.add_argument("--json", action="store_true",
                     help='print {"uri": ..., "api_key": ...} as the first stdout line')
    srv.set_defaults(func=server_command)

    sh = sub.add_parser("shell", help="IPython with a session loaded")
    sh.add_argument("--sim", action="store_true", help="the virtual lab (else: --config)")
    sh.add_argument("--config", default=None, help="TOML configuration of the instruments")
    sh.add_argument("--catalog", default=None)
    sh.add_argument("--api-key", default=None)
    sh.add_argument("--sample-id", default=None)
    sh.add_argument("--plots", action="store_true", help="live plots of the BestEffortCallback")
    sh.set_defaults(func=shell_command)

    from lltolab.queue._cli import register as register_queue  # noqa: PLC0415

    register_queue(sub)  # lltolab queue, lltolab confirm

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
    serve.set_defaults(func=sim_serve_command)
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
    """Entry point of the ``lltolab`` command.

    Bad input gets one line on stderr and exit status 2 before anything runs or is written;
    an internal error one line and status 1 (the traceback with ``--debug``).
    """
    return run_guarded(build_parser, argv)


#: OpenBLAS threads of a command, unless the environment sets ``OPENBLAS_NUM_THREADS``
BLAS_THREADS = "1"


def console_main() -> None:
    """The ``lltolab`` console script and ``python -m lltolab.cli``: :func:`main`, then an exit
    that skips the interpreter's teardown (:func:`lltolab._prompt_exit.exit_promptly`).

    The commands run their parallel work in threads of their own (the twin, the catalog, the
    analyses, the inversion's workers), mostly in sparse solvers; OpenBLAS's own threads would
    only spin between its calls (2 s of CPU in ``lltolab demo``, for nothing). So the process
    starts with :data:`BLAS_THREADS` OpenBLAS thread unless ``OPENBLAS_NUM_THREADS`` is set.
    Several of those threads parse Python source (tiled's imports, ``inspect``), so on the
    CPython versions where that is not thread-safe ``ast.parse`` holds one lock
    (:func:`lltolab._ast_lock.serialize_ast_parse`).
    """
    from lltolab._ast_lock import serialize_ast_parse  # noqa: PLC0415
    from lltolab._prompt_exit import exit_promptly, exit_status  # noqa: PLC0415

    os.environ.setdefault("OPENBLAS_NUM_THREADS", BLAS_THREADS)  # read when numpy loads it
    serialize_ast_parse()
    try:
        status = main()
    except SystemExit as exc:
        status = exit_status(exc.code)
    exit_promptly(status)
