"""Every plan rejects every bad argument before its first message (property-based).

Real device objects without any instrument behind them: a TemperatureLoop on callables for
the stage and the furnace (their limits feed ``check_value``), the lab clock on a virtual
clock, the operator devices with a callback confirmation, an export folder, a sample record.
A plan is a generator: ``next(plan)`` runs its checks and yields its first message.
"""

import math
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import lltolab.plans as plans
from lltolab.comm import TemperatureLoop
from lltolab.devices import (
    CallbackConfirmation,
    ExchangeCell,
    LabClock,
    SampleHandler,
    SampleRecord,
    SurfaceLabExport,
)
from lltolab.sim_devices import VirtualClock


@pytest.fixture(scope="module")
def devices(tmp_path_factory) -> dict[str, Any]:
    folder = tmp_path_factory.mktemp("exports")
    ok = CallbackConfirmation(lambda request: None)
    return {
        "cell": ExchangeCell(name="cell", confirmation=ok),
        "handler": SampleHandler(name="handler", confirmation=ok),
        "clock": LabClock(name="clock", source=VirtualClock(1.0)),
        "stage": TemperatureLoop(name="stage", read_temperature=lambda: 295.0,
                                 write_setpoint=lambda v: None, limits=(77.0, 500.0)),
        "furnace": TemperatureLoop(name="furnace", read_temperature=lambda: 295.0,
                                   write_setpoint=lambda v: None, limits=(273.15, 1273.15)),
        "sims": SurfaceLabExport(folder, name="sims"),
        "record": SampleRecord(name="record", sample_id="LLTO-test"),
    }


def _pick(devices: dict[str, Any], *names: str) -> dict[str, Any]:
    return {n: devices[n] for n in names}


# plan -> (its device parameters, valid values of its other parameters)
VALID: dict[str, tuple[tuple[str, ...], dict[str, Any]]] = {
    "isotope_exchange": (("cell", "handler", "clock"), {"duration_s": 3600.0}),
    "transfer": (("handler", "clock"), {"location": "furnace"}),
    "quench": (("stage", "clock"), {"temperature_K": 163.15}),
    "sims_image": (("sims", "stage", "clock"), {"acquisition_s": 600.0, "pixel_um": 1.0,
                                                "allow_unfrozen": False}),
    "sims_line_profile": (("sims", "stage", "clock"), {"positions_mm": [0.1, 0.5],
                                                       "acquisition_s": 600.0}),
    "anneal": (("furnace", "handler", "clock"), {"temperature_K": 473.15, "duration_s": 600.0,
                                                 "check_interval_s": 60.0, "safe_K": 295.15,
                                                 "cool_furnace": True}),
    "store": (("clock",), {"duration_s": 3600.0, "temperature_K": 295.15}),
    "image_cycle": (("handler", "clock", "stage", "sims"),
                    {"profile_positions_mm": [0.5], "quench_K": 163.15,
                     "acquisition_s": 600.0}),
    "exchange_quench_image_anneal_reimage": (
        ("cell", "handler", "clock", "stage", "furnace", "sims"),
        {"exchange_s": 3600.0, "anneal_K": 473.15, "anneal_s": 600.0, "cycles": 1,
         "profile_positions_mm": [0.5], "quench_K": 163.15, "acquisition_s": 600.0}),
    "arrhenius_campaign": (
        ("cell", "handler", "clock", "stage", "furnace", "sims"),
        {"temperatures_K": [423.15, 473.15], "durations_s": [600.0, 300.0],
         "target_length_m": 0.5e-3, "exchange_s": 3600.0, "profile_positions_mm": [0.5],
         "max_duration_s": 86400.0}),
}

_not_a_number = st.one_of(st.none(), st.booleans(), st.text(max_size=5),
                          st.lists(st.floats(), max_size=2))
_bad_positive = st.one_of(
    _not_a_number, st.sampled_from([math.nan, math.inf, -math.inf, 0.0, -1.0, 0]),
    st.floats(max_value=0.0), st.integers(max_value=0))
_bad_device = st.one_of(st.text(max_size=8), st.integers(), st.none(), st.just(object()),
                        st.lists(st.integers(), max_size=2))
_bad_positions = st.one_of(
    st.text(min_size=1, max_size=5), st.integers(), st.just({"a": 1}),
    st.lists(st.sampled_from([math.nan, math.inf, -1.0, "x", None, True]), min_size=1,
             max_size=3).map(lambda xs: [0.5, *xs]))
_bad_md = st.one_of(st.text(max_size=5), st.integers(), st.lists(st.integers(), max_size=2),
                    st.just({1: "x"}))
_bad_bool = st.one_of(st.integers(), st.text(max_size=3), st.none(), st.floats())
_bad_temperature_list = st.one_of(
    st.just([]), st.text(min_size=1, max_size=4), st.integers(),
    st.lists(_bad_positive, min_size=1, max_size=3),
    st.just([5000.0]), st.just([100.0]))  # outside the furnace limits

BAD: dict[str, st.SearchStrategy[Any]] = {
    "duration_s": st.one_of(_bad_positive, st.just(61 * 86400.0)),
    "temperature_K": st.one_of(_bad_positive, st.just(5000.0)),
    "acquisition_s": _bad_positive,
    "pixel_um": _bad_positive,
    "check_interval_s": _bad_positive,
    "safe_K": st.one_of(_bad_positive, st.just(5000.0)),
    "exchange_s": st.one_of(_bad_positive, st.just(61 * 86400.0)),
    "anneal_K": st.one_of(_bad_positive, st.just(5000.0)),
    "anneal_s": _bad_positive,
    "quench_K": st.one_of(_bad_positive, st.just(5.0), st.just(2000.0)),
    "target_length_m": _bad_positive,
    "max_duration_s": _bad_positive,
    "cycles": st.one_of(st.integers(max_value=-1), st.integers(min_value=101), st.floats(),
                        st.booleans(), st.text(max_size=3), st.none()),
    "location": st.one_of(st.text(max_size=10).filter(
        lambda s: s not in ("storage", "bath", "sims_stage", "furnace")), st.integers(),
        st.none()),
    "allow_unfrozen": _bad_bool,
    "cool_furnace": _bad_bool,
    "positions_mm": st.one_of(_bad_positions, st.just([]), st.none()),
    "profile_positions_mm": _bad_positions,
    "temperatures_K": _bad_temperature_list,
    "durations_s": st.one_of(st.lists(_bad_positive, min_size=2, max_size=2), st.just([60.0]),
                             st.text(min_size=1, max_size=3), st.integers()),
    "record": _bad_device.filter(lambda v: v is not None),
    "md": _bad_md,
}


def _cases() -> list[tuple[str, str]]:
    out = []
    for plan, (dev_names, values) in VALID.items():
        for name in (*dev_names, *values, "record", "md"):
            out.append((plan, name))
    return out


@pytest.mark.parametrize("plan_name", list(VALID))
def test_valid_arguments_reach_the_first_message(plan_name, devices):
    """The same fixtures with good values do start: the property below can fail."""
    dev_names, values = VALID[plan_name]
    gen = getattr(plans, plan_name)(**_pick(devices, *dev_names), **values,
                                    record=devices["record"], md={"k": 1})
    msg = next(gen)
    gen.close()
    assert msg.command in ("open_run", "read", "locate")


@pytest.mark.parametrize("plan_name,arg", _cases())
@settings(max_examples=15, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_every_bad_argument_is_rejected_before_the_first_message(plan_name, arg, devices,
                                                                 data):
    dev_names, values = VALID[plan_name]
    kwargs: dict[str, Any] = {**_pick(devices, *dev_names), **values,
                              "record": devices["record"], "md": {}}
    bad = data.draw(_bad_device if arg in dev_names else BAD[arg], label=arg)
    kwargs[arg] = bad
    gen = getattr(plans, plan_name)(**kwargs)
    with pytest.raises((TypeError, ValueError)) as info:
        next(gen)
    # the message names the argument (or, for a limit, the device that holds it)
    text = str(info.value)
    assert arg in text or any(d in text for d in ("stage", "furnace")), text


def test_campaign_with_a_bad_duration_is_rejected_before_the_exchange(devices):
    """Regression: a non-positive anneal duration used to be found after exchange + imaging."""
    gen = plans.arrhenius_campaign(
        **_pick(devices, "cell", "handler", "clock", "stage", "furnace", "sims"),
        temperatures_K=[423.15, 473.15], durations_s=[600.0, -5.0])
    with pytest.raises(ValueError, match="durations_s"):
        next(gen)


def test_workflow_with_a_bad_imaging_argument_is_rejected_before_the_exchange(devices):
    gen = plans.exchange_quench_image_anneal_reimage(
        **_pick(devices, "cell", "handler", "clock", "stage", "furnace", "sims"),
        acquisition_s=math.nan)
    with pytest.raises(ValueError, match="acquisition_s"):
        next(gen)
