"""A trained RLlib policy behind the common :class:`~policies.base.PlacementPolicy` interface (greedy actions)."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any, ClassVar

import gymnasium as gym
import numpy as np

from envs.world import World
from policies.base import Context, PlacementPolicy
from policies.rllib.export import load_export
from policies.rllib.layout import ActionLayout

Greedy = Callable[[dict[str, np.ndarray]], np.ndarray]


class RLlibPolicy(PlacementPolicy):
    """Greedy (deterministic) actions of a trained module, from a checkpoint or from an export.

    ``from_checkpoint`` needs Ray's libraries but no ``ray.init`` and no Algorithm; ``from_export`` needs only torch.
    Pass the env to check up front that the policy was trained for its spaces.
    """

    name: ClassVar[str] = "rllib"

    def __init__(self, greedy: Greedy, layout: ActionLayout, info: dict[str, Any]):
        self._greedy = greedy
        self.layout = layout
        self.info = info

    @classmethod
    def from_checkpoint(cls, checkpoint: str | Path, env: gym.Env | None = None) -> RLlibPolicy:
        from policies.rllib.loading import algorithm_of, load_module, module_greedy, module_layout, read_info
        from policies.rllib.registration import make_env

        info = read_info(checkpoint)
        module = load_module(checkpoint)
        if env is None:
            if info.env_id is None:
                raise ValueError(f"checkpoint: {checkpoint} does not name its env; pass env")
            env = make_env(info.env_id, info.env_config)
        layout = module_layout(module, env.observation_space, env.action_space)
        meta = {"source": str(checkpoint), "algorithm": algorithm_of(module), "env_id": info.env_id}
        return cls(partial(module_greedy, module, layout), layout, meta)

    @classmethod
    def from_export(cls, export_dir: str | Path, env: gym.Env | None = None) -> RLlibPolicy:
        exported = load_export(export_dir)
        if env is not None:
            exported.layout.check_env(env.observation_space, env.action_space, what=f"export {export_dir}")
        meta = {k: exported.meta[k] for k in ("algorithm", "env_id")} | {"source": str(export_dir)}
        return cls(exported.greedy, exported.layout, meta)

    def reset(self, world: World, seed: int | None = None) -> None:
        if world.n_slots != len(self.layout.nvec):
            raise ValueError(
                f"{self.info['source']}: trained for {len(self.layout.nvec)} slots, this world has {world.n_slots}"
            )

    def act_batch(self, obs: dict[str, np.ndarray]) -> np.ndarray:
        """Replica counts ``(B, K)`` for batched env observations ``{"observations": (B, D), "action_mask": ...}``."""
        return self._greedy(obs)

    def act(self, ctx: Context) -> np.ndarray:
        return self.act_batch({k: np.asarray(v)[None] for k, v in ctx.obs.items()})[0]

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, **self.info}
