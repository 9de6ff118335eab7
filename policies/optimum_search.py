"""A fast local search on the simulator's exact cost: the MILP's warm start (and its fallback without incumbent).

The env cost of a slot is a sum over services (demand-weighted latency and violations add up per service;
replica and change costs per slot), so the best single-slot move of *every* service can be applied in the
same round as long as node capacity holds. Each round evaluates every single-slot change in one batched
:meth:`envs.sim.SlotModel.evaluate` call; the search stops at a local optimum or after ``max_rounds``.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from envs.world import World

CostFn = Callable[[np.ndarray], np.ndarray]  # (B, K) placements -> (B,) env cost


def local_search(world: World, start: np.ndarray, cost: CostFn, max_rounds: int = 30) -> np.ndarray:
    """Improve the feasible placement ``start`` by rounds of per-service best single-slot moves."""
    width = int(world.slot_max.max()) + 1
    current = start.copy()
    base = float(cost(current[None])[0])
    cpu_room = world.node_cpu - np.bincount(world.slot_node, current * world.slot_cpu, minlength=world.n_nodes)
    ram_room = world.node_ram - np.bincount(world.slot_node, current * world.slot_ram, minlength=world.n_nodes)
    for _ in range(max_rounds):
        k, j = np.nonzero(np.arange(width)[None, :] <= world.slot_max[:, None])
        move = j != current[k]
        k, j = k[move], j[move]
        delta = j - current[k]
        fits = (delta * world.slot_cpu[k] <= cpu_room[world.slot_node[k]] + 1e-9) & (
            delta * world.slot_ram[k] <= ram_room[world.slot_node[k]] + 1e-9
        )
        k, j, delta = k[fits], j[fits], delta[fits]
        cand = np.repeat(current[None], len(k), 0)
        cand[np.arange(len(k)), k] = j
        gain = base - cost(cand)
        svc = world.slot_service[k]
        order = np.lexsort((-gain, svc))  # per service, best move first
        first = order[np.r_[True, svc[order][1:] != svc[order][:-1]]]
        first = first[gain[first] > 1e-9]
        if not len(first):
            break
        for i in first[np.argsort(-gain[first])]:
            n, d = world.slot_node[k[i]], delta[i]
            if d * world.slot_cpu[k[i]] <= cpu_room[n] + 1e-9 and d * world.slot_ram[k[i]] <= ram_room[n] + 1e-9:
                current[k[i]] = j[i]
                cpu_room[n] -= d * world.slot_cpu[k[i]]
                ram_room[n] -= d * world.slot_ram[k[i]]
        base = float(cost(current[None])[0])
    return current
