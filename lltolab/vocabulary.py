"""The names and reference values every layer shares (imports nothing else of lltolab).

Plans write these names into documents, devices accept them, the simulators follow them and the
analysis reads them back; defining them once here keeps the layers speaking the same language.
Values are plain ``str``/``float`` (JSON- and msgpack-friendly), grouped in namespaces:

``PlanName``
    The ``plan_name`` of every run a plan makes (start document).
``DeviceName``
    The names the session gives the devices; ophyd builds data keys as ``{device}_{component}``.
``DataKey``
    Event data and configuration keys the analysis reads from SIMS runs.
``Location``
    Where the sample can be (:data:`SAMPLE_LOCATIONS`).
``SegmentSource``
    The ``source`` of a thermal-history segment (:data:`SEGMENT_KEYS`).

Reference values: :data:`ROOM_K`, :data:`QUENCH_K`, :data:`STAGE_IMAGING_MAX_K` and the grain
boundary width δ (:data:`BOUNDARY_WIDTH_M`, :data:`BOUNDARY_WIDTH_CM`); see docs/science.md.
"""

from __future__ import annotations

from typing import Final

__all__ = [
    "PlanName",
    "IMAGING_PLANS",
    "DeviceName",
    "WORKFLOW_DEVICES",
    "DataKey",
    "Location",
    "SAMPLE_LOCATIONS",
    "SegmentSource",
    "SEGMENT_KEYS",
    "SEGMENT_OVERLAP_S",
    "WARM_SOURCES",
    "ROOM_K",
    "QUENCH_K",
    "STAGE_IMAGING_MAX_K",
    "BOUNDARY_WIDTH_M",
    "BOUNDARY_WIDTH_CM",
]


class PlanName:
    """``plan_name`` of the runs the plans make."""

    ISOTOPE_EXCHANGE: Final = "isotope_exchange"
    TRANSFER: Final = "transfer"
    QUENCH: Final = "quench"
    SIMS_IMAGE: Final = "sims_image"
    SIMS_LINE_PROFILE: Final = "sims_line_profile"
    ANNEAL: Final = "anneal"
    STORE: Final = "store"


IMAGING_PLANS: Final = (PlanName.SIMS_IMAGE, PlanName.SIMS_LINE_PROFILE)
"""Plans that acquire SIMS data (the runs ``lltolab analyze`` takes)."""


class DeviceName:
    """Names of the session's devices (and so the prefixes of their data keys)."""

    CELL: Final = "cell"
    HANDLER: Final = "handler"
    CLOCK: Final = "clock"
    STAGE: Final = "stage"
    FURNACE: Final = "furnace"
    SIMS: Final = "sims"
    RECORD: Final = "record"


WORKFLOW_DEVICES: Final = (DeviceName.CELL, DeviceName.HANDLER, DeviceName.CLOCK,
                           DeviceName.STAGE, DeviceName.FURNACE, DeviceName.SIMS)
"""The devices the workflow plans take, in their parameter order."""


class DataKey:
    """Data keys of the SIMS device (named :attr:`DeviceName.SIMS`) that the analysis reads.

    Event data: the ⁶Li and ⁷Li count images (pixel rows = y, columns = x) and the line
    profile (x in mm from the liquid level, ⁶Li fraction C). Configuration: field of view (µm)
    and primary pulses per pixel N.
    """

    LI6_COUNTS: Final = f"{DeviceName.SIMS}_li6_counts"
    LI7_COUNTS: Final = f"{DeviceName.SIMS}_li7_counts"
    C_FRACTION: Final = f"{DeviceName.SIMS}_c_fraction"
    PROFILE_X_MM: Final = f"{DeviceName.SIMS}_profile_x_mm"
    PROFILE_C: Final = f"{DeviceName.SIMS}_profile_c"
    FIELD_OF_VIEW_X_UM: Final = f"{DeviceName.SIMS}_field_of_view_x_um"
    FIELD_OF_VIEW_Y_UM: Final = f"{DeviceName.SIMS}_field_of_view_y_um"
    PULSES_PER_PIXEL: Final = f"{DeviceName.SIMS}_pulses_per_pixel"


class Location:
    """Where the sample can be."""

    STORAGE: Final = "storage"
    """The bench / Ar storage (room temperature)."""
    BATH: Final = "bath"
    """Above the ⁶LiNO₃ exchange bath (edge immersed while dipped)."""
    SIMS_STAGE: Final = "sims_stage"
    """The SIMS cryo stage (through the load lock)."""
    FURNACE: Final = "furnace"
    """The annealing furnace."""


SAMPLE_LOCATIONS: Final = (Location.STORAGE, Location.BATH, Location.SIMS_STAGE,
                           Location.FURNACE)
"""All sample locations: bench / Ar storage, exchange bath, SIMS cryo stage, furnace."""


class SegmentSource:
    """``source`` of a thermal-history segment: the plan (or event) that recorded it."""

    ISOTOPE_EXCHANGE: Final = PlanName.ISOTOPE_EXCHANGE
    TRANSFER: Final = PlanName.TRANSFER
    QUENCH: Final = PlanName.QUENCH
    SIMS_IMAGE: Final = PlanName.SIMS_IMAGE
    SIMS_LINE_PROFILE: Final = PlanName.SIMS_LINE_PROFILE
    ANNEAL: Final = PlanName.ANNEAL
    ANNEAL_ABORTED: Final = "anneal_aborted"
    STORE: Final = PlanName.STORE
    SUSPENDED: Final = "suspended"
    """Time an imaging run spent suspended (stage too warm), at the logged stage readings."""


SEGMENT_KEYS: Final = ("start_s", "end_s", "temperature_K", "location", "immersed", "source")
"""Keys of one thermal-history segment: lab times (s), temperature (K, or [start, end] for a
ramp), location (:data:`SAMPLE_LOCATIONS`, or ``"origin->destination"`` for a transfer), bath
immersion (bool), and the :class:`SegmentSource` that recorded it."""
SEGMENT_OVERLAP_S: Final = 1.0
"""Longest overlap (s) of a thermal-history segment with the one before that is still taken as
touching: the real lab's clock is Unix time, which a time-server correction can step back by
a fraction of a second between two readings. A longer overlap is refused (the record of
another sample, or of a restarted simulated lab)."""

WARM_SOURCES: Final = (SegmentSource.ISOTOPE_EXCHANGE, SegmentSource.ANNEAL,
                       SegmentSource.STORE)
"""Segment sources whose temperature a measurement represents (the diffusion stages)."""

ROOM_K: Final = 295.15
"""Room temperature (bath, bench), K (22 °C)."""
QUENCH_K: Final = 163.15
"""Imaging temperature of the cryo-SIMS stage, K (−110 °C)."""
STAGE_IMAGING_MAX_K: Final = 173.15
"""Imaging suspends while the stage is warmer than this, K (−100 °C; e.g. LN₂ run-out)."""
BOUNDARY_WIDTH_M: Final = 0.5e-9
"""Grain-boundary width δ, m (0.5 nm): D*_gb = (D*_gb/δ) · δ."""
BOUNDARY_WIDTH_CM: Final = 5e-8
"""Grain-boundary width δ, cm (the same 0.5 nm as :data:`BOUNDARY_WIDTH_M`)."""
