"""SampleRecord: the history file, its checks, and archiving a finished sample's history."""

from __future__ import annotations

import json

import pytest

from lltolab.devices import SampleRecord


def _seg(start_s: float, end_s: float, source: str = "storage") -> dict:
    return {"start_s": start_s, "end_s": end_s, "temperature_K": 295.15,
            "location": "storage", "immersed": False, "source": source}


def test_history_is_reloaded_from_its_file(tmp_path) -> None:
    path = tmp_path / "S1.json"
    first = SampleRecord(name="record", sample_id="S1", path=path)
    first.segment.put(_seg(0.0, 60.0))
    first.segment.put(_seg(60.0, 120.0))
    again = SampleRecord(name="record", path=path)
    assert again.sample_id.get() == "S1"
    assert again.history() == first.history()
    assert again.n_segments.get() == 2


def test_a_segment_that_starts_before_the_last_one_ends_is_refused(tmp_path) -> None:
    path = tmp_path / "S1.json"
    record = SampleRecord(name="record", sample_id="S1", path=path)
    record.segment.put(_seg(0.0, 3600.0, "isotope_exchange"))
    record.segment.put(_seg(3600.0, 3600.0, "transfer"))  # touching is fine
    with pytest.raises(ValueError, match=r"starts at 10\.0 s, before the last one "
                       r"\(transfer\) ends at 3600\.0 s"):
        record.segment.put(_seg(10.0, 20.0))
    with pytest.raises(ValueError, match="starts at 3598.5 s"):  # more than a clock step
        record.segment.put(_seg(3598.5, 3700.0))
    assert len(record.history()) == 2
    assert len(json.loads(path.read_text())["history"]) == 2  # nothing half-written
    # a Unix clock stepped back by a time server between two readings: still accepted
    record.segment.put(_seg(3599.7, 3700.0))
    assert len(record.history()) == 3


def test_archive_moves_the_history_out_and_keeps_the_id(tmp_path) -> None:
    record = SampleRecord(name="record", sample_id="S1", path=tmp_path / "S1.json")
    assert record.archive(tmp_path / "old") is None  # nothing to keep
    assert not (tmp_path / "old").exists()
    record.segment.put(_seg(0.0, 60.0))
    history = record.history()
    kept = record.archive(tmp_path / "old")
    assert kept is not None and kept.parent == tmp_path / "old"
    assert kept.name.startswith("S1-") and kept.suffix == ".json"
    assert json.loads(kept.read_text()) == {"sample_id": "S1", "history": history}
    assert record.history() == [] and record.sample_id.get() == "S1"
    assert record.n_segments.get() == 0
    assert json.loads((tmp_path / "S1.json").read_text())["history"] == []
    record.segment.put(_seg(0.0, 10.0))  # a new sample starts at lab time 0 again
    assert len(record.history()) == 1
