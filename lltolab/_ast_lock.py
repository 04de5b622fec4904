"""One lock around :func:`ast.parse` where CPython's AST conversion is not thread-safe.

CPython 3.11.0-3.11.7 and 3.12.0-3.12.1 count the AST constructor's recursion depth in state
that all threads share. When a garbage collection inside one thread's ``ast.parse`` lets a
second thread parse, one of them fails with ``SystemError: AST constructor recursion depth
mismatch`` (CPython gh-106905, fixed in 3.11.8 and 3.12.2).

A session parses on several threads at once: the catalog writer imports tiled's server, whose
GraphQL types evaluate string annotations with ``ast.parse``; the queue server's worker reads
the plans' default values with ``ast.literal_eval``; ``inspect.signature`` of a builtin and
3.11's tracebacks parse too. On the affected versions a run could then fail to reach the
catalog. :func:`serialize_ast_parse` makes every call of ``ast.parse`` (``ast.literal_eval``
and ``inspect`` call it through the module) hold one process-wide re-entrant lock.
"""

from __future__ import annotations

import ast
import functools
import sys
import threading
from collections.abc import Callable
from typing import Any

__all__ = ["AST_PARSE_RACES", "serialize_ast_parse"]

AST_PARSE_RACES: bool = (
    (3, 11, 0) <= sys.version_info[:3] < (3, 11, 8)
    or (3, 12, 0) <= sys.version_info[:3] < (3, 12, 2)
)
"""True on the CPython versions whose ``ast.parse`` is not safe on two threads at once."""

_LOCK = threading.RLock()
_INSTALL = threading.Lock()


def _locked(parse: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(parse)
    def locked_parse(*args: Any, **kwargs: Any) -> Any:
        with _LOCK:
            return parse(*args, **kwargs)

    locked_parse.__lltolab_locked__ = True  # type: ignore[attr-defined]
    return locked_parse


def serialize_ast_parse(*, force: bool = False) -> bool:
    """Make ``ast.parse`` hold one process-wide lock, on the versions that need it.

    Idempotent and thread-safe; a no-op on Python versions without the race.

    Parameters
    ----------
    force : bool
        Install the lock on any version (for tests).

    Returns
    -------
    bool
        True when ``ast.parse`` now holds the lock.
    """
    if not (AST_PARSE_RACES or force):
        return getattr(ast.parse, "__lltolab_locked__", False)
    with _INSTALL:
        if not getattr(ast.parse, "__lltolab_locked__", False):
            ast.parse = _locked(ast.parse)
    return True
