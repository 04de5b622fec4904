"""lltolab.config: typed sections, the devices' own defaults, the generated template."""

from __future__ import annotations

import inspect
import tomllib

import pytest

from lltolab.config import SessionConfig, device_default, example_config, load_config
from lltolab.devices import CryoStage, Furnace, SurfaceLabExport


def _default(cls: type, name: str):
    return inspect.signature(cls).parameters[name].default


def test_defaults_are_the_devices_own() -> None:
    cfg = SessionConfig()
    assert cfg.cryostage.limits_K == tuple(_default(CryoStage, "limits"))
    assert cfg.cryostage.tolerance_K == _default(CryoStage, "tolerance")
    assert cfg.cryostage.settle_time_s == _default(CryoStage, "settle_time")
    assert cfg.cryostage.timeout_s == _default(CryoStage, "timeout")
    assert cfg.furnace.limits_K == tuple(_default(Furnace, "limits"))
    assert cfg.furnace.slave_address == _default(Furnace, "slave_address")
    assert cfg.furnace.timeout_s == _default(Furnace, "timeout")
    assert cfg.sims.timeout_s == _default(SurfaceLabExport, "timeout_s")
    with pytest.raises(ValueError, match="no parameter 'nonsense'"):
        device_default("CryoStage", "nonsense")


def test_template_is_generated_from_the_sections_and_round_trips() -> None:
    text = example_config()
    data = tomllib.loads(text)
    assert set(data) == {"sample", "catalog", "cryostage", "furnace", "sims", "operator",
                         "suspenders"}
    cfg = load_config(data)
    defaults = SessionConfig()
    # the template shows the same defaults the sessions use
    assert cfg.cryostage.limits_K == defaults.cryostage.limits_K
    assert cfg.furnace.limits_K == defaults.furnace.limits_K
    assert cfg.cryostage.resource and cfg.furnace.port and cfg.sims.export_folder
    cfg.require_instruments()
    assert "# uri = " in text and "# heater_range = " in text


def test_file_values_override_and_are_typed(tmp_path) -> None:
    path = tmp_path / "lab.toml"
    path.write_text('[cryostage]\nresource = "TCPIP::h::1::SOCKET"\nlimits_K = [80, 400]\n'
                    'timeout_s = 100\n[operator]\nconfirmation = "file"\nfolder = "x"\n')
    cfg = load_config(path)
    assert cfg.cryostage.limits_K == (80.0, 400.0)
    assert cfg.cryostage.timeout_s == 100.0 and isinstance(cfg.cryostage.timeout_s, float)
    assert cfg.operator.folder == "x"
    assert set(cfg) == {"cryostage", "operator"}
    assert cfg["cryostage"]["resource"] == "TCPIP::h::1::SOCKET"
    assert "catalog" not in cfg and cfg.get("catalog", {}) == {}


@pytest.mark.parametrize(("data", "match"), [
    ({"cryostage": {"limit_K": [1, 2]}}, r"\[cryostage\] has an unknown key 'limit_K'"),
    ({"cryostat": {}}, r"unknown section \[cryostat\]"),
    ({"cryostage": {"limits_K": [1, 2, 3]}}, r"\[cryostage\] limits_K must be \[low, high\]"),
    ({"furnace": {"slave_address": 1.5}}, r"\[furnace\] slave_address must be an integer"),
    ({"furnace": {"timeout_s": "long"}}, r"\[furnace\] timeout_s must be a number.*'long'"),
    ({"suspenders": {"stage_imaging_max_K": -3}}, r"stage_imaging_max_K.*> 0 K"),
    ({"sample": "LLTO"}, r"\[sample\] must be a table"),
])
def test_bad_values_name_the_key_and_the_value(data, match) -> None:
    with pytest.raises(ValueError, match=match):
        load_config(data)


def test_bad_toml_is_a_clear_error(tmp_path) -> None:
    path = tmp_path / "lab.toml"
    path.write_text("[cryostage\n")
    with pytest.raises(ValueError, match="not valid TOML"):
        load_config(path)


def test_a_config_file_never_silently_runs_the_simulator(tmp_path) -> None:
    from lltolab.catalog import close_catalogs  # noqa: PLC0415
    from lltolab.session import start  # noqa: PLC0415

    path = tmp_path / "lab.toml"
    path.write_text('[sample]\nid = "LLTO-1"\n[suspenders]\nstage_imaging_max_K = 170.0\n')
    with pytest.raises(ValueError, match=r"lacks the \[cryostage\] section"):
        start(path, catalog=tmp_path / "cat")  # sim not given: real instruments
    assert not (tmp_path / "cat").exists()  # refused before anything was built
    # asked for explicitly, the simulator takes the file's sample and suspender settings
    try:
        with start(path, sim=True, catalog=tmp_path / "cat", callbacks=False) as s:
            assert s.lab is not None and s.RE.md["simulated"] is True
            assert s.RE.md["sample_id"] == "LLTO-1"
    finally:
        close_catalogs()
