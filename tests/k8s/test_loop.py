"""The closed loop without Serve: Controller and LoopSupervisor against the fake API server and fake test-app, with
decisions stored in the real nx-27017 server (fixtures of tests/serve_app/conftest.py)."""

from __future__ import annotations

import importlib.util
import json
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from envs.backends.k8s_resources import deployment_name
from envs.backends.kubernetes import ClusterConfig, KubernetesBackend
from envs.backends.testapp_client import TestAppClient, TestAppLatency
from envs.presets import get_scenario
from envs.world import World, build_world
from serve_app.loops.build import build_controller
from serve_app.loops.controller import Controller
from serve_app.loops.prometheus import PrometheusLatency
from serve_app.loops.runner import LoopSupervisor
from serve_app.security import encrypt
from serve_app.store import deployments, metrics
from serve_app.store import loops as store


def _serve_conftest() -> Any:
    key = "_lwmecps_tests_serve_app_conftest"
    if key not in sys.modules:
        spec = importlib.util.spec_from_file_location(key, Path(__file__).parents[1] / "serve_app" / "conftest.py")
        assert spec and spec.loader
        sys.modules[key] = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(sys.modules[key])
    return sys.modules[key]


_svc = _serve_conftest()
mongo_server, mongo_client, db, settings = _svc.mongo_server, _svc.mongo_client, _svc.db, _svc.settings

NODES = {f"bs{i}": ("2", "4Gi") for i in range(1, 5)}
IMAGE = "registry.local/lwmecps/testapp-server:1"
START = 1200
NAMES = [deployment_name("testapp", f"bs{i}") for i in range(1, 5)]


@pytest.fixture(scope="module")
def world() -> World:
    return build_world(get_scenario("testapp-4bs"))  # 4 nodes (2 CPU), one service of 0.2 CPU: at most 10 per node


class Scripted:
    """A policy that plays a fixed list of actions (then repeats the last) and keeps what it was shown."""

    def __init__(self, actions: list[list[int]]):
        self.actions, self.seen = actions, []

    def __call__(self, obs: dict[str, np.ndarray]) -> np.ndarray:
        self.seen.append(obs)
        return np.array(self.actions[min(len(self.seen) - 1, len(self.actions) - 1)], dtype=np.int64)


def running(cluster: Any) -> np.ndarray:
    ready = cluster.replicas_ready()
    return np.array([ready.get(n, 0) for n in NAMES], dtype=np.int64)


def controller(world, cluster, kubeconfig, testapp, fake_app, decide, **cfg) -> Controller:
    load = fake_app.SimulatedLoad(world, testapp, lambda: running(cluster), "A", START)
    latency = TestAppLatency(TestAppClient(testapp.url), "g1", {i: ("testapp", i[4:]) for i in load.ids})
    base = {"image": IMAGE, "dry_run": False, "rollout_timeout_s": 1.0, "poll_interval_s": 0.01, "slot_seconds": 10.0}
    backend = KubernetesBackend(world, latency, ClusterConfig(**{**base, **cfg}), kubeconfig=kubeconfig, pace=load.tick)
    return Controller(world, backend, decide, start_slot=START)


def seed_cluster(world, kubeconfig, testapp, placement: list[int]) -> None:
    """Deployments already running ``placement`` (what a loop attaches to)."""
    exps = {"exp-bs1": ("testapp", "bs1")}
    cfg = ClusterConfig(image=IMAGE, dry_run=False, max_changes_per_step=None, poll_interval_s=0.01)
    backend = KubernetesBackend(world, TestAppLatency(TestAppClient(testapp.url), "g1", exps), cfg,
                                kubeconfig=kubeconfig, pace=lambda s: None)  # fmt: skip
    backend.discover()
    backend.apply(np.array(placement))
    assert backend.wait_until_stable()


def test_periods_apply_the_policy_within_the_change_bound(world, cluster_factory, testapp, fake_app):
    cluster, kubeconfig = cluster_factory(NODES)
    seed_cluster(world, kubeconfig, testapp, [1, 1, 1, 1])
    policy = Scripted([[4, 1, 1, 1], [4, 1, 1, 1], [4, 0, 2, 1], [1, 1, 1, 1]])
    ctl = controller(world, cluster, kubeconfig, testapp, fake_app, policy, max_changes_per_step=2)
    assert ctl.start() == [1, 1, 1, 1]  # adopted, not reset to a default placement
    records = [ctl.step() for _ in range(4)]

    assert [r["status"] for r in records] == ["applied"] * 4
    # scale-downs first, at most two replicas per period; the rest waits for the next period
    assert [r["to"] for r in records] == [[3, 1, 1, 1], [4, 1, 1, 1], [4, 0, 2, 1], [2, 0, 2, 1]]
    assert [r["deferred"] for r in records] == [1, 0, 0, 3]
    for r in records:
        assert np.abs(np.subtract(r["to"], r["from"])).sum() <= 2
        assert r["placement"] == r["to"]
        assert r["outcome"]["latency_ms"] > 0 and len(r["outcome"]["service_latency_ms"]) == 1
    assert running(cluster).tolist() == [2, 0, 2, 1]  # what the cluster really runs
    # the observation the policy saw shows the placement the cluster ran (replicas per slot / max)
    K, N = world.n_slots, world.n_nodes
    shown = [np.round(o["observations"][2 * N : 2 * N + K] * world.slot_max).astype(int).tolist() for o in policy.seen]
    assert shown == [[1, 1, 1, 1], [3, 1, 1, 1], [4, 1, 1, 1], [4, 0, 2, 1]]
    patches = [r for r in cluster.writes() if r.method == "PATCH"]
    assert patches and all(r.body == {"spec": {"replicas": r.body["spec"]["replicas"]}} for r in patches)


def test_dry_run_records_decisions_and_patches_nothing(world, cluster_factory, testapp, fake_app):
    cluster, kubeconfig = cluster_factory(NODES)
    seed_cluster(world, kubeconfig, testapp, [1, 1, 1, 1])
    writes = len(cluster.writes())
    policy = Scripted([[3, 0, 1, 2]])
    ctl = controller(world, cluster, kubeconfig, testapp, fake_app, policy, dry_run=True, max_changes_per_step=None)
    ctl.start()
    records = [ctl.step() for _ in range(3)]
    assert [r["status"] for r in records] == ["dry-run"] * 3
    assert all(r["to"] == [3, 0, 1, 2] and r["from"] == [1, 1, 1, 1] for r in records)
    assert all(r["placement"] == [1, 1, 1, 1] and r["stable"] is False for r in records)
    assert len(cluster.writes()) == writes  # nothing written
    assert running(cluster).tolist() == [1, 1, 1, 1]


def test_a_rollout_that_never_becomes_ready_is_rolled_back(world, cluster_factory, testapp, fake_app):
    cluster, kubeconfig = cluster_factory(NODES)
    seed_cluster(world, kubeconfig, testapp, [1, 1, 1, 1])
    cluster.never_ready_nodes.add("bs2")
    policy = Scripted([[1, 3, 1, 1], [2, 1, 1, 1]])
    ctl = controller(world, cluster, kubeconfig, testapp, fake_app, policy, rollout_timeout_s=0.3)
    ctl.start()
    first, second = ctl.step(), ctl.step()
    assert first["status"] == "rolled back" and "not ready within 0.3 s" in first["reason"]
    assert first["placement"] == [1, 1, 1, 1] and first["stable"] is False
    assert second["status"] == "applied" and second["placement"] == [2, 1, 1, 1]
    assert running(cluster).tolist() == [2, 1, 1, 1]


def test_an_api_error_becomes_an_error_decision_and_the_next_period_resyncs(world, cluster_factory, testapp, fake_app):
    cluster, kubeconfig = cluster_factory(NODES)
    seed_cluster(world, kubeconfig, testapp, [1, 1, 1, 1])
    policy = Scripted([[2, 1, 1, 1]])
    ctl = controller(world, cluster, kubeconfig, testapp, fake_app, policy)
    ctl.start()
    cluster.fail("PATCH", "testapp-bs1", 403)
    failed = ctl.step()
    assert (
        failed["status"] == "error"
        and "HTTP 403" in failed["reason"]
        and "scale deployment testapp-bs1" in failed["reason"]
    )
    assert ctl.step()["status"] == "applied"
    assert running(cluster).tolist() == [2, 1, 1, 1]


# -- the runner: decisions and cluster metrics stored, stop honoured -----------------------------------------
def _loop_doc(db, kubeconfig: str, testapp_url: str, settings, model_id: str, **extra: Any) -> dict[str, Any]:
    dep = deployments.create_deployment(db, model_id=model_id, name="d", status="running")
    fields = {"deployment_id": dep["id"], "model_id": model_id, "namespace": "lwmecps", "scenario": "testapp-4bs",
              "image": IMAGE, "node_map": {}, "context": None, "start_slot": START, "period_s": 0.2,
              "dry_run": False, "max_changes_per_step": 2, "rollout_timeout_s": 1.0, "poll_interval_s": 0.01,
              "max_steps": None, "cluster_server": "fake",
              "latency": {"kind": "testapp", "url": testapp_url, "group_id": "g1",
                          "experiments": {f"exp-bs{i}": ["testapp", f"bs{i}"] for i in range(1, 5)}},
              **extra}  # fmt: skip
    return store.create_loop(db, fields, encrypt(Path(kubeconfig).read_text(), settings))


def wait_for(check, timeout_s: float = 30.0) -> Any:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        got = check()
        if got:
            return got
        time.sleep(0.05)
    raise AssertionError("condition not reached in time")


def test_the_runner_stores_every_decision_and_stops_for_good(world, cluster_factory, testapp, fake_app, db, settings):
    cluster, kubeconfig = cluster_factory(NODES)
    seed_cluster(world, kubeconfig, testapp, [1, 1, 1, 1])
    load = fake_app.SimulatedLoad(world, testapp, lambda: running(cluster), "A", START)
    policy = Scripted([[3, 1, 1, 1], [3, 2, 0, 1]])

    def factory(loop, kubeconfig_text, settings, pace):
        def period(s: float) -> None:
            load.tick(s)
            pace(s)

        return build_controller(loop, kubeconfig_text, policy, period)

    loop = _loop_doc(db, kubeconfig, testapp.url, settings, "0" * 24)
    sup = LoopSupervisor(lambda: db, settings, sync_s=0.1, factory=factory).start()
    try:
        wait_for(lambda: store.get_loop(db, loop["id"])["steps"] >= 4)
        assert store.request_stop(db, loop["id"])["status"] == "stopping"
        stopped = wait_for(lambda: (d := store.get_loop(db, loop["id"]))["status"] == "stopped" and d)
    finally:
        sup.close()
    n = stopped["steps"]
    time.sleep(0.6)  # three periods
    assert store.list_decisions(db, loop["id"], limit=1).total == n  # no decision after the stop
    assert store.get_loop(db, loop["id"])["owner"] is None

    items = store.list_decisions(db, loop["id"], limit=100, newest_first=False).items
    assert [d["step"] for d in items] == list(range(n))
    assert [d["to"] for d in items[:3]] == [[3, 1, 1, 1], [3, 2, 0, 1], [3, 2, 0, 1]]
    assert all(d["status"] == "applied" and d["outcome"]["latency_ms"] > 0 for d in items)
    assert stopped["counts"] == {"applied": n} and stopped["last_decision"]["step"] == n - 1
    points = metrics.series(db, kind="cluster")
    assert len(points) == n and points[-1]["values"]["loop_id"] == loop["id"]
    assert set(points[-1]["values"]["nodes"]) == set(NODES)
    assert points[-1]["values"]["requested"]["bs1"]["cpu"] == pytest.approx(0.6)  # 3 replicas of 0.2 CPU
    assert len(points[-1]["values"]["pods"]) == 6
    assert running(cluster).tolist() == [3, 2, 0, 1]


def test_a_loop_whose_deployment_is_undeployed_fails_with_the_reason(
    world, cluster_factory, testapp, fake_app, db, settings
):
    _cluster, kubeconfig = cluster_factory(NODES)
    seed_cluster(world, kubeconfig, testapp, [1, 1, 1, 1])

    def factory(loop, kubeconfig_text, settings, pace):
        return build_controller(loop, kubeconfig_text, Scripted([[1, 1, 1, 1]]), pace)

    loop = _loop_doc(db, kubeconfig, testapp.url, settings, "0" * 24, dry_run=True)
    deployments.update_status(db, loop["deployment_id"], "stopped")
    sup = LoopSupervisor(lambda: db, settings, sync_s=0.1, factory=factory).start()
    try:
        done = wait_for(lambda: (d := store.get_loop(db, loop["id"]))["status"] == "failed" and d)
    finally:
        sup.close()
    assert "is stopped: its policy no longer serves" in done["error"] and done["steps"] == 0


# -- Prometheus latency source ---------------------------------------------------------------------------------
def test_prometheus_latency_reads_one_series_per_service(world):
    body = {"status": "success", "data": {"resultType": "vector", "result": [
        {"metric": {"service": "testapp"}, "value": [0, "42.5"]},
        {"metric": {"service": "other"}, "value": [0, "9"]},
    ]}}  # fmt: skip
    queries: list[str] = []

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *a: Any) -> None:
            pass

        def do_GET(self) -> None:
            queries.append(self.path)
            data = json.dumps(body).encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=httpd.serve_forever, args=(0.02,), daemon=True).start()
    try:
        src = PrometheusLatency(f"http://127.0.0.1:{httpd.server_address[1]}", "lat_ms")
        src.start(world)
        out = src.measure(world, 10.0)
    finally:
        httpd.shutdown()
        httpd.server_close()
    assert out.latency_ms == 42.5 and out.service_latency_ms.tolist() == [42.5]
    assert queries[-1] == "/api/v1/query?query=lat_ms"
