"""The flat joint action for algorithms without MultiDiscrete support in RLlib (DQN, SAC).

``MultiDiscrete(nvec)`` becomes ``Discrete(prod(nvec))`` (C order, as :func:`numpy.ravel_multi_index`), and the
concatenated per-slot masks become one joint mask: a joint action is allowed iff every one of its per-slot counts
is allowed. The env's per-slot mask means "fits if only that slot changed", so a joint action can still be
rejected by the env (several slots grow on one node); the env then keeps the old counts and charges the penalty.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces

#: the largest joint action space we flatten (testapp-4bs has 5^4 = 625)
MAX_FLAT_ACTIONS = 4096


def flat_size(nvec: np.ndarray) -> int:
    return int(np.prod(nvec.astype(np.float64)))


def check_flattenable(action_space: gym.Space, algo: str) -> None:
    if not isinstance(action_space, spaces.MultiDiscrete):
        raise ValueError(f"{algo}: expected the env's MultiDiscrete action space, got {action_space}")
    n = flat_size(action_space.nvec)
    if n > MAX_FLAT_ACTIONS:
        raise ValueError(
            f"{algo} needs a Discrete action (RLlib's {algo} has no MultiDiscrete support); flattening "
            f"MultiDiscrete with {len(action_space.nvec)} slots gives {n:.3g} joint actions > {MAX_FLAT_ACTIONS}: "
            "use PPO or APPO for this env"
        )


def joint_mask(mask: np.ndarray, nvec: np.ndarray) -> np.ndarray:
    """Concatenated per-slot masks ``(..., sum(nvec))`` -> joint mask ``(..., prod(nvec))`` (C order)."""
    parts = np.split(np.asarray(mask, dtype=np.float32), np.cumsum(nvec)[:-1], axis=-1)
    out = parts[0]
    for part in parts[1:]:
        out = (out[..., :, None] * part[..., None, :]).reshape(*out.shape[:-1], -1)
    return out


def unflatten(actions: np.ndarray, nvec: np.ndarray) -> np.ndarray:
    """Flat joint actions ``(B,)`` -> per-slot counts ``(B, K)``."""
    return np.stack(np.unravel_index(np.asarray(actions, dtype=np.int64), tuple(nvec)), axis=-1)


def flatten(actions: np.ndarray, nvec: np.ndarray) -> np.ndarray:
    """Per-slot counts ``(B, K)`` -> flat joint actions ``(B,)``."""
    return np.ravel_multi_index(tuple(np.asarray(actions, dtype=np.int64).T), tuple(nvec))


def flat_observation_space(obs_space: spaces.Dict, nvec: np.ndarray) -> spaces.Dict:
    return spaces.Dict(
        {
            "observations": obs_space["observations"],
            "action_mask": spaces.Box(0.0, 1.0, (flat_size(nvec),), np.float32),
        }
    )


class FlatActionWrapper(gym.Wrapper):
    """Discrete joint action and joint mask over a MultiDiscrete placement env."""

    def __init__(self, env: gym.Env):
        super().__init__(env)
        check_flattenable(env.action_space, "flat action wrapper")
        assert isinstance(env.action_space, spaces.MultiDiscrete)
        assert isinstance(env.observation_space, spaces.Dict), "placement env observation must be a Dict"
        self.nvec = np.asarray(env.action_space.nvec)
        self.action_space = spaces.Discrete(flat_size(self.nvec))
        self.observation_space = flat_observation_space(env.observation_space, self.nvec)

    def _obs(self, obs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return {"observations": obs["observations"], "action_mask": joint_mask(obs["action_mask"], self.nvec)}

    def reset(self, **kwargs: Any):
        obs, info = self.env.reset(**kwargs)
        return self._obs(obs), info

    def step(self, action: Any):
        obs, reward, terminated, truncated, info = self.env.step(unflatten(np.asarray([action]), self.nvec)[0])
        return self._obs(obs), reward, terminated, truncated, info


def slot_masks(joint: np.ndarray, nvec: np.ndarray) -> np.ndarray:
    """Joint mask ``(B, prod(nvec))`` -> per-slot masks concatenated ``(B, sum(nvec))`` (inverse of :func:`joint_mask`
    whenever every slot has at least one allowed count)."""
    cube = np.asarray(joint).reshape(len(joint), *(int(n) for n in nvec))
    k = len(nvec)
    parts = [cube.max(axis=tuple(1 + j for j in range(k) if j != i)) for i in range(k)]
    return np.concatenate(parts, axis=-1)
