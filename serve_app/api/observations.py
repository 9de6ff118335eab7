"""Predict input -> the model env's observation, and the policy's answer -> a valid placement.

A predict request carries either the observation itself (``observations`` + ``action_mask``, checked against the
env's observation space) or a cluster/demand snapshot (``slot``, ``users`` per cell, current ``placement`` per slot,
optionally ``service_latency_ms``), from which :class:`envs.dynamics.Dynamics` of the model's env builds the exact
observation the env would. The policy's action is checked against the mask; for a snapshot it is then applied with
the env's clip-or-reject rule, so the returned placement always fits the nodes.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

import numpy as np

from serve_app.api.errors import ConflictState, InputError
from serve_app.runtime_protocol import RuntimeFailure
from serve_app.schemas import ObservationIn, SnapshotIn


@dataclass(frozen=True)
class EnvShape:
    """What predict needs to know about a model's env."""

    dyn: Any  # envs.dynamics.Dynamics
    n_nodes: int
    n_slots: int
    n_services: int
    slots_per_day: int
    nvec: np.ndarray
    offsets: np.ndarray  # start of each slot's sub-mask in the flat action_mask

    @property
    def obs_dim(self) -> int:
        return int(self.dyn.obs_dim)

    @property
    def mask_dim(self) -> int:
        return int(self.dyn.mask_dim)


def _build(model: dict[str, Any]) -> EnvShape:
    import envs
    from envs.dynamics import Dynamics
    from envs.placement_env import resolve_scenario
    from envs.world import build_world

    env_config = model.get("env_config") or {}
    scenario = env_config.get("scenario") or envs.ENV_IDS.get(str(model.get("env_id")))
    if scenario is None:
        raise ConflictState(f"model {model['id']}: its env is unknown (no env_id / env_config.scenario)")
    try:
        world = build_world(resolve_scenario(scenario))
    except (ValueError, OSError) as err:
        raise ConflictState(f"model {model['id']}: cannot build its env: {err}") from None
    dyn = Dynamics(world)
    nvec = np.asarray(dyn.nvec, dtype=np.int64)
    offsets = np.concatenate([[0], np.cumsum(nvec)[:-1]]).astype(np.int64)
    return EnvShape(dyn, world.n_nodes, world.n_slots, world.n_services, int(world.demand.slots_per_day), nvec, offsets)


class EnvShapes:
    """model id -> :class:`EnvShape`, built once per process (LRU of ``size`` models)."""

    def __init__(self, size: int = 16):
        self.size = size
        self._rows: OrderedDict[str, EnvShape] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, model: dict[str, Any]) -> EnvShape:
        key = str(model["id"])
        with self._lock:
            if key in self._rows:
                self._rows.move_to_end(key)
                return self._rows[key]
        shape = _build(model)  # outside the lock: can take a second for a large city
        with self._lock:
            self._rows[key] = shape
            while len(self._rows) > self.size:
                self._rows.popitem(last=False)
        return shape


def _length(values: list[Any], want: int, where: str, what: str) -> np.ndarray:
    if len(values) != want:
        raise InputError(f"{where}: expected {want} values ({what}), got {len(values)}")
    return np.asarray(values, dtype=np.float64)


def _check_mask(shape: EnvShape, mask: np.ndarray, where: str) -> None:
    bad = np.flatnonzero((mask != 0.0) & (mask != 1.0))
    if bad.size:
        raise InputError(f"{where}.action_mask[{bad[0]}]: must be 0 or 1, got {mask[bad[0]]}")
    per_slot = np.add.reduceat(mask, shape.offsets)
    empty = np.flatnonzero(per_slot == 0)
    if empty.size:
        raise InputError(f"{where}.action_mask: slot {empty[0]} allows no replica count")


def from_observation(shape: EnvShape, item: ObservationIn, where: str) -> dict[str, np.ndarray]:
    from envs.dynamics import OBS_HIGH, OBS_LOW

    obs = _length(item.observations, shape.obs_dim, f"{where}.observations", "the env's observation vector")
    mask = _length(item.action_mask, shape.mask_dim, f"{where}.action_mask", "one per slot and replica count")
    out = np.flatnonzero((obs < OBS_LOW) | (obs > OBS_HIGH))
    if out.size:
        i = out[0]
        raise InputError(f"{where}.observations[{i}]: {obs[i]} is outside the observation box [{OBS_LOW}, {OBS_HIGH}]")
    _check_mask(shape, mask, where)
    return {"observations": obs.astype(np.float32), "action_mask": mask.astype(np.float32)}


def from_snapshot(shape: EnvShape, item: SnapshotIn, where: str) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """The observation of a snapshot and its current placement."""
    if item.slot >= shape.slots_per_day:
        raise InputError(f"{where}.slot: must be < {shape.slots_per_day} (slots per day), got {item.slot}")
    users = _length(item.users, shape.n_nodes, f"{where}.users", "users per cell")
    if (users < 0).any():
        i = int(np.flatnonzero(users < 0)[0])
        raise InputError(f"{where}.users[{i}]: must be >= 0, got {users[i]}")
    placement = np.asarray(item.placement, dtype=np.int64)
    if placement.shape != (shape.n_slots,):
        raise InputError(
            f"{where}.placement: expected {shape.n_slots} values (replicas per slot), got {len(placement)}"
        )
    out = np.flatnonzero((placement < 0) | (placement >= shape.nvec))
    if out.size:
        k = int(out[0])
        raise InputError(f"{where}.placement[{k}]: must be within [0, {shape.nvec[k] - 1}], got {placement[k]}")
    free_cpu, free_ram = shape.dyn.free(placement[None])
    over = np.flatnonzero((free_cpu[0] < -1e-9) | (free_ram[0] < -1e-9))
    if over.size:
        raise InputError(f"{where}.placement: exceeds the CPU or RAM of node {int(over[0])}")
    latency = np.zeros(shape.n_services)
    if item.service_latency_ms is not None:
        latency = _length(item.service_latency_ms, shape.n_services, f"{where}.service_latency_ms", "one per service")
        if (latency < 0).any():
            raise InputError(f"{where}.service_latency_ms: must be >= 0")
    obs = shape.dyn.observe(placement[None], users[None], np.array([item.slot]), latency[None])
    return {k: v[0] for k, v in obs.items()}, placement


def placement_of(shape: EnvShape, action: Any, obs: dict[str, np.ndarray], prev: np.ndarray | None) -> list[int]:
    """Check the policy's ``action`` against the observation's mask; for a snapshot apply it to ``prev``."""
    try:
        act = np.asarray(action, dtype=np.int64)
    except (TypeError, ValueError):
        raise RuntimeFailure("the policy returned a non-integer action") from None
    if act.shape != (shape.n_slots,):
        raise RuntimeFailure(f"the policy returned {act.size} replica counts, the env has {shape.n_slots} slots")
    if ((act < 0) | (act >= shape.nvec)).any() or (obs["action_mask"][shape.offsets + act] < 0.5).any():
        raise RuntimeFailure("the policy returned an action outside the action mask")
    if prev is None:
        return [int(a) for a in act]
    placement, _ = shape.dyn.repair(prev[None], act[None])
    return [int(p) for p in placement[0]]
