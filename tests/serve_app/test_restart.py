"""Restarts while a task trains lose no task and leave none stuck; a deployed policy survives them.

1. The ingress replica is killed (SIGKILL): Serve starts a new one, whose reconciler runs at once; the running
   task keeps running and training, and the deployed policy still answers.
2. The whole service is stopped (SIGTERM, its Ray head and the job with it) and started again on the same data
   directory: the task that was running ends ``failed`` with a reason (nothing stays ``running``), every task is
   still listed, and the deployment answers again.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from typing import Any

import gymnasium as gym
import httpx
import pytest

import envs  # noqa: F401 - registers the env ids
from serve_app.service_process import TERMINAL, ServiceProcess, tiny_task, wait_until

pytestmark = [pytest.mark.slow, pytest.mark.ray]

INGRESS_ACTOR = "ServeReplica:lwmecps:Ingress"


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServiceProcess]:
    proc = ServiceProcess(tmp_path_factory.mktemp("service"))
    with proc:
        yield proc


def _task(api: httpx.Client, task_id: str) -> dict[str, Any]:
    r = api.get(f"/api/v1/training/{task_id}")
    assert r.status_code == 200, r.text
    return r.json()


def _ingress_pids(service: ServiceProcess) -> set[int]:
    from ray.util.state import list_actors

    alive = list_actors(
        address=service.dashboard, filters=[("class_name", "=", INGRESS_ACTOR), ("state", "=", "ALIVE")]
    )
    return {int(a.pid) for a in alive}


def _predict_ok(service: ServiceProcess, dep_id: str, body: dict[str, Any]) -> bool:
    try:
        with service.client() as api:
            return api.post(f"/api/v1/deployments/{dep_id}/predict", json=body).status_code == 200
    except httpx.HTTPError:
        return False


def _create(api: httpx.Client, body: dict[str, Any]) -> str:
    r = api.post("/api/v1/training", json=body)
    assert r.status_code == 202, f"{r.status_code} {r.text}"
    return str(r.json()["id"])


def test_restarts_lose_no_task(service: ServiceProcess) -> None:
    api = service.client()
    done_id = _create(api, tiny_task("finishes", iterations=1))
    long_id = _create(api, tiny_task("runs-on", iterations=100_000))
    done = wait_until(lambda: (t := _task(api, done_id))["status"] in TERMINAL and t, 180, "short task", 1)
    assert done["status"] == "completed", done
    dep_id = api.post(f"/api/v1/models/{done['model_id']}/deploy").json()["deployment_id"]
    obs, _ = gym.make("lwmecps/TestApp4BS-v0").reset(seed=0)
    body = {"observations": obs["observations"].tolist(), "action_mask": obs["action_mask"].tolist()}
    assert _predict_ok(service, dep_id, body)
    wait_until(lambda: _task(api, long_id)["iteration"] >= 1, 120, "long task training", 1)

    # 1. the ingress replica dies
    (old_pid,) = _ingress_pids(service)
    os.kill(old_pid, signal.SIGKILL)
    new_pids = wait_until(lambda: (p := _ingress_pids(service)) and old_pid not in p and p, 90, "new ingress")
    assert old_pid not in new_pids
    wait_until(lambda: _predict_ok(service, dep_id, body), 60, "predict after the ingress restart")
    api = service.client()
    before = _task(api, long_id)
    assert before["status"] == "running"
    wait_until(lambda: _task(api, long_id)["iteration"] > before["iteration"], 60, "training goes on")

    # 2. the whole service restarts (the running job dies with its Ray head)
    service.stop()
    service.start()
    api = service.client()
    lost = wait_until(lambda: (t := _task(api, long_id))["status"] in TERMINAL and t, 30, "lost task ended")
    assert lost["status"] == "failed" and "Ray job" in lost["error"], lost
    listed = {t["id"]: t["status"] for t in api.get("/api/v1/training").json()["items"]}
    assert listed == {done_id: "completed", long_id: "failed"}
    wait_until(lambda: _predict_ok(service, dep_id, body), 60, "predict after the service restart")
    api.close()
