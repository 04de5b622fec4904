"""Catalog target resolution: folder vs tiled server address, and where their state lives."""

from __future__ import annotations

from pathlib import Path

import pytest

from lltolab.catalog import CatalogTarget, default_catalog_path, is_server_uri, resolve_target


def test_folder_target_keeps_journal_and_state_inside(tmp_path: Path) -> None:
    target = resolve_target(tmp_path / "cat")
    assert not target.is_server and target.folder == (tmp_path / "cat").resolve()
    assert target.journal_dir == target.folder / "journal"
    assert target.state_dir == target.folder / "session"
    assert target.sim_exports_dir == target.folder / "sim-exports"
    assert str(target) == str(target.folder)
    assert resolve_target(target) is target
    assert resolve_target(None).folder == default_catalog_path().resolve()


def test_server_target_state_is_per_address() -> None:
    a = resolve_target("http://127.0.0.1:8123/")
    b = resolve_target("http://127.0.0.1:8124")
    assert a.is_server and a.uri == "http://127.0.0.1:8123" and a.folder is None
    assert a.sim_exports_dir is None
    assert a.state_dir != b.state_dir and a.journal_dir != b.journal_dir
    assert "127.0.0.1" in str(a.state_dir) and a.state_dir.name == "session"
    assert is_server_uri("https://x") and not is_server_uri("/tmp/x")


@pytest.mark.parametrize("bad", ["", "  ", "ftp://host/x", "postgresql://u@h/db"])
def test_bad_targets_rejected(bad: str) -> None:
    with pytest.raises(ValueError, match="catalog"):
        resolve_target(bad)


def test_file_is_not_a_catalog_folder(tmp_path: Path) -> None:
    (tmp_path / "f").write_text("x")
    with pytest.raises(ValueError, match="not a folder"):
        resolve_target(tmp_path / "f")
    with pytest.raises(TypeError, match="path or URI"):
        resolve_target(3)  # type: ignore[arg-type]
    assert isinstance(resolve_target(str(tmp_path)), CatalogTarget)


def test_cli_bad_catalog_input_is_one_line_exit_2(tmp_path: Path) -> None:
    import re
    import subprocess
    import sys

    (tmp_path / "file").write_text("x")
    corrupt = tmp_path / "corrupt"
    corrupt.mkdir()
    (corrupt / "catalog.db").write_bytes(b"not a database " * 100)
    cases = [
        (("runs", "--catalog", str(tmp_path / "file")), "not a (catalog )?folder"),
        (("runs", "--catalog", str(tmp_path / "none")), "no catalog in"),
        (("runs", "--catalog", str(corrupt)), "unreadable"),
        (("replay", "-1", "--catalog", str(corrupt)), "unreadable"),
        (("analyze", "1", "--catalog", str(corrupt)), "unreadable"),
        (("replay", "0", "--catalog", str(corrupt)), "run 0"),
        (("runs", "--catalog", "ftp://host/x"), "neither a folder"),
    ]
    for args, message in cases:
        proc = subprocess.run([sys.executable, "-m", "lltolab.cli", *args], capture_output=True,
                              text=True, timeout=120, check=False)
        assert proc.returncode == 2, (args, proc.stderr)
        assert re.search(message, proc.stderr) and "Traceback" not in proc.stderr, (
            args, proc.stderr)
        assert proc.stderr.strip().count("\n") == 0, proc.stderr
