"""Forward model of a SIMS image for the inversion: the twin's physics on the image's own pixels.

The grain map (from the etched micrograph on the image's pixels, or from boundaries found in
the C map) becomes a finite-volume network of the twin (:class:`lltolab.diffusion.FVNetwork`):
one cell per image pixel (rectangular pixels allowed), faces between pixels of different
grains carrying the interface resistance ``f / k`` with the staircase factor
f = |n_x| + |n_y| of that boundary's normal, estimated from the principal axis of the pixel
faces the two grains share. Left of the image (x < 0, below the liquid level) and right of it
the strip continues as homogenised 1-D lines (D_eff of the same grain map, as the twin's
:class:`~lltolab.diffusion.StripModel` does); the left line is held at the bath fraction while
the sample is immersed.

The field is affine in the natural and bath fractions, ``C = c0 + (cs − c0) u`` with u the
response to a unit bath on a zero field, so only u and its derivatives with respect to
ln D_bulk and ln k are integrated: TR-BDF2 with uniform steps per stage and the exact tangent
of the discrete scheme (both reuse one sparse LU per stage and step size).

Units: SI inside (m, s, m²/s, m/s), as the twin.
"""

from __future__ import annotations

import math
import os
from collections import deque
from collections.abc import Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import scipy.sparse as sp
from scipy.sparse.linalg import splu

from lltolab.diffusion import T_ROOM_K, BoundaryConductance, BulkDiffusivity, FVNetwork
from lltolab.vocabulary import SEGMENT_OVERLAP_S

__all__ = ["HeatStage", "equivalent_history", "ImageForwardModel", "resolve_workers",
           "staircase_factors"]

_GAMMA = 2.0 - math.sqrt(2.0)
_W = _GAMMA / 2.0
_C_NEW = 1.0 / (_GAMMA * (2.0 - _GAMMA))
_C_OLD = (1.0 - _GAMMA) ** 2 / (_GAMMA * (2.0 - _GAMMA))
_RATIO_BAND = math.log(1.25)
_PHI_STEP = 0.25
_PHI_COLUMNS = 128


@dataclass(frozen=True)
class HeatStage:
    """A stretch of constant conditions seen by the sample.

    Attributes
    ----------
    duration_s : float
        Length (s).
    temperature_K : float
        Equivalent temperature (K): the one whose D*_bulk equals the stretch's mean D*_bulk.
    immersed : bool
        Edge in the bath (x < 0 held at the bath fraction) or sealed.
    k_factor : float
        The stretch's mean boundary conductance relative to the law at ``temperature_K``
        (1 for a stretch at one temperature): with it, the stage carries the exact time
        integrals of both D*_bulk and k of the stretch it replaces.
    """

    duration_s: float
    temperature_K: float
    immersed: bool
    k_factor: float = 1.0


@dataclass
class _StageOperator:
    """One stage's implicit-step matrices and LU (see :meth:`ImageForwardModel._operator`)."""

    held: np.ndarray
    kff: sp.csr_array
    b: np.ndarray
    vf: np.ndarray
    dt: float
    lu: Any
    kp: list[sp.csr_array] = field(default_factory=list)
    bp: np.ndarray | None = None


def _segment_fields(seg: Any) -> tuple[float, float, list[float], bool]:
    if isinstance(seg, Mapping):
        start, end, temp, imm = (seg.get("start_s"), seg.get("end_s"), seg.get("temperature_K"),
                                 seg.get("immersed", False))
    else:
        start, end, temp, imm = (getattr(seg, "start_s", None), getattr(seg, "end_s", None),
                                 getattr(seg, "temperature_K", None),
                                 getattr(seg, "immersed", False))
    if start is None or end is None or temp is None:
        raise ValueError(f"history segment needs start_s, end_s and temperature_K, got {seg!r}")
    start, end = float(start), float(end)
    if not (math.isfinite(start) and math.isfinite(end) and end >= start):
        raise ValueError(f"history segment needs finite start_s <= end_s, got {start}, {end}")
    temps = [float(t) for t in (temp if isinstance(temp, list | tuple) else [temp])]
    if not temps or any(not (math.isfinite(t) and t > 0) for t in temps):
        raise ValueError(f"history segment temperature_K must be > 0 K, got {temp!r}")
    return start, end, temps, bool(imm)


def _inverse_law(law: BulkDiffusivity, d: float) -> float:
    lo, hi = 20.0, 3000.0
    target = math.log(d)
    for _ in range(80):
        mid = 0.5 * (lo + hi)
        if math.log(float(law(mid))) < target:
            lo = mid
        else:
            hi = mid
    return 0.5 * (lo + hi)


def equivalent_history(
    history: Sequence[Any],
    *,
    bulk: BulkDiffusivity | None = None,
    boundary: BoundaryConductance | None = None,
    gap_temperature_K: float = T_ROOM_K,
    ramp_pieces: int = 16,
) -> list[HeatStage]:
    """The recorded thermal history as stages of constant conditions.

    Diffusion through grains and boundaries is a linear problem whose operator is
    D*_bulk(t) L_bulk + k(t) L_gb: while the ratio k / D*_bulk stays the same, a stretch of
    changing temperature is the same as a stage of constant D*_bulk and k with the stretch's
    time integrals of both. Consecutive pieces with the same immersion are therefore merged
    while their ratio k / D*_bulk stays within a factor 1.25 of the stage's (the laws'
    activation energies differ little, so a quench or a ramp becomes one or a few stages),
    and each stage carries the exact integrals of D*_bulk (its equivalent temperature) and
    of k (its ``k_factor``).

    Parameters
    ----------
    history : sequence of mappings or segments
        Each with ``start_s``, ``end_s`` (lab time, s), ``temperature_K`` (K, or [start, end]
        of a linear ramp) and ``immersed``; as stored in a run's ``thermal_history`` or
        returned by ``VirtualSample.history()``.
    bulk, boundary : laws, optional
        D*_bulk(T) and k(T) (the twin's defaults).
    gap_temperature_K : float
        Temperature (K) assumed for unrecorded gaps between segments (sealed, on the bench).
        Segments may come in any order; one that overlaps the one before by more than
        :data:`lltolab.vocabulary.SEGMENT_OVERLAP_S` is refused (ValueError), a shorter
        overlap is clipped.
    ramp_pieces : int
        Ramps are split into this many constant pieces (at their mid temperatures) before
        merging.

    Returns
    -------
    list of HeatStage
        Consecutive stages in time order.
    """
    bulk = bulk or BulkDiffusivity.paper_default()
    boundary = boundary or BoundaryConductance.paper_default()
    if not (math.isfinite(gap_temperature_K) and gap_temperature_K > 0):
        raise ValueError(f"gap_temperature_K must be > 0 K, got {gap_temperature_K!r}")
    if ramp_pieces < 1:
        raise ValueError(f"ramp_pieces must be >= 1, got {ramp_pieces}")
    segs = sorted((_segment_fields(s) for s in history), key=lambda s: s[0])
    if not segs:
        raise ValueError("the thermal history is empty: nothing to model")
    pieces: list[tuple[float, float, bool]] = []  # (duration, T, immersed)
    t_prev: float | None = None
    for start, end, temps, imm in segs:
        if t_prev is not None and start < t_prev - SEGMENT_OVERLAP_S:
            raise ValueError(
                f"thermal history segments overlap: one starts at {start} s before an "
                f"earlier one ends at {t_prev} s (a sample's history runs forward in lab "
                "time; a record that was continued by another sample?)")
        if t_prev is not None and start > t_prev:
            pieces.append((start - t_prev, float(gap_temperature_K), False))
        start = start if t_prev is None else max(start, t_prev)
        if end > start:
            if len(temps) == 1:
                pieces.append((end - start, temps[0], imm))
            else:
                a, b = temps[0], temps[-1]
                dur = (end - start) / ramp_pieces
                for i in range(ramp_pieces):
                    pieces.append((dur, a + (b - a) * (i + 0.5) / ramp_pieces, imm))
        t_prev = end if t_prev is None else max(t_prev, end)
    stages: list[HeatStage] = []
    cur: list[float] | None = None  # [duration, ∫D dt, ∫k dt, immersed]

    def close(c: list[float]) -> None:
        temp = _inverse_law(bulk, c[1] / c[0])
        stages.append(HeatStage(c[0], temp, bool(c[3]),
                                c[2] / (c[0] * float(boundary(temp)))))

    for dur, temp, imm in pieces:
        if dur <= 0:
            continue
        d, k = float(bulk(temp)), float(boundary(temp))
        if cur is not None and bool(cur[3]) == imm and \
                abs(math.log((k / d) / (cur[2] / cur[1]))) <= _RATIO_BAND:
            cur[0] += dur
            cur[1] += d * dur
            cur[2] += k * dur
            continue
        if cur is not None:
            close(cur)
        cur = [dur, d * dur, k * dur, float(imm)]
    if cur is not None:
        close(cur)
    return stages


def staircase_factors(grain_ids: np.ndarray, pixel_m: tuple[float, float]) -> dict[int, float]:
    """Staircase factor f = |n_x| + |n_y| per neighbouring grain pair (key ``i * n + j``).

    The normal is perpendicular to the principal axis of the midpoints of the pixel faces the
    two grains share (f = 1 for a pair sharing a single face).
    """
    ids = np.asarray(grain_ids, dtype=np.int64)
    hx, hy = pixel_m
    ny, nx = ids.shape
    n = int(ids.max()) + 1
    r, c = np.mgrid[0:ny, 0:nx]
    a = np.concatenate([ids[:, :-1].ravel(), ids[:-1, :].ravel()])
    b = np.concatenate([ids[:, 1:].ravel(), ids[1:, :].ravel()])
    xm = np.concatenate([((c[:, :-1] + 1) * hx).ravel(), ((c[:-1, :] + 0.5) * hx).ravel()])
    ym = np.concatenate([((r[:, :-1] + 0.5) * hy).ravel(), ((r[:-1, :] + 1) * hy).ravel()])
    on = a != b
    key = np.minimum(a[on], b[on]) * n + np.maximum(a[on], b[on])
    xm, ym = xm[on], ym[on]
    keys, inv, cnt = np.unique(key, return_inverse=True, return_counts=True)
    sx, sy = np.bincount(inv, xm) / cnt, np.bincount(inv, ym) / cnt
    dx, dy = xm - sx[inv], ym - sy[inv]
    sxx, syy, sxy = (np.bincount(inv, dx * dx), np.bincount(inv, dy * dy),
                     np.bincount(inv, dx * dy))
    theta = 0.5 * np.arctan2(2 * sxy, sxx - syy)  # direction of the boundary (tangent)
    f = np.abs(np.sin(theta)) + np.abs(np.cos(theta))
    f[cnt < 2] = 1.0
    return dict(zip(keys.tolist(), f.tolist(), strict=True))


def _window_network(grain_ids: np.ndarray, pixel_m: tuple[float, float]) -> FVNetwork:
    ids = np.asarray(grain_ids, dtype=np.int64)
    ny, nx = ids.shape
    hx, hy = pixel_m
    cell = np.arange(nx * ny).reshape(ny, nx)
    fi = np.concatenate([cell[:, :-1].ravel(), cell[:-1, :].ravel()])
    fj = np.concatenate([cell[:, 1:].ravel(), cell[1:, :].ravel()])
    mx, my = ny * (nx - 1), (ny - 1) * nx
    area = np.concatenate([np.full(mx, hy), np.full(my, hx)])
    dist = np.concatenate([np.full(mx, hx), np.full(my, hy)])
    gi, gj = ids.ravel()[fi], ids.ravel()[fj]
    resist = np.zeros(len(fi))
    on = gi != gj
    if np.any(on):
        n = int(ids.max()) + 1
        table = staircase_factors(ids, pixel_m)
        keys = np.minimum(gi[on], gj[on]) * n + np.maximum(gi[on], gj[on])
        uk, inv = np.unique(keys, return_inverse=True)
        resist[on] = np.array([table[k] for k in uk.tolist()])[inv]
    return FVNetwork(volume=np.full(nx * ny, hx * hy), face_i=fi, face_j=fj, area=area,
                     dist_bulk=dist, dist_eff=np.zeros(len(fi)), gb_resist=resist)


def _laplacian(net: FVNetwork, g: np.ndarray) -> sp.csr_array:
    n = net.n_cells
    diag = np.bincount(net.face_i, g, n) + np.bincount(net.face_j, g, n)
    rows = np.concatenate([net.face_i, net.face_j, np.arange(n)])
    cols = np.concatenate([net.face_j, net.face_i, np.arange(n)])
    return sp.csr_array(sp.coo_array((np.concatenate([-g, -g, diag]), (rows, cols)),
                                     shape=(n, n)))


def resolve_workers(workers: int | None) -> int:
    """Threads of a forward model: ``workers`` checked, or None: up to 2, as the cores allow.

    Raises
    ------
    ValueError
        If ``workers`` is not a whole number >= 1 (the message names the value).
    """
    if workers is None:
        return max(1, min(2, len(os.sched_getaffinity(0)) if hasattr(
            os, "sched_getaffinity") else (os.cpu_count() or 1)))
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise ValueError(f"workers must be a whole number >= 1, got {workers!r}")
    return workers


class ImageForwardModel:
    """u(x, y) on the image pixels for given D*_bulk and k, with its sensitivities.

    Parameters
    ----------
    grain_ids : ndarray of int, shape (ny, nx)
        Grain map on the image's pixels; column 0 starts at the liquid level (x = 0).
    pixel_m : tuple of float
        (x, y) pixel pitch (m).
    stages : sequence of HeatStage
        Thermal history (:func:`equivalent_history`).
    temperature_K : float
        The temperature whose D*_bulk and k are the parameters; stages at other temperatures
        scale them with the laws ``bulk`` and ``boundary``.
    bulk, boundary : laws, optional
        Temperature dependence used for that scaling (the twin's defaults).
    strip_extent_m : tuple of float
        x range of the whole sample strip (m): the left part (x < 0) is bath-side material.
    coarse_dx_m : float
        Spacing of the homogenised line cells (m).
    steps_per_stage : int
        Uniform TR-BDF2 steps per stage.
    workers : int, optional
        Threads factorizing stages ahead of the integration (default: up to 2, as the
        machine's cores allow).
    """

    def __init__(
        self,
        grain_ids: np.ndarray,
        pixel_m: tuple[float, float],
        stages: Sequence[HeatStage],
        *,
        temperature_K: float,
        bulk: BulkDiffusivity | None = None,
        boundary: BoundaryConductance | None = None,
        strip_extent_m: tuple[float, float] = (-1e-3, 9e-3),
        coarse_dx_m: float = 5e-6,
        steps_per_stage: int = 8,
        workers: int | None = None,
    ) -> None:
        ids = np.asarray(grain_ids)
        if ids.ndim != 2 or min(ids.shape) < 3:
            raise ValueError(f"grain_ids must be a 2-D map of at least 3 x 3, got {ids.shape}")
        hx, hy = (float(v) for v in pixel_m)
        if not (hx > 0 and hy > 0 and math.isfinite(hx * hy)):
            raise ValueError(f"pixel_m must be two finite values > 0 m, got {pixel_m!r}")
        if not (math.isfinite(temperature_K) and temperature_K > 0):
            raise ValueError(f"temperature_K must be > 0 K, got {temperature_K!r}")
        if steps_per_stage < 2:
            raise ValueError(f"steps_per_stage must be >= 2, got {steps_per_stage}")
        self.bulk = bulk or BulkDiffusivity.paper_default()
        self.boundary = boundary or BoundaryConductance.paper_default()
        self.temperature_K = float(temperature_K)
        self.stages = list(stages)
        self.steps_per_stage = int(steps_per_stage)
        self.workers = resolve_workers(workers)
        self.grain_ids = np.ascontiguousarray(ids, dtype=np.int64)
        self.pixel_m = (hx, hy)
        ny, nx = ids.shape
        self.shape = (ny, nx)
        lo, hi = (float(v) for v in strip_extent_m)
        x_end = nx * hx
        if not lo < 0 < x_end < hi:
            raise ValueError(f"strip_extent_m {strip_extent_m} must enclose 0 .. {x_end:.6g} m")
        width = ny * hy
        window = _window_network(self.grain_ids, self.pixel_m)
        # φ of the line beyond the image from the first _PHI_COLUMNS columns of the grain map
        # (within 1 % of φ from 256 or 512 columns, at a third of the cost per node)
        self._phi_net = window if nx <= _PHI_COLUMNS else _window_network(
            self.grain_ids[:, :_PHI_COLUMNS], self.pixel_m)
        self._phi_nx = min(nx, _PHI_COLUMNS)
        cell = np.arange(nx * ny).reshape(ny, nx)
        parts, links = [window], []
        for side, (a, b) in (("left", (lo, 0.0)), ("right", (x_end, hi))):
            m = max(1, int(math.ceil((b - a) / coarse_dx_m - 1e-9)))
            edges = np.linspace(a, b, m + 1)
            line = FVNetwork.line(edges, homogenised=True)
            line = FVNetwork(volume=line.volume * width, face_i=line.face_i,
                             face_j=line.face_j, area=line.area * width,
                             dist_bulk=line.dist_bulk, dist_eff=line.dist_eff,
                             gb_resist=line.gb_resist)
            parts.append(line)
            dx_c = edges[1] - edges[0]
            if side == "left":  # the bath side touches the grains directly (bulk path)
                links.append((0, cell[:, 0], 1, np.full(ny, m - 1), hy, hx, 0.0))
            else:
                links.append((0, cell[:, -1], 2, np.zeros(ny, np.int64), hy, 0.5 * hx,
                              0.5 * dx_c))
        self.network = FVNetwork.join(parts, links)
        self.n_window = nx * ny
        n_left = parts[1].n_cells
        self.held = np.zeros(self.network.n_cells, dtype=bool)
        self.held[self.n_window:self.n_window + n_left] = True
        self._log_phi: dict[int, float] = {}
        self.factorizations = 0

    # ---------------------------------------------------------------- homogenised D_eff
    def _phi_node(self, j: int) -> float:
        if j not in self._log_phi:
            net = self._phi_net
            ny, nx = self.shape[0], self._phi_nx
            hx, hy = self.pixel_m
            r = math.exp(j * _PHI_STEP)  # k / D_bulk (1/m) with D_bulk = 1 m²/s
            g = net.area / (net.dist_bulk + net.gb_resist / r)
            lap = _laplacian(net, g)
            held = np.zeros((ny, nx), dtype=bool)
            held[:, 0] = held[:, -1] = True
            held = held.ravel()
            val = np.zeros((ny, nx))
            val[:, 0] = 1.0
            val = val.ravel()
            free = ~held
            kff = sp.csc_array(lap[free][:, free])
            rhs = -(lap[free][:, held] @ val[held])
            c = val.copy()
            c[free] = splu(kff, permc_spec="MMD_AT_PLUS_A").solve(rhs)
            mid = nx // 2
            face = np.arange(ny) * (nx - 1) + (mid - 1)
            flux = float(np.sum(g[face] * (c[net.face_i[face]] - c[net.face_j[face]])))
            self._log_phi[j] = math.log(flux * (nx - 1) * hx / (ny * hy))
        return self._log_phi[j]

    def phi(self, ratio_per_m: float) -> tuple[float, float]:
        """(φ, d ln φ / d ln r) with D_eff = D_bulk φ(r), r = k / D_bulk (1/m)."""
        u = math.log(ratio_per_m) / _PHI_STEP
        j = math.floor(u)
        a, b = self._phi_node(j), self._phi_node(j + 1)
        w = u - j
        return math.exp((1 - w) * a + w * b), (b - a) / _PHI_STEP

    # ---------------------------------------------------------------- solve
    def _scales(self, st: HeatStage) -> tuple[float, float]:
        """D*_bulk and k of a stage relative to those at the model's temperature."""
        t0, temp = self.temperature_K, st.temperature_K
        return (float(self.bulk(temp)) / float(self.bulk(t0)),
                st.k_factor * float(self.boundary(temp)) / float(self.boundary(t0)))

    def active_stages(self, d_bulk_m2_s: float, k_m_s: float) -> list[HeatStage]:
        """Stages in which the field moves by more than 10 % of a pixel (others are skipped)."""
        h = min(self.pixel_m)
        out = []
        for st in self.stages:
            a, b = self._scales(st)
            if math.sqrt(d_bulk_m2_s * a * st.duration_s) > 0.1 * h or \
                    k_m_s * b * st.duration_s > 0.1 * h:
                out.append(st)
        return out

    def solve(
        self, d_bulk_m2_s: float, k_m_s: float, *, sensitivities: bool = True
    ) -> tuple[np.ndarray, np.ndarray | None]:
        """u on the image (ny, nx) and, optionally, ∂u/∂ln D_bulk and ∂u/∂ln k (2, ny, nx).

        The stages' sparse LU factorizations do not depend on the field, so they run ahead in
        worker threads (SuperLU releases the GIL) while earlier stages are integrated: at
        most :attr:`workers` factorizations are under way at once.
        """
        if not (d_bulk_m2_s > 0 and k_m_s > 0 and math.isfinite(d_bulk_m2_s * k_m_s)):
            raise ValueError(f"D_bulk and k must be finite and > 0, got {d_bulk_m2_s!r}, "
                             f"{k_m_s!r}")
        n = self.network.n_cells
        x = np.zeros(n)
        s = np.zeros((n, 2)) if sensitivities else None
        stages = iter(self.active_stages(d_bulk_m2_s, k_m_s))
        pending: deque[tuple[HeatStage, Future[_StageOperator]]] = deque()
        with ThreadPoolExecutor(max_workers=self.workers) as pool:

            def submit() -> None:
                st = next(stages, None)
                if st is not None:
                    pending.append((st, pool.submit(self._operator, st, d_bulk_m2_s, k_m_s,
                                                    sensitivities)))

            for _ in range(self.workers):
                submit()
            while pending:
                st, job = pending.popleft()
                op = job.result()
                self.factorizations += 1
                submit()
                x, s = self._march(x, s, st, op)
        shape = self.shape
        u = x[: self.n_window].reshape(shape)
        du = None if s is None else s[: self.n_window].T.reshape(2, *shape)
        return u, du

    def _operator(self, st: HeatStage, d_bulk_m2_s: float, k_m_s: float,
                  sensitivities: bool) -> _StageOperator:
        """The stage's matrices and the LU of its implicit step (thread-safe: no state)."""
        net = self.network
        a, b_scale = self._scales(st)
        d, k = d_bulk_m2_s * a, k_m_s * b_scale
        phi, slope = self.phi(k / d)
        de = d * phi
        tb, te, tk = net.dist_bulk / d, net.dist_eff / de, net.gb_resist / k
        g = net.area / (tb + te + tk)
        lap = _laplacian(net, g)
        held = self.held if st.immersed else np.zeros(net.n_cells, dtype=bool)
        free = ~held
        n_held = int(held.sum())
        kff = sp.csr_array(lap[free][:, free])
        b = -(lap[free][:, held] @ np.ones(n_held))
        vf = net.volume[free]
        dt = st.duration_s / self.steps_per_stage
        lu = splu(sp.csc_array(sp.diags_array(vf) + _W * dt * kff),
                  permc_spec="MMD_AT_PLUS_A", diag_pivot_thresh=0.0,
                  options={"SymmetricMode": True})
        kp: list[sp.csr_array] = []
        bp = None
        if sensitivities:
            g2 = g * g / net.area
            laps = (_laplacian(net, g2 * (tb + (1 - slope) * te)),
                    _laplacian(net, g2 * (tk + slope * te)))
            kp = [sp.csr_array(lp[free][:, free]) for lp in laps]
            bp = np.column_stack([-(lp[free][:, held] @ np.ones(n_held)) for lp in laps])
        return _StageOperator(held=held, kff=kff, b=b, vf=vf, dt=dt, lu=lu, kp=kp, bp=bp)

    def _march(self, x: np.ndarray, s: np.ndarray | None, st: HeatStage,
               op: _StageOperator) -> tuple[np.ndarray, np.ndarray | None]:
        """TR-BDF2 steps of one stage for the field and (optionally) its sensitivities."""
        held, free = op.held, ~op.held
        kff, b, vf, lu, kp, bp = op.kff, op.b, op.vf, op.lu, op.kp, op.bp
        wdt = _W * op.dt
        x = x.copy()
        x[held] = 1.0
        xf = x[free]
        sf = None
        if s is not None:
            s = s.copy()
            s[held] = 0.0
            sf = s[free]
        vcol = vf[:, None]
        for _ in range(self.steps_per_stage):
            kx = kff @ xf
            xg = lu.solve(vf * xf - wdt * kx + 2.0 * wdt * b)
            if sf is not None:
                kpx = np.column_stack([k1 @ xf for k1 in kp])
                kpg = np.column_stack([k1 @ xg for k1 in kp])
                sg = lu.solve(vcol * sf - wdt * (kff @ sf) - wdt * kpx + 2.0 * wdt * bp
                              - wdt * kpg)
            xn = lu.solve(vf * (_C_NEW * xg - _C_OLD * xf) + wdt * b)
            if sf is not None:
                kpn = np.column_stack([k1 @ xn for k1 in kp])
                sf = lu.solve(vcol * (_C_NEW * sg - _C_OLD * sf) + wdt * bp - wdt * kpn)
            xf = xn
        x[free] = xf
        if s is not None:
            s[free] = sf
        return x, s
