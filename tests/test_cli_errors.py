"""The ``lltolab`` command answers bad input with one line on stderr and exit 2, never a
traceback, and before anything runs or is written.

One small catalog (two runs) is made once for the module; every case drives the real CLI in a
subprocess against real folders. Read-only folders: tests may run as root, whom permission
bits do not stop, so the CLI is run without the capabilities that let root ignore them
(CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH), where writes into a ``chmod 555`` folder really fail.
"""

from __future__ import annotations

import ctypes
import os
import shutil
import signal
import stat
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from bluesky import RunEngine
from bluesky.plans import count, scan
from ophyd.sim import det, motor

from lltolab.catalog import catalog_writer, close_catalogs, open_catalog
from lltolab.testing import free_port

pytestmark = pytest.mark.timeout(240)

_PR_CAPBSET_DROP = 24
_CAP_DAC_OVERRIDE, _CAP_DAC_READ_SEARCH = 1, 2


@pytest.fixture(scope="module")
def catalog_folder(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("cli-errors") / "catalog"


@pytest.fixture(scope="module")
def uids(catalog_folder) -> list[str]:
    """Two runs, oldest first: a scan (scan_id 1) and a count (scan_id 2)."""
    open_catalog(catalog_folder)
    engine = RunEngine({})
    engine.subscribe(catalog_writer(catalog_folder))
    first = engine(scan([det], motor, -1.0, 1.0, 3), sample_id="CLI-A")
    second = engine(count([det], num=2), sample_id="CLI-B")
    yield [*first, *second]
    close_catalogs()


def _cli(*args: str, drop_root_override: bool = False, timeout: float = 200,
         env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "lltolab.cli", *args], capture_output=True, text=True,
        timeout=timeout, preexec_fn=_drop_dac_override if drop_root_override else None,
        env={**os.environ, **(env or {})},
    )


def _drop_dac_override() -> None:
    """In the child before exec: take away root's exemption from permission bits."""
    if os.geteuid() != 0:
        return
    libc = ctypes.CDLL(None, use_errno=True)
    for cap in (_CAP_DAC_OVERRIDE, _CAP_DAC_READ_SEARCH):
        if libc.prctl(_PR_CAPBSET_DROP, cap, 0, 0, 0) != 0:
            raise OSError(ctypes.get_errno(), "prctl(PR_CAPBSET_DROP) failed")


def _one_line_error(proc: subprocess.CompletedProcess, command: str, *words: str) -> str:
    """Exit 2, no traceback, exactly one stderr line naming the command and ``words``."""
    err = proc.stderr.strip()
    assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
    assert proc.returncode == 2, (proc.returncode, proc.stderr[-3000:])
    assert len(err.splitlines()) == 1, err
    assert err.startswith(f"lltolab {command}: "), err
    for word in words:
        assert word in err, (word, err)
    return err


@pytest.fixture
def world_readable_tmp():
    """A folder that a capability-reduced root (or another user) can traverse; skips where
    root's exemption from permission bits cannot be dropped (then chmod cannot be tested)."""
    import tempfile

    try:
        subprocess.run([sys.executable, "-c", "pass"], preexec_fn=_drop_dac_override,
                       check=True, timeout=60)
    except (subprocess.SubprocessError, OSError) as exc:
        pytest.skip(f"cannot drop CAP_DAC_OVERRIDE here: {exc}")

    path = Path(tempfile.mkdtemp(prefix="lltolab-ro-"))
    path.chmod(0o755)
    yield path
    for p in [path, *path.rglob("*")]:
        if p.is_dir() and not p.is_symlink():
            p.chmod(stat.S_IRWXU | stat.S_IRGRP | stat.S_IXGRP | stat.S_IROTH | stat.S_IXOTH)
    shutil.rmtree(path, ignore_errors=True)


# --------------------------------------------------------------------------- runs


def test_unknown_run_uid(catalog_folder, uids) -> None:
    proc = _cli("replay", "abcdef12", "--catalog", str(catalog_folder))
    _one_line_error(proc, "replay", "abcdef12", "no run", str(catalog_folder))


def test_unknown_scan_id(catalog_folder, uids) -> None:
    proc = _cli("replay", "99", "--catalog", str(catalog_folder))
    _one_line_error(proc, "replay", "scan_id", "'99'")


def test_run_that_is_no_reference_at_all(catalog_folder, uids) -> None:
    proc = _cli("replay", "newest", "--catalog", str(catalog_folder))
    _one_line_error(proc, "replay", "'newest'", "uid prefix")


def test_replay_0_is_an_error_not_the_oldest_run(catalog_folder, uids) -> None:
    proc = _cli("replay", "0", "--catalog", str(catalog_folder))
    err = _one_line_error(proc, "replay", "run 0 does not exist", "scan_ids start at 1")
    assert uids[0] not in proc.stdout + err and "replayed" not in proc.stdout


def test_negative_index_counts_from_the_end(catalog_folder, uids) -> None:
    proc = _cli("replay", "-2", "--catalog", str(catalog_folder))
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert f"of run {uids[0]}" in proc.stdout  # -2 of two runs: the oldest
    proc = _cli("replay", "-3", "--catalog", str(catalog_folder))
    _one_line_error(proc, "replay", "'-3'", "holds only 2 run(s)")


def test_reader_that_goes_away_is_no_error(catalog_folder, uids) -> None:
    """``lltolab replay -1 | head -1``: the closed pipe ends the command quietly."""
    proc = subprocess.Popen([sys.executable, "-m", "lltolab.cli", "replay", "-1", "--catalog",
                             str(catalog_folder)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    proc.stdout.close()  # nobody reads: the first write fails with EPIPE
    err = proc.stderr.read()
    assert proc.wait(timeout=200) in (0, -signal.SIGPIPE), err  # as any Unix filter
    assert "Traceback" not in err and "BrokenPipeError" not in err, err


def test_analyze_unknown_run_writes_no_figure(catalog_folder, uids, tmp_path) -> None:
    figures = tmp_path / "figures"
    proc = _cli("analyze", "1", "fedcba98", "--catalog", str(catalog_folder),
                "--figures", str(figures))
    _one_line_error(proc, "analyze", "fedcba98", "no run")
    assert not figures.exists()


# --------------------------------------------------------------------------- files


def test_missing_micrograph_file(catalog_folder, uids, tmp_path) -> None:
    figures = tmp_path / "figures"
    proc = _cli("analyze", "1", "--catalog", str(catalog_folder), "--figures", str(figures),
                "--micrograph", str(tmp_path / "nope.npy"))
    _one_line_error(proc, "analyze", "micrograph", "nope.npy", "does not exist")
    assert not figures.exists()


def test_micrograph_that_is_not_a_2d_npy(catalog_folder, uids, tmp_path) -> None:
    text = tmp_path / "map.npy"
    text.write_text("not an array\n")
    proc = _cli("analyze", "1", "--catalog", str(catalog_folder), "--micrograph", str(text))
    _one_line_error(proc, "analyze", "map.npy", "not a .npy array")
    flat = tmp_path / "flat.npy"
    np.save(flat, np.zeros(7))
    proc = _cli("analyze", "1", "--catalog", str(catalog_folder), "--micrograph", str(flat))
    _one_line_error(proc, "analyze", "flat.npy", "2-D", "(7,)")


@pytest.mark.parametrize("command", ["runs", "replay", "analyze", "demo"])
def test_catalog_path_that_is_a_file(command, tmp_path) -> None:
    path = tmp_path / "catalog.txt"
    path.write_text("I am a file\n")
    args = {"runs": [], "replay": ["-1"], "analyze": ["1"], "demo": ["--seed", "3"]}[command]
    proc = _cli(command, *args, "--catalog", str(path))
    _one_line_error(proc, command, str(path), "is a file")
    assert path.read_text() == "I am a file\n"


def test_corrupt_database(catalog_folder, uids, tmp_path) -> None:
    broken = tmp_path / "broken"
    shutil.copytree(catalog_folder, broken, ignore=shutil.ignore_patterns("*.lock"))
    db = broken / "catalog.db"
    db.write_bytes(np.random.default_rng(13).bytes(db.stat().st_size))
    for args in (["runs"], ["replay", "-1"], ["analyze", "2"]):
        proc = _cli(*args, "--catalog", str(broken))
        _one_line_error(proc, args[0], "catalog.db", "file is not a database")
    proc = _cli("demo", "--catalog", str(broken))  # nothing is started over a broken catalog
    _one_line_error(proc, "demo", "catalog.db", "corrupt")
    assert not (broken / "sim-exports").exists() and not (broken / "session").exists()


def test_busy_database_is_not_called_corrupt(catalog_folder, uids, tmp_path) -> None:
    """A catalog database held by another process's exclusive lock is busy, not corrupt."""
    import sqlite3

    held = tmp_path / "held"
    shutil.copytree(catalog_folder, held, ignore=shutil.ignore_patterns("*.lock"))
    conn = sqlite3.connect(held / "catalog.db", isolation_level=None)
    try:
        conn.execute("BEGIN EXCLUSIVE")
        proc = _cli("runs", "--catalog", str(held), timeout=100)
    finally:
        conn.close()
    err = _one_line_error(proc, "runs", "catalog.db", "busy")
    assert "corrupt" not in err


def test_unreachable_server() -> None:
    uri = f"http://127.0.0.1:{free_port()}"
    for args in (["runs"], ["replay", "-1"], ["analyze", "1"]):
        proc = _cli(*args, "--catalog", uri, timeout=60)
        _one_line_error(proc, args[0], "cannot reach the tiled server", uri)


def test_names_too_long_for_the_file_system(tmp_path) -> None:
    long = tmp_path / ("n" * 300) / "inner"
    proc = _cli("demo", "--catalog", str(long), timeout=60)
    _one_line_error(proc, "demo", "File name too long")
    proc = _cli("sim", "serve", "--exports", str(long), timeout=60)
    _one_line_error(proc, "sim", "export folder", "longer than the 255 bytes")
    assert list(tmp_path.iterdir()) == []


def test_missing_catalog(tmp_path) -> None:
    proc = _cli("runs", "--catalog", str(tmp_path / "none"))
    _one_line_error(proc, "runs", "no catalog in", "none")
    assert not (tmp_path / "none").exists()


# --------------------------------------------------------------------------- read-only


def test_read_only_folder_for_a_new_catalog(world_readable_tmp) -> None:
    ro = world_readable_tmp / "ro"
    ro.mkdir()
    ro.chmod(0o555)
    proc = _cli("demo", "--catalog", str(ro / "cat"), drop_root_override=True)
    _one_line_error(proc, "demo", str(ro / "cat"), "not writable")
    assert not (ro / "cat").exists()


def test_read_only_catalog_folder(catalog_folder, uids, world_readable_tmp) -> None:
    """Reading a catalog in a folder one may not write lists it, or says in one line why
    not; nothing is started in it."""
    ro = world_readable_tmp / "catalog"
    shutil.copytree(catalog_folder, ro)
    for p in [ro, *ro.rglob("*")]:
        p.chmod(0o555 if p.is_dir() else 0o444)
    for args in (["runs"], ["replay", "-1"]):
        proc = _cli(*args, "--catalog", str(ro), drop_root_override=True)
        if proc.returncode == 0:  # read without writing anything
            assert uids[1][:8] in proc.stdout, proc.stdout[-2000:]
            assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
        else:
            _one_line_error(proc, args[0], str(ro), "Permission denied")
    proc = _cli("demo", "--catalog", str(ro), drop_root_override=True)
    _one_line_error(proc, "demo", str(ro), "not writable")


def test_read_only_figures_folder(catalog_folder, uids, world_readable_tmp) -> None:
    figures = world_readable_tmp / "figures"
    figures.mkdir()
    figures.chmod(0o555)
    proc = _cli("analyze", "2", "--catalog", str(catalog_folder), "--figures", str(figures),
                drop_root_override=True)
    _one_line_error(proc, "analyze", "figures folder", "not writable")


def test_read_only_export_folder_of_sim_serve(world_readable_tmp) -> None:
    exports = world_readable_tmp / "exports"
    exports.mkdir()
    exports.chmod(0o555)
    proc = _cli("sim", "serve", "--exports", str(exports), drop_root_override=True, timeout=60)
    _one_line_error(proc, "sim", "export folder", "not writable")


# --------------------------------------------------------------------------- usage


@pytest.mark.parametrize(("args", "command", "words"), [
    ([], "", ["required: command"]),
    (["frobnicate"], "", ["invalid choice: 'frobnicate'"]),
    (["replay"], "replay", ["required: run"]),
    (["runs", "-n", "many"], "runs", ["invalid int value: 'many'"]),
    (["runs", "-n", "0"], "runs", ["-n must be an integer in 1..", "got 0"]),
    (["demo", "--seed", "-4"], "demo", ["--seed", "got -4"]),
    (["demo", "--colour"], "", ["unrecognized arguments: --colour"]),
    (["sim", "serve", "--time-scale", "nan"], "sim serve", ["--time-scale", "'nan'"]),
    (["shell"], "shell", ["--sim", "--config"]),
    (["shell", "--config", "/no/such/lab.toml"], "shell", ["lab.toml", "does not exist"]),
])
def test_usage_errors_are_one_line(args, command, words) -> None:
    proc = _cli(*args, timeout=60)
    err = proc.stderr.strip()
    assert proc.returncode == 2 and "Traceback" not in err, proc.stderr[-2000:]
    assert len(err.splitlines()) == 1 and err.startswith(f"lltolab{' ' * bool(command)}"
                                                         f"{command}: "), err
    for word in words:
        assert word in err, (word, err)


def test_invalid_toml_config(tmp_path) -> None:
    cfg = tmp_path / "lab.toml"
    cfg.write_text("[cryostage\nresource = 1\n")
    proc = _cli("shell", "--config", str(cfg), timeout=60)
    _one_line_error(proc, "shell", "lab.toml", "not valid TOML")


def test_catalog_named_by_the_config_is_checked_too(tmp_path) -> None:
    afile = tmp_path / "catalog.txt"
    afile.write_text("not a catalog\n")
    cfg = tmp_path / "lab.toml"
    cfg.write_text(f"[catalog]\npath = {str(afile)!r}\n")
    proc = _cli("shell", "--config", str(cfg), timeout=60)
    _one_line_error(proc, "shell", str(afile), "is a file")


def test_help_exits_0() -> None:
    proc = _cli("replay", "--help", timeout=60)
    assert proc.returncode == 0 and "uid" in proc.stdout and not proc.stderr.strip()


# --------------------------------------------------------------------------- internal errors


def test_internal_error_is_one_line_and_the_traceback_needs_debug(monkeypatch, capsys,
                                                                  tmp_path) -> None:
    from lltolab import cli

    def broken(args):
        raise TypeError("unsupported format string passed to NoneType.__format__")

    monkeypatch.setattr(cli, "demo_command", broken)
    assert cli.main(["demo", "--catalog", str(tmp_path / "c")]) == 1
    err = capsys.readouterr().err.strip()
    assert err.splitlines() == [err] and "Traceback" not in err
    assert err.startswith("lltolab demo: internal error: TypeError: unsupported format")
    assert "--debug" in err
    assert cli.main(["demo", "--debug", "--catalog", str(tmp_path / "c")]) == 1
    err = capsys.readouterr().err
    assert "Traceback (most recent call last)" in err and "broken" in err
    assert not (tmp_path / "c").exists()


def test_errors_from_libraries_are_translated() -> None:
    import sqlite3

    import httpx
    import sqlalchemy.exc

    from lltolab._cli_errors import describe_error

    wrapped = sqlalchemy.exc.DatabaseError("PRAGMA x", {}, sqlite3.DatabaseError(
        "database disk image is malformed"))
    try:
        try:
            raise wrapped
        except sqlalchemy.exc.DatabaseError as exc:
            raise RuntimeError("app start-up failed") from exc
    except RuntimeError as outer:
        assert "database disk image is malformed" in describe_error(outer)
    request = httpx.Request("GET", "http://127.0.0.1:8000/api/v1/")
    denied = httpx.HTTPStatusError("401", request=request,
                                   response=httpx.Response(401, request=request))
    assert "401" in describe_error(denied) and "--api-key" in describe_error(denied)
    refused = httpx.ConnectError("[Errno 111] Connection refused", request=request)
    assert "127.0.0.1:8000" in describe_error(refused)
    locked = sqlalchemy.exc.OperationalError("INSERT", {}, sqlite3.OperationalError(
        "database is locked"))
    assert "busy" in describe_error(locked) and "corrupt" not in describe_error(locked)
    assert "Permission denied" in describe_error(PermissionError(13, "Permission denied", "/x"))
    assert describe_error(TypeError("a bug")) is None
    assert describe_error(KeyError("a bug")) is None


def test_all_digit_uid_prefix_names_its_run(tmp_path) -> None:
    """A uid may begin with 8 decimal digits: with no run of that scan_id, the digits are
    taken as the uid prefix (replay's fast lookup and analyze's catalog lookup alike)."""
    import time

    from event_model import compose_run

    folder = tmp_path / "catalog"
    writer = catalog_writer(folder)
    bundle = compose_run(uid="31856606-5a2e-4c1b-9d7e-0f1e2d3c4b5a",
                         metadata={"scan_id": 7, "plan_name": "count", "sample_id": "D"})
    writer("start", bundle.start_doc)
    desc = bundle.compose_descriptor(name="primary", data_keys={
        "x": {"source": "test", "dtype": "number", "shape": []}})
    writer("descriptor", desc.descriptor_doc)
    writer("event", desc.compose_event(data={"x": 1.0}, timestamps={"x": time.time()}))
    writer("stop", bundle.compose_stop())
    close_catalogs()
    proc = _cli("replay", "31856606", "--catalog", str(folder))
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "31856606-5a2e" in proc.stdout
    proc = _cli("analyze", "31856606", "--catalog", str(folder))
    _one_line_error(proc, "analyze", "'count' run")  # found, then refused as not an image
    proc = _cli("replay", "31856607", "--catalog", str(folder))
    _one_line_error(proc, "replay", "scan_id or uid prefix '31856607'")
