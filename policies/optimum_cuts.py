"""Tangent cuts for the per-deployment queueing cost of the optimum MILP (see ``docs/optimum.md``).

A slot ``k`` running ``j`` replicas that serves ``L`` requests/s adds to the slot's demand-weighted cost

    g(L) = L * sojourn_ms(L, j) + sla_weight * L * P(T > timeout - net_min)

(both terms are in "cost x requests/s"; the MILP divides by the total request rate). ``g`` is evaluated with
the exact M/M/c formulas of :mod:`envs.latency` on ``[0, rho_max * j * mu]``. It is replaced in the MILP by
the maximum of a few tangent lines (outer approximation): the tangent points are picked greedily where the
current envelope is furthest below ``g`` on a fine grid, so the envelope is a lower bound that is tight
where it matters (near saturation, where ``g`` bends sharply).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from envs import latency as lat

GRID = 257


@dataclass
class Cuts:
    """Tangent lines ``t >= slope * L + icept * y`` per (slot, replicas) curve."""

    slot: np.ndarray  # (P,) slot id of each curve
    replicas: np.ndarray  # (P,) replica count j >= 1
    cap: np.ndarray  # (P,) admissible load rho_max * j * mu
    slope: np.ndarray  # (P, M)
    icept: np.ndarray  # (P, M)
    used: np.ndarray  # (P, M) bool: cuts that tighten the envelope (the others are not emitted)
    max_rel_error: float  # largest (g - envelope) / g over the grid (L > 0), all curves


def curve(load: np.ndarray, j: np.ndarray, mu: np.ndarray, budget_ms: np.ndarray, sla_weight: float) -> np.ndarray:
    """``g(L)`` for arrays broadcast together (``j >= 1``, ``load < j * mu``)."""
    max_j = int(j.max())
    pw, theta = lat.mmc_wait(load, j, mu, max_j)
    wq = np.divide(pw, theta, out=np.zeros_like(pw), where=theta > 0)
    cost = load * 1000.0 * (1.0 / mu + wq)
    if sla_weight > 0:
        cost = cost + sla_weight * load * lat.mmc_tail(pw, theta, mu, budget_ms)
    return cost


def tangent_cuts(
    slot: np.ndarray,
    replicas: np.ndarray,
    mu: np.ndarray,
    rho_max: float,
    budget_ms: np.ndarray,
    sla_weight: float,
    n_cuts: int = 16,
    top: np.ndarray | None = None,
    tol: float = 1e-4,
) -> Cuts:
    """Greedy outer approximation of every curve ``(slot[p], replicas[p])`` with ``n_cuts`` tangents.

    ``mu`` and ``budget_ms`` are per curve. The tangent points lie in ``[0, min(cap, top)]`` (``top``: the
    largest load the slot can ever receive, so no cut is wasted on unreachable loads); the cuts stay valid
    lower bounds everywhere because ``g`` is convex (checked by :func:`convexity_violation` in the tests).
    A curve gets no further cut once its envelope is within ``tol`` (relative) of it everywhere on the grid
    (``used`` marks the cuts kept). Slopes come from central differences on the fine grid.
    """
    if n_cuts < 2:
        raise ValueError(f"n_cuts: need at least 2 tangent cuts, got {n_cuts}")
    cap = rho_max * replicas * mu
    q = np.linspace(0.0, 1.0, GRID)
    end = cap if top is None else np.minimum(cap, np.maximum(top, 1e-9 * cap))
    load = end[:, None] * q[None, :]  # (P, G)
    args = (replicas[:, None].astype(np.float64), mu[:, None], budget_ms[:, None], sla_weight)
    g = curve(load, *args)
    h = 1e-6 * cap[:, None]
    slope_all = (curve(load + h, *args) - curve(np.maximum(load - h, 0.0), *args)) / (h + np.minimum(load, h))
    icept_all = g - slope_all * load
    P = len(cap)
    rows = np.arange(P)
    chosen = np.zeros((P, n_cuts), dtype=np.int64)
    chosen[:, 1] = GRID - 1
    used = np.zeros((P, n_cuts), dtype=bool)
    used[:, :2] = True
    env = np.maximum(icept_all[:, :1] + slope_all[:, :1] * load, icept_all[:, -1:] + slope_all[:, -1:] * load)
    scale = np.maximum(g.max(1, keepdims=True), 1e-12)
    rel = lambda e: (g - e) / (g + 1e-9 * scale)  # noqa: E731 - shortfall relative to the curve itself
    for m in range(2, n_cuts):
        short = rel(env)
        pick = short.argmax(1)
        chosen[:, m] = pick
        used[:, m] = short[rows, pick] > tol
        env = np.maximum(env, icept_all[rows, pick][:, None] + slope_all[rows, pick][:, None] * load)
    slope = np.take_along_axis(slope_all, chosen, 1)
    icept = np.minimum(np.take_along_axis(icept_all, chosen, 1), 0.0)  # g(0) = 0: keep t >= 0 valid at y = 0
    err = float(rel(env)[:, 1:].max()) if P else 0.0
    return Cuts(slot=slot, replicas=replicas, cap=cap, slope=slope, icept=icept, used=used, max_rel_error=err)


def convexity_violation(cuts: Cuts, mu: np.ndarray, budget_ms: np.ndarray, sla_weight: float) -> float:
    """Largest relative amount by which a sampled curve lies *below* one of its cuts (0 if the cuts are valid)."""
    q = np.linspace(0.0, 1.0, 4 * GRID)
    load = cuts.cap[:, None] * q[None, :]
    g = curve(load, cuts.replicas[:, None].astype(np.float64), mu[:, None], budget_ms[:, None], sla_weight)
    env = (cuts.slope[:, None, :] * load[..., None] + cuts.icept[:, None, :]).max(-1)
    scale = np.maximum(g.max(1), 1e-12)
    return float(np.maximum((env - g).max(1) / scale, 0.0).max()) if len(g) else 0.0
