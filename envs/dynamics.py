"""Backend-independent MDP pieces, batched over a leading axis ``B``: action repair, masks, observation, reward.

The single environment uses them with ``B = 1``, the vector environment with ``B = num_envs``, and the
Kubernetes backend shares them unchanged, so every backend has the same MDP.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from envs import kernels
from envs.world import World

OBS_LOW, OBS_HIGH = -1.0, 4.0


@dataclass
class Components:
    latency: np.ndarray
    replicas: np.ndarray
    changes: np.ndarray
    sla: np.ndarray
    infeasible: np.ndarray

    def total(self) -> np.ndarray:
        return -(self.latency + self.replicas + self.changes + self.sla + self.infeasible)


class Dynamics:
    """``compiled`` selects the numba kernels (default when numba is available) or the numpy reference code."""

    def __init__(self, world: World, compiled: bool | None = None):
        self.w = world
        self.compiled = kernels.ENABLED if compiled is None else compiled
        K, N = world.n_slots, world.n_nodes
        self.nvec = (world.slot_max + 1).astype(np.int64)
        self.width = int(self.nvec.max())
        self.mask_index = (np.arange(self.width)[None, :] < self.nvec[:, None]).ravel()
        onehot = np.zeros((K, N))
        onehot[np.arange(K), world.slot_node] = 1.0
        self.cpu_use = onehot * world.slot_cpu[:, None]  # (K, N)
        self.ram_use = onehot * world.slot_ram[:, None]
        self.slot_cpu, self.slot_ram = world.slot_cpu, world.slot_ram
        self.steps = np.arange(self.width, dtype=np.float64)[None, None, :]
        spec = world.scenario
        self.timeout = spec.latency.timeout_ms
        self.reward_spec = spec.reward
        self.slots_per_day = world.demand.slots_per_day
        peak = world.demand.trace(world.demand.default_key).max()
        self.user_scale = float(max(peak, 1.0))
        self.obs_dim = 2 * N + K + N + world.n_services + 2
        self.mask_dim = int(self.nvec.sum())
        self._hi = np.ascontiguousarray(self.nvec - 1)
        self._node = np.ascontiguousarray(world.slot_node, dtype=np.int64)
        self._slot_cpu = np.ascontiguousarray(self.slot_cpu, dtype=np.float64)
        self._slot_ram = np.ascontiguousarray(self.slot_ram, dtype=np.float64)
        self._node_cpu = np.ascontiguousarray(world.node_cpu, dtype=np.float64)
        self._node_ram = np.ascontiguousarray(world.node_ram, dtype=np.float64)
        r = self.reward_spec
        self._initial: np.ndarray | None = None
        self._costs = np.array([r.replica_cost, r.change_cost, r.sla_penalty, r.infeasible_penalty], dtype=np.float64)

    # -- capacity ---------------------------------------------------------------------------------------
    def usage(self, placement: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return placement @ self.cpu_use, placement @ self.ram_use

    def repair(self, prev: np.ndarray, action: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Apply an action: counts are clipped to ``[0, max_replicas]``; on any node whose CPU or RAM the
        request would exceed, that node's *increases* are rejected (its previous counts kept, decreases
        still applied). Returns the feasible placement and the number of rejected slots per row."""
        if self.compiled:
            act = np.ascontiguousarray(action, dtype=np.int64)
            out, rejected = np.empty(act.shape, dtype=np.int64), np.empty(act.shape[0])
            kernels.repair_kernel(
                np.ascontiguousarray(prev, dtype=np.int64), act, self._hi, self._node, self._slot_cpu,
                self._slot_ram, self._node_cpu, self._node_ram, out, rejected,
            )  # fmt: skip
            return out, rejected
        req = np.clip(action, 0, self.nvec - 1)
        cpu, ram = self.usage(req)
        over = (cpu > self.w.node_cpu + 1e-9) | (ram > self.w.node_ram + 1e-9)
        if not over.any():
            return req, np.zeros(req.shape[0])
        bad = over[:, self.w.slot_node] & (req > prev)
        return np.where(bad, prev, req), bad.sum(1).astype(np.float64)

    def free(self, placement: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        cpu, ram = self.usage(placement)
        return self.w.node_cpu - cpu, self.w.node_ram - ram

    def mask(self, placement: np.ndarray, free_cpu: np.ndarray, free_ram: np.ndarray) -> np.ndarray:
        """Per slot, which replica counts fit if only that slot changed (flattened over the MultiDiscrete)."""
        node = self.w.slot_node
        room = np.minimum(free_cpu[:, node] / self.slot_cpu, free_ram[:, node] / self.slot_ram)
        top = placement + np.floor(room + 1e-9)  # (B, K)
        m = self.steps <= top[..., None]
        return m.reshape(m.shape[0], -1)[:, self.mask_index].astype(np.float32)

    # -- observation ------------------------------------------------------------------------------------
    def observe(
        self,
        placement: np.ndarray,
        users: np.ndarray,
        slot: np.ndarray,
        service_latency: np.ndarray,
    ) -> dict[str, np.ndarray]:
        if self.compiled:
            B = placement.shape[0]
            obs, mask = np.empty((B, self.obs_dim), np.float32), np.empty((B, self.mask_dim), np.float32)
            kernels.observe_kernel(
                np.ascontiguousarray(placement, dtype=np.int64), np.ascontiguousarray(users, dtype=np.float64),
                np.ascontiguousarray(slot, dtype=np.int64), np.ascontiguousarray(service_latency, dtype=np.float64),
                self._hi, self._node, self._slot_cpu, self._slot_ram, self._node_cpu, self._node_ram,
                self.user_scale, self.timeout, self.slots_per_day, OBS_HIGH, obs, mask,
            )  # fmt: skip
            return {"observations": obs, "action_mask": mask}
        free_cpu, free_ram = self.free(placement)
        phase = 2 * np.pi * slot / self.slots_per_day
        obs = np.concatenate(
            [
                free_cpu / self.w.node_cpu,
                free_ram / self.w.node_ram,
                placement / (self.nvec - 1),
                np.minimum(users / self.user_scale, OBS_HIGH),
                np.minimum(service_latency / self.timeout, 2.0),
                np.sin(phase)[:, None],
                np.cos(phase)[:, None],
            ],
            axis=1,
        ).astype(np.float32)
        return {"observations": obs, "action_mask": self.mask(placement, free_cpu, free_ram)}

    # -- reward -----------------------------------------------------------------------------------------
    def reward(
        self,
        latency_ms: np.ndarray,
        violations: np.ndarray,
        placement: np.ndarray,
        prev: np.ndarray,
        rejected: np.ndarray,
    ) -> Components:
        r = self.reward_spec
        if self.compiled:
            B = placement.shape[0]
            replicas, changes, sla, infeasible = np.empty(B), np.empty(B), np.empty(B), np.empty(B)
            kernels.reward_kernel(
                np.ascontiguousarray(placement, dtype=np.int64), np.ascontiguousarray(prev, dtype=np.int64),
                np.ascontiguousarray(violations, dtype=np.float64), np.ascontiguousarray(rejected, dtype=np.float64),
                self._costs, replicas, changes, sla, infeasible,
            )  # fmt: skip
            return Components(latency=latency_ms, replicas=replicas, changes=changes, sla=sla, infeasible=infeasible)
        return Components(
            latency=latency_ms,
            replicas=r.replica_cost * placement.sum(1),
            changes=r.change_cost * np.abs(placement - prev).sum(1),
            sla=r.sla_penalty * 100.0 * violations,
            infeasible=r.infeasible_penalty * rejected,
        )

    def initial_placement(self) -> np.ndarray:
        """One replica per slot while it fits, round-robin over services (every service's first slot, then
        every service's second slot, ...), so every service is covered before any gets a second node."""
        if self._initial is None:
            self._initial = self._round_robin()
        return self._initial.copy()

    def _round_robin(self) -> np.ndarray:
        place = np.zeros(self.w.n_slots, dtype=np.int64)
        cpu, ram = self.w.node_cpu.copy(), self.w.node_ram.copy()
        rank = np.zeros(self.w.n_slots, dtype=np.int64)
        for s in range(self.w.n_services):
            ks = np.flatnonzero(self.w.slot_service == s)
            rank[ks] = np.arange(len(ks))
        for k in np.lexsort((self.w.slot_service, rank)):
            n = self.w.slot_node[k]
            if cpu[n] >= self.slot_cpu[k] and ram[n] >= self.slot_ram[k]:
                place[k] = 1
                cpu[n] -= self.slot_cpu[k]
                ram[n] -= self.slot_ram[k]
        return place
