"""lltolab.diffusion: the diffusion twin (SI units: m, s, K, m²/s, m/s; energies in eV).

Polycrystal microstructure, finite-volume operator with resistive grain boundaries, TR-BDF2
time stepping, homogenised/multiscale long-range strip, and :class:`VirtualSample`
(integrating in this process or in a worker process, :class:`SampleWorker`).
"""

from ._homogenise import EffectiveDiffusivity, effective_diffusivity
from ._laws import (
    K_B_EV,
    T_ROOM_K,
    Arrhenius,
    BoundaryConductance,
    BulkDiffusivity,
    celsius_to_kelvin,
)
from ._microstructure import Microstructure, lognormal_params
from ._network import Conductivities, FVNetwork
from ._sample import C_BATH, C_NATURAL, Segment, VirtualSample
from ._stepper import FixedCells, Integrator, StepControl
from ._strip import StripModel
from ._validate import check_fraction, check_nonnegative, check_positive, check_temperature
from ._worker import WORKER_TIMEOUT_S, SampleWorker, WorkerLost

__all__ = [
    "K_B_EV",
    "T_ROOM_K",
    "C_BATH",
    "C_NATURAL",
    "Arrhenius",
    "BulkDiffusivity",
    "BoundaryConductance",
    "celsius_to_kelvin",
    "Microstructure",
    "lognormal_params",
    "Conductivities",
    "FVNetwork",
    "FixedCells",
    "Integrator",
    "StepControl",
    "EffectiveDiffusivity",
    "effective_diffusivity",
    "StripModel",
    "Segment",
    "VirtualSample",
    "SampleWorker",
    "WorkerLost",
    "WORKER_TIMEOUT_S",
    "check_positive",
    "check_nonnegative",
    "check_fraction",
    "check_temperature",
]
