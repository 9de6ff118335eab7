"""End to end over real HTTP: ``lwmecps serve`` (its own Ray head, Serve, the nx-27017 server) in a child process.

log in -> create a training task -> it is a Ray job -> progress -> completed -> model registered -> deploy ->
predict a valid placement -> metrics show the task -> undeploy; and cancelling a running task stops its Ray job
within 30 s and marks it cancelled.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import gymnasium as gym
import httpx
import numpy as np
import pytest

import envs  # noqa: F401 - registers the env ids
from serve_app.service_process import TERMINAL, ServiceProcess, tiny_task, wait_until

pytestmark = [pytest.mark.slow, pytest.mark.ray]

ENV_ID = "lwmecps/TestApp4BS-v0"
NVEC = (5, 5, 5, 5)


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServiceProcess]:
    proc = ServiceProcess(tmp_path_factory.mktemp("service"))
    with proc:
        yield proc


@pytest.fixture(scope="module")
def api(service: ServiceProcess) -> Iterator[httpx.Client]:
    client = service.client()
    yield client
    client.close()


def _jobs(service: ServiceProcess) -> Any:
    from ray.job_submission import JobSubmissionClient

    return JobSubmissionClient(service.dashboard)


def _task(api: httpx.Client, task_id: str) -> dict[str, Any]:
    r = api.get(f"/api/v1/training/{task_id}")
    assert r.status_code == 200, r.text
    return r.json()


def _observations(n: int) -> list[dict[str, np.ndarray]]:
    env = gym.make(ENV_ID)
    env.action_space.seed(3)
    obs, _ = env.reset(seed=3)
    seen = []
    for _ in range(n):
        seen.append(obs)
        obs, *_ = env.step(env.action_space.sample())
    return seen


def test_train_deploy_predict_undeploy(service: ServiceProcess, api: httpx.Client) -> None:
    r = api.post("/api/v1/training", json=tiny_task("e2e", iterations=2))
    assert r.status_code == 202, r.text
    task_id = r.json()["id"]
    task = wait_until(lambda: _task(api, task_id).get("ray_job_id") and _task(api, task_id), 30, "ray job id")
    job_id = task["ray_job_id"]
    listed = {j.submission_id: j for j in _jobs(service).list_jobs()}
    assert job_id in listed and listed[job_id].metadata.get("task_id") == task_id

    task = wait_until(lambda: (t := _task(api, task_id))["status"] in TERMINAL and t, 180, "task end", period_s=1)
    assert task["status"] == "completed", (task, service.log_tail())
    assert task["progress"] == 1.0 and task["iteration"] == 2
    jobs = _jobs(service)
    assert str(wait_until(lambda: (s := jobs.get_job_status(job_id)).is_terminal() and s, 30, "job end")) == "SUCCEEDED"
    series = api.get(f"/api/v1/metrics/tasks/{task_id}").json()
    progress = [p["values"]["progress"] for p in series["points"]]
    assert progress == [0.5, 1.0]  # one point per iteration, written while the job ran
    logs = api.get(f"/api/v1/training/{task_id}/logs").json()
    assert f"task {task_id}: completed" in logs["logs"]

    model = api.get(f"/api/v1/models/{task['model_id']}").json()
    assert model["task_id"] == task_id and model["status"] == "ready" and model["type"] == "ppo"

    r = api.post(f"/api/v1/models/{model['id']}/deploy")
    assert r.status_code == 201, r.text
    dep_id = r.json()["deployment_id"]
    for obs in _observations(5):
        r = api.post(
            f"/api/v1/deployments/{dep_id}/predict",
            json={"observations": obs["observations"].tolist(), "action_mask": obs["action_mask"].tolist()},
        )
        assert r.status_code == 200, r.text
        placement = r.json()["placement"]
        assert len(placement) == len(NVEC)
        offsets = np.concatenate([[0], np.cumsum(NVEC)[:-1]])
        assert all(obs["action_mask"][offsets[k] + n] > 0 for k, n in enumerate(placement))  # allowed by the mask

    summary = api.get("/api/v1/metrics/summary").json()
    assert summary["tasks_by_status"]["completed"] >= 1 and summary["predict"]["requests"] >= 5

    r = api.delete(f"/api/v1/deployments/{dep_id}")
    assert r.status_code in (200, 204), r.text
    r = api.post(
        f"/api/v1/deployments/{dep_id}/predict",
        json={"observations": obs["observations"].tolist(), "action_mask": obs["action_mask"].tolist()},
    )
    assert r.status_code in (404, 409), r.text


def test_cancel_stops_the_ray_job_within_30s(service: ServiceProcess, api: httpx.Client) -> None:
    r = api.post("/api/v1/training", json=tiny_task("cancel-me", iterations=100_000))
    assert r.status_code == 202, r.text
    task_id = r.json()["id"]
    wait_until(lambda: _task(api, task_id)["iteration"] >= 1, 180, "first iteration", period_s=1)
    job_id = _task(api, task_id)["ray_job_id"]

    r = api.post(f"/api/v1/training/{task_id}/cancel")
    assert r.status_code == 202, r.text
    jobs = _jobs(service)
    wait_until(lambda: jobs.get_job_status(job_id).is_terminal(), 30, "Ray job stopped")
    task = wait_until(lambda: (t := _task(api, task_id))["status"] in TERMINAL and t, 30, "task ended")
    assert task["status"] == "cancelled"
    assert str(jobs.get_job_status(job_id)) == "STOPPED"
