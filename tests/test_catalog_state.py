"""Session state of a catalog target shared by concurrent writers: scan_ids, metadata, samples."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from lltolab.catalog import PersistentMetadata, ScanIdCounter, sample_record_path

_DRAW = """
    import sys
    from lltolab.catalog import PersistentMetadata, ScanIdCounter
    counter = ScanIdCounter(sys.argv[1])
    md = PersistentMetadata(sys.argv[1] + "/md.json")
    ids = []
    for k in range(int(sys.argv[2])):
        ids.append(counter(md))
        md["scan_id"] = ids[-1]
        md["sample_id"] = sys.argv[3]
        md[sys.argv[3]] = k
    print(" ".join(map(str, ids)))
"""


def test_concurrent_processes_get_distinct_increasing_scan_ids(tmp_path: Path) -> None:
    n = 60
    procs = [subprocess.Popen([sys.executable, "-c", textwrap.dedent(_DRAW), str(tmp_path),
                               str(n), f"S{k}"], stdout=subprocess.PIPE, text=True)
             for k in range(3)]
    drawn = []
    for proc in procs:
        out, _ = proc.communicate(timeout=120)
        assert proc.returncode == 0
        ids = [int(x) for x in out.split()]
        assert ids == sorted(ids) and len(ids) == n
        drawn += ids
    assert sorted(drawn) == list(range(1, 3 * n + 1))  # distinct, no gap
    assert ScanIdCounter(tmp_path).last() == 3 * n
    # every process's own keys were merged into the shared file, none lost
    stored = json.loads((tmp_path / "md.json").read_text())
    assert {stored[f"S{k}"] for k in range(3)} == {n - 1}


def test_counter_floor_and_current_md(tmp_path: Path) -> None:
    counter = ScanIdCounter(tmp_path, floor=lambda: 41)
    assert counter({}) == 42
    assert ScanIdCounter(tmp_path)({"scan_id": 100}) == 101  # a user's jump is honoured
    assert ScanIdCounter(tmp_path).last() == 101

    def outage() -> int:
        raise ConnectionError("server down")

    assert ScanIdCounter(tmp_path, floor=outage)({}) == 102  # the local counter goes on
    (tmp_path / "scan_id").write_text('"x"')
    with pytest.raises(ValueError, match="scan_id file"):
        ScanIdCounter(tmp_path).last()


def test_persistent_metadata_round_trip_and_refusals(tmp_path: Path) -> None:
    md = PersistentMetadata(tmp_path / "md.json")
    md["operator"] = "ana"
    md.update(beamtime=7, sample_id="A")
    md.setdefault("versions", {})
    del md["beamtime"]
    assert md.pop("missing", None) is None
    again = PersistentMetadata(tmp_path / "md.json")
    assert dict(again) == {"operator": "ana", "sample_id": "A", "versions": {}}
    with pytest.raises(TypeError):
        md["bad"] = object()  # not JSON: refused, nothing written
    assert "bad" not in PersistentMetadata(tmp_path / "md.json")
    (tmp_path / "list.json").write_text("[1, 2]")
    with pytest.raises(ValueError, match="not a JSON object"):
        PersistentMetadata(tmp_path / "list.json")
    (tmp_path / "torn.json").write_text('{"a": ')
    with pytest.raises(ValueError, match="unreadable"):
        PersistentMetadata(tmp_path / "torn.json")


def test_sample_records_are_one_file_per_sample(tmp_path: Path) -> None:
    a, b = sample_record_path(tmp_path, "LLTO-A1"), sample_record_path(tmp_path, "LLTO-B2")
    assert a != b and a.parent == tmp_path / "samples" and a.name == "LLTO-A1.json"
    assert sample_record_path(tmp_path, None) == tmp_path / "sample.json"
    odd = [sample_record_path(tmp_path, s) for s in ("../x", "a/b", "a_b", "..")]
    assert len(set(odd)) == 4 and all(p.parent == tmp_path / "samples" for p in odd)
