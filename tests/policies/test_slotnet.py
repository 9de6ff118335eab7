"""The slot-shared network: features gathered per slot, equivariance to relabelling stations (no Ray)."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
import torch

import envs  # noqa: F401 - registers the ids
from policies.rllib.slotnet import SlotNet, slot_spec


def _net(env_id: str, seed: int = 0) -> tuple[gym.Env, SlotNet]:
    env = gym.make(env_id)
    torch.manual_seed(seed)
    return env, SlotNet(**slot_spec(env.unwrapped.world), hiddens=[16, 16])


def _obs(env: gym.Env, n: int) -> np.ndarray:
    env.action_space.seed(3)
    obs, _ = env.reset(seed=3)
    rows = []
    for _ in range(n):
        rows.append(obs["observations"])
        obs, *_ = env.step(env.action_space.sample())
    return np.stack(rows)


def test_logits_have_the_action_layout_and_values_one_per_row():
    env, net = _net("lwmecps/ReferenceCity-v0")
    obs = torch.from_numpy(_obs(env, 5))
    assert net.obs_dim == obs.shape[1]
    assert net(obs).shape == (5, int(env.action_space.nvec.sum()))
    assert net.value(obs).shape == (5,)


def test_features_read_each_slot_from_its_own_node_and_service():
    env, net = _net("lwmecps/ReferenceCity-v0")
    world = env.unwrapped.world
    N, K = world.n_nodes, world.n_slots
    obs = torch.from_numpy(_obs(env, 3))
    f = net.features(obs)
    k = K // 2
    node, svc = int(world.slot_node[k]), int(world.slot_service[k])
    assert f[:, k, 0].tolist() == obs[:, node].tolist()  # free CPU of the slot's node
    assert f[:, k, 2].tolist() == obs[:, 2 * N + k].tolist()  # the slot's replicas
    assert f[:, k, 3].tolist() == obs[:, 2 * N + K + node].tolist()  # users of the node's cell
    assert f[:, k, 5].tolist() == obs[:, 3 * N + K + svc].tolist()  # the service's latency


def test_relabelling_the_stations_permutes_the_decisions():
    """On the twin (one service, a slot per station) permuting the stations in the observation permutes the
    per-slot logits the same way: one network decides for every station."""
    env, net = _net("lwmecps/TestApp4BS-v0")
    obs = torch.from_numpy(_obs(env, 8))
    N = 4
    perm = torch.tensor([2, 0, 3, 1])
    blocks = [obs[:, i * N : (i + 1) * N][:, perm] for i in range(4)]  # free CPU, free RAM, replicas, users
    permuted = torch.cat([*blocks, obs[:, 4 * N :]], 1)
    logits, logits_p = net(obs).reshape(8, N, -1), net(permuted).reshape(8, N, -1)
    torch.testing.assert_close(logits_p, logits[:, perm])
    torch.testing.assert_close(net.value(permuted), net.value(obs))


def test_inconsistent_spec_is_refused():
    env, _ = _net("lwmecps/TestApp4BS-v0")
    spec = slot_spec(env.unwrapped.world) | {"nvec": [5, 5, 5]}
    with pytest.raises(ValueError, match="one entry per slot"):
        SlotNet(**spec)


def test_catchments_follow_the_routing_order_where_services_are_pinned():
    """City: a slot's catchment = users of the cells whose first slot (in routing order) with replicas is it."""
    env, net = _net("lwmecps/ReferenceCity-v0")
    world = env.unwrapped.world
    N, K = world.n_nodes, world.n_slots
    assert net.routing and not _net("lwmecps/TestApp4BS-v0")[1].routing  # the twin serves every cell locally
    obs = torch.from_numpy(_obs(env, 2))
    obs[1, 2 * N : 2 * N + K : 3] = 0.0  # empty every third slot, so routing skips them
    repl, users = obs[:, 2 * N : 2 * N + K], obs[:, 2 * N + K : 3 * N + K]
    for b in range(2):
        for hosted, got in ((torch.ones(K), net._catchment(users, torch.ones_like(repl))), (repl[b], None)):
            want = torch.zeros(K)
            for s in range(world.n_services):
                for c in range(N):
                    first = next((int(k) for k in world.order[s, c] if k < K and hosted[k] > 0), None)
                    if first is not None:
                        want[first] += users[b, c]
            got = net._catchment(users, repl)[b] if got is None else got[b]
            torch.testing.assert_close(got, want)
