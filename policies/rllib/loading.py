"""Load a trained RLModule from an Algorithm checkpoint for inference, without building the Algorithm."""

from __future__ import annotations

import pickle
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from gymnasium import spaces
from ray.rllib.core import (
    COMPONENT_LEARNER,
    COMPONENT_LEARNER_GROUP,
    COMPONENT_RL_MODULE,
    DEFAULT_MODULE_ID,
)
from ray.rllib.core.columns import Columns
from ray.rllib.core.rl_module.rl_module import RLModule

from policies.rllib.layout import OBS_KEY, ActionLayout, layout_of_env
from policies.rllib.masking import MODULE_CLASSES
from policies.rllib.registration import FLAT_SUFFIX
from policies.rllib.slot_module import SlotSharedPPOTorchRLModule

#: every module class this project trains, by algorithm
_KNOWN: tuple[tuple[str, type], ...] = (*MODULE_CLASSES.items(), ("PPO", SlotSharedPPOTorchRLModule))

_CTOR_FILE = "class_and_ctor_args.pkl"


@dataclass(frozen=True)
class CheckpointInfo:
    """What an Algorithm checkpoint says about its training run (empty for a bare module directory)."""

    algorithm: str | None = None
    env_id: str | None = None
    env_config: dict[str, Any] = field(default_factory=dict)


def module_dir(checkpoint: str | Path) -> Path:
    """The RLModule directory inside an Algorithm checkpoint (or ``checkpoint`` itself if it is one)."""
    path = Path(checkpoint).resolve()  # RLlib reads it as a URI: a relative path would have an empty scheme
    if not path.is_dir():
        raise ValueError(f"checkpoint: no such directory {path}")
    inner = path / COMPONENT_LEARNER_GROUP / COMPONENT_LEARNER / COMPONENT_RL_MODULE / DEFAULT_MODULE_ID
    if inner.is_dir():
        return inner
    if (path / "module_state.pkl").exists() or any(path.glob("module_state.*")):
        return path
    raise ValueError(f"checkpoint: {path} is neither an RLlib Algorithm checkpoint nor an RLModule directory")


def read_info(checkpoint: str | Path) -> CheckpointInfo:
    """Algorithm class and env of an Algorithm checkpoint, read from its ctor-args file (no Algorithm built)."""
    ctor = Path(checkpoint) / _CTOR_FILE
    if not ctor.exists() or module_dir(checkpoint) == Path(checkpoint):
        return CheckpointInfo()
    with ctor.open("rb") as f:
        data = pickle.load(f)
    config = data["ctor_args_and_kwargs"][0][0]
    env = str(config.get("env") or "")
    return CheckpointInfo(
        algorithm=data["class"].__name__,
        env_id=env.removesuffix(FLAT_SUFFIX) or None,
        env_config=dict(config.get("env_config") or {}),
    )


def load_module(checkpoint: str | Path) -> RLModule:
    """``RLModule.from_checkpoint`` of the default module; needs no ``ray.init`` and no Algorithm."""
    module = RLModule.from_checkpoint(module_dir(checkpoint))
    if not isinstance(module, tuple(cls for _, cls in _KNOWN)):
        raise ValueError(f"checkpoint: {type(module).__name__} is not one of this project's masked modules")
    if isinstance(module, torch.nn.Module):
        module.eval()
    return module


def algorithm_of(module: RLModule) -> str:
    return next(algo for algo, cls in _KNOWN if isinstance(module, cls))


def module_layout(module: RLModule, observation_space: gym.Space, action_space: gym.Space) -> ActionLayout:
    """The layout of ``module`` on an env with these spaces; a clear ValueError if it does not fit."""
    flat = isinstance(module.action_space, spaces.Discrete)
    env = layout_of_env(observation_space, action_space, flat)
    obs_space = module.observation_space
    obs_dim = int(np.prod(obs_space[OBS_KEY].shape or ())) if isinstance(obs_space, spaces.Dict) else -1
    if flat:
        assert isinstance(module.action_space, spaces.Discrete)
        fits = obs_dim == env.obs_dim and int(module.action_space.n) == env.mask_dim
        trained = f"observation dim {obs_dim}, {int(module.action_space.n)} joint actions"
    else:
        assert isinstance(module.action_space, spaces.MultiDiscrete)
        fits = obs_dim == env.obs_dim and tuple(int(n) for n in module.action_space.nvec) == env.nvec
        trained = ActionLayout(obs_dim, tuple(int(n) for n in module.action_space.nvec), False).describe()
    if not fits:
        raise ValueError(f"checkpoint was trained for {trained}; this env has {env.describe()}")
    return env


@torch.no_grad()
def module_greedy(module: RLModule, layout: ActionLayout, obs: dict[str, np.ndarray]) -> np.ndarray:
    """Greedy (deterministic) replica counts ``(B, K)`` of ``module`` for batched env observations."""
    batch = {Columns.OBS: {k: torch.from_numpy(v) for k, v in layout.module_obs(obs).items()}}
    out = module.forward_inference(batch)
    if Columns.ACTIONS in out:  # DQN acts inside the module (argmax of the masked Q-values)
        return layout.to_env_actions(out[Columns.ACTIONS].numpy())
    dist = module.get_inference_action_dist_cls().from_logits(out[Columns.ACTION_DIST_INPUTS])
    actions: Any = dist.to_deterministic().sample()
    return layout.to_env_actions(actions.numpy())
