"""The cluster backend's settings and its safety rules as pure functions: capacity check, per-step change bound."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from envs.backends.base import Outcome
from envs.world import World


class LatencySource(Protocol):
    def start(self, world: World) -> None: ...
    def measure(self, world: World, window_s: float) -> Outcome: ...


@dataclass(frozen=True)
class ClusterConfig:
    """Settings of :class:`~envs.backends.kubernetes.KubernetesBackend` (see docs/kubernetes.md)."""

    namespace: str = "lwmecps"
    image: str = ""  # container image of new Deployments; required only when one has to be created
    port: int = 8000
    readiness_path: str | None = None
    dry_run: bool = True
    max_changes_per_step: int | None = 4
    rollout_timeout_s: float = 120.0
    poll_interval_s: float = 1.0
    slot_seconds: float | None = None  # the measured window per step; default: the scenario's slot length
    node_map: dict[str, str] = field(default_factory=dict)  # world station -> Kubernetes node name
    request_timeout_s: float = 10.0

    def __post_init__(self) -> None:
        if not re.fullmatch(r"[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?", self.namespace):
            raise ValueError(f"namespace: not a DNS-1123 label: {self.namespace!r}")
        if self.max_changes_per_step is not None and self.max_changes_per_step < 1:
            raise ValueError(f"max_changes_per_step: need >= 1 or None, got {self.max_changes_per_step}")
        for name in ("rollout_timeout_s", "poll_interval_s", "request_timeout_s"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name}: need > 0, got {getattr(self, name)}")
        if self.slot_seconds is not None and self.slot_seconds < 0:
            raise ValueError(f"slot_seconds: need >= 0, got {self.slot_seconds}")


def node_usage(world: World, placement: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """CPU cores and MiB of RAM the placement requests on every node."""
    p = np.asarray(placement, dtype=np.float64)
    cpu = np.bincount(world.slot_node, p * world.slot_cpu, minlength=world.n_nodes)
    ram = np.bincount(world.slot_node, p * world.slot_ram, minlength=world.n_nodes)
    return cpu, ram


def over_capacity(world: World, placement: np.ndarray, cpu_cap: np.ndarray, ram_cap: np.ndarray) -> list[str]:
    """One line per node whose requests would exceed the given capacity (empty when the placement fits)."""
    cpu, ram = node_usage(world, placement)
    out = []
    for n in np.flatnonzero((cpu > cpu_cap + 1e-9) | (ram > ram_cap + 1e-9)):
        out.append(
            f"node {world.node_names[n]}: needs {cpu[n]:.3f} CPU / {ram[n]:.0f} MiB, "
            f"allocatable {cpu_cap[n]:.3f} CPU / {ram_cap[n]:.0f} MiB"
        )
    return out


def bounded_step(
    world: World,
    current: np.ndarray,
    target: np.ndarray,
    max_changes: int | None,
    cpu_cap: np.ndarray,
    ram_cap: np.ndarray,
) -> np.ndarray:
    """The placement to apply this step when at most ``max_changes`` replicas may change.

    Unit changes are taken in a fixed order, scale-downs first (they free capacity), then scale-ups, each group
    in slot order; a scale-up is taken only if its node stays within capacity at every point. What does not fit
    in the budget is *deferred*: the backend keeps moving towards the latest target on later steps.
    ``None`` means no bound (the target itself).
    """
    cur = np.asarray(current, dtype=np.int64)
    tgt = np.asarray(target, dtype=np.int64)
    if max_changes is None:
        return tgt.copy()
    out = cur.copy()
    budget = int(max_changes)
    for k in np.flatnonzero(tgt < cur):
        take = min(budget, int(cur[k] - tgt[k]))
        out[k] -= take
        budget -= take
    cpu, ram = node_usage(world, out)
    for k in np.flatnonzero(tgt > cur):
        n = world.slot_node[k]
        room = min((cpu_cap[n] - cpu[n]) / world.slot_cpu[k], (ram_cap[n] - ram[n]) / world.slot_ram[k])
        take = max(0, min(budget, int(tgt[k] - cur[k]), int(np.floor(room + 1e-9))))
        out[k] += take
        cpu[n] += take * world.slot_cpu[k]
        ram[n] += take * world.slot_ram[k]
        budget -= take
    return out
