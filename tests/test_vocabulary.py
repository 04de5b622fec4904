"""The shared vocabulary is what the devices, plans and simulators actually use."""

from __future__ import annotations

from pathlib import Path

import lltolab.plans as plans
from lltolab import vocabulary as v
from lltolab.devices import SEGMENT_KEYS, SampleHandler, SurfaceLabExport
from lltolab.sim_devices import LOCATIONS


def test_sims_data_keys_are_the_devices_keys(tmp_path: Path) -> None:
    sims = SurfaceLabExport(tmp_path, name=v.DeviceName.SIMS)
    image = sims.describe()
    config = sims.describe_configuration()
    sims.mode.put("line_profile")
    profile = sims.describe()
    for key in (v.DataKey.LI6_COUNTS, v.DataKey.LI7_COUNTS, v.DataKey.C_FRACTION):
        assert key in image, key
    for key in (v.DataKey.PROFILE_X_MM, v.DataKey.PROFILE_C):
        assert key in profile, key
    for key in (v.DataKey.FIELD_OF_VIEW_X_UM, v.DataKey.FIELD_OF_VIEW_Y_UM,
                v.DataKey.PULSES_PER_PIXEL):
        assert key in config, key


def test_plan_names_are_the_plans() -> None:
    names = [value for key, value in vars(v.PlanName).items() if key.isupper()]
    assert len(names) == 7
    for name in names:
        assert callable(getattr(plans, name)), name
    assert set(v.IMAGING_PLANS) <= set(names)


def test_locations_are_shared_by_devices_and_simulator() -> None:
    assert LOCATIONS == v.SAMPLE_LOCATIONS
    assert SEGMENT_KEYS == v.SEGMENT_KEYS
    handler = SampleHandler(name="handler")
    assert handler.position == v.Location.STORAGE
    for bad in ("bench", ""):
        try:
            SampleHandler(name="h", initial_location=bad)
        except ValueError as exc:
            assert repr(bad) in str(exc)
        else:
            raise AssertionError(f"location {bad!r} accepted")


def test_reference_values() -> None:
    assert v.QUENCH_K < v.STAGE_IMAGING_MAX_K < v.ROOM_K
    assert abs(v.BOUNDARY_WIDTH_CM - v.BOUNDARY_WIDTH_M * 100.0) < 1e-20
    assert set(v.WARM_SOURCES) <= {val for k, val in vars(v.SegmentSource).items()
                                   if k.isupper()}
