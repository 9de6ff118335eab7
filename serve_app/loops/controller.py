"""One closed loop over one cluster, independent of Serve and MongoDB: observe -> ask the policy -> apply -> measure.

:class:`Controller` holds a :class:`~envs.placement_env.PlacementEnv` whose backend is the cluster's
:class:`~envs.backends.kubernetes.KubernetesBackend`, so a period is exactly one ``env.step(action)``: the env's
action repair (clip-or-reject against the scenario's nodes), then the backend's safety rules (dry run, change bound,
capacity as the cluster reports it, rollout with rollback), then the measured slot. :meth:`Controller.start` adopts
the placement the cluster runs now (it is never reset to a default placement). Each :meth:`Controller.step`
returns the decision record the runner stores: what the policy asked, what was applied and how it went, and the
latency measured over the period. An error in a period (API error, test-app down, failed rollback) becomes a
decision with ``status: "error"``; the next period re-adopts the cluster's state first.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import numpy as np

from envs.backends.k8s_resources import ClusterError
from envs.placement_env import PlacementEnv
from envs.world import World

#: the policy: one env observation ``{"observations", "action_mask"}`` -> replica count per slot
Decide = Callable[[dict[str, np.ndarray]], np.ndarray]


class LoopError(Exception):
    """A loop that cannot run (bad spec, cluster state the scenario cannot express); one clean line."""


def greedy_decider(policy: Any) -> Decide:
    """A :class:`~policies.rllib.export.ExportedPolicy` (``greedy`` on a batch) as a :data:`Decide`."""

    def decide(obs: dict[str, np.ndarray]) -> np.ndarray:
        return np.asarray(policy.greedy({k: np.asarray(v)[None] for k, v in obs.items()}))[0]

    return decide


def default_start_slot(world: World, at: float | None = None) -> int:
    """The slot of the demand day at UTC time ``at`` (default: now)."""
    seconds = int((time.time() if at is None else at) % 86400)
    return seconds // int(world.scenario.demand.slot_seconds) % int(world.demand.slots_per_day)


class Controller:
    def __init__(self, world: World, backend: Any, decide: Decide, *, start_slot: int | None = None):
        self.world, self.backend, self.decide = world, backend, decide
        self.env = PlacementEnv(world=world, backend=backend, traces=[world.demand.default_key])
        self.start_slot = default_start_slot(world) if start_slot is None else int(start_slot)
        self.steps = 0
        self._synced = False

    def start(self) -> list[int]:
        """Adopt the cluster's current placement (clipped to the scenario's replica bounds); returns it."""
        self.backend.discover()
        current = np.clip(np.asarray(self.backend.current, dtype=np.int64), 0, self.env.dyn.nvec - 1)
        _, rejected = self.env.dyn.repair(np.zeros_like(current)[None], current[None])
        if rejected[0]:
            raise LoopError(
                f"the cluster runs {current.tolist()} replicas per slot, more than the scenario's nodes hold: "
                "use a scenario that describes the cluster's nodes"
            )
        slot = (self.start_slot + self.steps) % int(self.world.demand.slots_per_day)
        options = {"trace": self.world.demand.default_key, "start_slot": slot, "placement": current}
        self.env.reset(seed=0, options=options)
        self._synced = True
        return [int(x) for x in self.env.backend.snapshot().placement]

    def _action(self, obs: dict[str, np.ndarray]) -> np.ndarray:
        action = np.asarray(self.decide(obs))
        nvec = self.env.dyn.nvec
        if action.shape != nvec.shape or not np.issubdtype(action.dtype, np.integer):
            raise LoopError(f"the policy returned {action.tolist()!r}: expected {len(nvec)} integer replica counts")
        if ((action < 0) | (action >= nvec)).any():
            raise LoopError(f"the policy returned {action.tolist()}: outside the action space {nvec.tolist()}")
        return action.astype(np.int64)

    def step(self) -> dict[str, Any]:
        """One period; the decision record (never raises for a cluster, test-app or policy error)."""
        t0 = time.perf_counter()
        record: dict[str, Any] = {"step": self.steps}
        try:
            if not self._synced:
                self.start()
            snap = self.backend.snapshot()
            record.update(slot=int(snap.slot), users=[float(u) for u in snap.users])
            action = self._action(self.env.last_obs)
            record["action"] = action.tolist()
            n_events = len(self.backend.events)
            _, reward, _, _, info = self.env.step(action)
            event = self.backend.events[-1] if len(self.backend.events) > n_events else {}
            record.update(
                {k: event[k] for k in ("from", "target", "to", "deferred", "reason") if k in event},
                status=event.get("status", "applied"),
                rejected=int(info["rejected"]),
                placement=[int(x) for x in info["placement"]],
                stable=bool(info["stable"]),
                reward=float(reward),
                outcome={
                    "latency_ms": float(info["latency_ms"]),
                    "violations": float(info["violations"]),
                    "unserved": float(info["unserved"]),
                    "service_latency_ms": [float(x) for x in self.env._service_latency],
                },
            )
        except (ClusterError, LoopError, OSError, ValueError) as err:
            self._synced = False  # the cluster may be half-changed: re-read it before the next decision
            record.update(status="error", reason=str(err).splitlines()[0][:500] if str(err) else type(err).__name__)
        self.steps += 1
        record["duration_s"] = round(time.perf_counter() - t0, 4)
        return record

    def cluster_metrics(self) -> dict[str, Any]:
        return dict(self.backend.cluster_metrics())

    def close(self) -> None:
        self.env.close()
