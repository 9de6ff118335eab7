"""The closed loop over REST, end to end: deploy a model, start a loop via ``POST /api/v1/loops``, let it run several
periods against the fake API server and fake test-app, read its decisions and the cluster metrics, stop it.

The API is the real ``create_api`` app (FastAPI ``TestClient``) on the real nx-27017 server, with the in-memory
runtime of tests/serve_app/api at the Ray boundary; the loop runner (:class:`LoopSupervisor` with the default
factory: the deployed model's exported policy, the kubeconfig decrypted from the store) runs in a background
thread of this process, as it does inside the ``LoopRunner`` Serve replica.
"""

from __future__ import annotations

import importlib.util
import json
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient

from envs.backends.k8s_resources import deployment_name
from envs.backends.kubernetes import ClusterConfig, KubernetesBackend
from envs.backends.testapp_client import TestAppClient, TestAppLatency
from envs.presets import get_scenario
from envs.world import build_world
from serve_app.api.main import create_api
from serve_app.artifacts import export_dir
from serve_app.loops.runner import LoopSupervisor
from serve_app.security import decrypt
from serve_app.store import models


def _load(key: str, rel: str) -> Any:
    if key not in sys.modules:
        spec = importlib.util.spec_from_file_location(key, Path(__file__).parents[1] / rel)
        assert spec and spec.loader
        sys.modules[key] = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(sys.modules[key])
    return sys.modules[key]


_svc = _load("_lwmecps_tests_serve_app_conftest", "serve_app/conftest.py")
_api = _load("_lwmecps_tests_serve_app_api_conftest", "serve_app/api/conftest.py")
mongo_server, mongo_client, db, settings = _svc.mongo_server, _svc.mongo_client, _svc.db, _svc.settings

NODES = {f"bs{i}": ("2", "4Gi") for i in range(1, 5)}
IMAGE = "registry.local/lwmecps/testapp-server:1"
NAMES = [deployment_name("testapp", f"bs{i}") for i in range(1, 5)]
PERIOD = 0.3


@pytest.fixture
def api(settings, db) -> Iterator[Any]:
    runtime = _api.InMemoryRuntime()
    with TestClient(create_api(settings, runtime, db)) as client:
        yield _api.Api(client, runtime, db, settings)


@pytest.fixture
def world():
    return build_world(get_scenario("testapp-4bs"))


@pytest.fixture
def fake(world, cluster_factory, testapp, fake_app) -> Iterator[tuple[Any, str]]:
    """A fake cluster running one replica per node, and a fake test-app whose load is served every period."""
    cluster, kubeconfig = cluster_factory(NODES)
    exps = {"exp-bs1": ("testapp", "bs1")}
    cfg = ClusterConfig(image=IMAGE, dry_run=False, max_changes_per_step=None, poll_interval_s=0.01)
    seed = KubernetesBackend(world, TestAppLatency(TestAppClient(testapp.url), "g1", exps), cfg, kubeconfig=kubeconfig)
    seed.discover()
    seed.apply(np.array([1, 1, 1, 1]))
    assert seed.wait_until_stable()

    def running() -> np.ndarray:
        ready = cluster.replicas_ready()
        return np.array([ready.get(n, 0) for n in NAMES], dtype=np.int64)

    load = fake_app.SimulatedLoad(world, testapp, running, "A", 1200)
    done = threading.Event()

    def serve_load() -> None:
        while not done.wait(PERIOD / 2):
            load.tick(PERIOD / 2)

    ticker = threading.Thread(target=serve_load, daemon=True)
    ticker.start()
    yield cluster, kubeconfig
    done.set()
    ticker.join()


@pytest.fixture
def deployment(api, settings) -> str:
    """A running deployment of a model of the testapp env with a real (untrained) exported policy."""
    model = models.register_model(api.db, name="m", type="ppo", artifact_uri="unused",
                                  info={"algorithm": "PPO", "env_id": _api.TESTAPP_ENV, "env_config": {}})  # fmt: skip
    _api.write_export(Path(export_dir(settings.storage_root, model["id"])), _api.TESTAPP_ENV)
    r = api.client.post(f"/api/v1/models/{model['id']}/deploy", headers=api.as_role("operator"))
    assert r.status_code == 201, r.text
    return str(r.json()["deployment_id"])


def body(deployment: str, kubeconfig: str, testapp_url: str, **extra: Any) -> dict[str, Any]:
    experiments = {f"exp-bs{i}": ["testapp", f"bs{i}"] for i in range(1, 5)}
    return {"deployment_id": deployment, "kubeconfig": Path(kubeconfig).read_text(), "image": IMAGE,
            "latency": {"kind": "testapp", "url": testapp_url, "group_id": "g1", "experiments": experiments},
            "period_s": PERIOD, "dry_run": False, "max_changes_per_step": 2, "rollout_timeout_s": 2.0,
            "poll_interval_s": 0.01, **extra}  # fmt: skip


def poll(get, check, timeout_s: float = 40.0) -> Any:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        got = get()
        if check(got):
            return got
        time.sleep(0.1)
    raise AssertionError(f"not reached in time; last: {got}")


def test_a_loop_started_via_rest_runs_records_and_stops(api, deployment, fake, testapp, settings):
    cluster, kubeconfig = fake
    op, viewer = api.as_role("operator"), api.as_role("viewer")
    sup = LoopSupervisor(lambda: api.db, settings, sync_s=0.1).start()
    try:
        assert api.client.post("/api/v1/loops", json=body(deployment, kubeconfig, testapp.url), headers=viewer
                               ).status_code == 403  # fmt: skip
        r = api.client.post("/api/v1/loops", json=body(deployment, kubeconfig, testapp.url), headers=op)
        assert r.status_code == 201, r.text
        loop = r.json()
        assert loop["status"] == "running" and loop["scenario"] == "testapp-4bs" and "kubeconfig" not in r.text
        loop_id = loop["id"]
        stored = api.db["loops"].find_one()
        assert "not-a-secret" not in json.dumps(stored, default=str)  # the kubeconfig's token is encrypted
        assert decrypt(stored["kubeconfig_enc"], settings) == Path(kubeconfig).read_text()

        again = api.client.post("/api/v1/loops", json=body(deployment, kubeconfig, testapp.url), headers=op)
        assert again.status_code == 409 and loop_id in again.json()["detail"]  # one loop per namespace

        url = f"/api/v1/loops/{loop_id}"
        got = poll(lambda: api.client.get(url, headers=viewer).json(), lambda d: d["steps"] >= 3)
        assert got["last_decision"]["status"] in ("applied", "rolled back") and got["owner"] == sup.owner

        page = api.client.get(f"{url}/decisions", params={"limit": 2, "order": "oldest"}, headers=viewer).json()
        assert page["total"] >= 3 and [d["step"] for d in page["items"]] == [0, 1]
        first = page["items"][0]
        assert first["from"] == [1, 1, 1, 1] and first["outcome"]["latency_ms"] > 0
        assert np.abs(np.subtract(first["to"], first["from"])).sum() <= 2
        newest = api.client.get(f"{url}/decisions", params={"limit": 1}, headers=viewer).json()["items"][0]
        assert newest["step"] >= 2

        clusters = api.client.get("/api/v1/metrics/cluster", headers=viewer).json()["clusters"]
        usage = clusters[loop_id]
        assert set(usage["nodes"]) == set(NODES) and usage["pods"] and set(usage["requested"]) == set(NODES)

        assert api.client.post(f"{url}/stop", headers=viewer).status_code == 403
        r = api.client.post(f"{url}/stop", headers=op)
        assert r.status_code == 200 and r.json()["status"] in ("stopping", "stopped")
        stopped = poll(lambda: api.client.get(url, headers=viewer).json(), lambda d: d["status"] == "stopped")
    finally:
        sup.close()
    time.sleep(3 * PERIOD)
    final = api.client.get(url, headers=viewer).json()
    assert final["steps"] == stopped["steps"]  # no decision after the stop
    total = api.client.get(f"{url}/decisions", headers=viewer).json()["total"]
    assert total == final["steps"] == sum(final["counts"].values())
    assert api.client.get("/api/v1/metrics/cluster", headers=viewer).json()["clusters"] == {}
    assert api.client.get("/api/v1/loops", params={"status": "stopped"}, headers=viewer).json()["total"] == 1
    # the cluster runs what the last applied decision left
    last = api.client.get(f"{url}/decisions", params={"limit": 1}, headers=viewer).json()["items"][0]
    ready = cluster.replicas_ready()
    assert [ready[n] for n in NAMES] == last["placement"]


def test_bad_loops_are_refused_with_the_field_named(api, deployment, fake, testapp):
    _, kubeconfig = fake
    op = api.as_role("operator")
    good = body(deployment, kubeconfig, testapp.url)
    cases = [
        ({**good, "kubeconfig": "::: not yaml"}, 422, "kubeconfig"),
        ({**good, "context": "nope"}, 422, "kubeconfig"),
        ({**good, "scenario": "reference-city"}, 422, "scenario"),
        ({**good, "latency": {**good["latency"], "experiments": {"e": ["testapp", "bs9"]}}}, 422, "bs9"),
        ({**good, "latency": {"kind": "prometheus", "url": "ftp://x", "query": "q"}}, 422, "latency"),
        ({**good, "period_s": 0}, 422, "period_s"),
        ({**good, "deployment_id": "0" * 24}, 404, "deployment"),
    ]
    for payload, status, word in cases:
        r = api.client.post("/api/v1/loops", json=payload, headers=op)
        assert r.status_code == status and word in r.json()["detail"], (payload, r.text)
    api.client.delete(f"/api/v1/deployments/{deployment}", headers=op)
    r = api.client.post("/api/v1/loops", json=good, headers=op)
    assert r.status_code == 409 and "only a running deployment" in r.json()["detail"]
    assert api.client.get("/api/v1/loops", headers=op).json()["total"] == 0
