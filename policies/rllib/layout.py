"""How a trained policy maps to a placement env (no Ray): observation -> model input, masked logits -> action.

A policy trained on the MultiDiscrete action (PPO, APPO) sees the per-slot masks concatenated; one trained on the
flat joint action (DQN, SAC) sees the joint mask of :mod:`policies.rllib.flat`.
"""

from __future__ import annotations

from dataclasses import dataclass

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from policies.rllib.flat import flat_size, joint_mask, unflatten

OBS_KEY = "observations"
MASK_KEY = "action_mask"


@dataclass(frozen=True)
class ActionLayout:
    """How a trained policy's inputs and outputs map to the env: obs size, per-slot counts, flat or not."""

    obs_dim: int
    nvec: tuple[int, ...]
    flat: bool

    @property
    def mask_dim(self) -> int:
        return flat_size(np.asarray(self.nvec)) if self.flat else int(sum(self.nvec))

    def describe(self) -> str:
        counts = f"{self.nvec[0]} counts each" if len(set(self.nvec)) == 1 else f"counts {list(self.nvec)}"
        return f"observation dim {self.obs_dim}, {len(self.nvec)} slots with {counts}"

    def check_env(self, observation_space: gym.Space, action_space: gym.Space, what: str = "policy") -> None:
        """Raise one clear ValueError if the env's spaces are not the ones this policy was trained on."""
        env = layout_of_env(observation_space, action_space, flat=self.flat)
        if (env.obs_dim, env.nvec) != (self.obs_dim, self.nvec):
            raise ValueError(f"{what} was trained for {self.describe()}; this env has {env.describe()}")

    def module_obs(self, obs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Batched env observations (``(B, ...)``) -> the module's input (joint mask for flat modules)."""
        mask = np.asarray(obs[MASK_KEY], dtype=np.float32)
        if self.flat:
            mask = joint_mask(mask, np.asarray(self.nvec))
        return {OBS_KEY: np.asarray(obs[OBS_KEY], dtype=np.float32), MASK_KEY: mask}

    def to_env_actions(self, actions: np.ndarray) -> np.ndarray:
        """Module actions (``(B,)`` flat or ``(B, K)``) -> replica counts ``(B, K)``."""
        actions = np.asarray(actions, dtype=np.int64)
        return unflatten(actions, np.asarray(self.nvec)) if self.flat else actions.reshape(len(actions), -1)

    def greedy(self, masked_logits: np.ndarray) -> np.ndarray:
        """Masked logits or Q-values ``(B, mask_dim)`` -> greedy replica counts ``(B, K)``."""
        if self.flat:
            return self.to_env_actions(masked_logits.argmax(axis=-1))
        parts = np.split(masked_logits, np.cumsum(self.nvec)[:-1], axis=-1)
        return np.stack([p.argmax(axis=-1) for p in parts], axis=-1)


def layout_of_env(observation_space: gym.Space, action_space: gym.Space, flat: bool) -> ActionLayout:
    if not (isinstance(observation_space, spaces.Dict) and OBS_KEY in observation_space.spaces):
        raise ValueError(f"not a placement env observation space: {observation_space}")
    if not isinstance(action_space, spaces.MultiDiscrete):
        raise ValueError(f"not a placement env action space (MultiDiscrete expected): {action_space}")
    obs_dim = int(np.prod(observation_space[OBS_KEY].shape or ()))
    return ActionLayout(obs_dim, tuple(int(n) for n in action_space.nvec), flat)
