"""Register the lwmecps envs with Ray Tune / RLlib under their Gymnasium ids (and a flat-action variant)."""

from __future__ import annotations

from typing import Any

import gymnasium as gym
from ray.tune.registry import register_env

import envs
from policies.rllib.flat import FlatActionWrapper

#: suffix of the registered name of an env's flat Discrete action variant (for DQN and SAC)
FLAT_SUFFIX = "+flat"


def make_env(env_id: str, env_config: dict[str, Any] | None = None) -> gym.Env:
    """``gym.make(env_id, **env_config)``; RLlib's EnvContext is a dict, its extra attributes are dropped."""
    if env_id not in envs.ENV_IDS:
        raise ValueError(f"unknown env id {env_id!r} (known: {', '.join(envs.ENV_IDS)})")
    return gym.make(env_id, **dict(env_config or {}))


def flat_env_name(env_id: str) -> str:
    return env_id + FLAT_SUFFIX


def register_envs() -> None:
    """``ray.tune.register_env`` for every id in ``envs.ENV_IDS`` and its flat-action variant (idempotent)."""
    for env_id in envs.ENV_IDS:
        register_env(env_id, lambda cfg, _id=env_id: make_env(_id, cfg))
        register_env(flat_env_name(env_id), lambda cfg, _id=env_id: FlatActionWrapper(make_env(_id, cfg)))
