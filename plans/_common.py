"""Shared pieces of the plans: metadata, lab-time reads, history segments."""

from __future__ import annotations

from collections.abc import Generator, Mapping
from typing import Any

import bluesky.plan_stubs as bps
from bluesky.utils import Msg

from lltolab.vocabulary import QUENCH_K, ROOM_K

__all__ = ["plan_md", "lab_time", "record_segment", "ROOM_K", "QUENCH_K", "PlanGen"]

PlanGen = Generator[Msg, Any, Any]


def plan_md(
    plan_name: str, plan_args: Mapping[str, Any], md: Mapping[str, Any] | None,
    **extra: Any,
) -> dict[str, Any]:
    """Start-document metadata: ``plan_name``, JSON-friendly ``plan_args``, extras, user md."""
    args = {k: _jsonable(v) for k, v in plan_args.items()}
    out: dict[str, Any] = {"plan_name": plan_name, "plan_args": args, **extra}
    out.update(md or {})
    return out


def _jsonable(value: Any) -> Any:
    if hasattr(value, "name") and hasattr(value, "read"):
        return value.name  # a device: its name (queueserver style)
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, str | int | float | bool) or value is None:
        return value
    return repr(value)


def lab_time(clock: Any) -> PlanGen:
    """Read the lab clock (s)."""
    value = yield from bps.rd(clock.time)
    return float(value)


def record_segment(
    record: Any, start_s: float, end_s: float, temperature_K: float | list[float],
    location: str, immersed: bool, source: str,
) -> PlanGen:
    """Append one segment to the sample's thermal history (no-op without a record)."""
    if record is None:
        return
    yield from bps.abs_set(record.segment, {
        "start_s": start_s, "end_s": end_s, "temperature_K": temperature_K,
        "location": location, "immersed": immersed, "source": source,
    }, wait=True)
