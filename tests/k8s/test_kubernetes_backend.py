"""KubernetesBackend with the real ``kubernetes`` client over HTTP against the fake API server and test-app client."""

from __future__ import annotations

import itertools
import json
import socket
from pathlib import Path

import numpy as np
import pytest

from envs.backends.k8s_plan import bounded_step, node_usage
from envs.backends.k8s_resources import (
    ClusterError,
    ConflictError,
    ForbiddenError,
    NotFoundError,
    ServerError,
    UnreachableError,
    parse_quantity,
)
from envs.backends.kubernetes import ClusterConfig, KubernetesBackend
from envs.backends.testapp_client import TestAppClient, TestAppError, TestAppLatency
from envs.placement_env import PlacementEnv
from envs.presets import get_scenario
from envs.world import World, build_world

NODES = {f"bs{i}": ("2", "4Gi") for i in range(1, 5)}
DEPLOY = "/apis/apps/v1/namespaces/lwmecps/deployments"

IMAGE = "registry.local/lwmecps/testapp-server:1"


@pytest.fixture(scope="module")
def world() -> World:
    return build_world(get_scenario("testapp-4bs"))  # 4 nodes (2 CPU, 4 GiB), one service of 0.2 CPU / 256 MiB


def make_backend(world, kubeconfig, testapp, **cfg) -> KubernetesBackend:
    exps = {f"exp-{n}": ("testapp", n) for n in world.node_names}
    latency = TestAppLatency(TestAppClient(testapp.url, timeout_s=2.0), "g1", exps)
    base = {
        "image": IMAGE,
        "dry_run": False,
        "max_changes_per_step": None,
        "rollout_timeout_s": 2.0,
        "poll_interval_s": 0.01,
    }
    return KubernetesBackend(
        world, latency, ClusterConfig(**{**base, **cfg}), kubeconfig=kubeconfig, pace=lambda s: None
    )


@pytest.mark.parametrize(
    ("text", "value"),
    [("1500m", 1.5), ("2", 2.0), ("16Gi", 16 * 2**30), ("123456Ki", 123456 * 1024), ("1e3", 1000.0),
     ("500M", 5e8), ("0.5", 0.5), ("100n", 1e-7), ("1.5Gi", 1.5 * 2**30), ("2E", 2e18), (3, 3.0)],
)  # fmt: skip
def test_parse_quantity(text, value):
    assert parse_quantity(text) == pytest.approx(value)


@pytest.mark.parametrize("bad", ["", "abc", "1.2.3", "5Xi", "m", "1e", True])
def test_parse_quantity_rejects_bad_values(bad):
    with pytest.raises(ValueError, match="quantity"):
        parse_quantity(bad)


def test_placement_applied_end_to_end(world, cluster_factory, testapp):
    cluster, kubeconfig = cluster_factory(NODES)
    backend = make_backend(world, kubeconfig, testapp)
    snap = backend.reset("A", 5, np.array([1, 1, 1, 1]))
    assert snap.slot == 5 and snap.placement.tolist() == [1, 1, 1, 1]
    created = [r for r in cluster.writes() if r.method == "POST"]
    assert sorted(r.body["metadata"]["name"] for r in created) == [f"testapp-bs{i}" for i in range(1, 5)]
    for r in created:  # pinned to its node, requests from the service, labelled
        spec = r.body["spec"]["template"]["spec"]
        terms = spec["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
        node = terms["nodeSelectorTerms"][0]["matchExpressions"][0]
        assert node["key"] == "kubernetes.io/hostname" and node["values"] == [
            r.body["metadata"]["labels"]["lwmecps.io/node"]
        ]
        assert spec["containers"][0]["resources"]["requests"] == {"cpu": "200m", "memory": "256Mi"}
        assert r.body["metadata"]["labels"]["app.kubernetes.io/managed-by"] == "lwmecps-gym"
    templates = {name: d["spec"]["template"] for (_, name), d in cluster.deployments.items()}
    before = len(cluster.requests)

    backend.apply(np.array([2, 0, 1, 3]))
    assert backend.wait_until_stable()
    patches = [r for r in cluster.requests[before:] if r.method != "GET"]
    assert [(r.method, r.path.rsplit("/", 1)[1]) for r in patches] == [
        ("PATCH", "testapp-bs1"), ("PATCH", "testapp-bs2"), ("PATCH", "testapp-bs4")
    ]  # fmt: skip
    assert [r.body for r in patches] == [{"spec": {"replicas": n}} for n in (2, 0, 3)]  # only spec.replicas
    assert all(r.content_type.startswith("application/strategic-merge-patch+json") for r in patches)
    assert cluster.replicas_ready() == {"testapp-bs1": 2, "testapp-bs2": 0, "testapp-bs3": 1, "testapp-bs4": 3}
    assert {name: d["spec"]["template"] for (_, name), d in cluster.deployments.items()} == templates
    assert backend.snapshot().placement.tolist() == [2, 0, 1, 3]
    assert backend.events[-1]["status"] == "applied"


def test_an_existing_placement_is_adopted_and_unchanged_slots_are_not_touched(world, cluster_factory, testapp):
    cluster, kubeconfig = cluster_factory(NODES)
    make_backend(world, kubeconfig, testapp).reset("A", 0, np.array([1, 2, 0, 1]))
    n = len(cluster.writes())
    again = make_backend(world, kubeconfig, testapp)
    assert again.reset("A", 0, np.array([1, 2, 0, 1])).placement.tolist() == [1, 2, 0, 1]
    assert len(cluster.writes()) == n  # already in place: nothing written


def test_dry_run_is_the_default_and_writes_nothing(world, cluster_factory, testapp):
    cluster, kubeconfig = cluster_factory(NODES)
    latency = TestAppLatency(TestAppClient(testapp.url), "g1", {"exp-bs1": ("testapp", "bs1")})
    backend = KubernetesBackend(world, latency, kubeconfig=kubeconfig, pace=lambda s: None)
    assert backend.cfg.dry_run
    backend.reset("A", 0, np.array([1, 1, 1, 1]))
    backend.apply(np.array([2, 1, 0, 1]))
    assert backend.wait_until_stable() is False  # not in effect: the cluster still runs the previous placement
    assert cluster.writes() == [] and cluster.deployments == {}
    assert backend.snapshot().placement.tolist() == [0, 0, 0, 0]
    assert backend.events[-1] == {
        "step": 0, "from": [0, 0, 0, 0], "target": [2, 1, 0, 1], "to": [2, 1, 0, 1], "deferred": 0,
        "status": "dry-run",
    }  # fmt: skip


def test_rollout_timeout_rolls_back_to_the_last_good_placement(world, cluster_factory, testapp):
    cluster, kubeconfig = cluster_factory(NODES, never_ready_nodes={"bs2"})
    backend = make_backend(world, kubeconfig, testapp, rollout_timeout_s=0.3)
    env = PlacementEnv(world=world, traces=["A"], backend=backend)
    env.reset(seed=0, options={"start_slot": 0, "placement": [1, 0, 1, 0]})
    _, _, _, _, info = env.step(np.array([2, 1, 1, 0]))
    assert info["stable"] is False and info["placement"].tolist() == [1, 0, 1, 0]
    assert backend.events[-1]["status"] == "rolled back" and "0.3 s" in backend.events[-1]["reason"]
    patches = [(r.path.rsplit("/", 1)[1], r.body) for r in cluster.writes() if r.method == "PATCH"]
    assert ("testapp-bs1", {"spec": {"replicas": 1}}) in patches  # bs1 went 1 -> 2 -> back to 1
    assert ("testapp-bs2", {"spec": {"replicas": 0}}) in patches  # bs2 (never ready) back to 0
    assert cluster.replicas_ready() == {"testapp-bs1": 1, "testapp-bs2": 0, "testapp-bs3": 1}
    assert backend.snapshot().placement.tolist() == [1, 0, 1, 0]
    _, _, _, _, info = env.step(np.array([1, 0, 2, 0]))  # a healthy node still rolls out afterwards
    assert info["stable"] is True and cluster.replicas_ready()["testapp-bs3"] == 2


def test_replica_changes_per_step_are_bounded_and_the_rest_deferred(world, cluster_factory, testapp):
    cluster, kubeconfig = cluster_factory(NODES)
    backend = make_backend(world, kubeconfig, testapp, max_changes_per_step=2)
    backend.reset("A", 0, np.array([1, 1, 0, 0]))
    backend.reset("A", 0, np.array([1, 1, 1, 1]))  # two more on the second reset (bound 2)
    steps = [backend.snapshot().placement.tolist()]
    for _ in range(3):
        backend.apply(np.array([3, 0, 2, 1]))
        assert backend.wait_until_stable()
        steps.append(backend.snapshot().placement.tolist())
    assert steps == [[1, 1, 1, 1], [2, 0, 1, 1], [3, 0, 2, 1], [3, 0, 2, 1]]  # scale-down first, then slot order
    assert [e["deferred"] for e in backend.events[-3:]] == [2, 0, 0]
    assert all(np.abs(np.subtract(b, a)).sum() <= 2 for a, b in itertools.pairwise(steps))
    assert cluster.replicas_ready() == {"testapp-bs1": 3, "testapp-bs2": 0, "testapp-bs3": 2, "testapp-bs4": 1}


def test_capacity_is_never_exceeded(world, cluster_factory, testapp):
    nodes = {**NODES, "bs1": ("500m", "4Gi")}  # room for two 200m replicas on bs1
    cluster, kubeconfig = cluster_factory(nodes)
    cluster.add_pod("other", "db-0", "bs2", {"app": "db"}, cpu="1500m", memory="1Gi")  # leaves 500m on bs2
    backend = make_backend(world, kubeconfig, testapp, max_changes_per_step=3)
    backend.reset("A", 0, np.array([1, 1, 1, 1]))
    assert backend.cpu_cap[:2] == pytest.approx([0.5, 0.5])
    n = len(cluster.writes())
    backend.apply(np.array([3, 1, 1, 1]))  # the env's world thinks bs1 has 2 CPU; the cluster has 0.5
    assert backend.wait_until_stable() is False and len(cluster.writes()) == n
    assert backend.events[-1]["status"] == "refused" and "node bs1" in backend.events[-1]["reason"]
    rng = np.random.default_rng(0)
    for _ in range(15):
        backend.apply(rng.integers(0, 5, size=4))
        backend.wait_until_stable()
        cpu, _ = node_usage(world, backend.snapshot().placement)
        assert (cpu <= backend.cpu_cap + 1e-9).all()
        pods = [p for p in cluster.pod_objects() if p["metadata"]["namespace"] == "lwmecps"]
        on_bs1 = sum(p["spec"]["nodeName"] == "bs1" for p in pods)
        assert on_bs1 <= 2 and sum(p["spec"]["nodeName"] == "bs2" for p in pods) <= 2


def test_bounded_step_keeps_every_node_within_capacity(world):
    cap_cpu, cap_ram = np.array([0.4, 2.0, 2.0, 2.0]), world.node_ram.copy()
    out = bounded_step(world, np.array([2, 0, 0, 0]), np.array([0, 0, 0, 0]), 1, cap_cpu, cap_ram)
    assert out.tolist() == [1, 0, 0, 0]
    out = bounded_step(world, np.array([2, 0, 0, 0]), np.array([2, 3, 0, 0]), 2, cap_cpu, cap_ram)
    assert out.tolist() == [2, 2, 0, 0]
    assert bounded_step(world, np.zeros(4), np.array([4, 4, 4, 4]), None, cap_cpu, cap_ram).tolist() == [4] * 4


@pytest.mark.parametrize(
    ("method", "path", "status", "error", "fragment"),
    [
        ("GET", "/api/v1/nodes", 403, ForbiddenError, "list nodes: HTTP 403 Forbidden"),
        ("GET", DEPLOY, 404, NotFoundError, "list deployments in namespace lwmecps: HTTP 404"),
        ("GET", "/api/v1/pods", 500, ServerError, "list pods on node bs1: HTTP 500"),
        ("POST", DEPLOY, 403, ForbiddenError, "create deployment testapp-bs1: HTTP 403"),
        ("POST", DEPLOY, 503, ServerError, "create deployment testapp-bs1: HTTP 503"),
    ],
)
def test_api_errors_raise_clear_one_line_errors(world, cluster_factory, testapp, method, path, status, error, fragment):
    cluster, kubeconfig = cluster_factory(NODES)
    cluster.fail(method, path, status)
    backend = make_backend(world, kubeconfig, testapp)
    with pytest.raises(error) as info:
        backend.reset("A", 0, np.array([1, 0, 0, 0]))
    msg = str(info.value)
    assert fragment in msg and "injected" in msg and "\n" not in msg
    assert ("rbac.yaml" in msg) == (status == 403)


def test_conflict_is_retried_once_with_a_fresh_read(world, cluster_factory, testapp):
    cluster, kubeconfig = cluster_factory(NODES)
    backend = make_backend(world, kubeconfig, testapp)
    backend.reset("A", 0, np.array([1, 1, 1, 1]))
    cluster.fail("PATCH", "testapp-bs1", 409)
    before = len(cluster.requests)
    backend.apply(np.array([2, 1, 1, 1]))
    assert backend.wait_until_stable()
    calls = [r.method for r in cluster.requests[before:] if r.path.endswith("/testapp-bs1")]
    assert calls[:3] == ["PATCH", "GET", "PATCH"] and set(calls[3:]) == {"GET"}  # then the rollout polls
    assert cluster.replicas_ready()["testapp-bs1"] == 2
    cluster.fail("PATCH", "testapp-bs1", 409, times=2)
    with pytest.raises(ConflictError, match="scale deployment testapp-bs1 to 3: HTTP 409"):
        backend.apply(np.array([3, 1, 1, 1]))


def test_a_create_conflict_adopts_the_deployment(world, cluster_factory, testapp):
    cluster, kubeconfig = cluster_factory(NODES)
    backend = make_backend(world, kubeconfig, testapp)
    backend.reset("A", 0, np.array([0, 0, 0, 0]))
    make_backend(world, kubeconfig, testapp).reset("A", 0, np.array([1, 0, 0, 0]))  # someone else creates it
    backend.apply(np.array([2, 0, 0, 0]))
    assert backend.wait_until_stable() and cluster.replicas_ready() == {"testapp-bs1": 2}


def test_missing_node_and_unreachable_server(world, cluster_factory, testapp, tmp_path):
    _, kubeconfig = cluster_factory({"bs1": ("2", "4Gi")})
    with pytest.raises(NotFoundError, match="node 'bs2' \\(station bs2\\) not found"):
        make_backend(world, kubeconfig, testapp).reset("A", 0, np.zeros(4, dtype=int))
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed when the block ends: nothing listens there
    cfg = tmp_path / "refused.yaml"
    text = Path(kubeconfig).read_text()
    cfg.write_text(text.replace(json.loads(text)["clusters"][0]["cluster"]["server"], f"http://127.0.0.1:{port}"))
    with pytest.raises(UnreachableError, match="list nodes: API server unreachable") as info:
        make_backend(world, str(cfg), testapp).reset("A", 0, np.zeros(4, dtype=int))
    assert "\n" not in str(info.value)


def test_cluster_metrics_come_from_metrics_api(world, cluster_factory, testapp):
    _, kubeconfig = cluster_factory(NODES)
    backend = make_backend(world, kubeconfig, testapp)
    backend.reset("A", 0, np.array([2, 0, 1, 0]))
    m = backend.cluster_metrics()
    assert m["nodes"]["bs1"] == pytest.approx({"cpu": 0.2, "memory_mib": 256.0})  # fake pods use half a request
    assert len(m["pods"]) == 3 and all(p["cpu"] == pytest.approx(0.1) for p in m["pods"].values())
    assert m["requested"]["bs1"] == pytest.approx({"cpu": 0.4, "memory_mib": 512.0})


def test_latency_is_windowed_per_experiment(world, cluster_factory, fake_app, testapp):
    _, kubeconfig = cluster_factory(NODES)
    Exp = fake_app.Experiment
    app = testapp.app
    # a long history at 500 ms: the cumulative mean would hide the slot's 20 ms
    app.experiments = {"exp-bs1": Exp(users=10, interval_s=10.0, requests=1000, latency_sum=500_000.0)}
    backend = make_backend(world, kubeconfig, testapp)
    backend.reset("A", 0, np.array([1, 0, 0, 0]))
    assert app.calls[0][:2] == ("POST", "/api/manage_group") and app.calls[0][2]["state"] == "start"
    e = app.experiments["exp-bs1"]
    e.requests, e.latency_sum = e.requests + 8, e.latency_sum + 8 * 20.0  # 8 of 10 expected requests served
    out = backend.serve_slot()
    assert out.requests == pytest.approx(10.0) and out.unserved == pytest.approx(0.2)
    assert out.latency_ms == pytest.approx((8 * 20.0 + 2 * 400.0) / 10)
    assert out.service_latency_ms == pytest.approx([out.latency_ms])
    app.experiments = {}  # no per-experiment figures: the windowed group figure
    app.avg_latency_1m = 33.0
    assert backend.serve_slot().latency_ms == 33.0
    assert backend.snapshot().slot == 2


def test_testapp_errors_are_clear(world, fake_app, testapp):
    client = TestAppClient(testapp.url, timeout_s=2.0)
    with pytest.raises(TestAppError, match=r"HTTP 404: .*Group not found"):
        client.group_stats("nope")
    testapp.app.fail_status = 500
    with pytest.raises(TestAppError, match="manage_group -> HTTP 500"):
        client.manage_group("g1", "start")
    with pytest.raises(ValueError, match="state"):
        client.manage_group("g1", "restart")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(UnreachableError, match="test-app: cannot reach"):
        TestAppClient(f"http://127.0.0.1:{port}", timeout_s=2.0).group_stats("g1")
    with pytest.raises(ValueError, match="unknown station 'bs9'"):
        TestAppLatency(client, "g1", {"e": ("testapp", "bs9")}).start(world)


@pytest.mark.parametrize(
    ("kw", "field"),
    [({"namespace": "Bad_NS"}, "namespace"), ({"max_changes_per_step": 0}, "max_changes_per_step"),
     ({"rollout_timeout_s": 0}, "rollout_timeout_s"), ({"slot_seconds": -1}, "slot_seconds")],
)  # fmt: skip
def test_bad_config_names_the_field(kw, field):
    with pytest.raises(ValueError, match=f"^{field}: "):
        ClusterConfig(**kw)


def test_creating_a_deployment_needs_an_image(world, cluster_factory, testapp):
    cluster, kubeconfig = cluster_factory(NODES)
    with pytest.raises(ClusterError, match=r"image: ClusterConfig\.image is required to create Deployment testapp-bs1"):
        make_backend(world, kubeconfig, testapp, image="").reset("A", 0, np.array([1, 0, 0, 0]))
    assert cluster.writes() == []


def test_env_charges_the_placement_that_really_runs_when_changes_are_deferred(world, cluster_factory, testapp):
    _, kubeconfig = cluster_factory(NODES)
    backend = make_backend(world, kubeconfig, testapp, max_changes_per_step=1)
    env = PlacementEnv(world=world, traces=["A"], backend=backend)
    obs, _ = env.reset(seed=0, options={"start_slot": 0, "placement": [1, 1, 1, 1]})
    assert backend.snapshot().placement.tolist() == [1, 0, 0, 0]  # the reset is bounded too
    assert obs["observations"][8:12].tolist() == [0.25, 0.0, 0.0, 0.0]  # replicas / max in the observation
    _, _, _, _, info = env.step(np.array([3, 1, 1, 1]))  # asks for +2 on bs1 and +1 elsewhere: +1 this step
    assert info["placement"].tolist() == [2, 0, 0, 0]
    assert info["replicas"] == 2 and info["changes"] == 1
    assert info["reward_components"]["replicas"] == pytest.approx(0.1 * 2)
