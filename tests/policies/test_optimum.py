"""The per-slot optimum: enumeration and MILP against brute force, capacity, change cost, time limits, presets."""

from __future__ import annotations

import itertools

import gymnasium as gym
import numpy as np
import pytest

import envs  # noqa: F401 - registers the ids
from envs.dynamics import Dynamics
from envs.presets import get_scenario
from envs.scenario import parse_scenario
from envs.sim import SlotModel
from envs.world import World, build_world
from policies.base import Context
from policies.optimum import OptimumPolicy, slot_cost, solve_slot
from policies.optimum_cuts import convexity_violation, tangent_cuts

USERS = np.array([6.0, 2.0, 4.0])


def tiny_world(change_cost: float = 0.0, node_cpu: float = 1.0, sla_penalty: float = 1.0) -> World:
    """3 nodes on a line, 2 services allowed everywhere, max 2 replicas: 3^6 = 729 placements."""
    return build_world(
        parse_scenario(
            {
                "name": "tiny",
                "nodes": [
                    {"name": f"n{i}", "x_km": float(i), "y_km": 0.0, "cpu": node_cpu, "ram_mib": 4096.0}
                    for i in range(3)
                ],
                "services": [
                    {"name": "a", "cpu": 0.5, "ram_mib": 256.0, "rate": 4.0, "max_replicas": 2, "popularity": 2.0},
                    {"name": "b", "cpu": 0.5, "ram_mib": 512.0, "rate": 6.0, "max_replicas": 2},
                ],
                "demand": {"kind": "synthetic", "base_users": 10, "request_rate": 1.0},
                "latency": {
                    "model": "mmc",
                    "timeout_ms": 400.0,
                    "local_ms": 1.0,
                    "per_hop_ms": 20.0,
                    "propagation_ms_per_km": 10.0,
                },
                "reward": {"replica_cost": 5.0, "change_cost": change_cost, "sla_penalty": sla_penalty},
            }
        )
    )


def brute_force(world: World, users: np.ndarray, previous: np.ndarray) -> tuple[float, np.ndarray]:
    """Best env cost over every capacity-feasible placement, one simulator call per placement."""
    dyn, model = Dynamics(world), SlotModel(world)
    best, arg = np.inf, previous
    for combo in itertools.product(*(range(int(m) + 1) for m in world.slot_max)):
        p = np.array(combo)
        used_cpu = np.bincount(world.slot_node, p * world.slot_cpu, minlength=world.n_nodes)
        used_ram = np.bincount(world.slot_node, p * world.slot_ram, minlength=world.n_nodes)
        if (used_cpu > world.node_cpu + 1e-9).any() or (used_ram > world.node_ram + 1e-9).any():
            continue
        res = model.evaluate(p[None], users[None])
        cost = -dyn.reward(res.latency_ms, res.violations, p[None], previous[None], np.zeros(1)).total()[0]
        if cost < best:
            best, arg = cost, p
    return best, arg


def within_capacity(world: World, placement: np.ndarray) -> bool:
    cpu, ram = Dynamics(world).usage(placement[None])
    return bool((cpu <= world.node_cpu + 1e-9).all() and (ram <= world.node_ram + 1e-9).all())


@pytest.mark.parametrize("prev", [[0, 0, 0, 0, 0, 0], [2, 0, 1, 0, 1, 0]])
def test_enumeration_and_milp_match_brute_force(prev):
    world = tiny_world(change_cost=1.0)
    previous = np.array(prev)
    best, _ = brute_force(world, USERS, previous)
    enum = solve_slot(world, USERS, previous, method="enumerate")
    assert enum.true_cost == pytest.approx(best, rel=1e-12)
    milp = solve_slot(world, USERS, previous, time_limit=10.0, method="milp")
    assert milp.status == "optimal"
    assert milp.true_cost == pytest.approx(best, rel=1e-3)
    assert milp.objective <= milp.true_cost + 1e-9  # the tangent cuts under-estimate
    assert milp.objective == pytest.approx(milp.true_cost, rel=2e-2)


def test_capacity_binds_and_is_respected():
    world = tiny_world(node_cpu=0.5)  # one replica per node in total
    for method in ("enumerate", "milp"):
        sol = solve_slot(world, USERS * 2.0, np.zeros(world.n_slots, dtype=np.int64), method=method)
        assert within_capacity(world, sol.placement)
        assert np.bincount(world.slot_node, sol.placement, minlength=3).max() == 1
        assert sol.true_cost == pytest.approx(brute_force(world, USERS * 2.0, np.zeros(6, dtype=np.int64))[0], 1e-3)


def test_change_cost_steers_the_solution():
    previous = np.array([2, 0, 1, 0, 1, 0])
    free = solve_slot(tiny_world(change_cost=0.0), USERS, previous, method="enumerate")
    assert not np.array_equal(free.placement, previous)  # without a change cost the optimum moves away
    world = tiny_world(change_cost=1e4)
    for method in ("enumerate", "milp"):
        assert np.array_equal(solve_slot(world, USERS, previous, method=method).placement, previous)


def test_cuts_are_valid_lower_bounds():
    mu = np.array([4.0, 4.0, 50.0])
    j = np.array([1, 2, 3])
    budget = np.full(3, 399.0)
    cuts = tangent_cuts(np.arange(3), j, mu, 0.95, budget, sla_weight=100.0, n_cuts=24)
    assert convexity_violation(cuts, mu, budget, 100.0) < 1e-9
    assert cuts.max_rel_error < 0.03


def test_bad_input_names_the_field():
    world = tiny_world()
    with pytest.raises(ValueError, match="users"):
        solve_slot(world, np.ones(4), np.zeros(6, dtype=np.int64))
    with pytest.raises(ValueError, match="method"):
        solve_slot(world, USERS, np.zeros(6, dtype=np.int64), method="guess")


@pytest.fixture(scope="module")
def city() -> World:
    return build_world(get_scenario("reference-city"))


def test_reference_city_milp_beats_initial_placement(city):
    users = city.demand.trace(0)[200]
    initial = Dynamics(city).initial_placement()
    sol = solve_slot(city, users, initial, time_limit=5.0)
    assert sol.method == "milp"
    assert within_capacity(city, sol.placement)
    assert sol.true_cost < slot_cost(city, initial[None], users, initial)[0]
    assert sol.objective <= sol.true_cost * 1.01
    assert np.isnan(sol.bound) or sol.bound <= sol.objective + 1e-6


def test_zero_time_limit_returns_a_clear_status(city):
    users = city.demand.trace(0)[10]
    initial = Dynamics(city).initial_placement()
    sol = solve_slot(city, users, initial, time_limit=0.0)
    assert within_capacity(city, sol.placement)
    assert np.isfinite(sol.true_cost)
    if sol.status != "optimal":
        assert "time limit" in sol.status or "no incumbent" in sol.status
        assert sol.gap > 0 or np.isnan(sol.gap)


@pytest.mark.parametrize("env_id", ["lwmecps/TestApp4BS-v0", "lwmecps/ReferenceCity-v0"])
def test_policy_predicts_the_env_reward(env_id):
    """The optimum's true cost is exactly what the env charges (throttling: the shadow counters stay in sync)."""
    env = gym.make(env_id)
    policy = OptimumPolicy(time_limit=2.0)
    env.reset(seed=3, options={"start_slot": 100})
    policy.reset(env.unwrapped.world)
    steps = 6 if env_id.startswith("lwmecps/TestApp") else 1
    for _ in range(steps):
        action = policy.act(Context.from_env(env))
        _, reward, *_ = env.step(action)
        assert policy.last is not None
        assert reward == pytest.approx(-policy.last.true_cost, rel=1e-9, abs=1e-9)
    if steps > 1:
        assert policy.last.method.startswith("enumeration")
