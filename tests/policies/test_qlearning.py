"""Tabular Q-learning learns on the upstream twin within a small budget."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest

import envs  # noqa: F401  (registers the ids)
from policies.base import Context
from policies.evaluate import evaluate
from policies.heuristics import slot_limits
from policies.qlearning import QLearningPolicy


@pytest.fixture(scope="module")
def trained():
    env = gym.make("lwmecps/TestApp4BS-v0")  # trains on profile A
    policy = QLearningPolicy()
    returns = policy.train(env, episodes=25, seed=0)
    return env.unwrapped.world, policy, returns


def test_improves_over_its_initial_policy(trained):
    world, policy, returns = trained
    initial = QLearningPolicy()
    initial.setup(world, ["A"])
    res = evaluate({"initial": initial, "trained": policy}, world, seeds=4, steps=360, start_slot="random")
    summary = res.summary()
    assert summary["trained"]["reward"].lo > summary["initial"]["reward"].hi  # held-out profile B
    assert np.mean(returns[-5:]) > np.mean(returns[:5])
    assert (policy.visits > 0).sum() > policy.q.shape[0]


def test_acts_validly_and_rejects_a_foreign_world(trained):
    world, policy, _ = trained
    env = gym.make("lwmecps/TestApp4BS-v0")
    env.reset(seed=1)
    ctx = Context.from_env(env)
    action = policy.act(ctx)
    assert action.shape == (world.n_slots,) and (action <= slot_limits(ctx)).all()
    with pytest.raises(ValueError, match="another scenario"):
        QLearningPolicy().act(ctx)
    city = gym.make("lwmecps/ReferenceCity-v0")
    city.reset(seed=0)
    with pytest.raises(ValueError, match="another scenario"):
        policy.act(Context.from_env(city))
    with pytest.raises(ValueError, match="episodes"):
        QLearningPolicy().train(env, episodes=0)
