"""Bad input at the ``lltolab`` command line: early checks and one-line errors.

Every subcommand answers bad input (an unknown run, a missing file, a catalog path that is a
file, a corrupt catalog database, an unreachable server, a folder it cannot write) with one
line on stderr, ``lltolab <command>: <what is wrong>``, and exit status 2, before a plan starts
or a file is written. Anything else that goes wrong is an internal error: one line and exit
status 1, the traceback only with ``--debug`` (anywhere on the command line) or
``LLTOLAB_DEBUG=1``. Ctrl-C ends with exit status 130.

Run references (``lltolab replay RUN``, ``lltolab analyze RUN...``):

- all digits, ``N >= 1``: the run with scan_id ``N`` (the newest such run if several); when no
  run has that scan_id and the digits are at least 5, the run whose uid starts with them (a
  uid prefix can be all digits);
- ``0``: an error (scan_ids start at 1; it is not "the first run");
- ``-N``: the N-th newest run (``-1`` the newest), as ``catalog[-N]`` in tiled;
- otherwise a run uid or a unique prefix of it (at least 5 hexadecimal digits or ``-``).
"""

from __future__ import annotations

import argparse
import errno
import logging
import math
import os
import re
import sqlite3
import sys
import tempfile
import traceback
import warnings
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, NoReturn

__all__ = [
    "EXIT_BAD_INPUT",
    "EXIT_INTERNAL",
    "EXIT_INTERRUPTED",
    "CliError",
    "OneLineArgumentParser",
    "check_catalog",
    "check_config_file",
    "check_micrograph",
    "check_writable_folder",
    "describe_error",
    "parse_run_ref",
    "quiet_libraries",
    "resolve_run",
    "run_guarded",
    "split_debug",
    "validate_args",
]

#: exit status for bad input or an unusable environment (argparse uses 2 as well)
EXIT_BAD_INPUT = 2
#: exit status for an internal error (a bug: the traceback is shown with ``--debug``)
EXIT_INTERNAL = 1
#: exit status after Ctrl-C (128 + SIGINT)
EXIT_INTERRUPTED = 130

#: largest scan_id accepted (SQLite integers are 64-bit signed)
MAX_SCAN_ID = 2**63 - 1
#: most runs ``lltolab runs -n`` lists
MAX_RUNS_LISTED = 100_000
#: seeds are accepted in 0 .. MAX_SEED (numpy's SeedSequence takes non-negative integers)
MAX_SEED = 2**64 - 1
#: longest wait for a tiled server's first answer (s)
_PROBE_TIMEOUT_S = 10.0
_CATALOG_DB = "catalog.db"
_UID_PREFIX = re.compile(r"[0-9A-Fa-f-]{5,36}")
_URI_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")


class CliError(Exception):
    """Bad input or an unusable environment: one line for the user, exit status 2.

    Parameters
    ----------
    message
        What is wrong, naming the value.
    prog
        The command it concerns (``lltolab replay``), when known where it is raised.
    """

    def __init__(self, message: str, prog: str | None = None) -> None:
        super().__init__(message)
        self.prog = prog


class OneLineArgumentParser(argparse.ArgumentParser):
    """An ``ArgumentParser`` whose usage errors raise :class:`CliError` (one line, no usage
    block) instead of printing and exiting; its subparsers are of the same class."""

    def error(self, message: str) -> NoReturn:
        """Raise :class:`CliError` naming the command's help."""
        raise CliError(f"{message} (see '{self.prog} --help')", prog=self.prog)


# --------------------------------------------------------------------------- small checks


def _path_text(value: object, what: str) -> str:
    text = str(value)
    if not text.strip():
        raise CliError(f"{what} is empty")
    if "\x00" in text:
        raise CliError(f"{what} {text!r} contains a NUL character")
    return text


def _expand(text: str, what: str) -> Path:
    """``~`` and ``~user`` expanded; an unknown user is bad input."""
    try:
        return Path(text).expanduser()
    except RuntimeError as exc:  # "Could not determine home directory"
        raise CliError(f"{what} {text!r}: cannot expand '~' ({exc})") from None


def _nearest_existing(path: Path) -> Path:
    for candidate in (path, *path.parents):
        try:
            if candidate.exists():
                return candidate
        except OSError:
            continue
    return Path(path.anchor or ".")


def _probe_write(folder: Path) -> None:
    """Really create (and at once drop) an unnamed file in ``folder``; raise OSError if not."""
    with tempfile.TemporaryFile(dir=folder):
        pass


def _check_name_lengths(path: Path, base: Path, what: str, text: str) -> None:
    """The parts of ``path`` still to be created below ``base`` fit the file system."""
    try:
        name_max = os.pathconf(base, "PC_NAME_MAX")
    except (AttributeError, OSError, ValueError):  # no pathconf (Windows) or no limit known
        name_max = 255
    for part in path.parts[len(base.parts):]:
        if len(os.fsencode(part)) > name_max:
            raise CliError(f"{what} {text}: the name {part[:40]!r}... is longer than the "
                           f"{name_max} bytes the file system allows")


def check_writable_folder(value: object, what: str) -> Path:
    """A folder that exists and can be written, or that can be created.

    Nothing is created: for a folder still to be made, its nearest existing ancestor must be a
    writable folder. The check uses ``os.access`` and then a real (unnamed, at once removed)
    file, so it holds for every user, root included, and on read-only file systems.

    Returns
    -------
    pathlib.Path
        The path, ``~`` expanded.

    Raises
    ------
    CliError
        Naming the path and why it cannot be used.
    """
    text = _path_text(value, what)
    path = _expand(text, what)
    try:
        base = _nearest_existing(path)
        if not base.is_dir():
            kind = "is a file" if base == path else f"lies below the file {base}"
            raise CliError(f"{what} {text} {kind}, not a folder")
        _check_name_lengths(path, base, what, text)
        if not os.access(base, os.W_OK | os.X_OK):
            raise CliError(f"{what} {text} is not writable ({base}: permission denied)")
        _probe_write(base)
    except CliError:
        raise
    except OSError as exc:
        raise CliError(f"{what} {text} cannot be written: {_os_reason(exc)}") from exc
    return path


def check_catalog(value: object, *, create: bool, command: str,
                  has_api_key: bool = True) -> str:
    """Check a ``--catalog`` value before the catalog is opened.

    Parameters
    ----------
    value
        A catalog folder, an ``http(s)://`` tiled server address, or None (the default folder).
    create
        True for commands that create the catalog when absent (``demo``, ``shell``): the
        folder must be writable or creatable. False for the read-only tools (``runs``,
        ``replay``, ``analyze``): the folder must hold a catalog database (one they cannot
        open for want of permissions is reported when they open it).
    command
        The subcommand, for the messages.
    has_api_key
        Whether the command takes ``--api-key``; a ``demo`` without it stores runs in a folder
        only (no server address).

    Returns
    -------
    str
        The folder (``~`` expanded) or the URI.
    """
    if value is None:
        from lltolab.catalog import default_catalog_path  # noqa: PLC0415 - CLI only

        value = default_catalog_path()
        if command == "demo":
            value = Path(value).parent / "demo"
    text = _path_text(value, "catalog")
    from lltolab.catalog import is_server_uri  # noqa: PLC0415 - the one test of an address

    if is_server_uri(text):
        if command == "demo" and not has_api_key:
            raise CliError(f"demo needs a catalog folder, not a server address: {text}")
        _check_uri(text)
        return text
    if _URI_SCHEME.match(text):
        raise CliError(f"catalog {text!r} is neither a folder nor an http(s):// address")
    folder = _expand(text, "catalog")
    db = folder / _CATALOG_DB
    try:
        if folder.exists() and not folder.is_dir():
            raise CliError(f"catalog path {text} is a file, not a catalog folder")
        has_db = db.exists()
    except OSError as exc:
        raise CliError(f"catalog path {text} cannot be used: {_os_reason(exc)}") from exc
    if not create and not has_db:
        raise CliError(f"no catalog in {text} (no {_CATALOG_DB}; runs are stored there by "
                       "'lltolab demo --catalog FOLDER' or a session)")
    if has_db:
        _check_sqlite(db)
    if create:
        check_writable_folder(folder, "catalog folder")
    return str(folder)


def _check_uri(text: str) -> None:
    """A well-formed http(s) address of a server that answers (within ``_PROBE_TIMEOUT_S``)."""
    import httpx  # noqa: PLC0415 - CLI only

    try:
        url = httpx.URL(text)
    except (httpx.InvalidURL, ValueError, TypeError) as exc:
        raise CliError(f"catalog address {text!r} is not a valid URL: {exc}") from exc
    if not url.host:
        raise CliError(f"catalog address {text!r} names no host")
    try:
        httpx.get(url.join("/api/v1/"), timeout=_PROBE_TIMEOUT_S)
    except httpx.TimeoutException as exc:
        raise CliError(f"the tiled server at {text} did not answer within "
                       f"{_PROBE_TIMEOUT_S} s") from exc
    except (httpx.HTTPError, httpx.InvalidURL, ValueError, OSError) as exc:
        raise CliError(f"cannot reach the tiled server at {text}: {exc}") from exc


def _check_sqlite(db: Path) -> None:
    """The catalog database is a readable SQLite file (garbage bytes are caught here)."""
    if not db.is_file():
        raise CliError(f"catalog database {db} is not a file")
    try:
        conn = sqlite3.connect(f"{db.resolve().as_uri()}?mode=ro", uri=True, timeout=5.0)
    except sqlite3.Error as exc:
        raise CliError(f"catalog database {db} cannot be opened: {exc}") from exc
    try:
        conn.execute("PRAGMA schema_version").fetchone()
        conn.execute("SELECT count(*) FROM sqlite_master").fetchone()
    except sqlite3.Error as exc:
        if _is_busy(exc):
            raise CliError(f"catalog database {db} is busy ({exc}): another process holds "
                           "it; try again") from exc
        raise CliError(f"catalog database {db} is unreadable ({exc}): corrupt, or not a "
                       "catalog; restore it from a backup (the run journals in its folder "
                       "can be replayed into a new catalog)") from exc
    finally:
        conn.close()


def _is_busy(exc: BaseException) -> bool:
    text = str(exc).lower()
    return "locked" in text or "busy" in text


def check_micrograph(value: object) -> Path:
    """A ``.npy`` file holding a 2-D numeric (or boolean) grain-boundary map.

    Returns
    -------
    pathlib.Path
        The file, ``~`` expanded.
    """
    import numpy as np  # noqa: PLC0415 - CLI only

    text = _path_text(value, "micrograph")
    path = _expand(text, "micrograph")
    try:
        if not path.exists():
            raise CliError(f"micrograph file {text} does not exist")
        if not path.is_file():
            raise CliError(f"micrograph {text} is not a file")
        arr = np.load(path, allow_pickle=False)
    except CliError:
        raise
    except OSError as exc:
        raise CliError(f"micrograph file {text} cannot be read: {_os_reason(exc)}") from exc
    except (ValueError, EOFError) as exc:
        raise CliError(f"micrograph file {text} is not a .npy array: {exc}") from exc
    if not isinstance(arr, np.ndarray):
        raise CliError(f"micrograph file {text} holds several arrays (.npz); give one .npy")
    if arr.ndim != 2 or 0 in arr.shape:
        raise CliError(f"micrograph {text} must be a 2-D map, got shape {arr.shape}")
    if arr.dtype.kind not in "biuf":
        raise CliError(f"micrograph {text} must be numeric or boolean, got dtype {arr.dtype}")
    return path


def check_config_file(value: object) -> Path:
    """A readable TOML file (its content is checked by the session)."""
    import tomllib  # noqa: PLC0415

    text = _path_text(value, "configuration file")
    path = _expand(text, "configuration file")
    try:
        if not path.is_file():
            raise CliError(f"configuration file {text} "
                           f"{'is not a file' if path.exists() else 'does not exist'}")
        with path.open("rb") as f:
            tomllib.load(f)
    except CliError:
        raise
    except OSError as exc:
        raise CliError(f"configuration file {text} cannot be read: {_os_reason(exc)}") from exc
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise CliError(f"configuration file {text} is not valid TOML: {exc}") from exc
    return path


def _check_seed(seed: object) -> None:
    if not isinstance(seed, int) or not 0 <= seed <= MAX_SEED:
        raise CliError(f"--seed must be an integer in 0..{MAX_SEED}, got {seed!r}")


def _check_count(n: object) -> None:
    if not isinstance(n, int) or not 1 <= n <= MAX_RUNS_LISTED:
        raise CliError(f"-n must be an integer in 1..{MAX_RUNS_LISTED}, got {n!r}")


def _check_time_scale(value: object) -> None:
    if not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
        raise CliError(f"--time-scale must be a finite number > 0, got {value!r}")


# --------------------------------------------------------------------------- runs


def parse_run_ref(text: str) -> int | str:
    """Turn a run reference into a catalog key (see the module docstring).

    Returns
    -------
    int or str
        A scan_id (> 0), a negative index (-1 the newest run), or a uid (prefix).

    Raises
    ------
    CliError
        For ``0``, an empty text, or something that is neither a number nor a uid prefix.
    """
    ref = text.strip()
    if ref.isascii() and ref.lstrip("-").isdigit() and ref.count("-") <= 1 \
            and not ref.endswith("-"):
        number = int(ref)
        if number == 0:
            raise CliError("run 0 does not exist: scan_ids start at 1 (use -1 for the newest "
                           "run, -2 for the one before)")
        if abs(number) > MAX_SCAN_ID:
            raise CliError(f"run {text!r}: a scan_id or index must lie within ±{MAX_SCAN_ID}")
        return number
    if not ref.isascii() or not _UID_PREFIX.fullmatch(ref):
        raise CliError(f"run {text!r} is neither a scan_id (>= 1), a negative index (-1 the "
                       "newest) nor a uid prefix (>= 5 hexadecimal digits)")
    return ref.lower()


def _digit_uid_prefix(text: str) -> str | None:
    """The text as a uid prefix when it is all digits and long enough to be one."""
    ref = text.strip()
    return ref if ref.isascii() and ref.isdigit() and len(ref) >= 5 else None


def resolve_run(catalog: Any, text: str, where: str) -> Any:
    """The run a reference names, or :class:`CliError` naming the reference.

    Parameters
    ----------
    catalog
        An opened catalog of runs.
    text
        The reference as typed.
    where
        The catalog's folder or address, for the message.
    """
    key = parse_run_ref(text)
    try:
        run = catalog[key]
    except KeyError:
        prefix = _digit_uid_prefix(text) if isinstance(key, int) else None
        if prefix is not None:  # no such scan_id: the digits may begin a uid
            try:
                return catalog[prefix]
            except (KeyError, ValueError):
                pass
        kind = ("scan_id" if isinstance(key, int) else "uid")
        what = f"{kind} {text!r}" if prefix is None else f"scan_id or uid prefix {text!r}"
        raise CliError(f"no run with {what} in catalog {where}") from None
    except IndexError:
        raise CliError(f"run {text!r}: the catalog {where} holds only {len(catalog)} "
                       "run(s)") from None
    except ValueError as exc:  # ambiguous or too short uid prefix
        raise CliError(f"run {text!r}: {exc}") from None
    return run


def _run_uid(run: Any, text: str) -> str:
    try:
        return str(run.metadata["start"]["uid"])
    except (KeyError, TypeError) as exc:
        raise CliError(f"run {text!r} has no start document uid: {exc}") from None


# --------------------------------------------------------------------------- per command


def _catalog_of(args: argparse.Namespace, *, create: bool) -> None:
    args.catalog = check_catalog(getattr(args, "catalog", None), create=create,
                                 command=args.command, has_api_key=hasattr(args, "api_key"))


def _open_for_refs(args: argparse.Namespace) -> Any:
    from lltolab.catalog import open_catalog  # noqa: PLC0415 - CLI only

    return open_catalog(args.catalog, api_key=getattr(args, "api_key", None), create=False)


def _validate_demo(args: argparse.Namespace) -> None:
    _check_seed(args.seed)
    _catalog_of(args, create=True)


def _validate_runs(args: argparse.Namespace) -> None:
    _check_count(args.n)
    _catalog_of(args, create=False)


def _quick_uid(args: argparse.Namespace, text: str) -> str | None:
    """The run's uid from the catalog package's fast lookup (no tiled stack), when it has
    one and the lookup succeeds; None sends the reference the precise (slower) way."""
    from lltolab import catalog  # noqa: PLC0415 - CLI only

    quick = getattr(catalog, "quick_uid", None)
    if quick is None:
        return None
    refs: list[int | str] = [parse_run_ref(text)]
    prefix = _digit_uid_prefix(text)
    if prefix is not None:  # no such scan_id: the digits may begin a uid
        refs.append(prefix)
    for ref in refs:
        try:
            return str(quick(args.catalog, ref, api_key=getattr(args, "api_key", None)))
        except Exception:  # noqa: BLE001, PERF203 - resolved again below, precisely
            continue
    return None


def _validate_replay(args: argparse.Namespace) -> None:
    parse_run_ref(args.run)
    _catalog_of(args, create=False)
    uid = _quick_uid(args, args.run)
    if uid is None:
        uid = _run_uid(resolve_run(_open_for_refs(args), args.run, args.catalog), args.run)
    args.run = uid


def _validate_analyze(args: argparse.Namespace) -> None:
    for ref in args.runs:
        parse_run_ref(ref)
    if args.micrograph is not None:
        args.micrograph = str(check_micrograph(args.micrograph))
    if args.figures is not None:
        args.figures = str(check_writable_folder(args.figures, "figures folder"))
    _catalog_of(args, create=False)
    cat = _open_for_refs(args)
    args.runs = [_run_uid(resolve_run(cat, ref, args.catalog), ref) for ref in args.runs]


def _validate_shell(args: argparse.Namespace) -> None:
    if not args.sim and args.config is None:
        raise CliError("give --sim (virtual lab) or --config FILE (instruments)")
    if args.config is not None:
        args.config = str(check_config_file(args.config))
    if getattr(args, "sample_id", None) is not None and not args.sample_id.strip():
        raise CliError("--sample-id is empty")
    if args.catalog is None and args.config is not None:
        args.catalog = _configured_catalog(Path(args.config))
    if args.sim or args.catalog is not None:
        _catalog_of(args, create=True)


def _configured_catalog(config: Path) -> str | None:
    """The ``[catalog]`` ``uri`` or ``path`` of a configuration file, if it names one."""
    import tomllib  # noqa: PLC0415

    with config.open("rb") as f:
        section = tomllib.load(f).get("catalog", {})
    if not isinstance(section, dict):
        raise CliError(f"[catalog] in {config} must be a table, got {section!r}")
    value = section.get("uri") or section.get("path")
    if value is not None and not isinstance(value, str):
        raise CliError(f"[catalog] path/uri in {config} must be a string, got {value!r}")
    return value


def _validate_sim(args: argparse.Namespace) -> None:
    if getattr(args, "sim_command", None) != "serve":
        return
    _check_seed(args.seed)
    _check_time_scale(args.time_scale)
    if args.exports is not None:
        args.exports = str(check_writable_folder(args.exports, "export folder"))


_VALIDATORS: dict[str, Callable[[argparse.Namespace], None]] = {
    "demo": _validate_demo,
    "runs": _validate_runs,
    "replay": _validate_replay,
    "analyze": _validate_analyze,
    "shell": _validate_shell,
    "sim": _validate_sim,
}


def validate_args(args: argparse.Namespace) -> None:
    """Check a parsed command line before the command runs (nothing is written).

    Paths are ``~``-expanded in place and run references of ``replay``/``analyze`` replaced
    by full uids. Commands without a checker here pass unchanged.

    Raises
    ------
    CliError
        For the first bad value.
    """
    check = _VALIDATORS.get(getattr(args, "command", None) or "")
    if check is not None:
        check(args)


# --------------------------------------------------------------------------- translation


def _os_reason(exc: OSError) -> str:
    reason = exc.strerror or (errno.errorcode.get(exc.errno or 0)) or str(exc)
    name = exc.filename
    return f"{reason}: {name}" if name not in (None, "") else str(reason)


def _chain(exc: BaseException) -> Iterator[BaseException]:
    """The exception, its causes/contexts and the members of exception groups."""
    seen: set[int] = set()
    pending = [exc]
    while pending:
        e = pending.pop(0)
        if id(e) in seen:
            continue
        seen.add(id(e))
        yield e
        if isinstance(e, BaseExceptionGroup):
            pending.extend(e.exceptions)
        for nxt in (e.__cause__, e.__context__):
            if nxt is not None:
                pending.append(nxt)


def _describe_one(exc: BaseException) -> str | None:  # noqa: PLR0911 - a flat table
    if isinstance(exc, CliError):
        return str(exc)
    mod = type(exc).__module__ or ""
    if isinstance(exc, sqlite3.DatabaseError) or (mod.startswith("sqlalchemy") and type(
            exc).__name__ in ("DatabaseError", "OperationalError", "InterfaceError")):
        orig = getattr(exc, "orig", None) or exc
        if _is_busy(orig):
            return f"catalog database is busy ({orig}): another process holds it; try again"
        return f"catalog database is unreadable ({orig}): corrupt, or not a catalog"
    if mod.startswith("httpx") or mod.startswith("tiled"):
        return _describe_http(exc)
    if isinstance(exc, (PermissionError, FileNotFoundError, NotADirectoryError,
                        IsADirectoryError, FileExistsError)):
        return _os_reason(exc)
    if isinstance(exc, OSError) and exc.errno in (errno.EROFS, errno.ENOSPC, errno.EDQUOT,
                                                  errno.ENAMETOOLONG, errno.ELOOP,
                                                  errno.ECONNREFUSED, errno.EADDRINUSE,
                                                  errno.EACCES):
        return _os_reason(exc)
    mod_family = mod.split(".")[0]
    if mod_family == "lltolab" and isinstance(exc, (RuntimeError, TimeoutError)):
        # the project's instrument / operator exception family: an unusable lab, not a bug
        return f"{type(exc).__name__}: {exc}"
    if isinstance(exc, TimeoutError):
        return str(exc) or "timed out"
    return None


def _describe_http(exc: BaseException) -> str | None:
    import httpx  # noqa: PLC0415 - CLI only

    if isinstance(exc, httpx.HTTPStatusError):
        code = exc.response.status_code
        hint = " (wrong or missing --api-key?)" if code in (401, 403) else ""
        return f"the tiled server answered {code} {exc.response.reason_phrase}{hint}"
    if isinstance(exc, httpx.TimeoutException):
        return f"the tiled server did not answer in time: {exc}"
    if isinstance(exc, httpx.TransportError):
        url = ""
        try:
            url = f" at {exc.request.url}"
        except RuntimeError:  # no request attached
            pass
        return f"cannot reach the tiled server{url}: {exc}"
    if isinstance(exc, httpx.HTTPError):
        return f"tiled server error: {exc}"
    return None


def describe_error(exc: BaseException) -> str | None:
    """One line for an exception that means bad input or an unusable environment, else None.

    Recognised anywhere in the exception's chain: :class:`CliError`, ``ValueError`` raised by
    lltolab (its convention for a bad argument), file-system errors, a corrupt SQLite
    database, tiled server / network errors, timeouts and the instrument exception family.
    """
    chain = list(_chain(exc))
    for e in chain:  # the most specific translation anywhere in the chain wins
        text = _describe_one(e)
        if text is not None:
            return text
    if isinstance(exc, ValueError):
        return str(exc) or type(exc).__name__
    return None


class _BelowWarning(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno >= logging.WARNING


_QUIET = _BelowWarning()


def quiet_libraries() -> None:
    """Keep the tiled app's start-up chatter and the starlette deprecation note off stderr."""
    logging.getLogger("tiled.server.app").addFilter(_QUIET)
    warnings.filterwarnings("ignore", message=".*starlette.testclient.*")
    warnings.filterwarnings("ignore", message=".*httpx2.*")


def split_debug(argv: Sequence[str]) -> tuple[list[str], bool]:
    """Remove ``--debug`` (before a ``--``) from ``argv``; also on with ``LLTOLAB_DEBUG=1``."""
    argv = list(argv)
    end = argv.index("--") if "--" in argv else len(argv)
    debug = "--debug" in argv[:end]
    rest = [a for a in argv[:end] if a != "--debug"] + argv[end:]
    return rest, debug or os.environ.get("LLTOLAB_DEBUG", "") not in ("", "0")


def run_guarded(build_parser: Callable[[], argparse.ArgumentParser],
                argv: Sequence[str] | None) -> int:
    """Parse ``argv``, check it (:func:`validate_args`) and run the command (``args.func``);
    turn every exception into one line on stderr and an exit status.

    Parameters
    ----------
    build_parser
        Returns the command's parser (built with :class:`OneLineArgumentParser`); each
        subcommand sets ``func`` (Namespace -> int) as its default.
    argv
        The arguments (default ``sys.argv[1:]``).

    Returns
    -------
    int
        The command's status; 2 for bad input or an unusable environment; 1 for an internal
        error; 130 after Ctrl-C; 0 after ``--help``.
    """
    argv, debug = split_debug(sys.argv[1:] if argv is None else argv)
    if not debug:
        quiet_libraries()
    prog = "lltolab"
    try:
        parser = build_parser()
        parser.add_argument("--debug", action="store_true",
                            help="show the traceback of an internal error (also after the "
                                 "subcommand, or LLTOLAB_DEBUG=1)")
        args = parser.parse_args(argv)
        prog = " ".join(["lltolab", *(c for c in (getattr(args, "command", None),)
                                       if isinstance(c, str))])
        validate_args(args)
        if getattr(args, "command", None) in _READERS:
            _die_quietly_on_closed_pipe()
        return int(args.func(args))
    except SystemExit as exc:  # --help, or a library exiting
        code = exc.code
        return code if isinstance(code, int) else (0 if code is None else EXIT_BAD_INPUT)
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:  # the reader went away (``lltolab runs | head -1``): not an error
        _silence_stdout()
        return 0
    except Exception as exc:  # noqa: BLE001 - the last line of defence
        if debug:
            traceback.print_exc()
        if isinstance(exc, CliError) and exc.prog:
            prog = exc.prog
        text = describe_error(exc)
        if text is not None:
            print(f"{prog}: {_one_line(text)}", file=sys.stderr)
            return EXIT_BAD_INPUT
        print(f"{prog}: internal error: {type(exc).__name__}: {_one_line(str(exc))}"
              + ("" if debug else " (run again with --debug for the traceback)"),
              file=sys.stderr)
        return EXIT_INTERNAL


#: commands that only read and print: a closed output pipe ends them like any Unix filter
_READERS = frozenset({"runs", "replay"})


def _die_quietly_on_closed_pipe() -> None:
    """When stdout is a pipe, restore the default SIGPIPE action (end the process silently
    when the reader has gone, as ``lltolab replay -1 | head`` expects); else do nothing."""
    import signal  # noqa: PLC0415
    import stat  # noqa: PLC0415
    import threading  # noqa: PLC0415

    try:
        is_pipe = stat.S_ISFIFO(os.fstat(sys.stdout.fileno()).st_mode)
    except (AttributeError, OSError, ValueError):  # not a real file (in-process capture)
        return
    sigpipe = getattr(signal, "SIGPIPE", None)  # absent on Windows
    if is_pipe and sigpipe is not None and threading.current_thread() is threading.main_thread():
        signal.signal(sigpipe, signal.SIG_DFL)


def _silence_stdout() -> None:
    """Point stdout at /dev/null so that the interpreter's final flush cannot fail again."""
    try:
        fd = sys.stdout.fileno()
    except (AttributeError, OSError, ValueError):  # not a real file (e.g. in-process capture)
        return
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, fd)
    finally:
        os.close(devnull)


def _one_line(text: str, limit: int = 500) -> str:
    line = " ".join(str(text).split())
    return line if len(line) <= limit else line[: limit - 3] + "..."
