"""bluesky plans for the cryo-SIMS isotope-exchange workflow (generators, no I/O of their own).

Each step is its own run with ``plan_name``/``plan_args`` in its start document and a
keyword-only ``md``; ``record`` (a :class:`lltolab.devices.SampleRecord`) collects the sample's
thermal history, which every image run carries in its metadata.
"""

from ._exchange import isotope_exchange
from ._sims import QuenchInadequate, quench_guard, sims_image, sims_line_profile
from ._thermal import AnnealAborted, anneal, quench, store
from ._transfer import transfer
from ._workflow import (
    DEFAULT_PROFILE_MM,
    anneal_duration_for_length,
    arrhenius_campaign,
    exchange_quench_image_anneal_reimage,
    image_cycle,
)

__all__ = [
    "isotope_exchange",
    "transfer",
    "quench",
    "sims_image",
    "sims_line_profile",
    "anneal",
    "store",
    "exchange_quench_image_anneal_reimage",
    "arrhenius_campaign",
    "image_cycle",
    "anneal_duration_for_length",
    "quench_guard",
    "QuenchInadequate",
    "AnnealAborted",
    "DEFAULT_PROFILE_MM",
]
from ._sims import SUSPENDED_SOURCE, stage_segments  # noqa: E402

__all__ += ["SUSPENDED_SOURCE", "stage_segments"]
