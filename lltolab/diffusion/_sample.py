"""VirtualSample: one sample's ⁶Li field plus its thermal and bath history, advanced lazily."""

from __future__ import annotations

import logging
import math
import threading
from dataclasses import dataclass

import numpy as np

from ._laws import T_ROOM_K, BoundaryConductance, BulkDiffusivity
from ._microstructure import Microstructure
from ._network import Conductivities
from ._stepper import FixedCells, Integrator, StepControl
from ._strip import StripModel
from ._validate import check_fraction, check_temperature
from ._worker import WORKER_TIMEOUT_S, SampleWorker, WorkerLost

__all__ = ["Segment", "VirtualSample", "C_NATURAL", "C_BATH"]

logger = logging.getLogger("lltolab.diffusion")

C_NATURAL = 0.0759
"""Natural ⁶Li fraction."""
C_BATH = 0.95
"""⁶Li fraction of the enriched ⁶LiNO₃ solution."""
FACTORIZATIONS_KEPT = 3
"""Factorized step matrices the twin keeps (about 80 MB each for the paper's sample). The
standard workflow's cycle needs four (one per kind of piece: exchange, quench, storage,
anneal) and comes back to the quench's after the anneal: with three kept, that one is reused
instead of factorized again (the same numbers, one factorization less)."""


@dataclass(frozen=True)
class Segment:
    """A stretch of constant conditions: [start_s, end_s) at temperature_K, in the bath or not."""

    start_s: float
    end_s: float
    temperature_K: float
    immersed: bool

    @property
    def duration_s(self) -> float:
        """Length of the segment in seconds."""
        return self.end_s - self.start_s


class VirtualSample:
    """A polycrystal sample whose ⁶Li fraction evolves with the conditions it has seen.

    Conditions are declared as they change (:meth:`set_environment`); the field is computed
    only when asked for (:meth:`field`, :meth:`profile`), integrating every constant stretch
    since the last query. Cells with centre x < 0 (below the liquid level) are held at ``cs``
    while the sample is immersed; otherwise all faces to the outside are sealed.

    Parameters
    ----------
    micro : Microstructure
        The resolved 2-D window (x = distance from the liquid level, m).
    bulk : BulkDiffusivity, optional
        D*_bulk(T) law (m²/s).
    boundary : BoundaryConductance, optional
        k(T) = D*_gb/δ law (m/s).
    c0, cs : float
        Initial (natural) and bath ⁶Li fractions.
    line_extent_m : tuple of float
        x range of the whole sample strip (m), for long-range profiles.
    coarse_dx_m : float
        Spacing of the homogenised strip cells (m).
    start_s : float
        Lab time of creation (s).
    temperature_K : float
        Initial temperature (K).
    control : StepControl, optional
        Integrator accuracy.
    """

    def __init__(
        self,
        micro: Microstructure,
        *,
        bulk: BulkDiffusivity | None = None,
        boundary: BoundaryConductance | None = None,
        c0: float = C_NATURAL,
        cs: float = C_BATH,
        line_extent_m: tuple[float, float] = (-1e-3, 9e-3),
        coarse_dx_m: float = 5e-6,
        start_s: float = 0.0,
        temperature_K: float = T_ROOM_K,
        control: StepControl | None = None,
    ) -> None:
        self.c0 = float(check_fraction("c0", c0))
        self.cs = float(check_fraction("cs", cs))
        self.bulk = bulk or BulkDiffusivity.paper_default()
        self.boundary = boundary or BoundaryConductance.paper_default()
        self.micro = micro
        self.strip = StripModel(micro, line_extent_m=line_extent_m, coarse_dx_m=coarse_dx_m)
        self._geometry = {"line_extent_m": tuple(map(float, line_extent_m)),
                          "coarse_dx_m": float(coarse_dx_m)}
        self._control = control
        self._integrator = Integrator(self.strip.network, control, cache_size=FACTORIZATIONS_KEPT)
        self._bath = FixedCells(self.strip.x_centre_m < 0, self.cs, "bath")
        start = float(start_s)
        if not math.isfinite(start):
            raise ValueError(f"start_s must be finite, got {start_s!r}")
        self._changes: list[tuple[float, float, bool]] = [
            (start, check_temperature("temperature_K", temperature_K), False)
        ]
        self._c = np.full(self.strip.network.n_cells, self.c0)
        self._t_computed = start
        self._t_reserved = start  # end of an integration in progress (no change before it)
        self._held_until = start  # the latest conditions hold at least until then
        self._lock = threading.RLock()  # the history and the field
        self._compute = threading.RLock()  # one integration at a time, history stays open
        self._worker: SampleWorker | None = None

    @classmethod
    def paper_default(
        cls,
        seed: int = 0,
        *,
        window_m: tuple[float, float, float, float] = (-10e-6, 530e-6, 0.0, 210e-6),
        pixel_m: float = 1e-6,
        spread_sigma: float = math.log(2.0),
        **kwargs,
    ) -> VirtualSample:
        """An LLTO sample with the docs/science.md §4 defaults.

        Parameters
        ----------
        seed : int
            Microstructure (and boundary spread) seed.
        window_m : tuple of float
            (x0, x1, y0, y1) of the resolved window (m); default covers the 500 × 200 µm
            SIMS raster at the liquid level with a margin.
        pixel_m : float
            Pixel pitch of the window (m).
        spread_sigma : float
            Std of ln(k multiplier) per boundary (ln 2: factor ~2, the paper's D*_gb range).
        **kwargs
            Passed to the constructor (bulk, boundary, c0, cs, ...).
        """
        x0, x1, y0, y1 = window_m
        micro = Microstructure.polycrystal(
            x1 - x0, y1 - y0, pixel_m, seed=seed, origin_m=(x0, y0), spread_sigma=spread_sigma
        )
        return cls(micro, **kwargs)

    # ---------------------------------------------------------------- geometry
    @property
    def pixel_m(self) -> float:
        """Pixel pitch of the resolved window (m)."""
        return self.micro.pixel_m

    @property
    def window_m(self) -> tuple[float, float, float, float]:
        """(x0, x1, y0, y1) of the resolved window (m)."""
        return self.micro.extent_m

    @property
    def grain_ids(self) -> np.ndarray:
        """(ny, nx) grain index map of the window."""
        return self.micro.grain_ids

    @property
    def boundary_map(self) -> np.ndarray:
        """(ny, nx) boolean grain-boundary map of the window (the etched micrograph)."""
        return self.micro.boundary_map()

    # ---------------------------------------------------------------- history
    @property
    def time_s(self) -> float:
        """Lab time (s) of the latest declared change of conditions."""
        return self._changes[-1][0]

    @property
    def temperature_K(self) -> float:
        """Temperature (K) declared by the latest change."""
        return self._changes[-1][1]

    @property
    def immersed(self) -> bool:
        """Whether the edge is in the bath since the latest change."""
        return self._changes[-1][2]

    def set_environment(self, time_s: float, *, temperature_K: float, immersed: bool) -> None:
        """From ``time_s`` (s) on, the sample is at ``temperature_K`` (K), in the bath or not.

        ``time_s`` may not precede the latest change nor a time already computed.
        """
        t = float(time_s)
        temp = check_temperature("temperature_K", temperature_K)
        with self._lock:
            earliest = max(self._changes[-1][0], self._t_computed, self._t_reserved,
                           self._held_until)
            if not math.isfinite(t) or t < earliest:
                raise ValueError(
                    f"time_s={time_s!r} precedes the sample's history (earliest allowed "
                    f"{earliest:.6g} s)"
                )
            if self._changes[-1][0] == t:
                self._changes[-1] = (t, temp, bool(immersed))
            else:
                self._changes.append((t, temp, bool(immersed)))

    def hold_until(self, time_s: float) -> None:
        """The conditions declared last hold at least until lab time ``time_s`` (s).

        A simulator that has closed a segment says so: :meth:`advance_declared` may then
        integrate up to ``time_s`` before the next change is known, and no change may be
        declared before ``time_s``.
        """
        t = float(time_s)
        with self._lock:
            if not math.isfinite(t) or t < self._changes[-1][0]:
                raise ValueError(
                    f"time_s={time_s!r} precedes the latest change of conditions "
                    f"({self._changes[-1][0]:.6g} s)"
                )
            self._held_until = max(self._held_until, t)

    def history(self, until_s: float | None = None) -> list[Segment]:
        """The thermal/bath history as segments, the last one ending at ``until_s``."""
        with self._lock:
            changes = list(self._changes)
        end = changes[-1][0] if until_s is None else float(until_s)
        out = []
        for (t, temp, imm), nxt in zip(changes, changes[1:] + [(end, 0, False)], strict=True):
            stop = min(nxt[0], end)
            if stop > t:
                out.append(Segment(t, stop, temp, imm))
        return out

    # ---------------------------------------------------------------- physics
    def coefficients(self, temperature_K: float) -> Conductivities:
        """Transport coefficients of this sample at ``temperature_K`` (SI)."""
        d = float(self.bulk(temperature_K))
        k = float(self.boundary(temperature_K))
        return Conductivities(d, k, self.strip.d_eff(d, k))

    def truth(self, temperature_K: float) -> dict[str, float]:
        """The twin's true D_bulk (m²/s), k = D_gb/δ (m/s) and D_eff (m²/s) at a temperature."""
        co = self.coefficients(temperature_K)
        return {"d_bulk_m2_s": co.d_bulk_m2_s, "k_gb_m_s": co.k_gb_m_s,
                "d_eff_m2_s": co.d_eff_m2_s}

    def advance_to(self, time_s: float) -> None:
        """Integrate the field up to lab time ``time_s`` (s) through the declared history.

        The history stays open to new changes (after ``time_s``) while this integrates.
        """
        t_end = float(time_s)
        with self._compute:
            with self._lock:
                if not math.isfinite(t_end) or t_end < self._t_computed:
                    raise ValueError(
                        f"time_s={time_s!r} precedes the time already computed "
                        f"({self._t_computed:.6g} s)"
                    )
                segments = self.history(until_s=t_end)
                c, t_done = self._c, self._t_computed
                self._t_reserved = max(self._t_reserved, t_end)
            pieces = [(seg.end_s - max(seg.start_s, t_done), seg.temperature_K, seg.immersed)
                      for seg in segments if seg.end_s > t_done]
            if pieces:
                c = self.integrate_pieces(c, pieces)
            with self._lock:
                self._c, self._t_computed = c, t_end

    def integrate_pieces(self, c: np.ndarray, pieces: list[tuple[float, float, bool]],
                         ) -> np.ndarray:
        """The network field ``c`` advanced through ``pieces`` of (duration s, temperature K,
        immersed); the sample's own field and history are not touched.

        Runs in the worker process when one is started (:meth:`start_worker`; if it is lost,
        here, with a warning), else in this process: the same numbers either way.
        """
        worker = self._worker
        if worker is not None:
            try:
                c_new, nodes = worker.integrate(c, pieces)
            except WorkerLost as exc:
                logger.warning("%s; the twin integrates in this process from now on", exc)
                self.stop_worker()
            else:
                self.strip.d_eff.adopt(nodes)
                return c_new
        return self._integrate_here(c, pieces)

    def _integrate_here(self, c: np.ndarray, pieces: list[tuple[float, float, bool]],
                        ) -> np.ndarray:
        for duration_s, temperature_k, immersed in pieces:
            c = self._integrator.advance(c, duration_s, self.coefficients(temperature_k),
                                         self._bath if immersed else None)
        return c

    # ---------------------------------------------------------------- worker process
    def worker_spec(self) -> dict:
        """Constructor keywords that rebuild this sample's model (not its history or field)."""
        return {"micro": self.micro, "bulk": self.bulk, "boundary": self.boundary,
                "c0": self.c0, "cs": self.cs, "control": self._control, **self._geometry}

    def start_worker(self, *, timeout_s: float = WORKER_TIMEOUT_S) -> None:
        """Integrate from now on in a child process (:class:`lltolab.diffusion.SampleWorker`),
        which keeps the twin's numerics off this process's interpreter lock. Same numbers as
        in this process; if the child cannot be started or is lost, integration stays or
        comes back here (with a warning). Idempotent; :meth:`stop_worker` ends it.

        Parameters
        ----------
        timeout_s : float
            Longest wait (s) for the worker's answer to one integration.
        """
        with self._compute:
            if self._worker is None:
                try:
                    self._worker = SampleWorker(self.worker_spec(), timeout_s=timeout_s)
                except OSError as exc:  # e.g. no interpreter to start (an embedded Python)
                    logger.warning("twin worker process not started (%s: %s); the twin "
                                   "integrates in this process", type(exc).__name__, exc)

    def stop_worker(self) -> None:
        """End the worker process, if any (idempotent); integration continues here."""
        with self._compute:
            worker, self._worker = self._worker, None
        if worker is not None:
            worker.close()

    def wait_worker(self, timeout_s: float = 60.0) -> bool:
        """Wait until the worker process has built its copy of the sample, at most
        ``timeout_s`` s; False on timeout or when there is no worker. Integrations do not
        need this (they queue behind the build); a benchmark does, to time without it."""
        worker = self._worker
        return worker is not None and worker.wait_ready(timeout_s)

    @property
    def worker_pid(self) -> int | None:
        """Process id of the worker, or None when integrating in this process."""
        worker = self._worker
        return None if worker is None else worker.pid

    def advance_declared(self) -> float:
        """Integrate through every segment whose end is declared (by the next change or by
        :meth:`hold_until`); return the time reached.

        Splits the work only at declared changes, so the field at any later time is the same
        as without this call (a simulator can run it in the background).
        """
        with self._compute:
            with self._lock:
                target = max(self._changes[-1][0], self._held_until)
            if target > self._t_computed:
                self.advance_to(target)
            return self._t_computed

    def field(self, time_s: float) -> np.ndarray:
        """⁶Li fraction on the window, shape (ny, nx), at lab time ``time_s`` (s)."""
        with self._compute:
            self.advance_to(time_s)
            return self.strip.window_field(self._c).copy()

    def profile(self, x_m: np.ndarray, time_s: float, *, width_m: float = 50e-6) -> np.ndarray:
        """Mean ⁶Li fraction over a ``width_m`` wide analysis area centred at each x (m)."""
        with self._compute:
            self.advance_to(time_s)
            return self.strip.profile(self._c, x_m, width_m)

    def inventory(self, time_s: float) -> float:
        """Total ⁶Li in the strip (fraction × volume per unit depth, m²) at ``time_s``."""
        with self._compute:
            self.advance_to(time_s)
            return float(np.dot(self._c, self.strip.network.volume))
