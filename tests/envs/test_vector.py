"""PlacementVectorEnv: the same MDP as N single PlacementEnvs, NEXT_STEP autoreset, batched spaces."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.vector import AutoresetMode

import envs  # noqa: F401 - registers the ids
from envs.placement_env import PlacementEnv
from envs.vector import PlacementVectorEnv


def _actions(rng: np.random.Generator, nvec: np.ndarray, n: int, step: int) -> np.ndarray:
    """Alternate full random actions (many rejections) with sparse ones (M/M/c spill and unserved load)."""
    if step % 2:
        return rng.integers(0, nvec, size=(n, len(nvec)))
    return (rng.random((n, len(nvec))) < 0.2).astype(np.int64)


def _single_reset(env: PlacementEnv, info: dict, i: int) -> dict[str, np.ndarray]:
    obs, _ = env.reset(options={"trace": info["trace"][i].item(), "start_slot": int(info["slot"][i])})
    return obs


def _assert_obs(single: dict[str, np.ndarray], batched: dict[str, np.ndarray], i: int) -> None:
    for key in ("observations", "action_mask"):
        np.testing.assert_array_equal(single[key], batched[key][i], err_msg=key)


@pytest.mark.parametrize("preset", ["testapp-4bs", "reference-city"])
def test_vector_env_is_the_single_env_mdp(preset: str, preset_world) -> None:
    world = preset_world(preset)
    n, horizon = 3, 4
    traces = ["A", "B"] if preset == "testapp-4bs" else [0, 1]
    vec = PlacementVectorEnv(n, {"world": world, "traces": traces}, max_episode_steps=horizon)
    singles = [PlacementEnv(world=world, traces=traces) for _ in range(n)]
    obs, info = vec.reset(seed=3)
    assert info["_slot"].all()
    for i, env in enumerate(singles):
        _assert_obs(_single_reset(env, info, i), obs, i)
    rng = np.random.default_rng(0)
    resets = 0
    for step in range(2 * horizon + 3):
        act = _actions(rng, vec.dyn.nvec, n, step)
        obs, reward, terminated, truncated, info = vec.step(act)
        assert not terminated.any()
        for i, env in enumerate(singles):
            if info.get("_slot", np.zeros(n, bool))[i]:  # NEXT_STEP autoreset of row i
                resets += 1
                assert reward[i] == 0.0 and not truncated[i]
                _assert_obs(_single_reset(env, info, i), obs, i)
                continue
            s_obs, s_rew, _, _, s_info = env.step(act[i])
            _assert_obs(s_obs, obs, i)
            assert reward[i] == pytest.approx(s_rew, rel=1e-12, abs=1e-12)
            for key, value in s_info["reward_components"].items():
                assert info["reward_components"][key][i] == pytest.approx(value, rel=1e-12, abs=1e-12), key
            for key in ("latency_ms", "violations", "unserved", "replicas", "changes", "rejected"):
                assert info[key][i] == pytest.approx(s_info[key], rel=1e-12, abs=1e-12), key
            np.testing.assert_array_equal(info["placement"][i], s_info["placement"])
    assert resets == 2 * n  # every row truncated after `horizon` steps and auto-reset on the next step, twice


def test_autoreset_next_step(preset_world) -> None:
    world = preset_world("reference-city")
    vec = PlacementVectorEnv(2, {"world": world}, max_episode_steps=2)
    assert vec.metadata["autoreset_mode"] == AutoresetMode.NEXT_STEP
    first, _ = vec.reset(seed=0)
    act = np.zeros((2, world.n_slots), dtype=np.int64)  # removes every replica: a very different observation
    flags = [vec.step(act)[3].tolist() for _ in range(2)]
    assert flags == [[False, False], [True, True]]
    obs, reward, _, truncated, info = vec.step(act)
    assert (reward == 0).all() and not truncated.any() and info["_slot"].all() and not info["_latency_ms"].any()
    # the new episode starts from the initial placement again (the zero action was ignored)
    part = slice(2 * world.n_nodes, 2 * world.n_nodes + world.n_slots)  # replicas per slot
    np.testing.assert_array_equal(obs["observations"][:, part], first["observations"][:, part])
    assert vec.step(act)[3].tolist() == [False, False]
    assert vec.step(act)[3].tolist() == [True, True]


def test_reset_is_seeded_and_rows_differ(preset_world) -> None:
    world = preset_world("reference-city")
    a, b = (PlacementVectorEnv(8, {"world": world}) for _ in range(2))
    (oa, ia), (ob, ib) = a.reset(seed=11), b.reset(seed=11)
    np.testing.assert_array_equal(oa["observations"], ob["observations"])
    np.testing.assert_array_equal(ia["slot"], ib["slot"])
    assert len(set(ia["slot"].tolist())) > 1  # start slots are drawn per row
    assert a.max_episode_steps == world.scenario.episode_slots


def test_spaces_and_make_vec() -> None:
    vec = gym.make_vec("lwmecps/TestApp4BS-v0", num_envs=3, vectorization_mode="vector_entry_point")
    assert isinstance(vec, PlacementVectorEnv)
    assert vec.max_episode_steps == 360
    single = PlacementEnv(scenario="testapp-4bs")
    assert vec.single_observation_space == single.observation_space
    assert vec.single_action_space == single.action_space
    obs, _ = vec.reset(seed=0)
    assert vec.observation_space.contains(obs)
    vec.action_space.seed(0)
    for _ in range(5):
        obs, reward, _, _, _ = vec.step(vec.action_space.sample())
        assert vec.observation_space.contains(obs)
        assert reward.shape == (3,) and reward.dtype == np.float64
    mask = obs["action_mask"].reshape(3, single.world.n_slots, -1)
    assert (mask[:, :, 0] == 1).all()  # zero replicas always fits


def test_bad_options_name_the_field(preset_world) -> None:
    vec = PlacementVectorEnv(2, {"world": preset_world("testapp-4bs")})
    with pytest.raises(ValueError, match=r"options\.placement"):
        vec.reset(options={"placement": [1, 1]})
    with pytest.raises(ValueError, match=r"options\.start_slot"):
        vec.reset(options={"start_slot": [1, 2, 3]})
    with pytest.raises(ValueError, match="num_envs"):
        PlacementVectorEnv(0, {"world": preset_world("testapp-4bs")})
