"""Up-front argument checks shared by the plans.

Every plan calls these before its first message, so a bad argument is rejected before any
instrument moves or any run opens (a long campaign must not fail after its exchange step).
Wrong types raise :class:`TypeError`, bad values :class:`ValueError`; both name the argument,
the value and the limit.
"""

import math
from collections.abc import Mapping, Sequence
from typing import Any

__all__ = [
    "check_number",
    "check_bool",
    "check_movable",
    "check_readable",
    "check_record",
    "check_md",
    "check_positions",
    "check_count",
]


def check_number(
    name: str, value: Any, *, positive: bool = True, upper: float | None = None,
    unit: str = "",
) -> float:
    """A finite real number (> 0 with ``positive``, <= ``upper`` if given); returns a float."""
    suffix = f" {unit}" if unit else ""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"{name} must be a number{suffix}, got {value!r}")
    if not math.isfinite(value):
        raise ValueError(f"{name} must be finite, got {value!r}")
    if positive and not value > 0:
        raise ValueError(f"{name} must be > 0{suffix}, got {value!r}")
    if upper is not None and value > upper:
        raise ValueError(f"{name}={value!r}{suffix} is above the limit {upper!r}{suffix}")
    return float(value)


def check_bool(name: str, value: Any) -> bool:
    """A real boolean (not 0/1, not a string)."""
    if not isinstance(value, bool):
        raise TypeError(f"{name} must be True or False, got {value!r}")
    return value


def _device_name(value: Any) -> str | None:
    name = getattr(value, "name", None)
    return name if isinstance(name, str) else None


def check_movable(name: str, value: Any) -> Any:
    """A bluesky Movable device (``set`` and ``read``)."""
    if isinstance(value, str | bytes) or not (
        callable(getattr(value, "set", None)) and callable(getattr(value, "read", None))
        and _device_name(value) is not None
    ):
        raise TypeError(f"{name} must be a movable device (with set/read), got {value!r}")
    return value


def check_readable(name: str, value: Any) -> Any:
    """A bluesky Readable device (``read`` and ``describe``)."""
    if isinstance(value, str | bytes) or not (
        callable(getattr(value, "read", None)) and callable(getattr(value, "describe", None))
        and _device_name(value) is not None
    ):
        raise TypeError(f"{name} must be a readable device (with read/describe), got {value!r}")
    return value


def check_record(value: Any) -> Any:
    """None or a SampleRecord-like device (``segment``, ``sample_id``, ``history``)."""
    if value is None:
        return None
    if isinstance(value, str | bytes) or not all(
        hasattr(value, attr) for attr in ("segment", "sample_id", "history")
    ):
        raise TypeError(f"record must be a SampleRecord device or None, got {value!r}")
    return value


def check_md(value: Any) -> dict[str, Any]:
    """None or a mapping with string keys; returns a new dict."""
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise TypeError(f"md must be a dict of metadata or None, got {value!r}")
    bad = [k for k in value if not isinstance(k, str)]
    if bad:
        raise TypeError(f"md keys must be strings, got {bad!r}")
    return dict(value)


def check_positions(
    name: str, value: Any, *, allow_none: bool = False, limit_mm: float = 1000.0,
) -> list[float] | None:
    """A non-empty sequence of finite positions in mm, each in [0, ``limit_mm``]."""
    if value is None:
        if allow_none:
            return None
        raise TypeError(f"{name} must be a sequence of positions (mm), got None")
    if isinstance(value, str | bytes | Mapping) or not isinstance(value, Sequence):
        raise TypeError(f"{name} must be a sequence of positions (mm), got {value!r}")
    if not value:
        if allow_none:
            return None
        raise ValueError(f"{name} must hold at least one position (mm), got {value!r}")
    out = []
    for p in value:
        if isinstance(p, bool) or not isinstance(p, int | float):
            raise TypeError(f"{name} must hold numbers (mm), got {p!r}")
        if not (math.isfinite(p) and 0 <= p <= limit_mm):
            raise ValueError(f"{name} must hold finite positions in [0, {limit_mm}] mm, "
                             f"got {p!r}")
        out.append(float(p))
    return out


def check_count(name: str, value: Any, low: int, high: int) -> int:
    """An integer in [``low``, ``high``] (booleans rejected)."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an integer, got {value!r}")
    if not low <= value <= high:
        raise ValueError(f"{name} must be an integer in [{low}, {high}], got {value!r}")
    return value
