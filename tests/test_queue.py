"""lltolab under bluesky-queueserver: shipped lists, validation by name, a real RE Manager + Redis.

The manager tests start ``lltolab queue --sim --json`` as a user would (a real Redis started by
it, bluesky-queueserver's own RE Manager and worker) and drive it with
``bluesky_queueserver_api.zmq.REManagerAPI``. Without ``redis-server`` they are skipped, unless
``LLTOLAB_REQUIRE_REDIS=1`` (CI), where they fail.
"""

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from lltolab.queue import (
    EXISTING_PLANS_AND_DEVICES,
    QUEUE_DEVICES,
    QUEUE_PLANS,
    USER_GROUP_PERMISSIONS,
    queue_env,
    shipped_file,
)

LLTOLAB = [sys.executable, "-m", "lltolab.cli"]
DEVS = {n: n for n in ("cell", "handler", "clock", "stage", "furnace", "sims")}


def _redis_available() -> bool:
    return bool(shutil.which("redis-server") or Path("/usr/bin/redis-server").is_file())


def _require_redis() -> None:
    if not _redis_available():
        if os.environ.get("LLTOLAB_REQUIRE_REDIS") == "1":
            pytest.fail("LLTOLAB_REQUIRE_REDIS=1 but redis-server is not installed")
        pytest.skip("redis-server is not installed (apt-get install redis-server)")


def _allowed():
    from bluesky_queueserver.manager.profile_ops import load_allowed_plans_and_devices

    return load_allowed_plans_and_devices(
        path_existing_plans_and_devices=str(shipped_file(EXISTING_PLANS_AND_DEVICES)),
        path_user_group_permissions=str(shipped_file(USER_GROUP_PERMISSIONS)))


def _validate(name: str, group: str = "primary", **kwargs):
    from bluesky_queueserver.manager.profile_ops import validate_plan

    plans, devices = _allowed()
    item = {"name": name, "args": [], "kwargs": kwargs, "user_group": group}
    return validate_plan(item, allowed_plans=plans[group], allowed_devices=devices[group])


def test_shipped_list_matches_the_startup_module(tmp_path):
    """The queueserver's own tool, run on the startup module, reproduces the shipped file."""
    env = {**os.environ, **queue_env(sim=True, catalog=str(tmp_path / "catalog"))}
    tool = Path(sys.executable).with_name("qserver-list-plans-devices")
    out = subprocess.run([str(tool), "--startup-module", "lltolab.queue.startup",
                          "--file-dir", str(tmp_path)], env=env, capture_output=True,
                         text=True, timeout=240)
    assert out.returncode == 0, out.stderr[-2000:]
    generated = yaml.safe_load((tmp_path / EXISTING_PLANS_AND_DEVICES).read_text())
    shipped = yaml.safe_load(shipped_file(EXISTING_PLANS_AND_DEVICES).read_text())
    assert generated == shipped, (
        "lltolab/queue/existing_plans_and_devices.yaml is out of date: regenerate it with "
        "qserver-list-plans-devices (see docs/queue.md)")
    assert set(shipped["existing_plans"]) == {*QUEUE_PLANS, "count"}
    assert set(shipped["existing_devices"]) == set(QUEUE_DEVICES)


def test_every_plan_has_a_described_parameter_list():
    shipped = yaml.safe_load(shipped_file(EXISTING_PLANS_AND_DEVICES).read_text())
    for name in QUEUE_PLANS:
        plan = shipped["existing_plans"][name]
        assert plan["description"], name
        for p in plan["parameters"]:
            assert p.get("description"), (name, p["name"])
            assert "annotation" in p, (name, p["name"])  # resolvable annotations only
        devices = [p for p in plan["parameters"] if p.get("convert_device_names")]
        assert devices, name  # device parameters are converted from names


def test_the_card_validates_by_device_names():
    ok, msg = _validate("exchange_quench_image_anneal_reimage", **DEVS, exchange_s=3600.0,
                        cycles=1, profile_positions_mm=[0.5, 1.0], record="record",
                        md={"operator": "x"})
    assert ok, msg
    ok, msg = _validate("arrhenius_campaign", **DEVS, temperatures_K=[423.15, 473.15],
                        durations_s=[600, 300], record="record")
    assert ok, msg


def test_bad_names_and_types_are_refused_at_submission():
    ok, msg = _validate("quench", stage="stage", clock="clock", temperature_K="cold")
    assert not ok and "temperature_K" in msg
    ok, msg = _validate("anneal", furnace="furnace", handler="handler", clock="clock",
                        temperature_K=473.15, duration_s=600, group="imaging")
    assert not ok  # the imaging group may not anneal
    ok, msg = _validate("sims_image", sims="sims", stage="stage", clock="clock",
                        group="imaging")
    assert ok, msg
    ok, msg = _validate("sims_image", sims="sims", stage="stage", clock="clock",
                        acquisition_s=600.0, unknown_argument=1)
    assert not ok and "unknown_argument" in msg


class _Queue:
    """``lltolab queue --sim --json`` in a subprocess."""

    def __init__(self, catalog: Path, time_scale: float | None = None) -> None:
        # stderr goes to a file: a pipe nobody reads would fill and block the process
        self.catalog = catalog
        env = dict(os.environ)
        env.pop("LLTOLAB_QUEUE_TIME_SCALE", None)
        if time_scale is not None:  # a free-running lab clock (default: the stepped one)
            env["LLTOLAB_QUEUE_TIME_SCALE"] = str(time_scale)
        self.log = catalog.parent / f"queue-{time.monotonic_ns()}.log"
        with self.log.open("w") as log:
            self.proc = subprocess.Popen(
                [*LLTOLAB, "queue", "--sim", "--catalog", str(catalog), "--zmq-control-port",
                 "0", "--zmq-info-port", "0", "--json"],
                stdout=subprocess.PIPE, stderr=log, text=True, env=env)
        line = self.proc.stdout.readline()
        if not line:
            self.proc.wait(timeout=30)
            raise AssertionError(f"lltolab queue printed nothing: {self.log_tail()}")
        self.addr = json.loads(line)
        assert set(self.addr) == {"zmq_control_addr", "zmq_info_addr"}
        assert self.addr["zmq_control_addr"].startswith("tcp://127.0.0.1:")

    def api(self):
        from bluesky_queueserver_api.zmq import REManagerAPI

        return REManagerAPI(zmq_control_addr=self.addr["zmq_control_addr"],
                            zmq_info_addr=self.addr["zmq_info_addr"])

    def log_tail(self, n: int = 8000) -> str:
        """The ends of ``lltolab queue``'s and the RE Manager's logs (for failure messages)."""
        from lltolab.catalog import resolve_target

        manager = resolve_target(str(self.catalog)).state_dir / "re-manager.log"
        texts = [p.read_text(errors="replace")[-n:] for p in (self.log, manager) if p.is_file()]
        return "\n----\n".join(texts)

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout=120)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()


def _run_queue(api, items, timeout_s: float) -> list[dict]:
    from bluesky_queueserver_api import BPlan

    api.environment_open()
    api.wait_for_idle(timeout=180)
    assert api.status()["worker_environment_exists"]
    for name, kwargs in items:
        result = api.item_add(BPlan(name, **kwargs))
        assert result["success"], result["msg"]
    api.queue_start()
    return []


def _history(api) -> list[dict]:
    return api.history_get()["items"]


def _catalog_runs(catalog: Path):
    from lltolab.catalog import close_catalogs, list_runs, open_catalog

    try:
        return list_runs(open_catalog(str(catalog), create=False), n=200)
    finally:
        close_catalogs()


@pytest.mark.slow
def test_queue_runs_plans_by_name_and_restarts_keep_sample_and_scan_ids(tmp_path):
    """Queue, disconnect, reconnect; stop (SIGTERM) and restart: scan_id and sample go on."""
    _require_redis()
    catalog = tmp_path / "catalog"
    q = _Queue(catalog)
    try:
        api = q.api()
        _run_queue(api, [("transfer", {"handler": "handler", "clock": "clock",
                                       "location": "sims_stage", "record": "record"}),
                         ("quench", {"stage": "stage", "clock": "clock",
                                     "temperature_K": 250.0, "record": "record"})], 300)
        api.close()  # the client goes away while the queue runs
        api = q.api()
        api.wait_for_idle(timeout=300)
        items = _history(api)
        assert [i["result"]["exit_status"] for i in items] == ["completed", "completed"], (
            [(i["result"].get("msg"), i["result"].get("traceback")) for i in items],
            q.log_tail())
        api.close()
    finally:
        assert q.stop() == 0
    first = _catalog_runs(catalog)
    assert [r.plan_name for r in first][-2:] in (["transfer", "quench"], ["quench", "transfer"])
    scans = sorted(r.scan_id for r in first)
    sample = {r.sample_id for r in first}
    assert len(sample) == 1 and None not in sample

    q = _Queue(catalog)  # the same catalog: the same sample record and scan_id sequence
    try:
        api = q.api()
        _run_queue(api, [("store", {"clock": "clock", "duration_s": 600.0,
                                    "record": "record"})], 300)
        api.wait_for_idle(timeout=300)
        last = _history(api)[-1]["result"]
        assert last["exit_status"] == "completed", (last.get("msg"), last.get("traceback"),
                                                    q.log_tail())
        api.close()
    finally:
        assert q.stop() == 0
    runs = _catalog_runs(catalog)
    new = [r for r in runs if r.scan_id not in scans]
    assert [r.plan_name for r in new] == ["store"]
    assert new[0].scan_id == max(scans) + 1
    assert new[0].sample_id in sample


@pytest.mark.slow
def test_queue_runs_the_workflow_and_the_campaign_by_device_names(tmp_path):
    """The full workflow and an Arrhenius campaign queued by device names land in the catalog."""
    _require_redis()
    catalog = tmp_path / "catalog"
    q = _Queue(catalog)
    try:
        api = q.api()
        _run_queue(api, [
            ("exchange_quench_image_anneal_reimage",
             {**DEVS, "exchange_s": 3600.0, "anneal_K": 473.15, "anneal_s": 1800.0,
              "cycles": 1, "profile_positions_mm": [0.1, 0.5, 1.0], "record": "record",
              "md": {"operator": "pytest"}}),
            ("arrhenius_campaign",
             {**DEVS, "temperatures_K": [423.15], "durations_s": [600.0],
              "exchange_s": 600.0, "profile_positions_mm": None, "record": "record"}),
        ], 900)
        api.close()
        time.sleep(1.0)
        api = q.api()  # reconnect
        api.wait_for_idle(timeout=900)
        items = _history(api)
        api.close()
    finally:
        assert q.stop() == 0
    assert [i["name"] for i in items] == ["exchange_quench_image_anneal_reimage",
                                          "arrhenius_campaign"]
    assert all(i["result"]["exit_status"] == "completed" for i in items), (items, q.log_tail())
    uids = [u for i in items for u in i["result"]["run_uids"]]
    assert len(uids) == 14 + 12
    runs = {r.uid: r for r in _catalog_runs(catalog)}
    assert set(uids) <= set(runs)
    assert all(runs[u].exit_status == "success" for u in uids)
    names = [runs[u].plan_name for u in uids[:14]]
    assert names[:5] == ["isotope_exchange", "transfer", "quench", "sims_image",
                         "sims_line_profile"]
    assert names.count("anneal") == 1


def test_operator_functions_show_and_answer_file_steps(tmp_path):
    """What a queue client runs with function_execute: the pending steps, answered by id."""
    from lltolab.devices import ExchangeCell, FileConfirmation, SampleHandler
    from lltolab.queue import operator_functions

    conf = FileConfirmation(tmp_path, poll_s=0.05)
    devices = {"cell": ExchangeCell(name="cell", confirmation=conf, timeout_s=30),
               "handler": SampleHandler(name="handler", confirmation=conf, timeout_s=30)}
    pending, answer = operator_functions(devices)
    assert pending() == []
    status = devices["cell"].set("dip")
    deadline = time.monotonic() + 10
    while not pending() and time.monotonic() < deadline:
        time.sleep(0.05)
    (step,) = pending()
    assert step["action"] == "dip" and "6LiNO3" in step["message"]
    with pytest.raises(ValueError, match="no pending operator step"):
        answer("0000", True)
    assert answer(step["request_id"], True, "done") == step["request_id"]
    status.wait(timeout=10)
    assert devices["cell"].immersed.get() == 1 and pending() == []


def test_queue_command_rejects_bad_input_in_one_line(tmp_path):
    cases = [
        (["--sim", "--redis", "redis://127.0.0.1:1", "--catalog", str(tmp_path)], 1,
         "no Redis server answers"),
        (["--sim", "--zmq-control-port", "70000"], 2, "port"),
        (["--sim", "--zmq-control-port", "5000", "--zmq-info-port", "5000"], 2, "differ"),
        (["--config", str(tmp_path / "missing.toml")], 2, "does not exist"),
        (["--sim", "--redis", "http://x:1"], 2, "redis://HOST:PORT"),
        ([], 2, "--sim"),
    ]
    for args, code, text in cases:
        out = subprocess.run([*LLTOLAB, "queue", *args], capture_output=True, text=True,
                             timeout=120)
        assert out.returncode == code, (args, out.stderr)
        assert text in out.stderr and "Traceback" not in out.stderr, (args, out.stderr)


@pytest.mark.slow
def test_queue_with_instruments_waits_for_operator_answers_from_another_process(tmp_path):
    """``--config`` mode against the simulated instruments on the wire: a queued transfer
    posts its operator step (no console in the worker), ``lltolab confirm`` answers it."""
    _require_redis()
    serve = subprocess.Popen([*LLTOLAB, "sim", "serve", "--json", "--exports",
                              str(tmp_path / "exports")], stdout=subprocess.PIPE,
                             stderr=subprocess.DEVNULL, text=True)
    try:
        res = json.loads(serve.stdout.readline())
        catalog = tmp_path / "catalog"
        config = tmp_path / "lab.toml"
        config.write_text(
            f'[sample]\nid = "LLTO-cfg"\n[catalog]\npath = "{catalog}"\n'
            f'[cryostage]\nresource = "{res["cryostage"]}"\n'
            f'[furnace]\nport = "{res["furnace"]}"\n'
            f'[sims]\nexport_folder = "{res["exports"]}"\n')
        proc = subprocess.Popen(
            [*LLTOLAB, "queue", "--config", str(config), "--zmq-control-port", "0",
             "--zmq-info-port", "0", "--json"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            addr = json.loads(proc.stdout.readline())
            from bluesky_queueserver_api import BPlan
            from bluesky_queueserver_api.zmq import REManagerAPI

            api = REManagerAPI(zmq_control_addr=addr["zmq_control_addr"])
            api.environment_open()
            api.wait_for_idle(timeout=180)
            assert api.item_add(BPlan("transfer", handler="handler", clock="clock",
                                      location="sims_stage", record="record"))["success"]
            api.queue_start()
            steps: list = []
            deadline = time.monotonic() + 120
            while not steps and time.monotonic() < deadline:
                out = subprocess.run([*LLTOLAB, "confirm", "--list", "--json", "--config",
                                      str(config)], capture_output=True, text=True,
                                     timeout=120)
                assert out.returncode == 0, out.stderr
                steps = json.loads(out.stdout)
            assert len(steps) == 1 and steps[0]["params"]["location"] == "sims_stage"
            done = subprocess.run([*LLTOLAB, "confirm", steps[0]["request_id"], "--yes",
                                   "--config", str(config)], capture_output=True, text=True,
                                  timeout=120)
            assert done.returncode == 0, done.stderr
            api.wait_for_idle(timeout=120)
            (item,) = api.history_get()["items"]
            assert item["result"]["exit_status"] == "completed", item["result"]
            api.close()
        finally:
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(timeout=120) == 0
        runs = _catalog_runs(catalog)
        assert [r.plan_name for r in runs] == ["transfer"]
        assert runs[0].sample_id == "LLTO-cfg"
    finally:
        serve.send_signal(signal.SIGTERM)
        serve.wait(timeout=60)


def test_stopping_the_queue_mid_plan_aborts_the_run_and_keeps_its_data(tmp_path):
    """Stopping the queue while a furnace heats for an anneal: the run is closed as aborted."""
    _require_redis()
    catalog = tmp_path / "catalog"
    # a free-running lab clock at 60 lab s per wall s: heating to 400 °C takes minutes of
    # wall time (lab waits jump at once on either clock; temperature moves do not)
    q = _Queue(catalog, time_scale=60.0)
    try:
        api = q.api()
        _run_queue(api, [("anneal", {"furnace": "furnace", "handler": "handler",
                                     "clock": "clock", "temperature_K": 673.15,
                                     "duration_s": 3600.0, "record": "record"})], 300)
        deadline = time.monotonic() + 120
        while api.status()["running_item_uid"] is None and time.monotonic() < deadline:
            time.sleep(0.2)
        time.sleep(3.0)  # the furnace is heating
        api.close()
    finally:
        t0 = time.monotonic()
        assert q.stop() == 0
        assert time.monotonic() - t0 < 120
    (run,) = _catalog_runs(catalog)
    assert run.plan_name == "anneal"
    assert run.exit_status == "abort"
