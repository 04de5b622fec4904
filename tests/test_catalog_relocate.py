"""A catalog folder stays readable when moved or copied, and without write permission."""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

pytestmark = pytest.mark.timeout(300)

_WRITE = """
    import sys
    import numpy as np
    from bluesky import RunEngine
    from bluesky.plans import count, scan
    from ophyd import Signal
    from ophyd.sim import det, motor
    from lltolab.catalog import catalog_writer
    RE = RunEngine({})
    RE.subscribe(catalog_writer(sys.argv[1], readable_storage=[sys.argv[1] + "/sim-exports"]))
    RE(scan([det], motor, -1.0, 1.0, 5), sample_id="LLTO-move")
    camera = Signal(name="camera", value=np.arange(12 * 8, dtype=np.int64).reshape(12, 8))
    RE(count([camera], num=2), sample_id="LLTO-move")
"""

_READ = """
    import json, sys
    from lltolab.catalog import open_catalog, quick_list
    cat = open_catalog(sys.argv[1], create=False)
    scan_run, image_run = cat[-2], cat[-1]
    print(json.dumps({
        "motor": scan_run["primary"].read()["motor"].values.tolist(),
        "camera": image_run["primary"]["camera"].read()[1].tolist(),
        "quick": [r.uid for r in quick_list(sys.argv[1], n=5)],
        "uids": [scan_run.metadata["start"]["uid"], image_run.metadata["start"]["uid"]],
    }))
"""


def _python(code: str, *args: str, prefix: tuple[str, ...] = ()) -> dict:
    proc = subprocess.run([*prefix, sys.executable, "-c", textwrap.dedent(code), *args],
                          capture_output=True, text=True, timeout=240, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1]) if proc.stdout.strip() else {}


def _check(out: dict) -> None:
    np.testing.assert_allclose(out["motor"], np.linspace(-1.0, 1.0, 5))
    np.testing.assert_array_equal(out["camera"], np.arange(96).reshape(12, 8))
    assert out["quick"] == out["uids"]


def _without_write_rights() -> tuple[str, ...]:
    """A command prefix under which this user's write rights on others' modes are honoured."""
    if os.geteuid() != 0:
        return ()
    unshare = shutil.which("unshare")  # a user namespace: root loses its override of modes
    if unshare is None or subprocess.run([unshare, "-U", "true"], check=False).returncode:
        pytest.skip("running as root without user namespaces: cannot drop write rights")
    return (unshare, "-U")


@pytest.mark.slow
def test_moved_then_read_only_catalog_is_readable(tmp_path: Path) -> None:
    original = tmp_path / "written-here"
    _python(_WRITE, str(original))
    moved = tmp_path / "moved" / "elsewhere"
    moved.parent.mkdir()
    shutil.move(original, moved)  # nothing is left at the old place
    assert not original.exists()
    _check(_python(_READ, str(moved)))
    settings = json.loads((moved / "lltolab-catalog.json").read_text())
    assert settings["readable_storage"] == ["sim-exports"]  # kept relative to the folder

    # a copy taken before any opening at its new place, then made read-only
    copy = tmp_path / "archive"
    shutil.copytree(moved, copy)
    shutil.move(moved, tmp_path / "moved-again")  # the copy does not lean on its source
    for path in [copy, *copy.rglob("*")]:
        mode = path.stat().st_mode
        path.chmod(mode & ~(stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH))
    before = sorted((p.name, p.stat().st_mtime_ns) for p in copy.rglob("*"))
    try:
        _check(_python(_READ, str(copy), prefix=_without_write_rights()))
        assert sorted((p.name, p.stat().st_mtime_ns) for p in copy.rglob("*")) == before
    finally:
        for path in [copy, *copy.rglob("*")]:
            path.chmod(path.stat().st_mode | stat.S_IWUSR)
