"""ExchangeCell: dipping the sample edge into the ⁶LiNO₃ solution and lifting it out."""

from __future__ import annotations

import time
from typing import Any

from ophyd import Component as Cpt
from ophyd import Device, DeviceStatus, Signal

from ._operator import Confirmation, OperatorRequest, default_confirmation, start_operator_step

__all__ = ["ExchangeCell"]

_STATES = {"dip": 1, "lift": 0}


class ExchangeCell(Device):
    """The isotope-exchange bath; ``set("dip")`` / ``set("lift")`` are operator steps.

    Readings: ``immersed`` (1 while the edge is in the solution), ``dip_time`` and
    ``lift_time`` (Unix time of the last confirmed dip / lift).
    Configuration: solution ⁶Li fraction, concentration (mol/L), immersion depth (mm), bath
    temperature (°C).

    Parameters
    ----------
    confirmation : Confirmation, optional
        How the person confirms (default: a terminal prompt in an interactive shell, else
        answer files in the default operator folder; see ``default_confirmation``).
    timeout_s : float
        Longest wait for a confirmation (s); then the step fails with OperatorTimeout.
    solution_li6_fraction : float
        ⁶Li fraction of the exchange solution (0 … 1).
    depth_mm : float
        Immersion depth of the sample edge (mm, (0, 10]).
    """

    immersed = Cpt(Signal, value=0, kind="hinted")
    dip_time = Cpt(Signal, value=0.0, kind="normal")
    lift_time = Cpt(Signal, value=0.0, kind="normal")
    solution_li6_fraction = Cpt(Signal, value=0.95, kind="config")
    concentration_mol_l = Cpt(Signal, value=5.0, kind="config")
    depth_mm = Cpt(Signal, value=1.0, kind="config")
    bath_temperature_c = Cpt(Signal, value=22.0, kind="config")
    timeout_s = Cpt(Signal, value=3600.0, kind="config")

    def __init__(self, prefix: str = "", *, name: str,
                 confirmation: Confirmation | None = None, timeout_s: float = 3600.0,
                 solution_li6_fraction: float = 0.95, depth_mm: float = 1.0,
                 **kwargs: Any) -> None:
        super().__init__(prefix, name=name, **kwargs)
        if not 0 <= solution_li6_fraction <= 1:
            raise ValueError(
                f"solution_li6_fraction must lie in [0, 1], got {solution_li6_fraction!r}"
            )
        if not 0 < depth_mm <= 10:
            raise ValueError(f"depth_mm must lie in (0, 10] mm, got {depth_mm!r}")
        self.confirmation = (confirmation if confirmation is not None
                             else default_confirmation())
        self.solution_li6_fraction.put(float(solution_li6_fraction))
        self.depth_mm.put(float(depth_mm))
        self.timeout_s.put(float(timeout_s))
        self._cancel = None

    @property
    def position(self) -> str:
        """``"dip"`` while immersed, else ``"lift"``."""
        return "dip" if self.immersed.get() else "lift"

    def set(self, action: str) -> DeviceStatus:
        """``"dip"`` the edge into the solution or ``"lift"`` it out (operator step)."""
        if action not in _STATES:
            raise ValueError(f"action must be one of {tuple(_STATES)}, got {action!r}")
        depth = self.depth_mm.get()
        message = (f"Dip the sample edge {depth} mm deep into the 6LiNO3 solution"
                   if action == "dip" else "Lift the sample out of the solution, rinse, dry")

        def done() -> None:
            stamp = time.time()
            (self.dip_time if action == "dip" else self.lift_time).put(stamp)
            self.immersed.put(_STATES[action])

        status, self._cancel = start_operator_step(
            self, self.confirmation, OperatorRequest(action, message, {"depth_mm": depth}),
            float(self.timeout_s.get()), done,
        )
        return status

    def stop(self, *, success: bool = False) -> None:
        """Cancel a pending operator step (no effect otherwise)."""
        if self._cancel is not None:
            self._cancel.set()
