"""The exact per-slot optimum: the placement minimising the environment's own cost of the coming slot.

Two solvers behind one function, :func:`solve_slot` (formulation and approximations: ``docs/optimum.md``):

* **enumeration** when the action space is small (``prod(max_replicas + 1) <= max_enumeration``): every
  capacity-feasible placement is evaluated exactly with :meth:`envs.sim.SlotModel.evaluate` in one batch.
  Works for both latency models; for throttling the per-replica load counters are an input (``state``).
* **MILP** (M/M/c only) solved by HiGHS with a time limit, see :mod:`policies.optimum_milp`.

Whatever the solver, the chosen placement is re-evaluated with the simulator and that true cost reported.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from envs.dynamics import Dynamics
from envs.sim import SlotModel
from envs.world import World
from policies.base import Context, PlacementPolicy
from policies.optimum_milp import solve_milp
from policies.optimum_search import local_search

MAX_ENUMERATION = 20_000
CHUNK = 4096


@dataclass
class SlotSolution:
    placement: np.ndarray  # (K,) int replicas per slot
    objective: float  # solver objective (MILP: with linearised queueing cost; enumeration: == true_cost)
    true_cost: float  # env cost of the placement (simulator, exact): -reward
    bound: float  # lower bound on the solver objective (nan when unknown)
    gap: float  # relative gap of the incumbent (0 = proven optimal for the solver's model)
    status: str
    seconds: float
    method: str = "milp"


def slot_cost(
    world: World,
    placements: np.ndarray,
    users: np.ndarray,
    previous: np.ndarray,
    state: tuple[np.ndarray, np.ndarray] | None = None,
) -> np.ndarray:
    """Env cost (``-reward``) of serving the slot with each of ``placements`` (B, K), exactly as the simulator.

    Placements must be capacity-feasible. ``state``: the throttling counters (cpu, ram) per slot, shape (K,),
    at the end of the previous slot (zeros, as after ``reset``, when omitted); ignored under M/M/c.
    """
    B = len(placements)
    model = SlotModel(world)
    prev = np.broadcast_to(previous, placements.shape)
    if model.mmc:
        res = model.evaluate(placements, np.broadcast_to(users, (B, len(users))))
    else:
        model.reset_state(B)
        if state is not None:
            model.cpu[:] = state[0]
            model.ram[:] = state[1]
        res = model.evaluate(placements, np.broadcast_to(users, (B, len(users))), previous=prev)
    comp = Dynamics(world).reward(res.latency_ms, res.violations, placements, prev, np.zeros(B))
    return -comp.total()


def feasible_placements(world: World) -> np.ndarray:
    """Every capacity-feasible placement, shape (B, K)."""
    nvec = world.slot_max + 1
    grid = np.indices(tuple(int(n) for n in nvec)).reshape(len(nvec), -1).T.astype(np.int64)
    cpu, ram = Dynamics(world).usage(grid)
    ok = ((cpu <= world.node_cpu + 1e-9) & (ram <= world.node_ram + 1e-9)).all(1)
    return grid[ok]


def _enumerate(world: World, users: np.ndarray, previous: np.ndarray, state: Any) -> SlotSolution:
    start = time.perf_counter()
    cand = feasible_placements(world)
    cost = np.concatenate(
        [slot_cost(world, cand[i : i + CHUNK], users, previous, state) for i in range(0, len(cand), CHUNK)]
    )
    best = int(cost.argmin())
    c = float(cost[best])
    return SlotSolution(
        cand[best], c, c, c, 0.0, "optimal", time.perf_counter() - start, f"enumeration ({len(cand)} placements)"
    )


def solve_slot(
    world: World,
    users: np.ndarray,
    previous: np.ndarray,
    time_limit: float = 10.0,
    *,
    state: tuple[np.ndarray, np.ndarray] | None = None,
    method: str = "auto",
    max_enumeration: int = MAX_ENUMERATION,
    n_cuts: int = 16,
) -> SlotSolution:
    """The placement minimising the env cost of the coming slot (``users`` per cell, from ``previous``).

    ``method``: ``"auto"`` (enumeration if at most ``max_enumeration`` placements, else MILP),
    ``"enumerate"`` or ``"milp"``. The MILP is warm-started by a local search on the exact cost; without a
    MILP incumbent (e.g. a time limit of ~0) that local-search placement is returned and ``status`` says so.
    ``seconds`` is the whole wall time (local search, model building and HiGHS).
    """
    users = np.asarray(users, dtype=np.float64)
    previous = np.asarray(previous, dtype=np.int64)
    if users.shape != (world.n_nodes,):
        raise ValueError(f"users: expected shape ({world.n_nodes},), got {users.shape}")
    if previous.shape != (world.n_slots,):
        raise ValueError(f"previous: expected shape ({world.n_slots},), got {previous.shape}")
    if method not in ("auto", "enumerate", "milp"):
        raise ValueError(f"method: expected 'auto', 'enumerate' or 'milp', got {method!r}")
    size = float(np.prod((world.slot_max + 1).astype(np.float64)))
    if method == "enumerate" or (method == "auto" and size <= max_enumeration):
        if size > 50 * MAX_ENUMERATION:
            raise ValueError(f"method: {size:.3g} placements are too many to enumerate")
        return _enumerate(world, users, previous, state)
    if world.scenario.latency.model != "mmc":
        raise ValueError(
            f"method: the MILP needs the 'mmc' latency model; {size:.3g} placements exceed max_enumeration"
        )
    start = time.perf_counter()
    warm = local_search(world, previous, lambda p: slot_cost(world, p, users, previous))
    m = solve_milp(world, users, previous, time_limit, n_cuts=n_cuts, start=warm)
    placement = m.placement if m.placement is not None else warm
    true = float(slot_cost(world, placement[None], users, previous)[0])
    status = m.status if m.placement is not None else f"{m.status} (local-search placement returned)"
    return SlotSolution(placement, m.objective, true, m.bound, m.gap, status, time.perf_counter() - start, "milp")


class OptimumPolicy(PlacementPolicy):
    """Per-slot (myopic) optimum of the env cost. Under throttling it mirrors the simulator's load counters
    by replaying its own decisions on a shadow :class:`SlotModel` (exact for the simulated backend as long as
    every step of the episode goes through :meth:`act` and ``reset`` is called per episode)."""

    name: ClassVar[str] = "optimum"

    def __init__(self, time_limit: float = 10.0, max_enumeration: int = MAX_ENUMERATION, n_cuts: int = 16):
        self.time_limit = time_limit
        self.max_enumeration = max_enumeration
        self.n_cuts = n_cuts
        self.last: SlotSolution | None = None
        self._shadow: SlotModel | None = None

    def reset(self, world: World, seed: int | None = None) -> None:
        self._shadow = SlotModel(world)
        self._shadow.reset_state(1)
        self.last = None

    def act(self, ctx: Context) -> np.ndarray:
        world, snap = ctx.world, ctx.snapshot
        if self._shadow is None or self._shadow.w is not world:
            self.reset(world)
        assert self._shadow is not None
        state = None if self._shadow.mmc else (self._shadow.cpu[0].copy(), self._shadow.ram[0].copy())
        sol = solve_slot(
            world,
            snap.users,
            snap.placement,
            self.time_limit,
            state=state,
            max_enumeration=self.max_enumeration,
            n_cuts=self.n_cuts,
        )
        if not self._shadow.mmc:  # advance the counters exactly as the simulated backend will
            self._shadow.evaluate(sol.placement[None], snap.users[None], previous=snap.placement[None])
        self.last = sol
        return sol.placement.copy()

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "time_limit": self.time_limit, "max_enumeration": self.max_enumeration}
