"""One slot of the simulated city: routing with fail-over, then the latency of every request (batched).

Routing (documented contract, tested in ``tests/envs/test_sim.py``):

1. The requests of service ``s`` from cell ``c`` try the slots of ``s`` in increasing network latency
   from ``c`` (ties: scenario order), skipping slots with no replicas (a connection error fails over at once,
   like the upstream test-app client walking its host list).
2. Under M/M/c a deployment admits load up to ``rho_max * replicas * mu``; what exceeds it is refused and
   the refused share of every path moves on to that path's next hosting slot (proportionally across the
   paths that offered load to it). Up to ``max_attempts`` hosts are tried.
3. Under throttling a server never refuses: it slows down; every request is served by the first hosting slot.
4. Requests that find no host (no replicas anywhere, or every tried host full) are *not dropped*: they count
   as SLA violations with latency ``timeout_ms``.

A request's latency is its network latency to the serving node plus the processing latency there
(M/M/c mean sojourn time, or the throttling sleep). A served request violates the SLA when its latency
exceeds ``timeout_ms`` (M/M/c: exact tail probability; throttling: per request of the burst).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from envs import kernels
from envs import latency as lat
from envs.world import World


@dataclass
class SlotResult:
    latency_ms: np.ndarray  # (B,) demand-weighted mean latency
    violations: np.ndarray  # (B,) fraction of requests over the timeout (incl. unserved)
    unserved: np.ndarray  # (B,) fraction of requests that found no host
    service_latency_ms: np.ndarray  # (B, S) mean latency per service (0 where no demand)
    slot_load: np.ndarray  # (B, K) requests/s served per slot
    requests: np.ndarray  # (B,) requests in the slot


class SlotModel:
    """Evaluates placements of one world; holds the throttling counters when that model is used.

    ``compiled`` selects the numba kernel (default when numba is available) or the numpy reference code;
    both give the same results (to rounding of long sums).
    """

    def __init__(self, world: World, compiled: bool | None = None):
        self.w = world
        self.compiled = kernels.ENABLED if compiled is None else compiled
        spec = world.scenario
        self.mmc = spec.latency.model == "mmc"
        self.timeout = spec.latency.timeout_ms
        self.attempts = spec.latency.max_attempts if self.mmc else 1
        self.rho_max = spec.latency.rho_max
        self.slot_seconds = spec.demand.slot_seconds
        self.rate = world.mix * spec.demand.request_rate  # (S,) req/s per active user
        self.mu = world.svc_rate[world.slot_service]  # (K,)
        self.max_r = int(world.svc_max.max())
        self.order = world.order[None]  # (1, S, C, A)
        self.order_net = world.order_net[None]
        self.cpu = np.zeros((0, world.n_slots))
        self.ram = np.zeros((0, world.n_slots))
        # kernel inputs: per path position, the latency budget (s) and the static factor exp(-mu * budget)
        S, C, A = world.order.shape
        self._order = np.ascontiguousarray(world.order, dtype=np.int64).reshape(S * C, A)
        self._order_net = np.ascontiguousarray(world.order_net, dtype=np.float64).reshape(S * C, A)
        self._budget = np.maximum(self.timeout - self._order_net, 0.0) / 1000.0
        self._e_mu = np.exp(-np.append(self.mu, 1.0)[self._order] * self._budget)
        self._table: tuple | None = None  # built on the first compiled evaluation

    # -- throttling state -------------------------------------------------------------------------------
    def reset_state(self, batch: int, rows: np.ndarray | None = None) -> None:
        if rows is None or self.cpu.shape[0] != batch:
            self.cpu = np.zeros((batch, self.w.n_slots))
            self.ram = np.zeros((batch, self.w.n_slots))
        else:
            self.cpu[rows] = 0.0
            self.ram[rows] = 0.0

    def _rescale(self, old: np.ndarray, new: np.ndarray) -> None:
        """Per-replica mean counters after scaling.

        Scale-up: new pods start idle, so the mean drops by ``old/new``. Scale-down: Kubernetes deletes the
        newest (least loaded) pods first, so the load stays with the survivors: the total is conserved and the
        mean grows by ``old/new`` (capped by the counters' caps). Scaling to 0 clears the state.
        """
        scale = np.divide(old, new, out=np.zeros(new.shape), where=new > 0)
        np.minimum(self.cpu * scale, lat.THROTTLE_CPU_CAP, out=self.cpu)
        np.minimum(self.ram * scale, lat.THROTTLE_RAM_CAP, out=self.ram)

    # -- one slot -----------------------------------------------------------------------------------------
    def evaluate(self, replicas: np.ndarray, users: np.ndarray, previous: np.ndarray | None = None) -> SlotResult:
        """Serve one slot. ``replicas``: (B, K) ints; ``users``: (B, C) active users per cell.

        ``previous`` (B, K) is the placement of the last slot; with the throttling model it advances the
        per-replica counters (decay, rescale, burst) — pass ``None`` for a stateless what-if evaluation.
        """
        if self.compiled:
            return self._evaluate_compiled(replicas, users, previous)
        return self._evaluate_numpy(replicas, users, previous)

    def _evaluate_compiled(self, replicas: np.ndarray, users: np.ndarray, previous: np.ndarray | None) -> SlotResult:
        rep = np.ascontiguousarray(replicas, dtype=np.int64)
        B, K = rep.shape
        if not self.mmc and self.cpu.shape != rep.shape:
            self.reset_state(B)
        if not self.mmc:
            self.cpu = np.ascontiguousarray(self.cpu, dtype=np.float64)
            self.ram = np.ascontiguousarray(self.ram, dtype=np.float64)
        prev = rep if previous is None else np.ascontiguousarray(previous, dtype=np.int64)
        S = self.w.n_services
        if self._table is None:
            self._table = kernels.routing_table(self._order, self.w.slot_service, S)
        res = SlotResult(np.empty(B), np.empty(B), np.empty(B), np.empty((B, S)), np.empty((B, K)), np.empty(B))
        kernels.slot_kernel(
            rep, np.ascontiguousarray(users, dtype=np.float64), prev, previous is not None,
            self.rate, self.mu, self._order, self._order_net, self._e_mu, self._budget, self.mmc, self.attempts,
            self.rho_max, self.timeout, self.slot_seconds, self.cpu, self.ram,
            res.latency_ms, res.violations, res.unserved, res.service_latency_ms, res.slot_load, res.requests,
            *self._table,
        )  # fmt: skip
        return res

    def _evaluate_numpy(self, replicas: np.ndarray, users: np.ndarray, previous: np.ndarray | None) -> SlotResult:
        B, K = replicas.shape
        lam = users[:, None, :] * self.rate[None, :, None]  # (B, S, C)
        hosted = np.zeros((B, K + 1), dtype=bool)
        hosted[:, :K] = replicas > 0
        h = hosted[:, self.order[0]]  # (B, S, C, A)
        cap = np.full((B, K + 1), np.inf)
        if self.mmc:
            cap[:, :K] = replicas * self.mu * self.rho_max
        flat = np.arange(B)[:, None, None] * (K + 1)
        load = np.zeros((B, K + 1))
        rem = lam
        paths = []
        live = np.ones((B, 1, 1), dtype=bool)  # rows that still have load to spill (each row stops on its own)
        for attempt in range(self.attempts):
            pos = h.argmax(-1)[..., None]  # (B, S, C, 1)
            ok = np.take_along_axis(h, pos, -1)[..., 0]
            slot = np.where(ok, np.take_along_axis(self.order, pos, -1)[..., 0], K)
            offer = np.where(ok & live, rem, 0.0)
            idx = (flat + slot).ravel()
            offered = np.bincount(idx, offer.ravel(), minlength=B * (K + 1)).reshape(B, K + 1)
            if self.mmc:
                spare = np.maximum(cap - load, 0.0)
                frac = np.minimum(np.divide(spare, offered, out=np.ones_like(spare), where=offered > 0), 1.0)
                take = offer * frac.ravel()[idx].reshape(offer.shape)
            else:
                take = offer
            load += np.bincount(idx, take.ravel(), minlength=B * (K + 1)).reshape(B, K + 1)
            net = np.take_along_axis(self.order_net, pos, -1)[..., 0]
            paths.append((take, slot, net))
            rem = rem - take
            live = (rem > 1e-9).any((1, 2), keepdims=True)
            if attempt + 1 == self.attempts or not live.any():
                break
            np.put_along_axis(h, pos, False, -1)
        slot_load = load[:, :K]
        total_req = lam.sum((1, 2))
        lat_sum = np.zeros(lam.shape)
        viol = np.zeros(lam.shape)
        if self.mmc:
            pw, theta = lat.mmc_wait(slot_load, replicas, self.mu, self.max_r)
            wq = np.divide(pw, theta, out=np.zeros_like(pw), where=theta > 0)
            soj = np.zeros((B, K + 1))
            soj[:, :K] = 1000.0 * (1.0 / self.mu + wq)
            pw_e = np.zeros((B, K + 1))
            pw_e[:, :K] = pw
            th_e = np.ones((B, K + 1))
            th_e[:, :K] = theta
            mu_e = np.append(self.mu, 1.0)
            for take, slot, net in paths:
                sk = np.take_along_axis(soj, slot.reshape(B, -1), 1).reshape(slot.shape)
                lat_sum += take * (net + sk)
                p = lat.mmc_tail(
                    np.take_along_axis(pw_e, slot.reshape(B, -1), 1).reshape(slot.shape),
                    np.take_along_axis(th_e, slot.reshape(B, -1), 1).reshape(slot.shape),
                    mu_e[slot],
                    self.timeout - net,
                )
                viol += take * p
        else:
            lat_sum, viol = self._throttle(replicas, slot_load, paths, previous)
        unserved = rem
        lat_sum = lat_sum + unserved * self.timeout
        viol = viol + unserved
        denom = np.maximum(total_req, 1e-12)
        svc_req = lam.sum(2)
        return SlotResult(
            latency_ms=np.where(total_req > 0, lat_sum.sum((1, 2)) / denom, 0.0),
            violations=np.where(total_req > 0, viol.sum((1, 2)) / denom, 0.0),
            unserved=np.where(total_req > 0, unserved.sum((1, 2)) / denom, 0.0),
            service_latency_ms=np.divide(lat_sum.sum(2), svc_req, out=np.zeros_like(svc_req), where=svc_req > 0),
            slot_load=slot_load,
            requests=total_req * self.slot_seconds,
        )

    def _throttle(
        self,
        replicas: np.ndarray,
        slot_load: np.ndarray,
        paths: list[tuple[np.ndarray, np.ndarray, np.ndarray]],
        previous: np.ndarray | None,
    ) -> tuple[np.ndarray, np.ndarray]:
        B, K = replicas.shape
        if self.cpu.shape != replicas.shape:
            self.reset_state(B)
        cpu, ram = lat.throttle_decay(self.cpu, self.ram)
        if previous is not None:
            self.cpu, self.ram = cpu, ram
            self._rescale(previous, replicas)
            cpu, ram = self.cpu, self.ram
        per_rep = np.divide(slot_load * self.slot_seconds, replicas, out=np.zeros(slot_load.shape), where=replicas > 0)
        delay, weight = lat.throttle_burst(cpu, ram, per_rep)  # (B, K, J)
        mean_delay = np.divide((delay * weight).sum(-1), per_rep, out=np.zeros(per_rep.shape), where=per_rep > 0)
        take, slot, net = paths[0]
        s2 = np.minimum(slot, K - 1).reshape(B, -1)
        d = np.take_along_axis(mean_delay, s2, 1).reshape(slot.shape)
        lat_sum = take * (net + d)
        dj = np.take_along_axis(delay, s2[..., None], 1).reshape(*slot.shape, -1)
        wj = np.take_along_axis(weight, s2[..., None], 1).reshape(*slot.shape, -1)
        n = np.take_along_axis(per_rep, s2, 1).reshape(slot.shape)
        over = ((net[..., None] + dj) > self.timeout) * wj
        viol = take * np.divide(over.sum(-1), n, out=np.zeros(n.shape), where=n > 0)
        if previous is not None:
            self.cpu, self.ram = lat.throttle_after(cpu, ram, per_rep)
        return lat_sum, viol
