"""One interface for every placement policy: heuristics, the exact optimum and trained models alike."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any, ClassVar

import gymnasium as gym
import numpy as np

from envs.backends import Snapshot
from envs.placement_env import PlacementEnv
from envs.world import World


@dataclass(frozen=True)
class Context:
    """Everything a policy may look at when deciding the placement for the coming slot.

    ``snapshot`` holds the slot of the day, users per cell for the coming slot and the current placement;
    ``obs`` is the environment's observation (what a trained policy sees).
    """

    world: World
    snapshot: Snapshot
    obs: dict[str, np.ndarray]

    @classmethod
    def from_env(cls, env: gym.Env) -> Context:
        inner = env.unwrapped
        assert isinstance(inner, PlacementEnv), f"not a placement env: {type(inner).__name__}"
        return cls(world=inner.world, snapshot=inner.backend.snapshot(), obs=inner.last_obs)


class PlacementPolicy(ABC):
    """Maps a :class:`Context` to an action (replica count per slot, shape ``(K,)``, ints)."""

    name: ClassVar[str] = "policy"

    def reset(self, world: World, seed: int | None = None) -> None:  # noqa: B027 - optional hook
        """Called at the start of every episode."""

    @abstractmethod
    def act(self, ctx: Context) -> np.ndarray: ...

    def describe(self) -> dict[str, Any]:
        return {"name": self.name}
