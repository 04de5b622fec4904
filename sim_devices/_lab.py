"""The virtual lab: one clock, one sample, the instruments whose temperatures it feels.

The sample's temperature is whatever its location imposes: room temperature on the bench and in
the ⁶LiNO₃ bath (where its edge is also immersed), the simulated Lake Shore's stage temperature
on the SIMS cryo stage, the simulated Eurotherm's furnace temperature in the furnace.

The lab follows those temperatures along lab time and hands the diffusion twin
piecewise-constant segments. On a stepped clock (``time_scale=None``, the reproducible mode)
lab time only passes in jumps; during a jump with the sample on the cryo stage or in the
furnace the lab samples the instrument's thermal model every ``substep_s`` of lab time, so a
stage warming during a 5 h acquisition is followed as it warms. On a free-running clock a
background thread also samples the temperatures (every ``sync_period_s`` of wall time).
A segment's temperature is the *equivalent* temperature T_eq with D(T_eq)·Δt = ∫D(T(t))dt
(exact for the bulk, whose law sets the time substitution; the boundary law's slightly different
activation energy makes it approximate during fast ramps). A segment closes when the bath
state changes, or when D at the current temperature leaves a factor-of-3 band
around the segment's mean, so a cool-down to −110 °C costs a dozen segments, not thousands.
"""

from __future__ import annotations

import math
import tempfile
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from scipy.optimize import brentq

from lltolab.diffusion import VirtualSample
from lltolab.vocabulary import ROOM_K, SAMPLE_LOCATIONS, Location

from ._clock import VirtualClock
from ._eurotherm import EurothermSimulator
from ._lakeshore import LakeShoreSimulator
from ._surfacelab import SimsSettings, SurfaceLabSimulator

__all__ = ["VirtualLab", "LabSampleView", "SimulatedOperator", "LOCATIONS"]

LOCATIONS = SAMPLE_LOCATIONS
"""Where the sample can be: the bench/Ar storage, the exchange bath, the SIMS cryo stage,
the annealing furnace (:data:`lltolab.vocabulary.SAMPLE_LOCATIONS`)."""

_BAND = math.log(3.0)


class VirtualLab:
    """One clock, one sample and the simulated instruments, on 127.0.0.1.

    Parameters
    ----------
    seed : int
        Seed of the sample's microstructure and of the counting noise.
    time_scale : float or None
        Lab seconds per wall second of a free-running clock, or None for a stepped clock
        (lab time passes only when a device waits: reproducible for a given seed).
    sample : VirtualSample, optional
        The sample (default: ``VirtualSample.paper_default(seed)``).
    export_folder : path, optional
        Where the simulated SurfaceLab writes exports (default: a new temporary folder).
    room_K : float
        Room temperature (K).
    sims_settings : SimsSettings, optional
        Acquisition settings of the simulated SurfaceLab.
    sync_period_s : float
        Wall seconds between background temperature samples (free-running clock only).
    substep_s : float
        Lab seconds between samples of the stage / furnace temperature during a jump.
    twin_process : bool
        Integrate the sample in a worker process while the lab runs
        (:meth:`VirtualSample.start_worker`: the same numbers, without waiting for this
        process's interpreter lock); False keeps it in this process.
    """

    def __init__(
        self,
        *,
        seed: int = 0,
        time_scale: float | None = 60.0,
        sample: VirtualSample | None = None,
        export_folder: str | Path | None = None,
        room_K: float = ROOM_K,
        sims_settings: SimsSettings | None = None,
        sync_period_s: float = 0.05,
        substep_s: float = 60.0,
        twin_process: bool = True,
    ) -> None:
        if not (math.isfinite(room_K) and room_K > 0):
            raise ValueError(f"room_K must be finite and > 0 K, got {room_K!r}")
        if not (math.isfinite(sync_period_s) and sync_period_s > 0):
            raise ValueError(f"sync_period_s must be > 0 s, got {sync_period_s!r}")
        if not (math.isfinite(substep_s) and substep_s > 0):
            raise ValueError(f"substep_s must be > 0 s, got {substep_s!r}")
        self._substep = float(substep_s)
        self._twin_process = bool(twin_process)
        self.clock = VirtualClock(time_scale)
        self.room_K = float(room_K)
        self.sample = sample if sample is not None else VirtualSample.paper_default(seed)
        self.stage = LakeShoreSimulator(clock=self.clock, initial_K=self.room_K, seed=seed)
        self.furnace = EurothermSimulator(clock=self.clock, room_temperature_K=self.room_K)
        if export_folder is None:
            self._tmp = tempfile.TemporaryDirectory(prefix="lltolab-exports-")
            export_folder = self._tmp.name
        self.export_folder = Path(export_folder)
        self.view = LabSampleView(self)
        self.sims = SurfaceLabSimulator(
            self.view, self.clock, self.export_folder, settings=sims_settings, seed=seed,
            stage_temperature_K=lambda _t: self.stage.temperature_K,
        )
        self.operator = SimulatedOperator(self)
        self._lock = threading.RLock()
        self._location = Location.STORAGE
        now = self.clock.now()
        t_now = self._location_temperature()
        self._seg_start = now
        self._seg_integral = 0.0  # ∫ D_bulk dt over the open segment (m²)
        self._last_t = now
        self._last_d = self._d(t_now)
        self.sample.set_environment(now, temperature_K=t_now, immersed=False)
        self.clock.on_before_jump(self._before_jump)
        self.clock.on_jump(self._after_jump)
        self._sync_period = float(sync_period_s)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        # on a stepped clock the twin integrates declared segments on a second core while the
        # plans go on (it splits the work only at declared changes: same numbers)
        self._declared = threading.Event()
        self._twin: threading.Thread | None = None
        self._started = False

    # ---------------------------------------------------------------- lifecycle
    def start(self) -> VirtualLab:
        """Start the instrument servers and the temperature-following thread (returns self)."""
        if not self._started:
            if self._twin_process:
                self.sample.start_worker()
            self.stage.start()
            self.furnace.start()
            if not self.clock.stepped:  # a stepped clock only moves in jumps, which sync
                self._thread = threading.Thread(target=self._follow, name="virtual-lab",
                                                daemon=True)
                self._thread.start()
            else:
                self._twin = threading.Thread(target=self._precompute, name="virtual-twin",
                                              daemon=True)
                self._twin.start()
            self._started = True
        return self

    def close(self) -> None:
        """Stop the thread and the servers (idempotent)."""
        self._stop.set()
        self._declared.set()
        for thread in (self._thread, self._twin):
            if thread is not None:
                thread.join(timeout=30)
        self.stage.close()
        self.furnace.close()
        if self._twin_process:
            self.sample.stop_worker()
        tmp = getattr(self, "_tmp", None)
        if tmp is not None:
            tmp.cleanup()

    def __enter__(self) -> VirtualLab:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def resources(self) -> dict[str, Any]:
        """Connection strings of the simulated instruments and folders."""
        return {
            "cryostage": self.stage.resource,
            "furnace": self.furnace.url,
            "exports": str(self.export_folder),
            "time_scale": self.clock.time_scale,
        }

    def schedule(self, at_s: float, callback: Callable[[float], None]) -> None:
        """Run ``callback(at_s)`` at lab time ``at_s`` (see :meth:`VirtualClock.schedule`).

        E.g. ``lab.schedule(t, lambda _t: lab.stage.inject_fault("ln2_empty"))`` lets LN₂ run
        out at lab time ``t``, whatever the wall-clock speed of the run.
        """
        self.clock.schedule(at_s, callback)

    def pass_time(self, seconds: float) -> float:
        """Let ``seconds`` of lab time pass once the simulated SurfaceLab is idle.

        What waits for the lab from outside (e.g. a run suspended until the stage is cold
        again) lets lab time pass this way: an acquisition still finishing its own jump is
        never interleaved with the wait, so a seeded run stays reproducible.
        """
        with self.sims.busy:
            return self.clock.jump(seconds)

    # ---------------------------------------------------------------- where the sample is
    @property
    def location(self) -> str:
        """Current location of the sample (one of :data:`LOCATIONS`)."""
        return self._location

    def move_sample(self, location: str) -> None:
        """Put the sample at ``location``; the bath location immerses its edge."""
        if location not in LOCATIONS:
            raise ValueError(f"location must be one of {LOCATIONS}, got {location!r}")
        with self._lock:
            now = self.clock.now()
            self._sync(now)
            if (location == Location.BATH) != (self._location == Location.BATH):
                self._commit(now)  # the bath state changes the boundary condition
            # otherwise only the temperature matters to the sample: the open segment goes on
            # (the D band closes it when the new place is much hotter or colder)
            self._location = location
            self._last_d = self._d(self._location_temperature())

    def dip(self) -> None:
        """Dip the sample's edge into the ⁶LiNO₃ bath."""
        self.move_sample(Location.BATH)

    def lift(self) -> None:
        """Lift the sample out of the bath onto the bench (sealed from then on)."""
        self.move_sample(Location.STORAGE)

    def temperature_K(self) -> float:
        """Temperature (K) the sample feels now."""
        return self._location_temperature()

    # ---------------------------------------------------------------- sample queries
    def flush(self, time_s: float | None = None) -> float:
        """Declare the sample's history up to ``time_s`` (default now); returns that time."""
        with self._lock:
            t = self.clock.now() if time_s is None else float(time_s)
            if t > self._last_t:
                self._sync(t)
            self._commit(max(t, self._last_t))
            return t

    # ---------------------------------------------------------------- internals
    def _location_temperature(self) -> float:
        if self._location == Location.SIMS_STAGE:
            return float(self.stage.temperature_K)
        if self._location == Location.FURNACE:
            return float(self.furnace.temperature_K)
        return self.room_K

    def _d(self, temperature_k: float) -> float:
        return float(self.sample.bulk(temperature_k))

    def _sync(self, now: float, temperature_k: float | None = None) -> None:
        """Add ∫D dt from the last sample to ``now``; close the segment if D left its band."""
        temp = self._location_temperature() if temperature_k is None else temperature_k
        d_now = self._d(temp)
        dt = now - self._last_t
        if dt > 0:
            self._seg_integral += 0.5 * (self._last_d + d_now) * dt
        self._last_t = max(self._last_t, now)
        self._last_d = d_now
        span = self._last_t - self._seg_start
        if span > 0:
            d_mean = self._seg_integral / span
            if abs(math.log(d_now / d_mean)) > _BAND:
                self._commit(self._last_t)

    def _commit(self, t: float) -> None:
        span = t - self._seg_start
        if span <= 0:
            return
        t_eq = self._equivalent_temperature(self._seg_integral / span)
        immersed = self._location == Location.BATH
        self.sample.set_environment(self._seg_start, temperature_K=t_eq, immersed=immersed)
        self.sample.hold_until(t)  # the twin may integrate this segment before the next opens
        self._seg_start = t
        self._seg_integral = 0.0
        self._declared.set()

    def _equivalent_temperature(self, d_mean: float) -> float:
        target = math.log(d_mean)
        return float(brentq(lambda t: math.log(self._d(t)) - target, 20.0, 3000.0, xtol=1e-6))

    def _before_jump(self, start: float, end: float) -> None:
        with self._lock:
            self._sync(start)
            if self._location not in ("sims_stage", "furnace"):
                return  # room temperature: nothing changes during the jump
            n = math.ceil((end - start) / self._substep)
            for k in range(1, n):  # the instruments' models, advanced ahead of the clock
                t = start + (end - start) * k / n
                self._sync(t, self._model_temperature_at(t))

    def _model_temperature_at(self, t: float) -> float:
        if self._location == "sims_stage":
            model = self.stage.model
            model.advance(t)
            return float(model.temperature_K)
        self.furnace._advance(t)
        return float(self.furnace.temperature_K)

    def _after_jump(self, start: float, end: float) -> None:
        with self._lock:
            # the instruments relaxed over the jump: take the conditions at its end for all of it
            temp = self._location_temperature()
            self._last_d = self._d(temp)
            self._sync(end, temp)

    def _precompute(self) -> None:
        advance = getattr(self.sample, "advance_declared", None)
        while advance is not None and not self._stop.is_set():
            self._declared.wait()
            self._declared.clear()
            if self._stop.is_set():
                return
            try:
                advance()
            except Exception:  # noqa: BLE001 - the query that needs the field re-raises it
                continue

    def _follow(self) -> None:
        while not self._stop.wait(self._sync_period):
            try:
                with self._lock:
                    self._sync(self.clock.now())
            except Exception:  # noqa: BLE001 - keep following; the next query re-syncs
                continue


class LabSampleView:
    """The sample as the simulated SurfaceLab sees it: queries first sync the lab's history."""

    def __init__(self, lab: VirtualLab) -> None:
        self._lab = lab

    def field(self, time_s: float) -> np.ndarray:
        """⁶Li fraction on the sample window at lab time ``time_s``."""
        self._lab.flush(time_s)
        return self._lab.sample.field(time_s)

    def profile(self, x_m: np.ndarray, time_s: float, *, width_m: float = 50e-6) -> np.ndarray:
        """Mean ⁶Li fraction of analysis areas centred at ``x_m`` at lab time ``time_s``."""
        self._lab.flush(time_s)
        return self._lab.sample.profile(x_m, time_s, width_m=width_m)

    def history(self, until_s: float | None = None):
        """The sample's declared segments."""
        return self._lab.sample.history(until_s)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._lab.sample, name)


class SimulatedOperator:
    """The person at the bench, simulated: carries out operator steps in the virtual lab.

    Implements the confirmation interface of ``lltolab.devices`` operator steps
    (``confirm(request, *, timeout_s, cancel)``): the step is done, then confirmed at once.
    """

    def __init__(self, lab: VirtualLab) -> None:
        self._lab = lab
        self.log: list[tuple[float, str, dict]] = []

    def confirm(self, request: Any, *, timeout_s: float, cancel: threading.Event) -> None:
        """Perform ``request.action`` (``move``, ``dip``, ``lift``) on the lab."""
        action = request.action
        params = dict(getattr(request, "params", {}) or {})
        if cancel.is_set():
            raise RuntimeError(f"operator step {action!r} cancelled before it started")
        if action == "move":
            self._lab.move_sample(params["location"])
        elif action == "dip":
            self._lab.dip()
        elif action == "lift":
            self._lab.lift()
        else:
            raise ValueError(f"the simulated operator cannot do {action!r}")
        self.log.append((self._lab.clock.now(), action, params))
