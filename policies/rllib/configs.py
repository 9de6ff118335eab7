"""RLlib (new API stack) ``AlgorithmConfig`` builders for the placement envs, with the action mask in the RLModule.

PPO and APPO act on the env's ``MultiDiscrete`` action directly. DQN and SAC have no ``MultiDiscrete`` support in
RLlib, so they act on the flat joint ``Discrete`` action of :mod:`policies.rllib.flat` (small envs only).
See ``docs/algorithms.md``.
"""

from __future__ import annotations

import dataclasses
import inspect
from typing import Any

import gymnasium as gym
from ray.rllib.algorithms.algorithm_config import AlgorithmConfig
from ray.rllib.algorithms.appo import APPOConfig
from ray.rllib.algorithms.dqn import DQNConfig
from ray.rllib.algorithms.ppo import PPOConfig
from ray.rllib.algorithms.sac import SACConfig
from ray.rllib.core.rl_module.default_model_config import DefaultModelConfig
from ray.rllib.core.rl_module.rl_module import RLModuleSpec
from ray.tune.search.sample import Domain

from policies.rllib.flat import check_flattenable
from policies.rllib.masking import MODULE_CLASSES
from policies.rllib.registration import flat_env_name, make_env, register_envs
from policies.rllib.slot_module import SlotSharedPPOTorchRLModule
from policies.rllib.slotnet import slot_spec

ALGORITHMS: tuple[str, ...] = ("PPO", "APPO", "DQN", "SAC")

#: values of the ``module`` hyperparameter: RLlib's default MLP (one head per slot) or one MLP shared by all slots
MODULES: tuple[str, ...] = ("mlp", "slot-shared")

#: algorithms that act on the flat Discrete joint action
FLAT_ALGORITHMS = frozenset({"DQN", "SAC"})

_CONFIG_CLASSES: dict[str, type[AlgorithmConfig]] = {
    "PPO": PPOConfig,
    "APPO": APPOConfig,
    "DQN": DQNConfig,
    "SAC": SACConfig,
}

#: our defaults on top of RLlib's (any of them can be overridden through ``hparams``)
_DEFAULTS: dict[str, dict[str, Any]] = {
    "PPO": {"gamma": 0.95, "lr": 3e-4, "train_batch_size": 4000, "minibatch_size": 256, "num_epochs": 10},
    "APPO": {"gamma": 0.95, "lr": 3e-4},
    "DQN": {"gamma": 0.95, "rollout_fragment_length": 25},
    "SAC": {"gamma": 0.95, "rollout_fragment_length": 25},
}
_MODEL_DEFAULTS: dict[str, Any] = {"fcnet_hiddens": [128, 128], "fcnet_activation": "tanh"}

_ENV_RUNNER_KEYS = frozenset({"rollout_fragment_length", "batch_mode"})
_REPORTING_KEYS = frozenset(
    {"min_time_s_per_iteration", "min_sample_timesteps_per_iteration", "min_train_timesteps_per_iteration"}
)
_MODEL_KEYS = frozenset(f.name for f in dataclasses.fields(DefaultModelConfig))
_RESERVED = frozenset(
    {"self", "kwargs", "learner_class", "learner_connector", "add_default_connectors_to_learner_pipeline"}
)
_SCHEDULABLE = frozenset({"lr", "entropy_coeff"})
_REAL = frozenset({"min_time_s_per_iteration"})  # an int default that also takes floats


def _training_keys(cls: type[AlgorithmConfig]) -> frozenset[str]:
    names = set(inspect.signature(cls.training).parameters)
    names |= set(inspect.signature(AlgorithmConfig.training).parameters)
    return frozenset(names - _RESERVED)


def _type_ok(value: Any, default: Any, name: str) -> bool:
    if default is None or isinstance(value, Domain):
        return True
    if isinstance(value, dict) and set(value) == {"grid_search"}:
        return all(_type_ok(v, default, name) for v in value["grid_search"])
    if isinstance(default, bool):
        return isinstance(value, bool)
    if isinstance(default, int | float) and not isinstance(value, bool):
        if isinstance(value, list) and name in _SCHEDULABLE:
            return True
        real = isinstance(default, float) or name in _REAL
        return isinstance(value, float | int) if real else isinstance(value, int)
    if isinstance(default, list | tuple):
        return isinstance(value, list | tuple)
    return isinstance(value, type(default))


def _check_hparams(algo: str, config: AlgorithmConfig, hparams: dict[str, Any]) -> None:
    training = _training_keys(type(config))
    model_defaults = dataclasses.asdict(DefaultModelConfig()) | _MODEL_DEFAULTS
    known = training | _ENV_RUNNER_KEYS | _REPORTING_KEYS | _MODEL_KEYS
    for name, value in hparams.items():
        if name not in known:
            raise ValueError(f"hparams.{name}: unknown hyperparameter for {algo}")
        default = model_defaults.get(name) if name in _MODEL_KEYS else getattr(config, name, None)
        if not _type_ok(value, default, name):
            raise ValueError(
                f"hparams.{name}: expected {type(default).__name__} for {algo}, got {type(value).__name__} {value!r}"
            )


def env_spaces(env_id: str, env_config: dict[str, Any] | None = None) -> tuple[gym.Space, gym.Space]:
    """(observation_space, action_space) of the env as built by the registered env creator."""
    env = make_env(env_id, env_config)
    try:
        return env.observation_space, env.action_space
    finally:
        env.close()


def _module_spec(algo: str, module: Any, env_id: str, env_config: dict | None, model: dict[str, Any]) -> RLModuleSpec:
    if module not in MODULES:
        raise ValueError(f"hparams.module: unknown module {module!r} (known: {', '.join(MODULES)})")
    if module == "mlp":
        return RLModuleSpec(module_class=MODULE_CLASSES[algo], model_config=model)
    if algo != "PPO":
        raise ValueError(f"hparams.module: 'slot-shared' is implemented for PPO only, not {algo}")
    env = make_env(env_id, env_config)
    try:
        spec = slot_spec(env.unwrapped.world)  # type: ignore[attr-defined]
    finally:
        env.close()
    return RLModuleSpec(module_class=SlotSharedPPOTorchRLModule, model_config=model | {"slot_spec": spec})


def algorithm_config(
    algo: str,
    env_id: str,
    env_config: dict | None = None,
    hparams: dict | None = None,
    *,
    num_env_runners: int = 0,
    num_envs_per_env_runner: int = 4,
    seed: int = 0,
) -> AlgorithmConfig:
    """An RLlib config for ``algo`` on ``env_id`` with the masked RLModule.

    ``hparams`` are flat: any argument of the config's ``training()`` (``lr``, ``gamma``, ``train_batch_size``,
    ...), ``rollout_fragment_length``/``batch_mode``, ``min_*_per_iteration`` (reporting), or a
    ``DefaultModelConfig`` field (``fcnet_hiddens``, ...), or ``module`` (one of :data:`MODULES`; PPO only for
    ``"slot-shared"``, see :mod:`policies.rllib.slotnet`).
    """
    if algo not in _CONFIG_CLASSES:
        raise ValueError(f"unknown algorithm {algo!r} (known: {', '.join(ALGORITHMS)})")
    hparams = dict(hparams or {})
    module = hparams.pop("module", "mlp")
    config = _CONFIG_CLASSES[algo]()
    _check_hparams(algo, config, hparams)
    _, action_space = env_spaces(env_id, env_config)  # fails fast on a bad env id or env_config
    if algo in FLAT_ALGORITHMS:
        check_flattenable(action_space, algo)
    elif not isinstance(action_space, gym.spaces.MultiDiscrete):
        raise ValueError(f"{algo}: expected the env's MultiDiscrete action space, got {action_space}")
    if algo == "DQN" and hparams.get("num_atoms", 1) != 1:
        raise ValueError("hparams.num_atoms: the masked DQN module supports only num_atoms=1 (no distributional DQN)")
    register_envs()

    settings = _DEFAULTS[algo] | hparams
    model = _MODEL_DEFAULTS | {k: settings.pop(k) for k in list(settings) if k in _MODEL_KEYS}
    runner = {k: settings.pop(k) for k in list(settings) if k in _ENV_RUNNER_KEYS}
    reporting = {k: settings.pop(k) for k in list(settings) if k in _REPORTING_KEYS}
    return (
        config.environment(
            env=flat_env_name(env_id) if algo in FLAT_ALGORITHMS else env_id, env_config=dict(env_config or {})
        )
        .framework("torch")
        .env_runners(num_env_runners=num_env_runners, num_envs_per_env_runner=num_envs_per_env_runner, **runner)
        .rl_module(rl_module_spec=_module_spec(algo, module, env_id, env_config, model))
        .training(**settings)
        .reporting(**reporting)
        .debugging(seed=seed)
    )
