"""RLlib builders, the masked RLModules, loading a checkpoint without the Algorithm, and the export (tiny budgets)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import pytest

import envs  # noqa: F401 - registers the ids
from policies.rllib.flat import FlatActionWrapper, flatten, joint_mask, slot_masks, unflatten

ENV_ID = "lwmecps/TestApp4BS-v0"
NVEC = np.array([5, 5, 5, 5])

#: hyperparameters that make one iteration take about a second
TINY: dict[str, dict[str, Any]] = {
    "PPO": {"train_batch_size": 200, "minibatch_size": 50, "num_epochs": 1, "fcnet_hiddens": [32, 32]},
    "APPO": {"train_batch_size": 200, "min_time_s_per_iteration": 0, "fcnet_hiddens": [32, 32]},
    "DQN": {
        "train_batch_size": 16,
        "num_steps_sampled_before_learning_starts": 50,
        "min_sample_timesteps_per_iteration": 100,
        "fcnet_hiddens": [32, 32],
    },
    "SAC": {"train_batch_size": 16, "num_steps_sampled_before_learning_starts": 50, "fcnet_hiddens": [32, 32]},
}


def _stack(obs: Any) -> dict[str, np.ndarray]:
    if isinstance(obs, dict):
        return {k: np.asarray(v) for k, v in obs.items()}
    return {k: np.stack([o[k] for o in obs]) for k in obs[0]}


def _env_obs_batch(n: int, seed: int = 1) -> dict[str, np.ndarray]:
    """Observations of the env under random actions."""
    env = gym.make(ENV_ID)
    env.action_space.seed(seed)
    obs, _ = env.reset(seed=seed)
    seen = []
    for _ in range(n):
        seen.append(obs)
        obs, *_ = env.step(env.action_space.sample())
    return _stack(seen)


# ---------------------------------------------------------------- flat joint action (no Ray)


def test_joint_mask_is_the_product_of_slot_masks_in_flatten_order():
    rng = np.random.default_rng(0)
    masks = (rng.random((6, NVEC.sum())) < 0.6).astype(np.float32)
    joint = joint_mask(masks, NVEC)
    assert joint.shape == (6, 625)
    counts = unflatten(np.arange(625), NVEC)
    offsets = np.concatenate([[0], np.cumsum(NVEC)[:-1]])
    expected = np.prod(masks[:, offsets + counts], axis=-1)  # (6, 625)
    np.testing.assert_array_equal(joint, expected)
    np.testing.assert_array_equal(flatten(counts, NVEC), np.arange(625))
    masks[:, offsets] = 1.0  # every slot keeps one allowed count -> the marginals give the slot masks back
    np.testing.assert_array_equal(slot_masks(joint_mask(masks, NVEC), NVEC), masks)


def test_flat_wrapper_steps_the_env_with_the_unflattened_action():
    env = FlatActionWrapper(gym.make(ENV_ID))
    obs, _ = env.reset(seed=0)
    assert env.action_space == gym.spaces.Discrete(625)
    assert obs["action_mask"].shape == (625,) and obs in env.observation_space
    _, _, _, _, info = env.step(int(flatten(np.array([[1, 2, 3, 0]]), NVEC)[0]))
    assert info["placement"].tolist() == [1, 2, 3, 0]


# ---------------------------------------------------------------- bad input (no Ray runtime needed)


@pytest.mark.parametrize(
    ("algo", "hparams", "message"),
    [
        ("A2C", {}, r"unknown algorithm 'A2C' \(known: PPO, APPO, DQN, SAC\)"),
        ("PPO", {"lr": "fast"}, r"hparams\.lr: expected float"),
        ("PPO", {"num_epochs": 2.5}, r"hparams\.num_epochs: expected int"),
        ("PPO", {"learning_rate": 1e-3}, r"hparams\.learning_rate: unknown hyperparameter for PPO"),
        ("DQN", {"num_atoms": 51}, r"hparams\.num_atoms: .*only num_atoms=1"),
        ("PPO", {"module": "transformer"}, r"hparams\.module: unknown module 'transformer' \(known: mlp, slot-shared"),
        ("APPO", {"module": "slot-shared"}, r"hparams\.module: 'slot-shared' is implemented for PPO only, not APPO"),
    ],
)
def test_bad_builder_input_fails_with_one_clear_message(algo, hparams, message):
    from policies.rllib.configs import algorithm_config

    with pytest.raises(ValueError, match=message):
        algorithm_config(algo, ENV_ID, hparams=hparams)


@pytest.mark.parametrize("algo", ["DQN", "SAC"])
def test_flat_algorithms_refuse_a_city_sized_action_space(algo):
    from policies.rllib.configs import algorithm_config

    with pytest.raises(ValueError, match=rf"{algo} needs a Discrete action.*joint actions > .*use PPO or APPO"):
        algorithm_config(algo, "lwmecps/ReferenceCity-v0")


def test_hparams_reach_the_config():
    from policies.rllib.configs import algorithm_config
    from policies.rllib.masking import MaskedPPOTorchRLModule

    cfg = algorithm_config("PPO", ENV_ID, {"traces": ["B"]}, {"lr": 1e-3, "fcnet_hiddens": [16]}, seed=7)
    assert (cfg.lr, cfg.seed, cfg.env, cfg.env_config) == (1e-3, 7, ENV_ID, {"traces": ["B"]})
    assert cfg.rl_module_spec.module_class is MaskedPPOTorchRLModule
    assert cfg.rl_module_spec.model_config["fcnet_hiddens"] == [16]
    dqn = algorithm_config("DQN", ENV_ID)
    assert dqn.env == ENV_ID + "+flat" and dqn.rollout_fragment_length == 25


# ---------------------------------------------------------------- one training iteration per algorithm


@pytest.fixture(scope="module", params=["PPO", "PPO/slot-shared", "APPO", "DQN", "SAC"])
def trained(request, ray_runtime, tmp_path_factory) -> dict[str, Any]:
    """One training iteration of ``algo`` (a few for APPO), its checkpoint, and the Algorithm's own greedy
    actions on observations it sampled. ``PPO/slot-shared`` is PPO with ``module="slot-shared"``."""
    from policies.rllib.configs import algorithm_config
    from policies.rllib.loading import load_module

    algo_name, _, module = request.param.partition("/")
    hparams = TINY[algo_name] | ({"module": module} if module else {})
    algo = algorithm_config(algo_name, ENV_ID, hparams=hparams).build_algo()
    try:
        for _ in range(10):  # APPO learns asynchronously: its first results may come without learner stats
            result = algo.train()
            if result.get("learners", {}).get("default_policy", {}).get("num_module_steps_trained"):
                break
        ckpt = tmp_path_factory.mktemp(request.param.replace("/", "-")) / "ckpt"
        algo.save(str(ckpt))
        # APPO's learner thread keeps updating and broadcasts weights only now and then: give the Algorithm's
        # EnvRunner exactly the checkpointed weights, then let it act through its own connectors and distribution
        algo.get_module().set_state(load_module(ckpt).get_state(inference_only=True))
        episodes = algo.env_runner.sample(num_timesteps=48, explore=False, random_actions=False, force_reset=True)
    finally:
        algo.stop()
    obs = [_stack(ep.get_observations(slice(0, len(ep)))) for ep in episodes if len(ep)]
    batch = {k: np.concatenate([o[k] for o in obs]) for k in obs[0]}
    actions = np.concatenate([np.asarray(ep.get_actions(slice(0, len(ep)))) for ep in episodes if len(ep)])
    if algo_name in ("DQN", "SAC"):  # the runner saw the flat env: back to per-slot masks and counts
        batch["action_mask"] = slot_masks(batch["action_mask"], NVEC)
        actions = unflatten(actions, NVEC)
    return {"algo": algo_name, "result": result, "ckpt": Path(ckpt), "obs": batch, "actions": actions}


@pytest.mark.ray
def test_one_training_iteration_samples_and_learns(trained):
    result = trained["result"]
    assert result["env_runners"]["num_env_steps_sampled_lifetime"] > 0
    learner = result["learners"]["default_policy"]
    assert np.isfinite(learner["total_loss"])
    assert learner["num_module_steps_trained"] > 0


@pytest.mark.ray
def test_checkpoint_acts_without_the_algorithm_like_the_algorithm(trained):
    from policies.rllib.policy import RLlibPolicy

    policy = RLlibPolicy.from_checkpoint(trained["ckpt"], gym.make(ENV_ID))
    assert policy.describe()["algorithm"] == trained["algo"]
    assert len(trained["actions"]) >= 40
    np.testing.assert_array_equal(policy.act_batch(trained["obs"]), trained["actions"])


@pytest.mark.ray
def test_checkpoint_loads_from_a_relative_path(trained, monkeypatch):
    from policies.rllib.policy import RLlibPolicy

    ckpt = trained["ckpt"]
    monkeypatch.chdir(ckpt.parent.parent)  # RLlib parses the path as a URI: a relative one has no scheme
    policy = RLlibPolicy.from_checkpoint(Path(ckpt.parent.name) / ckpt.name)
    np.testing.assert_array_equal(policy.act_batch(trained["obs"]), trained["actions"])


@pytest.mark.ray
def test_export_reproduces_the_checkpoint_actions(trained, tmp_path):
    import json

    from policies.rllib.export import export_checkpoint
    from policies.rllib.policy import RLlibPolicy

    out = export_checkpoint(trained["ckpt"], tmp_path / "export", metrics={"episode_return_mean": -1.5})
    meta = json.loads((out / "metadata.json").read_text())
    assert (meta["algorithm"], meta["env_id"], meta["metrics"]) == (
        trained["algo"],
        ENV_ID,
        {"episode_return_mean": -1.5},
    )
    assert meta["ray_version"] and meta["torch_version"] and meta["nvec"] == NVEC.tolist()
    obs = _env_obs_batch(64)
    from_ckpt = RLlibPolicy.from_checkpoint(trained["ckpt"]).act_batch(obs)
    from_export = RLlibPolicy.from_export(out, gym.make(ENV_ID)).act_batch(obs)
    np.testing.assert_array_equal(from_export, from_ckpt)
    np.testing.assert_array_equal(from_export, RLlibPolicy.from_export(out).act_batch(obs))


@pytest.mark.ray
def test_export_acts_without_importing_ray(trained, tmp_path):
    import json
    import subprocess
    import sys

    from policies.rllib.export import export_checkpoint

    out = export_checkpoint(trained["ckpt"], tmp_path / "export")
    code = (
        "import sys, gymnasium as gym, envs\n"
        "from policies.base import Context\n"
        "from policies.rllib.policy import RLlibPolicy\n"
        f"env = gym.make({ENV_ID!r}); env.reset(seed=0)\n"
        f"print(RLlibPolicy.from_export({str(out)!r}, env).act(Context.from_env(env)).tolist())\n"
        "assert not [m for m in sys.modules if m == 'ray' or m.startswith('ray.')], 'ray was imported'\n"
    )
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    action = json.loads(run.stdout)
    assert len(action) == len(NVEC) and all(0 <= a < n for a, n in zip(action, NVEC, strict=True))


@pytest.mark.ray
def test_masked_module_never_samples_a_masked_action(trained):
    import torch
    from ray.rllib.core.columns import Columns

    from policies.rllib.loading import load_module

    module = load_module(trained["ckpt"])
    rng = np.random.default_rng(0)
    n = 400
    obs = _env_obs_batch(n)
    masks = np.zeros((n, NVEC.sum()), dtype=np.float32)
    offsets = np.concatenate([[0], np.cumsum(NVEC)[:-1]])
    for i, off in enumerate(offsets):  # one or two allowed counts per slot
        masks[np.arange(n), off + rng.integers(NVEC[i], size=n)] = 1.0
        masks[np.arange(n), off + rng.integers(NVEC[i], size=n)] = 1.0
    flat = trained["algo"] in ("DQN", "SAC")
    mask_in = joint_mask(masks, NVEC) if flat else masks
    batch = {
        Columns.OBS: {"observations": torch.from_numpy(obs["observations"]), "action_mask": torch.from_numpy(mask_in)}
    }
    with torch.no_grad():
        out = module.forward_exploration(batch, t=0)  # DQN: epsilon = 1 at t=0 -> its random actions
    if Columns.ACTIONS in out:
        actions = out[Columns.ACTIONS].numpy()
    else:
        dist = module.get_exploration_action_dist_cls().from_logits(out[Columns.ACTION_DIST_INPUTS])
        actions = dist.sample().numpy()
    counts = unflatten(actions, NVEC) if flat else actions
    assert (masks[np.arange(n)[:, None], offsets + counts] == 1.0).all()
    assert len(np.unique(counts, axis=0)) > 10  # it did sample, not collapse to one action


@pytest.mark.ray
def test_checkpoint_for_another_env_fails_fast(trained, tmp_path):
    from policies.rllib.export import export_checkpoint
    from policies.rllib.policy import RLlibPolicy

    city = gym.make("lwmecps/ReferenceCity-v0")
    with pytest.raises(
        ValueError, match=r"checkpoint was trained for observation dim 19.*this env has observation dim 362, 250 slots"
    ):
        RLlibPolicy.from_checkpoint(trained["ckpt"], city)
    out = export_checkpoint(trained["ckpt"], tmp_path / "export")
    with pytest.raises(ValueError, match=r"export .* was trained for observation dim 19, 4 slots.*this env has"):
        RLlibPolicy.from_export(out, city)
