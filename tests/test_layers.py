"""The layer map (import-linter contracts in pyproject.toml) holds and covers every module.

import-linter builds its graph with grimp, which finds a package's modules by walking the
package's one directory and accepts only top-level packages as roots. The three folders that
package-dir maps into ``lltolab`` (``devices/``, ``plans/``, ``sim_devices/``) are outside
``lltolab/`` and so invisible to it, and ``lltolab.devices`` cannot be given as a root of its
own. The test therefore lints a shadow tree of symlinks that mirrors the installed layout.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tomllib
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


def _layer_modules() -> list[str]:
    conf = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["importlinter"]
    layered = [c for c in conf["contracts"] if c["type"] == "layers"]
    assert len(layered) == 1, "one layer map"
    return [m.strip() for layer in layered[0]["layers"] for m in layer.split("|")]


def _top_level_modules() -> set[str]:
    found = {f"lltolab.{name}" for name in MAPPED}
    for entry in (REPO / "lltolab").iterdir():
        if entry.name.startswith(("_", ".")):
            continue
        if entry.is_dir() and (entry / "__init__.py").exists():
            found.add(f"lltolab.{entry.name}")
        elif entry.suffix == ".py":
            found.add(f"lltolab.{entry.stem}")
    return found


def test_every_module_is_on_exactly_one_layer() -> None:
    layered = _layer_modules()
    assert len(layered) == len(set(layered)), f"a module on two layers: {layered}"
    missing = _top_level_modules() - set(layered)
    assert not missing, f"modules without a layer (add them to the layer map): {missing}"


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


def test_test_modules_are_named_after_what_they_cover() -> None:
    """``test_<module>[_<topic>].py``: the lltolab module first (``layers``: this file)."""
    covered = {name.removeprefix("lltolab.") for name in _top_level_modules()} | {"layers"}
    for path in (REPO / "tests").glob("test_*.py"):
        stem = path.stem.removeprefix("test_")
        assert any(stem == m or stem.startswith(f"{m}_") for m in covered), (
            f"{path.name}: name a test module after the lltolab module it covers "
            f"({', '.join(sorted(covered))})")
