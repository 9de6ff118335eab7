"""The same policy makes the same decisions on the simulated backend and on the fake cluster.

The fake test-app computes each slot with the simulator's own :class:`envs.sim.SlotModel` for the placement the
fake API server actually runs (its ready pods), so every observation, decision and reward must match.
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from envs.backends.k8s_resources import deployment_name
from envs.backends.kubernetes import ClusterConfig, KubernetesBackend
from envs.backends.testapp_client import TestAppClient, TestAppLatency
from envs.placement_env import PlacementEnv
from envs.presets import get_scenario
from envs.world import World, build_world
from policies.base import Context, PlacementPolicy
from policies.evaluate import evaluate
from policies.heuristics import OptimizedBalance, StaticK, slot_limits

STEPS, START = 40, 1200

IMAGE = "registry.local/lwmecps/testapp-server:1"


class Reactive(PlacementPolicy):
    """Deterministic and latency-driven, so it changes placements often: scale the busiest cell's slot up when
    the last slot's observed latency was high, else scale the least busy hosting slot down."""

    name = "reactive"

    def act(self, ctx: Context) -> np.ndarray:
        w = ctx.world
        place = ctx.snapshot.placement.copy()
        lat = ctx.obs["observations"][2 * w.n_nodes + w.n_slots + w.n_nodes]  # service latency / timeout
        users = np.asarray(ctx.snapshot.users)
        if lat > 0.05:
            k = int(np.argmax(users[w.slot_node]))
            place[k] = min(place[k] + 1, slot_limits(ctx)[k])
        elif place.sum() > 1:
            hosting = np.flatnonzero(place > 0)
            k = int(hosting[np.argmin(users[w.slot_node[hosting]])])
            place[k] -= 1
        return place


@pytest.fixture(scope="module")
def world() -> World:
    return build_world(get_scenario("testapp-4bs"))


def run(env: PlacementEnv, policy: PlacementPolicy) -> list[tuple[list[int], float, float, list[float]]]:
    obs, _ = env.reset(seed=0, options={"trace": "A", "start_slot": START})
    policy.reset(env.world, 0)
    out = []
    for _ in range(STEPS):
        action = policy.act(Context.from_env(env))
        obs, reward, _, _, info = env.step(action)
        out.append((action.tolist(), reward, info["latency_ms"], obs["observations"].tolist()))
    return out


@pytest.mark.parametrize("policy", [OptimizedBalance(), Reactive()], ids=lambda p: p.name)
def test_same_decisions_on_simulator_and_fake_cluster(world, policy, cluster_factory, fake_app, testapp):
    sim = run(PlacementEnv(world=world, traces=["A"]), policy)

    cluster, kubeconfig = cluster_factory({n: ("2", "4Gi") for n in world.node_names}, ready_delay_s=0.0)
    names = [deployment_name("testapp", n) for n in world.node_names]  # one slot per node, in node order

    def running() -> np.ndarray:
        ready = cluster.replicas_ready()
        return np.array([ready.get(n, 0) for n in names], dtype=np.int64)

    load = fake_app.SimulatedLoad(world, testapp, running, "A", START)
    latency = TestAppLatency(TestAppClient(testapp.url), "g1", {i: ("testapp", i[4:]) for i in load.ids})
    cfg = ClusterConfig(
        image=IMAGE, dry_run=False, max_changes_per_step=None, rollout_timeout_s=2.0, poll_interval_s=0.01
    )
    backend = KubernetesBackend(world, latency, cfg, kubeconfig=kubeconfig, pace=load.tick)
    real = run(PlacementEnv(world=world, traces=["A"], backend=backend), policy)

    assert [a for a, *_ in real] == [a for a, *_ in sim]
    changes = sum(np.abs(np.subtract(b[0], a[0])).sum() for a, b in itertools.pairwise(sim))
    assert changes >= 20  # the episode really moves replicas (59 and 37 when written)
    np.testing.assert_allclose([r for _, r, *_ in real], [r for _, r, *_ in sim], rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose([x for *_, x, _ in real], [x for *_, x, _ in sim], rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose([o for *_, o in real], [o for *_, o in sim], atol=1e-6)
    assert all(e["status"] == "applied" for e in backend.events)


def test_evaluate_runs_on_a_cluster_backend_with_the_same_report(world, cluster_factory, fake_app, testapp):
    cluster, kubeconfig = cluster_factory({n: ("2", "4Gi") for n in world.node_names})
    names = [deployment_name("testapp", n) for n in world.node_names]
    built: list[KubernetesBackend] = []

    def on_cluster(w: World) -> KubernetesBackend:
        def running() -> np.ndarray:
            ready = cluster.replicas_ready()
            return np.array([ready.get(n, 0) for n in names], dtype=np.int64)

        load = fake_app.SimulatedLoad(w, testapp, running, "B", START)
        latency = TestAppLatency(TestAppClient(testapp.url), "g1", {i: ("testapp", i[4:]) for i in load.ids})
        cfg = ClusterConfig(image=IMAGE, dry_run=False, max_changes_per_step=None, poll_interval_s=0.01)
        built.append(KubernetesBackend(w, latency, cfg, kubeconfig=kubeconfig, pace=load.tick))
        return built[-1]

    pols = {"static-1": StaticK(1), "optimized-balance": OptimizedBalance()}
    kw = {"seeds": 1, "steps": 6, "traces": ["B"], "start_slot": START}
    sim = evaluate(pols, world, **kw).to_dict()
    real = evaluate(pols, world, backend=on_cluster, **kw).to_dict()
    assert len(built) == 2  # one backend per rollout
    for p in pols:
        for metric in ("reward", "latency_mean", "replicas", "changes", "rejected"):
            assert real["summary"][p][metric]["mean"] == pytest.approx(sim["summary"][p][metric]["mean"], rel=1e-9)
