"""The placement environment (one class; the cluster behind it is a pluggable backend)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from envs.backends import Backend, Outcome, SimulatedBackend
from envs.dynamics import OBS_HIGH, OBS_LOW, Dynamics
from envs.presets import get_scenario
from envs.scenario import Scenario, ScenarioError, load_scenario, parse_scenario
from envs.world import World, build_world


def resolve_scenario(scenario: str | dict | Scenario | Path) -> Scenario:
    """A preset name, a scenario file path, a plain dict or a :class:`Scenario`."""
    if isinstance(scenario, Scenario):
        return scenario
    if isinstance(scenario, dict):
        return parse_scenario(scenario)
    if isinstance(scenario, Path) or str(scenario).endswith((".yaml", ".yml", ".json")):
        return load_scenario(scenario)
    return get_scenario(str(scenario))


class PlacementEnv(gym.Env):
    """Place and scale services on the edge nodes of a city, one time slot per step.

    ## Description
    A city has ``N`` base stations, each with a compute node, and ``S`` services. A *slot* is a (service,
    node) pair the service may run on (its pinning allows it); there are ``K`` slots. Users move between
    cells over the day; each active user sends requests to the services in fixed shares. Every step the
    agent sets a replica count per slot; the slot of the day is then served and its latency measured.

    ## Action space
    ``MultiDiscrete(max_replicas + 1 per slot)``: the desired replica count of every slot.
    Clip-or-reject: counts are bounded by the space; on a node whose CPU or RAM the request would exceed,
    every *increase* on that node is rejected (its old counts stay, decreases apply) and each rejected slot
    costs ``infeasible_penalty``. The applied placement is therefore always feasible.

    ## Observation space
    ``Dict(observations=Box(-1, 4, (2N + K + N + S + 2,)), action_mask=Box(0, 1, (sum(nvec),)))``:
    free CPU and RAM per node (fraction of capacity), current replicas per slot / max, users per cell for
    the coming slot / the scenario's peak cell, mean latency per service in the last slot / timeout (≤ 2),
    sin and cos of the time of day. ``action_mask`` marks, per slot and count, what fits if only that slot
    changed (the MultiDiscrete sub-masks concatenated).

    ## Rewards
    ``-(latency_ms + replica_cost * replicas + change_cost * |changes| + sla_penalty * violation% +
    infeasible_penalty * rejected)``; latency is the demand-weighted mean over the slot's requests
    (unserved requests count at ``timeout_ms``). Every component is in ``info["reward_components"]``.

    ## Starting state
    ``reset`` picks a demand trace from ``traces`` and a start slot (random via ``np_random`` unless
    ``start_slot`` is set); the placement is one replica on every slot that fits, or ``options["placement"]``.

    ## Episode end
    Never terminates (a cluster runs on); truncated by ``max_episode_steps`` (registered per preset). The day
    wraps around.

    ## Arguments
    ``gym.make(id, scenario=..., traces=[...], start_slot=None, backend=None)``, or ``PlacementEnv(env_config)``
    with the same keys in a plain dict (the RLlib contract). ``scenario`` is a preset name, file path, dict or
    :class:`~envs.scenario.Scenario`.

    ## Version history
    * v0: initial release (placement per slot, node-wise clip-or-reject, M/M/c and throttling models).
    """

    metadata = {"render_modes": []}  # noqa: RUF012

    def __init__(self, config: dict[str, Any] | None = None, **kwargs: Any):
        cfg = {**(config or {}), **kwargs}
        unknown = set(cfg) - {"scenario", "traces", "start_slot", "backend", "world"}
        if unknown:
            raise ScenarioError(f"env_config: unknown key(s) {sorted(unknown)}")
        world = cfg.get("world")
        self.world: World = (
            world if world is not None else build_world(resolve_scenario(cfg.get("scenario", "reference-city")))
        )
        demand = self.world.demand
        default_traces: list[int | str] = (
            [demand.default_key] if self.world.scenario.demand.kind == "profile" else list(range(16))
        )
        self.traces = list(cfg.get("traces") or default_traces)
        for key in self.traces:
            demand.check_key(key)  # fail fast on an unknown profile or a bad seed, without generating
        self.start_slot = cfg.get("start_slot")
        backend = cfg.get("backend")
        self.backend: Backend = backend if isinstance(backend, Backend) else SimulatedBackend(self.world)
        self.dyn = Dynamics(self.world)
        self.action_space = spaces.MultiDiscrete(self.dyn.nvec)
        self.observation_space = spaces.Dict(
            {
                "observations": spaces.Box(OBS_LOW, OBS_HIGH, (self.dyn.obs_dim,), np.float32),
                "action_mask": spaces.Box(0.0, 1.0, (self.dyn.mask_dim,), np.float32),
            }
        )
        self._service_latency = np.zeros(self.world.n_services)
        self._placement = self.dyn.initial_placement()

    def _obs(self) -> dict[str, np.ndarray]:
        snap = self.backend.snapshot()
        obs = self.dyn.observe(
            snap.placement[None], snap.users[None], np.array([snap.slot]), self._service_latency[None]
        )
        self.last_obs = {k: v[0] for k, v in obs.items()}
        return self.last_obs

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        super().reset(seed=seed)
        options = options or {}
        trace = options.get("trace", self.traces[int(self.np_random.integers(len(self.traces)))])
        start = options.get("start_slot", self.start_slot)
        if start is None:
            start = int(self.np_random.integers(self.world.demand.slots_per_day))
        placement = np.asarray(options.get("placement", self.dyn.initial_placement()), dtype=np.int64)
        if placement.shape != (self.world.n_slots,):
            raise ValueError(f"options.placement: expected shape ({self.world.n_slots},), got {placement.shape}")
        placement, rejected = self.dyn.repair(np.zeros_like(placement)[None], placement[None])
        if rejected[0]:
            raise ValueError("options.placement: exceeds node capacity")
        self._placement = placement[0]
        self._service_latency = np.zeros(self.world.n_services)
        snap = self.backend.reset(trace, int(start), self._placement)
        self._placement = np.asarray(snap.placement, dtype=np.int64)  # a real cluster may not reach it at once
        return self._obs(), {"slot": snap.slot, "trace": trace}

    def step(self, action):
        prev = self._placement
        placement, rejected = self.dyn.repair(prev[None], np.asarray(action, dtype=np.int64)[None])
        placement = placement[0]
        self.backend.apply(placement)
        stable = self.backend.wait_until_stable()
        # what really runs: the backend may have rolled back, deferred part of the change, or (dry run) applied nothing
        placement = np.asarray(self.backend.snapshot().placement, dtype=np.int64)
        out: Outcome = self.backend.serve_slot()
        comp = self.dyn.reward(
            np.array([out.latency_ms]), np.array([out.violations]), placement[None], prev[None], rejected
        )
        self._placement = placement
        self._service_latency = out.service_latency_ms
        parts = {k: float(v[0]) for k, v in vars(comp).items()}
        # the same sum, in the same order, as Components.total()
        reward = -(parts["latency"] + parts["replicas"] + parts["changes"] + parts["sla"] + parts["infeasible"])
        info = {
            "reward_components": parts,
            "latency_ms": out.latency_ms,
            "violations": out.violations,
            "unserved": out.unserved,
            "replicas": int(placement.sum()),
            "changes": int(np.abs(placement - prev).sum()),
            "rejected": int(rejected[0]),
            "stable": stable,
            "placement": placement,
        }
        return self._obs(), reward, False, False, info

    def close(self) -> None:
        self.backend.close()
