"""MDP pieces: action masks, action repair, observation layout, reward components and info keys."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from envs.dynamics import Dynamics
from envs.placement_env import PlacementEnv
from envs.sim import SlotModel

#: two nodes (n0 small, n1 bigger CPU); two services on both: slots a@n0, a@n1, b@n0, b@n1
TWO_NODES = {
    "name": "two-nodes",
    "nodes": [
        {"name": "n0", "x_km": 0.0, "y_km": 0.0, "cpu": 1.0, "ram_mib": 1024.0},
        {"name": "n1", "x_km": 1.0, "y_km": 0.0, "cpu": 2.0, "ram_mib": 1024.0},
    ],
    "services": [
        {"name": "a", "cpu": 0.5, "ram_mib": 256.0, "rate": 10.0, "max_replicas": 3},
        {"name": "b", "cpu": 0.25, "ram_mib": 512.0, "rate": 10.0, "max_replicas": 2},
    ],
    "demand": {"base_users": 4, "request_rate": 1.0},
    "latency": {"timeout_ms": 150.0},
    "reward": {"replica_cost": 0.1, "change_cost": 0.5, "sla_penalty": 2.0, "infeasible_penalty": 3.0},
    "episode_slots": 4,
}


@pytest.fixture(scope="module")
def world(make_world):
    return make_world(TWO_NODES)


@pytest.fixture(scope="module")
def dyn(world):
    return Dynamics(world)


def fits(world, placement: np.ndarray) -> bool:
    cpu = np.bincount(world.slot_node, placement * world.slot_cpu, minlength=world.n_nodes)
    ram = np.bincount(world.slot_node, placement * world.slot_ram, minlength=world.n_nodes)
    return bool((cpu <= world.node_cpu + 1e-9).all() and (ram <= world.node_ram + 1e-9).all())


def all_placements(dyn):
    return [np.array(p) for p in itertools.product(*(range(n) for n in dyn.nvec))]


def test_mask_allows_a_count_iff_it_fits_with_only_that_slot_changed(world, dyn):
    feasible = np.array([p for p in all_placements(dyn) if fits(world, p)])
    assert 10 < len(feasible) < np.prod(dyn.nvec)  # the instance has both kinds
    masks = dyn.mask(feasible, *dyn.free(feasible))
    assert masks.shape == (len(feasible), dyn.nvec.sum()) and masks.dtype == np.float32
    for p, m in zip(feasible, masks, strict=True):
        want = []
        for k, n in enumerate(dyn.nvec):
            for v in range(n):
                q = p.copy()
                q[k] = v
                want.append(float(fits(world, q)))
        assert m.tolist() == want, p


def test_repair_rejects_increases_node_wise_and_applies_decreases(world, dyn):
    prev = np.array([[1, 0, 1, 0]])  # n0: one a + one b (0.75 CPU, 768 MiB)
    # n0 asks a=3, b=0: 1.5 CPU > 1 -> its increase is rejected, its decrease applies; n1 asks a=2: fits
    placement, rejected = dyn.repair(prev, np.array([[3, 2, 0, 0]]))
    assert placement.tolist() == [[1, 2, 0, 0]] and rejected.tolist() == [1.0]
    # n1 asks a=2, b=2: 1536 MiB > 1024 -> both of n1's increases rejected
    placement, rejected = dyn.repair(prev, np.array([[1, 2, 1, 2]]))
    assert placement.tolist() == [[1, 0, 1, 0]] and rejected.tolist() == [2.0]


def test_repair_clips_to_the_action_range_without_penalty(dyn):
    placement, rejected = dyn.repair(np.zeros((1, 4), dtype=np.int64), np.array([[-1, 9, 5, -3]]))
    assert placement.tolist() == [[0, 3, 2, 0]] and rejected.tolist() == [0.0]


def test_repair_always_returns_a_feasible_placement(world, dyn):
    rng = np.random.default_rng(1)
    feasible = np.array([p for p in all_placements(dyn) if fits(world, p)])
    prev = feasible[rng.integers(len(feasible), size=500)]
    action = rng.integers(-1, dyn.nvec + 1, size=(500, 4))
    placement, rejected = dyn.repair(prev, action)
    assert all(fits(world, p) for p in placement)
    clipped = np.clip(action, 0, dyn.nvec - 1)
    kept = placement != clipped
    assert (placement[kept] == prev[kept]).all() and (clipped[kept] > prev[kept]).all()  # only increases undone
    assert (rejected == kept.sum(1)).all() and rejected.any()


def test_initial_placement_is_one_replica_where_it_fits(dyn):
    assert dyn.initial_placement().tolist() == [1, 1, 1, 1]


def test_observation_layout(world, dyn):
    placement = np.array([[1, 2, 0, 1]])
    users = np.array([[2.0, 1.0]])
    obs = dyn.observe(placement, users, np.array([72]), np.array([[30.0, 600.0]]))
    o = obs["observations"][0]
    assert o.shape == (dyn.obs_dim,) == (2 * 2 + 4 + 2 + 2 + 2,)
    np.testing.assert_allclose(o[:2], [0.5, 0.375])  # free CPU: n0 1 - 0.5 of 1; n1 2 - 2 * 0.5 - 0.25 of 2
    np.testing.assert_allclose(o[2:4], [0.75, 0.0])  # free RAM: n0 1024 - 256 of 1024; n1 full (2 x 256 + 512)
    np.testing.assert_allclose(o[4:8], [1 / 3, 2 / 3, 0.0, 0.5])  # replicas / max
    np.testing.assert_allclose(o[8:10], users[0] / dyn.user_scale)
    np.testing.assert_allclose(o[10:12], [30 / 150, 2.0])  # latency / timeout, capped at 2
    np.testing.assert_allclose(o[12:], [np.sin(2 * np.pi * 72 / 288), np.cos(2 * np.pi * 72 / 288)], atol=1e-7)
    assert obs["action_mask"][0].tolist() == dyn.mask(placement, *dyn.free(placement))[0].tolist()


def test_reward_is_minus_the_sum_of_its_components(world):
    env = PlacementEnv({"world": world, "traces": [0], "start_slot": 144})  # noon
    env.reset(seed=0, options={"placement": [1, 0, 1, 0]})
    users = env.backend.snapshot().users.copy()
    _, reward, _, _, info = env.step(np.array([3, 2, 0, 0]))
    assert info["placement"].tolist() == [1, 2, 0, 0]
    comp = info["reward_components"]
    assert set(comp) == {"latency", "replicas", "changes", "sla", "infeasible"}
    expect = SlotModel(world).evaluate(np.array([[1, 2, 0, 0]]), users[None])
    assert comp["latency"] == pytest.approx(expect.latency_ms[0]) == info["latency_ms"]
    assert comp["replicas"] == pytest.approx(0.1 * 3)
    assert comp["changes"] == pytest.approx(0.5 * 3)  # |[1,2,0,0] - [1,0,1,0]|
    assert comp["sla"] == pytest.approx(2.0 * 100 * expect.violations[0]) and comp["sla"] > 0
    assert comp["infeasible"] == pytest.approx(3.0 * 1)
    assert all(v > 0 for v in comp.values())
    assert reward == pytest.approx(-sum(comp.values()))


def test_info_keys(world):
    env = PlacementEnv({"world": world, "traces": [0]})
    _, info = env.reset(seed=1)
    assert set(info) == {"slot", "trace"}
    _, _, _, _, info = env.step(env.action_space.sample())
    assert set(info) == {
        "reward_components",
        "latency_ms",
        "violations",
        "unserved",
        "replicas",
        "changes",
        "rejected",
        "stable",
        "placement",
    }
    assert info["replicas"] == int(info["placement"].sum()) and info["stable"] is True


def test_reset_rejects_an_infeasible_start_placement(world):
    env = PlacementEnv({"world": world, "traces": [0]})
    with pytest.raises(ValueError, match=r"options\.placement: exceeds node capacity"):
        env.reset(seed=0, options={"placement": [3, 0, 2, 0]})
    with pytest.raises(ValueError, match=r"options\.placement: expected shape \(4,\)"):
        env.reset(seed=0, options={"placement": [1, 1]})
