"""The layer rules of docs/design (import-linter contracts in pyproject.toml) hold.

import-linter (grimp) discovers a package's modules by walking its directory, so the three
top-level folders mapped into ``lltolab`` by package-dir would be invisible to it. The test
builds a shadow tree of symlinks that mirrors the installed layout and lints that.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
MAPPED = {"devices": "devices", "plans": "plans", "sim_devices": "sim_devices"}


def _shadow_tree(tmp_path: Path) -> Path:
    pkg = tmp_path / "lltolab"
    pkg.mkdir()
    for entry in (REPO / "lltolab").iterdir():
        if entry.name != "__pycache__":
            (pkg / entry.name).symlink_to(entry)
    for name, folder in MAPPED.items():
        (pkg / name).symlink_to(REPO / folder)
    return tmp_path


def test_import_contracts_hold(tmp_path: Path) -> None:
    root = _shadow_tree(tmp_path)
    env = dict(os.environ, PYTHONPATH=str(root))
    proc = subprocess.run(
        [sys.executable, "-c", "import sys; from importlinter.cli import lint_imports_command;"
         "sys.exit(lint_imports_command())", str(REPO / "pyproject.toml"), "--no-cache"],
        cwd=root, env=env, capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "0 broken" in proc.stdout, proc.stdout
