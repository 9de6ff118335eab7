"""The per-slot placement MILP for the M/M/c model, solved with HiGHS (``scipy.optimize.milp``).

Formulation (every symbol and linearisation is explained in ``docs/optimum.md``):

* ``y[k,j]`` binary, slot ``k`` runs ``j`` replicas (one-hot over ``j``); ``h_k = 1 - y[k,0]`` = "k hosts";
* ``x[p,k]`` share of path ``p = (service, cell)`` served by slot ``k``; ``u[s]`` share of service ``s`` unserved;
* closest assignment: for the ``r``-th nearest slot ``k_r`` of a path, ``sum_{r' > r} x[p,k_r'] <= 1 - h_{k_r}``;
* ``L[k,j]`` load of slot ``k`` when it runs ``j`` replicas, ``L[k,j] <= rho_max j mu_k y[k,j]`` (nothing spills);
* ``t[k,j] >= slope * L[k,j] + icept * y[k,j]`` (tangent cuts of the queueing cost, :mod:`policies.optimum_cuts`).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import highspy
import numpy as np
from numpy.typing import ArrayLike
from scipy.optimize import LinearConstraint
from scipy.sparse import coo_matrix, csc_matrix

from envs.world import World
from policies.optimum_cuts import tangent_cuts


@dataclass
class MilpResult:
    placement: np.ndarray | None  # (K,) incumbent, None when HiGHS found none
    objective: float  # MILP objective of the incumbent (nan without one)
    bound: float  # best dual bound
    gap: float  # relative gap (0 when optimal, inf without an incumbent)
    status: str
    seconds: float
    cut_error: float  # largest relative shortfall of the tangent envelope


class _Rows:
    """Sparse constraint rows collected as COO triplets."""

    def __init__(self) -> None:
        self.r: list[np.ndarray] = []
        self.c: list[np.ndarray] = []
        self.v: list[np.ndarray] = []
        self.lo: list[np.ndarray] = []
        self.hi: list[np.ndarray] = []
        self.n = 0

    def add(self, row: np.ndarray, col: np.ndarray, val: ArrayLike, n: int, lo: float, hi: float) -> None:
        """``n`` new rows; ``row`` indexes them from 0."""
        self.r.append(np.asarray(row) + self.n)
        self.c.append(np.asarray(col))
        self.v.append(np.broadcast_to(np.asarray(val, dtype=np.float64), np.shape(row)))
        self.lo.append(np.full(n, lo))
        self.hi.append(np.full(n, hi))
        self.n += n

    def constraint(self, n_cols: int) -> LinearConstraint:
        a = coo_matrix(
            (np.concatenate(self.v), (np.concatenate(self.r), np.concatenate(self.c))), shape=(self.n, n_cols)
        )
        return LinearConstraint(a.tocsr(), np.concatenate(self.lo), np.concatenate(self.hi))


def solve_milp(
    world: World,
    users: np.ndarray,
    previous: np.ndarray,
    time_limit: float,
    n_cuts: int = 16,
    rel_gap: float = 1e-4,
    start: np.ndarray | None = None,
) -> MilpResult:
    """Build and solve the MILP; ``start`` (default ``previous``) is handed to HiGHS as a MIP start."""
    sc = world.scenario
    rw, lt = sc.reward, sc.latency
    K, J = world.n_slots, int(world.slot_max.max())
    W = J + 1
    mu = world.svc_rate[world.slot_service]
    lam = np.outer(world.mix * sc.demand.request_rate, users)  # (S, C)
    total = float(lam.sum())
    norm = 1.0 / total if total > 0 else 0.0
    sla_w = rw.sla_penalty * 100.0

    # paths with demand and their candidate slots (nearest first)
    ps, pc = np.nonzero(lam > 0)
    P = len(ps)
    cand = world.order[ps, pc]  # (P, A), padded with K
    net = world.order_net[ps, pc]
    valid = cand < K
    xp, xr = np.nonzero(valid)  # path, rank of every x variable
    xk, xnet = cand[xp, xr], net[xp, xr]
    nx = len(xp)
    services = np.unique(ps)
    svc_index = np.full(world.n_services, -1)
    svc_index[services] = np.arange(len(services))

    # curves (k, j >= 1) and their cuts; violations use the slot's nearest cell (smallest network latency)
    ck = np.repeat(np.arange(K), J)
    cj = np.tile(np.arange(1, J + 1), K)
    keep = cj <= world.slot_max[ck]
    ck, cj = ck[keep], cj[keep]
    budget = lt.timeout_ms - world.net_ms[:, world.slot_node].min(0)[ck]
    reach = np.bincount(xk, lam[ps[xp], pc[xp]], minlength=K)  # largest load slot k could receive
    cuts = tangent_cuts(ck, cj, mu[ck], lt.rho_max, budget, sla_w, n_cuts, top=reach[ck])
    nc = len(ck)

    # column layout: y | x | L | t | u
    ox = K * W
    oL = ox + nx
    ot = oL + nc
    ou = ot + nc
    n_cols = ou + len(services)
    yk = lambda k, j: k * W + j  # noqa: E731

    cost = np.zeros(n_cols)
    jj = np.arange(W)[None, :]
    cost[: K * W] = (rw.replica_cost * jj + rw.change_cost * np.abs(jj - previous[:, None])).ravel()
    cost[ox:oL] = lam[ps[xp], pc[xp]] * xnet * norm
    cost[ot:ou] = 1.0  # the cut rows carry the 1/total scaling
    cost[ou:] = lam[services].sum(1) * (lt.timeout_ms + sla_w) * norm

    lo, hi = np.zeros(n_cols), np.ones(n_cols)
    hi[: K * W] = (jj <= world.slot_max[:, None]).ravel()
    hi[oL:] = np.inf
    hi[ou:] = 1.0
    integrality = np.zeros(n_cols)
    integrality[: K * W] = 1

    R = _Rows()
    ks = np.arange(K)
    R.add(np.repeat(ks, W), np.arange(K * W), 1.0, K, 1.0, 1.0)  # one-hot
    node = world.slot_node
    for use, capacity in ((world.slot_cpu, world.node_cpu), (world.slot_ram, world.node_ram)):
        for n in range(world.n_nodes):  # per node: sum_k,j j * use_k * y[k,j] <= capacity
            on = np.flatnonzero(node == n)
            cols = (on[:, None] * W + jj).ravel()
            R.add(np.zeros(len(cols), int), cols, (use[on][:, None] * jj).ravel(), 1, -np.inf, capacity[n])
    # assignment: sum_k x[p,k] + u[s] = 1
    R.add(np.concatenate([xp, np.arange(P)]), np.concatenate([ox + np.arange(nx), ou + svc_index[ps]]), 1.0, P, 1, 1)
    # x[p,k] <= h_k  <=>  x + y[k,0] <= 1
    R.add(np.repeat(np.arange(nx), 2), np.stack([ox + np.arange(nx), yk(xk, 0)], 1).ravel(), 1.0, nx, -np.inf, 1)
    # closest assignment: sum_{r' > r} x[p, r'] - y[k_r, 0] <= 0
    rank_row = -np.ones(cand.shape, dtype=np.int64)
    rank_row[valid] = np.arange(nx)  # one row per (path, rank)
    later = (xr[:, None] > np.arange(cand.shape[1])[None, :]) & valid[xp]  # x var (p, r') after rank r
    xi, rr = np.nonzero(later)
    rows = np.concatenate([rank_row[xp[xi], rr], np.arange(nx)])
    cols = np.concatenate([ox + xi, yk(xk, 0)])
    vals = np.concatenate([np.ones(len(xi)), -np.ones(nx)])
    R.add(rows, cols, vals, nx, -np.inf, 0)
    # unserved only if no slot of the service hosts: u[s] - y[k,0] <= 0
    sk = np.flatnonzero(svc_index[world.slot_service] >= 0)
    rows = np.repeat(np.arange(len(sk)), 2)
    R.add(
        rows,
        np.stack([ou + svc_index[world.slot_service[sk]], yk(sk, 0)], 1).ravel(),
        [1.0, -1.0] * len(sk),
        len(sk),
        -np.inf,
        0,
    )
    # load balance: sum_p lam_p x[p,k] - sum_j L[k,j] = 0
    R.add(
        np.concatenate([xk, ck]),
        np.concatenate([ox + np.arange(nx), oL + np.arange(nc)]),
        np.concatenate([lam[ps[xp], pc[xp]], -np.ones(nc)]),
        K,
        0,
        0,
    )
    # capacity per replica choice: L[k,j] - cap y[k,j] <= 0
    R.add(
        np.repeat(np.arange(nc), 2),
        np.stack([oL + np.arange(nc), yk(ck, cj)], 1).ravel(),
        np.stack([np.ones(nc), -cuts.cap], 1).ravel(),
        nc,
        -np.inf,
        0,
    )
    # tangent cuts: slope L + icept y - t <= 0 (scaled by 1/total like the objective)
    cp, cm = np.nonzero(cuts.used)  # curve and cut index of every emitted cut
    icept = cuts.icept[cp, cm] * norm
    icept[np.abs(icept) < 1e-9] = 0.0  # below HiGHS's matrix tolerance: the tangent through 0
    rows = np.repeat(np.arange(len(cp)), 3)
    cols = np.stack([oL + cp, yk(ck[cp], cj[cp]), ot + cp], 1)
    vals = np.stack([cuts.slope[cp, cm] * norm, icept, -np.ones(len(cp))], 1)
    R.add(rows, cols.ravel(), vals.ravel(), len(cp), -np.inf, 0)

    y0 = np.zeros(K * W)
    y0[yk(np.arange(K), previous if start is None else start)] = 1.0
    return _run_highs(cost, R.constraint(n_cols), integrality, lo, hi, y0, W, time_limit, rel_gap, cuts.max_rel_error)


def _run_highs(
    cost: np.ndarray,
    cons: LinearConstraint,
    integrality: np.ndarray,
    lo: np.ndarray,
    hi: np.ndarray,
    y0: np.ndarray,
    width: int,
    time_limit: float,
    rel_gap: float,
    cut_error: float,
) -> MilpResult:
    """Solve with HiGHS from the MIP start ``y0`` (HiGHS completes its continuous part with one LP)."""
    a = csc_matrix(cons.A)
    lp = highspy.HighsLp()
    lp.num_col_, lp.num_row_ = a.shape[1], a.shape[0]
    lp.col_cost_, lp.col_lower_, lp.col_upper_ = cost, lo, hi
    lp.row_lower_, lp.row_upper_ = cons.lb, cons.ub
    lp.a_matrix_.format_ = highspy.MatrixFormat.kColwise
    lp.a_matrix_.start_, lp.a_matrix_.index_, lp.a_matrix_.value_ = a.indptr, a.indices, a.data
    lp.integrality_ = [highspy.HighsVarType(int(v)) for v in integrality]
    h = highspy.Highs()
    h.silent()
    h.setOptionValue("time_limit", float(max(time_limit, 1e-3)))
    h.setOptionValue("mip_rel_gap", rel_gap)
    h.setOptionValue("threads", 1)
    h.passModel(lp)
    h.setSolution(len(y0), np.arange(len(y0), dtype=np.int32), y0)
    start = time.perf_counter()
    h.run()
    seconds = time.perf_counter() - start
    info, status = h.getInfo(), h.getModelStatus()
    text = h.modelStatusToString(status)
    bound = float(info.mip_dual_bound)
    if info.primal_solution_status != highspy.kSolutionStatusFeasible:
        return MilpResult(None, np.nan, bound, np.inf, f"no incumbent: {text}", seconds, cut_error)
    y = np.asarray(h.getSolution().col_value)[: len(y0)].reshape(-1, width)
    placement = y.argmax(1).astype(np.int64)
    objective = float(info.objective_function_value)
    if status == highspy.HighsModelStatus.kOptimal:
        return MilpResult(placement, objective, bound, 0.0, "optimal", seconds, cut_error)
    label = "time limit" if status == highspy.HighsModelStatus.kTimeLimit else "stopped"
    return MilpResult(placement, objective, bound, float(info.mip_gap), f"{label}: {text}", seconds, cut_error)
