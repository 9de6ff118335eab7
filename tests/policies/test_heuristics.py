"""Baselines act validly on every preset, static-k is exact, greedy beats static-1 and random."""

from __future__ import annotations

import numpy as np
import pytest

from envs import ENV_IDS
from envs.backends import Snapshot
from envs.placement_env import PlacementEnv
from envs.presets import get_scenario
from envs.world import World, build_world
from policies.base import Context
from policies.heuristics import (
    GreedyLatency,
    OptimizedBalance,
    StaticK,
    UniformRandom,
    baselines,
    fit_in_order,
    slot_limits,
)


@pytest.fixture(scope="module")
def worlds() -> dict[str, World]:
    return {env_id: build_world(get_scenario(preset)) for env_id, preset in ENV_IDS.items()}


def busy_env(world: World, placement: np.ndarray | None = None) -> PlacementEnv:
    env = PlacementEnv(world=world)
    start = int(0.85 * world.demand.slots_per_day)  # evening peak of the diurnal curve
    options: dict = {"start_slot": start}
    if placement is not None:
        options["placement"] = placement
    env.reset(seed=0, options=options)
    return env


def used(world: World, placement: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    cpu = np.bincount(world.slot_node, placement * world.slot_cpu, minlength=world.n_nodes)
    ram = np.bincount(world.slot_node, placement * world.slot_ram, minlength=world.n_nodes)
    return cpu, ram


@pytest.mark.parametrize("env_id", list(ENV_IDS))
def test_every_baseline_acts_validly(worlds, env_id):
    world = worlds[env_id]
    steps = 1 if env_id == "lwmecps/LargeCity-v0" else 3
    for name, policy in baselines().items():
        env = busy_env(world)
        policy.reset(world, seed=1)
        for _ in range(steps):
            ctx = Context.from_env(env)
            action = policy.act(ctx)
            assert action.shape == (world.n_slots,) and np.issubdtype(action.dtype, np.integer), name
            assert (action >= 0).all() and (action <= slot_limits(ctx)).all(), f"{name} violates the action mask"
            _, _, _, _, info = env.step(action)
            if name != "random":
                assert info["rejected"] == 0, name
                np.testing.assert_array_equal(info["placement"], action)


def test_mask_limits_match_the_flat_mask(worlds):
    world = worlds["lwmecps/ReferenceCity-v0"]
    ctx = Context.from_env(busy_env(world))
    top = slot_limits(ctx)
    mask = ctx.obs["action_mask"]
    start = np.concatenate([[0], np.cumsum(world.slot_max + 1)[:-1]])
    for k in range(world.n_slots):
        allowed = np.flatnonzero(mask[start[k] : start[k] + world.slot_max[k] + 1])
        assert allowed.max() == top[k] and len(allowed) == top[k] + 1


def test_static_k_exact_where_it_fits(worlds):
    twin = worlds["lwmecps/TestApp4BS-v0"]
    env = busy_env(twin, placement=np.zeros(twin.n_slots, dtype=np.int64))
    action = StaticK(3).act(Context.from_env(env))
    np.testing.assert_array_equal(action, np.full(twin.n_slots, 3))
    np.testing.assert_array_equal(StaticK(9).target(twin), twin.slot_max)  # clipped to the maximum

    city = worlds["lwmecps/ReferenceCity-v0"]
    target = StaticK(2).target(city)
    cpu, ram = used(city, target)
    assert (cpu <= city.node_cpu + 1e-9).all() and (ram <= city.node_ram + 1e-9).all()
    short = np.flatnonzero(target < 2)
    assert short.size  # the city cannot hold 2 replicas everywhere
    free_cpu, free_ram = city.node_cpu - cpu, city.node_ram - ram
    n = city.slot_node[short]
    assert not ((city.slot_cpu[short] <= free_cpu[n] + 1e-9) & (city.slot_ram[short] <= free_ram[n] + 1e-9)).any()
    assert (target[target != 2] < 2).all()


def test_static_reaches_its_target_through_the_mask(worlds):
    city = worlds["lwmecps/ReferenceCity-v0"]
    env = busy_env(city)
    policy = StaticK(2)
    for _ in range(4):
        _, _, _, _, info = env.step(policy.act(Context.from_env(env)))
    np.testing.assert_array_equal(info["placement"], policy.target(city))


def test_fit_in_order_fills_in_slot_order(worlds):
    city = worlds["lwmecps/ReferenceCity-v0"]
    out = fit_in_order(city, np.full(city.n_slots, 3))
    cpu, ram = used(city, out)
    assert (cpu <= city.node_cpu + 1e-9).all() and (ram <= city.node_ram + 1e-9).all()
    node = city.slot_node[np.flatnonzero(out < 3)[0]]
    later = np.flatnonzero(city.slot_node == node)
    first_short = np.flatnonzero((out < 3) & (city.slot_node == node))[0]
    assert (out[later[later > first_short]] <= out[first_short]).all() or out[first_short] == 0


def episode_cost(world: World, policy, steps: int) -> float:
    env = busy_env(world)
    policy.reset(world, seed=3)
    total = 0.0
    for _ in range(steps):
        _, reward, _, _, _ = env.step(policy.act(Context.from_env(env)))
        total -= reward
    return total


def test_greedy_beats_static_one_and_random_on_the_reference_city(worlds):
    city = worlds["lwmecps/ReferenceCity-v0"]
    greedy = episode_cost(city, GreedyLatency(), 3)
    assert greedy < episode_cost(city, StaticK(1), 3)
    assert greedy < episode_cost(city, UniformRandom(), 3)


def test_greedy_adds_only_improving_replicas(worlds):
    twin = worlds["lwmecps/TestApp4BS-v0"]
    env = PlacementEnv(world=twin)
    env.reset(seed=0, options={"start_slot": 0})
    ctx = Context.from_env(env)
    snap = Snapshot(slot=ctx.snapshot.slot, users=np.zeros(4), placement=ctx.snapshot.placement)
    quiet = Context(world=twin, snapshot=snap, obs=ctx.obs)
    np.testing.assert_array_equal(GreedyLatency().act(quiet), np.zeros(4))  # no demand: replicas only cost


def test_optimized_balance_follows_demand(worlds):
    twin = worlds["lwmecps/TestApp4BS-v0"]
    pol = OptimizedBalance(utilization=0.8)
    np.testing.assert_array_equal(pol.target(twin, np.zeros(4)), np.zeros(4))
    # 40 and 20 users at 0.1 req/s on 2.857 req/s replicas at 80 %: 1.75 + 0.875 -> 3 replicas, split 2 : 1
    np.testing.assert_array_equal(pol.target(twin, np.array([40.0, 20.0, 0.0, 0.0])), [2, 1, 0, 0])
    # the total is rounded up once per service, then shared by largest remainder
    np.testing.assert_array_equal(pol.target(twin, np.array([40.0, 10.0, 0.0, 10.0])), [2, 1, 0, 0])
    with pytest.raises(ValueError, match="utilization"):
        OptimizedBalance(utilization=0.0)


def test_random_is_seeded(worlds):
    city = worlds["lwmecps/ReferenceCity-v0"]
    ctx = Context.from_env(busy_env(city))
    a, b = UniformRandom(), UniformRandom()
    a.reset(city, seed=5)
    b.reset(city, seed=5)
    np.testing.assert_array_equal(a.act(ctx), b.act(ctx))
    assert len({tuple(a.act(ctx)) for _ in range(3)}) > 1


def test_baselines_by_name():
    assert list(baselines(("static-4", "random"))) == ["static-4", "random"]
    with pytest.raises(ValueError, match="unknown name"):
        baselines(("static-9",))
    with pytest.raises(ValueError, match="k must be"):
        StaticK(-1)
