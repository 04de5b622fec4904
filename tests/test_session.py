"""session.start: configuration errors, the sample-id validator, persistent metadata.

The simulated sessions here share nothing: each gets its own catalog folder, and every one is
closed at the end of its test.
"""

from __future__ import annotations

import gc
import json
import time

import pytest

from lltolab.catalog import close_catalogs
from lltolab.plans import store
from lltolab.session import example_config, require_sample_id, start

pytestmark = pytest.mark.timeout(120)


@pytest.fixture(scope="module", autouse=True)
def _close_catalog_apps():
    yield
    close_catalogs()


# --------------------------------------------------------------------------- real-device config
FULL = {
    "cryostage": {"resource": "TCPIP::127.0.0.1::9::SOCKET"},
    "furnace": {"port": "socket://127.0.0.1:9"},
    "sims": {"export_folder": "/nonexistent"},
}


@pytest.mark.parametrize("missing", ["cryostage", "furnace", "sims"])
def test_real_config_missing_section_is_a_clear_error(tmp_path, missing):
    cfg = {k: v for k, v in FULL.items() if k != missing}
    cfg["catalog"] = {"path": str(tmp_path / "cat")}
    with pytest.raises(ValueError, match=rf"lacks the \[{missing}\] section"):
        start(cfg, sim=False)
    assert not (tmp_path / "cat").exists()  # refused before anything was built


@pytest.mark.parametrize(("section", "key"), [("cryostage", "resource"), ("furnace", "port"),
                                            ("sims", "export_folder")])
def test_real_config_section_without_its_address_is_a_clear_error(tmp_path, section, key):
    cfg = {**FULL, section: {"timeout_s": 10.0}}
    with pytest.raises(ValueError, match=rf"\[{section}\] needs {key}"):
        start(cfg, sim=False, catalog=tmp_path)


def test_real_config_missing_export_folder_is_a_clear_error(tmp_path):
    """Devices are built lazily: no instrument is contacted before the folder is refused."""
    t0 = time.monotonic()
    with pytest.raises(ValueError, match="export_folder '/nonexistent' is not an existing"):
        start(FULL, sim=False, catalog=tmp_path)
    assert time.monotonic() - t0 < 10


def test_real_config_from_toml_file(tmp_path):
    path = tmp_path / "lab.toml"
    path.write_text('[sample]\nid = "LLTO-1"\n[furnace]\nport = "COM3"\n')
    with pytest.raises(ValueError, match=r"\[cryostage\]"):
        start(path, sim=False, catalog=tmp_path / "cat")
    with pytest.raises(ValueError, match="does not exist"):
        start(tmp_path / "missing.toml", sim=False)


def test_real_config_bad_operator_confirmation(tmp_path):
    cfg = {**FULL, "operator": {"confirmation": "telepathy"}}
    with pytest.raises(ValueError, match="'prompt' or 'file'.*telepathy"):
        start(cfg, sim=False, catalog=tmp_path)
    cfg = {**FULL, "operator": {"confirmation": "file"}}
    with pytest.raises(ValueError, match="folder"):
        start(cfg, sim=False, catalog=tmp_path)


def test_example_config_parses_and_names_every_section():
    import tomllib  # noqa: PLC0415

    cfg = tomllib.loads(example_config())
    assert {"sample", "catalog", "cryostage", "furnace", "sims", "operator",
            "suspenders"} <= set(cfg)


def test_bad_time_scale(tmp_path):
    with pytest.raises(ValueError, match="time_scale"):
        start(sim=True, catalog=tmp_path, time_scale=0.0)


# --------------------------------------------------------------------------- md validator
def test_require_sample_id():
    require_sample_id({"sample_id": "LLTO-1"})
    for md in ({}, {"sample_id": ""}, {"sample_id": "  "}, {"sample_id": 3}):
        with pytest.raises(ValueError, match="sample_id"):
            require_sample_id(md)


def test_run_without_sample_id_is_refused_before_any_document(tmp_path):
    s = start(sim=True, catalog=tmp_path / "fresh", sample_id=None, callbacks=False)
    try:
        assert "sample_id" not in s.RE.md
        seen: list[str] = []
        s.RE.subscribe(lambda name, doc: seen.append(name))
        with pytest.raises(ValueError, match="sample_id"):
            s.RE(store(s.devices["clock"], 60.0))
        assert seen == []
        assert s.RE.state == "idle"
        # per-call md satisfies it
        (uid,) = s.RE(store(s.devices["clock"], 60.0), sample_id="LLTO-late")
        assert seen[0] == "start" and seen[-1] == "stop"
    finally:
        s.close()


# --------------------------------------------------------------------------- persistence
@pytest.mark.filterwarnings("error::pytest.PytestUnraisableExceptionWarning")
def test_scan_id_and_sample_survive_a_restart_and_a_new_virtual_sample_starts_anew(tmp_path):
    """A restarted simulated session builds a new virtual lab, whose sample is new: the record
    keeps the sample id, archives the old history and starts a new one at lab time 0."""
    folder = tmp_path / "catalog"
    first = start(sim=True, catalog=folder, sample_id="LLTO-persist", callbacks=False)
    try:
        first.RE(store(first.devices["clock"], 3600.0, record=first.record))
        first.RE(store(first.devices["clock"], 3600.0, record=first.record))
        scan_id = first.RE.md["scan_id"]
        history = first.record.history()
    finally:
        first.close()
    assert scan_id >= 2 and len(history) == 2

    second = start(sim=True, catalog=folder, callbacks=False)  # no sample id given
    try:
        assert second.RE.md["scan_id"] == scan_id
        assert second.RE.md["sample_id"] == "LLTO-persist"
        assert second.record.sample_id.get() == "LLTO-persist"
        assert second.record.history() == []
        (archived,) = (folder / "session" / "samples" / "archived").glob("LLTO-persist-*.json")
        assert json.loads(archived.read_text()) == {"sample_id": "LLTO-persist",
                                                    "history": history}
        starts: list[dict] = []
        second.RE.subscribe(lambda name, doc: starts.append(doc) if name == "start" else None)
        second.RE(store(second.devices["clock"], 60.0, record=second.record))
        assert starts[0]["scan_id"] == scan_id + 1
        assert starts[0]["sample_id"] == "LLTO-persist"
        (segment,) = second.record.history()
        assert segment["start_s"] == 0.0 and segment["end_s"] == 60.0
        # the runs of both sessions are in the catalog
        stored = [second.catalog[-k].metadata["start"]["scan_id"] for k in (1, 2, 3)]
        assert stored == [scan_id + 1, scan_id, scan_id - 1]
        # the closed first session's md object must not write over the newer files when it
        # is garbage-collected
        del first
        gc.unfreeze()  # the second session froze what existed when its catalog opened
        gc.collect()
    finally:
        second.close()

    # a new sample id starts a new history (scan ids keep counting)
    third = start(sim=True, catalog=folder, sample_id="LLTO-next", callbacks=False)
    try:
        assert third.record.history() == []
        assert third.RE.md["sample_id"] == "LLTO-next"
        assert third.RE.md["scan_id"] == scan_id + 1
    finally:
        third.close()


def test_a_record_is_kept_for_a_given_lab_whose_clock_is_past_it(tmp_path):
    from lltolab.devices import SampleRecord
    from lltolab.session import _match_virtual_sample
    from lltolab.sim_devices import VirtualLab

    lab = VirtualLab(seed=0, time_scale=None, twin_process=False, export_folder=tmp_path)
    try:
        record = SampleRecord(name="record", sample_id="S1", path=tmp_path / "S1.json")
        record.segment.put({"start_s": 0.0, "end_s": 3600.0, "temperature_K": 295.15,
                            "location": "storage", "immersed": False, "source": "storage"})
        lab.clock.wait(3600.0)
        _match_virtual_sample(record, lab, False, tmp_path / "archived")
        assert len(record.history()) == 1 and not (tmp_path / "archived").exists()
        # the same lab built here (a new sample), or a clock behind the record: started anew
        _match_virtual_sample(record, lab, True, tmp_path / "archived")
        assert record.history() == []
        assert len(list((tmp_path / "archived").glob("S1-*.json"))) == 1
    finally:
        lab.close()


def test_session_context_manager_and_devices(tmp_path):
    with start(sim=True, catalog=tmp_path, sample_id="LLTO-cm", callbacks=False) as s:
        assert set(s.devices) >= {"cell", "handler", "clock", "stage", "furnace", "sims",
                                  "record"}
        assert set(s.workflow_devices()) == {"cell", "handler", "clock", "stage", "furnace",
                                             "sims"}
        assert s.stage_alarm.get() == 0
        assert s.RE.md["simulated"] is True
        assert s.plans.sims_image is not None


def test_a_catalog_failure_at_close_is_logged_with_where_the_documents_are(tmp_path, caplog):
    """Closing the session flushes the catalog writer; a failure there is logged (naming the
    journal that keeps the documents), and the rest of the session still closes."""
    from lltolab.catalog import CatalogWriteError

    s = start(sim=True, catalog=tmp_path / "cat", sample_id="LLTO-close", callbacks=False)

    def refuse(timeout_s: float = 60.0) -> None:
        raise CatalogWriteError("run r1 is NOT in the catalog (disk full)")

    s.writer.flush = refuse
    with caplog.at_level("WARNING", logger="lltolab.session"):
        s.close()
    (record,) = [r for r in caplog.records if "store_what_is_queued" in r.getMessage()]
    assert "NOT in the catalog (disk full)" in record.getMessage()
    assert str(s.writer.journal_dir) in record.getMessage()
    assert s._closers == []


_AST_RACE = """
import ast, gc, sys, threading, time
if sys.argv[1] == "locked":
    from lltolab._ast_lock import serialize_ast_parse
    assert serialize_ast_parse(force=True)
SOURCE = "x = [" + ",".join(f"f(a{i}, b={i})" for i in range(300)) + "]"
class Pausing:  # a finalizer run by a collection inside ast.parse lets another thread in
    def __del__(self):
        time.sleep(0)
errors = []
def parse(n):
    for _ in range(n):
        if errors:
            return
        cycle = Pausing()
        cycle.self = cycle
        del cycle
        try:
            ast.parse(SOURCE)
            ast.literal_eval("(1, 'a', [2.5])")
        except SystemError as err:
            errors.append(repr(err))
            return
gc.set_threshold(50)
threads = [threading.Thread(target=parse, args=(100,)) for _ in range(2)]
for t in threads:
    t.start()
for t in threads:
    t.join(timeout=120)
print(len(errors), errors[:1])
"""


def _parse_on_two_threads(mode: str) -> str:
    import subprocess  # noqa: PLC0415
    import sys  # noqa: PLC0415

    done = subprocess.run([sys.executable, "-c", _AST_RACE, mode], capture_output=True,
                          text=True, timeout=300, check=True)
    return done.stdout.strip()


def test_start_serializes_ast_parse_so_threads_cannot_break_each_others_parse(tmp_path):
    """CPython 3.11.0-3.11.7/3.12.0-3.12.1 fail concurrent ast.parse; a session locks it."""
    import ast  # noqa: PLC0415

    from lltolab._ast_lock import AST_PARSE_RACES  # noqa: PLC0415

    if AST_PARSE_RACES:  # the stress below provokes the race on this interpreter
        assert _parse_on_two_threads("bare").startswith("1 [\"SystemError('AST constructor")
    assert _parse_on_two_threads("locked") == "0 []"
    with start(catalog=tmp_path / "catalog", callbacks=False):
        assert getattr(ast.parse, "__lltolab_locked__", False) is AST_PARSE_RACES
        assert ast.literal_eval("[1, 2]") == [1, 2]


def test_start_pauses_the_collector_while_its_catalog_opens_and_close_unfreezes(tmp_path):
    gc.enable()
    with start(sim=True, catalog=tmp_path / "new", sample_id="S", callbacks=False) as s:
        opening = s.writer.opening
        assert opening is not None
        opening.result(timeout=120)
        deadline = time.monotonic() + 10.0  # the resume runs as the opening's callback
        while not gc.isenabled() and time.monotonic() < deadline:
            time.sleep(0.02)
        assert gc.isenabled()
        assert gc.get_freeze_count() > 0  # the startup's objects, skipped by collections
    assert gc.isenabled() and gc.get_freeze_count() == 0
