"""Ending the ``lltolab`` process as soon as a command's work is done.

A command that used the catalog, the session or the analysis has imported about 4000 modules
(tiled's server stack, bluesky, ophyd, scipy, matplotlib). Once the command has returned, its
work is done and stored: runs are flushed to the catalog, files are closed, background
analyses have been waited for. What is left is the interpreter's teardown, which frees every
module and object one by one: 1-1.5 s on two cores, longer than many commands.

:func:`exit_promptly` does what the exit would do that matters (shut down the embedded
catalogs, as tiled's own exit handler does; run the ``atexit`` handlers, e.g. IPython's, which
saves the shell's history; flush logging and the standard streams) and ends the process with
``os._exit``. It is for the console script only: a library call never ends the process.
"""

from __future__ import annotations

import atexit
import logging
import os
import sys
from typing import NoReturn

__all__ = ["exit_promptly", "exit_status"]


def exit_status(code: object) -> int:
    """The process status of a ``SystemExit`` code, as ``sys.exit`` would set it.

    None is 0, an integer is itself (masked to 0-255 by the OS), anything else is printed to
    stderr and gives 1.
    """
    if code is None:
        return 0
    if isinstance(code, int) and not isinstance(code, bool):
        return code
    print(code, file=sys.stderr)
    return 1


def exit_promptly(status: int) -> NoReturn:
    """Close the embedded catalogs, run the ``atexit`` handlers, flush logging and stdio, and
    end the process with ``status``.

    Call only when the command's work is done: threads still running are stopped with the
    process.
    """
    try:
        catalog = sys.modules.get("lltolab.catalog")
        if catalog is not None:  # an embedded catalog can only be open if this was imported
            catalog.close_catalogs()
    except Exception:  # noqa: BLE001 - the data is committed; report and still exit
        logging.getLogger("lltolab").exception("closing the embedded catalogs at exit failed")
        status = status or 1
    # CPython's own exit runs these handlers (the function is CPython's, without a public
    # name); where it is missing, exit the ordinary way.
    run_exit_handlers = getattr(atexit, "_run_exitfuncs", None)
    if run_exit_handlers is None:
        sys.exit(status)
    run_exit_handlers()
    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # closed or broken pipe: nothing more can be written
            pass
    os._exit(status)
